"""Figures on how readable the embedded T5's features are (run via `build_text_encoder.py --report`).

For the shipped encoder and, as a baseline, the same architecture with transformers' own random init
(relative-position bias drawn with std 1/16):
- `token_rms`: root-mean-square of real-token vectors (T5's final RMS norm: about 1);
- `one_word_change`: cosine of whole-caption embeddings (positions aligned) when one word changes, per kind
  of word; `at_changed_token` / `at_other_tokens` split it into the changed position and the rest;
- `distinct_words`: mean |cosine| between the vectors of the 12 colour words in the same slot;
- `swap`: "a small red circle ... on a blue background" vs colours swapped: position-aligned cosine,
  mean-pooled cosine (1.0 for any bag-of-words encoder) and best-match cosine (each token to its nearest
  token in the other caption: what an order-blind reader such as cross-attention can see);
- `probe`: accuracy of a ridge-regression probe on the mean-pooled embedding predicting the object's and
  the background's colour (12 classes; a bag-of-words encoder cannot tell which is which, about 50%).
"""

from __future__ import annotations

import random
from pathlib import Path

import torch

from imagen.shapes import COLORS, POSITIONS, SHAPES, Scene, ShapeObject, random_scene
from imagen.text import T5TextEncoder


def _cos(a: torch.Tensor, b: torch.Tensor) -> float:
    return float(torch.nn.functional.cosine_similarity(a.flatten(), b.flatten(), dim=0))


def _pairs(kind: str, count: int, rng: random.Random) -> list[tuple[str, str]]:
    """Caption pairs differing in one word of the given kind (single-token words only)."""
    same_length_positions = [p for p in POSITIONS if " " not in p]
    pairs = []
    while len(pairs) < count:
        scene = random_scene(rng, 0.0)
        obj, bg = scene.objects[0], scene.background
        colors = [c for c in COLORS if c not in (obj.color, bg)]
        if kind == "object_color":
            other = Scene((ShapeObject(obj.size, rng.choice(colors), obj.shape, obj.position),), bg)
        elif kind == "background":
            other = Scene(scene.objects, rng.choice(colors))
        elif kind == "shape":
            other = Scene((ShapeObject(obj.size, obj.color, rng.choice([s for s in SHAPES if s != obj.shape]),
                                       obj.position),), bg)
        elif kind == "size":
            other = Scene((ShapeObject("large" if obj.size == "small" else "small", obj.color, obj.shape,
                                       obj.position),), bg)
        else:  # position: one-word positions only, so the token count stays the same
            if obj.position not in same_length_positions:
                continue
            new = rng.choice([p for p in same_length_positions if p != obj.position])
            other = Scene((ShapeObject(obj.size, obj.color, obj.shape, new),), bg)
        pairs.append((scene.caption, other.caption))
    return pairs


def one_word_change(encoder: T5TextEncoder, count: int = 64) -> dict:
    rng = random.Random(0)
    out = {}
    for kind in ("object_color", "background", "shape", "size", "position"):
        pairs = _pairs(kind, count, rng)
        a, mask = encoder.encode([p[0] for p in pairs])
        b, _ = encoder.encode([p[1] for p in pairs])
        ids_a, _ = encoder.tokenize([p[0] for p in pairs])
        ids_b, _ = encoder.tokenize([p[1] for p in pairs])
        whole = [_cos(a[i][mask[i]], b[i][mask[i]]) for i in range(count)]
        per_token = torch.nn.functional.cosine_similarity(a, b, dim=-1)  # (B, L)
        changed = ids_a != ids_b  # exactly one token per pair: the changed word
        assert bool((changed.sum(1) == 1).all())
        at_changed = per_token[changed]
        others = mask & ~changed
        out[kind] = {"whole": round(sum(whole) / count, 3), "at_changed_token": round(float(at_changed.mean()), 3),
                     "at_other_tokens": round(float(per_token[others].mean()), 3)}
    return out


def distinct_words(encoder: T5TextEncoder) -> float:
    captions = [f"a small {c} circle at the top on a {'gray' if c != 'gray' else 'black'} background" for c in COLORS]
    embeds, _ = encoder.encode(captions)
    vectors = torch.nn.functional.normalize(embeds[:, 2], dim=-1)  # the colour word's slot
    sims = vectors @ vectors.T
    off = ~torch.eye(len(COLORS), dtype=torch.bool)
    return round(float(sims[off].abs().mean()), 3)


def swap(encoder: T5TextEncoder) -> dict:
    a_text = "a small red circle at the top on a blue background"
    b_text = "a small blue circle at the top on a red background"
    (a, b), _ = encoder.encode([a_text, b_text])
    na, nb = torch.nn.functional.normalize(a, dim=-1), torch.nn.functional.normalize(b, dim=-1)
    best_match = float((na @ nb.T).max(1).values.mean())
    return {"aligned": round(_cos(a, b), 3), "mean_pooled": round(_cos(a.mean(0), b.mean(0)), 3),
            "best_match": round(best_match, 3)}


def probe(encoder: T5TextEncoder, train: int = 3000, test: int = 1000) -> dict:
    rng = random.Random(1)
    scenes = [random_scene(rng, 0.0) for _ in range(train + test)]
    embeds, mask = encoder.encode([s.caption for s in scenes])
    pooled = (embeds * mask[..., None]).sum(1) / mask.sum(1, keepdim=True)
    x = torch.cat([pooled, torch.ones(len(scenes), 1)], 1).double()
    colors = list(COLORS)
    out = {}
    for target in ("object_color", "background_color"):
        labels = torch.tensor([colors.index(s.objects[0].color if target == "object_color" else s.background)
                               for s in scenes])
        y = torch.nn.functional.one_hot(labels, len(colors)).double()
        xt, yt = x[:train], y[:train]
        w = torch.linalg.solve(xt.T @ xt + 1e-2 * torch.eye(x.shape[1], dtype=x.dtype), xt.T @ yt)
        out[target] = round(float(((x[train:] @ w).argmax(1) == labels[train:]).float().mean()), 3)
    return out


def figures(encoder: T5TextEncoder) -> dict:
    embeds, mask = encoder.encode(["a small red circle at the top left on a blue background"])
    rms = embeds[mask].pow(2).mean(-1).sqrt().mean()
    return {"token_rms": round(float(rms), 3), "one_word_change": one_word_change(encoder),
            "distinct_words": distinct_words(encoder), "swap": swap(encoder), "probe": probe(encoder)}


def report(directory: Path) -> dict:
    from transformers import T5Config, T5EncoderModel

    shipped = T5TextEncoder.from_pretrained(str(directory))
    torch.manual_seed(0)
    plain = T5EncoderModel(T5Config.from_pretrained(directory)).eval()
    baseline = T5TextEncoder(plain, shipped.tokenizer, identity={"name": "plain-random-init"})
    return {"embedded": figures(shipped), "plain_random_init": figures(baseline)}
