"""The image build matrix: ``image-specs/matrix.yaml`` expanded into rows and built in parallel.

A row is one spec built for one distro/release (and one Spark version, for the specs the
matrix lists under ``spark``). Every row ends in one status:

- ``built`` / ``skipped`` (a good artifact with its fingerprint was already in the store),
- ``failed`` (build or smoke test failed; the other rows go on),
- ``validated`` (planned and dry-run only: listed under ``validate-only``, or its distro's
  mirror does not answer on this host),
- ``unbuildable`` (listed under ``unbuildable``; its reason is shown),
- ``would build`` (``--dry-run`` only: buildable here, not built).

Excluded rows are left out of the table (the summary lists them with their reason).

Each row is built in its own ``python -m bake.matrix worker`` process (diskimage-builder's
signal handling needs a main thread) with its own cache slot (:mod:`bake.cache_slots`), so
rows run in parallel while sharing the downloads of the host's ``DIB_IMAGE_CACHE``.

Example::

    matrix = load_matrix(Path("image-specs/matrix.yaml"))
    for row in expand(matrix):
        print(row.id, row.status, row.reason)
"""

from __future__ import annotations

import concurrent.futures
import contextlib
import dataclasses
import fnmatch
import json
import os
import re
import signal
import subprocess
import sys
import threading
import time
import urllib.error
import urllib.request
from collections.abc import Callable, Iterable, Mapping, Sequence
from pathlib import Path
from typing import Any

from bake import distros, ui
from bake import spec as specs
from bake.errors import InputError
from bake.spec import SpecError
from bake.validation import Problem, ValidationError, problems_from_schema, read_yaml

MATRIX_FILE = "matrix.yaml"
SUMMARY_FILE = "matrix-summary.json"
_NAME = r"^[a-z0-9][a-z0-9-]*$"
_REASON = {"type": "string", "minLength": 3, "pattern": r"\S"}
_SELECTOR = {
    "spec": {"type": "string", "pattern": _NAME},
    "distro": {"enum": sorted(distros.DISTROS)},
    "release": {"type": "string", "minLength": 1},
    "spark": {"type": "string", "minLength": 1},
}

SCHEMA: dict[str, Any] = {
    "$schema": "https://json-schema.org/draft/2020-12/schema",
    "title": "Big Data BBQ image build matrix",
    "type": "object",
    "additionalProperties": False,
    "required": ["specs", "distros"],
    "properties": {
        "specs": {
            "description": "Spec names: image-specs/<name>.yaml",
            "type": "array",
            "minItems": 1,
            "uniqueItems": True,
            "items": {"type": "string", "pattern": _NAME},
        },
        "distros": {
            "type": "array",
            "minItems": 1,
            "items": {
                "type": "object",
                "additionalProperties": False,
                "required": ["distro", "release"],
                "properties": {
                    "distro": {"enum": sorted(distros.DISTROS)},
                    "release": {"type": "string", "pattern": r"^[0-9A-Za-z][0-9A-Za-z._-]*$"},
                    "mirrors": {
                        "description": "Replaces the spec's mirrors for this distro",
                        "type": "object",
                        "additionalProperties": False,
                        "properties": {
                            "main": {"type": "string"},
                            "security": {"type": "string"},
                        },
                    },
                },
            },
        },
        "spark": {
            "type": "object",
            "additionalProperties": False,
            "required": ["specs", "versions"],
            "properties": {
                "specs": {
                    "type": "array",
                    "minItems": 1,
                    "uniqueItems": True,
                    "items": {"type": "string", "pattern": _NAME},
                },
                "versions": {
                    "type": "array",
                    "minItems": 1,
                    "items": {
                        "type": "object",
                        "additionalProperties": False,
                        "required": ["version"],
                        "properties": {
                            "version": {
                                "type": "string",
                                "pattern": r"^[0-9]+\.[0-9]+\.[0-9]+$",
                            },
                            "sha256": {"type": "string", "pattern": "^[0-9a-f]{64}$"},
                        },
                    },
                },
            },
        },
        "exclude": {"$ref": "#/$defs/selectors"},
        "unbuildable": {"$ref": "#/$defs/selectors"},
        "validate-only": {"$ref": "#/$defs/selectors"},
    },
    "$defs": {
        "selectors": {
            "type": "array",
            "items": {
                "type": "object",
                "additionalProperties": False,
                "required": ["reason"],
                "minProperties": 2,
                "properties": {**_SELECTOR, "reason": _REASON},
            },
        }
    },
}

