"""The per-row build process: ``python -m bake.matrix.worker REQUEST-JSON``.

:mod:`bake.matrix.run` starts one per row to build, in a session of its own, with the row's
cache slot as ``DIB_IMAGE_CACHE`` and stderr going to the row's log. The worker builds the
row as ``bake build`` would (its progress lines, and with ``stream_log`` the build log as it
is written, into the row's log) and prints its outcome as one line of JSON on stdout.

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

from bake import ui
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
    follower = ui.Follower(ui.BUILD_LOG_LOGGER) if request.get("stream_log") else None

    def on_log(path: Path) -> None:
        ui.info(f"bake: {name}: log: {path}")
        if follower:  # the build log into this worker's stderr, the row's log
            follower.start(path)

    try:
        outcome = build.build(plan, fp, store, force=force, smoke=request["smoke"], on_log=on_log)
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
    finally:
        if follower:
            follower.stop()
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
    request = json.loads(argv[0])
    ui.configure_logging(verbose=1 if request.get("stream_log") else 0)  # into the row's log
    answer = worker(request)
    print(json.dumps(answer))
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
