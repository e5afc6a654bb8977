"""Instances booted from our own images, for smoke checks and as deployment targets.

An image's root filesystem (its ``tar`` output) is unpacked once per fingerprint, and each
instance boots its own copy-on-write view of it (overlayfs; a full copy where overlayfs is
unavailable) with systemd-nspawn, the image's own systemd as PID 1. The host has no
systemd/dbus, hence ``--register=no --keep-unit``; the instance shares the host network, so
its sshd gets its own loopback port. Every instance gets its own SSH host key, written to a
known_hosts file, so connections are checked strictly.

By default cloud-init is disabled in the instance (smoke checks and deployment targets need
no datasource). Given a :class:`CloudInit`, it runs from a NoCloud seed written before boot
(``/var/lib/cloud/seed/nocloud/{meta-data,user-data}``; datasources NoCloud then None; no
network configuration, as the instance shares the host's network; the instance's SSH host
key given to cloud-init so it is kept and known_hosts stays strict): the way a local stack
hands each instance its role's cloud-config.

:func:`start` leaves an instance running (its own session: it outlives the caller) and
:func:`stop` ends it; :func:`stop_detached` ends one started by another process (its pid
and work directory). :func:`boot` is both around a ``with`` block.

Example::

    rootfs = unpacked_rootfs(artifact.tar_file(), tmp / "rootfs")
    with boot(rootfs, "bbq-test-1", workdir=tmp / "i1") as instance:
        result = instance.run("systemctl is-active ssh")

    seed = CloudInit(user_data="#cloud-config\nruncmd: [[touch, /tmp/x]]\n", instance_id="i-1")
    instance = start(rootfs, "bbq-master", tmp / "m", address="127.77.1.2", cloud_init=seed)
    stop_detached(instance.process.pid, tmp / "m")
"""

from __future__ import annotations

import contextlib
import dataclasses
import os
import shutil
import signal
import socket
import subprocess
import time
from collections.abc import Iterator, Mapping, Sequence
from pathlib import Path
from typing import Any

import yaml

from bake import hostsys
from bake.instances.base import Instance, InstanceError, wait_until_up
from bake.instances.checks import SmokeReport, run_checks

BOOT_TIMEOUT = 180.0
# The instance's own name resolves to this address (Debian's convention) unless given one.
DEFAULT_ADDRESS = "127.0.1.1"
SEED_DIR = "var/lib/cloud/seed/nocloud"
CLOUD_CFG = "etc/cloud/cloud.cfg.d/90-bbq-nspawn.cfg"
# Units an instance under systemd-nspawn does without: nothing to wait for or configure on a
# network it does not own, no iSCSI or cloud datasource, and sshd on its own port rather than on an
# activated socket that would share port 22 of the host.
CONTAINER_MASKED_UNITS = (
    "systemd-networkd-wait-online.service",
    "systemd-resolved.service",
    "iscsid.service",
    "iscsid.socket",
    "open-iscsi.service",
    "ssh.socket",
    # ifupdown would run DHCP on the host's interfaces, which the instance shares, and
    # wait for udev (not running in a container) and for those interfaces.
    "networking.service",
    "ifup@.service",
    "ifupdown-pre.service",
    "ifupdown-wait-online.service",
)


def unpacked_rootfs(tar_path: Path, target: Path) -> Path:
    """The image's root filesystem unpacked into ``target`` (once: reused when complete)."""
    if (target / ".complete").exists():
        return target
    partial = target.parent / f".{target.name}.{os.getpid()}"
    shutil.rmtree(partial, ignore_errors=True)
    partial.mkdir(parents=True)
    # GNU tar keeps owners, modes, devices and xattrs exactly as the image has them.
    subprocess.run(
        ["tar", "--numeric-owner", "--xattrs", "-xpf", str(tar_path), "-C", str(partial)],
        check=True,
    )
    (partial / ".complete").touch()
    shutil.rmtree(target, ignore_errors=True)
    partial.rename(target)
    return target