TABLES = ("exclude", "unbuildable", "validate-only")


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
    status: str  # "build", "validate-only", "unbuildable" or "excluded"
    reason: str = ""

    @property
    def id(self) -> str:
        text = f"{self.spec}/{self.distro}-{self.release}"
        return f"{text}/spark-{self.spark}" if self.spark else text


_MESSAGES = {
    "minProperties": "must name what it matches (spec, distro, release, spark) besides its reason"
}


def _problems(data: Any, file: str) -> list[Problem]:
    return problems_from_schema(data, SCHEMA, file, _MESSAGES)


def load_matrix(path: Path, elements_dir: Path | None = None, root: Path | None = None) -> Matrix:
    """Read and validate a matrix file and load every spec it names.

    Raises SpecError listing every problem (file, field, value): schema errors, unknown
    specs, table rows that match nothing the matrix has, and the specs' own problems.
    """
    path = Path(path)
    root = (root or Path.cwd()).resolve()
    try:
        shown = str(path.resolve().relative_to(root))
    except ValueError:
        shown = str(path)
    specs_dir = path.resolve().parent
    if elements_dir is None:
        elements_dir = specs_dir.parent / "elements"
    try:
        data = read_yaml(path, shown)
    except ValidationError as exc:
        raise SpecError(exc.problems) from None
    if not isinstance(data, dict):
        raise SpecError([Problem(shown, "", "must be a mapping of keys")])
    problems = _problems(data, shown)
    if problems:
        raise SpecError(problems)
    loaded: dict[str, specs.Spec] = {}
    for index, name in enumerate(data["specs"]):
        spec_path = specs_dir / f"{name}.yaml"
        if not spec_path.is_file():
            problems.append(
                Problem(shown, f"specs[{index}]", f"no spec {spec_path.name} here", name, True)
            )
            continue
        try:
            loaded[name] = specs.load_spec(spec_path, [elements_dir], root=root)
        except SpecError as exc:
            problems.extend(exc.problems)
    spark = data.get("spark", {"specs": [], "versions": []})
    for index, name in enumerate(spark["specs"]):
        if name not in data["specs"]:
            problems.append(
                Problem(shown, f"spark.specs[{index}]", "not one of `specs`", name, True)
            )
    known = {
        "spec": set(data["specs"]),
        "distro": {d["distro"] for d in data["distros"]},
        "release": {d["release"] for d in data["distros"]},
        "spark": {v["version"] for v in spark["versions"]},
    }
    rules: dict[str, tuple[Rule, ...]] = {}
    for table in TABLES:
        found = []
        for index, entry in enumerate(data.get(table, [])):
            for key, value in entry.items():
                if key != "reason" and value not in known[key]:
                    choices = ", ".join(sorted(known[key])) or "(none)"
                    problems.append(
                        Problem(
                            shown,
                            f"{table}[{index}].{key}",
                            f"matches no {key} of this matrix (known: {choices})",
                            value,
                            True,
                        )
                    )
            match = {k: v for k, v in entry.items() if k != "reason"}
            found.append(Rule(match, " ".join(entry["reason"].split())))
        rules[table] = tuple(found)
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


