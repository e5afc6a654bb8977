"""Spec loading and validation: every malformed spec is refused with a message naming the
file, the field and the value, exit code 2, and nothing built."""

from __future__ import annotations

import dataclasses
import json
import re
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest
import yaml
from hypothesis import given, settings
from hypothesis import strategies as st

from bake import cli, distros, specfields
from bake.spec import DEFAULTS, Spec, SpecError, load_spec, merge, spec_files
from tests.support.cli import run_bake
from tests.support.paths import REPO

GOOD = """\
name: tiny
version: "1.0"
distro: debian
release: bookworm
elements: [bbq-base]
"""

# (case id, {file: content}, expected "file: field: message" fragments)
MALFORMED = [
    ("unknown-key", {"bad.yaml": GOOD + "colour: red\n"}, ["bad.yaml: colour: unknown key"]),
    (
        "missing-name",
        {"bad.yaml": GOOD.replace("name: tiny\n", "")},
        ["bad.yaml: name: required key is missing"],
    ),
    (
        "bad-name",
        {"bad.yaml": GOOD.replace("name: tiny", "name: Tiny_Image")},
        ["bad.yaml: name: does not match", '(value: "Tiny_Image")'],
    ),
    (
        "version-number",
        {"bad.yaml": GOOD.replace('version: "1.0"', "version: 1.0")},
        ["bad.yaml: version: must be of type string", "(value: 1.0)"],
    ),
    (
        "unknown-distro",
        {"bad.yaml": GOOD.replace("distro: debian", "distro: windows")},
        ['bad.yaml: distro: must be one of "debian"', '(value: "windows")'],
    ),
    (
        "no-elements",
        {"bad.yaml": GOOD.replace("elements: [bbq-base]", "elements: []")},
        ["bad.yaml: elements: must have at least 1 item(s)"],
    ),
    (
        "unknown-element",
        {"bad.yaml": GOOD.replace("[bbq-base]", "[bbq-base, no-such-element]")},
        ["bad.yaml: elements[1]: no such element", '(value: "no-such-element")'],
    ),
    (
        "duplicate-element",
        {"bad.yaml": GOOD.replace("[bbq-base]", "[bbq-base, bbq-base]")},
        ["bad.yaml: elements: has duplicate items"],
    ),
    (
        "distro-element-listed",
        {"bad.yaml": GOOD.replace("[bbq-base]", "[debian-minimal, bbq-base]")},
        ["bad.yaml: elements[0]: distro elements come from `distro`"],
    ),
    (
        "vm-listed",
        {"bad.yaml": GOOD.replace("[bbq-base]", "[bbq-base, vm]")},
        ["bad.yaml: elements[1]: set `partitioned: true` (vm)"],
    ),
    (
        "env-not-string",
        {"bad.yaml": GOOD + "environment:\n  DIB_FOO: 3\n"},
        ["bad.yaml: environment.DIB_FOO: must be of type string", "(value: 3)"],
    ),
    (
        "env-bad-name",
        {"bad.yaml": GOOD + "environment:\n  dib_foo: x\n"},
        ["bad.yaml: environment.dib_foo: invalid key name"],
    ),
    (
        "env-reserved",
        {"bad.yaml": GOOD + "environment:\n  ELEMENTS_PATH: /tmp\n"},
        ["bad.yaml: environment.ELEMENTS_PATH: reserved"],
    ),
    (
        "env-reserved-app-extras",
        {"bad.yaml": GOOD + "environment:\n  DIB_BBQ_APP_EXTRAS: stream\n"},
        ["bad.yaml: environment.DIB_BBQ_APP_EXTRAS: reserved: use `app: {extras: [...]}`"],
    ),
    (
        "app-not-bool-or-mapping",
        {"bad.yaml": GOOD + "app: stream\n"},
        ["bad.yaml: app: must be of type boolean or object", '(value: "stream")'],
    ),
    (
        "app-unknown-key",
        {"bad.yaml": GOOD + "app:\n  extra: [stream]\n"},
        ["bad.yaml: app.extra: unknown key (allowed: extras)"],
    ),
    (
        "app-extra-bad-name",
        {"bad.yaml": GOOD + "app:\n  extras: [stream, 'a b']\n"},
        ["bad.yaml: app.extras[1]: does not match", '(value: "a b")'],
    ),
    (
        "unknown-type",
        {"bad.yaml": GOOD + "types: [iso]\n"},
        ['bad.yaml: types[0]: must be one of "qcow2"', '(value: "iso")'],
    ),
    (
        "negative-size",
        {"bad.yaml": GOOD + "image-size: -2\n"},
        ["bad.yaml: image-size: less than or equal to the minimum of 0", "(value: -2)"],
    ),
    (
        "bad-mirror",
        {"bad.yaml": GOOD + "mirrors:\n  main: ftp://example.invalid/debian\n"},
        ["bad.yaml: mirrors.main: does not match", '"ftp://example.invalid/debian"'],
    ),
    (
        "glance-unknown-key",
        {"bad.yaml": GOOD + "glance:\n  flavor: m1.small\n"},
        ["bad.yaml: glance.flavor: unknown key"],
    ),
    (
        "sahara-no-username",
        {"bad.yaml": GOOD + "sahara:\n  tags: [spark]\n"},
        ["bad.yaml: sahara.username: required key is missing"],
    ),
    (
        "smoke-no-run",
        {"bad.yaml": GOOD + "smoke:\n  - name: java\n"},
        ["bad.yaml: smoke[0].run: required key is missing"],
    ),
    (
        "smoke-bad-regex",
        {"bad.yaml": GOOD + "smoke:\n  - {name: java, run: java -version, expect: '(17'}\n"},
        ["bad.yaml: smoke[0].expect: invalid regular expression", '(value: "(17")'],
    ),
    (
        "invalid-yaml",
        {"bad.yaml": GOOD + "environment: {DIB_A: 'x'\n"},
        ["bad.yaml: invalid YAML: line 7"],
    ),
    ("not-a-mapping", {"bad.yaml": "- name: tiny\n"}, ["bad.yaml: must be a mapping of keys"]),
    ("empty-file", {"bad.yaml": ""}, ["bad.yaml: must be a mapping of keys, not empty"]),
    (
        "missing-include",
        {"bad.yaml": GOOD + "include: [common/nope.yaml]\n"},
        ['bad.yaml: include[0]: included file not found (value: "common/nope.yaml")'],
    ),
    (
        "include-cycle",
        {
            "bad.yaml": GOOD + "include: [inc/a.yaml]\n",
            "inc/a.yaml": "include: [b.yaml]\n",
            "inc/b.yaml": "include: [a.yaml]\n",
        },
        [
            "image-specs/inc/b.yaml: include: include cycle: image-specs/bad.yaml -> "
            "image-specs/inc/a.yaml -> image-specs/inc/b.yaml -> image-specs/inc/a.yaml"
        ],
    ),
    (
        "bad-value-in-include",
        {
            "bad.yaml": GOOD + "include: [inc/defaults.yaml]\n",
            "inc/defaults.yaml": "arch: sparc\n",
        },
        ['image-specs/inc/defaults.yaml: arch: must be one of "amd64"', '(value: "sparc")'],
    ),
]


