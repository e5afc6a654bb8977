"""Benchmark ``fab deploy`` on 8 instances of the bbq-rest image vs 1, and vs Ansible, in one run.

Boots --hosts instances (default 8; systemd-nspawn, real sshd and systemd, the image's own
bbq-rest service) and measures, side by side on the same hosts, each deploy its own one-line
app change (wheelhouses built before timing, as a CI job would have them):

  1. ``fab deploy`` (the real command line) of a change to 1 host vs to all (--batch all):
     wall-time ratio, goal <= 1.3x; each host's phases (``--format json``: connect, state,
     send, install with clone, reinstall, check, finish, and switch with restart, health,
     prune), medians printed;
  2. ``ansible-playbook bench/ansible/deploy.yml`` (ansible-core from PyPI, in the bench-only
     venv .venvs/ansible made from bench/ansible/requirements.txt) doing the same release
     switch the idiomatic way to all hosts, forks = hosts, pipelining and SSH ControlPersist
     on: ratio Ansible / fab on all hosts, goal >= 3x (``--ansible-one``: Ansible on 1 host
     too, for its own scaling);
  3. ansible-lint (production profile) on the playbook: its verdict is printed.

One untimed deploy of each kind to all hosts warms up (the first change on an instance copies
the image's venv up into its overlay); then --rounds rounds of those deploys, the order
reversed every other round; medians and every round's ratios are printed. Every deploy is
checked afterwards (each host's current release is the one deployed). All hosts accept one
SSH key (one deploy key for a fleet, as in production): both tools are given that key alone.
``--profile`` adds one in-process deploy to all hosts with every host's thread under cProfile
(the deployer's CPU: SSH, hashing, the rollout) and prints its top functions.

Usage: .venv/bin/python bench/bench_fleet_ansible.py [--rootfs DIR] [--hosts 8] [--rounds 3]
       [--profile] [--no-ansible] [--ansible-one] [--floor] [--app DIR]
(--floor: the same deploy_host with each host command run through nsenter in the
container, no SSH or Fabric: the hosts' own contention, fab's ratio's physical floor).
(without --rootfs the bbq-rest image is built with ``bake build`` first).
"""

from __future__ import annotations

import argparse
import concurrent.futures
import contextlib
import cProfile
import dataclasses
import io
import json
import os
import pstats
import re
import shutil
import statistics
import subprocess
import sys
import tempfile
import threading
import time
import types
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))
sys.path.insert(0, str(REPO / "bench"))

from bench_deploy import rest_rootfs  # noqa: E402

from bake.fleet.host import deploy_host  # noqa: E402
from bake.fleet.results import DEPLOYED, HostResult  # noqa: E402
from bake.fleet.rollout import rollout  # noqa: E402
from bake.fleet.shipment import Build, build_wheelhouse  # noqa: E402
from bake.fleet.ssh import SshOptions, connect  # noqa: E402
from bake.fleet.targets import Target  # noqa: E402
from tests.deploy.fleet import FAB, Fleet, app_variant  # noqa: E402

ANSIBLE_DIR = REPO / "bench" / "ansible"
PLAYBOOK = ANSIBLE_DIR / "deploy.yml"
REQUIREMENTS = ANSIBLE_DIR / "requirements.txt"
ANSIBLE_VENV = REPO / ".venvs" / "ansible"
# Releases kept by both tools: 2, so that every timed deploy also prunes one.
KEEP = 2
ROUNDS_ORDER = ("fab-1", "fab-all", "floor-1", "floor-all", "ansible-all", "ansible-1")


@dataclasses.dataclass(frozen=True)
class Ansible:
    """Where the bench's Ansible is: its programs, its ansible.cfg, the bench's directory."""

    bin_dir: Path
    config: Path
    work: Path


@dataclasses.dataclass(frozen=True)
class Change:
    """A one-line app change: the app directory (fab's --app) and its built wheelhouse."""

    app: Path
    build: Build

    @property
    def release(self) -> str:
        return self.build.release


