"""Hostile input files: spec files, includes and artifact manifests that are broken on
purpose, generated (hypothesis, fixed seed, bounded) and hand-picked. Every one must end in
one clear problem naming the file (SpecError / ArtifactError), never another exception, a
hang or unbounded memory; through the real CLI, in ``error:`` lines and exit code 2."""

from __future__ import annotations

import json
import os
import re
import shutil
import subprocess
from pathlib import Path

import pytest
import yaml
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from bake.artifacts import MANIFEST, Artifact, ArtifactError, Store
from bake.matrix import load_matrix
from bake.spec import SpecError, load_spec
from tests.support.cli import run_bake
from tests.support.paths import BAKE, REPO

CASES = settings(
    max_examples=300,
    derandomize=True,
    deadline=None,
    suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow],
)
GOOD = (REPO / "image-specs" / "base.yaml").read_text()

json_values = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats(allow_nan=False) | st.text(),
    lambda inner: st.lists(inner, max_size=4) | st.dictionaries(st.text(), inner, max_size=4),
    max_leaves=12,
)


def _spec_dir(tmp_path: Path) -> Path:
    specs = tmp_path / "image-specs"
    if not specs.exists():
        specs.mkdir()
        shutil.copytree(REPO / "image-specs" / "common", specs / "common")
    return specs


def _only_spec_errors(path: Path, root: Path) -> list[str]:
    try:
        load_spec(path, [REPO / "elements"], root=root)
    except SpecError as exc:
        lines = exc.lines()
        assert lines and all(line.startswith(("image-specs/", str(root))) for line in lines)
        return lines
    return []


@CASES
@given(data=st.binary(max_size=400))
def test_any_bytes_as_a_spec_give_spec_errors_only(tmp_path, data):
    spec = _spec_dir(tmp_path) / "bad.yaml"
    spec.write_bytes(data)
    _only_spec_errors(spec, tmp_path)


@CASES
@given(
    lines=st.lists(
        st.sampled_from(GOOD.splitlines())
        | st.text(alphabet=st.characters(codec="utf-8"), max_size=40),
        max_size=20,
    )
)
def test_mangled_specs_give_spec_errors_only(tmp_path, lines):
    spec = _spec_dir(tmp_path) / "bad.yaml"
    spec.write_text("\n".join(lines) + "\n")
    _only_spec_errors(spec, tmp_path)


@CASES
@given(value=json_values, key=st.sampled_from(["name", "version", "elements", "include", "smoke"]))
def test_any_value_in_any_field_gives_spec_errors_only(tmp_path, value, key):
    spec = _spec_dir(tmp_path) / "bad.yaml"
    spec.write_text(GOOD + "\n" + json.dumps({key: value}).strip("{}") + "\n")
    _only_spec_errors(spec, tmp_path)


HOSTILE_SPECS = {
    "alias bomb": "a: &a [x, x, x, x, x, x, x, x, x]\n"
    + "".join(
        f"{chr(98 + i)}: &{chr(98 + i)} [*{chr(97 + i)}, *{chr(97 + i)}]\n" for i in range(20)
    ),
    "recursive alias": "a: &a [*a]\n",
    "duplicate key": GOOD + "name: other\n",
    "non-string key": GOOD + "1: one\n",
    "deep nesting": "name: " + "[" * 5000 + "]" * 5000 + "\n",
    "utf-16": GOOD.encode("utf-16"),
    "invalid utf-8": GOOD.encode() + b"# \xff\xfe\n",
    "binary": bytes(range(256)),
    "name with a newline": GOOD.replace("name: bbq-base", 'name: "bbq-base\\n"'),
}


@pytest.mark.parametrize("case", sorted(HOSTILE_SPECS))
def test_hostile_spec_is_one_clear_problem(tmp_path, case):
    content = HOSTILE_SPECS[case]
    spec = _spec_dir(tmp_path) / "bad.yaml"
    spec.write_bytes(content if isinstance(content, bytes) else content.encode())
    lines = _only_spec_errors(spec, tmp_path)
    assert lines, f"{case}: accepted"


