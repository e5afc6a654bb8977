"""Fingerprint: every input that decides the image changes it; nothing else does."""

from __future__ import annotations

import os
import shutil
from importlib import metadata
from pathlib import Path

import pytest

from bake.fingerprint import fingerprint, our_elements
from bake.hashing import tree_hash
from bake.plan import NOT_IN_FINGERPRINT, make_plan
from bake.spec import load_spec
from tests.support.cli import MIRROR_ENV, run_bake

SPEC = """\
name: fp-test
version: "1.0"
distro: debian
release: bookworm
partitioned: false
elements: [fp-top]
app: true
environment:
  DIB_EXTRA: "one"
"""


@pytest.fixture
def fp_project(project: Path) -> Path:
    """A project with a two-level element chain (fp-top -> bbq-base) and an app: true spec."""
    top = project / "elements" / "fp-top"
    (top / "install.d").mkdir(parents=True)
    (top / "README.rst").write_text("fp-top\n======\nTest element.\n")
    (top / "element-deps").write_text("bbq-base\nopenssh-server\n")
    script = top / "install.d" / "50-fp-top"
    script.write_text("#!/bin/bash\nset -eu -o pipefail\necho hello\n")
    script.chmod(0o755)
    (project / "image-specs" / "fp.yaml").write_text(SPEC)
    return project


def compute(root: Path, environ: dict | None = None) -> str:
    spec = load_spec(root / "image-specs" / "fp.yaml", [root / "elements"])
    plan = make_plan(spec, root / "elements", {**MIRROR_ENV, **(environ or {})}, root / "app")
    return fingerprint(plan).value


def test_same_inputs_same_fingerprint_and_cli_agrees(fp_project):
    value = compute(fp_project)
    assert len(value) == 64 and value == compute(fp_project)
    result = run_bake("fingerprint", "image-specs/fp.yaml", cwd=fp_project, env=MIRROR_ENV)
    assert result.returncode == 0, result.stderr
    assert result.stdout.strip() == value


def test_element_file_content_changes_it(fp_project):
    before = compute(fp_project)
    script = fp_project / "elements" / "fp-top" / "install.d" / "50-fp-top"
    script.write_text(script.read_text() + "echo more\n")
    assert compute(fp_project) != before


def test_exec_bit_changes_it(fp_project):
    before = compute(fp_project)
    (fp_project / "elements" / "fp-top" / "install.d" / "50-fp-top").chmod(0o644)
    assert compute(fp_project) != before


def test_transitive_element_dependency_changes_it(fp_project):
    before = compute(fp_project)
    pkgs = fp_project / "elements" / "bbq-base" / "package-installs.yaml"
    pkgs.write_text(pkgs.read_text() + "curl:\n")
    assert compute(fp_project) != before


def test_new_file_in_element_changes_it(fp_project):
    before = compute(fp_project)
    (fp_project / "elements" / "bbq-base" / "environment.d" / "20-more.bash").write_text("x=1\n")
    assert compute(fp_project) != before


def test_spec_environment_value_changes_it(fp_project):
    before = compute(fp_project)
    spec = fp_project / "image-specs" / "fp.yaml"
    spec.write_text(spec.read_text().replace('"one"', '"two"'))
    assert compute(fp_project) != before


def test_caller_dib_variable_changes_it_but_log_settings_do_not(fp_project):
    before = compute(fp_project)
    assert compute(fp_project, {"DIB_DEBIAN_COMPONENTS": "main,contrib"}) != before
    assert compute(fp_project, {"DIB_DISTRIBUTION_MIRROR": "http://other.invalid/d"}) != before
    assert "DIB_DEBUG_TRACE" in NOT_IN_FINGERPRINT
    assert compute(fp_project, {"DIB_DEBUG_TRACE": "1", "DIB_IMAGE_CACHE": "/x"}) == before
    assert compute(fp_project, {"HOME": "/elsewhere", "PATH": "/bin"}) == before


def test_app_file_changes_it_only_when_the_spec_bakes_the_app(fp_project):
    before = compute(fp_project)
    marker = fp_project / "app" / "bbq" / "fp_marker.py"
    marker.write_text("X = 1\n")
    with_app = compute(fp_project)
    assert with_app != before
    spec = fp_project / "image-specs" / "fp.yaml"
    spec.write_text(spec.read_text().replace("app: true", "app: false"))
    without_app = compute(fp_project)
    marker.write_text("X = 2\n")
    assert compute(fp_project) == without_app


def test_mtimes_and_caches_do_not_change_it(fp_project):
    before = compute(fp_project)
    for path in fp_project.rglob("*"):
        os.utime(path, (1_000_000, 1_000_000))
    cache = fp_project / "app" / "bbq" / "__pycache__"
    cache.mkdir(exist_ok=True)
    (cache / "junk.cpython-311.pyc").write_bytes(b"\0junk")
    assert compute(fp_project) == before


def test_checkout_elsewhere_gives_the_same_fingerprint(fp_project, tmp_path):
    before = compute(fp_project)
    elsewhere = tmp_path / "another" / "checkout"
    shutil.copytree(fp_project, elsewhere, copy_function=shutil.copy)  # new mtimes, new path
    assert compute(elsewhere) == before


def test_dib_version_is_an_input(fp_project):
    spec = load_spec(fp_project / "image-specs" / "fp.yaml", [fp_project / "elements"])
    fp = fingerprint(make_plan(spec, fp_project / "elements", MIRROR_ENV, fp_project / "app"))
    assert fp.inputs["dib_version"] == metadata.version("diskimage-builder")
    assert set(fp.elements) == {"fp-top", "bbq-base", "bbq-cleanup"}  # ours; DIB's: version


def test_our_elements_follow_deps_and_skip_dibs(fp_project):
    names = our_elements(["debian-minimal", "fp-top"], fp_project / "elements")
    assert names == ["bbq-base", "bbq-cleanup", "fp-top"]


def test_tree_hash_sees_symlinks(tmp_path):
    (tmp_path / "a").write_text("x")
    before = tree_hash(tmp_path)
    (tmp_path / "link").symlink_to("a")
    assert tree_hash(tmp_path) != before
