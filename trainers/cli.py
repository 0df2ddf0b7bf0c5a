"""`imagen-train`: train the stages of a cascade (one after the other, each resumable) and export a model
that `imagen-sample --model OUTPUT` loads directly. Works under `accelerate launch` for many processes."""

from __future__ import annotations

import argparse
import os
import sys
from pathlib import Path

from configs import LORA_TARGETS, STAGE_NAMES, load_config, preset_names, to_json

EPILOG = """examples:
  imagen-train --config shapes-tiny --output runs/tiny                 # the CPU demo cascade, all stages
  imagen-train --config shapes-tiny --output runs/tiny --stage base --max-steps 200
  imagen-train --output runs/tiny --resume                             # continue after an interruption
  imagen-train --config my.toml --output runs/mine --data photos/ --set base.train.lr=3e-4
  accelerate launch --num_processes 2 -m trainers.cli --config shapes-tiny --output runs/ddp --stage base
"""


def build_parser() -> argparse.ArgumentParser:
    from imagen.cli.common import Parser

    parser = Parser(prog="imagen-train", description=__doc__, epilog=EPILOG)
    parser.add_argument("--config", help=f"preset name ({', '.join(preset_names())}) or a .toml/.json config file; "
                                         "optional with --resume (the run's own config is used)")
    parser.add_argument("--output", required=True, type=Path,
                        help="run directory: checkpoints, logs, samples and the exported model")
    parser.add_argument("--stage", default="all", choices=[*STAGE_NAMES, "all"],
                        help="which stage to train; 'all' trains every stage of the config in order (default)")
    parser.add_argument("--data", help="training data: 'shapes', an image folder with same-name .txt captions (and "
                                       "optional NAME-masklabel.png loss masks, white = the subject), a .jsonl/.csv "
                                       "manifest, or webdataset shards 'dir/shard-{000..009}.tar'")
    parser.add_argument("--set", dest="overrides", action="append", default=[], metavar="KEY=VALUE",
                        help="override a config value, e.g. --set base.train.lr=3e-4 (repeatable)")
    parser.add_argument("--init-from", metavar="MODEL",
                        help="fine-tune: start every trained stage from this model's weights (a shipped name such as "
                             "shapes, a model or run directory, or a hub name in the local cache) with a fresh "
                             "optimiser; its config is used unless --config is given (--set still applies)")
    parser.add_argument("--lora", type=int, metavar="RANK",
                        help="with --init-from: train LoRA adapters of this rank on the model's attention "
                             "projections instead of its weights, and write them (lora.safetensors, lora.json) to "
                             "--output for imagen-sample --lora")
    parser.add_argument("--lora-conv", action="store_true", help="with --lora: also adapt the 3x3 convolutions")
    parser.add_argument("--lora-target", choices=LORA_TARGETS,
                        help="with --lora: adapt every attention projection (attention, the default) or only the "
                             "keys and values cross-attention reads from the text (text: Custom Diffusion's "
                             "choice; only what the words mean changes, the smallest adapter) or the two "
                             "highest-resolution levels' residual blocks and resampling and the output "
                             "convolution (local: how things are drawn, not where)")
    parser.add_argument("--max-steps", type=int, help="train each selected stage for this many steps")
    parser.add_argument("--minutes", type=float,
                        help="wall-clock budget per selected stage, in minutes (0: none, --max-steps alone ends it); a "
                             "cosine schedule decays to 0 at whichever of the two comes first")
    parser.add_argument("--resume", action="store_true",
                        help="continue the run in --output from each stage's newest checkpoint (training "
                             "settings may change with --set, the model may not); with --config, starts the run "
                             "if --output holds none yet, so a job can always be restarted with the same command")
    parser.add_argument("--dry-run", action="store_true", help="print the resolved config as JSON and exit")
    parser.add_argument("--plan", action="store_true",
                        help="print each selected stage's training memory (parameters, gradients, optimiser, EMA, "
                             "activations per sample) and the largest batch per GPU with and without sharding and "
                             "gradient checkpointing, then exit (see --gpus, --gpu-memory)")
    parser.add_argument("--gpus", type=int, default=8, help="with --plan: GPUs to shard over (default 8)")
    parser.add_argument("--gpu-memory", default="80GB", help="with --plan: memory of one GPU (default 80GB)")
    parser.add_argument("--export", action="store_true",
                        help="export the EMA weights of the newest checkpoint of each selected stage as a model "
                             "(into --output, or --export-to) and exit, without training; needs --resume's run")
    parser.add_argument("--export-step", type=int, help="with --export: the checkpoint at this step instead")
    parser.add_argument("--export-to", type=Path, help="with --export: write the model here instead of --output")
    parser.add_argument("--no-progress", action="store_true", help="no progress bars (logs still written)")
    parser.add_argument("--no-memory-check", action="store_true",
                        help="train even when the memory plan says a step does not fit this device")
    parser.add_argument("--compile", action="store_true",
                        help="torch.compile each selected stage's U-Net (train.compile; a cold start of minutes on a "
                             "CPU, so it pays on long runs only)")
    return parser