def _include(tmp_path: Path, target: str) -> list[str]:
    spec = _spec_dir(tmp_path) / "bad.yaml"
    spec.write_text(re.sub(r"(?m)^include: .*$", f"include: [{target}]", GOOD))
    return _only_spec_errors(spec, tmp_path)


def test_includes_that_are_not_plain_files_inside_the_specs_are_refused(tmp_path):
    specs = _spec_dir(tmp_path)
    os.mkfifo(specs / "fifo.yaml")
    (specs / "loop.yaml").symlink_to("loop.yaml")
    (specs / "zero.yaml").symlink_to("/dev/zero")
    secret = tmp_path / "secret.yaml"
    secret.write_text("name: TOP-SECRET-VALUE\n")
    for target, expected in [
        ("fifo.yaml", "not a regular file"),
        ("zero.yaml", "outside"),
        ("loop.yaml", "cannot resolve"),
        ("../secret.yaml", "outside"),
        ("/etc/passwd", "outside"),
        ("common", "a directory"),
    ]:
        lines = _include(tmp_path, target)
        assert any(expected in line for line in lines), (target, lines)
        assert not any("TOP-SECRET" in line for line in lines)


def test_validate_through_the_cli_never_hangs_or_tracebacks(tmp_path):
    specs = _spec_dir(tmp_path)
    os.mkfifo(specs / "fifo.yaml")
    (specs / "bomb.yaml").write_text(HOSTILE_SPECS["alias bomb"])
    (specs / "binary.yaml").write_bytes(bytes(range(256)))
    result = run_bake(
        "validate",
        "image-specs/fifo.yaml",
        "image-specs/bomb.yaml",
        "image-specs/binary.yaml",
        cwd=tmp_path,
        timeout=60,
    )
    assert result.returncode == 2, result.stderr
    assert "Traceback" not in result.stderr
    errors = result.stderr.splitlines()
    assert len(errors) == 3 and all(line.startswith("error: image-specs/") for line in errors)


# ---------------------------------------------------------------------------------------
# Artifact manifests


def _artifact(root: Path, manifest: object | bytes) -> Path:
    path = root / "bbq-base" / ("0" * 64)
    path.mkdir(parents=True, exist_ok=True)
    data = manifest if isinstance(manifest, bytes) else json.dumps(manifest).encode()
    (path / MANIFEST).write_bytes(data)
    return path


VALID = {
    "name": "bbq-base",
    "version": "0.1.0",
    "fingerprint": "0" * 64,
    "spec": {},
    "files": {},
}


@CASES
@given(manifest=json_values | st.fixed_dictionaries({}, optional={k: json_values for k in VALID}))
def test_any_manifest_loads_or_is_an_artifact_error(tmp_path, manifest):
    path = _artifact(tmp_path / "store", manifest)
    try:
        Artifact.load(path)
    except ArtifactError as exc:
        assert str(path) in str(exc)
    assert all(isinstance(a, Artifact) for a in Store(tmp_path / "store").artifacts())


@CASES
@given(data=st.binary(max_size=300))
def test_any_manifest_bytes_load_or_are_an_artifact_error(tmp_path, data):
    path = _artifact(tmp_path / "store", data)
    with pytest.raises(ArtifactError):
        Artifact.load(path)


