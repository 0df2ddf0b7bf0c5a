"""The unets tests run tiny networks: one intra-op thread is faster for them than two, and far faster when
the cores are shared with other jobs (thread hand-offs stall under contention)."""

from __future__ import annotations

import pytest
import torch


@pytest.fixture(autouse=True)
def _single_thread():
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)
