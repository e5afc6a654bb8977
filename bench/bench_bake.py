"""Benchmark `bake build` against itself and against bare disk-image-create, in one run.

Measures, side by side on the same host and warm download cache:
  1. a no-op rebake (artifact already complete) vs a cold bake of the same spec
     (goal: no-op <= 2 s);
  2. `bake build --no-test` vs bare `disk-image-create` with the same elements,
     environment and output types (goal: <= 1.05x), alternating the two for --rounds rounds.

Usage: .venv/bin/python bench/bench_bake.py [--spec image-specs/base.yaml] [--rounds 1]
Prints a table of timings and the ratios. Takes several minutes per round (real builds).
"""

from __future__ import annotations

import argparse
import os
import shlex
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
BAKE = str(Path(sys.executable).parent / "bake")


def timed(command: list[str], env: dict | None = None) -> float:
    start = time.perf_counter()
    subprocess.run(
        command, cwd=REPO, env=env, check=True, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE
    )
    return time.perf_counter() - start


def bare_command(spec: str, output: Path) -> tuple[list[str], dict]:
    """The disk-image-create command and environment bake would run, from its dry run."""
    dry = subprocess.run(
        [BAKE, "build", spec, "--plain", "--dry-run"],
        cwd=REPO,
        check=True,
        capture_output=True,
        text=True,
    ).stdout.splitlines()
    env = dict(os.environ)
    for line in dry[2:-1]:
        key, value = shlex.split(line.strip().rstrip("\\"))[0].split("=", 1)
        env[key] = value
    command = shlex.split(dry[-1])
    command[command.index("-o") + 1] = str(output / "image")
    command[0] = str(Path(sys.executable).parent / "disk-image-create")
    return command, env


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--spec", default="image-specs/base.yaml")
    parser.add_argument("--rounds", type=int, default=1)
    parser.add_argument("--noop-runs", type=int, default=5)
    args = parser.parse_args()

    bake_times, bare_times, noop_times = [], [], []
    with tempfile.TemporaryDirectory(prefix="bench-bake-") as tmp:
        tmp_path = Path(tmp)
        for round_no in range(args.rounds):
            bare_out = tmp_path / f"bare-{round_no}"
            bare_out.mkdir()
            command, env = bare_command(args.spec, bare_out)
            bare_times.append(timed(command, env))
            shutil.rmtree(bare_out)
            store = tmp_path / f"store-{round_no}"
            bake_times.append(timed([BAKE, "build", args.spec, "--plain", "--output", str(store)]))
            if round_no == 0:
                for _ in range(args.noop_runs):
                    noop_times.append(
                        timed([BAKE, "build", args.spec, "--plain", "--output", str(store)])
                    )
            shutil.rmtree(store)

    bake_s, bare_s = statistics.median(bake_times), statistics.median(bare_times)
    noop_s = statistics.median(noop_times)
    print(f"spec: {args.spec}, rounds: {args.rounds}")
    print(f"{'run':<34}{'median s':>10}  all")
    print(f"{'bare disk-image-create':<34}{bare_s:>10.1f}  {[round(t, 1) for t in bare_times]}")
    print(f"{'bake build (cold)':<34}{bake_s:>10.1f}  {[round(t, 1) for t in bake_times]}")
    print(f"{'bake build (no-op rebake)':<34}{noop_s:>10.2f}  {[round(t, 2) for t in noop_times]}")
    print(f"bake/bare ratio:        {bake_s / bare_s:.3f}x  (goal <= 1.05x)")
    print(f"no-op/cold ratio:       {noop_s / bake_s:.4f}x  (no-op {noop_s:.2f} s; goal <= 2 s)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
