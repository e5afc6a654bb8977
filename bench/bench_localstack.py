"""Benchmark ``bake stack create --local`` (bake/cloud/local/): the whole stack on this machine.

Measures, in one run, from the same images of the artifact store:
  1. wall time of ``bake stack create --local`` until every role is healthy (each role's
     wait condition signalled: Spark master, 2 workers, REST dashboard, streaming job), the
     roles booted side by side (master, workers and REST together, then the job, as on
     Heat), with the time each role reported ready;
  2. the same roles booted one after another, each waited for (``--serial``): the ratio
     serial / parallel.

The images' root filesystems are unpacked once before timing (printed on its own); each
stack is deleted after its run (``--keep-rootfs``; the unpacked images are removed at the
end), and the data store and queue are started on the host by each create, as a
developer's would be. --rounds pairs alternate
their order; medians and every round's ratio are printed.
Usage: .venv/bin/python bench/bench_localstack.py [--output STORE] [--rounds N] [--workers N]
[--image ROLE=ARTIFACT_DIR]... (the spark, streaming and rest images of the current
fingerprints must be built in STORE, bake build image-specs/..., unless given by --image).
"""

from __future__ import annotations

import argparse
import os
import re
import statistics
import subprocess
import sys
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from bake.cloud.local import images, roles, state  # noqa: E402

BAKE = str(Path(sys.executable).parent / "bake")
READY = re.compile(r"local \S+: (\S+): ready after (\d+)s")


def bake(*args: str, store: Path, timeout: float = 1800) -> subprocess.CompletedProcess:
    return subprocess.run(
        [BAKE, "stack", *args, "--output", str(store)],
        cwd=REPO,
        capture_output=True,
        text=True,
        timeout=timeout,
    )


def one_create(
    name: str, store: Path, workers: int, serial: bool, pins: list[str]
) -> tuple[float, dict]:
    """Wall seconds of one create (to every role ready) and {role: ready after s}."""
    args = ["create", "--local", name, "--workers", str(workers)]
    for pin in pins:
        args += ["--image", pin]
    start = time.perf_counter()
    created = bake(*args, *(["--serial"] if serial else []), store=store)
    wall = time.perf_counter() - start
    try:
        if created.returncode != 0:
            raise SystemExit(f"create {name} failed:\n{created.stderr[-3000:]}")
        return wall, {role: int(s) for role, s in READY.findall(created.stderr)}
    finally:
        deleted = bake("delete", "--local", name, "--keep-rootfs", store=store, timeout=600)
        if deleted.returncode != 0:
            print(f"delete {name}: {deleted.stderr.strip()}", file=sys.stderr)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--output", default=os.environ.get("BBQ_ARTIFACTS") or "artifacts")
    parser.add_argument("--rounds", type=int, default=1)
    parser.add_argument("--workers", type=int, default=2)
    parser.add_argument("--image", action="append", default=[], metavar="ROLE=ARTIFACT_DIR")
    args = parser.parse_args()
    store = Path(args.output)

    start = time.perf_counter()
    pinned = dict(pin.split("=", 1) for pin in args.image)
    found = images.resolve(store, list(roles.BOOTED_ROLES), pinned)
    for artifact in {a.path: a for a in found.values()}.values():
        images.rootfs(store, artifact)
    print(f"images resolved and unpacked (untimed below): {time.perf_counter() - start:.1f} s")
    for role, artifact in found.items():
        print(f"  {role:<10} {artifact.name} {artifact.fingerprint[:12]}")

    parallel, serial = [], []
    for round_ in range(args.rounds):
        order = [False, True] if round_ % 2 == 0 else [True, False]
        for one_by_one in order:
            name = f"bench{os.getpid() % 1000}-{round_}-{'s' if one_by_one else 'p'}"
            wall, ready = one_create(name, store, args.workers, one_by_one, args.image)
            (serial if one_by_one else parallel).append(wall)
            how = "one after another" if one_by_one else "side by side"
            steps = ", ".join(f"{role} {s}s" for role, s in ready.items())
            print(f"round {round_ + 1}: {how:<17} {wall:6.1f} s  (ready: {steps})", flush=True)
    for i, (p, s) in enumerate(zip(parallel, serial, strict=True)):
        print(f"round {i + 1}: serial / parallel = {s / p:.2f}x")
    keep = {Path(sv.rootfs).resolve() for stack in state.all_stacks(store) for sv in stack.servers}
    images.prune_rootfs(store, keep)  # the unpacked images no other local stack boots from
    p, s = statistics.median(parallel), statistics.median(serial)
    print(f"create --local to every role healthy: {p:.1f} s side by side (median)")
    print(f"roles one after another: {s:.1f} s; serial / parallel = {s / p:.2f}x")
    return 0


if __name__ == "__main__":
    sys.exit(main())
