"""The matrix file: expansion, excludes, reasons, bad input, dry runs (no image is built)."""

from __future__ import annotations

import json

import pytest

from bake import matrix as matrices
from bake.spec import SpecError
from tests.matrix.conftest import write_matrix
from tests.support.cli import MIRROR_ENV, run_bake
from tests.support.paths import REPO


@pytest.fixture(scope="module")
def repo_matrix() -> matrices.Matrix:
    return matrices.load_matrix(REPO / "image-specs" / "matrix.yaml", root=REPO)


def test_rows_are_specs_by_distro_release_and_spark_for_spark_specs_only(repo_matrix):
    rows = matrices.expand(repo_matrix)
    ids = [r.id for r in rows]
    assert len(ids) == len(set(ids))
    distros = [f"{d['distro']}-{d['release']}" for d in repo_matrix.distros]
    sparks = [v["version"] for v in repo_matrix.spark_versions]
    expected = []
    for spec in repo_matrix.specs:
        for distro in distros:
            if spec in repo_matrix.spark_specs:
                expected += [f"{spec}/{distro}/spark-{v}" for v in sparks]
            else:
                expected.append(f"{spec}/{distro}")
    assert ids == expected
    assert "base/debian-bookworm" in ids
    assert "spark/debian-bookworm/spark-4.3.0" in ids
    assert not any(i.startswith("base/") and "/spark-" in i for i in ids)


def test_every_row_not_built_carries_its_reason(repo_matrix):
    rows = matrices.expand(repo_matrix)
    statuses = {r.status for r in rows}
    assert {"build", "excluded", "unbuildable", "validate-only"} <= statuses
    for row in rows:
        if row.status == "build":
            assert row.reason == ""
        else:
            assert len(row.reason) > 10, row
    by_id = {r.id: r for r in rows}
    assert by_id["base/debian-bookworm"].status == "build"
    assert by_id["base/centos-9-stream"].status == "unbuildable"
    assert "dnf" in by_id["base/centos-9-stream"].reason
    assert by_id["spark/debian-bookworm/spark-3.5.7"].status == "unbuildable"
    assert by_id["datastore/ubuntu-noble"].status == "excluded"
    assert by_id["datastore/debian-bookworm"].status == "validate-only"


MINI = """
specs: [base, spark]
distros:
  - {distro: debian, release: bookworm}
  - {distro: ubuntu, release: noble, mirrors: {}}
spark:
  specs: [spark]
  versions:
    - {version: "4.3.0"}
    - {version: "3.9.9", sha256: "%s"}
""" % ("ab" * 32)


def test_exclude_wins_over_unbuildable_and_rules_match_on_every_key(project):
    path = write_matrix(
        project,
        MINI
        + """
exclude:
  - {spec: spark, distro: ubuntu, reason: not wanted}
unbuildable:
  - {distro: ubuntu, reason: no mirror}
  - {spec: spark, spark: "3.9.9", release: bookworm, reason: too new}
""",
    )
    rows = {r.id: r for r in matrices.expand(matrices.load_matrix(path, root=project))}
    assert rows["spark/ubuntu-noble/spark-4.3.0"].status == "excluded"
    assert rows["spark/ubuntu-noble/spark-4.3.0"].reason == "not wanted"
    assert rows["base/ubuntu-noble"].status == "unbuildable"
    assert rows["base/ubuntu-noble"].reason == "no mirror"
    assert rows["spark/debian-bookworm/spark-3.9.9"].status == "unbuildable"
    assert rows["spark/debian-bookworm/spark-4.3.0"].status == "build"
    assert rows["base/debian-bookworm"].status == "build"


def test_row_spec_replaces_distro_release_mirrors_and_spark(project):
    matrix = matrices.load_matrix(write_matrix(project, MINI), root=project)
    rows = {r.id: r for r in matrices.expand(matrix)}
    spec = matrices.row_spec(matrix, rows["spark/ubuntu-noble/spark-3.9.9"], partitioned=False)
    assert (spec.distro, spec.release, spec.partitioned) == ("ubuntu", "noble", False)
    assert spec.mirrors == {}
    assert spec.environment["DIB_SPARK_VERSION"] == "3.9.9"
    assert spec.environment["DIB_SPARK_SHA256"] == "ab" * 32
    base = matrices.row_spec(matrix, rows["base/debian-bookworm"])
    assert base == matrix.specs["base"]  # the spec's own row is the spec unchanged
    pinned = matrices.row_spec(matrix, rows["spark/debian-bookworm/spark-4.3.0"])
    assert "DIB_SPARK_SHA256" not in pinned.environment  # the element's pinned hash


def test_rows_differ_in_fingerprint(project):
    matrix = matrices.load_matrix(write_matrix(project, MINI), root=project)
    fps = {
        row.id: matrices.row_plan(matrix, row, MIRROR_ENV)[1].value
        for row in matrices.expand(matrix)
    }
    assert len(set(fps.values())) == len(fps)


