"""Instances booted from our own images, for smoke checks, deployment targets and local
stacks: systemd-nspawn on the image's root filesystem (:mod:`.nspawn`, the default) or QEMU
on its disk image with its own kernel (:mod:`.qemu`); both reached over SSH on a loopback
port with a strictly checked host key (:mod:`.base`), and checked by :mod:`.checks`.

Example::

    from bake import instances

    rootfs = instances.unpacked_rootfs(artifact.tar_file(), tmp / "rootfs")
    with instances.boot(rootfs, "bbq-test-1", workdir=tmp / "i1") as instance:
        result = instance.run("systemctl is-active ssh")
"""

from bake.instances.base import Instance, InstanceError, wait_until_up
from bake.instances.checks import CheckResult, SmokeReport, run_checks
from bake.instances.nspawn import (
    BOOT_TIMEOUT,
    CONTAINER_MASKED_UNITS,
    boot,
    smoke_test,
    unpacked_rootfs,
)

__all__ = [
    "BOOT_TIMEOUT",
    "CONTAINER_MASKED_UNITS",
    "CheckResult",
    "Instance",
    "InstanceError",
    "SmokeReport",
    "boot",
    "run_checks",
    "smoke_test",
    "unpacked_rootfs",
    "wait_until_up",
]
