"""What ``bake matrix`` reports: a table of the results (stdout) and a JSON summary.

Example::

    print(table(results))
    data = summary(results, excluded, jobs=2, seconds=612.3)
    data["built"], data["failed"], data["ok"]   # row ids, row ids, no row failed
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from bake import ui
from bake.matrix.model import Result, Row, Status

SUMMARY_FILE = "matrix-summary.json"
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
    by_status: dict[Status, list[str]] = {}
    for r in results:
        by_status.setdefault(r.status, []).append(r.row.id)
    return {
        "jobs": jobs,
        "seconds": round(seconds, 1),
        "rows": [r.to_dict() for r in results],
        "built": by_status.get(Status.BUILT, []),
        "skipped": by_status.get(Status.SKIPPED, []),
        "failed": by_status.get(Status.FAILED, []),
        "validated_only": by_status.get(Status.VALIDATED, []),
        "unbuildable": by_status.get(Status.UNBUILDABLE, []),
        "excluded": [{"row": r.id, "reason": r.reason} for r in excluded],
        "ok": not by_status.get(Status.FAILED),
    }
