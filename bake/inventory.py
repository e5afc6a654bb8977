"""Which hosts a deploy goes to: a ``-H`` list, or running servers asked from Nova.

From Nova (python-novaclient over the keystoneauth1 session of :mod:`bake.auth`): ACTIVE
servers whose metadata has ``bbq_role=<role>`` and/or that run ``image`` (an image id), each
reached at its address on the named network. Metadata ``bbq_ssh_port`` overrides port 22.

Example::

    targets = parse_hosts("root@10.0.0.5,10.0.0.6:2222")
    targets = from_nova(auth.connect(cloud="mycloud"), role="rest", network="private")
"""

from __future__ import annotations

from collections.abc import Iterable

from bake.deploy import DeployError, Target

ROLE_KEY = "bbq_role"
PORT_KEY = "bbq_ssh_port"


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
        raise DeployError(f"bad host {text!r}: expected [user@]host[:port]")
    return Target(host, port, user)


def _port(number: str, spec: str) -> int:
    if not number.isdigit() or not 0 < int(number) < 65536:
        raise DeployError(f"bad port in host {spec!r}")
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
        raise DeployError("no hosts given")
    return targets


def _address(server, network: str | None) -> str:
    addresses: dict = getattr(server, "addresses", None) or {}
    if network is not None:
        if network not in addresses:
            known = ", ".join(sorted(addresses)) or "none"
            raise DeployError(
                f"server {server.name} has no address on network {network!r} (networks: {known})"
            )
        candidates = addresses[network]
    else:
        candidates = [a for entries in addresses.values() for a in entries]
    # Fixed IPv4 first (reachable from inside the cloud), then any.
    ranked = sorted(
        candidates,
        key=lambda a: (a.get("version", 4) != 4, a.get("OS-EXT-IPS:type", "fixed") != "fixed"),
    )
    if not ranked:
        raise DeployError(f"server {server.name} has no address")
    return ranked[0]["addr"]


def from_nova(
    cloud,
    role: str | None = None,
    image: str | None = None,
    network: str | None = None,
    user: str = "root",
) -> list[Target]:
    """ACTIVE servers with ``metadata[bbq_role] == role`` and/or running ``image`` (an id).

    ``cloud`` is a :class:`bake.auth.Cloud`. At least one of ``role``/``image`` is required;
    DeployError (one line) when Nova cannot be asked or a server has no such network.
    """
    if not role and not image:
        raise DeployError("choose servers by --role or --image (or give hosts with -H)")
    from novaclient import client as nova_client

    from bake import auth

    nova = nova_client.Client(
        "2.1",
        session=cloud.session,
        region_name=cloud.region_name,
        endpoint_type=cloud.interface or "public",
    )
    search: dict[str, str] = {"status": "ACTIVE"}
    if image:
        search["image"] = image
    try:
        servers = nova.servers.list(detailed=True, search_opts=search)
    except Exception as exc:
        raise DeployError(f"cannot list servers from Nova: {auth.describe(exc, cloud)}") from None
    targets = []
    for server in sorted(servers, key=lambda s: s.name):
        metadata = getattr(server, "metadata", None) or {}
        if getattr(server, "status", "ACTIVE") != "ACTIVE":
            continue
        if role and metadata.get(ROLE_KEY) != role:
            continue
        if image and (getattr(server, "image", None) or {}).get("id") != image:
            continue
        port = metadata.get(PORT_KEY, "22")
        if not str(port).isdigit():
            raise DeployError(f"server {server.name}: metadata {PORT_KEY}={port!r} is no port")
        targets.append(Target(_address(server, network), int(port), user, name=server.name))
    if not targets:
        what = " and ".join(
            f for f in (role and f"{ROLE_KEY}={role}", image and f"image {image}") if f
        )
        raise DeployError(f"Nova lists no ACTIVE server with {what}")
    return targets