def _write(project: Path, files: dict[str, str]) -> Path:
    for name, content in files.items():
        path = project / "image-specs" / name
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(content)
    return project / "image-specs" / "bad.yaml"


@pytest.mark.parametrize(
    ("files", "expected"), [c[1:] for c in MALFORMED], ids=[c[0] for c in MALFORMED]
)
def test_malformed_spec_is_refused_and_nothing_built(
    project, files, expected, capsys, monkeypatch, tmp_path
):
    spec = _write(project, files)
    monkeypatch.chdir(project)
    store = tmp_path / "store"

    assert cli.main(["validate", str(spec)]) == 2
    validate_err = capsys.readouterr().err
    assert cli.main(["build", str(spec), "--plain", "--output", str(store)]) == 2
    build_err = capsys.readouterr().err

    for text in (validate_err, build_err):
        lines = text.splitlines()
        assert lines and all(line.startswith("error: ") for line in lines)
        for fragment in expected:
            assert fragment in text, f"{fragment!r} not in:\n{text}"
    assert not store.exists(), "a refused spec must not create anything"


def test_count_of_malformed_cases():
    assert len(MALFORMED) >= 15


def test_every_problem_is_reported_at_once(project, monkeypatch, capsys):
    spec = _write(
        project,
        {
            "bad.yaml": GOOD.replace("distro: debian", "distro: hurd")
            + "colour: red\ntypes: [iso]\n"
        },
    )
    monkeypatch.chdir(project)
    assert cli.main(["validate", str(spec)]) == 2
    err = capsys.readouterr().err
    assert "colour: unknown key" in err
    assert "distro: must be one of" in err
    assert "types[0]: must be one of" in err


