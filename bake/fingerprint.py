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
from functools import cache
from importlib import metadata
from pathlib import Path

from bake.hashing import tree_hash
from bake.plan import BuildPlan

FORMAT = 1


# Names never part of a source tree's content: caches and build by-products.
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
