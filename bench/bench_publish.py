#!/usr/bin/env python3
"""Benchmark: ``bake publish`` vs ``glance image-create --file``, same local Glance, same file.

Starts a real Keystone + Glance (tests/fixtures/openstack.py), makes one real qcow2 artifact
(random data, so nothing is sparse; committed to a real store, so its manifest records the
file's sha256, sha512 and md5 as a build's does), runs each upload once unmeasured (warm-up:
Glance's first upload, page cache), then alternates the two uploads ROUNDS times (the order
flips every round), deleting the image after each so every bake run really uploads. For each
run it measures wall time (the whole command: start-up, auth, upload, and for bake its dedupe
lookup, SHA256SUMS check and hash verification) and the client's peak RSS (its VmHWM).
Prints per-run figures, medians, and the two goals:

    throughput ratio bake/glance >= 1.0        peak RSS of bake <= 100 MB

With ``--pin`` the servers run on CPU 0 and the clients on CPU 1, as if Glance were on
another host (the client's hashing then does not take CPU from the server).

Usage: bbq-run bench .venv/bin/python bench/bench_publish.py [--size-mib 2048] [--rounds 5]
       [--pin]
"""

from __future__ import annotations

import argparse
import datetime
import hashlib
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
import uuid
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from bake.artifacts import Store  # noqa: E402
from tests.fixtures.openstack import OpenStack  # noqa: E402

BIN = Path(sys.executable).parent


