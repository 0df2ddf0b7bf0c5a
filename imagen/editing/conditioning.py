"""Mixing text conditions for interpolation and prompt differences, and sampling a list of mixed conditions.

A text condition here is the pair `(embeds (1, L, D), mask (1, L) bool)` that `Imagen.encode_prompts` returns
for one prompt (padded positions are mask False and embedding 0). Mixing pads both to one length; the mixed
mask keeps every token either side has. A mix that equals one side exactly (weight 0) returns that side
unchanged, and such images are sampled alone, so they equal the plain sample of that prompt bit for bit.
"""

from __future__ import annotations

from collections.abc import Sequence

import torch
import torch.nn.functional as F

Text = tuple[torch.Tensor, torch.Tensor]


def pad_text(text: Text, length: int) -> Text:
    embeds, mask = text
    extra = length - embeds.shape[1]
    if extra <= 0:
        return text
    return F.pad(embeds, (0, 0, 0, extra)), F.pad(mask, (0, extra), value=False)


def trim_text(text: Text) -> Text:
    """Drop trailing positions that no row attends to (keeping at least one)."""
    embeds, mask = text
    used = mask.any(0).nonzero()
    length = int(used.max()) + 1 if len(used) else 1
    return embeds[:, :length], mask[:, :length]


def lerp_text(a: Text, b: Text, weight: float) -> Text:
    """(1 - weight) a + weight b, masks OR-ed; exactly a at weight 0 and b at weight 1."""
    if weight == 0.0:
        return a
    if weight == 1.0:
        return b
    length = max(a[0].shape[1], b[0].shape[1])
    (ea, ma), (eb, mb) = pad_text(a, length), pad_text(b, length)
    return torch.lerp(ea, eb, weight), ma | mb


def shift_text(text: Text, source: Text, target: Text, scale: float) -> Text:
    """text + scale (target - source) (the text-diff move), masks OR-ed except where the sum is exactly 0 (a
    token the move removes, as at scale 1 when text = source and target is shorter); exactly `text` at scale 0."""
    if scale == 0.0:
        return text
    length = max(t[0].shape[1] for t in (text, source, target))
    (e, m), (es, ms), (et, mt) = (pad_text(t, length) for t in (text, source, target))
    embeds = e + scale * (et - es)
    return trim_text((embeds, (m | ms | mt) & (embeds != 0).any(-1)))


def one_image_per_condition(kwargs: dict, what: str) -> dict:
    """`kwargs` for `Imagen.request` when each image has a condition and seed of its own (`what`: interpolation,
    text-diff): ValueError for what only a plain call takes (copies per prompt, a generator, a negative prompt per
    image)."""
    if kwargs.get("num_images_per_prompt", 1) != 1:
        raise ValueError(f"{what} draws one image per condition: num_images_per_prompt is not taken (call it again "
                         "with another seed)")
    if kwargs.get("generator") is not None:
        raise ValueError(f"{what} takes its seeds as seed=: a generator is not taken")
    negative = kwargs.get("negative_prompt")
    if negative is not None and not isinstance(negative, str) and len(list(negative)) != 1:
        raise ValueError(f"{what} takes one negative_prompt for every image, got {negative!r}")
    return kwargs


def sample_texts(pipe, request, texts: Sequence[Text], *, alone: Sequence[bool]) -> dict[str, torch.Tensor]:
    """Run the cascade once per text condition (image i: `texts[i]`, `request.seeds[i]`, with the request's
    options, negative prompt, batch size and progress), {stage: (N, 3, R, R)}. Images flagged `alone` are sampled
    in a batch of their own (bit-identical to a plain one-prompt run); the others together, padded to one length,
    in batches of at most the request's `max_batch_size`."""
    seeds = request.seeds
    negative = None if request.negative_prompts is None else pipe.encode_prompts(request.negative_prompts[:1])
    groups = [[i] for i, single in enumerate(alone) if single]
    rest = [i for i, single in enumerate(alone) if not single]
    groups += [rest] if rest else []
    outputs: dict[str, list] = {}
    for group in groups:
        length = max(texts[i][0].shape[1] for i in group)
        padded = [pad_text(texts[i], length) for i in group]
        embeds, mask = torch.cat([e for e, _ in padded]), torch.cat([m for _, m in padded])
        neg = None if negative is None else (negative[0].expand(len(group), -1, -1), negative[1].expand(len(group), -1))
        images = pipe.generate_from_embeddings(embeds, mask, seeds=[seeds[i] for i in group], options=request.options,
                                               negative=neg, max_batch_size=request.max_batch_size,
                                               progress=request.progress)
        for name, tensor in images.items():
            slots = outputs.setdefault(name, [None] * len(texts))
            for row, i in enumerate(group):
                slots[i] = tensor[row]
    return {name: torch.stack(slots) for name, slots in outputs.items()}
