"""The one runner of the real ``bake`` command in tests."""

from __future__ import annotations

import os
import subprocess
from pathlib import Path

from tests.support.paths import BAKE, REPO

# Fixed mirrors so that fingerprints do not depend on the host's apt sources.
MIRROR_ENV = {
    "DIB_DISTRIBUTION_MIRROR": "http://mirror.invalid/debian",
    "DIB_DEBIAN_SECURITY_MIRROR": "http://mirror.invalid/debian-security",
}


def run_bake(
    *args: str,
    cwd: Path = REPO,
    env: dict | None = None,
    timeout: float = 120,
    drop: tuple[str, ...] = ("DIB_",),
) -> subprocess.CompletedProcess:
    """Run the installed ``bake`` with ``env`` added to ours, less our variables whose names
    start with one of ``drop`` (DIB_* by default; OS_* too for cloud commands); the
    CompletedProcess, with text output."""
    full_env = {k: v for k, v in os.environ.items() if not k.startswith(drop)}
    full_env.update(env or {})
    return subprocess.run(
        [str(BAKE), *args],
        cwd=cwd,
        env=full_env,
        capture_output=True,
        text=True,
        timeout=timeout,
    )


def table_rows(text: str) -> list[list[str]]:
    """The cells of a table as cliff prints it (``| a | b |`` lines between ``+--+``
    rules), the header first."""
    return [
        [cell.strip() for cell in line.strip()[1:-1].split("|")]
        for line in text.splitlines()
        if line.startswith("|")
    ]
