"""Fixtures shared by every test directory."""

from __future__ import annotations

import shutil
from pathlib import Path

import pytest

from tests.support.paths import REPO

# heat: the stack tests' whole small cloud (heat_cloud), one per session for every directory
pytest_plugins = ["tests.fixtures.images", "tests.fixtures.heat"]


@pytest.fixture
def project(tmp_path: Path) -> Path:
    """A copy of the project's elements/, image-specs/ and app/ in a temporary directory."""
    root = tmp_path / "project"
    root.mkdir()
    for name in ("elements", "image-specs"):
        shutil.copytree(REPO / name, root / name)
    shutil.copytree(
        REPO / "app", root / "app", ignore=shutil.ignore_patterns("__pycache__", "*.egg-info")
    )
    return root