def _mount_overlay(lower: Path, workdir: Path) -> Path:
    upper, work, merged = workdir / "upper", workdir / "work", workdir / "root"
    for path in (upper, work, merged):
        path.mkdir(parents=True, exist_ok=True)
    options = f"lowerdir={lower},upperdir={upper},workdir={work}"
    mounted = subprocess.run(
        ["mount", "-t", "overlay", "overlay", "-o", options, str(merged)], capture_output=True
    )
    if mounted.returncode != 0:  # no overlayfs here: a private copy instead
        subprocess.run(["cp", "-a", f"{lower}/.", str(merged)], check=True)
    return merged


@dataclasses.dataclass(frozen=True)
class CloudInit:
    """Boot with cloud-init enabled, from a NoCloud seed: ``user_data`` (a cloud-config or
    any user data cloud-init takes) and meta-data (``instance_id``, the instance's name as
    ``local-hostname``)."""

    user_data: str
    instance_id: str


def _seed_cloud_init(root: Path, name: str, seed: CloudInit, host_key: Path) -> None:
    """Write the NoCloud seed and the system config cloud-init needs in a container."""
    seed_dir = root / SEED_DIR
    seed_dir.mkdir(parents=True, exist_ok=True)
    meta = {"instance-id": seed.instance_id, "local-hostname": name}
    (seed_dir / "meta-data").write_text(yaml.safe_dump(meta, sort_keys=False))
    (seed_dir / "user-data").write_text(seed.user_data)
    os.chmod(seed_dir / "user-data", 0o600)  # it may carry secrets, as on a cloud
    config = {
        "datasource_list": ["NoCloud", "None"],
        # The instance shares the host's network: nothing to configure.
        "network": {"config": "disabled"},
        # Our host key, given (not regenerated), so known_hosts stays strict.
        "ssh_deletekeys": False,
        "ssh_genkeytypes": [],
        "ssh_keys": {
            "ed25519_private": host_key.read_text(),
            "ed25519_public": Path(f"{host_key}.pub").read_text().strip(),
        },
        # Root keeps its key (bake and fab log in as root); /etc/hosts keeps our address.
        "disable_root": False,
        "manage_etc_hosts": False,
    }
    cfg = root / CLOUD_CFG
    cfg.parent.mkdir(parents=True, exist_ok=True)
    cfg.write_text(yaml.safe_dump(config, sort_keys=False))
    os.chmod(cfg, 0o600)
    (root / "etc" / "cloud" / "cloud-init.disabled").unlink(missing_ok=True)


def _prepare(
    root: Path,
    name: str,
    port: int,
    workdir: Path,
    address: str = DEFAULT_ADDRESS,
    cloud_init: CloudInit | None = None,
    client_key: Path | None = None,
) -> tuple[Path, Path]:
    """Make the rootfs bootable under nspawn and reachable by SSH on ``port``.

    Returns (client private key, known_hosts file).
    """
    key = client_key or workdir / "id_ed25519"
    host_key = workdir / "ssh_host_ed25519_key"
    for path in (key, host_key):
        hostsys.ssh_key(path, name)
    ssh = root / "etc" / "ssh"
    (ssh / "sshd_config.d").mkdir(parents=True, exist_ok=True)
    (ssh / "sshd_config.d" / "00-bbq-instance.conf").write_text(
        f"Port {port}\nListenAddress 127.0.0.1\nPermitRootLogin prohibit-password\n"
        "HostKey /etc/ssh/ssh_host_ed25519_key\nUseDNS no\n"
        # No PAM login sessions: starting a user manager under nspawn can stall a command.
        "UsePAM no\n"
    )
    shutil.copy(host_key, ssh / "ssh_host_ed25519_key")
    shutil.copy(f"{host_key}.pub", ssh / "ssh_host_ed25519_key.pub")
    os.chmod(ssh / "ssh_host_ed25519_key", 0o600)
    dot_ssh = root / "root" / ".ssh"
    dot_ssh.mkdir(mode=0o700, parents=True, exist_ok=True)
    (dot_ssh / "authorized_keys").write_text(Path(f"{key}.pub").read_text())
    os.chmod(dot_ssh / "authorized_keys", 0o600)
    (root / "etc" / "hostname").write_text(f"{name}\n")
    hosts = root / "etc" / "hosts"  # the instance's own name resolves, as on a cloud
    existing = hosts.read_text() if hosts.exists() else "127.0.0.1 localhost\n"
    hosts.write_text(existing + f"{address} {name}\n")
    systemd = root / "etc" / "systemd" / "system"
    systemd.mkdir(parents=True, exist_ok=True)
    for unit in CONTAINER_MASKED_UNITS:
        link = systemd / unit
        if not link.is_symlink():
            link.symlink_to("/dev/null")
    cloud = root / "etc" / "cloud"
    if cloud_init is not None:
        _seed_cloud_init(root, name, cloud_init, host_key)
    elif cloud.is_dir():
        (cloud / "cloud-init.disabled").touch()
    host_pub = Path(f"{host_key}.pub").read_text().split()
    known_hosts = workdir / "known_hosts"
    known_hosts.write_text(f"[127.0.0.1]:{port} {host_pub[0]} {host_pub[1]}\n")
    return key, known_hosts


