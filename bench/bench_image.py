"""Benchmark our image cleanup and DIB's download cache, side by side in one run.

Builds the same spec (default: the spark image, plain filesystem, no smoke test) three
times on this host:
  1. with our cleanup (the default) and a warm download cache;
  2. without our cleanup (DIB_BBQ_CLEANUP=0), warm cache: size ratio 1/2, goal <= 0.7x;
  3. with our cleanup and an empty download cache (DIB_IMAGE_CACHE in a new directory;
     the app's wheelhouse stays cached): build time warm/cold.
Sizes are those of the qcow2 (what Glance stores) and of the root filesystem tarball.
For the bbq-spark image, the qcow2 of build 1 is also compared with issue 16's absolute
goal, 550 MiB (stable from machine to machine, unlike the ratio's denominator).

Usage: .venv/bin/python bench/bench_image.py [--spec image-specs/spark.yaml]
Takes 10-20 minutes (three real builds).
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
SPARK_QCOW2_GOAL_MIB = 550
BAKE = str(Path(sys.executable).parent / "bake")


def build(spec: str, store: Path, extra_env: dict[str, str]) -> tuple[float, dict]:
    env = {**os.environ, **extra_env}
    start = time.perf_counter()
    subprocess.run(
        [BAKE, "build", spec, "--plain", "--no-test", "--force", "--output", str(store)],
        cwd=REPO,
        env=env,
        check=True,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    seconds = time.perf_counter() - start
    (manifest,) = store.glob("*/*/manifest.json")
    data = json.loads(manifest.read_text())
    sizes = {
        kind: info["size"]
        for name, info in data["files"].items()
        for kind in ("qcow2", "tar")
        if name.endswith(f".{kind}")
    }
    return seconds, sizes


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--spec", default="image-specs/spark.yaml")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory(prefix="bench-image-") as tmp:
        tmp_path = Path(tmp)
        warm_s, clean = build(args.spec, tmp_path / "clean", {})
        raw_s, raw = build(args.spec, tmp_path / "raw", {"DIB_BBQ_CLEANUP": "0"})
        cold_s, cold = build(
            args.spec, tmp_path / "cold", {"DIB_IMAGE_CACHE": str(tmp_path / "empty-cache")}
        )
    mib = 2**20
    rows = [
        ("with our cleanup (warm cache)", clean, warm_s),
        ("without (DIB_BBQ_CLEANUP=0, warm)", raw, raw_s),
        ("with our cleanup (cold cache)", cold, cold_s),
    ]
    print(f"spec: {args.spec}")
    print(f"{'build':<36}{'qcow2 MiB':>10}{'tar MiB':>10}{'seconds':>9}")
    for label, sizes, seconds in rows:
        print(f"{label:<36}{sizes['qcow2'] / mib:>10.0f}{sizes['tar'] / mib:>10.0f}{seconds:>9.0f}")
    print(
        f"size with/without cleanup: qcow2 {clean['qcow2'] / raw['qcow2']:.3f}x, "
        f"tar {clean['tar'] / raw['tar']:.3f}x  (goal <= 0.7x)"
    )
    if Path(args.spec).name == "spark.yaml":
        print(
            f"bbq-spark qcow2 with our cleanup: {clean['qcow2'] / mib:.0f} MiB "
            f"(goal <= {SPARK_QCOW2_GOAL_MIB} MiB)"
        )
    print(
        f"build time warm cache {warm_s:.0f}s / cold cache {cold_s:.0f}s = {warm_s / cold_s:.2f}x"
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