def test_only_and_except_select_by_glob(repo_matrix):
    rows = matrices.expand(repo_matrix)
    only = matrices.select(rows, ["*/debian-*"], ["spark/*"])
    assert only and all("/debian-" in r.id and not r.id.startswith("spark/") for r in only)
    assert [r.id for r in matrices.select(rows, ["base/debian-bookworm"])] == [
        "base/debian-bookworm"
    ]
    assert matrices.select(rows, ["nothing*"]) == []


BAD = [
    (
        "specs: [base, nosuch]\ndistros: [{distro: debian, release: bookworm}]\n",
        "specs[1]",
        '"nosuch"',
    ),
    (
        "specs: [base]\ndistros: [{distro: gentoo, release: x}]\n",
        "distros[0].distro",
        '"gentoo"',
    ),
    (
        "specs: [base]\ndistros: [{distro: debian, release: bookworm}]\n"
        "exclude: [{spec: base, colour: red, reason: why}]\n",
        "exclude[0].colour",
        "unknown key",
    ),
    (
        "specs: [base]\ndistros: [{distro: debian, release: bookworm}]\n"
        "exclude: [{reason: matches everything}]\n",
        "exclude[0]",
        "must name what it matches",
    ),
    (
        "specs: [base]\ndistros: [{distro: debian, release: bookworm}]\n"
        "exclude: [{spec: bsae, reason: typo}]\n",
        "exclude[0].spec",
        '"bsae"',
    ),
    (
        "specs: [base]\ndistros: [{distro: debian, release: bookworm}]\n"
        "unbuildable: [{distro: debian}]\n",
        "unbuildable[0].reason",
        "required key is missing",
    ),
    (
        "specs: [base]\ndistros: [{distro: debian, release: bookworm}]\n"
        "unbuildable: [{distro: debian, reason: ''}]\n",
        "unbuildable[0].reason",
        '""',
    ),
    (
        "specs: [base]\ndistros: [{distro: debian, release: bookworm}]\n"
        "spark: {specs: [spark], versions: [{version: '4.3'}]}\n",
        "spark.versions[0].version",
        '"4.3"',
    ),
]


@pytest.mark.parametrize(("text", "field", "shown"), BAD)
def test_bad_matrix_names_file_field_and_value(project, text, field, shown):
    path = write_matrix(project, text)
    with pytest.raises(SpecError) as caught:
        matrices.load_matrix(path, root=project)
    lines = [str(p) for p in caught.value.problems]
    assert any(
        line.startswith(f"image-specs/matrix.yaml: {field}:") and shown in line for line in lines
    ), lines


def test_bad_matrix_exits_2_and_builds_nothing(project):
    write_matrix(project, BAD[1][0])
    result = run_bake("matrix", "--output", "store", cwd=project, env=MIRROR_ENV)
    assert result.returncode == 2, result.stderr
    assert "error: image-specs/matrix.yaml: distros[0].distro: must be one of" in result.stderr
    assert '(value: "gentoo")' in result.stderr
    assert not (project / "store").exists()


def test_spec_problems_of_a_row_are_reported_with_their_file(project):
    (project / "image-specs" / "base.yaml").write_text(
        "name: bbq-base\nversion: '1'\ninclude: [common/debian.yaml]\nelements: [no-such]\n"
    )
    write_matrix(project, "specs: [base]\ndistros: [{distro: debian, release: bookworm}]\n")
    result = run_bake("matrix", "--dry-run", "--output", "store", cwd=project, env=MIRROR_ENV)
    assert result.returncode == 2
    assert "image-specs/base.yaml: elements[2]: no such element" in result.stderr


def test_dry_run_table_and_summary_say_what_was_only_validated(project):
    # Mirrors that do not answer: every buildable row is only validated.
    result = run_bake(
        "matrix", "--plain", "--dry-run", "--output", "store", cwd=project, env=MIRROR_ENV
    )
    assert result.returncode == 0, result.stderr
    header = result.stdout.splitlines()[0].split()
    assert header == ["row", "fingerprint", "status", "time", "size", "reason"]
    summary = json.loads((project / "store" / "matrix-summary.json").read_text())
    assert summary["built"] == [] and summary["failed"] == [] and summary["ok"]
    assert "base/debian-bookworm" in summary["validated_only"]
    rows = {r["row"]: r for r in summary["rows"]}
    assert "does not answer here" in rows["base/debian-bookworm"]["reason"]
    assert "MongoDB" in rows["datastore/debian-bookworm"]["reason"]
    assert rows["base/centos-9-stream"]["status"] == "unbuildable"
    assert [e["row"] for e in summary["excluded"]] == ["datastore/ubuntu-noble"]
    assert "datastore/ubuntu-noble" not in result.stdout
    for row in summary["rows"]:
        assert len(row["fingerprint"]) == 64
        assert row["status"] in ("validated", "unbuildable")
        assert row["reason"]
    assert not list((project / "store").glob("bbq-*"))


