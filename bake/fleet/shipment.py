"""The local side of a deploy: the app's wheelhouses (built and hashed once per app source
and extras) and the :class:`Plan` of what one host gets, from its state alone.

A host gets only the wheels it lacks: not in its pool with the same sha256, and (cloning)
not installed in the current release with the same name and version (its dist-info); the
app's own wheel always goes unless the pool has those exact bytes.

Example::

    houses = Wheelhouses(Path("app"))
    build = houses(("stream",))          # the Build for hosts with extras "stream"
    steps = plan(build, state, "clone")  # steps.send, steps.link, steps.install, steps.remove
"""

from __future__ import annotations

import dataclasses
import os
import subprocess
import sys
import tempfile
import threading
from collections.abc import Sequence
from pathlib import Path

from packaging.utils import canonicalize_name, parse_wheel_filename
from packaging.version import InvalidVersion, Version

from bake import hashing, wheelhouse
from bake.errors import EXIT_BAD_INPUT
from bake.fleet import DeployError
from bake.fleet.hoststate import HostState
from bake.fleet.layout import DEFAULT

APP = DEFAULT.app
# Distributions a venv brings itself: a clone keeps the ones it has at their version (as a
# fresh venv does) and never removes them.
VENV_SEEDS = frozenset({"pip", "setuptools", "wheel"})
MODES = ("clone", "fresh")
# pypa/installer, pinned: a clone's reinstall (remote/reinstall.py) imports it from this wheel
# in the host's pool; sent once to a host whose pool lacks it (never installed in a release).
INSTALLER = "installer-1.1.0-py3-none-any.whl"
INSTALLER_SHA256 = "f55f5728ff61d3dd54dbc5a397cf3f7307cb64b180c20b72afbebf01c9e2c8a0"
TOOLS_CACHE = wheelhouse.CACHE_ROOT.parent / "tools"
_installer_lock = threading.Lock()


@dataclasses.dataclass(frozen=True)
class Build:
    """A wheelhouse to deploy, with each wheel's sha256 and size."""

    house: wheelhouse.Wheelhouse
    hashes: dict[str, str]
    sizes: dict[str, int]

    @property
    def release(self) -> str:
        return self.house.release

    @property
    def extras(self) -> tuple[str, ...]:
        return self.house.extras

    @property
    def total_bytes(self) -> int:
        return sum(self.sizes.values())

    def manifest(self) -> str:
        """``sha256sum`` lines of every wheel, sorted by name (a release's WHEELS file)."""
        return "\n".join(f"{self.hashes[w]}  {w}" for w in sorted(self.house.wheels))

    def app_wheels(self) -> list[str]:
        return [w for w in self.house.wheels if parse_wheel_filename(w)[0] == APP]

    def __call__(self, extras: Sequence[str] = ()) -> Build:
        """This build, for hosts with its extras (DeployError for others)."""
        if wheelhouse.normalize_extras(extras) != self.extras:
            raise DeployError(
                f"the host's app extras {','.join(extras) or '(none)'} differ from the "
                f"wheelhouse's {','.join(self.extras) or '(none)'}"
            )
        return self


def _app_hash(app_dir: Path) -> str:
    if not (app_dir / "setup.cfg").is_file():
        raise DeployError(f"{app_dir}: not an app directory (no setup.cfg)", EXIT_BAD_INPUT)
    return hashing.tree_hash(app_dir)


def build_wheelhouse(app_dir: Path, extras: Sequence[str] = (), app_hash: str = "") -> Build:
    """Build (once per app source and extras) and hash the app's wheelhouse; DeployError for
    a bad directory or an extra the app does not declare."""
    app_dir = Path(app_dir)
    app_hash = app_hash or _app_hash(app_dir)
    try:
        house = wheelhouse.ensure(app_dir, app_hash, extras=extras)
    except wheelhouse.WheelhouseError as exc:
        raise DeployError(str(exc)) from None
    hashes, sizes = {}, {}
    for name in house.wheels:
        path = house.path / name
        hashes[name] = hashing.sha256_cached(path)
        sizes[name] = path.stat().st_size
    build = Build(house, hashes, sizes)
    if not build.app_wheels():
        raise DeployError(f"{house.path}: no {APP} wheel in the wheelhouse")
    return build


