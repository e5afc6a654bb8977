"""Hosts to reach: :class:`Target` (``[user@]host[:port]``) and ``-H`` host lists.

Example::

    parse_hosts("root@10.0.0.5,10.0.0.6:2222")   # [Target('10.0.0.5'), Target('10.0.0.6', 2222)]
    parse_host("[fe80::1]:2200", "deploy")      # Target('fe80::1', 2200, 'deploy')
"""

from __future__ import annotations

import dataclasses
from collections.abc import Iterable

from bake.errors import EXIT_BAD_INPUT
from bake.fleet import DeployError


@dataclasses.dataclass(frozen=True)
class Target:
    """A host to deploy to: ``host[:port]`` reached as ``user`` (default root)."""

    host: str
    port: int = 22
    user: str = "root"
    name: str = ""

    @property
    def label(self) -> str:
        base = self.name or self.host
        return base if self.port == 22 or self.name else f"{base}:{self.port}"


def parse_host(text: str, default_user: str = "root") -> Target:
    """``[user@]host[:port]`` (``[v6addr]:port`` for IPv6) → Target; DeployError if malformed."""
    spec = text.strip()
    user, _, rest = spec.rpartition("@")
    user = user or default_user
    host, port = rest, 22
    if rest.startswith("["):
        host, _, tail = rest[1:].partition("]")
        if tail:
            port = _port(tail.removeprefix(":"), spec)
    elif rest.count(":") == 1:
        host, _, number = rest.partition(":")
        port = _port(number, spec)
    if not host or any(c.isspace() for c in host):
        raise DeployError(f"bad host {text!r}: expected [user@]host[:port]", EXIT_BAD_INPUT)
    return Target(host, port, user)


def _port(number: str, spec: str) -> int:
    if not number.isdigit() or not 0 < int(number) < 65536:
        raise DeployError(f"bad port in host {spec!r}", EXIT_BAD_INPUT)
    return int(number)


def parse_hosts(text: str | Iterable[str], default_user: str = "root") -> list[Target]:
    """A comma-separated host list (or a list of host strings) → Targets, duplicates dropped."""
    items = text.split(",") if isinstance(text, str) else list(text)
    targets: list[Target] = []
    for item in items:
        if item.strip():
            target = parse_host(item, default_user)
            if target not in targets:
                targets.append(target)
    if not targets:
        raise DeployError("no hosts given", EXIT_BAD_INPUT)
    return targets
