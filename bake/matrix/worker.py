"""The per-row build process: ``python -m bake.matrix.worker REQUEST-JSON``.

:mod:`bake.matrix.run` starts one per row to build, in a session of its own, with the row's
cache slot as ``DIB_IMAGE_CACHE`` and stderr going to the row's log. The worker builds the
row as ``bake build`` would and prints its outcome as one line of JSON on stdout.

Example (what run does for a row)::

    python -m bake.matrix.worker '{"matrix": "/src/image-specs/matrix.yaml",
        "elements_dir": "/src/elements", "row": {"spec": "base", "distro": "debian",
        "release": "bookworm", "spark": null, "status": "build", "reason": ""},
        "store": "/src/artifacts", "smoke": true, "partitioned": false}'
    {"status": "built", "fingerprint": "...", "size": 314572800, "artifact": "...", ...}
"""

from __future__ import annotations

import json
import os
import sys
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from bake.matrix.model import Row, Status, load_matrix, row_plan
from bake.matrix.run import is_good


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
    force = existing is not None and not is_good(existing, request["smoke"])
    try:
        outcome = build.build(plan, fp, store, force=force, smoke=request["smoke"])
    except build.BuildError as exc:
        pattern = f"{name}-{fp.value[:12]}-*-{os.getpid()}"
        failed = sorted(store.root.joinpath(".failed").glob(pattern))
        log = failed[-1] / BUILD_LOG if failed else None
        return {
            "status": str(Status.FAILED),
            "fingerprint": fp.value,
            "reason": str(exc),
            "build_log": str(log) if log else "",
        }
    except (wheelhouse.WheelhouseError, dib.BuildInterrupted) as exc:
        return {"status": str(Status.FAILED), "fingerprint": fp.value, "reason": str(exc)}
    artifact = outcome.artifact
    return {
        "status": str(Status.SKIPPED if outcome.skipped else Status.BUILT),
        "fingerprint": fp.value,
        "size": artifact.manifest.get("total_size", 0),
        "artifact": str(artifact.path),
        "build_log": str(artifact.path / BUILD_LOG),
    }


def main(argv: list[str]) -> int:
    """Build the row of ``argv[0]`` (the request as JSON); print the outcome as JSON."""
    if len(argv) != 1:
        print("usage: python -m bake.matrix.worker REQUEST-JSON", file=sys.stderr)
        return 2
    answer = worker(json.loads(argv[0]))
    print(json.dumps(answer))
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
