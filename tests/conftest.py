"""Test-suite wide settings: offline, and one torch thread (the models here are tiny; several threads only
contend with each other and with the subprocesses some tests start)."""

import os

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("OMP_NUM_THREADS", "1")

import torch  # noqa: E402

torch.set_num_threads(1)
