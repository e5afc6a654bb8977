"""The CI workflow is generated from the matrix and must stay in sync with it."""

from __future__ import annotations

import subprocess
import sys

import yaml

from bake import matrix as matrices
from bake.matrix import ciworkflow
from tests.matrix.conftest import write_matrix
from tests.support.paths import REPO


def test_committed_workflow_is_in_sync_with_the_matrix():
    matrix = matrices.load_matrix(REPO / "image-specs" / "matrix.yaml", root=REPO)
    committed = (REPO / ciworkflow.WORKFLOW).read_text()
    assert committed == ciworkflow.render(matrix), (
        "run: python -m bake.matrix.ciworkflow  (the workflow is out of sync with the matrix)"
    )


def test_workflow_has_one_job_per_buildable_row_and_reasons_for_the_rest():
    matrix = matrices.load_matrix(REPO / "image-specs" / "matrix.yaml", root=REPO)
    text = ciworkflow.render(matrix)
    data = yaml.safe_load(text)
    rows = matrices.expand(matrix)
    include = data["jobs"]["build"]["strategy"]["matrix"]["include"]
    assert [i["row"] for i in include] == [r.id for r in rows if r.status == "build"]
    for row in rows:
        if row.status != "build":
            assert f"#   {row.id}: {row.status}: {row.reason}" in text
    assert "--only '${{ matrix.row }}'" in data["jobs"]["build"]["steps"][-2]["run"]


def test_check_fails_when_the_matrix_changes(project):
    env_cwd = {"cwd": project, "capture_output": True, "text": True}
    command = [sys.executable, "-m", "bake.matrix.ciworkflow"]
    assert subprocess.run(command, **env_cwd).returncode == 0
    assert subprocess.run([*command, "--check"], **env_cwd).returncode == 0
    write_matrix(project, "specs: [base]\ndistros: [{distro: debian, release: bookworm}]\n")
    result = subprocess.run([*command, "--check"], **env_cwd)
    assert result.returncode == 1
    assert "out of sync" in result.stderr
