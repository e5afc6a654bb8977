"""Wheelhouse: built once per app source and extras, with exactly the extras asked for."""

from __future__ import annotations

import textwrap
from pathlib import Path

import pytest

from bake import wheelhouse
from bake.hashing import tree_hash
from tests.support.paths import REPO


def tiny_app(root: Path, extras: str = "fancy =\n") -> Path:
    """A one-module project named bbq with an extra that needs nothing more."""
    app = root / "app"
    (app / "bbq").mkdir(parents=True)
    (app / "bbq" / "__init__.py").write_text("")
    (app / "pyproject.toml").write_text(
        '[build-system]\nrequires = ["setuptools>=64", "wheel"]\n'
        'build-backend = "setuptools.build_meta"\n'
    )
    (app / "setup.cfg").write_text(
        textwrap.dedent(
            """\
            [metadata]
            name = bbq
            version = 2.0.1

            [options]
            packages = bbq

            [options.extras_require]
            """
        )
        + extras
    )
    return app


def test_cache_key_and_requirement_name_the_extras(tmp_path):
    plain = wheelhouse.path_for("abc", (), tmp_path)
    stream = wheelhouse.path_for("abc", ("Stream",), tmp_path)
    assert plain == tmp_path / "abc"
    assert stream == tmp_path / "abc+stream"
    assert wheelhouse.path_for("abc", ("b_x", "a"), tmp_path) == tmp_path / "abc+a+b-x"
    assert wheelhouse.requirement(()) == "bbq"
    assert wheelhouse.requirement(("stream", "spark")) == "bbq[spark,stream]"


@pytest.mark.parametrize("bad", ["", "-x", "a b", "x]"])
def test_invalid_extra_names_are_refused(bad):
    with pytest.raises(wheelhouse.WheelhouseError, match="invalid extra name"):
        wheelhouse.normalize_extras([bad])


def test_declared_extras_come_from_setup_cfg(tmp_path):
    app = tiny_app(tmp_path, "fancy =\nOther_One =\n    bbq\n")
    assert wheelhouse.declared_extras(app) == ("fancy", "other-one")


def test_unknown_extra_is_refused_before_building(tmp_path):
    app = tiny_app(tmp_path)
    cache = tmp_path / "cache"
    with pytest.raises(wheelhouse.WheelhouseError, match=r"no extra 'stream'.*declared: fancy"):
        wheelhouse.ensure(app, tree_hash(app), ("stream",), cache_root=cache)
    assert not cache.exists() or not any(cache.iterdir())


def test_built_once_per_source_and_extras(tmp_path):
    app = tiny_app(tmp_path)
    cache = tmp_path / "cache"
    app_hash = tree_hash(app)
    house = wheelhouse.ensure(app, app_hash, ("fancy",), cache_root=cache)
    assert house.path == cache / f"{app_hash}+fancy"
    assert house.extras == ("fancy",) and house.requirement == "bbq[fancy]"
    assert house.release == f"2.0.1-{app_hash[:10]}"
    assert house.wheels == ("bbq-2.0.1-py3-none-any.whl",)
    marker = house.path / wheelhouse.COMPLETE
    built_at = marker.stat().st_mtime_ns
    again = wheelhouse.ensure(app, app_hash, ["fancy"], cache_root=cache)
    assert again == house and marker.stat().st_mtime_ns == built_at
    plain = wheelhouse.ensure(app, app_hash, cache_root=cache)
    assert plain.path == cache / app_hash and plain.extras == ()
    assert sorted(p.name for p in cache.iterdir()) == sorted([app_hash, f"{app_hash}+fancy"])


@pytest.mark.slow
def test_stream_extra_brings_pyarrow_and_pandas_plain_does_not(tmp_path):
    app = REPO / "app"
    app_hash = tree_hash(app)
    plain = wheelhouse.ensure(app, app_hash, cache_root=tmp_path)
    stream = wheelhouse.ensure(app, app_hash, ("stream",), cache_root=tmp_path)

    def names(house):
        return {w.split("-")[0].lower() for w in house.wheels}

    assert {"bbq", "pymongo", "flask"} <= names(plain)
    assert not {"pyarrow", "pandas", "numpy"} & names(plain)
    assert {"pyarrow", "pandas", "numpy"} <= names(stream)
