"""The matrix file and its rows: load and validate, expand, select, and each row's spec and plan.

A :class:`Row` is one spec for one distro/release (and one Spark version, for the specs the
matrix lists under ``spark``); its :class:`RowStatus` says what the matrix file makes of it.
A :class:`Result` is what a run made of it; its :class:`Status` is one of a closed list.

Example::

    matrix = load_matrix(Path("image-specs/matrix.yaml"))
    rows = select(expand(matrix), only=["base/*"])
    plan, fp = row_plan(matrix, rows[0], os.environ)
"""

from __future__ import annotations

import dataclasses
import enum
import fnmatch
import json
import re
from collections.abc import Iterable, Mapping, Sequence
from functools import cache
from pathlib import Path
from typing import Any

from bake import spec as specs
from bake.spec import SpecError
from bake.validation import Problem, ValidationError, problems_from_schema, read_yaml

MATRIX_FILE = "matrix.yaml"
# Package data beside image-spec.json. A path beside the module, as bake.spec reads its own
# schema: under pytest, tests/bake can shadow the top package `bake` itself (its submodules
# still resolve through the editable install), so importlib.resources.files("bake") is not safe.
SCHEMA_PATH = Path(__file__).resolve().parent.parent / "schemas" / "matrix.json"


class RowStatus(enum.StrEnum):
    """What the matrix file makes of a row (before anything is planned or built)."""

    BUILD = "build"
    VALIDATE_ONLY = "validate-only"  # listed under ``validate-only``: planned, never built
    UNBUILDABLE = "unbuildable"  # listed under ``unbuildable``: planned, its reason shown
    EXCLUDED = "excluded"  # listed under ``exclude``: left out (the summary says why)


class Status(enum.StrEnum):
    """What happened to a row in a run (the table's and the summary's ``status``)."""

    BUILT = "built"
    SKIPPED = "skipped"  # a good artifact with its fingerprint was already in the store
    FAILED = "failed"  # build or smoke test failed, or the row could not be planned
    VALIDATED = "validated"  # planned only: validate-only, or its mirror does not answer
    UNBUILDABLE = "unbuildable"
    WOULD_BUILD = "would build"  # --dry-run only: buildable here, not built


# The tables of the matrix file, in order of precedence, and the status each gives a row.
TABLE_STATUS: Mapping[str, RowStatus] = {
    "exclude": RowStatus.EXCLUDED,
    "unbuildable": RowStatus.UNBUILDABLE,
    "validate-only": RowStatus.VALIDATE_ONLY,
}
TABLES = tuple(TABLE_STATUS)

_MESSAGES = {
    "minProperties": "must name what it matches (spec, distro, release, spark) besides its reason"
}


@cache
def schema() -> dict[str, Any]:
    """The matrix file's JSON schema (``bake/schemas/matrix.json``)."""
    return json.loads(SCHEMA_PATH.read_text())


@dataclasses.dataclass(frozen=True)
class Rule:
    """One row of the exclude/unbuildable/validate-only tables: what it matches, and why."""

    match: Mapping[str, str]
    reason: str

    def matches(self, row: Row) -> bool:
        return all(getattr(row, key) == value for key, value in self.match.items())


@dataclasses.dataclass(frozen=True)
class Matrix:
    """A validated matrix file; ``specs`` maps each spec name to its loaded Spec."""

    path: Path
    specs: Mapping[str, specs.Spec]
    distros: tuple[Mapping[str, Any], ...]
    spark_specs: tuple[str, ...]
    spark_versions: tuple[Mapping[str, str], ...]
    rules: Mapping[str, tuple[Rule, ...]]
    elements_dir: Path


@dataclasses.dataclass(frozen=True)
class Row:
    """One combination: ``id`` is ``spec/distro-release`` (``/spark-X.Y.Z`` when it applies)."""

    spec: str
    distro: str
    release: str
    spark: str | None
    status: RowStatus
    reason: str = ""

    def __post_init__(self) -> None:
        object.__setattr__(self, "status", RowStatus(self.status))

    @property
    def id(self) -> str:
        text = f"{self.spec}/{self.distro}-{self.release}"
        return f"{text}/spark-{self.spark}" if self.spark else text