def ansible_venv() -> Path:
    """The bench-only Ansible venv, made (or brought up to the requirements) when needed."""
    stamp = ANSIBLE_VENV / "requirements.txt"
    wanted = REQUIREMENTS.read_text()
    if not (stamp.is_file() and stamp.read_text() == wanted):
        print(f"making {ANSIBLE_VENV.relative_to(REPO)} from {REQUIREMENTS.relative_to(REPO)}")
        subprocess.run([sys.executable, "-m", "venv", str(ANSIBLE_VENV)], check=True)
        pip = [str(ANSIBLE_VENV / "bin" / "python"), "-m", "pip", "install", "-q"]
        subprocess.run([*pip, "-r", str(REQUIREMENTS)], check=True, timeout=1800)
        stamp.write_text(wanted)
    return ANSIBLE_VENV / "bin"


def lint(bin_dir: Path) -> str:
    """ansible-lint's verdict on the playbook (production profile): its summary line."""
    env = {**os.environ, "NO_COLOR": "1", "PATH": f"{bin_dir}:{os.environ['PATH']}"}
    run = subprocess.run(
        [str(bin_dir / "ansible-lint"), "--offline", "--profile", "production", PLAYBOOK.name],
        cwd=ANSIBLE_DIR,
        env=env,
        capture_output=True,
        text=True,
        timeout=600,
    )
    text = re.sub(r"\x1b\[[0-9;]*m|\x1b\]8;;[^\x1b]*\x1b\\\\", "", run.stdout + run.stderr)
    verdict = [line for line in text.splitlines() if line.startswith(("Passed", "Failed"))]
    if run.returncode != 0 or not verdict:
        print(text[-3000:])
    return f"exit {run.returncode}: " + (verdict[-1] if verdict else "no verdict line")


def one_key(fleet: Fleet) -> Path:
    """Make every instance accept the first one's key (one deploy key for the fleet)."""
    key = fleet.instances[0].key_file
    public = Path(f"{key}.pub").read_text().strip()
    for i in range(1, len(fleet.instances)):
        fleet.sh(i, f"echo '{public}' >> /root/.ssh/authorized_keys")
    return key


def write_ansible_config(work: Path, fleet: Fleet, key: Path) -> Path:
    """inventory.ini and ansible.cfg (forks = hosts, pipelining, ControlPersist); the cfg."""
    home = work / "ansible"
    (home / "cp").mkdir(parents=True)
    lines = ["[bbq]"]
    for i, instance in enumerate(fleet.instances):
        lines.append(
            f"bbq-{i + 1} ansible_host={instance.host} ansible_port={instance.port} "
            f"bbq_rest_port={fleet.rest_ports[i]}"
        )
    lines += ["", "[bbq:vars]", "ansible_user=root", f"ansible_ssh_private_key_file={key}"]
    (home / "inventory.ini").write_text("\n".join(lines) + "\n")
    config = home / "ansible.cfg"
    config.write_text(
        "[defaults]\n"
        f"inventory = {home / 'inventory.ini'}\n"
        f"forks = {len(fleet.instances)}\n"
        "interpreter_python = /usr/bin/python3\n"
        "host_key_checking = True\n"
        "retry_files_enabled = False\n"
        f"local_tmp = {home / 'tmp'}\n"
        "[ssh_connection]\n"
        "pipelining = True\n"
        f"control_path_dir = {home / 'cp'}\n"
        "ssh_args = -o ControlMaster=auto -o ControlPersist=60s -o IdentitiesOnly=yes "
        f"-o UserKnownHostsFile={fleet.known_hosts}\n"
    )
    return config


def changed_wheels(fleet: Fleet, build: Build) -> list[str]:
    """The wheels of ``build`` the first host's pool lacks (the same on every host here):
    what a CI job would hand the playbook as changed (untimed)."""
    pool = {}
    for line in fleet.pool(0).splitlines():
        digest, name = line.split()
        pool[name] = digest
    return [w for w in sorted(build.house.wheels) if pool.get(w) != build.hashes[w]]


