"""Real builds: a two-row matrix with --jobs 2, one row made to fail, then re-runs.

The rows are small (debian-minimal + bbq-base, tar only, plain filesystem) so the test
stays within CI's budget. One row fails in its root.d phase through a test-only element
switched by an environment variable that is not part of the fingerprint, so the same
rows can then be built and skipped without changing the matrix.
"""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from tests.matrix.conftest import write_matrix
from tests.support.cli import run_bake

pytestmark = pytest.mark.slow

GATE = """#!/bin/bash
# Test-only: fail the build of the image named in BBQ_TEST_FAIL_IMAGE.
set -eu -o pipefail
if [ "${BBQ_TEST_FAIL_IMAGE:-}" = "${DIB_BBQ_IMAGE_NAME}" ]; then
    echo "bbq-test-gate: failing ${DIB_BBQ_IMAGE_NAME} as asked" >&2
    exit 1
fi
"""


def _two_row_project(project: Path) -> None:
    gate = project / "elements" / "bbq-test-gate" / "root.d" / "10-gate"
    gate.parent.mkdir(parents=True)
    gate.write_text(GATE)
    gate.chmod(0o755)
    for name in ("one", "two"):
        (project / "image-specs" / f"{name}.yaml").write_text(
            f"name: bbq-mx-{name}\nversion: '0.0.1'\ninclude: [common/debian.yaml]\n"
            "types: [tar]\npartitioned: false\nelements: [bbq-test-gate]\n"
        )
    write_matrix(project, "specs: [one, two]\ndistros: [{distro: debian, release: bookworm}]\n")


def _run(project: Path, env: dict | None = None, *options: str):
    result = run_bake(
        "matrix", "--jobs", "2", "--output", "store", *options, cwd=project, env=env, timeout=2400
    )
    summary = json.loads((project / "store" / "matrix-summary.json").read_text())
    return result, summary, {r["row"]: r for r in summary["rows"]}


def test_two_rows_in_parallel_a_failure_does_not_stop_the_other_and_reruns_skip(project):
    _two_row_project(project)

    result, summary, rows = _run(project, {"BBQ_TEST_FAIL_IMAGE": "bbq-mx-two"})
    assert result.returncode == 1, result.stderr[-3000:]
    assert summary["built"] == ["one/debian-bookworm"]
    assert summary["failed"] == ["two/debian-bookworm"]
    assert summary["ok"] is False
    one, two = rows["one/debian-bookworm"], rows["two/debian-bookworm"]
    # Both rows started at once: the failing one did not wait for the other.
    assert one["started"] < 10 and two["started"] < 10
    assert two["seconds"] < one["seconds"]
    assert "disk-image-create failed" in two["reason"]
    assert "bbq-test-gate: failing" not in result.stderr  # the logs are streamed with -v only
    failed_log = Path(two["reason"].rsplit("log: ", 1)[1])
    assert "bbq-test-gate: failing bbq-mx-two as asked" in failed_log.read_text()
    manifest = json.loads((Path(one["artifact"]) / "manifest.json").read_text())
    assert manifest["status"] == "good" and manifest["smoke"]["passed"] is True
    assert one["size"] == manifest["total_size"] > 0
    table = result.stdout.splitlines()
    assert table[0].split()[:5] == ["row", "fingerprint", "status", "time", "size"]
    assert table[1].split()[:3] == ["one/debian-bookworm", one["fingerprint"][:12], "built"]
    assert table[2].split()[:3] == ["two/debian-bookworm", two["fingerprint"][:12], "failed"]

    # The rerun skips the good row and tries the failed one again (it fails again here, as
    # the gate still asks: a third full build would only repeat the first). -v streams the
    # row's log, each line prefixed with the row, its build log included.
    failed_log.unlink()
    result, summary, rows = _run(project, {"BBQ_TEST_FAIL_IMAGE": "bbq-mx-two"}, "-v")
    streamed = [line for line in result.stderr.splitlines() if line.startswith("[two/")]
    assert any("bbq-test-gate: failing bbq-mx-two as asked" in line for line in streamed)
    assert any("Running hooks from" in line for line in streamed), result.stderr[-3000:]
    assert result.returncode == 1, result.stderr[-3000:]
    assert summary["skipped"] == ["one/debian-bookworm"]
    assert summary["built"] == [] and summary["failed"] == ["two/debian-bookworm"]
    assert rows["two/debian-bookworm"]["fingerprint"] == two["fingerprint"]
    again = Path(rows["two/debian-bookworm"]["reason"].rsplit("log: ", 1)[1])
    assert "bbq-test-gate: failing bbq-mx-two as asked" in again.read_text()
    skipped = rows["one/debian-bookworm"]["artifact"]  # absolute, as a built row's
    assert skipped == one["artifact"] and Path(skipped).is_absolute()
    assert Path(rows["two/debian-bookworm"]["log"]).is_absolute()
    assert summary["seconds"] < 120
    assert "one/debian-bookworm: building" not in result.stderr


def test_sigterm_stops_every_row_and_keeps_nothing(project):
    """SIGTERM to `bake matrix` alone reaches both running builds; they stop and clean up."""
    import os
    import signal
    import subprocess
    import time

    from tests.support.paths import BAKE

    _two_row_project(project)
    env = {k: v for k, v in os.environ.items() if not k.startswith("DIB_")}
    process = subprocess.Popen(
        [str(BAKE), "matrix", "--jobs", "2", "--output", "store"],
        cwd=project,
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    logs = project / "store" / ".matrix"
    deadline = time.monotonic() + 600
    while time.monotonic() < deadline:
        texts = [p.read_text() for p in logs.glob("*.log")] if logs.is_dir() else []
        # extra-data.d: the chroot exists, with the slot's apt archive bind-mounted in it.
        if len(texts) == 2 and all("extra-data.d" in t for t in texts):
            break
        assert process.poll() is None, process.communicate()
        time.sleep(1)
    else:
        pytest.fail("the two builds did not reach extra-data.d")
    slots = Path.home() / ".cache" / "image-create" / ".bake-slots"
    ours = [p for p in slots.iterdir() if f"-{process.pid}-" in p.name]
    assert len(ours) == 2
    process.send_signal(signal.SIGTERM)
    stdout, stderr = process.communicate(timeout=300)
    assert process.returncode == 128 + signal.SIGTERM, stderr[-3000:]
    assert "interrupted by SIGTERM" in stderr
    summary = json.loads((project / "store" / "matrix-summary.json").read_text())
    assert sorted(summary["failed"]) == ["one/debian-bookworm", "two/debian-bookworm"]
    for row in summary["rows"]:
        assert "interrupted" in row["reason"], row
    assert not list((project / "store").glob("bbq-*"))
    assert not [p for p in (project / "store" / ".tmp").iterdir()]
    assert not [p for p in ours if p.exists()]
    with open("/proc/self/mounts") as mounts:
        assert str(project) not in mounts.read()
