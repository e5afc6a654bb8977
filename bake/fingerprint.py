"""Fingerprint: one sha256 over everything that decides an image.

Inputs: the spec after includes and defaults, the variables that reach diskimage-builder,
diskimage-builder's version, every file (content and exec bit) of every element of ours
the build uses (following ``element-deps``), and the app source when the spec bakes the app.
Paths are sorted and relative, mtimes and owners are ignored, so the same inputs give the
same fingerprint on any machine and in any checkout.

Example::

    fp = fingerprint(make_plan(spec, Path("elements"), os.environ, app_dir=Path("app")))
    fp.value              # 64 hex characters
    fp.elements           # {'bbq-base': '<sha256 of its tree>', ...}
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
import os
import stat
from functools import cache
from importlib import metadata
from pathlib import Path

from bake.plan import BuildPlan

FORMAT = 1
# Names never part of a source tree's content: caches and build by-products.
IGNORED_NAMES = frozenset(
    {"__pycache__", ".pytest_cache", ".ruff_cache", ".tox", ".venv", "build", "dist", ".git"}
)
IGNORED_SUFFIXES = (".pyc", ".pyo", ".egg-info", ".swp", "~")


@dataclasses.dataclass(frozen=True)
class Fingerprint:
    """The fingerprint and the per-input hashes it was made from."""

    value: str
    elements: dict[str, str]
    app: str | None
    dib_version: str
    inputs: dict

    def __str__(self) -> str:
        return self.value


@cache
def dib_version() -> str:
    """The installed diskimage-builder's version."""
    return metadata.version("diskimage-builder")


def tree_hash(root: Path) -> str:
    """sha256 over every file below ``root``: relative path, exec bit, content (or link)."""
    digest = hashlib.sha256()
    for path in sorted(_walk(root), key=lambda p: p.relative_to(root).as_posix()):
        rel = path.relative_to(root).as_posix()
        info = path.lstat()
        if stat.S_ISLNK(info.st_mode):
            kind, content = "l", os.readlink(path).encode()
        else:
            kind = "x" if info.st_mode & stat.S_IXUSR else "f"
            content = path.read_bytes()
        digest.update(f"{rel}\0{kind}\0{len(content)}\0".encode())
        digest.update(content)
    return digest.hexdigest()


def _walk(root: Path):
    for dirpath, dirnames, filenames in os.walk(root):
        dirnames[:] = [d for d in dirnames if not _ignored(d)]
        for name in filenames:
            if not _ignored(name):
                yield Path(dirpath) / name


def _ignored(name: str) -> bool:
    return name in IGNORED_NAMES or name.endswith(IGNORED_SUFFIXES)


def our_elements(names: tuple[str, ...] | list[str], elements_dir: Path) -> list[str]:
    """Our elements (from ``elements_dir``) the build uses, following element-deps."""
    found: list[str] = []
    pending = list(names)
    while pending:
        name = pending.pop(0)
        directory = elements_dir / name
        if name in found or not directory.is_dir():
            continue  # diskimage-builder's own elements are covered by its version
        found.append(name)
        deps = directory / "element-deps"
        if deps.is_file():
            pending.extend(
                line.strip()
                for line in deps.read_text().splitlines()
                if line.strip() and not line.startswith("#")
            )
    return sorted(found)


def fingerprint(plan: BuildPlan) -> Fingerprint:
    """The fingerprint of a build plan (the app's tree hash is in the plan when baked)."""
    elements = {
        name: tree_hash(plan.elements_dir / name)
        for name in our_elements(plan.elements, plan.elements_dir)
    }
    app = plan.app_hash
    inputs = {
        "format": FORMAT,
        "spec": plan.spec.to_dict(),
        "elements": elements,
        "environment": plan.fingerprinted_environment(),
        "dib_version": dib_version(),
        "app": app,
    }
    canonical = json.dumps(inputs, sort_keys=True, separators=(",", ":"))
    value = hashlib.sha256(canonical.encode()).hexdigest()
    return Fingerprint(value, elements, app, inputs["dib_version"], inputs)