def test_cli_exit_code_and_message_for_a_bad_spec(project):
    spec = _write(project, {"bad.yaml": GOOD + "colour: red\n"})
    result = run_bake("validate", str(spec), cwd=project)
    assert result.returncode == 2
    assert result.stderr.startswith("error: image-specs/bad.yaml: colour: unknown key")
    assert result.stdout == ""


def test_project_specs_are_valid():
    result = run_bake("validate", cwd=REPO)
    assert result.returncode == 0, result.stderr
    for path in spec_files(REPO / "image-specs"):
        assert f"ok: image-specs/{path.name}" in result.stdout


def test_includes_merge_mappings_and_extend_element_lists(project):
    inc = project / "image-specs" / "inc"
    inc.mkdir()
    (inc / "defaults.yaml").write_text(
        textwrap.dedent(
            """\
            elements: [bbq-base]
            environment: {DIB_A: "1", DIB_B: "2"}
            types: [qcow2, tar]
            glance: {min_ram: 512, properties: {hw_disk_bus: virtio}}
            """
        )
    )
    spec_path = project / "image-specs" / "x.yaml"
    spec_path.write_text(
        GOOD.replace("[bbq-base]", "[openssh-server]")
        + "include: [inc/defaults.yaml]\n"
        + "environment: {DIB_B: '3'}\ntypes: [raw]\nglance: {properties: {hw_rng_model: virtio}}\n"
    )
    spec = load_spec(spec_path, [project / "elements"])
    assert spec.elements == ("bbq-base", "openssh-server")
    assert spec.environment == {"DIB_A": "1", "DIB_B": "3"}
    assert spec.types == ("raw",)
    assert spec.glance == {
        "min_ram": 512,
        "properties": {"hw_disk_bus": "virtio", "hw_rng_model": "virtio"},
    }
    assert spec.arch == "amd64" and spec.partitioned is True  # defaults
    assert [p.name for p in spec.files] == ["x.yaml", "defaults.yaml"]


def test_merge_does_not_modify_its_inputs():
    base = {"elements": ["a"], "environment": {"A": "1"}}
    merged = merge(base, {"elements": ["b"], "environment": {"B": "2"}})
    assert merged == {"elements": ["a", "b"], "environment": {"A": "1", "B": "2"}}
    assert base == {"elements": ["a"], "environment": {"A": "1"}}


def test_spec_error_lists_problems(project):
    spec = _write(project, {"bad.yaml": GOOD + "colour: red\n"})
    with pytest.raises(SpecError) as info:
        load_spec(spec, [project / "elements"], root=project)
    assert [p.field for p in info.value.problems] == ["colour"]


def test_app_extras_reach_the_plan_and_the_fingerprint(project):
    from bake.fingerprint import fingerprint
    from bake.plan import make_plan
    from tests.support.cli import MIRROR_ENV

    def plan_of(app: str):
        _write(project, {"x.yaml": GOOD + app})
        spec = load_spec(project / "image-specs" / "x.yaml", [project / "elements"])
        return make_plan(spec, project / "elements", MIRROR_ENV, project / "app")

    plain, stream = plan_of("app: true\n"), plan_of("app:\n  extras: [Stream]\n")
    assert plain.app_extras == () and plain.environment["DIB_BBQ_APP_EXTRAS"] == ""
    assert stream.app_extras == ("stream",)
    assert stream.environment["DIB_BBQ_APP_EXTRAS"] == "stream"
    assert stream.environment["DIB_BBQ_WHEELHOUSE"].endswith("+stream")
    assert stream.spec.to_dict()["app"] == {"extras": ["Stream"]}
    assert plain.spec.to_dict()["app"] is True
    assert fingerprint(plain).value != fingerprint(stream).value


