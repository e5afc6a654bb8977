"""``bake stack create --local``: boot the stack's servers on this machine and wait until
every role has signalled its wait condition.

Order, as on Heat: the host servers (data store, queue), then the Spark master, the workers
and the REST dashboard side by side (``serial``: one after another, each waited for), then
the streaming job once the others are ready. Each server is an instance of its role's
image (systemd-nspawn, copy-on-write view of the unpacked image), cloud-init enabled with
its role file as NoCloud user data. The state file is rewritten at every step; an
interrupted create stops what it started, a failed one leaves the stack for inspection
(``bake stack delete --local NAME`` removes it).
"""

from __future__ import annotations

import concurrent.futures
import contextlib
import dataclasses
import signal
import sys
import threading
import time
import uuid
from collections.abc import Callable, Iterator
from pathlib import Path

from bake import hostsys
from bake.cloud.local import hostservers, images, roles
from bake.cloud.local import state as st
from bake.cloud.local.signals import Endpoint
from bake.errors import InputError, Interrupted, OperationFailed

BOOT_TIMEOUT = 240.0
PROGRESS_EVERY = 30.0


class CreateError(OperationFailed):
    """A role did not become ready (one line; the stack is left for inspection)."""


@dataclasses.dataclass
class Request:
    """What ``create --local`` was asked for."""

    name: str
    store: Path
    settings: roles.Settings
    pinned: dict[str, str] = dataclasses.field(default_factory=dict)  # role: artifact dir
    serial: bool = False
    ready_timeout: float = 600.0


def say(stack: str, text: str) -> None:
    print(f"bake: local {stack}: {text}", file=sys.stderr, flush=True)


class Creation:
    """One run of create: the stack's state, the signal endpoint, the boots."""

    def __init__(self, request: Request, stack: st.LocalStack, endpoint: Endpoint):
        self.request = request
        self.stack = stack
        self.endpoint = endpoint
        self.lock = threading.Lock()
        self.started = time.monotonic()
        self.instances: dict[str, object] = {}
        # Set when create is interrupted: a boot still under way stops its instance.
        self.cancelled = threading.Event()

    def save(self) -> None:
        with self.lock:
            self.stack.save()

    # -- host servers -------------------------------------------------------------------

    def host_servers(self) -> roles.Settings:
        """Start the data store and the queue unless given; the settings with their URLs."""
        settings = self.request.settings
        work = self.stack.workdir
        if not settings.datastore_url:
            server = hostservers.start_datastore(
                work / "datastore", roles.address(self.stack.subnet, "datastore")
            )
            self._record_host(server, "the datastore image cannot be built here")
            settings = dataclasses.replace(settings, datastore_url=server.url)
        else:
            say(self.stack.name, f"datastore: {settings.datastore_url} (--datastore-url)")
        if not settings.zaqar_url:
            for server in hostservers.start_zaqar(work / "zaqar"):
                self._record_host(server, "no Zaqar image")
            settings = dataclasses.replace(settings, zaqar_url=self.stack.host_servers[-1].url)
        else:
            say(self.stack.name, f"queue: Zaqar at {settings.zaqar_url} (--zaqar-url)")
        return settings

    def _record_host(self, server: st.HostServer, why: str) -> None:
        if self.cancelled.is_set():  # create was interrupted meanwhile
            hostservers.stop(server)
            raise Interrupted("create interrupted")
        with self.lock:
            self.stack.host_servers.append(server)
            self.stack.save()
        if server.name != "redis":
            say(
                self.stack.name,
                f"{server.name}: served on the host ({why}): {server.what} at "
                f"{server.url}, pid {server.pid}",
            )

    # -- instances ----------------------------------------------------------------------

    def boot(self, server: st.Server, planned: roles.Planned, user_data: str) -> None:
        from bake.instances.nspawn import CloudInit, start, stop

        if self.cancelled.is_set():
            return
        server.status = "BOOTING"
        self.save()
        seed = CloudInit(user_data, f"{server.name}-{uuid.uuid4().hex[:8]}")
        instance = start(
            Path(server.rootfs),
            server.name,
            Path(server.workdir),
            ssh_port=server.ssh_port,
            timeout=BOOT_TIMEOUT,
            files=roles.adaptations(planned),
            address=server.address,
            cloud_init=seed,
            client_key=Path(self.stack.key),
        )
        if self.cancelled.is_set():
            stop(instance)
            return
        self.instances[server.name] = instance
        with self.lock:
            server.pid = instance.process.pid
            server.status = "BOOTED"
            with open(self.stack.known_hosts, "a") as known:
                known.write(instance.known_hosts.read_text())
            self.stack.save()
        say(
            self.stack.name,
            f"{server.handle}: booted {server.name} ({server.address}, SSH "
            f"127.0.0.1:{server.ssh_port}) after {self.elapsed()}",
        )

    def elapsed(self) -> str:
        return f"{time.monotonic() - self.started:.0f}s"

    # -- waiting ------------------------------------------------------------------------

    def wait_ready(self, servers: list[st.Server], deadline: float) -> None:
        """Until every server in ``servers`` signalled SUCCESS; CreateError on a FAILURE, a
        dead instance, or at ``deadline``."""
        waiting = list(servers)
        next_progress = time.monotonic() + PROGRESS_EVERY
        while waiting:
            for server in list(waiting):
                if self._check(server):
                    waiting.remove(server)
            if not waiting:
                return
            now = time.monotonic()
            if now > deadline:
                raise CreateError(self._timeout_message(waiting))
            if now > next_progress:
                names = ", ".join(s.handle for s in waiting)
                say(self.stack.name, f"waiting for {names} ({self.elapsed()})")
                next_progress = now + PROGRESS_EVERY
            time.sleep(0.5)

    def _check(self, server: st.Server) -> bool:
        signal_ = self.endpoint.signal(server.handle)
        if signal_ is None:
            if server.pid and not hostservers.alive(server.pid):
                self._fail(server, f"its instance stopped (console: {server.console_log()})")
            return False
        if signal_.status != "SUCCESS":
            self._fail(server, f"signalled FAILURE: {signal_.reason}{self._tail(server)}")
        with self.lock:
            server.status = "READY"
            server.reason = signal_.reason
            self.stack.save()
        say(self.stack.name, f"{server.handle}: ready after {self.elapsed()} ({signal_.reason})")
        return True

    def _fail(self, server: st.Server, why: str) -> None:
        with self.lock:
            server.status, server.reason = "FAILED", why
            self.stack.save()
        raise CreateError(f"{server.handle} ({server.name}): {why}")

    def _tail(self, server: st.Server) -> str:
        """The last line of the instance's cloud-init output, to say where it stopped."""
        log = Path(server.workdir) / "root" / "var" / "log" / "cloud-init-output.log"
        with contextlib.suppress(OSError):
            lines = [line for line in log.read_text(errors="replace").splitlines() if line]
            if lines:
                return f"; cloud-init's last line: {lines[-1][:200]}"
        return ""

    def _timeout_message(self, waiting: list[st.Server]) -> str:
        parts = [f"{s.handle} ({s.status.lower()}{self._tail(s)})" for s in waiting]
        return (
            f"not ready after {self.request.ready_timeout:.0f}s: {'; '.join(parts)} "
            f"(logs: {self.stack.workdir}/instances/NAME/)"
        )


