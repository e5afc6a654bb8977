"""Fixtures for the matrix tests: a temporary project with its own matrix file."""

from __future__ import annotations

import shutil
from pathlib import Path

import pytest

from tests.bake.conftest import REPO


@pytest.fixture
def project(tmp_path: Path) -> Path:
    """A copy of the project's elements/, image-specs/ (with matrix.yaml) and app/."""
    root = tmp_path / "project"
    root.mkdir()
    for name in ("elements", "image-specs"):
        shutil.copytree(REPO / name, root / name)
    shutil.copytree(
        REPO / "app", root / "app", ignore=shutil.ignore_patterns("__pycache__", "*.egg-info")
    )
    return root


def write_matrix(project: Path, text: str) -> Path:
    """Replace the project's matrix file with ``text``; return its path."""
    path = project / "image-specs" / "matrix.yaml"
    path.write_text(text)
    return path
