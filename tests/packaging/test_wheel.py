"""The built wheel, installed in a fresh venv, works outside the checkout (slow: builds the
wheel twice and installs bake's dependencies into a new venv).

The wheel is built from a clone of the checkout with the working tree's files laid over it
and committed, so the build sees what is here (not only what was committed) and the shared
working tree is left alone; its version comes from the clone's git history.
"""

from __future__ import annotations

import json
import os
import re
import shutil
import stat
import subprocess
import sys
import zipfile
from pathlib import Path

import pytest
from packaging.version import Version

from tests.support.cli import MIRROR_ENV, run_bake
from tests.support.paths import ELEMENTS, REPO, SPECS

pytestmark = pytest.mark.slow

GIT_ID = ["-c", "user.name=bbq tests", "-c", "user.email=tests@localhost"]
# What the host's pip configuration prints about its own index locations: not the build's.
HOST_PIP_NOISE = re.compile(r"WARNING: Location '.*' is ignored")


def _run(*args, cwd=None, env=None, timeout=600) -> subprocess.CompletedProcess:
    result = subprocess.run(
        [str(a) for a in args],
        cwd=cwd,
        env=env,
        capture_output=True,
        text=True,
        timeout=timeout,
    )
    assert result.returncode == 0, f"{args}: {result.stdout[-3000:]}\n{result.stderr[-3000:]}"
    return result


def _clean_env() -> dict[str, str]:
    """Our environment without the variables that point at the checkout's venv or change how
    Python writes files (byte-compiling off makes setuptools say so on every build)."""
    drop = ("VIRTUAL_ENV", "PYTHONPATH", "PYTHONDONTWRITEBYTECODE", "PYTHONHOME")
    env = {k: v for k, v in os.environ.items() if k not in drop and not k.startswith("DIB_")}
    env["PATH"] = os.pathsep.join(
        p for p in env.get("PATH", "").split(os.pathsep) if Path(p) != Path(sys.executable).parent
    )
    return env


def _source_tree(target: Path) -> Path:
    """A clone of the checkout with every file of its working tree (tracked or not, less what
    .gitignore leaves out) laid over it, committed when that changed anything."""
    _run("git", "clone", "-q", REPO, target)
    listed = _run("git", "-C", REPO, "ls-files", "-z", "--cached", "--others", "--exclude-standard")
    for name in filter(None, listed.stdout.split("\0")):
        source, copy = REPO / name, target / name
        if source.is_symlink() or source.is_file():
            copy.parent.mkdir(parents=True, exist_ok=True)
            copy.unlink(missing_ok=True)
            shutil.copy2(source, copy, follow_symlinks=False)
        elif not source.exists() and (copy.is_file() or copy.is_symlink()):
            copy.unlink()  # deleted in the working tree, not yet in a commit
    _run("git", "-C", target, "add", "-A")
    if _run("git", "-C", target, "status", "--porcelain").stdout.strip():
        _run("git", *GIT_ID, "-C", target, "commit", "-q", "-m", "the working tree")
    return target


def _build_wheel(source: Path, out: Path) -> tuple[Path, list[str]]:
    """The wheel pip builds from ``source`` (isolated, as any user's pip would), and every
    line of the build's own output that warns about something."""
    result = _run(
        sys.executable, "-m", "pip", "wheel", "-v", "--no-deps", "-w", out, source,
        env=_clean_env(),
    )  # fmt: skip
    lines = (result.stdout + result.stderr).splitlines()
    warnings = [
        line for line in lines if re.search(r"warn", line, re.I) and not HOST_PIP_NOISE.search(line)
    ]
    (wheel,) = out.glob("bbq_bake-*.whl")
    return wheel, warnings


@pytest.fixture(scope="module")
def source(tmp_path_factory) -> Path:
    return _source_tree(tmp_path_factory.mktemp("wheel") / "src")


@pytest.fixture(scope="module")
def built(source, tmp_path_factory) -> tuple[Path, list[str]]:
    return _build_wheel(source, tmp_path_factory.mktemp("dist"))


@pytest.fixture(scope="module")
def fresh_venv(built, tmp_path_factory) -> Path:
    """A new venv with the wheel and its dependencies (from the configured index; pip's
    cache makes later runs quicker)."""
    venv = tmp_path_factory.mktemp("fresh") / "venv"
    base = getattr(sys, "_base_executable", sys.executable)
    _run(base, "-m", "venv", venv, env=_clean_env())
    _run(venv / "bin" / "pip", "install", "-q", built[0], env=_clean_env(), timeout=1200)
    return venv


def _wheel_version(wheel: Path) -> str:
    return wheel.name.split("-")[1]


def test_the_wheel_builds_without_warnings(built):
    wheel, warnings = built
    assert warnings == []
    with zipfile.ZipFile(wheel) as archive:
        names = set(archive.namelist())
    version = _wheel_version(wheel)
    assert f"bbq_bake-{version}.dist-info/licenses/LICENSE" in names
    assert {"bake/schemas/image-spec.json", "bake/schemas/matrix.json"} <= names
    assert "bake/fleet/remote/install.sh" in names


