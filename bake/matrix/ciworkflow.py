"""The CI workflow for the image matrix, generated from ``image-specs/matrix.yaml``.

One GitHub Actions job per buildable row (each runs ``bake matrix --only ROW``, which
validates instead of building where the row's mirror does not answer), one job that
dry-runs every row, and the unbuildable and excluded rows listed as comments with their
reasons. The file is generated, never edited: ``python -m bake.matrix.ciworkflow --check``
(and a test) fail when it is out of sync with the matrix.

Example::

    python -m bake.matrix.ciworkflow            # rewrite .github/workflows/images.yaml
    python -m bake.matrix.ciworkflow --check    # exit 1 if it differs from the matrix
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

import yaml

from bake.matrix.model import Matrix, RowStatus, expand, load_matrix
from bake.spec import SpecError

WORKFLOW = Path(".github") / "workflows" / "images.yaml"
MAX_PARALLEL = 4
MODULE = "bake.matrix.ciworkflow"  # python -m MODULE writes the workflow


def render(matrix: Matrix, matrix_file: str = "image-specs/matrix.yaml") -> str:
    """The workflow's text for ``matrix`` (deterministic: same matrix, same bytes)."""
    rows = expand(matrix)
    build = [r for r in rows if r.status == RowStatus.BUILD]
    header = [
        f"# GENERATED from {matrix_file} by `python -m {MODULE}`: do not edit.",
        "# Not built (each with its reason):",
    ]
    for row in rows:
        if row.status != RowStatus.BUILD:
            header.append(f"#   {row.id}: {row.status}: {row.reason}")
    rebuild_on = ["image-specs/**", "elements/**", "app/**", "bake/**", ".github/workflows/**"]
    steps_setup = [
        {"uses": "actions/checkout@v4"},
        {
            "name": "diskimage-builder download cache",
            "uses": "actions/cache@v4",
            "with": {
                "path": "~/.cache/image-create",
                "key": "dib-${{ matrix.row }}-${{ hashFiles('elements/**') }}",
                "restore-keys": "dib-",
            },
        },
        {"name": "bootstrap", "run": "sudo tools/bootstrap --tests"},
    ]
    workflow = {
        "name": "images",
        "on": {
            "push": {"paths": rebuild_on},
            "pull_request": {"paths": list(rebuild_on)},
            "workflow_dispatch": {},
        },
        "env": {
            # Mirrors are configuration of the CI service, never host names in this file.
            "DIB_DISTRIBUTION_MIRROR": "${{ vars.DIB_DISTRIBUTION_MIRROR }}",
            "DIB_DEBIAN_SECURITY_MIRROR": "${{ vars.DIB_DEBIAN_SECURITY_MIRROR }}",
        },
        "jobs": {
            "validate": {
                "name": "validate and dry-run every row",
                "runs-on": "ubuntu-24.04",
                "steps": [
                    {"uses": "actions/checkout@v4"},
                    {"name": "bootstrap", "run": "sudo tools/bootstrap --tests"},
                    {
                        "name": "workflow in sync",
                        "run": f".venv/bin/python -m {MODULE} --check",
                    },
                    {
                        "name": "dry-run",
                        "run": (
                            f"sudo .venv/bin/bake matrix --matrix {matrix_file} --plain --dry-run"
                        ),
                    },
                ],
            },
            "build": {
                "name": "${{ matrix.row }}",
                "needs": "validate",
                "runs-on": "ubuntu-24.04",
                "timeout-minutes": 60,
                "strategy": {
                    "fail-fast": False,
                    "max-parallel": MAX_PARALLEL,
                    "matrix": {"include": [{"row": r.id} for r in build]},
                },
                "steps": [
                    *steps_setup,
                    {
                        "name": "bake matrix --only ${{ matrix.row }}",
                        "run": (
                            f"sudo .venv/bin/bake matrix --matrix {matrix_file} --plain "
                            "--only '${{ matrix.row }}' --summary matrix-summary.json"
                        ),
                    },
                    {
                        "name": "summary",
                        "if": "always()",
                        "uses": "actions/upload-artifact@v4",
                        "with": {
                            "name": "summary-${{ strategy.job-index }}",
                            "path": "matrix-summary.json",
                        },
                    },
                ],
            },
        },
    }
    body = yaml.safe_dump(workflow, sort_keys=False, width=1000, default_flow_style=False)
    return "\n".join(header) + "\n" + body


def main(argv: list[str] | None = None) -> int:
    """Write the workflow, or with ``--check`` exit 1 when the file differs from the matrix."""
    parser = argparse.ArgumentParser(prog=f"python -m {MODULE}", description=__doc__)
    parser.add_argument("--matrix", default="image-specs/matrix.yaml")
    parser.add_argument("--output", default=str(WORKFLOW))
    parser.add_argument("--check", action="store_true", help="only compare, write nothing")
    args = parser.parse_args(argv)
    try:
        matrix = load_matrix(Path(args.matrix), root=Path.cwd())
    except SpecError as exc:
        for problem in exc.problems:
            print(f"error: {problem}", file=sys.stderr)
        return 2
    text = render(matrix, args.matrix)
    output = Path(args.output)
    if args.check:
        current = output.read_text() if output.is_file() else ""
        if current != text:
            print(
                f"{output} is out of sync with {args.matrix}: run python -m {MODULE}",
                file=sys.stderr,
            )
            return 1
        print(f"{output}: in sync with {args.matrix}")
        return 0
    output.parent.mkdir(parents=True, exist_ok=True)
    output.write_text(text)
    print(f"wrote {output}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
