"""Nova: which servers run an image, which carry some metadata, and their addresses.

python-novaclient (compute API 2.1) over the keystoneauth1 session of :mod:`bake.cloud.auth`,
in the region and interface the session was made for (and clouds.yaml's
``compute_endpoint_override``, if set). Servers come back as :class:`Server` values, read
from the API's detailed form once.

Example::

    nova = Nova(cloud)
    nova.servers(metadata={"bbq_role": "rest"})           # ACTIVE servers of a role, by name
    [s.address("private") for s in nova.servers(image=image_id)]
    servers_using(cloud, [image_id, ...])                 # {image id: [server names]} or None
"""

from __future__ import annotations

import dataclasses
from typing import Any

from bake.cloud.auth import Cloud, describe, describe_call
from bake.errors import OperationFailed

ACTIVE = "ACTIVE"

# Server metadata the stack's templates set on every server (stacks/bbq.yaml and the local
# stack) and by which `bake stack` and `fab --stack/--role` find them.
STACK_KEY = "bbq_stack"
ROLE_KEY = "bbq_role"


class NovaError(OperationFailed):
    """Nova could not be asked, or a server lacks what was asked of it (one line)."""


@dataclasses.dataclass(frozen=True)
class Server:
    """A server as the compute API's detailed listing describes it."""

    id: str
    name: str
    status: str = ACTIVE
    image_id: str | None = None
    metadata: dict[str, str] = dataclasses.field(default_factory=dict)
    # network name -> [{"addr", "version", "OS-EXT-IPS:type", ...}], as Nova returns them
    addresses: dict[str, list[dict[str, Any]]] = dataclasses.field(default_factory=dict)

    @classmethod
    def from_api(cls, server: Any) -> Server:
        """From a novaclient ``Server`` (missing attributes read as Nova's defaults)."""
        return cls(
            id=server.id,
            name=getattr(server, "name", None) or server.id,
            status=getattr(server, "status", ACTIVE),
            image_id=(getattr(server, "image", None) or {}).get("id"),
            metadata=dict(getattr(server, "metadata", None) or {}),
            addresses=dict(getattr(server, "addresses", None) or {}),
        )

    def address(self, network: str | None = None) -> str:
        """The address to reach the server at on ``network`` (any network if None): a fixed
        IPv4 address first (reachable from inside the cloud), then any; NovaError if none."""
        if network is not None:
            if network not in self.addresses:
                known = ", ".join(sorted(self.addresses)) or "none"
                raise NovaError(
                    f"server {self.name} has no address on network {network!r} (networks: {known})"
                )
            candidates = self.addresses[network]
        else:
            candidates = [a for entries in self.addresses.values() for a in entries]
        ranked = sorted(
            candidates,
            key=lambda a: (a.get("version", 4) != 4, a.get("OS-EXT-IPS:type", "fixed") != "fixed"),
        )
        if not ranked:
            raise NovaError(f"server {self.name} has no address")
        return ranked[0]["addr"]


class Nova:
    """python-novaclient (API 2.1) over a :class:`~bake.cloud.auth.Cloud` session."""

    def __init__(self, cloud: Cloud):
        from novaclient import client as nova_client

        self.cloud = cloud
        self.client = nova_client.Client(
            "2.1",
            session=cloud.session,
            region_name=cloud.region_name,
            endpoint_type=cloud.interface or "public",
            endpoint_override=cloud.endpoint_overrides.get("compute"),
        )

    def servers(
        self,
        *,
        image: str | None = None,
        metadata: dict[str, str] | None = None,
        status: str = ACTIVE,
    ) -> list[Server]:
        """The caller's servers in ``status`` that run ``image`` (an id) and carry every
        ``metadata`` item, sorted by name; NovaError when Nova cannot be asked."""
        search: dict[str, str] = {"status": status}
        if image:
            search["image"] = image
        try:
            found = self.client.servers.list(detailed=True, search_opts=search)
        except Exception as exc:
            raise NovaError(f"cannot list servers from Nova: {describe(exc, self.cloud)}") from None
        servers = [Server.from_api(s) for s in sorted(found, key=lambda s: s.name)]
        return [
            s
            for s in servers
            if s.status == status
            and (not image or s.image_id == image)
            and all(s.metadata.get(k) == v for k, v in (metadata or {}).items())
        ]

    def names_using(self, image_id: str) -> list[str]:
        """Names of the servers booted from ``image_id``: of every project when Nova lets us
        (``all_tenants``, for admins), else of ours. NovaError when Nova cannot be asked."""
        from novaclient import exceptions as nova_exc

        try:
            try:
                servers = self.client.servers.list(
                    search_opts={"image": image_id, "all_tenants": True}
                )
            except nova_exc.Forbidden:
                servers = self.client.servers.list(search_opts={"image": image_id})
        except Exception as exc:
            raise NovaError(
                f"cannot ask Nova whether image {image_id} is in use ({describe_call(exc, 'Nova')})"
            ) from None
        return [getattr(s, "name", s.id) for s in servers]


def servers_using(cloud: Cloud, image_ids: list[str]) -> dict[str, list[str]] | None:
    """{image id: [server names]} for the images some server was booted from, or None when
    the catalog has no compute service (so no Nova could have booted them).

    NovaError if the catalog lists Nova but it cannot be asked.
    """
    if not cloud.has_service("compute"):
        return None
    nova = Nova(cloud)
    result: dict[str, list[str]] = {}
    for image_id in image_ids:
        names = nova.names_using(image_id)
        if names:
            result[image_id] = names
    return result