def expand(matrix: Matrix) -> list[Row]:
    """Every combination, in file order, each with its status and (unless built) reason.

    Precedence when several tables match: exclude, then unbuildable, then validate-only.
    """
    rows = []
    for name in matrix.specs:
        versions = [v["version"] for v in matrix.spark_versions]
        sparks = versions if name in matrix.spark_specs else [None]
        for entry in matrix.distros:
            for spark in sparks:
                row = Row(name, entry["distro"], entry["release"], spark, "build")
                for table, status in (
                    ("exclude", "excluded"),
                    ("unbuildable", "unbuildable"),
                    ("validate-only", "validate-only"),
                ):
                    rule = next((r for r in matrix.rules[table] if r.matches(row)), None)
                    if rule:
                        row = dataclasses.replace(row, status=status, reason=rule.reason)
                        break
                rows.append(row)
    return rows


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
        version = next(v for v in matrix.spark_versions if v["version"] == row.spark)
        environment = dict(spec.environment)
        current = environment.get("DIB_SPARK_VERSION", element_spark_version(matrix))
        if row.spark != current or "sha256" in version:
            environment["DIB_SPARK_VERSION"] = row.spark
        if "sha256" in version:
            environment["DIB_SPARK_SHA256"] = version["sha256"]
        changes["environment"] = environment
    if partitioned is not None:
        changes["partitioned"] = partitioned
    return spec.replace(**changes)


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


def mirror_answers(plan, timeout: float = 10.0) -> tuple[bool, str]:
    """Whether the row's main mirror serves its release (apt: ``dists/RELEASE/Release``).

    Returns (answers, why-not). A row without a mirror of its own (diskimage-builder's
    default) is not probed and counts as not answering: set the mirror variable to build it.
    """
    distro = distros.DISTROS[plan.spec.distro]
    mirror = plan.environment.get(distro.mirror_env)
    if not mirror:
        return False, f"no {plan.spec.distro} mirror set here ({distro.mirror_env})"
    url = mirror.rstrip("/")
    if distro.apt:
        url += f"/dists/{plan.spec.release}/Release"
    try:
        request = urllib.request.Request(url, method="HEAD")
        with urllib.request.urlopen(request, timeout=timeout):
            return True, ""
    except (urllib.error.URLError, OSError, ValueError) as exc:
        why = getattr(exc, "reason", None) or exc
        return False, f"the {plan.spec.distro} mirror does not answer here ({why})"


# ---------------------------------------------------------------------------------------
# Running the matrix


@dataclasses.dataclass
class Result:
    """What happened to one row."""

    row: Row
    status: str  # built, skipped, failed, validated, unbuildable
    fingerprint: str = ""
    seconds: float = 0.0
    size: int = 0
    reason: str = ""
    started: float = 0.0  # seconds since the run began
    artifact: str = ""
    log: str = ""
    apt_fetched_bytes: int = 0
    cache_new_bytes: int = 0

    def to_dict(self) -> dict[str, Any]:
        data = dataclasses.asdict(self)
        data["row"] = self.row.id
        data["spec"] = self.row.spec
        data["distro"] = self.row.distro
        data["release"] = self.row.release
        data["spark"] = self.row.spark
        return data


_FETCHED = re.compile(r"(?:^|\| |> )Fetched ([0-9.,]+) ([kMG]?B) in ", re.M)
_UNITS = {"B": 1, "kB": 1000, "MB": 1000**2, "GB": 1000**3}


def apt_fetched_bytes(log_text: str) -> int:
    """Bytes apt downloaded in the chroot, summed over its ``Fetched N MB in ...`` lines."""
    total = 0.0
    for number, unit in _FETCHED.findall(log_text):
        total += float(number.replace(",", "")) * _UNITS[unit]
    return int(total)


def _is_good(artifact, smoke: bool) -> bool:
    if artifact is None:
        return False
    status = artifact.manifest.get("status")
    return status == "good" or not smoke or not artifact.spec.get("smoke")


