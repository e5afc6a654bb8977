"""Benchmark ``fab deploy`` (bake.fleet) on real instances of the bbq-rest image, in one run.

Boots 4 instances (systemd-nspawn, real sshd and systemd) and measures:
  1. a one-line app change deployed to 1 instance vs another one-line change to 4 instances
     at once (--batch 4): wall time ratio (goal <= 1.5x);
  2. bytes sent per host vs the full release (every wheel of the app; goal <= 5%);
  3. the seed's way: on each host in turn, ``git clone`` of the app repository (served by
     ``git daemon`` on loopback) and ``pip install -r requirements.txt`` into a new venv, from
     the same package index this machine's pip uses (its config and local index directories
     are handed to the instances read-only).

Two untimed deploys to all 4 warm them up (see main); then --rounds pairs of 1-host and
4-host deploys (order alternating), each of its own one-line change; medians and every
round's ratio are printed. Wheelhouses are built before timing (a deploy builds its
wheelhouse once, locally, for all hosts; that local cost is printed on its own).
Usage: .venv/bin/python bench/bench_deploy.py [--rootfs DIR] [--no-seed] [--rounds N]
(without --rootfs the bbq-rest image is built with ``bake build`` first).
"""

from __future__ import annotations

import argparse
import contextlib
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
sys.path.insert(0, str(REPO))

from bake.fleet.host import deploy_host  # noqa: E402
from bake.fleet.results import DEPLOYED  # noqa: E402
from bake.fleet.rollout import rollout, table  # noqa: E402
from bake.fleet.shipment import Build, build_wheelhouse  # noqa: E402
from bake.fleet.ssh import SshOptions, connect  # noqa: E402
from bake.fleet.targets import Target  # noqa: E402
from bake.hostsys import free_port  # noqa: E402
from bake.instances import unpacked_rootfs  # noqa: E402
from tests.deploy.fleet import Fleet, app_variant  # noqa: E402

BAKE = str(Path(sys.executable).parent / "bake")
# Releases kept: 2, so that every timed deploy also prunes one (steady state, all hosts alike).
KEEP = 2


def rest_rootfs(work: Path, store: Path) -> Path:
    subprocess.run(
        [BAKE, "build", "image-specs/rest.yaml", "--plain", "--output", str(store)],
        cwd=REPO,
        check=True,
    )
    fingerprint = subprocess.run(
        [BAKE, "fingerprint", "image-specs/rest.yaml", "--plain"],
        cwd=REPO,
        check=True,
        capture_output=True,
        text=True,
    ).stdout.strip()
    tar = next(store.glob(f"*/{fingerprint}/*.tar"))
    return unpacked_rootfs(tar, work / "rootfs")


def timed_deploy(fleet: Fleet, indexes: list[int], build: Build, keep: int = KEEP):
    ssh = SshOptions(fleet.known_hosts, tuple(i.key_file for i in fleet.instances), False)
    targets = [Target(fleet.instances[i].host, fleet.instances[i].port) for i in indexes]

    def act(target):
        with connect(target, ssh) as c:
            return deploy_host(c, build, keep=keep, label=target.label)

    start, cpu = time.perf_counter(), time.process_time()
    results = rollout(targets, act, batch=len(targets))
    wall = time.perf_counter() - start
    print(f"deployer CPU {time.process_time() - cpu:.1f} s for {len(targets)} host(s)", flush=True)
    print(table(results), flush=True)
    bad = [r for r in results if r.result != DEPLOYED]
    if bad:
        sys.exit(f"bench: deploy failed: {bad}")
    return wall, results


def pip_handover() -> tuple[list[tuple[Path, str]], dict[str, str], dict[str, str]]:
    """This machine's pip configuration for the instances: (binds, files, env)."""
    binds, files = [], {}
    for conf in (Path("/etc/pip.conf"), Path.home() / ".config/pip/pip.conf"):
        if conf.is_file():
            files["/etc/pip.conf"] = conf.read_text()
    env = {k: v for k, v in os.environ.items() if k.startswith("PIP_")}
    text = " ".join([*files.values(), *env.values()])
    for directory in ("/opt/pypi", "/opt/pypi-more", "/opt/wheels"):
        if directory in text and Path(directory).is_dir():
            binds.append((Path(directory), directory))
    # The CA bundle pip trusts here (it may hold a proxy's CA the image lacks).
    cert = Path(env.get("PIP_CERT", "/etc/ssl/certs/ca-certificates.crt"))
    if cert.is_file():
        files["/opt/bench/ca.crt"] = cert.read_text()
        env["PIP_CERT"] = "/opt/bench/ca.crt"
    return binds, files, env


