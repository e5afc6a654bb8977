"""Which hosts a fab task goes to: a ``-H`` list, or running servers asked from Nova.

From Nova (:mod:`bake.cloud.nova`, over the keystoneauth1 session of :mod:`bake.cloud.auth`):
ACTIVE servers whose metadata has ``bbq_stack=<stack>`` (set by the Heat templates of
``stacks/`` on every server of a stack) and/or ``bbq_role=<role>``, and/or that run ``image``
(an image id), each reached at its address on the named network. Metadata ``bbq_ssh_port``
overrides port 22.

A local stack (``bake stack create --local NAME``, its state in the artifact store of
``$BBQ_ARTIFACTS`` or ``./artifacts``) comes first: ``--stack NAME`` then means its running
instances (SSH on 127.0.0.1, each on its own port), reached with the stack's own key and
known_hosts unless others are given (:func:`stack_ssh`).

Example::

    targets = choose(hosts="root@10.0.0.5,10.0.0.6:2222")
    targets = choose(stack="prod", role="rest", network="private", cloud=CloudOptions("mycloud"))
    targets = from_nova(auth.connect(cloud="mycloud"), role="rest", network="private")
    cloud = CloudOptions(config_file="fab.conf", region="RegionTwo", interface="internal")
    targets = choose(stack="dev", role="worker")     # a local stack's workers
"""

from __future__ import annotations

import dataclasses
from pathlib import Path

from bake.errors import EXIT_BAD_INPUT
from bake.fleet import DeployError
from bake.fleet.ssh import SshOptions
from bake.fleet.targets import Target, parse_hosts

PORT_KEY = "bbq_ssh_port"


@dataclasses.dataclass(frozen=True)
class CloudOptions:
    """Where Nova is, as ``bake`` takes it (:func:`bake.cloud.auth.connect`): ``--os-cloud``
    (else ``OS_*``) or ``--config-file``, and ``--os-region-name``/``--os-interface``."""

    cloud: str | None = None
    config_file: str | None = None
    region: str | None = None
    interface: str | None = None

    def connect(self):
        """The :class:`bake.cloud.auth.Cloud` (DeployError with auth's one line)."""
        from bake.cloud import auth

        auth.quiet_libraries()  # the client libraries' log chatter stays off stderr
        try:
            return auth.connect(
                cloud=self.cloud,
                config_file=self.config_file,
                region=self.region,
                interface=self.interface,
            )
        except auth.AuthError as exc:
            raise DeployError(str(exc), exc.exit_code) from None


def choose(
    hosts: str | None = None,
    *,
    stack: str | None = None,
    role: str | None = None,
    image: str | None = None,
    network: str | None = None,
    cloud: CloudOptions = CloudOptions(),
    user: str = "root",
) -> list[Target]:
    """The ``hosts`` list (``-H``) if given, else a local stack's servers, else the servers
    Nova lists (:func:`from_nova`) in the ``cloud``."""
    if hosts:
        return parse_hosts(hosts, user)
    _need_selector(stack, role, image)
    local = local_stack(stack)
    if local is not None:
        return from_local(local, role=role, user=user)
    return from_nova(
        cloud.connect(), stack=stack, role=role, image=image, network=network, user=user
    )


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
    # The cloud libraries load only for Nova (fab -H runs never import them).
    from bake.cloud.nova import ROLE_KEY, STACK_KEY, Nova, NovaError

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


def local_stack(name: str | None):
    """The local stack ``name`` of the artifact store (:mod:`bake.cloud.local.state`), or
    None when there is no such local stack."""
    from bake.cloud.local import state

    if not name or not state.exists(state.default_store(), name):
        return None
    try:
        return state.load(state.default_store(), name)
    except state.StateError as exc:
        raise DeployError(str(exc), EXIT_BAD_INPUT) from None


def from_local(stack, role: str | None = None, user: str = "root") -> list[Target]:
    """The running instances of a local stack (of ``role``, if given), by name."""
    from bake.instances.nspawn import is_instance_process

    chosen = [s for s in stack.servers if role in (None, s.role)]
    running = [s for s in chosen if s.pid and is_instance_process(s.pid, Path(s.workdir))]
    if not running:
        what = f" with role {role}" if role else ""
        raise DeployError(f"local stack {stack.name} has no running server{what}")
    return [Target("127.0.0.1", s.ssh_port, user, name=s.name) for s in running]


def stack_ssh(stack: str | None, ssh: SshOptions) -> SshOptions:
    """``ssh`` with a local stack's key and known_hosts where none were given (no ``--key``;
    the default known_hosts); unchanged for any other stack."""
    local = local_stack(stack)
    if local is None:
        return ssh
    keys = ssh.key_files or (Path(local.key),)
    default = SshOptions().known_hosts.expanduser()
    given = ssh.known_hosts.expanduser() != default
    known = ssh.known_hosts if given else Path(local.known_hosts)
    return dataclasses.replace(ssh, key_files=keys, known_hosts=known)