def run_matrix(
    matrix: Matrix,
    rows: Sequence[Row],
    store_root: Path,
    jobs: int = 1,
    dry_run: bool = False,
    smoke: bool = True,
    partitioned: bool | None = None,
    environ: Mapping[str, str] | None = None,
    on_event: Callable[[str], None] = lambda text: print(text, file=sys.stderr, flush=True),
) -> list[Result]:
    """Plan every row, skip those with a good artifact, build the rest ``jobs`` at a time.

    Validate-only and unbuildable rows are planned (dry-run) but not built; a row whose
    mirror does not answer is only validated. Failures do not stop the other rows.
    """
    from bake.artifacts import Store

    environ = dict(os.environ if environ is None else environ)
    store = Store(store_root)
    results: dict[Row, Result] = {}
    todo: list[tuple[Row, str]] = []
    probes: dict[tuple[str, str], tuple[bool, str]] = {}
    for row in rows:
        if row.status == "excluded":
            continue
        try:
            plan, fp = row_plan(matrix, row, environ, partitioned)
        except Exception as exc:  # a row that cannot even be planned
            status = "unbuildable" if row.status == "unbuildable" else "failed"
            results[row] = Result(row, status, reason=f"{row.reason or ''} {exc}".strip())
            continue
        if row.status in ("unbuildable", "validate-only"):
            status = "unbuildable" if row.status == "unbuildable" else "validated"
            results[row] = Result(row, status, fp.value, reason=row.reason)
            continue
        existing = store.find(plan.spec.name, fp.value)
        if _is_good(existing, smoke):
            results[row] = Result(
                row,
                "skipped",
                fp.value,
                size=existing.manifest.get("total_size", 0),
                reason="a good artifact with this fingerprint is in the store",
                artifact=str(existing.path),
            )
            continue
        key = (plan.environment.get(distros.DISTROS[row.distro].mirror_env, ""), row.release)
        if key not in probes:
            probes[key] = mirror_answers(plan)
        answers, why = probes[key]
        if not answers:
            results[row] = Result(row, "validated", fp.value, reason=why)
            continue
        if dry_run:
            results[row] = Result(row, "would build", fp.value)
            continue
        todo.append((row, fp.value))
    if todo:
        logs = Path(store_root) / ".matrix"
        logs.mkdir(parents=True, exist_ok=True)
        start = time.monotonic()
        with concurrent.futures.ThreadPoolExecutor(max_workers=max(1, jobs)) as pool:
            futures = {
                pool.submit(
                    _build_row,
                    matrix,
                    row,
                    fp,
                    Path(store_root),
                    logs,
                    smoke,
                    partitioned,
                    environ,
                    start,
                    on_event,
                ): row
                for row, fp in todo
            }
            for future in concurrent.futures.as_completed(futures):
                result = future.result()
                results[result.row] = result
    return [results[row] for row in rows if row in results]


class Workers:
    """The running worker processes: a signal to ``bake matrix`` is passed on to each.

    Workers run in sessions of their own, so a terminal's Ctrl-C reaches them once, through
    :meth:`stop`; each worker's build then stops and cleans up as ``bake build`` does.
    """

    def __init__(self) -> None:
        self.lock = threading.Lock()
        self.running: set[subprocess.Popen] = set()
        self.signum: int | None = None

    def start(self, args: list[str], **kwargs: Any) -> subprocess.Popen | None:
        """Start a worker, or None once stopped (rows not begun are not started)."""
        with self.lock:
            if self.signum is not None:
                return None
            process = subprocess.Popen(args, start_new_session=True, **kwargs)
            self.running.add(process)
            return process

    def done(self, process: subprocess.Popen) -> None:
        with self.lock:
            self.running.discard(process)

    def stop(self, signum: int, _frame: Any = None) -> None:
        """Signal handler: pass ``signum`` on to every worker, start no more."""
        with self.lock:
            if self.signum is None:
                self.signum = signum
            for process in self.running:
                with contextlib.suppress(ProcessLookupError):
                    process.send_signal(signum)


WORKERS = Workers()


