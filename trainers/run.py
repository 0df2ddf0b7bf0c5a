"""A training run: the stages of a cascade trained in order under one directory, each exported as soon as
it is done, so the directory is always a loadable (possibly partial) model.

    RUN_DIR/
      run-config.json        the resolved RunConfig (reproduce with imagen-train --config RUN_DIR/run-config.json)
      config.json            the exported model (imagen-sample --model RUN_DIR), EMA weights:
      base.safetensors, sr1.safetensors, ...
      base/ checkpoints/ metrics.jsonl tensorboard/ samples/
      text-cache/            caption embeddings of file data sets
      .lock                  held by the process training in the directory (its PID)
"""

from __future__ import annotations

import contextlib
import fcntl
import os
import shutil
from dataclasses import dataclass
from pathlib import Path

import torch
from accelerate import Accelerator

from configs import RunConfig, to_json
from imagen import checkpoint, lora
from imagen.io import atomic_write
from imagen.lora import adapter_weights
from imagen.stage import Stage
from imagen.text import load_text_encoder, same_encoder

from .sharding import is_sharded_checkpoint, read_ema_weights
from .trainer import StageResult, StageTrainer

RUN_CONFIG, LOCK_FILE = "run-config.json", ".lock"


@dataclass(frozen=True)
class InitModel:
    """A trained model that fine-tuning starts from (`imagen-train --init-from`): its directory, config, config.json
    as written (`checkpoint.read_model`) and per-stage weights."""

    directory: Path
    config: RunConfig
    document: dict
    weights: dict[str, dict[str, torch.Tensor]]
    name: str = ""  # as the user named it (a shipped name, a directory): what LoRA adapters refer to

    @property
    def text_identity(self) -> dict:
        return self.document.get("text_encoder", {})

    @classmethod
    def load(cls, name_or_path: str | Path) -> InitModel:
        directory = checkpoint.resolve_model(name_or_path)
        return cls(directory, *checkpoint.read_model(directory), name=str(name_or_path))

    def stage_weights(self, name: str) -> dict[str, torch.Tensor]:
        if name not in self.weights:
            raise ValueError(f"--init-from {self.directory} has no stage {name} (it has "
                             f"{', '.join(self.weights)}): train only its stages with --stage")
        return self.weights[name]