@dataclasses.dataclass
class Result:
    """What happened to one row."""

    row: Row
    status: Status
    fingerprint: str = ""
    seconds: float = 0.0
    size: int = 0
    reason: str = ""
    started: float = 0.0  # seconds since the run began
    artifact: str = ""
    log: str = ""
    apt_fetched_bytes: int = 0
    cache_new_bytes: int = 0

    def __post_init__(self) -> None:
        self.status = Status(self.status)

    def to_dict(self) -> dict[str, Any]:
        data = dataclasses.asdict(self)
        data["row"] = self.row.id
        data["status"] = str(self.status)
        data["spec"] = self.row.spec
        data["distro"] = self.row.distro
        data["release"] = self.row.release
        data["spark"] = self.row.spark
        return data


# ---------------------------------------------------------------------------------------
# Loading


def load_matrix(path: Path, elements_dir: Path | None = None, root: Path | None = None) -> Matrix:
    """Read and validate a matrix file and load every spec it names.

    Raises SpecError listing every problem (file, field, value): schema errors, unknown
    specs, table rows that match nothing the matrix has, and the specs' own problems.
    """
    path = Path(path)
    root = (root or Path.cwd()).resolve()
    shown = _shown(path, root)
    specs_dir = path.resolve().parent
    if elements_dir is None:
        elements_dir = specs_dir.parent / "elements"
    data = _read(path, shown)
    spark = data.get("spark", {"specs": [], "versions": []})
    loaded, problems = _load_specs(data["specs"], specs_dir, elements_dir, root, shown)
    problems += _spark_spec_problems(spark["specs"], data["specs"], shown)
    rules, rule_problems = _rules(data, _known(data, spark), shown)
    problems += rule_problems
    if problems:
        raise SpecError(problems)
    return Matrix(
        path=path.resolve(),
        specs=loaded,
        distros=tuple(data["distros"]),
        spark_specs=tuple(spark["specs"]),
        spark_versions=tuple(spark["versions"]),
        rules=rules,
        elements_dir=elements_dir.resolve(),
    )


def _shown(path: Path, root: Path) -> str:
    """The path as messages show it: relative to ``root`` when inside it."""
    try:
        return str(path.resolve().relative_to(root))
    except ValueError:
        return str(path)


def _read(path: Path, shown: str) -> dict[str, Any]:
    """The file's data, valid against the schema; SpecError otherwise."""
    try:
        data = read_yaml(path, shown)
    except ValidationError as exc:
        raise SpecError(exc.problems) from None
    if not isinstance(data, dict):
        raise SpecError([Problem(shown, "", "must be a mapping of keys")])
    problems = problems_from_schema(data, schema(), shown, _MESSAGES)
    if problems:
        raise SpecError(problems)
    return data


def _load_specs(
    names: Sequence[str], specs_dir: Path, elements_dir: Path, root: Path, shown: str
) -> tuple[dict[str, specs.Spec], list[Problem]]:
    """Each named spec loaded, and every problem: a missing file, the specs' own problems."""
    loaded: dict[str, specs.Spec] = {}
    problems: list[Problem] = []
    for index, name in enumerate(names):
        spec_path = specs_dir / f"{name}.yaml"
        if not spec_path.is_file():
            message = f"no spec {spec_path.name} here"
            problems.append(Problem(shown, f"specs[{index}]", message, name, True))
            continue
        try:
            loaded[name] = specs.load_spec(spec_path, [elements_dir], root=root)
        except SpecError as exc:
            problems.extend(exc.problems)
    return loaded, problems


def _spark_spec_problems(names: Sequence[str], known: Sequence[str], shown: str) -> list[Problem]:
    """Every ``spark.specs`` entry that is not one of ``specs``."""
    return [
        Problem(shown, f"spark.specs[{index}]", "not one of `specs`", name, True)
        for index, name in enumerate(names)
        if name not in known
    ]


def _known(data: Mapping[str, Any], spark: Mapping[str, Any]) -> dict[str, set[str]]:
    """The values the matrix has for each key a table entry can match on."""
    return {
        "spec": set(data["specs"]),
        "distro": {d["distro"] for d in data["distros"]},
        "release": {d["release"] for d in data["distros"]},
        "spark": {v["version"] for v in spark["versions"]},
    }


def _rules(
    data: Mapping[str, Any], known: Mapping[str, set[str]], shown: str
) -> tuple[dict[str, tuple[Rule, ...]], list[Problem]]:
    """Every table's rules, and the entries' values that match nothing the matrix has."""
    rules: dict[str, tuple[Rule, ...]] = {}
    problems: list[Problem] = []
    for table in TABLES:
        entries = data.get(table, [])
        for index, entry in enumerate(entries):
            problems += _unknown_values(f"{table}[{index}]", entry, known, shown)
        rules[table] = tuple(_rule(entry) for entry in entries)
    return rules, problems