def installer_wheel(cache: Path = TOOLS_CACHE) -> Path:
    """The pinned installer wheel (INSTALLER), downloaded by pip once (its sha256 required)
    into ``cache``; DeployError when pip cannot get it."""
    path = cache / INSTALLER
    with _installer_lock:
        if path.is_file() and hashing.sha256_cached(path) == INSTALLER_SHA256:
            return path
        cache.mkdir(parents=True, exist_ok=True)
        with tempfile.TemporaryDirectory(dir=cache) as work:
            pin = Path(work, "installer.txt")
            name, version = INSTALLER.split("-")[:2]
            pin.write_text(f"{name}=={version} --hash=sha256:{INSTALLER_SHA256}\n")
            run = subprocess.run(
                [sys.executable, "-m", "pip", "download", "--quiet", "--no-deps"]
                + ["--only-binary=:all:", "--require-hashes", "--dest", work, "-r", str(pin)],
                capture_output=True,
                text=True,
                timeout=300,
            )
            got = Path(work, INSTALLER)
            if run.returncode != 0 or not got.is_file():
                tail = (run.stderr or run.stdout).strip().splitlines()[-1:]
                raise DeployError(f"pip download {INSTALLER} failed: {' '.join(tail)}")
            os.replace(got, path)
        return path


def tools_for(steps: Plan, state: HostState, mode: str) -> dict[str, Path]:
    """{file name: local path} of what the host gets beside the plan's wheels: the pinned
    installer wheel, for a clone's reinstall, when its pool lacks it."""
    if steps.install and mode == "clone" and state.pool.get(INSTALLER) != INSTALLER_SHA256:
        return {INSTALLER: installer_wheel()}
    return {}


class Wheelhouses:
    """The app's builds by extras: ``houses(extras)`` builds each distinct set once (threads
    asking for the same set wait for the one build)."""

    def __init__(self, app_dir: Path):
        self.app_dir = Path(app_dir)
        self.app_hash = _app_hash(self.app_dir)
        try:
            self.release = wheelhouse.release_name(self.app_dir, self.app_hash)
        except wheelhouse.WheelhouseError as exc:
            raise DeployError(str(exc)) from None
        self._builds: dict[tuple[str, ...], Build] = {}
        self._lock = threading.Lock()

    def __call__(self, extras: Sequence[str] = ()) -> Build:
        key = wheelhouse.normalize_extras(extras)
        with self._lock:
            if key not in self._builds:
                self._builds[key] = build_wheelhouse(self.app_dir, key, self.app_hash)
            return self._builds[key]


@dataclasses.dataclass(frozen=True)
class Plan:
    """What a deploy does to one host's files: wheels ``send`` (the host lacks them) and
    ``link`` (from its pool) into the staging directory, ``install`` into the new release
    (every wheel for a fresh venv), distributions ``remove``d from a clone."""

    send: tuple[str, ...]
    link: tuple[str, ...]
    install: tuple[str, ...]
    remove: tuple[str, ...]
    dependencies_changed: bool


NOTHING = Plan((), (), (), (), False)


def plan(build: Build, state: HostState, mode: str) -> Plan:
    """The plan for ``build`` on a host in ``state``: a clone keeps every distribution the
    current release has at the wheel's name and version (and the venv's own seeds at any
    version), removes the ones not in the wheelhouse, and reinstalls the app always."""
    wheels = build.house.wheels
    in_pool = {w for w in wheels if state.pool.get(w) == build.hashes[w]}
    if mode == "fresh":
        install, remove = list(wheels), []
    else:
        install, remove = _clone_changes(wheels, state.installed)
    return Plan(
        send=tuple(w for w in install if w not in in_pool),
        link=tuple(w for w in install if w in in_pool),
        install=tuple(install),
        remove=tuple(remove),
        dependencies_changed=mode == "fresh"
        or bool(remove)
        or any(parse_wheel_filename(w)[0] != APP for w in install),
    )


def _clone_changes(wheels: Sequence[str], installed: dict[str, str]) -> tuple[list[str], list[str]]:
    """The wheels a clone of a venv with ``installed`` reinstalls, and the names it removes."""
    have = {canonicalize_name(n): v for n, v in installed.items()}
    names = set()
    install = []
    for wheel in wheels:
        name, version, *_ = parse_wheel_filename(wheel)
        names.add(name)
        if name in VENV_SEEDS and name in have:
            continue  # the venv's own, as in a fresh venv (pip check tells if too old)
        if name == APP or not _same_version(have.get(name), version):
            install.append(wheel)
    remove = sorted(n for n in have if n not in names and n not in VENV_SEEDS)
    return install, remove


def _same_version(text: str | None, version: Version) -> bool:
    try:
        return text is not None and Version(text) == version
    except InvalidVersion:
        return False