def _build_row(
    matrix: Matrix,
    row: Row,
    fp: str,
    store_root: Path,
    logs: Path,
    smoke: bool,
    partitioned: bool | None,
    environ: Mapping[str, str],
    start: float,
    on_event: Callable[[str], None],
) -> Result:
    """Build one row in a worker process using a private cache slot; never raises."""
    from bake import cache_slots

    started = time.monotonic() - start
    safe_id = row.id.replace("/", "_")
    log_path = logs / f"{safe_id}.log"
    request = {
        "matrix": str(matrix.path),
        "elements_dir": str(matrix.elements_dir),
        "row": dataclasses.asdict(row),
        "store": str(store_root.resolve()),
        "smoke": smoke,
        "partitioned": partitioned,
    }
    shared = Path(environ.get("DIB_IMAGE_CACHE") or Path.home() / ".cache" / "image-create")
    on_event(f"bake: matrix: {row.id}: building (fingerprint {fp[:12]}, log {log_path})")
    with cache_slots.slot(shared, safe_id) as slot:
        env = dict(environ)
        env["DIB_IMAGE_CACHE"] = str(slot.path)
        with open(log_path, "w") as log:
            process = WORKERS.start(
                [sys.executable, "-m", "bake.matrix", "worker", json.dumps(request)],
                env=env,
                stdout=subprocess.PIPE,
                stderr=log,
                text=True,
            )
            output = ""
            if process is not None:
                output, _ = process.communicate()
                WORKERS.done(process)
    seconds = time.monotonic() - start - started
    try:
        answer = json.loads(output.strip().splitlines()[-1])
    except (IndexError, json.JSONDecodeError):
        if process is None:
            answer = {"status": "failed", "reason": "not started: interrupted"}
        else:
            answer = {"status": "failed", "reason": f"worker exited {process.returncode}"}
    result = Result(
        row,
        answer["status"],
        answer.get("fingerprint", fp),
        seconds=round(seconds, 1),
        size=answer.get("size", 0),
        reason=answer.get("reason", ""),
        started=round(started, 1),
        artifact=answer.get("artifact", ""),
        log=str(log_path),
        cache_new_bytes=slot.new_bytes,
    )
    build_log = answer.get("build_log")
    if build_log and Path(build_log).is_file():
        result.apt_fetched_bytes = apt_fetched_bytes(Path(build_log).read_text(errors="replace"))
    on_event(f"bake: matrix: {row.id}: {result.status} in {seconds:.0f}s {result.reason}".rstrip())
    return result


def worker(request: Mapping[str, Any]) -> dict[str, Any]:
    """Build one row (in its own process); return the outcome as plain data."""
    from bake import build, dib, wheelhouse
    from bake.artifacts import BUILD_LOG, Store

    matrix = load_matrix(Path(request["matrix"]), Path(request["elements_dir"]))
    row = Row(**request["row"])
    plan, fp = row_plan(matrix, row, os.environ, request["partitioned"])
    store = Store(request["store"])
    name = plan.spec.name
    existing = store.find(name, fp.value)
    force = existing is not None and not _is_good(existing, request["smoke"])
    try:
        outcome = build.build(plan, fp, store, force=force, smoke=request["smoke"])
    except build.BuildError as exc:
        pattern = f"{name}-{fp.value[:12]}-*-{os.getpid()}"
        failed = sorted(store.root.joinpath(".failed").glob(pattern))
        log = failed[-1] / BUILD_LOG if failed else None
        return {
            "status": "failed",
            "fingerprint": fp.value,
            "reason": str(exc),
            "build_log": str(log) if log else "",
        }
    except wheelhouse.WheelhouseError as exc:
        return {"status": "failed", "fingerprint": fp.value, "reason": str(exc)}
    except dib.BuildInterrupted as exc:
        return {"status": "failed", "fingerprint": fp.value, "reason": str(exc)}
    artifact = outcome.artifact
    return {
        "status": "skipped" if outcome.skipped else "built",
        "fingerprint": fp.value,
        "size": artifact.manifest.get("total_size", 0),
        "artifact": str(artifact.path),
        "build_log": str(artifact.path / BUILD_LOG),
    }


# ---------------------------------------------------------------------------------------
# Reporting

HEADER = ("row", "fingerprint", "status", "time", "size", "reason")


def table(results: Sequence[Result]) -> str:
    """The results as an aligned text table (one line per row)."""
    rows = [
        (
            r.row.id,
            r.fingerprint[:12] or "-",
            r.status,
            f"{r.seconds:.0f}s" if r.seconds else "-",
            ui.mib(r.size) if r.size else "-",
            r.reason,
        )
        for r in results
    ]
    return ui.table(HEADER, rows)


