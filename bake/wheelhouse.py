"""Wheelhouse: the application and every dependency as wheels, built once per app source.

Images install the app offline from it (the ``bbq-app`` element) and in-place updates send
hosts the wheels they lack. A wheelhouse is keyed by the app's tree hash, so an unchanged
app is never rebuilt; it is written to a temporary directory and renamed when complete.

Example::

    house = ensure(Path("app"), app_hash)
    house.release   # "0.1.0-3f2a9c1d0e": the release directory name on hosts
    house.wheels    # ("bbq-0.1.0-py3-none-any.whl", "pymongo-...whl", ...)
"""

from __future__ import annotations

import configparser
import dataclasses
import os
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path

CACHE_ROOT = Path(
    os.environ.get("BBQ_WHEELHOUSE_CACHE", Path.home() / ".cache" / "bbq" / "wheelhouses")
)
COMPLETE = ".complete"


class WheelhouseError(Exception):
    """The wheelhouse could not be built (pip's output says why)."""


@dataclasses.dataclass(frozen=True)
class Wheelhouse:
    path: Path
    version: str
    release: str
    wheels: tuple[str, ...]


def app_version(app_dir: Path) -> str:
    """The app's version from its setup.cfg."""
    parser = configparser.ConfigParser()
    parser.read(app_dir / "setup.cfg")
    try:
        return parser["metadata"]["version"]
    except KeyError:
        raise WheelhouseError(f"{app_dir / 'setup.cfg'}: no [metadata] version") from None


def release_name(app_dir: Path, app_hash: str) -> str:
    """The release directory name for this app source: version and source hash."""
    return f"{app_version(app_dir)}-{app_hash[:10]}"


def path_for(app_hash: str, cache_root: Path = CACHE_ROOT) -> Path:
    return cache_root / app_hash


def ensure(
    app_dir: Path,
    app_hash: str,
    cache_root: Path = CACHE_ROOT,
    python: str = sys.executable,
) -> Wheelhouse:
    """The wheelhouse for this app source, built with ``pip wheel`` unless already complete."""
    target = path_for(app_hash, cache_root)
    if not (target / COMPLETE).exists():
        cache_root.mkdir(parents=True, exist_ok=True)
        partial = Path(tempfile.mkdtemp(prefix=f".{app_hash[:12]}-", dir=cache_root))
        try:
            # Build from a copy: setuptools writes build/ and *.egg-info into the source.
            source = partial / "source"
            shutil.copytree(
                app_dir,
                source,
                ignore=shutil.ignore_patterns("__pycache__", "*.egg-info", "build", "dist"),
            )
            wheels = partial / "wheels"
            result = subprocess.run(
                [python, "-m", "pip", "wheel", "--quiet", "--wheel-dir", str(wheels), str(source)],
                capture_output=True,
                text=True,
            )
            if result.returncode != 0:
                raise WheelhouseError(
                    f"pip wheel {app_dir} failed:\n{(result.stdout + result.stderr)[-3000:]}"
                )
            (wheels / COMPLETE).touch()
            shutil.rmtree(target, ignore_errors=True)
            wheels.rename(target)
        finally:
            shutil.rmtree(partial, ignore_errors=True)
    return Wheelhouse(
        path=target,
        version=app_version(app_dir),
        release=release_name(app_dir, app_hash),
        wheels=tuple(sorted(p.name for p in target.glob("*.whl"))),
    )