def test_the_wheel_carries_every_element_spec_and_stack_file_with_its_exec_bit(built):
    wheel, _ = built
    with zipfile.ZipFile(wheel) as archive:
        modes = {
            info.filename: (info.external_attr >> 16) & 0o777
            for info in archive.infolist()
            if info.filename.startswith("bake/_data/")
        }
    expected = {}
    for name in ("elements", "image-specs", "stacks"):
        for path in (REPO / name).rglob("*"):
            if path.is_file() and "__pycache__" not in path.parts:
                executable = bool(path.stat().st_mode & stat.S_IXUSR)
                expected[f"bake/_data/{name}/{path.relative_to(REPO / name)}"] = executable
    assert {name: bool(mode & stat.S_IXUSR) for name, mode in modes.items()} == expected
    assert any(expected.values()), "no executable element script was found at all"


def test_the_version_comes_from_git(source, built):
    version = _wheel_version(built[0])
    Version(version)  # a valid version (PEP 440)
    tags = _run("git", "-C", source, "tag", "--list").stdout.split()
    commits = int(_run("git", "-C", source, "rev-list", "--count", "HEAD").stdout)
    if not tags:  # before the first release: 0.1.0.dev<commits>+g<commit>
        assert re.fullmatch(rf"0\.1\.0\.dev{commits}\+g[0-9a-f]+", version), version
        named = version.rsplit("+g", 1)[1]
        head, commit = (
            _run("git", "-C", source, "rev-parse", name).stdout for name in ("HEAD", named)
        )
        assert commit == head


def test_a_tag_is_the_version(source, tmp_path):
    tagged = tmp_path / "tagged"
    _run("git", "clone", "-q", source, tagged)
    _run("git", *GIT_ID, "-C", tagged, "tag", "-a", "7.8.9", "-m", "7.8.9")
    wheel, warnings = _build_wheel(tagged, tmp_path / "dist")
    assert wheel.name == "bbq_bake-7.8.9-py3-none-any.whl"
    assert warnings == []
    _run("git", *GIT_ID, "-C", tagged, "commit", "-q", "--allow-empty", "-m", "after 7.8.9")
    wheel, _ = _build_wheel(tagged, tmp_path / "dist-after")
    assert re.fullmatch(r"7\.9\.0\.dev1\+g[0-9a-f]+", _wheel_version(wheel)), wheel.name


def _bake(venv: Path, cwd: Path, *args: str) -> subprocess.CompletedProcess:
    env = {**_clean_env(), **MIRROR_ENV}
    env["PATH"] = f"{venv / 'bin'}{os.pathsep}{env['PATH']}"
    return subprocess.run(
        [str(venv / "bin" / "bake"), *args],
        cwd=cwd,
        env=env,
        capture_output=True,
        text=True,
        timeout=300,
    )


def test_the_installed_bake_works_outside_the_checkout(fresh_venv, built, tmp_path):
    empty = tmp_path / "empty"
    empty.mkdir()
    python = fresh_venv / "bin" / "python"
    where = _run(python, "-c", "import bake; print(bake.__file__)", cwd=empty, env=_clean_env())
    package = Path(where.stdout.strip()).parent
    assert package.is_relative_to(fresh_venv), package
    shipped = package / "_data"

    result = _bake(fresh_venv, empty, "--version")
    assert result.returncode == 0 and result.stdout == f"bake {_wheel_version(built[0])}\n"

    result = _bake(fresh_venv, empty, "validate")
    assert result.returncode == 0, result.stderr
    specs = [p for p in sorted(SPECS.glob("*.yaml")) if p.name != "matrix.yaml"]
    assert result.stdout.splitlines() == [f"ok: {shipped / 'image-specs' / p.name}" for p in specs]

    result = _bake(fresh_venv, empty, "validate", str(shipped / "image-specs" / "base.yaml"))
    assert result.returncode == 0 and result.stdout.startswith("ok: "), result.stderr

    result = _bake(fresh_venv, empty, "build", "base", "--plain", "--dry-run")
    assert result.returncode == 0, result.stderr
    assert f"ELEMENTS_PATH={shipped / 'elements'}" in result.stdout.replace("'", "")
    assert "disk-image-create" in result.stdout and "bbq-base" in result.stdout
    assert list(empty.iterdir()) == []  # a dry run leaves nothing behind

    # The shipped elements are the checkout's, file for file and exec bit for exec bit: the
    # same element hashes in the fingerprint's inputs as the checkout's own bake computes.
    result = _bake(fresh_venv, empty, "fingerprint", "base", "--plain", "--json")
    assert result.returncode == 0, result.stderr
    ours = run_bake("fingerprint", "image-specs/base.yaml", "--plain", "--json", env=MIRROR_ENV)
    assert ours.returncode == 0, ours.stderr
    installed, checkout = json.loads(result.stdout), json.loads(ours.stdout)
    assert installed["elements"] == checkout["elements"] and installed["elements"]
    assert installed["spec"] == checkout["spec"]
    assert ELEMENTS.is_dir()


def test_an_app_spec_outside_a_checkout_is_one_line(fresh_venv, tmp_path):
    """The app (app/) is not part of bake's wheel: a spec that bakes it says so in one line."""
    result = _bake(fresh_venv, tmp_path, "build", "spark", "--plain", "--dry-run")
    assert result.returncode == 2
    lines = result.stderr.splitlines()
    assert len(lines) == 1 and lines[0].startswith("error: ") and "app" in lines[0], lines