def ansible_deploy(ansible: Ansible, fleet: Fleet, change: Change, limit: str) -> float:
    build = change.build
    extra = {
        "bbq_release": build.release,
        "bbq_version": build.house.version,
        "bbq_wheelhouse": str(build.house.path),
        "bbq_wheels": changed_wheels(fleet, build),
        "bbq_keep": KEEP,
    }
    bin_dir, config, work = ansible.bin_dir, ansible.config, ansible.work
    variables = work / "ansible" / f"vars-{build.release}.json"
    variables.write_text(json.dumps(extra))
    command = [str(bin_dir / "ansible-playbook"), str(PLAYBOOK), "-e", f"@{variables}"]
    command += ["--limit", limit]
    env = {**os.environ, "ANSIBLE_CONFIG": str(config), "NO_COLOR": "1"}
    start = time.perf_counter()
    run = subprocess.run(command, env=env, capture_output=True, text=True, timeout=1800)
    wall = time.perf_counter() - start
    if run.returncode != 0:
        sys.exit(f"bench: ansible-playbook failed:\n{run.stdout[-4000:]}{run.stderr[-2000:]}")
    return wall


def fab_deploy(fleet: Fleet, key: Path, change: Change, indexes: list[int]):
    """The real ``fab deploy`` to the hosts; (wall seconds, per-host phases)."""
    command = [str(FAB), "-H", fleet.hosts(*indexes), "deploy", "--app", str(change.app)]
    command += ["--known-hosts", str(fleet.known_hosts), "--key", str(key)]
    command += ["--keep", str(KEEP), "--batch", str(len(indexes)), "--format", "json"]
    start = time.perf_counter()
    run = subprocess.run(command, cwd=REPO, capture_output=True, text=True, timeout=1800)
    wall = time.perf_counter() - start
    if run.returncode != 0:
        sys.exit(f"bench: fab deploy failed:\n{run.stdout[-3000:]}{run.stderr[-3000:]}")
    results = json.loads(run.stdout)
    bad = [r for r in results if r["result"] != "deployed"]
    if bad:
        sys.exit(f"bench: fab deploy: {bad}")
    return wall, [r.get("phases", {}) for r in results]


def check_current(fleet: Fleet, indexes: list[int], release: str, who: str) -> None:
    for i in indexes:
        found = fleet.current(i)
        if found != release:
            sys.exit(f"bench: after {who}, host {i + 1} runs {found}, not {release}")


def profile_deploy(fleet: Fleet, key: Path, build: Build) -> str:
    """One in-process deploy to every host, each host's thread under cProfile; top lines."""
    ssh = SshOptions(fleet.known_hosts, (key,), False)
    targets = [Target(i.host, i.port) for i in fleet.instances]
    profiles, lock = [], threading.Lock()

    def act(target):
        profile = cProfile.Profile()
        profile.enable()
        try:
            with connect(target, ssh) as c:
                return deploy_host(c, build, keep=KEEP, label=target.label)
        finally:
            profile.disable()
            with lock:
                profiles.append(profile)

    cpu, start = time.process_time(), time.perf_counter()
    results = rollout(targets, act, batch=len(targets))
    wall, cpu = time.perf_counter() - start, time.process_time() - cpu
    if any(r.result != DEPLOYED for r in results):
        sys.exit(f"bench: profiled deploy failed: {results}")
    out = io.StringIO()
    stats = pstats.Stats(profiles[0], stream=out)
    for profile in profiles[1:]:
        stats.add(profile)
    stats.sort_stats("tottime").print_stats(15)
    head = f"in-process deploy to {len(targets)} hosts: {wall:.1f} s wall, deployer CPU {cpu:.2f} s"
    return head + "\n" + out.getvalue()


# The floor: the same host work without SSH and Fabric (see Local).
CONTAINER_ENV = {
    "PATH": "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin",
    "HOME": "/root",
    "LANG": "C.UTF-8",
}


class LocalChannel:
    """What hoststate.locked_state uses of a paramiko channel, over a local process."""

    def __init__(self, enter: list[str]):
        self.enter, self.process = enter, None

    def settimeout(self, seconds: float) -> None:
        pass

    def exec_command(self, command: str) -> None:
        self.process = subprocess.Popen(
            [*self.enter, "bash", "-c", command],
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
        )

    def makefile(self, mode: str):
        return self.process.stdout

    def makefile_stderr(self, mode: str):
        return self.process.stderr

    def recv_exit_status(self) -> int:
        return self.process.wait(60)

    def shutdown_write(self) -> None:
        self.process.stdin.close()

    def close(self) -> None:
        self.process.wait(60)