def make_artifact(store: Store, mib: int) -> Path:
    """A committed artifact whose qcow2 holds ``mib`` MiB of random data."""
    name = "bench-publish"
    build_dir = store.new_build_dir(name)
    out = build_dir / "out"
    out.mkdir()
    raw = build_dir / "data.raw"
    block = os.urandom(16 * 1024 * 1024)
    with open(raw, "wb") as handle:
        for i in range(mib // 16):
            # vary each block cheaply so no two are equal
            handle.write(i.to_bytes(8, "big") + block[8:])
    subprocess.run(
        ["qemu-img", "convert", "-f", "raw", "-O", "qcow2", str(raw), str(out / f"{name}.qcow2")],
        check=True,
    )
    raw.unlink()
    spec = {
        "name": name,
        "version": "1.0.0",
        "distro": "debian",
        "release": "bookworm",
        "elements": ["bbq-base"],
        "sahara": {"username": "debian", "tags": ["spark"]},
    }
    artifact = store.commit(
        build_dir,
        out,
        {
            "name": name,
            "version": "1.0.0",
            "fingerprint": hashlib.sha256(uuid.uuid4().bytes).hexdigest(),
            "spec": spec,
            "built_at": datetime.datetime.now(datetime.UTC).isoformat(timespec="seconds"),
            "dib_version": "bench",
        },
    )
    return artifact.path


def peak_rss_mb(pid: int) -> float | None:
    """VmHWM (peak resident set) of a running process, in MB; None once it has exited."""
    try:
        for line in Path(f"/proc/{pid}/status").read_text().splitlines():
            if line.startswith("VmHWM:"):
                return int(line.split()[1]) / 1024
    except (OSError, ValueError):
        return None
    return None


def run(cmd: list[str], env: dict[str, str]) -> tuple[float, float, float, str]:
    """Run ``cmd``; return (wall seconds, peak RSS in MB, CPU seconds, stdout); exit on
    failure.

    Peak RSS is the child's own VmHWM, sampled every 20 ms until it exits (``wait4``'s
    ru_maxrss would include the memory of this benchmark process it was forked from).
    """
    with tempfile.TemporaryFile() as out, tempfile.TemporaryFile() as err:
        started = time.monotonic()
        proc = subprocess.Popen(cmd, env=env, stdout=out, stderr=err)
        peak = 0.0
        while True:
            peak = max(peak, peak_rss_mb(proc.pid) or 0.0)
            pid, status, usage = os.wait4(proc.pid, os.WNOHANG)
            if pid:
                break
            time.sleep(0.02)
        seconds = time.monotonic() - started
        proc.returncode = os.waitstatus_to_exitcode(status)
        cpu = usage.ru_utime + usage.ru_stime
        out.seek(0)
        err.seek(0)
        stdout, stderr = out.read().decode(), err.read().decode()
    if proc.returncode != 0:
        sys.exit(f"bench: {' '.join(cmd[:2])} failed ({proc.returncode}):\n{stderr[-2000:]}")
    return seconds, peak, cpu, stdout


def pin_process_group(pgid: int, cpus: set[int]) -> None:
    """Set the CPU affinity of every thread of every process in a process group."""
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            stat = (entry / "stat").read_text()
            if int(stat.rsplit(")", 1)[1].split()[2]) != pgid:
                continue
            for task in (entry / "task").iterdir():
                os.sched_setaffinity(int(task.name), cpus)
        except (OSError, ValueError, IndexError):
            continue


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--size-mib", type=int, default=2048)
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument("--workdir", type=Path)
    parser.add_argument(
        "--pin",
        action="store_true",
        help="servers on CPU 0, clients on CPU 1: as if Glance ran on another host",
    )
    args = parser.parse_args()

    workdir = args.workdir or Path(tempfile.mkdtemp(prefix="bench-publish-"))
    workdir.mkdir(parents=True, exist_ok=True)
    servers = OpenStack(workdir / "openstack")
    try:
        servers.start()
        if args.pin:
            for server in (servers.keystone, servers.glance):
                pin_process_group(server.process.pid, {0})
        artifact = make_artifact(Store(workdir / "store"), args.size_mib)
        image = next(artifact.glob("*.qcow2"))
        size = image.stat().st_size
        env = {k: v for k, v in os.environ.items() if not k.startswith("OS_")}
        env.update(servers.env())
        session = servers.admin_session()
        from glanceclient import client

        glance = client.Client("2", session=session, region_name="RegionOne")
        pinned = "servers on CPU 0, clients on CPU 1" if args.pin else "not pinned"
        print(f"file: {image.name}, {size / 2**20:.0f} MiB; rounds: {args.rounds}; {pinned}")
        prefix = ["taskset", "-c", "1"] if args.pin else []
        bake_cmd = [*prefix, str(BIN / "bake"), "publish", str(artifact), "--no-progress"]
        glance_cmd = [
            *prefix,
            str(BIN / "glance"),
            "image-create",
            "--name",
            "bench-glance-cli",
            "--disk-format",
            "qcow2",
            "--container-format",
            "bare",
            "--file",
            str(image),
        ]
        results: dict[str, list[tuple[float, float, float]]] = {
            "bake publish": [],
            "glance cli": [],
        }

        def delete_all() -> None:
            for img in list(glance.images.list()):
                glance.images.delete(img["id"])

        for cmd in (glance_cmd, bake_cmd):  # warm-up, not measured
            run(cmd, env)
            delete_all()
        for round_no in range(args.rounds):
            order = [("bake publish", bake_cmd), ("glance cli", glance_cmd)]
            if round_no % 2:
                order.reverse()
            for label, cmd in order:
                seconds, rss, cpu, _ = run(cmd, env)
                results[label].append((seconds, rss, cpu))
                print(
                    f"round {round_no + 1} {label:13s} {seconds:6.2f} s "
                    f"{size / 2**20 / seconds:7.1f} MiB/s  peak RSS {rss:6.1f} MB  "
                    f"client CPU {cpu:5.1f} s  load {os.getloadavg()[0]:.1f}",
                    flush=True,
                )
                delete_all()
        print()
        medians = {}
        for label, runs in results.items():
            secs = statistics.median(r[0] for r in runs)
            medians[label] = secs
            peak = max(r[1] for r in runs)
            cpu = statistics.median(r[2] for r in runs)
            print(
                f"{label:13s} median {secs:6.2f} s = {size / 2**20 / secs:7.1f} MiB/s, "
                f"max peak RSS {peak:6.1f} MB, median client CPU {cpu:5.1f} s"
            )
        ratio = medians["glance cli"] / medians["bake publish"]
        bake_rss = max(r[1] for r in results["bake publish"])
        print(f"throughput ratio bake/glance: {ratio:.2f}x (goal >= 1.0)")
        print(f"bake publish peak RSS: {bake_rss:.1f} MB (goal <= 100 MB)")
    finally:
        servers.stop()
        if not args.workdir:
            shutil.rmtree(workdir, ignore_errors=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
