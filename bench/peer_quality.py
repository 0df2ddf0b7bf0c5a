#!/usr/bin/env python
"""Quality at equal compute against imagen-pytorch 2.1.0: both base 64 px models trained on the same shapes
data for the same minutes on this machine, one after the other, then judged on held-out prompts.

Steps (each skipped when its outputs are already in --work, so a killed run continues where it stopped):
1. data   (our venv) the first N training scenes of the shapes stream `imagen-train` reads (seed, index
          order), rendered at 64 px as uint8, and their captions' embeddings from the config's text encoder
          (the embedded T5, 256-dim; fp16, one row per distinct caption, padded with masks); and the held-out
          one-object prompts' embeddings.
2. ours   `imagen-train --stage base --minutes M` (subprocess) with the --our-config preset (shapes-tiny);
          then samples the prompts with the exported EMA model and the preset's default sampling
          (DPM-Solver++ 25 steps, dynamic thresholding at 0.995) at guidance --guidance.
3. peer   `bench/peer_quality_worker.py` in the peer's venv: its base Unet (see PEER_UNET there) in
          `Imagen(unets=...)`, trained by its `ImagenTrainer` on the data of step 1 in the same order for M
          minutes, then sampled with its own sampler (DDPM, --peer-steps steps, dynamic thresholding at its
          default 0.95, EMA weights) at the same guidance.
4. judge  `imagen.eval.evaluate` on both sets of images; a table, PNG grids, WORK/result.json (atomic).

Equal compute: both sides count M minutes of training-step time on the same 2 threads (ours: data rendering
+ text encoding + step, as imagen-train's budget counts it; the peer: batch read from the pre-rendered arrays
+ trainer step), same batch size, learning rate, warm-up, gradient clipping and EMA (taken from our config;
--peer-lr etc. change the peer's). Never run the two sides together: the second would slow the first.

    nohup python bench/peer_quality.py --minutes 30 --work runs/peer-quality > runs/peer-quality.out 2>&1 &
    python bench/peer_quality.py --quick           # 1 minute per side, 8 prompts: the plumbing end to end

Prints a table and, as the last line of stdout, one JSON object: {"ours": {"base64": {attribute: accuracy}},
"peer": {"base64": {...}}, "ours_ahead": {...}, "train": {...}, "sampling": {...}, "machine": {...}}.
"""

from __future__ import annotations

import argparse
import hashlib
import json
import logging
import os
import shutil
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

from bench.common import (  # noqa: E402
    DEFAULT_HARNESS,
    DEFAULT_PEER_PYTHON,
    atomic_save,
    check_peer,
    emit,
    machine,
    spawn_json,
)

WORKER = ROOT / "bench" / "peer_quality_worker.py"
ATTRIBUTES = ("background", "object_color", "position", "shape", "size", "overall", "object_found")
RESOLUTION = 64
log = logging.getLogger("peer_quality")


def _setup_logging(work: Path) -> None:
    work.mkdir(parents=True, exist_ok=True)
    fmt = logging.Formatter("%(asctime)s %(message)s", "%H:%M:%S")
    for handler in (logging.StreamHandler(sys.stderr), logging.FileHandler(work / "progress.log")):
        handler.setFormatter(fmt)
        log.addHandler(handler)
    log.setLevel(logging.INFO)


def _read_json(path: Path) -> dict | None:
    return json.loads(path.read_text(encoding="utf-8")) if path.is_file() else None


def _save_npy(path: Path, array) -> None:
    import numpy as np

    atomic_save(path, lambda handle: np.save(handle, array))


# ---------------------------------------------------------------------------------------------------------
# 1. data and prompts (our venv)
# ---------------------------------------------------------------------------------------------------------

def _encode_rows(encoder, captions: list[str], path_embeds: Path, path_masks: Path, chunk: int = 256) -> int:
    """Embeddings of `captions` into fp16 (U, L, D) and bool (U, L) .npy files, L the longest caption in
    tokens. Returns L."""
    import numpy as np

    length = max(int(encoder.tokenize(captions[i:i + chunk])[1].sum(1).max()) for i in range(0, len(captions), chunk))
    embeds = np.lib.format.open_memmap(path_embeds, "w+", np.float16, (len(captions), length, encoder.embed_dim))
    masks = np.zeros((len(captions), length), dtype=bool)
    for i in range(0, len(captions), chunk):
        e, m = encoder.encode(captions[i:i + chunk])
        embeds[i:i + len(e), :e.shape[1]] = e.float().numpy().astype(np.float16)
        masks[i:i + len(e), :m.shape[1]] = m.numpy()
        if i // chunk % 20 == 0:
            log.info("data: encoded %d/%d captions", min(i + chunk, len(captions)), len(captions))
    embeds.flush()
    del embeds
    np.save(path_masks, masks)
    return length


