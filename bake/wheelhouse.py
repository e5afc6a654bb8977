"""Wheelhouse: the application and every dependency as wheels, built once per app source.

Images install the app offline from it (the ``bbq-app`` element) and in-place updates send
hosts the wheels they lack. A wheelhouse is keyed by the app's tree hash and the extras it
holds (``bbq[stream]`` brings the Spark job's pyarrow and pandas), so an unchanged app is
never rebuilt; it is written to a temporary directory and renamed when complete.

Example::

    house = ensure(Path("app"), app_hash, extras=("stream",))
    house.release   # "0.1.0-3f2a9c1d0e": the release directory name on hosts
    house.extras    # ("stream",)
    house.wheels    # ("bbq-0.1.0-py3-none-any.whl", "pyarrow-...whl", ...)
    house.requirement   # "bbq[stream]": what pip installs from it
"""

from __future__ import annotations

import configparser
import dataclasses
import os
import re
import shutil
import subprocess
import sys
import tempfile
from collections.abc import Sequence
from pathlib import Path

from bake.errors import OperationFailed

CACHE_ROOT = Path(
    os.environ.get("BBQ_WHEELHOUSE_CACHE", Path.home() / ".cache" / "bbq" / "wheelhouses")
)
COMPLETE = ".complete"


class WheelhouseError(OperationFailed):
    """The wheelhouse could not be built (pip's output says why)."""


@dataclasses.dataclass(frozen=True)
class Wheelhouse:
    path: Path
    version: str
    release: str
    wheels: tuple[str, ...]
    extras: tuple[str, ...] = ()

    @property
    def requirement(self) -> str:
        """What pip installs from this wheelhouse: ``bbq`` or ``bbq[extra,...]``."""
        return requirement(self.extras)


_EXTRA_NAME = re.compile(r"^[A-Za-z0-9]([A-Za-z0-9._-]*[A-Za-z0-9])?$")


def normalize_extras(extras: Sequence[str]) -> tuple[str, ...]:
    """Extras in canonical form (PEP 685: lower case, runs of ``-_.`` as ``-``), sorted, unique.

    Raises WheelhouseError for a name that is not a valid extra.
    """
    names = set()
    for extra in extras:
        if not isinstance(extra, str) or not _EXTRA_NAME.match(extra):
            raise WheelhouseError(f"invalid extra name: {extra!r}")
        names.add(re.sub(r"[-_.]+", "-", extra).lower())
    return tuple(sorted(names))


def requirement(extras: Sequence[str] = ()) -> str:
    """The app's requirement with these extras: ``bbq`` or ``bbq[a,b]``."""
    names = normalize_extras(extras)
    return f"bbq[{','.join(names)}]" if names else "bbq"


def declared_extras(app_dir: Path) -> tuple[str, ...]:
    """The extras the app declares (``[options.extras_require]`` of its setup.cfg)."""
    parser = configparser.ConfigParser()
    parser.read(app_dir / "setup.cfg")
    if not parser.has_section("options.extras_require"):
        return ()
    return normalize_extras(parser.options("options.extras_require"))


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


def path_for(app_hash: str, extras: Sequence[str] = (), cache_root: Path = CACHE_ROOT) -> Path:
    """Where the wheelhouse of this app source with these extras is kept."""
    names = normalize_extras(extras)
    return cache_root / "+".join((app_hash, *names))


def ensure(
    app_dir: Path,
    app_hash: str,
    extras: Sequence[str] = (),
    cache_root: Path = CACHE_ROOT,
    python: str = sys.executable,
) -> Wheelhouse:
    """The wheelhouse for this app source with these extras, built with ``pip wheel`` unless
    already complete. Raises WheelhouseError for an extra the app does not declare."""
    names = normalize_extras(extras)
    unknown = sorted(set(names) - set(declared_extras(app_dir)))
    if unknown:
        raise WheelhouseError(
            f"{app_dir / 'setup.cfg'}: no extra {', '.join(map(repr, unknown))} in "
            f"[options.extras_require] (declared: {', '.join(declared_extras(app_dir)) or 'none'})"
        )
    target = path_for(app_hash, names, cache_root)
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
            wanted = f"{source}[{','.join(names)}]" if names else str(source)
            result = subprocess.run(
                [python, "-m", "pip", "wheel", "--quiet", "--wheel-dir", str(wheels), wanted],
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
        extras=names,
    )