def test_list_skips_corrupt_manifests_and_a_closed_pipe_ends_quietly(tmp_path):
    store = tmp_path / "store"
    _artifact(store, {**VALID, "files": {"../x": {"size": "big"}}})
    good = store / "bbq-rest" / ("1" * 64)
    good.mkdir(parents=True)
    (good / MANIFEST).write_text(json.dumps({**VALID, "name": "bbq-rest", "fingerprint": "1" * 64}))
    result = run_bake("list", "--output", str(store), "--json")
    assert result.returncode == 0, result.stderr
    assert [a["name"] for a in json.loads(result.stdout)] == ["bbq-rest"]
    piped = subprocess.run(
        f"{BAKE} list --output {store} --json | head -c 1",
        shell=True,
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert piped.stdout == "[" and "Traceback" not in piped.stderr, piped.stderr


# ---------------------------------------------------------------------------------------
# The matrix file


@CASES
@given(data=st.binary(max_size=300) | st.text(max_size=300).map(str.encode))
def test_any_matrix_bytes_give_spec_errors_only(tmp_path, data):
    specs = _spec_dir(tmp_path)
    (specs / "matrix.yaml").write_bytes(data)
    try:
        load_matrix(specs / "matrix.yaml", REPO / "elements", root=tmp_path)
    except SpecError as exc:
        assert all(line.startswith("image-specs/") for line in exc.lines()), exc.lines()


@CASES
@given(
    value=json_values,
    key=st.sampled_from(["specs", "distros", "spark", "exclude", "unbuildable", "validate-only"]),
)
def test_any_value_in_a_matrix_field_gives_spec_errors_only(tmp_path, value, key):
    specs = _spec_dir(tmp_path)
    text = (REPO / "image-specs" / "matrix.yaml").read_text()
    data = yaml.safe_load(text)
    data[key] = value
    (specs / "matrix.yaml").write_text(json.dumps(data))
    with pytest.raises(SpecError):
        load_matrix(specs / "matrix.yaml", REPO / "elements", root=tmp_path)


# ---------------------------------------------------------------------------------------
# clouds.yaml


HOSTILE_CLOUDS = {
    "not YAML": ("clouds: [1,", "invalid YAML"),
    "a list": ("- a\n- b\n", "must be a mapping"),
    "clouds a number": ("clouds: 5\n", "clouds: must be a mapping"),
    "a cloud a number": ("clouds:\n  x: 5\n", "clouds.x: must be a mapping"),
    "auth a list": ("clouds:\n  x:\n    auth: [1]\n", "clouds.x.auth: must be a mapping"),
    "binary": (b"\xff\xfe\x00", "not UTF-8"),
    "alias bomb": (HOSTILE_SPECS["alias bomb"], "too many aliases"),
}


@pytest.mark.parametrize("case", sorted(HOSTILE_CLOUDS))
def test_hostile_clouds_yaml_is_one_line_naming_the_file(tmp_path, case):
    content, expected = HOSTILE_CLOUDS[case]
    clouds = tmp_path / "clouds.yaml"
    clouds.write_bytes(content if isinstance(content, bytes) else content.encode())
    env = {"OS_CLIENT_CONFIG_FILE": str(clouds)}
    result = run_bake("images", "--os-cloud", "x", env=env, drop=("DIB_", "OS_"), timeout=60)
    assert result.returncode == 2, result.stderr
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith(f"error: {clouds}"), lines
    assert expected in lines[0]


def test_clouds_yaml_that_is_missing_or_not_a_file_is_named(tmp_path):
    os.mkfifo(tmp_path / "fifo")
    for path, expected in [
        (tmp_path / "missing.yaml", "no such file"),
        (tmp_path / "fifo", "not a regular file"),
    ]:
        env = {"OS_CLIENT_CONFIG_FILE": str(path)}
        result = run_bake("images", "--os-cloud", "x", env=env, drop=("DIB_", "OS_"), timeout=60)
        assert result.returncode == 2 and str(path) in result.stderr, result.stderr
        assert expected in result.stderr and "Traceback" not in result.stderr
    clouds = tmp_path / "clouds.yaml"
    clouds.write_text("clouds:\n  other:\n    auth: {}\n")
    env = {"OS_CLIENT_CONFIG_FILE": str(clouds)}
    result = run_bake("images", "--os-cloud", "x", env=env, drop=("DIB_", "OS_"), timeout=60)
    assert result.returncode == 2 and f"(in {clouds})" in result.stderr, result.stderr
