"""``bake matrix``: its options and the command (bake.cli adds both to its parser).

Exit 0 when no row failed, 1 when one did, 2 on a bad matrix or arguments, 128+n when
interrupted by signal n (every running row stops and keeps nothing).
"""

from __future__ import annotations

import json
import signal
import sys
import time
from pathlib import Path

from bake import ui
from bake.errors import InputError
from bake.matrix.model import MATRIX_FILE, RowStatus, expand, load_matrix, select
from bake.matrix.report import SUMMARY_FILE, summary, table
from bake.matrix.run import WORKERS, run_matrix


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
    ui.add_format_options(parser, COLUMNS)


# The columns of -f/-c: each row's result (Result.to_dict); the table shows the BRIEF ones.
COLUMNS = ("row", "spec", "distro", "release", "spark", "status", "fingerprint", "seconds")
COLUMNS += ("size", "reason", "started", "artifact", "log", "apt_fetched_bytes", "cache_new_bytes")
BRIEF = ("row", "fingerprint", "status", "seconds", "size", "reason")
DISPLAY = {
    "fingerprint": lambda v: v[:12] or "-",
    "seconds": lambda v: f"{v:.0f}s" if v else "-",
    "size": lambda v: ui.mib(v) if v else "-",
}


def command(args) -> int:
    """``bake matrix``: exit 0 when no row failed, 1 when one did, 2 on a bad matrix."""
    if args.jobs < 1:
        raise InputError(f"--jobs: must be at least 1 (value: {args.jobs})")
    elements_dir = Path(args.elements_dir) if args.elements_dir else None
    matrix = load_matrix(Path(args.matrix), elements_dir, root=Path.cwd())
    rows = select(expand(matrix), args.only, args.exclude)
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
            stream_logs=args.verbose > 0,
        )
    finally:
        for sig, handler in previous.items():
            signal.signal(sig, handler)
    excluded = [r for r in rows if r.status == RowStatus.EXCLUDED]
    data = summary(results, excluded, args.jobs, time.monotonic() - started)
    data["dry_run"] = args.dry_run
    summary_path = Path(args.summary or Path(args.output) / SUMMARY_FILE)
    summary_path.parent.mkdir(parents=True, exist_ok=True)
    summary_path.write_text(json.dumps(data, indent=2) + "\n")
    if args.format is None:
        print(table(results))
        print(f"summary: {summary_path}")
    else:
        ui.emit_list(args, COLUMNS, data["rows"], DISPLAY, brief=BRIEF)
        ui.info(f"bake: matrix: summary: {summary_path}")
    if WORKERS.signum is not None:
        name = signal.Signals(WORKERS.signum).name
        print(f"bake: matrix: interrupted by {name}; unfinished rows kept nothing", file=sys.stderr)
        return 128 + WORKERS.signum
    return 1 if data["failed"] else 0