def _new_stack(request: Request) -> st.LocalStack:
    store = Path(request.store).resolve()
    taken = {s.subnet for s in st.all_stacks(store)}
    stack = st.LocalStack(
        name=request.name,
        store=str(store),
        subnet=roles.free_subnet(taken),
        key="",
        known_hosts="",
        created=time.strftime("%Y-%m-%dT%H:%M:%S%z"),
    )
    work = stack.workdir
    work.mkdir(parents=True, exist_ok=True)
    stack.key = str(hostsys.ssh_key(work / "id_ed25519", f"bbq-local-{request.name}"))
    stack.known_hosts = str(work / "known_hosts")
    Path(stack.known_hosts).write_text("")
    stack.parameters = {
        "worker_count": request.settings.workers,
        "worker_cores": request.settings.worker_cores,
        "worker_memory": request.settings.worker_memory,
        "zaqar_queue": request.settings.queue,
        "serial": request.serial,
    }
    return stack


def check_request(request: Request) -> None:
    """InputError (exit 2, nothing started) for what can be seen before starting."""
    st.check_name(request.name)
    if st.state_path(request.store, request.name).exists():
        raise InputError(
            f"local stack {request.name!r} exists (bake stack delete --local {request.name})"
        )
    if not 1 <= request.settings.workers <= roles.MAX_WORKERS:
        raise InputError(f"--workers: 1 to {roles.MAX_WORKERS} (value: {request.settings.workers})")
    taken = roles.wildcard_port_users()
    if taken:
        raise InputError(
            f"{' and '.join(taken)} in use on this host: a local stack needs it free "
            "(another local stack? bake stack list --local)"
        )


def create(request: Request) -> st.LocalStack:
    """Create the local stack; its state once every role is ready."""
    check_request(request)
    found = images.resolve(request.store, list(dict.fromkeys(roles.BOOTED_ROLES)), request.pinned)
    for role, artifact in found.items():
        say(
            request.name,
            f"{role}: image {artifact.name} {artifact.fingerprint[:12]} ({artifact.path})",
        )
    stack = _new_stack(request)
    stack.save()
    with Endpoint() as endpoint, _interrupts():
        creation = Creation(request, stack, endpoint)
        try:
            _run(creation, found)
        except (KeyboardInterrupt, Interrupted) as exc:
            creation.cancelled.set()
            say(stack.name, "interrupted: stopping what was started")
            from bake.cloud.local import remove

            remove.delete(stack)
            signum = getattr(exc, "signum", signal.SIGINT)
            raise Interrupted(f"create --local {stack.name} interrupted", signum) from None
        except Exception as exc:
            stack.status = "CREATE_FAILED"
            stack.reason = " ".join(str(exc).split())
            stack.save()
            if isinstance(exc, (CreateError, hostservers.HostServerError, InputError)):
                raise CreateError(
                    f"{exc}; the stack is left as it is: bake stack delete --local {stack.name}"
                ) from None
            raise
    return stack