def prepare_data(work: Path, count: int, config) -> dict:
    """The first `count` scenes of `config`'s shapes stream at 64 px + their caption embeddings, in WORK/data
    (meta.json written last marks it complete)."""
    import numpy as np

    from imagen.io import atomic_write
    from imagen.shapes import render, training_scene
    from imagen.text import load_text_encoder

    directory = work / "data"
    encoder = load_text_encoder(config.text)
    seed, two = config.data.shapes_seed, config.data.two_object_prob
    probe = hashlib.sha256()  # the first scenes as rendered now: a change in the shapes code re-renders
    for i in range(16):
        scene = training_scene(seed, i, two)
        probe.update(scene.caption.encode() + np.asarray(render(scene, RESOLUTION)).tobytes())
    want = {"images": count, "resolution": RESOLUTION, "shapes_seed": seed, "two_object_prob": two,
            "text_encoder": encoder.identity["sha256"], "render_probe": probe.hexdigest()}
    meta = _read_json(directory / "meta.json")
    if meta is not None and all(meta.get(k) == v for k, v in want.items()):
        log.info("data: reusing %d pre-rendered images in %s", count, directory)
        return meta
    if (work / "peer" / "train.json").is_file():
        raise SystemExit(f"error: the pre-rendered data in {directory} is missing or differs from what this run "
                         f"needs ({count} images, the current shapes code and text encoder), but {work / 'peer'} "
                         "holds a peer model trained on it; remove that directory or use another --work")
    if config.data.source != "shapes":
        raise SystemExit(f"error: the comparison trains on the shapes data set; --our-config has data.source "
                         f"{config.data.source!r}")
    shutil.rmtree(directory, ignore_errors=True)
    directory.mkdir(parents=True)
    log.info("data: rendering %d shapes scenes at %d px", count, RESOLUTION)
    images = np.lib.format.open_memmap(directory / "images.npy", "w+", np.uint8, (count, RESOLUTION, RESOLUTION, 3))
    rows, captions = np.zeros(count, dtype=np.int32), {}
    for i in range(count):
        scene = training_scene(seed, i, two)
        images[i] = np.asarray(render(scene, RESOLUTION))
        rows[i] = captions.setdefault(scene.caption, len(captions))
    images.flush()
    del images
    np.save(directory / "captions.npy", rows)
    log.info("data: %d distinct captions; encoding them", len(captions))
    length = _encode_rows(encoder, list(captions), directory / "embeds.npy", directory / "masks.npy")
    meta = {**want, "distinct_captions": len(captions), "text_len": length, "embed_dim": encoder.embed_dim}
    atomic_write(directory / "meta.json", json.dumps(meta, indent=2))
    return meta


def prepare_prompts(work: Path, count: int, config) -> tuple[list[str], str]:
    """Held-out one-object prompts and their embeddings in WORK/prompts; returns (prompts, their sha256)."""
    from imagen.eval.model import held_out_prompts
    from imagen.io import atomic_write
    from imagen.text import load_text_encoder

    prompts = held_out_prompts(count)
    sha = hashlib.sha256(json.dumps(prompts).encode()).hexdigest()
    directory = work / "prompts"
    meta = _read_json(directory / "meta.json")
    if meta is None or meta.get("sha256") != sha:
        shutil.rmtree(directory, ignore_errors=True)
        directory.mkdir(parents=True)
        _encode_rows(load_text_encoder(config.text), prompts, directory / "embeds.npy", directory / "masks.npy")
        atomic_write(directory / "meta.json", json.dumps({"sha256": sha, "prompts": prompts}, indent=2))
    return prompts, sha


# ---------------------------------------------------------------------------------------------------------
# 2. ours (imagen-train in a subprocess, sampling here)
# ---------------------------------------------------------------------------------------------------------

def _our_train_info(run: Path, minutes: float, batch: int) -> dict:
    """Steps and training-step seconds from the newest checkpoint's state.json (imagen-train saves one when it
    stops), the stop reason and final loss from metrics.jsonl."""
    checkpoints = sorted((run / "base" / "checkpoints").glob("step-*/state.json"))
    document = json.loads(checkpoints[-1].read_text(encoding="utf-8"))
    steps, seconds = int(document["step"]), float(document["state"]["elapsed"])
    records = [json.loads(line) for line in (run / "base" / "metrics.jsonl").read_text().splitlines() if line.strip()]
    losses = [r["loss"] for r in records if isinstance(r.get("loss"), float)][-5:]
    stopped = [r["stopped"] for r in records if "stopped" in r]
    return {"steps": steps, "train_s": round(seconds, 1), "images_seen": steps * batch, "minutes": minutes,
            "stopped": stopped[-1] if stopped else None,
            "final_loss": round(sum(losses) / len(losses), 5) if losses else None}


