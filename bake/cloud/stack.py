"""``bake stack``: the Big Data BBQ stack (``stacks/``) on Heat, with python-heatclient over the
keystoneauth1 session of ``bake publish`` (same clouds.yaml, ``OS_*`` and options).

Commands::

    bake stack create NAME [--workers N] [--image ROLE=IMAGE]... [-P KEY=VALUE]... [--wait]
    bake stack create NAME --dry-run        # the processed template, environment, parameters
    bake stack update NAME [--workers N] [--image ROLE=IMAGE]... [--latest-images] [--wait]
    bake stack show NAME | outputs NAME [KEY] | delete NAME | list
    bake stack create|show|outputs|delete|list --local ...   # on this machine: bake.cloud.local

Each role's image is the newest active Glance image whose ``bake_spec`` property names the
role's spec (``ROLES`` in :mod:`bake.cloud.stackfiles`) unless ``--image ROLE=NAME|ID`` says
otherwise. ``--wait`` prints the stack's events as they come and, when the stack fails, the
failed resource and Heat's reason on one line. ``update`` patches the running stack (only the
parameters given change): the worker count, or images (servers are rebuilt in place).
``delete`` waits for Heat and then reports what is left of the stack (servers with its
``bbq_stack`` metadata, its ports and security groups).

Exit codes: 0 done, 1 the operation failed (stack FAILED, Heat unreachable), 2 bad input
(arguments, files, credentials, unknown stack, an image that cannot be found).
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from collections.abc import Callable
from typing import Any

from bake import ui
from bake.cloud import auth
from bake.cloud import stackfiles as sf
from bake.cloud.nova import ROLE_KEY, STACK_KEY
from bake.errors import EXIT_BAD_INPUT, EXIT_FAILED, BakeError, InputError

POLL_SECONDS = 2.0


class StackError(BakeError):
    """One line for the user and the exit code to leave with (1 unless given)."""

    def __init__(self, message: str, code: int = EXIT_FAILED):
        super().__init__(message, code)


# -- arguments -------------------------------------------------------------------------------


def add_arguments(parser: argparse.ArgumentParser) -> None:
    """The subcommands of ``bake stack`` (added by bake.cli)."""
    from bake.cloud import commands as cloud_commands
    from bake.cloud.local import commands as local_commands

    sub = parser.add_subparsers(dest="stack_command", required=True, metavar="ACTION")

    def action(name: str, func: Callable, help: str, named: bool = True):
        p = sub.add_parser(name, help=help, description=help)
        p.set_defaults(stack_func=func)
        if named:
            p.add_argument("name", metavar="NAME", help="stack name")
        cloud_commands.add_cloud_options(p)
        if name in local_commands.ACTIONS:  # --local: the stack on this machine
            local_commands.add_arguments(p, name)
        return p

    p = action("create", cmd_create, "create the stack from stacks/ (images from Glance)")
    _template_options(p)
    _parameter_options(p)
    p.add_argument("--dry-run", action="store_true", help="print what would be sent; send nothing")
    _wait_options(p)
    p.add_argument("--timeout", type=int, default=60, metavar="MIN", help="Heat's timeout")

    p = action("update", cmd_update, "change the worker count or images of a running stack")
    _parameter_options(p)
    p.add_argument(
        "--latest-images",
        action="store_true",
        help="every role not given by --image gets its spec's newest image again",
    )
    p.add_argument("--dry-run", action="store_true", help="print the parameters that change")
    _wait_options(p)
    p.add_argument("--timeout", type=int, default=60, metavar="MIN", help="Heat's timeout")

    p = action("show", cmd_show, "status, parameters and servers of a stack")
    _formats(p, listing=False)

    p = action("outputs", cmd_outputs, "the stack's outputs (URLs, servers by role)")
    p.add_argument("key", nargs="?", metavar="KEY", help="only this output, as its plain value")
    _formats(p, listing=False)

    p = action("delete", cmd_delete, "delete the stack, wait, and report what is left")
    p.add_argument("--no-wait", dest="wait", action="store_false", help="return at once")
    p.add_argument("--wait-seconds", type=float, default=900, metavar="S", help=argparse.SUPPRESS)

    p = action("list", cmd_list, "the project's stacks", named=False)
    _formats(p, listing=True)


def _formats(p: argparse.ArgumentParser, listing: bool) -> None:
    """-f/-c (and --sort-column for a listing) as every reporting command has them; the
    columns are known when the stack is read (Heat's and a local stack's differ)."""
    ui.add_format_options(p, (), listing=listing)
    ui.json_option(p)


def _template_options(p: argparse.ArgumentParser) -> None:
    p.add_argument(
        "--template",
        metavar="FILE",
        help=f"HOT template (default: {sf.STACKS_DIR / sf.TEMPLATE}, with its env.yaml)",
    )
    p.add_argument(
        "-e",
        "--environment",
        action="append",
        metavar="FILE",
        help="environment file (repeatable; default: env.yaml beside the default template)",
    )


def _parameter_options(p: argparse.ArgumentParser) -> None:
    p.add_argument("--workers", type=int, metavar="N", help="worker_count")
    p.add_argument(
        "--image",
        action="append",
        default=[],
        metavar="ROLE=IMAGE",
        help=f"a role's Glance image, name or id (roles: {', '.join(sf.ROLES)})",
    )
    p.add_argument(
        "-P",
        "--parameter",
        action="append",
        default=[],
        metavar="KEY=VALUE",
        help="any other template parameter (network, flavors, key_name, ...)",
    )


def _wait_options(p: argparse.ArgumentParser) -> None:
    p.add_argument("--wait", action="store_true", help="follow the stack's events until done")


def command(args: argparse.Namespace) -> int:
    """``bake stack ACTION``: one line on stderr and its exit code on failure."""
    from bake.cloud.local import commands as local_commands

    try:
        if getattr(args, "local", False):
            return local_commands.run(args, args.stack_command)
        local_commands.check_flags(args, args.stack_command)
        return args.stack_func(args)
    except BakeError as exc:
        for line in exc.lines():
            print(f"error: {line}", file=sys.stderr)
        return exc.exit_code


# -- connection ------------------------------------------------------------------------------


class Heat:
    """python-heatclient v1 over a :class:`bake.auth.Cloud` session."""

    def __init__(self, cloud: auth.Cloud):
        from heatclient import client as heat_client

        self.cloud = cloud
        kwargs = cloud.adapter_kwargs("orchestration")
        self.client = heat_client.Client("1", session=cloud.session, **kwargs)

    def call(self, what: str, func: Callable, *args: Any, **kwargs: Any) -> Any:
        """``func(*args, **kwargs)``; StackError (one line) when Heat refuses or fails."""
        from heatclient import exc as heat_exc

        try:
            return func(*args, **kwargs)
        except heat_exc.HTTPNotFound as exc:
            raise StackError(f"{what}: {heat_message(exc)}", EXIT_BAD_INPUT) from None
        except (heat_exc.HTTPBadRequest, heat_exc.HTTPConflict) as exc:
            raise StackError(f"{what}: Heat refused: {heat_message(exc)}", EXIT_BAD_INPUT) from None
        except heat_exc.BaseException as exc:
            raise StackError(f"{what}: {heat_message(exc)}") from None
        except Exception as exc:  # keystoneauth1 (unreachable, timeout, ...)
            raise StackError(f"{what}: {auth.describe(exc, self.cloud)}") from None

    def stack(self, name: str) -> Any:
        """The stack named (or with id) ``name``; StackError exit 2 when there is none."""
        from heatclient import exc as heat_exc

        try:
            return self.client.stacks.get(name, resolve_outputs=False)
        except heat_exc.HTTPNotFound:
            raise StackError(f"no stack {name!r}", EXIT_BAD_INPUT) from None
        except Exception:
            return self.call(f"reading stack {name}", self.client.stacks.get, name)


def heat_message(exc: BaseException) -> str:
    """Heat's error message on one line, without heatclient's ``ERROR:`` prefix."""
    error = getattr(exc, "error", None)
    text = ""
    if isinstance(error, dict):
        text = (error.get("error") or {}).get("message") or ""
    text = text or str(exc)
    text = text.removeprefix("ERROR: ")
    return " ".join(text.split()) or type(exc).__name__


def connect(args: argparse.Namespace) -> Heat:
    """Heat over the same session, options and checks as ``bake publish``."""
    from bake.cloud import commands as cloud_commands

    try:
        return Heat(cloud_commands.connect(args, "orchestration"))
    except InputError as exc:
        raise StackError(str(exc), EXIT_BAD_INPUT) from None


# -- parameters and images -------------------------------------------------------------------


def parse_pairs(items: list[str], option: str) -> dict[str, str]:
    """``KEY=VALUE`` items → dict; StackError (exit 2) naming a malformed one."""
    pairs: dict[str, str] = {}
    for item in items:
        key, sep, value = item.partition("=")
        if not sep or not key.strip():
            raise StackError(f"{option} {item!r}: expected KEY=VALUE", EXIT_BAD_INPUT)
        pairs[key.strip()] = value
    return pairs


def requested_parameters(args: argparse.Namespace) -> tuple[dict[str, Any], dict[str, str]]:
    """(template parameters from -P and --workers, {role: image} from --image)."""
    params: dict[str, Any] = parse_pairs(args.parameter, "--parameter")
    images = parse_pairs(args.image, "--image")
    for role in images:
        if role not in sf.ROLES:
            raise StackError(
                f"--image {role}=...: no role {role!r} (roles: {', '.join(sf.ROLES)})",
                EXIT_BAD_INPUT,
            )
    if args.workers is not None:
        if args.workers < 1:
            raise StackError(f"--workers: at least 1 (value: {args.workers})", EXIT_BAD_INPUT)
        params["worker_count"] = args.workers
    return params, images


def newest_images(cloud: auth.Cloud, roles: list[str]) -> dict[str, Any]:
    """{role: newest active Glance image of its spec}; StackError (exit 2) naming a spec
    without one."""
    from bake.cloud import glance as g

    glance = g.Glance(cloud, g.RetryPolicy(seconds=10))
    found: dict[str, Any] = {}
    by_spec: dict[str, Any] = {}
    for role in roles:
        spec = sf.ROLES[role]
        if spec not in by_spec:
            try:
                images = glance.list({g.SPEC: spec, "status": "active"})
            except g.GlanceError as exc:
                raise StackError(f"finding the {spec} image: {exc}") from None
            images.sort(key=lambda i: i.get("created_at") or "", reverse=True)
            if not images:
                raise StackError(
                    f"role {role}: Glance has no active image of spec {spec} (bake publish "
                    f"one, or pass --image {role}=NAME|ID)",
                    EXIT_BAD_INPUT,
                )
            by_spec[spec] = images[0]
        found[role] = by_spec[spec]
    return found


def image_parameters(
    heat: Heat, images: dict[str, str], resolve: list[str], quiet: bool = False
) -> dict[str, str]:
    """Template image parameters: the given ones, and the newest image of each role in
    ``resolve`` (said on stderr)."""
    params = {sf.image_parameter(role): ref for role, ref in images.items()}
    for role, image in newest_images(heat.cloud, resolve).items():
        params[sf.image_parameter(role)] = image["id"]
        if not quiet:
            print(
                f"bake: {role}: image {image.get('name')} ({image['id']}, spec {sf.ROLES[role]})",
                file=sys.stderr,
            )
    return params


TRUE_WORDS = ("1", "t", "true", "on", "y", "yes")  # Heat's booleans (oslo strutils)


def queue_endpoint(heat: Heat, params: dict[str, Any], current: dict | None = None) -> dict:
    """``{"zaqar_url": the catalog's messaging endpoint}`` when the stack creates its queue
    (``create_queue``) and no ``zaqar_url`` is given (nor already set); else ``{}``.

    The template cannot ask Heat for it: the queue's ``href`` attribute fails on Heat's
    session-based Zaqar client (its api_url is None)."""
    merged = {**(current or {}), **params}
    if str(merged.get("create_queue", "")).strip().lower() not in TRUE_WORDS:
        return {}
    if merged.get("zaqar_url"):
        return {}
    if not heat.cloud.has_service("messaging"):
        raise StackError(
            "create_queue: the catalog has no messaging service (Zaqar) to create the queue "
            "in; pass -P zaqar_url=URL of a Zaqar the servers can reach",
            EXIT_BAD_INPUT,
        )
    url = heat.cloud.endpoint("messaging").rstrip("/")
    print(f"bake: create_queue: Zaqar at {url} (zaqar_url)", file=sys.stderr)
    return {"zaqar_url": url}


# -- create / update -------------------------------------------------------------------------


def cmd_create(args: argparse.Namespace) -> int:
    bundle = sf.load(args.template, args.environment)
    params, images = requested_parameters(args)
    bundle.check_parameters(params)
    missing = [r for r in sf.ROLES if r not in images]
    heat = dry_run_cloud(args) if args.dry_run else connect(args)
    if heat is None:
        params.update({sf.image_parameter(r): ref for r, ref in images.items()})
    else:
        params.update(image_parameters(heat, images, missing))
        params.update(queue_endpoint(heat, params))
    if args.dry_run:
        sys.stdout.write(bundle.dump(params))
        return 0
    fields = bundle.fields(args.name, params, disable_rollback=True, timeout_mins=args.timeout)
    created = heat.call(f"creating stack {args.name}", heat.client.stacks.create, **fields)
    stack_id = created["stack"]["id"]
    print(f"bake: stack {args.name} ({stack_id}): CREATE_IN_PROGRESS", file=sys.stderr)
    if not args.wait:
        return 0
    return wait_for(heat, args.name, stack_id, "CREATE", marker=None, minutes=args.timeout)


def dry_run_cloud(args: argparse.Namespace) -> Heat | None:
    """For a dry run: the cloud when some image must be found in Glance and credentials
    work; None when every image is given, or the cloud cannot be reached (said on stderr:
    the images stay unresolved)."""
    if all(role in parse_pairs(args.image, "--image") for role in sf.ROLES):
        return None
    try:
        return connect(args)
    except StackError as exc:
        print(f"bake: images not resolved ({exc})", file=sys.stderr)
        return None


def cmd_update(args: argparse.Namespace) -> int:
    params, images = requested_parameters(args)
    heat = connect(args)
    stack = heat.stack(args.name)
    resolve = [r for r in sf.ROLES if r not in images] if args.latest_images else []
    params.update(image_parameters(heat, images, resolve))
    current = stack.parameters or {}
    params.update(queue_endpoint(heat, params, current))
    unknown = sorted(k for k in params if k not in current)
    if unknown:
        raise StackError(f"stack {args.name} has no parameter {unknown[0]!r}", EXIT_BAD_INPUT)
    changes = {k: v for k, v in params.items() if str(current.get(k)) != str(v)}
    if not changes:
        print(f"bake: stack {args.name}: nothing to change")
        return 0
    for key, value in changes.items():
        print(f"bake: {args.name}: {key}: {current.get(key)} -> {value}", file=sys.stderr)
    if args.dry_run:
        return 0
    marker = last_event_id(heat, stack.id)
    heat.call(
        f"updating stack {args.name}",
        heat.client.stacks.update,
        stack.id,
        existing=True,
        parameters=changes,
        timeout_mins=args.timeout,
    )
    if not args.wait:
        print(f"bake: stack {args.name}: UPDATE_IN_PROGRESS", file=sys.stderr)
        return 0
    return wait_for(heat, args.name, stack.id, "UPDATE", marker=marker, minutes=args.timeout)


# -- following a stack -----------------------------------------------------------------------


def last_event_id(heat: Heat, stack_id: str) -> str | None:
    events = heat.call(
        "reading events", heat.client.events.list, stack_id, sort_dir="desc", limit=1
    )
    return events[0].id if events else None


def event_line(event: Any) -> str:
    time_ = (getattr(event, "event_time", "") or "").replace("T", " ")[11:19]
    reason = getattr(event, "resource_status_reason", "") or ""
    reason = f": {reason}" if reason and reason != "state changed" else ""
    name = getattr(event, "resource_name", "?")
    return f"  {time_} {name} {getattr(event, 'resource_status', '?')}{reason}"


def wait_for(
    heat: Heat, name: str, stack_id: str, action: str, marker: str | None, minutes: int
) -> int:
    """Print the stack's events (nested ones too) until ``action`` completes or fails.

    The stack's status counts once the action has visibly started (an event after
    ``marker``, or the status IN_PROGRESS): an update's status is the previous one's until
    the engine takes it up."""
    deadline = time.monotonic() + minutes * 60 + 120
    started = False
    while True:
        marker, printed = print_events(heat, stack_id, marker)
        status = heat.call(f"reading stack {name}", heat.client.stacks.get, stack_id)
        started = started or printed > 0 or status.status == "IN_PROGRESS"
        if started and status.action == action and status.status in ("COMPLETE", "FAILED"):
            print_events(heat, stack_id, marker)  # the last ones, if any came meanwhile
            break
        if time.monotonic() > deadline:
            raise StackError(f"stack {name}: still {status.stack_status} after {minutes} min")
        time.sleep(POLL_SECONDS)
    if status.status == "FAILED":
        raise StackError(f"stack {name} {status.stack_status}: {failure(heat, stack_id, status)}")
    print(f"bake: stack {name}: {status.stack_status}")
    return 0


def print_events(heat: Heat, stack_id: str, marker: str | None) -> tuple[str | None, int]:
    """Print the events after ``marker`` (nested stacks' too); (the new marker, how many)."""
    from heatclient.common import event_utils

    events = heat.call(
        "reading events",
        event_utils.get_events,
        heat.client,
        stack_id=stack_id,
        event_args={"sort_dir": "asc", "marker": marker},
        nested_depth=3,
    )
    for event in events:
        print(event_line(event), file=sys.stderr)
    return (events[-1].id if events else marker), len(events)


def failure(heat: Heat, stack_id: str, stack: Any) -> str:
    """The failed resource deepest in the stack and its reason, on one line."""
    try:
        resources = heat.client.resources.list(stack_id, nested_depth=3)
    except Exception:
        resources = []
    failed = [r for r in resources if str(r.resource_status).endswith("FAILED")]
    leaves = [r for r in failed if not any(link.get("rel") == "nested" for link in r.links)]
    chosen = (leaves or failed)[:1]
    if not chosen:
        return " ".join((stack.stack_status_reason or "no reason given").split())
    r = chosen[0]
    reason = " ".join((r.resource_status_reason or "no reason given").split())
    return f"resource {r.resource_name} ({r.resource_type}) {r.resource_status}: {reason}"


# -- show / outputs / list -------------------------------------------------------------------


def cmd_show(args: argparse.Namespace) -> int:
    heat = connect(args)
    stack = heat.stack(args.name)
    full = heat.call(f"reading stack {args.name}", heat.client.stacks.get, stack.id)
    servers = servers_by_role(heat.cloud, args.name)
    if args.format:
        document = {
            "name": full.stack_name,
            "id": full.id,
            "status": full.stack_status,
            "reason": full.stack_status_reason,
            "created": full.creation_time,
            "updated": full.updated_time,
            "parameters": _own_parameters(full.parameters),
            "servers": servers,
        }
        ui.emit_record(args, document)
        return 0
    print(f"{full.stack_name}  {full.id}")
    print(f"status      {full.stack_status}: {' '.join((full.stack_status_reason or '').split())}")
    print(f"created     {full.creation_time}   updated {full.updated_time or '-'}")
    for key, value in sorted(_own_parameters(full.parameters).items()):
        print(f"  {key} = {value}")
    for role, rows in servers.items():
        for row in rows:
            print(f"  {role:<10} {row['name']:<28} {row['status']:<8} {row['address']}")
    return 0


def _own_parameters(parameters: dict | None) -> dict:
    """Template parameters without Heat's pseudo parameters (OS::stack_name, ...)."""
    return {k: v for k, v in (parameters or {}).items() if not k.startswith("OS::")}


def servers_by_role(cloud: auth.Cloud, stack_name: str) -> dict[str, list[dict]]:
    """Servers whose ``bbq_stack`` metadata names the stack, by ``bbq_role``."""
    roles: dict[str, list[dict]] = {}
    for server in stack_servers(cloud, stack_name):
        addresses = [a["addr"] for entries in server.addresses.values() for a in entries]
        roles.setdefault(server.metadata.get(ROLE_KEY, "?"), []).append(
            {
                "name": server.name,
                "id": server.id,
                "status": server.status,
                "address": ", ".join(addresses) or "-",
            }
        )
    return dict(sorted(roles.items()))


def stack_servers(cloud: auth.Cloud, stack_name: str) -> list[Any]:
    """The servers (any status) whose ``bbq_stack`` metadata names the stack, by name."""
    from bake.cloud.nova import Nova, Server

    nova = Nova(cloud)
    try:
        found = nova.client.servers.list(detailed=True)
    except Exception as exc:
        raise StackError(f"listing servers: {auth.describe(exc, cloud)}") from None
    servers = [Server.from_api(s) for s in found]
    return sorted((s for s in servers if s.metadata.get(STACK_KEY) == stack_name), key=_name)


def _name(server: Any) -> str:
    return server.name


def cmd_outputs(args: argparse.Namespace) -> int:
    heat = connect(args)
    stack = heat.stack(args.name)
    if args.key:
        out = heat.call(
            f"reading output {args.key}", heat.client.stacks.output_show, stack.id, args.key
        )["output"]
        if out.get("output_error"):
            raise StackError(f"output {args.key}: {out['output_error']}")
        value = out.get("output_value")
        print(json.dumps(value, indent=2) if args.format == "json" else sf.pretty(value))
        return 0
    full = heat.call(f"reading stack {args.name}", heat.client.stacks.get, stack.id)
    outputs = {o["output_key"]: o.get("output_value") for o in full.outputs or []}
    ui.emit_record(args, dict(sorted(outputs.items())))  # field/value table, or -f's format
    return 0


def cmd_list(args: argparse.Namespace) -> int:
    heat = connect(args)
    stacks = heat.call("listing stacks", lambda: list(heat.client.stacks.list()))
    rows = [
        {
            "name": s.stack_name,
            "status": s.stack_status,
            "created": s.creation_time,
            "updated": s.updated_time,
            "id": s.id,
        }
        for s in sorted(stacks, key=lambda s: s.stack_name)
    ]
    ui.emit_list(args, LIST_COLUMNS, rows)
    return 0


LIST_COLUMNS = ("name", "status", "created", "updated", "id")


# -- delete ----------------------------------------------------------------------------------


def cmd_delete(args: argparse.Namespace) -> int:
    heat = connect(args)
    stack = heat.stack(args.name)
    heat.call(f"deleting stack {args.name}", heat.client.stacks.delete, stack.id)
    if not args.wait:
        print(f"bake: stack {args.name}: DELETE_IN_PROGRESS", file=sys.stderr)
        return 0
    status = wait_gone(heat, stack.id, args.wait_seconds)
    left = leftovers(heat.cloud, args.name)
    if status == "DELETE_FAILED":
        reason = failure(heat, stack.id, heat.client.stacks.get(stack.id))
        raise StackError(f"stack {args.name} DELETE_FAILED: {reason}; left: {left or 'nothing'}")
    if status is not None:
        raise StackError(f"stack {args.name}: still {status} after {args.wait_seconds:.0f}s")
    if left:
        raise StackError(f"stack {args.name} deleted, but left: {left}")
    print(
        f"bake: stack {args.name} deleted; nothing left (servers, ports, security groups, volumes)"
    )
    return 0


def wait_gone(heat: Heat, stack_id: str, seconds: float) -> str | None:
    """None once Heat no longer has the stack (or reports it DELETE_COMPLETE); else the last
    status (DELETE_FAILED, or whatever it still is after ``seconds``)."""
    from heatclient import exc as heat_exc

    deadline = time.monotonic() + seconds
    status = None
    while time.monotonic() < deadline:
        try:
            status = heat.client.stacks.get(stack_id, resolve_outputs=False).stack_status
        except heat_exc.HTTPNotFound:
            return None
        except Exception as exc:
            raise StackError(f"reading stack {stack_id}: {heat_message(exc)}") from None
        if status == "DELETE_COMPLETE":
            return None
        if status == "DELETE_FAILED":
            return status
        time.sleep(POLL_SECONDS)
    return status


def leftovers(cloud: auth.Cloud, stack_name: str) -> str:
    """What of the stack the cloud still has: servers by metadata; ports, security groups and
    (when the catalog has Cinder) volumes by the stack's name prefix (its resources are named
    ``<stack>-<what>``)."""
    parts = [f"server {s.name}" for s in stack_servers(cloud, stack_name)]
    prefix = f"{stack_name}-"
    listings = [
        ("port", "network", "/v2.0/ports", "ports"),
        ("security group", "network", "/v2.0/security-groups", "security_groups"),
    ]
    if cloud.has_service("volumev3"):
        listings.append(("volume", "volumev3", "/volumes", "volumes"))
    for kind, service, path, key in listings:
        try:
            url = cloud.endpoint(service).rstrip("/") + path
            found = cloud.session.get(url).json()[key]  # the session timeout
        except Exception as exc:
            raise StackError(f"listing {key}: {auth.describe(exc, cloud)}") from None
        parts += [f"{kind} {x['name']}" for x in found if (x.get("name") or "").startswith(prefix)]
    return ", ".join(parts)