def _booted(instance: Instance) -> bool:
    """True once sshd answers and systemd has finished starting up (in whatever state)."""
    with socket.create_connection((instance.host, instance.port), timeout=2):
        pass
    result = instance.run("systemctl is-system-running --wait || true", timeout=120)
    return bool(result.stdout.strip())


def _answers(instance: Instance) -> bool:
    """True once sshd answers a command (cloud-init may still be running its modules: its
    final stage is part of start-up, so the whole start-up is not waited for)."""
    with socket.create_connection((instance.host, instance.port), timeout=2):
        pass
    return instance.run("true", timeout=30).exited == 0


def start(
    rootfs: Path,
    name: str,
    workdir: Path,
    ssh_port: int | None = None,
    timeout: float = BOOT_TIMEOUT,
    bind: Sequence[tuple[Path, str]] = (),
    files: Mapping[str, str] = {},
    address: str = DEFAULT_ADDRESS,
    cloud_init: CloudInit | None = None,
    client_key: Path | None = None,
) -> Instance:
    """Boot an instance of an unpacked image root filesystem (read-only) and return it once
    SSH answers; it runs in its own session until :func:`stop` (or :func:`stop_detached`).

    ``bind`` are (host path, instance path) pairs mounted read-only into the instance;
    ``files`` maps absolute paths in the instance to contents written before it boots
    (like cloud-init's write_files), e.g. a config file giving its services their ports.
    ``address`` is what the instance's name resolves to inside it; ``cloud_init`` enables
    cloud-init with that seed; ``client_key`` is the SSH key to log in with (default: one
    made in ``workdir``). Whatever was set up is undone when the boot fails.
    """
    if not shutil.which("systemd-nspawn"):
        raise InstanceError("systemd-nspawn is not installed: run tools/bootstrap --tests")
    workdir.mkdir(parents=True, exist_ok=True)
    port = ssh_port or hostsys.free_port()
    root = _mount_overlay(rootfs, workdir)
    process = None
    try:
        key, known_hosts = _prepare(root, name, port, workdir, address, cloud_init, client_key)
        for path, content in files.items():
            target = root / path.lstrip("/")
            target.parent.mkdir(parents=True, exist_ok=True)
            target.write_text(content)
        console_log = workdir / "console.log"
        command = [
            "systemd-nspawn",
            "--quiet",
            "--register=no",
            "--keep-unit",
            "--boot",
            f"--machine={name}",
            f"--directory={root}",
        ]
        command += [f"--bind-ro={host}:{inside}" for host, inside in bind]
        with open(console_log, "wb") as console:
            process = subprocess.Popen(
                command,
                stdin=subprocess.DEVNULL,
                stdout=console,
                stderr=subprocess.STDOUT,
                start_new_session=True,
            )
        instance = Instance(name, "127.0.0.1", port, key, known_hosts, root, process, console_log)
        probe = _booted if cloud_init is None else _answers
        wait_until_up(instance, lambda: probe(instance), timeout, "systemd-nspawn")
        return instance
    except BaseException:
        if process is not None:
            hostsys.stop_process(process)
        _release(root)
        _remove_layers(workdir)
        raise


def stop(instance: Instance) -> None:
    """Stop an instance :func:`start` returned and release its root (nothing left mounted)."""
    hostsys.stop_process(instance.process)
    _release(instance.root)
    _remove_layers(instance.root.parent)