class Local:
    """A stand-in for the Fabric connection bake.fleet.host uses, that runs each host command
    in the container's namespaces (nsenter, a clean environment) and copies files straight
    into its root: deploy_host's host work, command for command, without SSH or Fabric. Not
    a mock of a host: the real one's scripts run; it only replaces the transport."""

    user = "root"

    def __init__(self, instance):
        self.host = instance.name
        leader = instance.process.pid
        children = Path(f"/proc/{leader}/task/{leader}/children").read_text().split()
        self.pid = int(children[0])  # the container's init (systemd)
        self.enter = ["nsenter", "-t", str(self.pid), "-m", "-u", "-i", "-n", "-p", "--"]
        self.enter += ["env", "-i", *(f"{k}={v}" for k, v in CONTAINER_ENV.items())]
        self.client = self

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        return False

    def open(self) -> None:
        pass

    def get_transport(self):
        return self

    def open_session(self) -> LocalChannel:
        return LocalChannel(self.enter)

    def run(self, command: str, timeout: float | None = None):
        run = subprocess.run(
            [*self.enter, "bash", "-c", command], capture_output=True, text=True, timeout=timeout
        )
        return types.SimpleNamespace(exited=run.returncode, stdout=run.stdout, stderr=run.stderr)

    def sftp(self):
        return self

    def put(self, local: str, remote: str) -> None:
        shutil.copyfile(local, f"/proc/{self.pid}/root{remote}")


def floor_deploy(fleet: Fleet, key: Path, change: Change, indexes: list[int]):
    """deploy_host on the hosts through Local (no SSH, no Fabric): (wall seconds, phases)."""
    hosts = [fleet.instances[i] for i in indexes]

    def act(instance) -> HostResult:
        return deploy_host(Local(instance), change.build, keep=KEEP, label=instance.name)

    targets = [Target(h.name) for h in hosts]
    by_name = {h.name: h for h in hosts}
    start = time.perf_counter()
    results = rollout(targets, lambda t: act(by_name[t.host]), batch=len(hosts))
    wall = time.perf_counter() - start
    bad = [r for r in results if r.result != DEPLOYED]
    if bad:
        sys.exit(f"bench: floor deploy: {bad}")
    return wall, [r.phases for r in results]


def builds_for(work: Path, names: list[str], source: Path) -> dict[str, Change]:
    """A distinct one-line change of the app per name, its wheelhouse built (untimed)."""

    def build(name: str) -> Change:
        app = app_variant(work / "apps" / name, "0.1.0", f"bench-{name}", source)
        return Change(app, build_wheelhouse(app))

    # Side by side: each build mostly waits for the package index.
    with concurrent.futures.ThreadPoolExecutor(4) as pool:
        return dict(zip(names, pool.map(build, names), strict=True))


def median_phases(phases: list[dict[str, float]]) -> str:
    names = list(dict.fromkeys(name for p in phases for name in p))
    return ", ".join(f"{n} {statistics.median(p.get(n, 0.0) for p in phases):.2f}" for n in names)


def run_round(r, order, fleet, key, builds, ansible, results) -> None:
    everyone = list(range(len(fleet.instances)))
    for kind in order:
        build = builds[f"{kind}-{r}"]
        indexes = [0] if kind.endswith("-1") else everyone
        if kind.startswith(("fab", "floor")):
            deploy = fab_deploy if kind.startswith("fab") else floor_deploy
            wall, phases = deploy(fleet, key, build, indexes)
            results.setdefault(f"{kind}-phases", []).extend(phases)
        else:
            limit = "bbq-1" if kind.endswith("-1") else "bbq"
            wall = ansible_deploy(ansible, fleet, build, limit)
        check_current(fleet, indexes, build.release, kind)
        results.setdefault(kind, []).append(wall)
        print(f"round {r + 1}: {kind:12} {wall:6.2f} s", flush=True)