def _exporting(args: argparse.Namespace) -> bool:
    """--export, or one of its options (which imply it)."""
    return args.export or args.export_step is not None or args.export_to is not None


def _sets(overrides: list[str], key: str) -> bool:
    return any(o.startswith(f"{key}=") for o in overrides)


def resolve(args: argparse.Namespace, init_config=None):
    """The run's config with all command-line overrides applied, and the stages to train. `init_config`: the
    config of the --init-from model, used when neither --config nor a run to resume gives one."""
    from .run import RUN_CONFIG

    saved = args.output / RUN_CONFIG
    if (args.resume or _exporting(args)) and saved.is_file() and args.config is None:
        source = saved
    elif args.config is not None:
        source = args.config
    elif init_config is not None:
        source = init_config
    elif args.resume or _exporting(args):
        raise ValueError(f"no run in {args.output} (no {RUN_CONFIG}) to {'export' if _exporting(args) else 'resume'}; "
                         "start it with --config")
    else:
        raise ValueError("--config is required (a preset name or a config file) unless --resume finds a run or "
                         "--init-from names a model")
    if args.lora is not None and args.lora < 1:
        raise ValueError(f"--lora {args.lora}: the rank must be >= 1 (leave --lora out to tune every weight)")
    if args.lora is None and (args.lora_conv or args.lora_target):
        raise ValueError("--lora-conv and --lora-target choose what --lora RANK adapts: give --lora RANK too")
    overrides = list(args.overrides)
    if args.data:
        overrides.append(f"data.source={args.data}")
    if init_config is not None and not _sets(overrides, "data.prior_source"):
        overrides.append(f"data.prior_source={init_config.data.source}")  # prior preservation: the model's own data
    config = load_config(source, overrides)
    stages = list(config.stages()) if args.stage == "all" else [args.stage]
    if args.stage != "all" and args.stage not in config.stages():
        raise ValueError(f"--stage {args.stage}: the config has no such stage (it has {', '.join(config.stages())})")
    extra = []
    for name in stages:
        if args.max_steps is not None:
            extra.append(f"{name}.train.max_steps={args.max_steps}")
        if args.minutes is not None:
            extra.append(f"{name}.train.max_minutes={args.minutes}")
        if args.compile:
            extra.append(f"{name}.train.compile=true")
        if args.lora is not None:
            extra.append(f"{name}.train.lora_rank={args.lora}")
        if args.lora_conv:
            extra.append(f"{name}.train.lora_conv=true")
        if args.lora_target:
            extra.append(f"{name}.train.lora_target={args.lora_target}")
    if extra:
        config = load_config(source, overrides + extra)
    if (args.resume or _exporting(args)) and saved.is_file():
        change = load_config(saved).architecture_change(config)
        if change:
            raise ValueError(f"{'--export' if _exporting(args) else '--resume'}: the run in {args.output} was trained "
                             f"as another model ({change}); keep its own config (drop --config and the --set "
                             "that changes it) or start a new --output")
    return config, stages


SMALL_DATA, PRIOR_SHARE = 1000, 0.25