def _unknown_values(
    where: str, entry: Mapping[str, str], known: Mapping[str, set[str]], shown: str
) -> list[Problem]:
    problems = []
    for key, value in entry.items():
        if key != "reason" and value not in known[key]:
            choices = ", ".join(sorted(known[key])) or "(none)"
            message = f"matches no {key} of this matrix (known: {choices})"
            problems.append(Problem(shown, f"{where}.{key}", message, value, True))
    return problems


def _rule(entry: Mapping[str, str]) -> Rule:
    match = {k: v for k, v in entry.items() if k != "reason"}
    return Rule(match, " ".join(entry["reason"].split()))


# ---------------------------------------------------------------------------------------
# Rows


def expand(matrix: Matrix) -> list[Row]:
    """Every combination, in file order, each with its status and (unless built) reason.

    Precedence when several tables match: exclude, then unbuildable, then validate-only.
    """
    versions = [v["version"] for v in matrix.spark_versions]
    rows = []
    for name in matrix.specs:
        sparks = versions if name in matrix.spark_specs else [None]
        for entry in matrix.distros:
            for spark in sparks:
                row = Row(name, entry["distro"], entry["release"], spark, RowStatus.BUILD)
                rows.append(_classified(matrix, row))
    return rows


def _classified(matrix: Matrix, row: Row) -> Row:
    """The row with the status and reason of the first table rule that matches it."""
    for table, status in TABLE_STATUS.items():
        rule = next((r for r in matrix.rules[table] if r.matches(row)), None)
        if rule:
            return dataclasses.replace(row, status=status, reason=rule.reason)
    return row


def select(rows: Iterable[Row], only: Sequence[str] = (), exclude: Sequence[str] = ()) -> list[Row]:
    """Rows whose id matches any ``only`` glob (all when none) and no ``exclude`` glob."""
    return [
        row
        for row in rows
        if (not only or any(fnmatch.fnmatchcase(row.id, p) for p in only))
        and not any(fnmatch.fnmatchcase(row.id, p) for p in exclude)
    ]


def row_spec(matrix: Matrix, row: Row, partitioned: bool | None = None) -> specs.Spec:
    """The row's spec: distro, release, mirrors and Spark version replaced as the row says."""
    spec = matrix.specs[row.spec]
    entry = next(
        d for d in matrix.distros if d["distro"] == row.distro and d["release"] == row.release
    )
    changes: dict[str, Any] = {"distro": row.distro, "release": row.release}
    if "mirrors" in entry:
        changes["mirrors"] = dict(entry["mirrors"])
    if row.spark:
        changes["environment"] = _spark_environment(matrix, spec, row.spark)
    if partitioned is not None:
        changes["partitioned"] = partitioned
    return spec.replace(**changes)


def _spark_environment(matrix: Matrix, spec: specs.Spec, spark: str) -> dict[str, str]:
    """The spec's environment for a Spark version (unchanged for the version it builds)."""
    version = next(v for v in matrix.spark_versions if v["version"] == spark)
    environment = dict(spec.environment)
    current = environment.get("DIB_SPARK_VERSION", element_spark_version(matrix))
    if spark != current or "sha256" in version:
        environment["DIB_SPARK_VERSION"] = spark
    if "sha256" in version:
        environment["DIB_SPARK_SHA256"] = version["sha256"]
    return environment


_SPARK_DEFAULT = re.compile(r"DIB_SPARK_VERSION:-([0-9][0-9.]*)\}")


def element_spark_version(matrix: Matrix) -> str | None:
    """The Spark version the spark element builds when a spec does not say (its default).

    A row of that version leaves the spec as it is, so its fingerprint is the spec's own
    (artifacts built with ``bake build`` count as the row's, and the other way round).
    """
    path = matrix.elements_dir / "spark" / "environment.d" / "10-spark.bash"
    match = _SPARK_DEFAULT.search(path.read_text()) if path.is_file() else None
    return match.group(1) if match else None


def row_plan(matrix: Matrix, row: Row, environ: Mapping[str, str], partitioned: bool | None = None):
    """(BuildPlan, Fingerprint) of a row; raises InputError like make_plan."""
    from bake.fingerprint import fingerprint
    from bake.plan import make_plan

    spec = row_spec(matrix, row, partitioned)
    app_dir = matrix.elements_dir.parent / "app"
    plan = make_plan(spec, matrix.elements_dir, environ, app_dir=app_dir)
    return plan, fingerprint(plan)