def _our_settings(args: argparse.Namespace) -> dict:
    return {"minutes": args.minutes, "our_config": args.our_config, "overrides": list(args.set)}


def train_ours(args: argparse.Namespace, side: Path) -> dict:
    info_path, run = side / "train.json", side / "run"
    info = _read_json(info_path)
    if info is not None:
        _check_same(info, _our_settings(args), side)
        log.info("ours: reusing the trained model in %s (%s steps)", run, info["steps"])
        return info
    cmd = [sys.executable, "-m", "trainers.cli", "--config", args.our_config, "--output", str(run), "--stage", "base",
           "--minutes", str(args.minutes), "--no-progress"]
    for override in args.set:
        cmd += ["--set", override]
    (side / "samples.json").unlink(missing_ok=True)  # samples of an earlier model are stale
    if (run / "run-config.json").is_file():
        cmd.append("--resume")  # an earlier run of this script was stopped: continue it
    log.info("ours: imagen-train for %s min (log: %s, metrics: %s)", args.minutes, side / "train.log",
             run / "base" / "metrics.jsonl")
    from configs import load_config

    started = time.perf_counter()
    _run_logged(cmd, "ours: imagen-train", args.threads, side / "train.log", expect_json=False)
    batch = load_config(args.our_config, args.set).base.train.batch_size
    info = {**_our_train_info(run, args.minutes, batch), "wall_s": round(time.perf_counter() - started, 1),
            **_our_settings(args)}
    from imagen.io import atomic_write

    atomic_write(info_path, json.dumps(info, indent=2))
    log.info("ours: trained %s steps", info["steps"])
    return info


def sample_ours(args: argparse.Namespace, side: Path, prompts: list[str], sha: str) -> dict:
    info = _read_json(side / "samples.json")
    if info is not None and info.get("prompts_sha256") == sha and (side / "samples.npy").is_file():
        return info
    import torch

    from imagen import Imagen

    torch.set_num_threads(args.threads)
    pipe = Imagen.from_pretrained(side / "run")
    options = pipe.sampling_options(guidance_scale=args.guidance, stop_at_stage="base")["base"]
    log.info("ours: sampling %d prompts (%s)", len(prompts), options.as_dict())
    started = time.perf_counter()
    images = pipe.generate(prompts, guidance_scale=args.guidance, stop_at_stage="base", seed=args.seed,
                           max_batch_size=16, progress=False)["base"]
    seconds = time.perf_counter() - started
    array = ((images.clamp(-1, 1) + 1) * 127.5).round().to(torch.uint8).permute(0, 2, 3, 1).numpy()
    _save_npy(side / "samples.npy", array)
    stage = pipe.stages["base"]
    info = {"prompts_sha256": sha, "count": len(array), **options.as_dict(), "weights": "EMA",
            "seconds": round(seconds, 1), "params": sum(p.numel() for p in stage.net.parameters()),
            "config": json.loads(json.dumps(_asdict(stage.config)))}
    from imagen.io import atomic_write

    atomic_write(side / "samples.json", json.dumps(info, indent=2))
    return info


def _asdict(config) -> dict:
    import dataclasses

    return {k: v for k, v in dataclasses.asdict(config).items() if k in ("unet", "objective", "schedule", "train")}


# ---------------------------------------------------------------------------------------------------------
# 3. the peer (its own venv)
# ---------------------------------------------------------------------------------------------------------

