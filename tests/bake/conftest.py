"""The bake tests' paths and CLI runner live in tests/support (imported from here too)."""

from tests.support.cli import MIRROR_ENV, run_bake
from tests.support.paths import BAKE, REPO

__all__ = ["BAKE", "MIRROR_ENV", "REPO", "run_bake"]
