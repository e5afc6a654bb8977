"""Running the matrix: plan every row, skip what the store has, build the rest in parallel.

Each row is built in its own ``python -m bake.matrix.worker`` process (diskimage-builder's
signal handling needs a main thread) with its own cache slot (:mod:`bake.cache_slots`), so
rows run in parallel while sharing the downloads of the host's ``DIB_IMAGE_CACHE``. A
signal to ``bake matrix`` reaches every worker once, through :data:`WORKERS`.

Example::

    results = run_matrix(matrix, expand(matrix), Path("artifacts"), jobs=2)
    print(table(results))
"""

from __future__ import annotations

import concurrent.futures
import contextlib
import dataclasses
import json
import os
import re
import subprocess
import sys
import threading
import time
import urllib.error
import urllib.request
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path
from typing import Any

from bake import distros, ui
from bake.matrix.model import Matrix, Result, Row, RowStatus, Status, row_plan

WORKER_MODULE = "bake.matrix.worker"  # run as ``python -m bake.matrix.worker REQUEST-JSON``

# What an unbuildable or validate-only row (planned, never built) ends as.
_NOT_BUILT = {RowStatus.UNBUILDABLE: Status.UNBUILDABLE, RowStatus.VALIDATE_ONLY: Status.VALIDATED}


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


_FETCHED = re.compile(r"(?:^|\| |> )Fetched ([0-9.,]+) ([kMG]?B) in ", re.M)
_UNITS = {"B": 1, "kB": 1000, "MB": 1000**2, "GB": 1000**3}


def apt_fetched_bytes(log_text: str) -> int:
    """Bytes apt downloaded in the chroot, summed over its ``Fetched N MB in ...`` lines."""
    total = 0.0
    for number, unit in _FETCHED.findall(log_text):
        total += float(number.replace(",", "")) * _UNITS[unit]
    return int(total)


def is_good(artifact, smoke: bool) -> bool:
    """Whether a stored artifact counts as the row's build (smoke-tested when that matters)."""
    if artifact is None:
        return False
    status = artifact.manifest.get("status")
    return status == "good" or not smoke or not artifact.spec.get("smoke")


def _print_event(text: str) -> None:
    print(text, file=sys.stderr, flush=True)


def run_matrix(
    matrix: Matrix,
    rows: Sequence[Row],
    store_root: Path,
    jobs: int = 1,
    dry_run: bool = False,
    smoke: bool = True,
    partitioned: bool | None = None,
    environ: Mapping[str, str] | None = None,
    on_event: Callable[[str], None] = _print_event,
    stream_logs: bool = False,
) -> list[Result]:
    """Plan every row, skip those with a good artifact, build the rest ``jobs`` at a time.

    Validate-only and unbuildable rows are planned (dry-run) but not built; a row whose
    mirror does not answer is only validated. Failures do not stop the other rows.
    ``stream_logs`` (``bake matrix -v``): each row's log as it is written, its lines
    prefixed with the row's id, as DEBUG records of :data:`bake.ui.BUILD_LOG_LOGGER`.
    """
    from bake.artifacts import Store

    environ = dict(os.environ if environ is None else environ)
    store_root = Path(store_root).resolve()  # every path in the results absolute, as the logs'
    triage = _Triage(matrix, Store(store_root), environ, partitioned, smoke, dry_run)
    results: dict[Row, Result] = {}
    for row in rows:
        if row.status != RowStatus.EXCLUDED:
            result = triage.result(row)
            if result is not None:
                results[row] = result
    if triage.todo:
        builds = _Builds(matrix, store_root, smoke, partitioned, environ, on_event, stream_logs)
        for result in builds.run(triage.todo, jobs):
            results[result.row] = result
    return [results[row] for row in rows if row in results]