def run_peer(args: argparse.Namespace, work: Path, config, sha: str) -> dict:
    side = work / "peer"
    train = config.base.train
    hyper = {"--batch": args.peer_batch or train.batch_size, "--lr": args.peer_lr or train.lr,
             "--warmup-steps": train.warmup_steps if args.peer_warmup is None else args.peer_warmup,
             "--grad-clip": train.grad_clip, "--ema-beta": train.ema_decay, "--ema-power": train.ema_warmup_power,
             "--ema-update-after-step": train.ema_update_after_step}
    trained = _read_json(side / "train.json")
    if trained is not None:
        used = trained["config"]["trainer"]
        _check_same({"minutes": trained["minutes"], "batch": used["batch"], "lr": used["lr"],
                     "warmup_steps": used["warmup_steps"]},
                    {"minutes": args.minutes, "batch": hyper["--batch"], "lr": hyper["--lr"],
                     "warmup_steps": hyper["--warmup-steps"]}, side)
    sampled = _read_json(side / "samples.json")
    if trained is not None and sampled is not None and sampled.get("prompts_sha256") == sha \
            and (side / "samples.npy").is_file():
        log.info("peer: reusing its samples in %s", side)
        return {"train": trained, "sample": sampled}
    cmd = [str(args.peer_python), str(WORKER), "--data", str(work / "data"), "--prompts", str(work / "prompts"),
           "--out", str(side), "--minutes", str(args.minutes), "--sample-steps", str(args.peer_steps),
           "--guidance", str(args.guidance), "--seed", str(args.seed), "--threads", str(args.threads),
           "--harness", str(args.harness), *[str(x) for kv in hyper.items() for x in kv]]
    if trained is None:
        log.info("peer: ImagenTrainer for %s min (log: %s)", args.minutes, side / "train.log")
    else:
        log.info("peer: sampling the trained model (log: %s)", side / "train.log")
    return _run_logged(cmd, "peer: imagen-pytorch worker", args.threads, side / "train.log")


# ---------------------------------------------------------------------------------------------------------
# 4. judging and the report
# ---------------------------------------------------------------------------------------------------------

def _run_logged(cmd: list[str], what: str, threads: int, path: Path, expect_json: bool = True) -> dict:
    try:
        return spawn_json(cmd, what, threads, log=path, expect_json=expect_json)
    except RuntimeError as error:
        log.error("%s", error)
        raise SystemExit(f"error: {what} failed; see {path}") from None


def _check_same(found: dict, wanted: dict, directory: Path) -> None:
    """Refuse to reuse a model in `directory` trained with other settings than this run's."""
    differ = {k: (found.get(k), v) for k, v in wanted.items() if found.get(k) != v}
    if differ:
        detail = ", ".join(f"{k}: {old!r} there, {new!r} now" for k, (old, new) in differ.items())
        raise SystemExit(f"error: {directory} holds a model trained with other settings ({detail}); "
                         f"use another --work or remove {directory}")


def judge(side: Path, prompts: list[str]) -> dict | None:
    import numpy as np

    from imagen.eval import evaluate

    if not (side / "samples.npy").is_file():
        return None
    images = np.load(side / "samples.npy")
    if len(images) != len(prompts):
        return None
    summary = evaluate(list(images), prompts)["one_object"]
    return {k: summary[k] for k in ATTRIBUTES if summary.get(k) is not None}


def write_grid(side: Path, prompts: list[str], path: Path, count: int = 16) -> None:
    import io

    import numpy as np
    from PIL import Image

    from imagen.grid import labelled_grid
    from imagen.io import atomic_write

    if not (side / "samples.npy").is_file():
        return
    images = [Image.fromarray(a) for a in np.load(side / "samples.npy")[:count]]
    buffer = io.BytesIO()
    labelled_grid(images, prompts[:count], columns=8, cell=96).save(buffer, format="PNG")
    atomic_write(path, buffer.getvalue())


def table(ours: dict | None, peer: dict | None) -> str:
    lines = [f"{'attribute':<14}{'ours':>8}{'peer':>8}", "-" * 30]
    for name in ATTRIBUTES:
        cells = [f"{side[name]:>8.1%}" if side and side.get(name) is not None else f"{'-':>8}" for side in (ours, peer)]
        lines.append(f"{name:<14}{''.join(cells)}")
    return "\n".join(lines)