@pytest.mark.parametrize(
    ("setting", "arguments"),
    [
        ("", []),
        ("qcow2-compression: zlib\n", []),
        ("qcow2-compression: zstd\n", ["--qemu-img-options", "compression_type=zstd"]),
        ("qcow2-compression: none\n", ["-u"]),
    ],
)
def test_qcow2_compression_reaches_disk_image_create_and_the_fingerprint(
    project, setting, arguments
):
    from bake.fingerprint import fingerprint
    from bake.plan import make_plan
    from tests.support.cli import MIRROR_ENV

    def plan_of(text: str):
        _write(project, {"x.yaml": text})
        spec = load_spec(project / "image-specs" / "x.yaml", [project / "elements"])
        return make_plan(spec, project / "elements", MIRROR_ENV)

    plan = plan_of(GOOD + "types: [qcow2]\n" + setting)
    command = plan.command("out/x")
    types = command.index("-t")
    assert command[types : types + 2 + len(arguments)] == ["-t", "qcow2", *arguments]
    other = "zlib" if "zstd" in setting else "zstd"
    changed = plan_of(GOOD + "types: [qcow2]\n" + f"qcow2-compression: {other}\n")
    assert fingerprint(plan).value != fingerprint(changed).value
    # Without a qcow2 output there is nothing to compress: no argument for the others.
    tar = plan_of(GOOD + "types: [tar]\n" + setting).command("out/x")
    assert "-u" not in tar and "--qemu-img-options" not in tar


def test_undeclared_app_extra_is_refused_and_nothing_built(project, capsys, monkeypatch, tmp_path):
    spec = _write(project, {"bad.yaml": GOOD + "app:\n  extras: [turbo]\n"})
    monkeypatch.chdir(project)
    store = tmp_path / "store"
    assert cli.main(["build", str(spec), "--plain", "--output", str(store)]) == 2
    err = capsys.readouterr().err
    assert err.startswith("error: ") and len(err.splitlines()) == 1
    assert "bad.yaml: app.extras: turbo not declared in" in err
    assert "[options.extras_require]" in err
    assert not store.exists()


# ---------------------------------------------------------------------------------------
# The field table (bake.specfields): the schema, DEFAULTS, Spec and to_dict come from it.


def test_committed_schema_is_generated_from_the_field_table():
    committed = specfields.SCHEMA_PATH.read_text()
    assert committed == specfields.render(), (
        "run: python -m bake.specfields  (bake/schemas/image-spec.json is out of date)"
    )


def test_schema_check_fails_when_the_file_is_out_of_date(tmp_path):
    output = tmp_path / "image-spec.json"
    command = [sys.executable, "-m", "bake.specfields", "--output", str(output)]
    run = {"cwd": REPO, "capture_output": True, "text": True, "timeout": 60}
    assert subprocess.run([*command, "--check"], **run).returncode == 1  # no file yet
    assert subprocess.run(command, **run).returncode == 0
    assert json.loads(output.read_text()) == specfields.schema()
    assert subprocess.run([*command, "--check"], **run).returncode == 0
    output.write_text(output.read_text().replace('"maximum": 1024', '"maximum": 2048'))
    result = subprocess.run([*command, "--check"], **run)
    assert result.returncode == 1
    assert "out of sync" in result.stderr and "python -m bake.specfields" in result.stderr


def _schemas_in(schema: dict):
    """The schema and every subschema in it, depth first."""
    yield schema
    subschemas = [
        *schema.get("properties", {}).values(),
        *schema.get("$defs", {}).values(),
        *schema.get("oneOf", []),
        *[schema[k] for k in ("items", "additionalProperties", "propertyNames") if k in schema],
    ]
    for sub in subschemas:
        if isinstance(sub, dict):
            yield from _schemas_in(sub)


def test_every_field_and_subfield_has_a_description():
    schema = specfields.schema()
    missing = [
        key
        for sub in _schemas_in(schema)
        for key, prop in sub.get("properties", {}).items()
        if not prop.get("description")
    ]
    assert schema["description"] and not missing


def test_schema_enums_are_the_distros_vocabularies():
    properties = specfields.schema()["properties"]
    assert properties["distro"]["enum"] == ["debian", "ubuntu", "centos", "rocky"]
    assert properties["distro"]["enum"] == [str(name) for name in distros.DistroName]
    assert list(distros.DISTROS) == list(distros.DistroName)  # one row each, same order
    assert properties["arch"]["enum"] == ["amd64", "arm64", "x86_64", "aarch64"]
    assert properties["arch"]["enum"] == [str(arch) for arch in distros.Arch]
    assert [arch.machine for arch in distros.Arch] == ["x86_64", "aarch64", "x86_64", "aarch64"]
    assert distros.DISTROS["debian"] is distros.DISTROS[distros.DistroName.DEBIAN]


