"""The layer contracts of bake/ (.importlinter) hold, and they do catch a back-import."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[2]
LINT_IMPORTS = Path(sys.executable).parent / "lint-imports"


def _lint_imports(root: Path) -> subprocess.CompletedProcess:
    env = {**os.environ, "PYTHONPATH": str(root)}
    return subprocess.run(
        [str(LINT_IMPORTS), "--no-cache", "--config", str(root / ".importlinter")],
        cwd=root,
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
    )


def _copy(tmp_path: Path) -> Path:
    root = tmp_path / "tree"
    shutil.copytree(REPO / "bake", root / "bake", ignore=shutil.ignore_patterns("__pycache__"))
    shutil.copy(REPO / ".importlinter", root / ".importlinter")
    return root


def test_the_tree_keeps_its_layers(tmp_path):
    result = _lint_imports(_copy(tmp_path))
    assert result.returncode == 0, result.stdout + result.stderr
    assert "0 broken" in result.stdout


@pytest.mark.parametrize(
    ("module", "back_import", "contract"),
    [
        ("bake/errors.py", "import bake.cli", "bake: cli on top"),
        ("bake/spec.py", "import bake.build", "bake: cli on top"),
        ("bake/instances/base.py", "import bake.fleet", "bake: cli on top"),
        ("bake/cloud/glance.py", "import bake.cloud.commands", "no import cycles"),
    ],
)
def test_a_back_import_breaks_a_contract(tmp_path, module, back_import, contract):
    root = _copy(tmp_path)
    target = root / module
    target.write_text(target.read_text() + f"\n{back_import}  # deliberate\n")
    result = _lint_imports(root)
    assert result.returncode != 0, result.stdout
    broken = result.stdout.split("Broken contracts", 1)[-1]
    assert contract in broken, result.stdout