def report(args: argparse.Namespace, work: Path, prompts: list[str], data_meta: dict, started: float) -> dict:
    ours, peer = judge(work / "ours", prompts), judge(work / "peer", prompts)
    for name in ("ours", "peer"):
        write_grid(work / name, prompts, work / f"grid-{name}.png")
    result = {"ours": {"base64": ours}, "peer": {"base64": peer}}
    if ours and peer:
        result["ours_ahead"] = {k: ours[k] > peer[k] for k in ATTRIBUTES if k in ours and k in peer}
        result["ours_ahead_on_every_attribute"] = all(result["ours_ahead"][k] for k in
                                                      ("background", "object_color", "position", "shape", "size"))
    result["train"] = {name: _read_json(work / name / "train.json") for name in ("ours", "peer")}
    result["sampling"] = {name: _read_json(work / name / "samples.json") for name in ("ours", "peer")}
    params = {"ours": (result["sampling"]["ours"] or {}).get("params"),
              "peer": (result["train"]["peer"] or {}).get("params")}
    if params["ours"] and params["peer"]:
        params["ratio"] = round(params["ours"] / params["peer"], 4)
    result["params"] = params
    result["settings"] = {"minutes": args.minutes, "prompts": len(prompts), "guidance": args.guidance,
                          "seed": args.seed, "our_config": args.our_config, "overrides": args.set,
                          "peer_steps": args.peer_steps, "data": data_meta, "quick": args.quick, "work": str(work)}
    result["notes"] = [
        "one-object held-out prompts, judged on the pixels by imagen.eval.evaluate (fractions in [0, 1])",
        "both sides trained from scratch on the same shapes scenes in the same order (the peer wraps around after "
        f"{data_meta['images']} images), M minutes of training-step time each, one after the other",
        "ours pays for rendering and T5 encoding inside its budget; the peer reads pre-rendered arrays and "
        "precomputed embeddings",
        "sampling: each side's own default sampler and thresholding percentile, the same guidance, EMA weights"]
    result["machine"] = {**machine(args.threads), "load_avg": list(os.getloadavg())}
    result["wall_s"] = round(time.perf_counter() - started, 1)
    return result


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--minutes", type=float, default=None, help="training minutes per side (default 30, quick 1)")
    ap.add_argument("--work", type=Path, default=None,
                    help="working directory; outputs found there are reused (default runs/peer-quality, "
                         "quick runs/peer-quality-quick)")
    ap.add_argument("--quick", action="store_true", help="smoke run: 1 minute per side, 8 prompts, 2000 images")
    ap.add_argument("--prompts", type=int, default=None, help="held-out one-object prompts (default 48, quick 8)")
    ap.add_argument("--images", type=int, default=None, help="pre-rendered training images for the peer "
                                                             "(default 2000 per minute)")
    ap.add_argument("--our-config", default="shapes-tiny", help="our preset or config file (its base stage)")
    ap.add_argument("--set", action="append", default=[], metavar="KEY=VALUE", help="override for our config")
    ap.add_argument("--skip-ours", action="store_true", help="do not train or sample ours (reuse what --work has)")
    ap.add_argument("--skip-peer", action="store_true", help="do not train or sample the peer (reuse what --work has)")
    ap.add_argument("--guidance", type=float, default=5.0, help="classifier-free guidance, both sides (default 5)")
    ap.add_argument("--peer-steps", type=int, default=50, help="the peer's DDPM sampling steps (default 50)")
    ap.add_argument("--peer-lr", type=float, default=None, help="the peer's learning rate (default: ours)")
    ap.add_argument("--peer-batch", type=int, default=None, help="the peer's batch size (default: ours)")
    ap.add_argument("--peer-warmup", type=int, default=None, help="the peer's LR warm-up steps (default: ours)")
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--threads", type=int, default=2, help="torch threads, both sides (default 2)")
    ap.add_argument("--peer-python", default=str(DEFAULT_PEER_PYTHON), help="python of the imagen-pytorch venv")
    ap.add_argument("--harness", default=str(DEFAULT_HARNESS), help="the anchor harness (for its offline setup)")
    ap.add_argument("--out", type=Path, default=None, help="also write the JSON here (atomically)")
    args = ap.parse_args(argv)
    args.minutes = args.minutes or (1.0 if args.quick else 30.0)
    count = args.prompts or (8 if args.quick else 48)
    images = args.images or max(2000, int(args.minutes * 2000))
    work = args.work or ROOT / "runs" / ("peer-quality-quick" if args.quick else "peer-quality")
    if not args.skip_peer:
        check_peer(args.peer_python, args.harness)
    _setup_logging(work)
    os.environ.update(HF_HUB_OFFLINE="1", TRANSFORMERS_OFFLINE="1")
    from configs import load_config
    from imagen.io import atomic_write

    started = time.perf_counter()
    config = load_config(args.our_config, args.set)
    log.info("peer_quality: %s min per side, %d prompts, work %s (pid %d)", args.minutes, count, work, os.getpid())
    prompts, sha = prepare_prompts(work, count, config)
    data_meta = prepare_data(work, images, config) if not args.skip_peer else _read_json(work / "data" / "meta.json")
    if not args.skip_ours:
        train_ours(args, work / "ours")
        sample_ours(args, work / "ours", prompts, sha)
    if not args.skip_peer:
        run_peer(args, work, config, sha)
    result = report(args, work, prompts, data_meta or {"images": None}, started)
    text = json.dumps(result, indent=2)
    atomic_write(work / "result.json", text)
    if args.out:
        atomic_write(args.out, text)
    log.info("done: %s\n%s", work / "result.json", table(result["ours"]["base64"], result["peer"]["base64"]))
    print(table(result["ours"]["base64"], result["peer"]["base64"]))
    emit(result)
    return 0


if __name__ == "__main__":
    sys.exit(main())
