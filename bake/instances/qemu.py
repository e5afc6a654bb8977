"""Instances under QEMU: an artifact's disk image booted as a virtual machine, for smoke checks.

The alternative to systemd-nspawn (:mod:`bake.instances`) that boots the image's own kernel
and initramfs, so that it also checks what a container cannot: that the kernel finds its
root disk with the modules the image keeps. The instance is configured the way a cloud
configures it: cloud-init's NoCloud datasource reads its user-data from a small HTTP server
that bake runs on 127.0.0.1 for the boot (QEMU's user network shows the host as 10.0.2.2).
SSH reaches it through a forwarded loopback port; its host key is the one cloud-init prints
on the serial console, so connections are checked strictly.

Acceleration: ``kvm`` where /dev/kvm works, ``tcg`` (pure emulation, no KVM needed). On
hosts where KVM does not work (nested virtualisation), ``tcg`` is the only choice; it boots
in about a minute on two cores, and the checks run several times slower than natively.

Example::

    with boot(artifact, workdir=tmp / "vm", accel="tcg") as instance:
        instance.run("systemctl is-active ssh")
"""

from __future__ import annotations

import contextlib
import http.server
import os
import re
import shutil
import subprocess
import threading
import time
from collections.abc import Iterator, Mapping, Sequence
from pathlib import Path
from typing import Any

from bake.artifacts import Artifact
from bake.hostsys import free_port, ssh_key, stop_process
from bake.instances.base import Instance, InstanceError, wait_until_up
from bake.instances.checks import SmokeReport, run_checks

ACCELERATORS = ("tcg", "kvm")
BOOT_TIMEOUT = 600.0
QEMU = "qemu-system-x86_64"
_HOST_KEYS = re.compile(
    r"-----BEGIN SSH HOST KEY KEYS-----(.*?)-----END SSH HOST KEY KEYS-----", re.S
)


def preflight(accel: str) -> None:
    """Refuse early what cannot boot here: no QEMU, an unknown or unusable accelerator."""
    if accel not in ACCELERATORS:
        raise InstanceError(f"unknown QEMU accelerator {accel!r} (one of {ACCELERATORS})")
    if not shutil.which(QEMU):
        raise InstanceError(f"{QEMU} is not installed (Debian package qemu-system-x86)")
    if accel == "kvm" and not os.access("/dev/kvm", os.R_OK | os.W_OK):
        raise InstanceError("/dev/kvm is missing or not accessible: use --accel tcg")


def user_data(authorized_key: str) -> str:
    """cloud-config: root logs in with this key only (as the smoke checks do over SSH)."""
    return (
        "#cloud-config\n"
        "disable_root: false\n"
        f"ssh_authorized_keys: [{authorized_key.strip()!r}]\n"
        "ssh_pwauth: false\n"
    )


class _Seed(http.server.ThreadingHTTPServer):
    """The NoCloud seed (meta-data, user-data) served on 127.0.0.1 during one boot."""

    def __init__(self, files: Mapping[str, str]):
        self.files = {f"/{name}": body.encode() for name, body in files.items()}
        super().__init__(("127.0.0.1", 0), _SeedHandler)


class _SeedHandler(http.server.BaseHTTPRequestHandler):
    def do_GET(self):  # noqa: N802 (http.server's naming)
        body = self.server.files.get(self.path)
        self.send_response(200 if body is not None else 404)
        self.send_header("Content-Length", str(len(body or b"")))
        self.end_headers()
        self.wfile.write(body or b"")

    def log_message(self, format, *args):  # noqa: A002 (http.server's signature)
        pass


