"""The shape of the code: imports run one way (no cycles, no private names across modules), and every name a
config, a registry or a CLI choice list accepts comes from the one vocabulary in `configs`."""

from __future__ import annotations

import ast
import typing
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
PACKAGES = ("configs", "imagen", "trainers", "unets")


def _modules() -> dict[str, Path]:
    modules = {}
    for package in PACKAGES:
        for path in (ROOT / package).rglob("*.py"):
            parts = list(path.relative_to(ROOT).with_suffix("").parts)
            if parts[-1] == "__init__":
                parts = parts[:-1]
            modules[".".join(parts)] = path
    return modules


def _imports(name: str, path: Path, modules: dict[str, Path]) -> list[tuple[str, str | None]]:
    """(module imported, name taken from it or None) for every import in the file, function-level ones too."""
    package = name if path.name == "__init__.py" else name.rpartition(".")[0]
    found = []
    for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
        if isinstance(node, ast.Import):
            found += [(alias.name, None) for alias in node.names]
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:
                anchor = package.split(".")[: len(package.split(".")) - node.level + 1]
                base = ".".join(anchor + ([node.module] if node.module else []))
            for alias in node.names:
                submodule = f"{base}.{alias.name}"
                found.append((submodule, None) if submodule in modules else (base, alias.name))
    return [(module, taken) for module, taken in found if module in modules]


def _graph() -> tuple[dict[str, set[str]], list[str]]:
    modules = _modules()
    graph, private = {}, []
    for name, path in modules.items():
        graph[name] = set()
        for module, taken in _imports(name, path, modules):
            if module != name:
                graph[name].add(module)
            if taken and taken.startswith("_") and not taken.startswith("__") and module != name:
                private.append(f"{name} imports {module}.{taken}")
    return graph, private


def test_the_import_graph_has_no_cycle():
    graph, _ = _graph()
    state: dict[str, int] = {}
    stack: list[str] = []

    def visit(node: str) -> list[str] | None:
        state[node] = 1
        stack.append(node)
        for nxt in sorted(graph[node]):
            if state.get(nxt) == 1:
                return stack[stack.index(nxt):] + [nxt]
            if nxt not in state and (cycle := visit(nxt)):
                return cycle
        stack.pop()
        state[node] = 2
        return None

    for start in sorted(graph):
        if start not in state and (cycle := visit(start)):
            pytest.fail("import cycle: " + " -> ".join(cycle))


def test_no_module_imports_another_modules_private_name():
    _, private = _graph()
    assert private == []


def test_the_cli_package_imports_run_one_way():
    graph, _ = _graph()
    assert "imagen.cli.modes" not in graph["imagen.cli.common"] | graph["imagen.cli.arguments"]
    assert not any(m.startswith("imagen.cli") for m in graph["imagen.pipeline"] | graph["imagen.editing.image_edit"])


def test_every_registry_schema_literal_and_cli_choice_is_the_configs_vocabulary():
    import configs
    from configs.schema import ObjectiveConfig, SamplerConfig, ScheduleConfig, TextEncoderConfig, TrainConfig
    from imagen.cli.arguments import build_parser
    from imagen.samplers import SAMPLERS, TIME_GRIDS
    from imagen.text import DTYPES
    from imagen.thresholding import make_x0_fn

    assert tuple(SAMPLERS) == configs.SAMPLER_NAMES
    assert tuple(TIME_GRIDS) == configs.TIME_GRID_NAMES
    assert tuple(DTYPES) == configs.PRECISIONS
    for mode in configs.THRESHOLDING_MODES:
        make_x0_fn(mode)

    def literal(cls, field):
        return typing.get_args(typing.get_type_hints(cls)[field])

    assert literal(SamplerConfig, "name") == configs.SAMPLER_NAMES
    assert literal(SamplerConfig, "thresholding") == configs.THRESHOLDING_MODES
    assert literal(SamplerConfig, "time_grid") == configs.TIME_GRID_NAMES
    assert literal(ScheduleConfig, "kind") == configs.SCHEDULE_KINDS
    assert literal(ObjectiveConfig, "prediction") == configs.PREDICTIONS
    assert literal(ObjectiveConfig, "loss") == configs.LOSS_NAMES
    assert literal(TextEncoderConfig, "dtype") == configs.PRECISIONS
    choices = {action.dest: tuple(action.choices) for action in build_parser()._actions if action.choices}
    assert choices["sampler"] == configs.SAMPLER_NAMES
    assert choices["thresholding"] == configs.THRESHOLDING_MODES
    assert choices["time_grid"] == configs.TIME_GRID_NAMES
    assert choices["dtype"] == configs.PRECISIONS
    from imagen.lora import TARGETS
    from trainers.cli import build_parser as train_parser

    assert tuple(TARGETS) == literal(TrainConfig, "lora_target") == configs.LORA_TARGETS
    train_choices = {action.dest: tuple(action.choices) for action in train_parser()._actions if action.choices}
    assert train_choices["lora_target"] == configs.LORA_TARGETS


def test_every_time_grid_is_accepted_by_config_overrides():
    from configs import TIME_GRID_NAMES, load_config, preset_names

    preset = preset_names()[0]
    for grid in TIME_GRID_NAMES:
        config = load_config(preset, overrides=[f"base.sampler.time_grid={grid}"])
        assert config.base.sampler.time_grid == grid
