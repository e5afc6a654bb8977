"""Benchmark `bake matrix`: two rows in parallel vs one after another, and the shared cache.

Two rows in a temporary project: the base image (image-specs/base.yaml) and a variant of it
with one more package (a second image sharing most of its packages), plain filesystem, no
smoke test. Three runs, each with a new store and a new, empty DIB_IMAGE_CACHE:
  A. both rows with --jobs 1 (one after another): row 2 finds row 1's downloads in the
     shared cache;
  B. both rows with --jobs 2: wall ratio B/A;
  C. row 2 alone: its downloads without a shared cache.
Download bytes are apt's own ``Fetched N MB`` lines in each row's build log (what the
cache can save; debootstrap's downloads are not cached by diskimage-builder either way).

Usage: .venv/bin/python bench/bench_matrix.py
Takes 15-25 minutes (five real builds).
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
BAKE = str(Path(sys.executable).parent / "bake")
ROWS = ("base/debian-bookworm", "variant/debian-bookworm")


def make_project(root: Path) -> None:
    for name in ("elements", "image-specs"):
        shutil.copytree(REPO / name, root / name)
    shutil.copytree(REPO / "app", root / "app", ignore=shutil.ignore_patterns("__pycache__"))
    base = (root / "image-specs" / "base.yaml").read_text()
    variant = base.replace("name: bbq-base", "name: bbq-base-variant") + "packages: [less]\n"
    (root / "image-specs" / "variant.yaml").write_text(variant)
    (root / "image-specs" / "matrix.yaml").write_text(
        "specs: [base, variant]\ndistros: [{distro: debian, release: bookworm}]\n"
    )


def run(project: Path, work: Path, label: str, jobs: int, only: list[str]) -> dict:
    """One `bake matrix` run with a new store and an empty cache; its summary and wall time."""
    store, cache = work / f"store-{label}", work / f"cache-{label}"
    env = {k: v for k, v in os.environ.items() if not k.startswith("DIB_")}
    env["DIB_IMAGE_CACHE"] = str(cache)
    command = [BAKE, "matrix", "--plain", "--no-test", "--jobs", str(jobs), "--output", str(store)]
    for pattern in only:
        command += ["--only", pattern]
    start = time.perf_counter()
    result = subprocess.run(command, cwd=project, env=env, capture_output=True, text=True)
    wall = time.perf_counter() - start
    print(result.stdout, file=sys.stderr)
    if result.returncode != 0:
        print(result.stderr[-4000:], file=sys.stderr)
        raise SystemExit(f"run {label} failed (exit {result.returncode})")
    summary = json.loads((store / "matrix-summary.json").read_text())
    summary["wall"] = wall
    summary["by_row"] = {r["row"]: r for r in summary["rows"]}
    shutil.rmtree(store, ignore_errors=True)
    shutil.rmtree(cache, ignore_errors=True)
    return summary


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--work", help="directory for stores and caches (default: a temp dir)")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory(prefix="bench-matrix-", dir=args.work) as tmp:
        work = Path(tmp)
        project = work / "project"
        make_project(project)
        seq = run(project, work, "sequential", 1, list(ROWS))
        par = run(project, work, "parallel", 2, list(ROWS))
        alone = run(project, work, "alone", 1, [ROWS[1]])
    for summary in (seq, par):
        assert sorted(summary["built"]) == sorted(ROWS), summary["built"]
    second = ROWS[1]
    with_cache = seq["by_row"][second]["apt_fetched_bytes"]
    without = alone["by_row"][second]["apt_fetched_bytes"]
    print(f"rows: {', '.join(ROWS)} (plain filesystem, no smoke test, empty cache per run)")
    for label, summary in (("--jobs 1", seq), ("--jobs 2", par)):
        times = ", ".join(f"{r['row']} {r['seconds']:.0f}s" for r in summary["rows"])
        print(f"{label}: wall {summary['wall']:.0f}s ({times})")
    print(f"wall ratio --jobs 2 / --jobs 1: {par['wall'] / seq['wall']:.2f}")
    print(
        f"row 2 apt downloads: with the shared cache {with_cache / 1e6:.1f} MB, "
        f"without {without / 1e6:.1f} MB"
        + (f" (ratio {with_cache / without:.2f})" if without else "")
    )
    row1 = seq["by_row"][ROWS[0]]["apt_fetched_bytes"]
    print(f"row 1 apt downloads (cold): {row1 / 1e6:.1f} MB; os.cpu_count() = {os.cpu_count()}")
    print(
        "row 2 in the --jobs 2 run (both rows cold at once): "
        f"{par['by_row'][second]['apt_fetched_bytes'] / 1e6:.1f} MB"
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