@dataclasses.dataclass
class _Triage:
    """Decides each row's result short of building it; the rows to build go to ``todo``."""

    matrix: Matrix
    store: Any  # bake.artifacts.Store
    environ: Mapping[str, str]
    partitioned: bool | None
    smoke: bool
    dry_run: bool
    probes: dict[tuple[str, str], tuple[bool, str]] = dataclasses.field(default_factory=dict)
    todo: list[tuple[Row, str]] = dataclasses.field(default_factory=list)

    def result(self, row: Row) -> Result | None:
        """The row's result when it is not to be built; None when it joins ``todo``."""
        try:
            plan, fp = row_plan(self.matrix, row, self.environ, self.partitioned)
        except Exception as exc:  # a row that cannot even be planned
            status = Status.UNBUILDABLE if row.status == RowStatus.UNBUILDABLE else Status.FAILED
            return Result(row, status, reason=f"{row.reason or ''} {exc}".strip())
        if row.status in _NOT_BUILT:
            return Result(row, _NOT_BUILT[row.status], fp.value, reason=row.reason)
        existing = self.store.find(plan.spec.name, fp.value)
        if is_good(existing, self.smoke):
            return Result(
                row,
                Status.SKIPPED,
                fp.value,
                size=existing.manifest.get("total_size", 0),
                reason="a good artifact with this fingerprint is in the store",
                artifact=str(existing.path),
            )
        answers, why = self._probe(plan, row)
        if not answers:
            return Result(row, Status.VALIDATED, fp.value, reason=why)
        if self.dry_run:
            return Result(row, Status.WOULD_BUILD, fp.value)
        self.todo.append((row, fp.value))
        return None

    def _probe(self, plan, row: Row) -> tuple[bool, str]:
        """:func:`mirror_answers`, asked once per mirror and release."""
        key = (plan.environment.get(distros.DISTROS[row.distro].mirror_env, ""), row.release)
        if key not in self.probes:
            self.probes[key] = mirror_answers(plan)
        return self.probes[key]


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


@dataclasses.dataclass
class _Builds:
    """The rows to build, ``jobs`` at a time, each in a worker process; what they share."""

    matrix: Matrix
    store_root: Path
    smoke: bool
    partitioned: bool | None
    environ: Mapping[str, str]
    on_event: Callable[[str], None]
    stream_logs: bool = False
    start: float = 0.0

    @property
    def logs(self) -> Path:
        return self.store_root / ".matrix"

    def run(self, todo: Sequence[tuple[Row, str]], jobs: int) -> list[Result]:
        """Build every (row, fingerprint) of ``todo``; results in the order they finish."""
        self.logs.mkdir(parents=True, exist_ok=True)
        self.start = time.monotonic()
        with concurrent.futures.ThreadPoolExecutor(max_workers=max(1, jobs)) as pool:
            futures = [pool.submit(self.build, row, fp) for row, fp in todo]
            return [future.result() for future in concurrent.futures.as_completed(futures)]

    def build(self, row: Row, fp: str) -> Result:
        """Build one row in a worker process using a private cache slot; never raises."""
        from bake import cache_slots

        started = time.monotonic() - self.start
        safe_id = row.id.replace("/", "_")
        log_path = self.logs / f"{safe_id}.log"
        shared = Path(
            self.environ.get("DIB_IMAGE_CACHE") or Path.home() / ".cache" / "image-create"
        )
        self.on_event(f"bake: matrix: {row.id}: building (fingerprint {fp[:12]}, log {log_path})")
        follower = ui.Follower(ui.BUILD_LOG_LOGGER, f"[{row.id}] ") if self.stream_logs else None
        if follower:
            follower.start(log_path)
        try:
            with cache_slots.slot(shared, safe_id) as slot:
                answer = self._work(row, slot.path, log_path)
        finally:
            if follower:
                follower.stop()
        seconds = time.monotonic() - self.start - started
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
            text = Path(build_log).read_text(errors="replace")
            result.apt_fetched_bytes = apt_fetched_bytes(text)
        self.on_event(
            f"bake: matrix: {row.id}: {result.status} in {seconds:.0f}s {result.reason}".rstrip()
        )
        return result

    def _work(self, row: Row, cache: Path, log_path: Path) -> dict[str, Any]:
        """Run the row's worker (its stderr into ``log_path``); its answer as plain data."""
        request = {
            "matrix": str(self.matrix.path),
            "elements_dir": str(self.matrix.elements_dir),
            "row": dataclasses.asdict(row),
            "store": str(self.store_root.resolve()),
            "smoke": self.smoke,
            "partitioned": self.partitioned,
            "stream_log": self.stream_logs,
        }
        env = dict(self.environ)
        env["DIB_IMAGE_CACHE"] = str(cache)
        with open(log_path, "w") as log:
            process = WORKERS.start(
                [sys.executable, "-m", WORKER_MODULE, json.dumps(request)],
                env=env,
                stdout=subprocess.PIPE,
                stderr=log,
                text=True,
            )
            if process is None:
                return {"status": Status.FAILED, "reason": "not started: interrupted"}
            output, _ = process.communicate()
            WORKERS.done(process)
        try:
            return json.loads(output.strip().splitlines()[-1])
        except (IndexError, json.JSONDecodeError):
            return {"status": Status.FAILED, "reason": f"worker exited {process.returncode}"}
