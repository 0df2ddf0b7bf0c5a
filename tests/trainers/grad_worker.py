"""Run by test_multiprocess.py (directly, or under `accelerate launch`): accumulate the gradients of step 0
of a tiny base stage and save them (averaged over processes) from the main process."""

import sys
from pathlib import Path

from accelerate import Accelerator
from safetensors.torch import save_file

sys.path.insert(0, str(Path(__file__).parent))
from conftest import TINY_BASE  # noqa: E402

from configs import load_config  # noqa: E402
from imagen.text import load_text_encoder  # noqa: E402
from trainers.data import make_loader  # noqa: E402
from trainers.trainer import StageTrainer  # noqa: E402


def main(out: str) -> None:
    config = load_config("shapes-tiny", [*TINY_BASE, "sr1=none", "sr2=none", "base.train.batch_size=8"])
    accelerator = Accelerator(cpu=True)
    encoder = load_text_encoder(config.text)
    trainer = StageTrainer(config, "base", Path(out).parent / "run", accelerator, encoder, progress=False)
    loader = make_loader(trainer.dataset, trainer.per_rank, seed=0, rank=accelerator.process_index,
                         world_size=accelerator.num_processes)
    loss = trainer.accumulate_gradients(next(iter(loader)))
    if accelerator.is_main_process:
        grads = {n: p.grad.detach().clone() for n, p in accelerator.unwrap_model(trainer.model).named_parameters()}
        save_file({**grads, "loss": loss.detach().reshape(1)}, out)
        print("world size", accelerator.num_processes)
    accelerator.wait_for_everyone()
    accelerator.end_training()


if __name__ == "__main__":
    main(sys.argv[1])