def test_dry_run_with_this_hosts_debian_mirror_would_build_debian_rows(project):
    # The host's own apt mirror answers (RUNBOOK): Debian rows are buildable here, Ubuntu
    # rows (no mirror of their own) are only validated.
    result = run_bake(
        "matrix", "--plain", "--dry-run", "--only", "*/*-*", "--output", "store", cwd=project
    )
    assert result.returncode == 0, result.stderr
    rows = {
        r["row"]: r
        for r in json.loads((project / "store" / "matrix-summary.json").read_text())["rows"]
    }
    assert rows["base/debian-bookworm"]["status"] == "would build"
    assert rows["base/ubuntu-noble"]["status"] == "validated"
    assert "no ubuntu mirror set here" in rows["base/ubuntu-noble"]["reason"]


def test_no_row_matching_is_bad_input(project):
    result = run_bake(
        "matrix", "--dry-run", "--only", "nothing/*", "--output", "s", cwd=project, env=MIRROR_ENV
    )
    assert result.returncode == 2
    assert "no row matches --only/--except" in result.stderr


def test_apt_fetched_bytes_sums_apts_own_lines():
    log = (
        "2026-11-25 03:35:48.341 | Fetched 627 kB in 1s (1159 kB/s)\n"
        "2026-11-25 03:36:17.224 | > Fetched 82.0 MB in 0s (238 MB/s)\n"
        "Fetched 1,024 B in 0s\n"
        "2026-11-25 03:36:17.224 | Need to get 82.0 MB of archives.\n"
    )
    assert matrices.apt_fetched_bytes(log) == 627_000 + 82_000_000 + 1024


def test_table_lists_every_result(project):
    row = matrices.Row("base", "debian", "bookworm", None, "build")
    results = [
        matrices.Result(row, "built", "f" * 64, seconds=150.2, size=300 * 2**20),
        matrices.Result(
            matrices.Row("x", "centos", "9", None, "unbuildable", "why"),
            "unbuildable",
            reason="why",
        ),
    ]
    lines = matrices.table(results).splitlines()
    assert lines[1].split() == ["base/debian-bookworm", "f" * 12, "built", "150s", "300M"]
    assert lines[2].split() == ["x/centos-9", "-", "unbuildable", "-", "-", "why"]


def test_a_specs_own_row_keeps_its_fingerprint(repo_matrix):
    # The spark spec pins 4.3.0 itself: its 4.3.0 row is the spec unchanged, so artifacts
    # built with `bake build image-specs/spark.yaml` count for the matrix and back.
    # streaming takes the element's default version (4.3.0): the same holds.
    assert matrices.element_spark_version(repo_matrix) == "4.3.0"
    rows = {r.id: r for r in matrices.expand(repo_matrix)}
    for spec in ("spark", "streaming"):
        row = rows[f"{spec}/debian-bookworm/spark-4.3.0"]
        assert matrices.row_spec(repo_matrix, row) == repo_matrix.specs[spec]
    other = matrices.row_spec(repo_matrix, rows["streaming/debian-bookworm/spark-3.5.7"])
    assert other.environment["DIB_SPARK_VERSION"] == "3.5.7"


def test_jobs_must_be_positive(project):
    result = run_bake("matrix", "--jobs", "0", "--dry-run", cwd=project, env=MIRROR_ENV)
    assert result.returncode == 2
    assert "--jobs: must be at least 1 (value: 0)" in result.stderr


def test_schema_is_package_data_and_its_distros_are_the_distro_table():
    import jsonschema

    from bake import distros

    schema = matrices.model.schema()
    jsonschema.Draft202012Validator.check_schema(schema)
    assert schema["$defs"]["distro"]["enum"] == sorted(distros.DISTROS)
    refs = json.dumps(schema).count('"#/$defs/distro"')
    assert refs == 2  # distros[].distro and the tables' distro


def test_statuses_are_closed_lists_written_as_plain_strings():
    row = matrices.Row("base", "debian", "bookworm", None, "validate-only", "why")
    assert row.status is matrices.RowStatus.VALIDATE_ONLY
    with pytest.raises(ValueError):
        matrices.Row("base", "debian", "bookworm", None, "maybe")
    with pytest.raises(ValueError):
        matrices.Result(row, "half built")
    result = matrices.Result(row, "would build", "f" * 64)
    assert result.status is matrices.Status.WOULD_BUILD
    text = json.dumps(matrices.summary([result], [], 1, 0.0))
    assert '"status": "would build"' in text
    assert json.loads(text)["rows"][0]["status"] == "would build"
