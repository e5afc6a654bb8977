"""Which hosts a fab task goes to: a ``-H`` list, or running servers asked from Nova.

From Nova (:mod:`bake.cloud.nova`, over the keystoneauth1 session of :mod:`bake.cloud.auth`):
ACTIVE servers whose metadata has ``bbq_stack=<stack>`` (set by the Heat templates of
``stacks/`` on every server of a stack) and/or ``bbq_role=<role>``, and/or that run ``image``
(an image id), each reached at its address on the named network. Metadata ``bbq_ssh_port``
overrides port 22.

Example::

    targets = choose(hosts="root@10.0.0.5,10.0.0.6:2222")
    targets = choose(stack="prod", role="rest", network="private", os_cloud="mycloud")
    targets = from_nova(auth.connect(cloud="mycloud"), role="rest", network="private")
"""

from __future__ import annotations

from bake.errors import EXIT_BAD_INPUT
from bake.fleet import DeployError
from bake.fleet.targets import Target, parse_hosts

STACK_KEY = "bbq_stack"
ROLE_KEY = "bbq_role"
PORT_KEY = "bbq_ssh_port"


def choose(
    hosts: str | None = None,
    *,
    stack: str | None = None,
    role: str | None = None,
    image: str | None = None,
    network: str | None = None,
    os_cloud: str | None = None,
    user: str = "root",
) -> list[Target]:
    """The ``hosts`` list (``-H``) if given, else the servers Nova lists (:func:`from_nova`)
    in the cloud ``os_cloud`` (or the ``OS_*`` variables)."""
    if hosts:
        return parse_hosts(hosts, user)
    _need_selector(stack, role, image)
    from bake.cloud import auth

    try:
        cloud = auth.connect(cloud=os_cloud)
    except auth.AuthError as exc:
        raise DeployError(str(exc), exc.exit_code) from None
    return from_nova(cloud, stack=stack, role=role, image=image, network=network, user=user)


def from_nova(
    cloud,
    role: str | None = None,
    image: str | None = None,
    network: str | None = None,
    user: str = "root",
    stack: str | None = None,
) -> list[Target]:
    """ACTIVE servers with ``metadata[bbq_stack] == stack``, ``metadata[bbq_role] == role``
    and/or running ``image`` (an id): every one given must match.

    ``cloud`` is a :class:`bake.cloud.auth.Cloud`. At least one of ``stack``/``role``/``image``
    is required; DeployError (one line) when Nova cannot be asked or a server has no such
    network.
    """
    _need_selector(stack, role, image)
    from bake.cloud.nova import Nova, NovaError

    wanted = {k: v for k, v in ((STACK_KEY, stack), (ROLE_KEY, role)) if v}
    try:
        servers = Nova(cloud).servers(image=image, metadata=wanted)
        targets = [_target(server, network, user) for server in servers]
    except NovaError as exc:
        raise DeployError(str(exc)) from None
    if not targets:
        what = [f"{key}={value}" for key, value in wanted.items()]
        what += [f"image {image}"] if image else []
        raise DeployError(f"Nova lists no ACTIVE server with {' and '.join(what)}")
    return targets


def _target(server, network: str | None, user: str) -> Target:
    port = server.metadata.get(PORT_KEY, "22")
    if not str(port).isdigit():
        raise DeployError(f"server {server.name}: metadata {PORT_KEY}={port!r} is no port")
    return Target(server.address(network), int(port), user, name=server.name)


def _need_selector(stack: str | None, role: str | None, image: str | None) -> None:
    if not (stack or role or image):
        raise DeployError(
            "choose servers by --stack, --role or --image (or give hosts with -H)",
            EXIT_BAD_INPUT,
        )
