"""The host's side of builds and instances: processes, mounts and loop devices left under a
directory (and releasing them), process groups, free loopback ports, SSH keys and the one
host-key policy of every SSH connection bake and fab make.

Example::

    release_build_dir(Path("artifacts/.tmp/bbq-base-x"))   # ["mount ...", "loop device ..."]
    port = free_port()
    key = ssh_key(workdir / "id_ed25519", "bbq-test")
"""

from __future__ import annotations

import contextlib
import json
import os
import shutil
import signal
import socket
import subprocess
import threading
import time
from collections.abc import Callable
from pathlib import Path


def kill_group(pgid: int) -> None:
    with contextlib.suppress(ProcessLookupError):
        os.killpg(pgid, signal.SIGKILL)


def wait_group(process: subprocess.Popen, grace: float = 60.0) -> int:
    """Wait for the process, then give the rest of its group ``grace`` seconds to exit."""
    returncode = process.wait()
    deadline = time.monotonic() + grace
    while group_alive(process.pid) and time.monotonic() < deadline:
        time.sleep(0.2)
    if group_alive(process.pid):
        os.killpg(process.pid, signal.SIGKILL)
    return returncode


def group_alive(pgid: int) -> bool:
    """Whether a process of group ``pgid`` runs (zombies, which killpg still finds, do not
    count: a group of reaped-later children is over)."""
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            fields = (entry / "stat").read_text().rsplit(")", 1)[1].split()
        except OSError:
            continue
        if fields[0] != "Z" and int(fields[2]) == pgid:
            return True
    return False


def mounts_under(directory: Path) -> list[str]:
    """Mount points at or below ``directory``, deepest first."""
    prefix = str(directory.resolve())
    found = []
    with open("/proc/self/mounts") as mounts:
        for line in mounts:
            point = line.split()[1].encode().decode("unicode_escape")
            if point == prefix or point.startswith(prefix + "/"):
                found.append(point)
    return sorted(set(found), key=len, reverse=True)


def loops_under(directory: Path) -> list[str]:
    """Loop devices whose backing file is at or below ``directory``."""
    prefix = str(directory.resolve())
    try:
        output = subprocess.run(
            ["losetup", "--json", "--list"], capture_output=True, text=True, check=True
        ).stdout
    except (OSError, subprocess.CalledProcessError):
        return []
    devices = json.loads(output or '{"loopdevices": []}').get("loopdevices", [])
    return [
        d["name"]
        for d in devices
        if (d.get("back-file") or "").removesuffix(" (deleted)").startswith(prefix + "/")
    ]


def processes_under(directory: Path) -> list[int]:
    """PIDs of processes chrooted below ``directory`` (left over from the build's chroot)."""
    prefix = str(directory.resolve())
    found = []
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            try:
                root = os.readlink(entry / "root")
            except OSError:
                continue
            if root.startswith(prefix + "/"):
                found.append(int(entry.name))
    return found


def unmount_all(directory: Path) -> list[str]:
    """Unmount everything at or below ``directory``, deepest first; return what was."""
    points = mounts_under(directory)
    for point in points:
        if subprocess.run(["umount", point], capture_output=True).returncode != 0:
            subprocess.run(["umount", "--lazy", point], capture_output=True)
    return points


def release_build_dir(directory: Path) -> list[str]:
    """Undo what a build left under ``directory``: processes, mounts, loop devices.

    Returns a description of everything it had to release (empty when DIB cleaned up).
    """
    released = []
    if not directory.exists():
        return released
    for pid in processes_under(directory):
        try:
            os.kill(pid, signal.SIGKILL)
            released.append(f"process {pid}")
        except ProcessLookupError:
            pass
    released += [f"mount {point}" for point in unmount_all(directory)]
    for device in loops_under(directory):
        if Path("/dev/mapper/control").exists() and shutil.which("kpartx"):
            subprocess.run(["kpartx", "-d", device], capture_output=True)
        subprocess.run(["losetup", "--detach", device], capture_output=True)
        released.append(f"loop device {device}")
    return released


def free_port() -> int:
    """A TCP port on 127.0.0.1 that is free right now."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def ssh_key(path: Path, comment: str) -> Path:
    """An ed25519 key pair at ``path`` (and ``path``.pub), made unless it exists already."""
    if not path.exists():
        subprocess.run(
            ["ssh-keygen", "-q", "-t", "ed25519", "-N", "", "-C", comment, "-f", str(path)],
            check=True,
        )
    return path


def stop_process(process: subprocess.Popen, grace: float = 30) -> None:
    """SIGTERM (nspawn turns it into a clean shutdown, QEMU quits), then SIGKILL to the
    process group after ``grace`` seconds."""
    if process.poll() is None:
        process.send_signal(signal.SIGTERM)
        try:
            process.wait(grace)
        except subprocess.TimeoutExpired:
            os.killpg(process.pid, signal.SIGKILL)
            process.wait()


class HostKeyPolicy:
    """Paramiko's missing-host-key policy for every SSH connection of bake and fab.

    A host key that ``known_hosts`` lacks is refused with the exception ``refuse(hostname)``,
    unless ``accept_new``: then it is trusted and appended to ``known_hosts`` (freshly booted
    instances). A *changed* key never reaches a policy: paramiko refuses it itself
    (``BadHostKeyException``).

    Example::

        policy = HostKeyPolicy(known, lambda host: OperationFailed(f"{host}: unknown key"))
        policy.apply(connection.client)
    """

    _lock = threading.Lock()  # one writer of known_hosts files at a time, across connections

    def __init__(
        self, known_hosts: Path, refuse: Callable[[str], Exception], accept_new: bool = False
    ):
        self.known_hosts = Path(known_hosts).expanduser()
        self.refuse = refuse
        self.accept_new = accept_new

    def apply(self, client) -> None:
        """Load ``known_hosts`` (when it exists) into a paramiko ``client`` and use this policy."""
        if self.known_hosts.exists():
            client.load_host_keys(str(self.known_hosts))
        client.set_missing_host_key_policy(self)

    def missing_host_key(self, client, hostname, key) -> None:
        if not self.accept_new:
            raise self.refuse(hostname)
        with self._lock:
            self.known_hosts.parent.mkdir(parents=True, exist_ok=True)
            with open(self.known_hosts, "a") as known:
                known.write(f"{hostname} {key.get_name()} {key.get_base64()}\n")


def process_alive(pid: int | None) -> bool:
    """Whether ``pid`` runs (a zombie does not)."""
    if not pid:
        return False
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return False
    return stat.rsplit(")", 1)[1].split()[0] != "Z"