def summary(
    results: Sequence[Result], excluded: Sequence[Row], jobs: int, seconds: float
) -> dict[str, Any]:
    """The JSON summary: every row's result, which were built and which only validated."""
    by_status: dict[str, list[str]] = {}
    for r in results:
        by_status.setdefault(r.status, []).append(r.row.id)
    return {
        "jobs": jobs,
        "seconds": round(seconds, 1),
        "rows": [r.to_dict() for r in results],
        "built": by_status.get("built", []),
        "skipped": by_status.get("skipped", []),
        "failed": by_status.get("failed", []),
        "validated_only": by_status.get("validated", []),
        "unbuildable": by_status.get("unbuildable", []),
        "excluded": [{"row": r.id, "reason": r.reason} for r in excluded],
        "ok": not by_status.get("failed"),
    }


def add_arguments(parser) -> None:
    """The options of ``bake matrix`` (added by bake.cli)."""
    parser.add_argument(
        "--matrix",
        default=str(Path("image-specs") / MATRIX_FILE),
        help="matrix file (default: image-specs/matrix.yaml)",
    )
    parser.add_argument("--jobs", "-j", type=int, default=1, metavar="N", help="parallel builds")
    parser.add_argument(
        "--only", action="append", default=[], metavar="PATTERN", help="glob on row ids"
    )
    parser.add_argument(
        "--except",
        dest="exclude",
        action="append",
        default=[],
        metavar="PATTERN",
        help="glob on row ids to leave out",
    )
    parser.add_argument("--dry-run", action="store_true", help="plan and report; build nothing")
    parser.add_argument("--no-test", action="store_true", help="no smoke test after a build")
    parser.add_argument(
        "--summary", metavar="FILE", help=f"JSON summary (default: STORE/{SUMMARY_FILE})"
    )


def command(args) -> int:
    """``bake matrix``: exit 0 when no row failed, 1 when one did, 2 on a bad matrix."""

    if args.jobs < 1:
        raise InputError(f"--jobs: must be at least 1 (value: {args.jobs})")
    elements_dir = Path(args.elements_dir) if args.elements_dir else None
    matrix = load_matrix(Path(args.matrix), elements_dir, root=Path.cwd())
    every = expand(matrix)
    rows = select(every, args.only, args.exclude)
    if not rows:
        raise InputError(f"{args.matrix}: no row matches --only/--except")
    started = time.monotonic()
    signals = (signal.SIGINT, signal.SIGTERM)
    previous = {sig: signal.signal(sig, WORKERS.stop) for sig in signals}
    try:
        results = run_matrix(
            matrix,
            rows,
            Path(args.output),
            jobs=args.jobs,
            dry_run=args.dry_run,
            smoke=not args.no_test,
            partitioned=args.partitioned,
        )
    finally:
        for sig, handler in previous.items():
            signal.signal(sig, handler)
    excluded = [r for r in rows if r.status == "excluded"]
    data = summary(results, excluded, args.jobs, time.monotonic() - started)
    data["dry_run"] = args.dry_run
    summary_path = Path(args.summary or Path(args.output) / SUMMARY_FILE)
    summary_path.parent.mkdir(parents=True, exist_ok=True)
    summary_path.write_text(json.dumps(data, indent=2) + "\n")
    print(table(results))
    print(f"summary: {summary_path}")
    if WORKERS.signum is not None:
        name = signal.Signals(WORKERS.signum).name
        print(f"bake: matrix: interrupted by {name}; unfinished rows kept nothing", file=sys.stderr)
        return 128 + WORKERS.signum
    return 1 if data["failed"] else 0


def main(argv: list[str]) -> int:
    """``python -m bake.matrix worker REQUEST-JSON``: the per-row build process."""
    if len(argv) != 2 or argv[0] != "worker":
        print("usage: python -m bake.matrix worker REQUEST-JSON", file=sys.stderr)
        return 2
    answer = worker(json.loads(argv[1]))
    print(json.dumps(answer))
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