@contextlib.contextmanager
def boot(
    rootfs: Path,
    name: str,
    workdir: Path,
    ssh_port: int | None = None,
    timeout: float = BOOT_TIMEOUT,
    bind: Sequence[tuple[Path, str]] = (),
    files: Mapping[str, str] = {},
    **options: Any,
) -> Iterator[Instance]:
    """:func:`start` an instance for the ``with`` block, :func:`stop` it after (``options``:
    ``address``, ``cloud_init``, ``client_key``)."""
    instance = start(rootfs, name, workdir, ssh_port, timeout, bind, files, **options)
    try:
        yield instance
    finally:
        stop(instance)


def is_instance_process(pid: int, workdir: Path) -> bool:
    """Whether ``pid`` is the systemd-nspawn of the instance in ``workdir`` (not a process
    that reused the pid)."""
    try:
        argv = Path(f"/proc/{pid}/cmdline").read_bytes().split(b"\0")
    except OSError:
        return False
    wanted = f"--directory={workdir / 'root'}".encode()
    return bool(argv) and argv[0].endswith(b"systemd-nspawn") and wanted in argv


def stop_detached(pid: int | None, workdir: Path, grace: float = 30) -> list[str]:
    """Stop the instance in ``workdir`` that another process started (its systemd-nspawn
    ``pid``): SIGTERM (a clean shutdown), SIGKILL to its group after ``grace`` seconds, then
    kill what still runs in its root and release it. Returns what had to be forced."""
    forced = []
    if pid and is_instance_process(pid, workdir):
        with contextlib.suppress(ProcessLookupError):
            os.kill(pid, signal.SIGTERM)
        if not _wait_exit(pid, grace):
            hostsys.kill_group(pid)
            _wait_exit(pid, 10)
            forced.append(f"process group {pid}")
    root = workdir / "root"
    if root.exists():
        for left in hostsys.processes_under(workdir):
            with contextlib.suppress(ProcessLookupError):
                os.kill(left, signal.SIGKILL)
                forced.append(f"process {left}")
    _release(root)
    _remove_layers(workdir)
    return forced


def _wait_exit(pid: int, seconds: float) -> bool:
    """Wait until ``pid`` has exited (reaping it when it is our child); False on timeout."""
    deadline = time.monotonic() + seconds
    while True:
        with contextlib.suppress(ChildProcessError):
            if os.waitpid(pid, os.WNOHANG)[0] == pid:
                return True
        if not hostsys.process_alive(pid):
            return True
        if time.monotonic() > deadline:
            return False
        time.sleep(0.2)


def _remove_layers(workdir: Path) -> None:
    shutil.rmtree(workdir / "upper", ignore_errors=True)
    shutil.rmtree(workdir / "work", ignore_errors=True)


def _release(root: Path) -> None:
    """Unmount the instance's root (overlay) and anything left below it; remove a copy."""
    hostsys.unmount_all(root)
    shutil.rmtree(root, ignore_errors=True)


def smoke_test(
    tar_path: Path,
    checks: Sequence[Mapping[str, Any]],
    name: str,
    workdir: Path,
    rootfs: Path | None = None,
) -> SmokeReport:
    """Boot the image in ``tar_path`` as an instance and run ``checks`` on it over SSH.

    Never raises for a failing image: the report says what failed (boot or checks).
    ``rootfs`` is where to unpack the image (default: inside ``workdir``, removed after).
    """
    start = time.monotonic()
    own_rootfs = rootfs is None
    rootfs = rootfs or workdir / "rootfs"
    try:
        lower = unpacked_rootfs(tar_path, rootfs)
        with boot(lower, f"{name}-smoke", workdir / "instance") as instance:
            booted = time.monotonic() - start
            results = run_checks(instance, checks)
        return SmokeReport(name, all(r.passed for r in results), results, round(booted, 1))
    except (InstanceError, subprocess.CalledProcessError, OSError) as exc:
        return SmokeReport(name, False, [], round(time.monotonic() - start, 1), str(exc))
    finally:
        if own_rootfs:
            shutil.rmtree(rootfs, ignore_errors=True)