def command(artifact: Artifact, seed_url: str, ssh_port: int, accel: str) -> list[str]:
    """The QEMU command line booting the artifact's disk image with a snapshot overlay."""
    disk, disk_format = artifact.image_file()
    name = artifact.name
    args = [QEMU, "-machine", f"q35,accel={accel}", "-m", "2048", "-smp", "2"]
    args += ["-cpu", "max" if accel == "tcg" else "host,-arch-capabilities"]
    args += ["-nographic", "-no-reboot"]  # serial console (and monitor) on stdout
    args += ["-drive", f"file={disk},format={disk_format},if=virtio,snapshot=on"]
    args += ["-nic", f"user,model=virtio-net-pci,hostfwd=tcp:127.0.0.1:{ssh_port}-:22"]
    args += ["-device", "virtio-rng-pci"]
    kernel, initrd = artifact.path / f"{name}.vmlinuz", artifact.path / f"{name}.initrd"
    if kernel.is_file() and initrd.is_file():  # a plain filesystem image: boot its kernel
        cmdline = f"root=LABEL=cloudimg-rootfs ro console=ttyS0 ds=nocloud-net;s={seed_url}"
        args += ["-kernel", str(kernel), "-initrd", str(initrd), "-append", cmdline]
    else:
        args += ["-smbios", f"type=1,serial=ds=nocloud-net;s={seed_url}"]
    return args


def host_key_line(console: str, port: int) -> str | None:
    """The known_hosts line for the ed25519 host key cloud-init printed on the console."""
    match = _HOST_KEYS.search(console)
    if not match:
        return None
    for line in match.group(1).split("\n"):
        fields = line.split()
        if len(fields) >= 2 and fields[0] == "ssh-ed25519":
            return f"[127.0.0.1]:{port} {fields[0]} {fields[1]}\n"
    return None


@contextlib.contextmanager
def boot(
    artifact: Artifact, workdir: Path, accel: str = "tcg", timeout: float = BOOT_TIMEOUT
) -> Iterator[Instance]:
    """Boot the artifact's disk image under QEMU (writes go to a temporary overlay); stop it
    after. Raises InstanceError when it does not come up with SSH within ``timeout``."""
    preflight(accel)
    workdir.mkdir(parents=True, exist_ok=True)
    key = ssh_key(workdir / "id_ed25519", artifact.name)
    port = free_port()
    name = f"{artifact.name}-qemu"
    seed = _Seed(
        {
            "meta-data": f"instance-id: {name}-{port}\nlocal-hostname: {name}\n",
            "user-data": user_data(Path(f"{key}.pub").read_text()),
            "vendor-data": "",
        }
    )
    threading.Thread(target=seed.serve_forever, daemon=True).start()
    seed_url = f"http://10.0.2.2:{seed.server_address[1]}/"
    console_log = workdir / "console.log"
    known_hosts = workdir / "known_hosts"
    process = None
    try:
        with open(console_log, "wb") as console:
            process = subprocess.Popen(
                command(artifact, seed_url, port, accel),
                stdin=subprocess.DEVNULL,
                stdout=console,
                stderr=subprocess.STDOUT,
                start_new_session=True,
            )
        instance = Instance(
            name, "127.0.0.1", port, key, known_hosts, workdir, process, console_log
        )
        wait_until_up(instance, lambda: _cloud_init_done(instance), timeout, "QEMU")
        yield instance
    finally:
        if process is not None:
            stop_process(process, grace=10)  # QEMU quits at once; the overlay is discarded
        seed.shutdown()
        seed.server_close()


def _cloud_init_done(instance: Instance) -> bool:
    """True once cloud-init printed the host keys (then trusted) and finished over SSH."""
    line = host_key_line(instance.console_log.read_text(errors="replace"), instance.port)
    if not line:
        raise InstanceError("no host keys on the console yet")
    instance.known_hosts.write_text(line)
    result = instance.run("cloud-init status --wait >/dev/null; echo up", timeout=300)
    return result.stdout.strip() == "up"


def smoke_test(
    artifact: Artifact, checks: Sequence[Mapping[str, Any]], workdir: Path, accel: str = "tcg"
) -> SmokeReport:
    """Boot the artifact under QEMU and run ``checks`` over SSH; never raises for a failing
    image (the report says what failed). Checks' timeouts are multiplied under TCG."""
    start = time.monotonic()
    slower = 5 if accel == "tcg" else 1
    scaled = [{**c, "timeout": c.get("timeout", 60) * slower} for c in checks]
    try:
        with boot(artifact, workdir, accel) as instance:
            booted = time.monotonic() - start
            results = run_checks(instance, scaled)
        return SmokeReport(artifact.name, all(r.passed for r in results), results, round(booted, 1))
    except (InstanceError, OSError) as exc:
        return SmokeReport(artifact.name, False, [], round(time.monotonic() - start, 1), str(exc))
