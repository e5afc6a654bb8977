"""bake.resources: which elements and specs ``bake`` uses, in a checkout and outside one.

These run the real functions on real directories; the installed wheel itself is tested in
test_wheel.py (bake/_data of a fresh venv).
"""

from __future__ import annotations

import shutil
from pathlib import Path

import bake
from bake import resources
from tests.support.cli import MIRROR_ENV, run_bake
from tests.support.paths import ELEMENTS, REPO, SPECS


def test_under_pytest_bake_is_the_checkouts_and_ships_the_checkouts_directories():
    assert Path(bake.__file__).resolve() == REPO / "bake" / "__init__.py"
    assert resources.shipped_root() == REPO
    assert resources.shipped("elements") == ELEMENTS
    assert resources.shipped("image-specs") == SPECS
    assert resources.shipped("stacks") == REPO / "stacks"
    assert resources.shipped("no-such-directory") is None


def test_the_spec_checkout_wins_over_the_current_directory_and_the_shipped_ones(tmp_path):
    other = tmp_path / "other"
    (other / "elements" / "mine").mkdir(parents=True)
    (other / "image-specs" / "common").mkdir(parents=True)
    spec = other / "image-specs" / "x.yaml"
    spec.write_text("name: x\n")
    cwd = tmp_path / "cwd"
    (cwd / "elements").mkdir(parents=True)
    assert resources.elements_dir(spec, cwd=cwd) == other / "elements"
    # an include's directory walks up to the same checkout
    assert resources.elements_dir(other / "image-specs" / "common" / "y.yaml", cwd) == (
        other / "elements"
    )


def test_a_spec_outside_any_checkout_uses_the_current_directory_then_the_shipped_elements(
    tmp_path,
):
    lone = tmp_path / "lone"
    lone.mkdir()
    spec = lone / "x.yaml"
    cwd = tmp_path / "cwd"
    (cwd / "elements").mkdir(parents=True)
    assert resources.elements_dir(spec, cwd=cwd) == cwd / "elements"
    empty = tmp_path / "empty"
    empty.mkdir()
    assert resources.elements_dir(spec, cwd=empty) == ELEMENTS


def test_specs_dir_and_spec_names(tmp_path):
    empty = tmp_path / "empty"
    empty.mkdir()
    assert resources.specs_dir(empty) == SPECS
    assert resources.spec_path("base", cwd=empty) == SPECS / "base.yaml"
    assert resources.spec_path("base.yaml", cwd=empty) == SPECS / "base.yaml"
    # a directory of the user's own wins, and a path or an unknown name stays as given
    own = tmp_path / "own"
    (own / "image-specs").mkdir(parents=True)
    (own / "image-specs" / "base.yaml").write_text("name: mine\n")
    assert resources.specs_dir(own) == own / "image-specs"
    assert resources.spec_path("base", cwd=own) == own / "image-specs" / "base.yaml"
    assert resources.spec_path("nope", cwd=empty) == Path("nope")
    assert resources.spec_path("sub/base.yaml", cwd=empty) == Path("sub/base.yaml")
    assert resources.spec_path("../base", cwd=empty) == Path("../base")


def test_version_is_the_installed_distributions():
    from importlib import metadata

    assert resources.version() == metadata.version("bbq-bake")


def test_bake_outside_the_checkout_validates_and_plans_the_shipped_specs(tmp_path):
    """The checkout's bake (editable install) run from an empty directory: the specs and
    elements it ships are the checkout's, found by name."""
    empty = tmp_path / "empty"
    empty.mkdir()
    result = run_bake("validate", cwd=empty, env=MIRROR_ENV)
    assert result.returncode == 0, result.stderr
    shipped = [p for p in sorted(SPECS.glob("*.yaml")) if p.name != "matrix.yaml"]
    assert result.stdout.splitlines() == [f"ok: {p}" for p in shipped]
    result = run_bake("build", "base", "--plain", "--dry-run", cwd=empty, env=MIRROR_ENV)
    assert result.returncode == 0, result.stderr
    assert f"ELEMENTS_PATH={ELEMENTS}" in result.stdout.replace("'", "")


def test_a_copied_checkout_uses_its_own_elements(tmp_path):
    """Inside a checkout (here a copy of ours), its own elements/ win over the shipped ones."""
    copy = tmp_path / "copy"
    for name in ("elements", "image-specs"):
        shutil.copytree(REPO / name, copy / name)
    result = run_bake("build", "base", "--plain", "--dry-run", cwd=copy, env=MIRROR_ENV)
    assert result.returncode == 0, result.stderr
    assert f"ELEMENTS_PATH={copy / 'elements'}" in result.stdout.replace("'", "")