def _run(creation: Creation, found: dict) -> None:
    request, stack = creation.request, creation.stack
    planned = roles.plan(stack.name, stack.subnet, request.settings.workers)
    rootfs = {role: images.rootfs(request.store, a) for role, a in found.items()}
    for item in planned:
        stack.servers.append(_server_record(stack, item, found[item.role], rootfs[item.role]))
    stack.save()
    by_name = {item.name: item for item in planned}
    deadline = time.monotonic() + request.ready_timeout

    def boot(server: st.Server, settings: roles.Settings) -> None:
        item = by_name[server.name]
        signal_ = creation.endpoint.curl_cli(item.handle)
        data = roles.user_data(item, roles.values(item, stack.subnet, settings, signal_))
        creation.boot(server, item, data)

    first = [s for s in stack.servers if s.role != "streaming"]
    last = [s for s in stack.servers if s.role == "streaming"]  # it needs the host servers
    if request.serial:
        settings = creation.host_servers()
        for server in first + last:
            boot(server, settings)
            creation.wait_ready([server], deadline)
    else:
        with concurrent.futures.ThreadPoolExecutor(1) as pool:
            hosts = pool.submit(creation.host_servers)
            _boot_all(first, lambda server: boot(server, request.settings))
            creation.wait_ready(first, deadline)
            settings = hosts.result()
        _boot_all(last, lambda server: boot(server, settings))
        creation.wait_ready(last, deadline)
    stack.outputs = outputs(stack, settings)
    stack.status, stack.reason = "CREATE_COMPLETE", f"every role ready after {creation.elapsed()}"
    stack.save()
    say(stack.name, f"CREATE_COMPLETE: {stack.reason}")


def _boot_all(servers: list[st.Server], boot: Callable[[st.Server], None]) -> None:
    """Boot servers side by side; the first failure is raised once all have returned."""
    if not servers:
        return
    with concurrent.futures.ThreadPoolExecutor(len(servers)) as pool:
        futures = [pool.submit(boot, server) for server in servers]
    for future in futures:
        future.result()


def _server_record(stack: st.LocalStack, item: roles.Planned, artifact, rootfs: Path) -> st.Server:
    return st.Server(
        role=item.role,
        name=item.name,
        address=item.address,
        image=str(artifact.path),
        rootfs=str(rootfs),
        workdir=str(stack.workdir / "instances" / item.name),
        ssh_port=hostsys.free_port(),
        ports=roles.ports(item.role),
        handle=item.handle,
    )


def outputs(stack: st.LocalStack, settings: roles.Settings) -> dict:
    """The Heat template's outputs, with local values (plus the host servers' URLs)."""
    master = roles.address(stack.subnet, "master")
    rest = roles.address(stack.subnet, "rest")
    by_role: dict[str, list[st.Server]] = {}
    for server in stack.servers:
        by_role.setdefault(server.role, []).append(server)
    datastore = [h.name for h in stack.host_servers if h.name == "datastore"]
    return {
        "spark_master_url": f"spark://{master}:7077",
        "spark_ui_url": f"http://{master}:8080/",
        "rest_url": f"http://{rest}:8780/api/v1",
        "dashboard_url": f"http://{rest}:8780/",
        "queue": settings.queue,
        "servers": {
            "datastore": datastore,
            **{role: [s.name for s in servers] for role, servers in by_role.items()},
        },
        "addresses": {
            "datastore": [roles.address(stack.subnet, "datastore")] if datastore else [],
            **{role: [s.address for s in servers] for role, servers in by_role.items()},
        },
        "zaqar_url": settings.zaqar_url,
        "datastore_url": _without_password(settings.datastore_url),
    }


def _without_password(url: str) -> str:
    """A URL with the password of its user part masked (outputs carry no secret)."""
    scheme, sep, rest = url.partition("://")
    userinfo, at, host = rest.rpartition("@")
    if not at or ":" not in userinfo:
        return url
    return f"{scheme}{sep}{userinfo.split(':', 1)[0]}:******@{host}"


@contextlib.contextmanager
def _interrupts() -> Iterator[None]:
    """SIGTERM raises Interrupted (so create cleans up as on Ctrl-C) while creating."""
    if threading.current_thread() is not threading.main_thread():
        yield
        return

    def on_term(signum, _frame):
        raise Interrupted("terminated", signum)

    previous = signal.signal(signal.SIGTERM, on_term)
    try:
        yield
    finally:
        signal.signal(signal.SIGTERM, previous)
