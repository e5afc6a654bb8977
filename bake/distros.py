"""The distributions a spec can name, one row each: which DIB element builds it and how
its mirrors are passed to diskimage-builder."""

from __future__ import annotations

import dataclasses


@dataclasses.dataclass(frozen=True)
class Distro:
    """How diskimage-builder builds one distribution family."""

    element: str  # the DIB distro element
    os_distro: str  # Glance's os_distro value (the libosinfo short id family)
    mirror_env: str  # variable naming the main package mirror
    security_mirror_env: str | None  # variable naming the security mirror, if separate
    apt: bool  # whether the family uses apt (mirrors can be read from this host's apt)


DISTROS: dict[str, Distro] = {
    "debian": Distro(
        "debian-minimal", "debian", "DIB_DISTRIBUTION_MIRROR", "DIB_DEBIAN_SECURITY_MIRROR", True
    ),
    "ubuntu": Distro("ubuntu-minimal", "ubuntu", "DIB_DISTRIBUTION_MIRROR", None, True),
    "centos": Distro("centos-minimal", "centos", "DIB_DISTRIBUTION_MIRROR", None, False),
    "rocky": Distro("rocky-container", "rocky", "DIB_DISTRIBUTION_MIRROR", None, False),
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
