"""Test-suite wide settings: offline, and one torch thread (the models here are tiny; several threads only
contend with each other and with the subprocesses some tests start)."""

import os

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("OMP_NUM_THREADS", "1")

import pytest  # noqa: E402
import torch  # noqa: E402

torch.set_num_threads(1)


class GraphRecorder:
    """A torch.compile backend that runs each graph as traced and notes in `symbolic` whether it took symbolic
    sizes (dynamo passes those as SymInt inputs)."""

    def __init__(self):
        self.symbolic: list[bool] = []

    def __call__(self, graph, example_inputs):
        self.symbolic.append(any(isinstance(node.meta.get("example_value"), torch.SymInt)
                                 for node in graph.graph.nodes if node.op == "placeholder"))
        return graph.forward


@pytest.fixture
def graph_recorder() -> GraphRecorder:
    return GraphRecorder()
