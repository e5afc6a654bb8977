"""``bake stack ACTION --local``: the local stack's side of ``bake stack`` (options added to
the same subcommands by :func:`add_arguments`, run by :func:`run`).

Commands::

    bake stack create --local NAME [--workers N] [--datastore-url URL] [--zaqar-url URL]
                      [--queue Q] [--image ROLE=ARTIFACT_DIR]... [--serial] [--output STORE]
    bake stack show --local NAME [-f json|yaml|...]
    bake stack outputs --local NAME [KEY] [-f json|yaml|...]
    bake stack delete --local NAME [--keep-rootfs]
    bake stack list --local [-f json|yaml|csv|...]
"""

from __future__ import annotations

import argparse
import json
import os
from pathlib import Path

from bake import ui
from bake.cloud import stackfiles as sf
from bake.cloud.local import create, remove, roles
from bake.cloud.local import state as st
from bake.errors import InputError, OperationFailed

LOCAL_ONLY = {
    "create": ("datastore_url", "zaqar_url", "queue", "serial", "ready_timeout"),
    "delete": ("keep_rootfs",),
}


def add_arguments(p: argparse.ArgumentParser, action: str) -> None:
    """``--local`` and the local options of ``bake stack ACTION``."""
    group = p.add_argument_group("local stack (--local)")
    group.add_argument(
        "--local",
        action="store_true",
        help="the stack on this machine: images from the artifact store, instances "
        "booted with systemd-nspawn (see bake/cloud/local/)",
    )
    group.add_argument(
        "--output",
        default=os.environ.get("BBQ_ARTIFACTS") or "artifacts",
        help="--local: artifact store, also holding local stacks' state (default: "
        "$BBQ_ARTIFACTS or ./artifacts)",
    )
    if action == "create":
        group.add_argument(
            "--datastore-url",
            metavar="URL",
            default="",
            help="--local: a MongoDB the job stores into (default: SecantusDB started on the host)",
        )
        group.add_argument(
            "--zaqar-url",
            metavar="URL",
            default="",
            help="--local: the Zaqar the job reads (default: Zaqar started on the host, on Redis)",
        )
        group.add_argument("--queue", default="bbq", help="--local: the Zaqar queue")
        group.add_argument(
            "--serial",
            action="store_true",
            help="--local: boot the roles one after another, each waited for",
        )
        group.add_argument(
            "--ready-timeout",
            type=float,
            default=600,
            metavar="S",
            help="--local: seconds for every role to report ready (default 600)",
        )
    if action == "delete":
        group.add_argument(
            "--keep-rootfs",
            action="store_true",
            help="--local: keep the unpacked images for the next create",
        )


def check_flags(args: argparse.Namespace, action: str) -> None:
    """InputError when a local-only option is given without --local."""
    if getattr(args, "local", False):
        return
    defaults = {
        "datastore_url": "",
        "zaqar_url": "",
        "queue": "bbq",
        "serial": False,
        "ready_timeout": 600,
        "keep_rootfs": False,
    }
    for key in LOCAL_ONLY.get(action, ()):
        if getattr(args, key, defaults[key]) != defaults[key]:
            raise InputError(f"--{key.replace('_', '-')} needs --local")


def run(args: argparse.Namespace, action: str) -> int:
    return ACTIONS[action](args)


def _store(args: argparse.Namespace) -> Path:
    return Path(args.output)


# -- create ----------------------------------------------------------------------------------


def cmd_create(args: argparse.Namespace) -> int:
    unsupported = [
        flag
        for flag, value in (
            ("-P", args.parameter),
            ("--template", args.template),
            ("--environment", args.environment),
            ("--dry-run", args.dry_run),
        )
        if value
    ]
    if unsupported:
        raise InputError(
            f"{unsupported[0]}: not for --local (the local stack has no template "
            "parameters; see bake stack create --help)"
        )
    pinned = _pinned(args.image)
    settings = roles.Settings(
        workers=args.workers if args.workers is not None else 2,
        zaqar_url=args.zaqar_url,
        queue=args.queue,
        datastore_url=args.datastore_url,
    )
    request = create.Request(
        name=args.name,
        store=_store(args),
        settings=settings,
        pinned=pinned,
        serial=args.serial,
        ready_timeout=args.ready_timeout,
    )
    stack = create.create(request)
    ui.emit_record(args, dict(sorted(stack.outputs.items())))
    return 0


