"""The generic top-level names `configs`, `unets`, `trainers` (and `imagen`) resolve to this repository,
also from another working directory (an editable install or a stray same-named package could shadow them)."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


def test_packages_resolve_to_this_repository(tmp_path):
    code = ("import json, configs, unets, trainers, imagen; "
            "print(json.dumps({m.__name__: m.__file__ for m in (configs, unets, trainers, imagen)}))")
    proc = subprocess.run([sys.executable, "-c", code], cwd=tmp_path, capture_output=True, text=True, timeout=120)
    assert proc.returncode == 0, proc.stderr
    files = json.loads(proc.stdout.strip().splitlines()[-1])
    for name, file in files.items():
        assert file is not None, f"{name} imports as a namespace package (stale editable install?): reinstall"
        assert Path(file).resolve() == ROOT / name / "__init__.py", f"{name} resolves to {file}, not {ROOT}"
