"""Helpers for the bake tests: the project's paths and a way to run the real CLI."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

REPO = Path(__file__).resolve().parents[2]
BAKE = Path(sys.executable).parent / "bake"
# Fixed mirrors so that fingerprints do not depend on the host's apt sources.
MIRROR_ENV = {
    "DIB_DISTRIBUTION_MIRROR": "http://mirror.invalid/debian",
    "DIB_DEBIAN_SECURITY_MIRROR": "http://mirror.invalid/debian-security",
}


def run_bake(*args: str, cwd: Path = REPO, env: dict | None = None, timeout: float = 120):
    """Run the installed `bake` command; return the CompletedProcess (text output)."""
    full_env = {k: v for k, v in os.environ.items() if not k.startswith("DIB_")}
    full_env.update(env or {})
    return subprocess.run(
        [str(BAKE), *args],
        cwd=cwd,
        env=full_env,
        capture_output=True,
        text=True,
        timeout=timeout,
    )