def seed_way(fleet: Fleet, work: Path, app: Path, env: dict[str, str]) -> list[float]:
    """git clone + pip install -r requirements.txt on each host in turn; seconds per host."""
    repo = work / "seed-repo"
    shutil.copytree(app, repo / "app")
    requirements = subprocess.run(
        [
            sys.executable,
            "-c",
            "import configparser,sys; c=configparser.ConfigParser(); "
            "c.read(sys.argv[1]); print(c['options']['install_requires'])",
            str(app / "setup.cfg"),
        ],
        check=True,
        capture_output=True,
        text=True,
    ).stdout
    (repo / "requirements.txt").write_text(requirements.strip() + "\n./app\n")
    git = ["git", "-c", "user.name=bench", "-c", "user.email=bench@localhost"]
    subprocess.run(["git", "init", "-q", str(repo)], check=True)
    subprocess.run([*git, "-C", str(repo), "add", "."], check=True)
    subprocess.run([*git, "-C", str(repo), "commit", "-qm", "seed"], check=True)
    subprocess.run(
        ["git", "clone", "-q", "--bare", str(repo), str(work / "git" / "bbq.git")], check=True
    )
    port = free_port()
    daemon = subprocess.Popen(
        [
            "git",
            "daemon",
            "--reuseaddr",
            "--export-all",
            f"--base-path={work / 'git'}",
            "--listen=127.0.0.1",
            f"--port={port}",
            str(work / "git"),
        ],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    exports = " ".join(f"{k}={shlex.quote(v)}" for k, v in env.items())
    times = []
    try:
        for instance in fleet.instances:  # the seed's hosts had git; the image does not
            result = instance.run(
                "command -v git || (apt-get update -qq && apt-get install -y -qq git)", timeout=900
            )
            if result.exited != 0:
                sys.exit(f"bench: cannot install git on {instance.name}: {result.stderr[-500:]}")
        for i, instance in enumerate(fleet.instances):
            command = (
                "set -e; rm -rf /opt/seed; mkdir -p /opt/seed; cd /opt/seed; "
                f"git clone -q git://127.0.0.1:{port}/bbq.git src; python3 -m venv venv; "
                f"cd src && {exports} ../venv/bin/pip install -q --no-cache-dir -r requirements.txt"
            )
            start = time.perf_counter()
            result = instance.run(f"bash -c {shlex.quote(command)}", timeout=1800)
            times.append(time.perf_counter() - start)
            if result.exited != 0:
                sys.exit(f"bench: seed way failed on host {i + 1}: {result.stderr[-2000:]}")
            print(f"seed way host {i + 1}: {times[-1]:.1f}s", flush=True)
    finally:
        daemon.terminate()
        daemon.wait()
    return times


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rootfs", type=Path, help="an unpacked bbq-rest root filesystem")
    parser.add_argument("--no-seed", action="store_true", help="skip the seed's way")
    parser.add_argument("--rounds", type=int, default=3, help="1-host/4-host pairs (default 3)")
    args = parser.parse_args()
    work = Path(tempfile.mkdtemp(prefix="bench-deploy-"))
    try:
        rootfs = args.rootfs or rest_rootfs(work, work / "store")
        binds, files, pip_env = pip_handover()
        warm = [app_variant(work / f"app-w{i}", "0.1.0", f"bench-warm-up-{i}") for i in (1, 2)]
        warm_builds = [build_wheelhouse(app) for app in warm]
        # The local side, once per deploy whatever the number of hosts: the wheelhouse of a
        # one-line change (pip wheel of the app, dependencies from pip's cache) and its hashes.
        pairs = []
        local = []
        for r in range(args.rounds):
            apps = [app_variant(work / f"app-{r}-{n}", "0.1.0", f"bench-{r}-{n}") for n in (1, 4)]
            start = time.perf_counter()
            builds = [build_wheelhouse(app) for app in apps]
            local.append((time.perf_counter() - start) / 2)
            pairs.append(builds)
        with contextlib.ExitStack() as stack:
            fleet = stack.enter_context(
                Fleet.boot(rootfs, work / "fleet", 4, "bbq-bench", binds=binds, files=files)
            )
            # Warm-up, untimed, two deploys everywhere: the first change on an instance copies
            # the image's venv up into its overlay, and pruning the image's release copies it
            # again (test-bed costs: on a VM's own disk hard links and renames are free).
            for build in warm_builds:
                timed_deploy(fleet, [0, 1, 2, 3], build)
            rounds = []
            for r, (build_one, build_four) in enumerate(pairs):
                # The same kind of change, side by side; the order alternates between rounds.
                if r % 2 == 0:
                    one, results_one = timed_deploy(fleet, [0], build_one)
                    four, results_four = timed_deploy(fleet, [0, 1, 2, 3], build_four)
                else:
                    four, results_four = timed_deploy(fleet, [0, 1, 2, 3], build_four)
                    one, results_one = timed_deploy(fleet, [0], build_one)
                rounds.append((one, four, results_one + results_four))
                print(f"round {r + 1}: 1 host {one:.1f} s, 4 hosts {four:.1f} s, {four / one:.2f}x")
            full = pairs[-1][1].total_bytes
            sent = max(h.bytes_sent for _, _, results in rounds for h in results)
            seed = [] if args.no_seed else seed_way(fleet, work, apps[-1], pip_env)
        one = statistics.median(r[0] for r in rounds)
        four = statistics.median(r[1] for r in rounds)
        ratios = [r[1] / r[0] for r in rounds]
        print()
        print(
            f"local side, once per deploy (wheelhouse + hashes): {statistics.median(local):.1f} s"
        )
        print(f"deploy one-line change to 1 host:  {one:6.1f} s (median of {len(rounds)})")
        print(f"deploy one-line change to 4 hosts: {four:6.1f} s (median of {len(rounds)})")
        print(
            f"ratio 4 hosts / 1 host: median {statistics.median(ratios):.2f}x, rounds "
            + ", ".join(f"{x:.2f}x" for x in ratios)
            + " (goal <= 1.5x)"
        )
        print(
            f"  (the 4 instances share this machine's {os.cpu_count()} CPUs: their host-side work,"
            " which on VMs runs on each VM's own CPUs, competes here)"
        )
        print(
            f"bytes sent per host: {sent} of a full release of {full} "
            f"= {100 * sent / full:.3f}% (goal <= 5%)"
        )
        if seed:
            print(
                f"seed's way (git clone + pip install -r, host by host): {sum(seed):6.1f} s "
                f"for 4 hosts ({', '.join(f'{t:.0f}' for t in seed)} s each); "
                f"{sum(seed) / four:.1f}x the 4-host deploy"
            )
    finally:
        shutil.rmtree(work, ignore_errors=True)


if __name__ == "__main__":
    main()
