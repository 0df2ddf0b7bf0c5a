#!/usr/bin/env python
"""The imagen-pytorch 2.1.0 side of `bench/peer_quality.py`: run with the peer venv's python.

Trains the peer's base 64 px `Unet` inside `Imagen(unets=(unet,))` with its own `ImagenTrainer` (Adam,
accelerate on CPU, its EMA) on the pre-rendered shapes data set that `peer_quality.py` writes in our venv
(`DATA/images.npy` uint8 (N, 64, 64, 3); `captions.npy` int32 (N,) row of `embeds.npy` fp16 (U, Lmax, D) and
`masks.npy` bool (U, Lmax), our embedded T5's caption embeddings), read in index order, batch after batch, as
`imagen-train` reads the shapes stream (wrapping around after N images), for `--minutes` of training-step
time (batch preparation + `trainer(...)` + `trainer.update()`, the same accounting as `imagen-train`'s
time budget). Then samples the held-out prompts' precomputed embeddings (`PROMPTS/embeds.npy`, `masks.npy`)
with the EMA weights and the peer's own sampler (`Imagen.sample`: DDPM ancestral on its continuous-time
cosine schedule, `--sample-steps`, classifier-free guidance `cond_scale`, its dynamic thresholding at its
default percentile 0.95), and writes `OUT/samples.npy` uint8 (P, 64, 64, 3).

Outputs in OUT: train.log (via the driver), weights.pt (tensors only: EMA and online U-Net state dicts),
train.json (steps, seconds, losses, configs), samples.npy + samples.json. A finished phase is not redone:
with train.json and weights.pt present only sampling runs. Imports: stdlib, numpy, torch, imagen_pytorch,
and the anchor harness's offline setup (via bench/common.py, stdlib only). Prints one JSON line at the end.
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

from bench.common import DEFAULT_HARNESS, atomic_save, peak_rss_mb, peer_offline  # noqa: E402  (stdlib only)

# The peer's base U-Net for this comparison: the anchor harness's base config (dim 64, mults 1,2,4, two
# ResNet blocks per level, self-attention at the lowest level, cross-attention at the two lowest) at dim 32,
# which puts it within 2% of the parameters of our shapes-tiny base U-Net (4.58M vs 4.66M with 256-dim text).
# Everything else is imagen-pytorch's default (attention heads 8 x 64, attention-pooled text, etc.).
PEER_UNET = {"dim": 32, "dim_mults": [1, 2, 4], "num_resnet_blocks": 2, "layer_attns": [False, False, True],
             "layer_cross_attns": [False, True, True]}
RESOLUTION = 64


def _write_json(path: Path, data: dict) -> None:
    atomic_save(path, lambda h: h.write(json.dumps(data, indent=2).encode()))


def build_imagen(torch, text_dim: int, sample_steps: int):
    from imagen_pytorch import Imagen, Unet

    unet = Unet(**{k: tuple(v) if isinstance(v, list) else v for k, v in PEER_UNET.items()}, text_embed_dim=text_dim)
    # continuous-time training (t ~ U(0, 1)): `timesteps` only sets the sampling grid
    return Imagen(unets=(unet,), image_sizes=(RESOLUTION,), text_embed_dim=text_dim, cond_drop_prob=0.1,
                  timesteps=sample_steps)


def train(args: argparse.Namespace, out: Path) -> dict:
    import numpy as np
    import torch
    from imagen_pytorch import ImagenTrainer

    data = Path(args.data)
    meta = json.loads((data / "meta.json").read_text())
    images = np.load(data / "images.npy", mmap_mode="r")
    caption_rows = np.load(data / "captions.npy")
    embeds = np.load(data / "embeds.npy", mmap_mode="r")
    masks = np.load(data / "masks.npy")
    n, length, text_dim = len(images), meta["text_len"], embeds.shape[-1]
    torch.manual_seed(args.seed)
    imagen = build_imagen(torch, text_dim, args.sample_steps)
    ema = {"beta": args.ema_beta, "power": args.ema_power, "inv_gamma": 1.0, "update_every": 1,
           "update_after_step": args.ema_update_after_step}
    trainer = ImagenTrainer(imagen, lr=args.lr, warmup_steps=args.warmup_steps or None,
                            max_grad_norm=args.grad_clip or None, verbose=False,
                            **{f"ema_{k}": v for k, v in ema.items()})
    params = sum(p.numel() for p in imagen.unets[0].parameters())
    print(f"peer: {params:,} U-Net parameters, {n:,} images, batch {args.batch}, lr {args.lr}, "
          f"{args.minutes} min", flush=True)
    budget, elapsed, step, position, losses = args.minutes * 60.0, 0.0, 0, 0, []
    wall_start = last_log = time.perf_counter()
    while elapsed < budget:
        started = time.perf_counter()
        rows = np.arange(position, position + args.batch) % n
        position += args.batch
        batch = torch.from_numpy(np.ascontiguousarray(images[rows])).permute(0, 3, 1, 2).float().div_(255.0)
        caps = caption_rows[rows]
        text = torch.from_numpy(np.ascontiguousarray(embeds[caps, :length]).astype(np.float32))
        mask = torch.from_numpy(np.ascontiguousarray(masks[caps, :length]))
        loss = trainer(batch, text_embeds=text, text_masks=mask, unet_number=1, max_batch_size=args.batch)
        trainer.update(unet_number=1)
        elapsed += time.perf_counter() - started
        step += 1
        losses.append(float(loss))
        if time.perf_counter() - last_log >= args.log_every_s:
            last_log = time.perf_counter()
            recent = losses[-25:]
            print(f"peer: step {step} loss {sum(recent) / len(recent):.4f} elapsed {elapsed / 60:.1f}/"
                  f"{args.minutes} min, {step * args.batch / elapsed:.1f} images/s", flush=True)
    state = {"ema": trainer.ema_unets[0].ema_model.state_dict(), "online": imagen.unets[0].state_dict()}
    atomic_save(out / "weights.pt", lambda h: torch.save(state, h))
    result = {"steps": step, "train_s": round(elapsed, 1), "wall_s": round(time.perf_counter() - wall_start, 1),
              "images_seen": step * args.batch, "epochs": round(step * args.batch / n, 3), "minutes": args.minutes,
              "params": params, "losses": [round(v, 5) for v in losses[:: max(1, len(losses) // 200)]],
              "final_loss": round(sum(losses[-50:]) / max(1, len(losses[-50:])), 5),
              "peak_rss_mb": round(peak_rss_mb(), 1), "torch": torch.__version__,
              "config": {"unet": {**PEER_UNET, "text_embed_dim": text_dim},
                         "imagen": {"image_sizes": [RESOLUTION], "cond_drop_prob": 0.1,
                                    "defaults": "pred_objectives 'noise', cosine schedule, l2 loss, min-SNR weight "
                                                "gamma 5, dynamic thresholding 0.95"},
                         "trainer": {"class": "ImagenTrainer", "optimizer": "Adam (its default)", "lr": args.lr,
                                     "betas": [0.9, 0.99], "warmup_steps": args.warmup_steps,
                                     "max_grad_norm": args.grad_clip, "batch": args.batch, "ema": ema}}}
    _write_json(out / "train.json", result)
    print(f"peer: trained {step} steps ({elapsed / 60:.1f} min of steps)", flush=True)
    return result


def sample(args: argparse.Namespace, out: Path, text_dim: int) -> dict:
    import numpy as np
    import torch

    prompts = Path(args.prompts)
    embeds = torch.from_numpy(np.load(prompts / "embeds.npy").astype(np.float32))
    masks = torch.from_numpy(np.load(prompts / "masks.npy"))
    imagen = build_imagen(torch, text_dim, args.sample_steps)
    state = torch.load(out / "weights.pt", map_location="cpu", weights_only=True)
    imagen.unets[0].load_state_dict(state["ema"])  # what ImagenTrainer.sample swaps in (use_ema_unets)
    imagen.eval()
    imagen.noise_schedulers[0].num_timesteps = args.sample_steps
    chunks, started = [], time.perf_counter()
    for first in range(0, len(embeds), args.sample_batch):
        rows = slice(first, first + args.sample_batch)
        torch.manual_seed(args.seed + first)
        with torch.no_grad():
            images = imagen.sample(text_embeds=embeds[rows], text_masks=masks[rows], cond_scale=args.guidance,
                                   use_tqdm=False)  # (b, 3, 64, 64) in [0, 1]
        chunks.append((images.clamp(0, 1) * 255).round().to(torch.uint8).permute(0, 2, 3, 1).numpy())
        print(f"peer: sampled {min(first + args.sample_batch, len(embeds))}/{len(embeds)}", flush=True)
    array = np.concatenate(chunks)
    atomic_save(out / "samples.npy", lambda h: np.save(h, array))
    info = {"prompts_sha256": json.loads((prompts / "meta.json").read_text())["sha256"], "count": len(array),
            "sampler": "imagen-pytorch Imagen.sample (DDPM ancestral, uniform continuous-time grid)",
            "steps": args.sample_steps, "cond_scale": args.guidance, "dynamic_thresholding": True,
            "dynamic_thresholding_percentile": imagen.dynamic_thresholding_percentile, "weights": "EMA",
            "seconds": round(time.perf_counter() - started, 1)}
    _write_json(out / "samples.json", info)
    return info


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--data", required=True, help="pre-rendered training set (peer_quality.py writes it)")
    ap.add_argument("--prompts", required=True, help="held-out prompts' embeddings")
    ap.add_argument("--out", required=True, help="output directory")
    ap.add_argument("--minutes", type=float, required=True, help="training-step time budget")
    ap.add_argument("--batch", type=int, default=32)
    ap.add_argument("--lr", type=float, default=1e-4)
    ap.add_argument("--warmup-steps", type=int, default=0)
    ap.add_argument("--grad-clip", type=float, default=0.0, help="max grad norm; 0: none (the peer's default)")
    ap.add_argument("--ema-beta", type=float, default=0.995)
    ap.add_argument("--ema-power", type=float, default=0.75)
    ap.add_argument("--ema-update-after-step", type=int, default=0)
    ap.add_argument("--sample-steps", type=int, default=50)
    ap.add_argument("--sample-batch", type=int, default=16)
    ap.add_argument("--guidance", type=float, default=5.0)
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--log-every-s", type=float, default=30.0)
    ap.add_argument("--harness", default=str(DEFAULT_HARNESS))
    args = ap.parse_args(argv)
    import numpy as np
    import torch

    torch.set_num_threads(args.threads)
    peer_offline(args.harness)
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    if (out / "train.json").is_file() and (out / "weights.pt").is_file():
        trained = json.loads((out / "train.json").read_text())
        print(f"peer: reusing the trained model in {out} ({trained['steps']} steps)", flush=True)
    else:
        trained = train(args, out)
    text_dim = int(np.load(Path(args.data) / "embeds.npy", mmap_mode="r").shape[-1])
    sampled = sample(args, out, text_dim)
    print(json.dumps({"train": trained, "sample": sampled}), flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