def summary(results: dict, hosts: int, rounds: int) -> None:
    def med(kind):
        return statistics.median(results[kind])

    def ratios(a, b):
        return [x / y for x, y in zip(results[a], results[b], strict=True)]

    def line(text, values, goal):
        each = ", ".join(f"{v:.2f}x" for v in values)
        print(f"{text}: median {statistics.median(values):.2f}x, rounds {each} ({goal})")

    print()
    for kind in ROUNDS_ORDER:
        if kind in results:
            each = ", ".join(f"{v:.2f}" for v in results[kind])
            print(f"{kind:12} median {med(kind):6.2f} s of {rounds} rounds ({each})")
    line(f"fab deploy {hosts} hosts / 1 host", ratios("fab-all", "fab-1"), "goal <= 1.3x")
    if "ansible-all" in results:
        line(
            f"ansible-playbook / fab deploy, {hosts} hosts",
            ratios("ansible-all", "fab-all"),
            "goal >= 3x",
        )
        print(
            "  (the playbook installs into a new venv with the pip module, as Ansible does it;"
            " fab clones the current venv by hard links and reinstalls the changed wheels)"
        )
    if "ansible-1" in results:
        line(f"ansible-playbook {hosts} hosts / 1 host", ratios("ansible-all", "ansible-1"), "")
    if "floor-all" in results:
        line(
            f"floor (host work alone, no SSH) {hosts} hosts / 1 host",
            ratios("floor-all", "floor-1"),
            "the hosts' own contention",
        )
        line(f"fab deploy / floor, {hosts} hosts", ratios("fab-all", "floor-all"), "")
    for kind in ("fab-1", "fab-all", "floor-1", "floor-all"):
        if kind in results:
            each = median_phases(results[kind + "-phases"])
            print(f"{kind} phases, median seconds per host: {each}")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rootfs", type=Path, help="an unpacked bbq-rest root filesystem")
    parser.add_argument("--app", type=Path, default=REPO / "app", help="the app to vary")
    parser.add_argument("--hosts", type=int, default=8, help="instances (default 8)")
    parser.add_argument("--rounds", type=int, default=3, help="rounds (default 3)")
    parser.add_argument("--no-ansible", action="store_true", help="fab deploy only")
    parser.add_argument("--profile", action="store_true", help="one profiled deploy at the end")
    parser.add_argument(
        "--floor",
        action="store_true",
        help="time the host work alone too (the same deploy through nsenter: no SSH, no Fabric)",
    )
    parser.add_argument(
        "--ansible-one", action="store_true", help="time Ansible on 1 host too (its own scaling)"
    )
    args = parser.parse_args()
    work = Path(tempfile.mkdtemp(prefix="bench-fleet-"))
    try:
        ansible = None
        if not args.no_ansible:
            bin_dir = ansible_venv()
            print(f"ansible-lint --profile production {PLAYBOOK.name}: {lint(bin_dir)}")
        rootfs = args.rootfs or rest_rootfs(work, work / "store")
        kinds = ["fab-1", "fab-all"] + (["floor-1", "floor-all"] if args.floor else [])
        kinds += [] if args.no_ansible else ["ansible-all"]
        kinds += ["ansible-1"] if args.ansible_one and not args.no_ansible else []
        names = [f"{k}-{r}" for r in range(args.rounds) for k in kinds]
        names += ["warm-fab", "warm-ansible", "profile"]
        start = time.perf_counter()
        builds = builds_for(work, names, args.app)
        print(f"{len(builds)} wheelhouses built in {time.perf_counter() - start:.0f} s (untimed)")
        with contextlib.ExitStack() as stack:
            fleet = stack.enter_context(
                Fleet.boot(rootfs, work / "fleet", args.hosts, "bbq-bench-fleet")
            )
            key = one_key(fleet)
            everyone = list(range(args.hosts))
            fab_deploy(fleet, key, builds["warm-fab"], everyone)  # warm-up, untimed
            if not args.no_ansible:
                ansible = Ansible(bin_dir, write_ansible_config(work, fleet, key), work)
                ansible_deploy(ansible, fleet, builds["warm-ansible"], "bbq")
                check_current(fleet, everyone, builds["warm-ansible"].release, "warm-up")
            else:  # the second deploy prunes the image's release (a copy-up here)
                fab_deploy(fleet, key, builds["warm-ansible"], everyone)
            results: dict[str, list] = {}
            for r in range(args.rounds):
                order = kinds if r % 2 == 0 else list(reversed(kinds))
                run_round(r, order, fleet, key, builds, ansible, results)
            summary(results, args.hosts, args.rounds)
            if args.profile:
                print(profile_deploy(fleet, key, builds["profile"].build))
        print(f"(2 shared cores: os.cpu_count() = {os.cpu_count()}; load {os.getloadavg()})")
    finally:
        shutil.rmtree(work, ignore_errors=True)


if __name__ == "__main__":
    main()