def _pinned(items: list[str]) -> dict[str, str]:
    pinned = {}
    for item in items:
        role, sep, path = item.partition("=")
        if not sep or role not in sf.ROLES or role == "datastore":
            booted = ", ".join(r for r in sf.ROLES if r != "datastore")
            raise InputError(f"--image {item!r}: expected ROLE=ARTIFACT_DIR (roles: {booted})")
        pinned[role] = path
    return pinned


# -- show / outputs / list -------------------------------------------------------------------


def _live(server: st.Server) -> str:
    from bake.instances.nspawn import is_instance_process

    running = bool(server.pid) and is_instance_process(server.pid, Path(server.workdir))
    return server.status if running else f"{server.status} (not running)"


def cmd_show(args: argparse.Namespace) -> int:
    stack = st.load(_store(args), args.name)
    if args.format:
        document = stack.to_dict()
        document["running"] = {s.name: _live(s) for s in stack.servers}
        ui.emit_record(args, dict(sorted(document.items())))
        return 0
    print(f"{stack.name}  (local, {stack.path})")
    print(f"status      {stack.status}: {stack.reason}")
    print(f"created     {stack.created}")
    for key, value in sorted(stack.parameters.items()):
        print(f"  {key} = {value}")
    for server in stack.servers:
        print(
            f"  {server.role:<10} {server.name:<28} {_live(server):<10} {server.address:<12} "
            f"ssh 127.0.0.1:{server.ssh_port}"
        )
    for host in stack.host_servers:
        print(f"  {host.name:<10} {host.what} at {host.url} (host, pid {host.pid})")
    print(f"ssh         key {stack.key}, known_hosts {stack.known_hosts}")
    return 0


def cmd_outputs(args: argparse.Namespace) -> int:
    stack = st.load(_store(args), args.name)
    if args.key:
        if args.key not in stack.outputs:
            known = ", ".join(sorted(stack.outputs)) or "none yet: " + stack.status
            raise InputError(f"local stack {args.name}: no output {args.key!r} ({known})")
        value = stack.outputs[args.key]
        print(json.dumps(value, indent=2) if args.format == "json" else sf.pretty(value))
        return 0
    ui.emit_record(args, dict(sorted(stack.outputs.items())))
    return 0


def cmd_list(args: argparse.Namespace) -> int:
    stacks = st.all_stacks(_store(args))
    rows = [
        {
            "name": s.name,
            "status": s.status,
            "created": s.created,
            "servers": len(s.servers),
            "addresses": s.subnet + ".0/24",
        }
        for s in stacks
    ]
    ui.emit_list(args, LIST_COLUMNS, rows)
    return 0


LIST_COLUMNS = ("name", "status", "created", "servers", "addresses")


# -- delete ----------------------------------------------------------------------------------


def cmd_delete(args: argparse.Namespace) -> int:
    stack = st.load(_store(args), args.name)
    left = remove.delete(stack, keep_rootfs=args.keep_rootfs)
    if left:
        raise OperationFailed(f"local stack {args.name} deleted, but left: {', '.join(left)}")
    what = f"{len(stack.servers)} instance(s), {len(stack.host_servers)} host server(s)"
    print(
        f"bake: local stack {args.name} deleted ({what}); nothing left "
        "(instances, mounts, processes)"
    )
    return 0


ACTIONS = {
    "create": cmd_create,
    "show": cmd_show,
    "outputs": cmd_outputs,
    "delete": cmd_delete,
    "list": cmd_list,
}