@contextlib.contextmanager
def run_lock(run_dir: Path):
    """Hold an exclusive lock on `run_dir` (its `.lock` file, with the holder's PID) while a run trains in it; the
    OS releases it when the process dies, however it dies. ValueError naming the holder when another process
    has it. Only the main process of a launch locks."""
    if not is_launch_main_process():
        yield
        return
    run_dir.mkdir(parents=True, exist_ok=True)
    handle = open(run_dir / LOCK_FILE, "a+", encoding="utf-8")  # noqa: SIM115 (held for the whole run)
    try:
        fcntl.flock(handle, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except BlockingIOError:
        handle.seek(0)
        holder = handle.read().strip() or "unknown"
        handle.close()
        raise ValueError(f"{run_dir} is in use by another imagen-train (PID {holder}): wait for it to finish, or "
                         "choose another --output") from None
    handle.seek(0)
    handle.truncate()
    handle.write(f"{os.getpid()}\n")
    handle.flush()
    try:
        yield
    finally:
        fcntl.flock(handle, fcntl.LOCK_UN)
        handle.close()


def is_launch_main_process() -> bool:
    """Whether this is the main process of a launch (or no launch), known before the process group exists."""
    return int(os.environ.get("RANK", "0")) == 0


def check_output_dir(run_dir: Path, resume: bool) -> bool:
    """Refuse, before anything is written, an --output that is a file or a non-empty directory holding no run
    (a saved model, the user's own files): training would write over it. Returns whether the run directory is new
    (absent or empty), so that a run refused before its first checkpoint can be removed again."""
    if run_dir.exists() and not run_dir.is_dir():
        raise ValueError(f"--output {run_dir} is a file: give a directory for the run")
    entries = [p.name for p in run_dir.iterdir() if p.name != LOCK_FILE] if run_dir.is_dir() else []
    if entries and not resume and not (run_dir / RUN_CONFIG).is_file():
        raise ValueError(f"--output {run_dir} is not empty and holds no imagen-train run (it has {entries[0]}): "
                         "choose a new or empty directory")
    return not entries


def remove_unstarted_run(run_dir: Path) -> None:
    """Delete a new run directory whose run stopped before writing any checkpoint (a usage error found once the
    run had started), so that the corrected command can start it again."""
    if run_dir.is_dir() and not any(run_dir.glob("*/checkpoints/*")):
        shutil.rmtree(run_dir)


def prepare_run_dir(run_dir: Path, config: RunConfig, resume: bool) -> None:
    """Create the run directory and write its resolved config (the main process of a launch); refuse to mix
    runs."""
    if not is_launch_main_process():
        return
    saved = run_dir / RUN_CONFIG
    if saved.exists() and not resume:
        raise ValueError(f"{run_dir} already holds a run; pass --resume to continue it, or choose a new --output")
    run_dir.mkdir(parents=True, exist_ok=True)
    atomic_write(saved, to_json(config))


def train_run(config: RunConfig, run_dir: Path, stages: list[str], *, resume: bool, max_steps: int | None = None,
              accelerator: Accelerator | None = None, progress: bool = True,
              init: InitModel | None = None) -> dict[str, StageResult]:
    """Train `stages` in order (resuming each from its newest checkpoint when `resume`), exporting after each.
    A stage with no checkpoint to resume starts from `init`'s weights when given (fine-tuning), and the exported
    model carries `init`'s other stages unchanged, so a tuned base still samples the whole cascade. Stops
    early, with everything saved, if a stage is interrupted. An accelerator made here is ended here: a process
    that exits with its process group still up can abort in gloo's threads (SIGABRT) after the run finished."""
    lora = [name for name in stages if config.stages()[name].train.lora_rank]
    if lora and init is None:
        raise ValueError("LoRA (--lora) adapts a trained model: give it with --init-from MODEL")
    owned = accelerator is None
    accelerator = accelerator or Accelerator(mixed_precision=_mixed_precision(config, stages))
    encoder = load_text_encoder(config.text, device=accelerator.device)
    if init is not None:
        _check_init(init, encoder.identity, stages)
    inherited = {} if init is None or lora else {
        n: w for n, w in init.weights.items() if n in config.stages() and n not in stages}
    base_model = None if init is None else checkpoint.base_model_record(init.document, init.name, stages)
    results: dict[str, StageResult] = {}
    for name in stages:
        try:
            result = _train_stage(config, name, run_dir, accelerator, encoder, resume, init, max_steps, progress)
        except ValueError as e:  # its data or settings: say which stage (the ones before it are trained)
            raise ValueError(f"stage {name}: {e}" if len(stages) > 1 else str(e)) from None
        results[name] = result
        if accelerator.is_main_process and name in lora:
            export_lora(run_dir, config.stages()[name].train, init.name, encoder.identity,
                        {name: adapter_weights(result.ema_state)})
        elif accelerator.is_main_process:
            export(run_dir, config, encoder.identity, {**inherited, name: result.ema_state}, base_model)
        accelerator.wait_for_everyone()
        if result.reason == "interrupted":
            break
    if owned:  # every process got here (a failed run leaves it up: destroying it then can deadlock)
        accelerator.end_training()
    return results


def _train_stage(config: RunConfig, name: str, run_dir: Path, accelerator: Accelerator, encoder, resume: bool,
                 init: InitModel | None, max_steps: int | None, progress: bool) -> StageResult:
    trainer = StageTrainer(config, name, run_dir / name, accelerator, encoder, cache_dir=run_dir / "text-cache",
                           progress=progress)
    resumed = resume and trainer.resume()
    if init is not None and not resumed:
        trainer.start_from(init.stage_weights(name), init.directory / checkpoint.weights_file(name))
    return trainer.fit(max_steps)


def _check_init(init: InitModel, text_identity: dict, stages: list[str]) -> None:
    """Refuse, before any training, a model without the stages to train or with another text encoder."""
    for name in stages:
        init.stage_weights(name)
    if not same_encoder(init.text_identity, text_identity):
        raise ValueError(f"--init-from {init.directory} was trained with the text encoder "
                         f"{init.text_identity.get('name')!r}, not this config's {text_identity.get('name')!r}: "
                         "keep the model's text encoder (drop the text.* overrides)")


def export(run_dir: Path, config: RunConfig, text_identity: dict, weights: dict,
           base_model: dict | None = None) -> None:
    """(Re)write the exported model in `run_dir` with `weights` plus the stages exported before; `base_model`
    (the model a fine-tuning run started from) defaults to what the previous export recorded."""
    previous = {}
    if (run_dir / checkpoint.CONFIG_FILE).is_file():
        document = checkpoint.read_document(run_dir)
        base_model = base_model or document.get("base_model")
        for name in document.get("stages", []):
            if name not in weights and (run_dir / f"{name}.safetensors").is_file():
                previous[name] = checkpoint.load_stage_weights(run_dir / f"{name}.safetensors")
    checkpoint.write_model(run_dir, config, text_identity, {**previous, **weights}, base_model=base_model)


def export_lora(run_dir: Path, train, base_model: str, text_identity: dict,
                weights: dict[str, dict[str, torch.Tensor]]) -> None:
    """(Re)write the run's adapters (imagen.lora) with `weights` plus the stages exported before."""
    previous = {}
    if (run_dir / lora.CONFIG_FILE).is_file():
        previous = {k: v for k, v in lora.read_lora(run_dir)[1].items() if k not in weights}
    lora.save_lora(run_dir, {**previous, **weights}, base_model=base_model, rank=train.lora_rank,
                   alpha=train.lora_alpha or train.lora_rank, conv=train.lora_conv, text_encoder=text_identity,
                   target=train.lora_target)


def export_checkpoint(run_dir: Path, config: RunConfig, stages: list[str], *, step: int | None = None,
                      output: Path | None = None) -> Path:
    """Export the EMA weights of each stage's newest checkpoint (or the one at `step`) as a model in `output`
    (default: the run directory itself), e.g. to sample a run that is still training."""
    from .checkpoints import list_checkpoints, load_checkpoint

    encoder = load_text_encoder(config.text)
    weights = {}
    for name in stages:
        found = list_checkpoints(run_dir / name / "checkpoints")
        if step is not None:
            found = [p for p in found if p.name == f"step-{step:06d}"]
        if not found:
            which = f"at step {step}" if step is not None else "at all"
            raise ValueError(f"stage {name} of {run_dir} has no checkpoint {which}")
        _, state = load_checkpoint(found[-1])
        if is_sharded_checkpoint(found[-1]):
            template = Stage(config.stages()[name], encoder.embed_dim).net.state_dict()
            weights[name] = read_ema_weights(found[-1], template)
            continue
        prefix = "ema_model."
        weights[name] = {k[len(prefix):]: v for k, v in state["ema"].items() if k.startswith(prefix)}
    output = output or run_dir
    if output.resolve() != run_dir.resolve() and output.is_dir() and any(output.iterdir()):
        raise ValueError(f"--export-to {output} is not empty: export into a new or empty directory")
    output.mkdir(parents=True, exist_ok=True)
    export(output, config, encoder.identity, weights)
    return output


def _mixed_precision(config: RunConfig, stages: list[str]) -> str:
    modes = {config.stages()[n].train.mixed_precision for n in stages}
    if len(modes) > 1:
        raise ValueError(f"stages trained in one process must share train.mixed_precision, got {sorted(modes)}")
    mode = modes.pop()
    if mode == "fp16" and not torch.cuda.is_available():
        # accelerate runs fp16 with loss scaling on CUDA only; on the CPU it would silently train in fp32
        raise ValueError("train.mixed_precision=fp16 needs a CUDA GPU (fp16 with loss scaling); on the CPU use bf16")
    return mode
