"""Helpers for the matrix tests (the temporary `project` fixture is in tests/conftest.py)."""

from __future__ import annotations

from pathlib import Path


def write_matrix(project: Path, text: str) -> Path:
    """Replace the project's matrix file with ``text``; return its path."""
    path = project / "image-specs" / "matrix.yaml"
    path.write_text(text)
    return path
