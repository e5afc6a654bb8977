"""The image build matrix: ``image-specs/matrix.yaml`` expanded into rows and built in parallel.

A row is one spec built for one distro/release (and one Spark version, for the specs the
matrix lists under ``spark``). Every row ends in one :class:`~bake.matrix.model.Status`:

- ``built`` / ``skipped`` (a good artifact with its fingerprint was already in the store),
- ``failed`` (build or smoke test failed; the other rows go on),
- ``validated`` (planned and dry-run only: listed under ``validate-only``, or its distro's
  mirror does not answer on this host),
- ``unbuildable`` (listed under ``unbuildable``; its reason is shown),
- ``would build`` (``--dry-run`` only: buildable here, not built).

Excluded rows are left out of the table (the summary lists them with their reason).

=====================  ================================================================
module                 what it holds
=====================  ================================================================
:mod:`.model`          Matrix, Row, Rule, Result and their status enums; load_matrix
                       (schema: ``bake/schemas/matrix.json``), expand, select, row_spec,
                       row_plan
:mod:`.run`            run_matrix: plan, skip, build ``--jobs`` rows at a time; Workers
:mod:`.worker`         ``python -m bake.matrix.worker REQUEST-JSON``: one row's build
:mod:`.report`         the results table and the JSON summary
:mod:`.commands`       ``bake matrix``: options and command
:mod:`.ciworkflow`     ``python -m bake.matrix.ciworkflow [--check]``: the CI workflow
=====================  ================================================================

Example::

    from bake import matrix

    loaded = matrix.load_matrix(Path("image-specs/matrix.yaml"))
    for row in matrix.expand(loaded):
        print(row.id, row.status, row.reason)
"""

from bake.matrix.model import (
    MATRIX_FILE,
    TABLES,
    Matrix,
    Result,
    Row,
    RowStatus,
    Rule,
    Status,
    element_spark_version,
    expand,
    load_matrix,
    row_plan,
    row_spec,
    select,
)
from bake.matrix.report import SUMMARY_FILE, summary, table
from bake.matrix.run import WORKERS, Workers, apt_fetched_bytes, mirror_answers, run_matrix

__all__ = [
    "MATRIX_FILE",
    "SUMMARY_FILE",
    "TABLES",
    "WORKERS",
    "Matrix",
    "Result",
    "Row",
    "RowStatus",
    "Rule",
    "Status",
    "Workers",
    "apt_fetched_bytes",
    "element_spark_version",
    "expand",
    "load_matrix",
    "mirror_answers",
    "row_plan",
    "row_spec",
    "run_matrix",
    "select",
    "summary",
    "table",
]
