"""The distributions and architectures a spec can name: the vocabularies of the spec's
``distro`` and ``arch`` fields (the schema's enums are generated from them), and for each
distribution which DIB element builds it and how its mirrors are passed to diskimage-builder.

Example::

    DISTROS[DistroName("debian")].element   # 'debian-minimal'
    Arch("arm64").machine                   # 'aarch64'
"""

from __future__ import annotations

import dataclasses
import enum


class DistroName(enum.StrEnum):
    """A distribution family a spec can name (``distro``), in the order messages list them."""

    DEBIAN = "debian"
    UBUNTU = "ubuntu"
    CENTOS = "centos"
    ROCKY = "rocky"


class Arch(enum.StrEnum):
    """An architecture a spec can name (``arch``, passed as ``disk-image-create -a``).

    Both Debian's names and the kernel's are accepted, as diskimage-builder does.
    """

    AMD64 = "amd64"
    ARM64 = "arm64"
    X86_64 = "x86_64"
    AARCH64 = "aarch64"

    @property
    def machine(self) -> str:
        """The kernel's name (``uname -m``; Glance's ``architecture``): x86_64 or aarch64."""
        return _MACHINES[self]


_MACHINES = {
    Arch.AMD64: "x86_64",
    Arch.X86_64: "x86_64",
    Arch.ARM64: "aarch64",
    Arch.AARCH64: "aarch64",
}


@dataclasses.dataclass(frozen=True)
class Distro:
    """How diskimage-builder builds one distribution family."""

    element: str  # the DIB distro element
    os_distro: str  # Glance's os_distro value (the libosinfo short id family)
    mirror_env: str  # variable naming the main package mirror
    security_mirror_env: str | None  # variable naming the security mirror, if separate
    apt: bool  # whether the family uses apt (mirrors can be read from this host's apt)


# One row per DistroName (keys are StrEnum members, so DISTROS["debian"] works too).
DISTROS: dict[DistroName, Distro] = {
    DistroName.DEBIAN: Distro(
        "debian-minimal", "debian", "DIB_DISTRIBUTION_MIRROR", "DIB_DEBIAN_SECURITY_MIRROR", True
    ),
    DistroName.UBUNTU: Distro("ubuntu-minimal", "ubuntu", "DIB_DISTRIBUTION_MIRROR", None, True),
    DistroName.CENTOS: Distro("centos-minimal", "centos", "DIB_DISTRIBUTION_MIRROR", None, False),
    DistroName.ROCKY: Distro("rocky-container", "rocky", "DIB_DISTRIBUTION_MIRROR", None, False),
}

DISTRO_ELEMENTS = frozenset(
    {d.element for d in DISTROS.values()}
    | {
        "debian",
        "ubuntu",
        "centos",
        "rhel",
        "fedora",
        "fedora-minimal",
        "opensuse",
        "opensuse-minimal",
        "gentoo",
        "rocky-container",
        "almalinux-container",
        "openeuler-minimal",
        "ubuntu-systemd-container",
        "fedora-container",
    }
)