def test_spec_attributes_defaults_and_to_dict_come_from_the_table():
    fields = [f.name for f in dataclasses.fields(Spec)]
    from_table = [name for field in specfields.FIELDS for name, _ in field.attributes()]
    assert fields == ["path", *from_table, "files"]
    assert "app_extras" in fields and "image_size" in fields and "include" not in fields
    keys = [field.key for field in specfields.FIELDS]
    assert keys == list(specfields.schema()["properties"])
    assert set(DEFAULTS) | {"include"} | set(specfields.schema()["required"]) == set(keys)
    spec = load_spec(REPO / "image-specs" / "base.yaml", [REPO / "elements"], root=REPO)
    assert list(spec.to_dict()) == [key for key in keys if key != "include"]


@pytest.mark.parametrize("path", spec_files(REPO / "image-specs"), ids=lambda p: p.name)
def test_to_dict_loads_back_into_the_same_spec(path, tmp_path):
    """to_dict (the data fingerprinted and recorded in manifests) is a valid spec that loads
    back into an equal Spec: each row's load and dump are inverses."""
    spec = load_spec(path, [REPO / "elements"], root=REPO)
    data = {k: v for k, v in spec.to_dict().items() if v is not None}
    again = tmp_path / path.name
    again.write_text(yaml.safe_dump(data, sort_keys=False))
    reloaded = load_spec(again, [REPO / "elements"], root=tmp_path)
    assert reloaded.to_dict() == spec.to_dict()
    assert reloaded.replace(path=spec.path, files=spec.files) == spec


def _patterns(schema: dict) -> list[str]:
    return sorted({sub["pattern"] for sub in _schemas_in(schema) if "pattern" in sub})


def test_every_pattern_is_anchored_against_a_trailing_newline():
    patterns = _patterns(specfields.schema())
    assert len(patterns) >= 10  # names, versions, variables, elements, packages, mirrors...
    for pattern in patterns:
        assert pattern.startswith("^") and pattern.endswith("$(?!\\n)"), pattern


@settings(max_examples=50, derandomize=True, deadline=None)
@given(data=st.data())
def test_values_of_every_pattern_are_refused_with_a_newline_appended(data):
    """jsonschema searches patterns with re.search, where `$` also matches before a final
    newline: every value a pattern accepts must be refused once a newline follows it."""
    pattern = data.draw(st.sampled_from(_patterns(specfields.schema())))
    value = data.draw(st.from_regex(pattern))
    assert re.search(pattern, value), (pattern, value)
    for bad in (value + "\n", value + "\n\n", value + "\r\n"):
        assert not re.search(pattern, bad), (pattern, bad)


NEWLINE_VALUES = [
    ("name", GOOD.replace("name: tiny", 'name: "tiny\\n"'), "name: does not match"),
    ("version", GOOD.replace('version: "1.0"', 'version: "1.0\\n"'), "version: does not match"),
    ("release", GOOD.replace("release: bookworm", 'release: "bookworm\\n"'), "release: does not"),
    (
        "environment name",
        GOOD + 'environment: {"DIB_X\\n": "1"}\n',
        "environment.DIB_X\n: invalid key name",
    ),
    ("element", GOOD.replace("[bbq-base]", '["bbq-base\\n"]'), "elements[0]: does not match"),
    ("package", GOOD + 'packages: ["curl\\n"]\n', "packages[0]: does not match"),
    ("app extra", GOOD + 'app: {extras: ["stream\\n"]}\n', "app.extras[0]: does not match"),
    ("mirror", GOOD + 'mirrors: {main: "auto\\n"}\n', "mirrors.main: does not match"),
    ("sahara user", GOOD + 'sahara: {username: "ubuntu\\n"}\n', "sahara.username: does not"),
]


@pytest.mark.parametrize(
    ("content", "expected"), [c[1:] for c in NEWLINE_VALUES], ids=[c[0] for c in NEWLINE_VALUES]
)
def test_value_ending_in_a_newline_is_refused(project, content, expected, capsys, monkeypatch):
    spec = _write(project, {"bad.yaml": content})
    monkeypatch.chdir(project)
    assert cli.main(["validate", str(spec)]) == 2
    err = capsys.readouterr().err
    assert f"error: image-specs/bad.yaml: {expected}" in err, err
    good = _write(project, {"bad.yaml": content.replace("\\n", "")})
    assert cli.main(["validate", str(good)]) == 0, capsys.readouterr().err