def with_prior_preservation(config, overrides: list[str]):
    """Fine-tuning on a small data set (fewer than SMALL_DATA examples) of another source than the model's:
    PRIOR_SHARE of the examples from the model's own data (`data.prior_source`, set by `resolve`), unless
    data.prior_share is set."""
    from dataclasses import replace

    from .data.sources import read_manifest, resolve_source, scan_folder

    data = config.data
    if data.source == data.prior_source or _sets(overrides, "data.prior_share"):
        return config
    source = resolve_source(data.source)
    if source.kind not in ("folder", "jsonl", "csv"):
        return config
    entries, _ = scan_folder(source.location) if source.kind == "folder" else read_manifest(source.location,
                                                                                             source.kind)
    if len(entries) >= SMALL_DATA:
        return config
    masks = sum(e.mask is not None for e in entries)
    print(f"imagen-train: note: {len(entries)} examples" + (f" ({masks} with loss masks)" if masks else "") +
          f": prior preservation on, {PRIOR_SHARE:.0%} of them from the model's own data ({data.prior_source}); "
          "--set data.prior_share=0 turns it off", file=sys.stderr)
    return replace(config, data=replace(data, prior_share=PRIOR_SHARE))


def main(argv: list[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    from imagen.io import keep_freed_memory

    from .trainer import TrainingError

    keep_freed_memory()
    created = False  # whether this process made a new run directory
    try:
        init = None
        if args.init_from:
            from .run import InitModel

            init = InitModel.load(args.init_from)
        config, stages = resolve(args, init.config if init else None)
        if init is not None:
            config = with_prior_preservation(config, args.overrides)
        if args.dry_run:
            print(to_json(config))
            return 0
        if args.plan:
            from .plan import parse_memory, plan, report

            if args.gpus < 1:
                raise ValueError(f"--gpus must be >= 1, got {args.gpus}")
            print(report(plan(config, stages), args.gpus, parse_memory(args.gpu_memory)))
            return 0
        if _exporting(args):
            from .run import export_checkpoint

            where = export_checkpoint(args.output, config, stages, step=args.export_step, output=args.export_to)
            print(f"imagen-train: exported {', '.join(stages)} to {where}", file=sys.stderr)
            return 0
        from .run import RUN_CONFIG, check_output_dir, is_launch_main_process, prepare_run_dir, run_lock, train_run

        if not args.no_memory_check:
            from .plan import check_training_memory

            check_training_memory(config, stages, world=int(os.environ.get("WORLD_SIZE", "1")))
        if args.resume and not (args.output / RUN_CONFIG).is_file() and is_launch_main_process():
            print(f"imagen-train: no run in {args.output} to resume: starting it", file=sys.stderr)
        new_run = check_output_dir(args.output, args.resume)
        with run_lock(args.output):
            prepare_run_dir(args.output, config, args.resume)
            created = new_run and is_launch_main_process()
            results = train_run(config, args.output, stages, resume=args.resume, progress=not args.no_progress,
                                init=init)
    except ValueError as e:
        print(f"imagen-train: error: {e}", file=sys.stderr)
        if created:  # made by this command and refused before its first checkpoint: gone again
            from .run import remove_unstarted_run

            remove_unstarted_run(args.output)
        return 2
    except OSError as e:
        print(f"imagen-train: error: {e.strerror or e}: {e.filename or ''}".rstrip(": "), file=sys.stderr)
        return 2
    except TrainingError as e:
        print(f"imagen-train: training stopped: {e}", file=sys.stderr)
        return 1
    interrupted = any(r.reason == "interrupted" for r in results.values())
    if not is_launch_main_process():  # the main process reports for the launch
        return 130 if interrupted else 0
    for name, result in results.items():
        print(f"imagen-train: {name}: stopped at step {result.step} ({result.reason})", file=sys.stderr)
    if interrupted:
        print(f"imagen-train: checkpoint saved; continue with: imagen-train --output {args.output} --resume",
              file=sys.stderr)
        return 130
    if args.lora is not None:
        print(f"imagen-train: LoRA adapters written to {args.output}; try: imagen-sample --model {args.init_from} "
              f"--lora {args.output} --prompt \"a large red circle at the center on a blue background\"",
              file=sys.stderr)
        return 0
    print(f"imagen-train: model exported to {args.output}; try: imagen-sample --model {args.output} "
          f"--prompt \"a large red circle at the center on a blue background\"", file=sys.stderr)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
