"""Command-line glue for ``bake publish``, ``bake images``, ``bake prune`` and
``bake build --publish``: options, output and the mapping of errors to one line + exit code.

The work itself is in :mod:`bake.cloud.auth`, :mod:`bake.cloud.publish`,
:mod:`bake.cloud.glance` and :mod:`bake.cloud.prune`; :mod:`bake.cli` only registers these
functions.
"""

from __future__ import annotations

import argparse
import json
import logging
import os
import signal
import sys
from typing import Any

from bake import ui
from bake.artifacts import Artifact
from bake.cloud import auth
from bake.cloud import glance as g
from bake.cloud import prune as pr
from bake.cloud import publish as pub
from bake.errors import InputError, OperationFailed


def add_cloud_options(p: argparse.ArgumentParser) -> None:
    """The options every command that talks to the cloud takes (as OpenStack CLIs spell them)."""
    group = p.add_argument_group("cloud (clouds.yaml, OS_* variables, or an oslo.config file)")
    group.add_argument(
        "--os-cloud", metavar="NAME", help="cloud in clouds.yaml (default: $OS_CLOUD / OS_*)"
    )
    group.add_argument("--os-region-name", metavar="REGION", help="catalog region")
    group.add_argument(
        "--os-interface",
        choices=("public", "internal", "admin"),
        help="catalog interface (default: the cloud's, else public)",
    )
    group.add_argument(
        "--config-file",
        metavar="FILE",
        help="oslo.config file whose [keystone] group holds keystoneauth1 options",
    )
    group.add_argument(
        "--retry-seconds",
        type=float,
        default=float(os.environ.get("BAKE_RETRY_SECONDS", 30)),
        metavar="S",
        help="retry transient Glance errors for up to S seconds (default 30)",
    )


def add_publish_options(p: argparse.ArgumentParser) -> None:
    progress = p.add_mutually_exclusive_group()
    progress.add_argument(
        "--progress", dest="progress", action="store_true", default=None, help="progress bar"
    )
    progress.add_argument("--no-progress", dest="progress", action="store_false")


def _connect(args: argparse.Namespace) -> auth.Cloud:
    _quiet_libraries()
    try:
        cloud = auth.connect(
            cloud=args.os_cloud,
            config_file=args.config_file,
            region=args.os_region_name,
            interface=args.os_interface,
        )
        cloud.check()
        cloud.endpoint("image")
    except auth.AuthError as exc:
        raise InputError(str(exc)) from None
    return cloud


def _quiet_libraries() -> None:
    """Show bake's own warnings (retries) as ``bake: ...``; keep the client libraries' log
    chatter (keystoneauth's discovery fallbacks, ...) off stderr: errors arrive as exceptions."""
    root = logging.getLogger()
    if not root.handlers:
        root.addHandler(logging.NullHandler())
    ours = logging.getLogger("bake")
    if not ours.handlers:
        handler = logging.StreamHandler(sys.stderr)
        handler.setFormatter(logging.Formatter("bake: %(message)s"))
        ours.addHandler(handler)
        ours.setLevel(logging.WARNING)


def _retry(args: argparse.Namespace) -> g.RetryPolicy:
    return g.RetryPolicy(seconds=args.retry_seconds)


def run_publish(args: argparse.Namespace, artifact: Artifact) -> int:
    """Publish one artifact; print what happened on one line."""
    cloud = _connect(args)
    caught: list[int] = []

    def interrupt(signum: int, _frame: Any) -> None:
        caught.append(signum)
        raise KeyboardInterrupt  # publish deletes the half-made image, then re-raises

    previous = signal.signal(signal.SIGTERM, interrupt)
    try:
        result = pub.publish(
            artifact, cloud, retry=_retry(args), progress=getattr(args, "progress", None)
        )
    except pub.Interrupted as exc:
        signum = caught[0] if caught else signal.SIGINT
        print(f"error: {artifact.name}: {exc} ({signal.Signals(signum).name})", file=sys.stderr)
        return 128 + signum
    except (pub.PublishError, g.GlanceError) as exc:
        raise OperationFailed(f"{artifact.name}: {exc}") from None
    except auth.AuthError as exc:
        raise InputError(str(exc)) from None
    finally:
        signal.signal(signal.SIGTERM, previous)
    for leftover in result.removed_leftovers:
        print(f"bake: {artifact.name}: removed leftover image {leftover}", file=sys.stderr)
    if not result.uploaded:
        print(
            f"bake: {artifact.name}: already published as image {result.image_id} "
            f"({result.name}, fingerprint {artifact.fingerprint[:12]}); nothing sent"
        )
        return 0
    mib = result.bytes_sent / 2**20
    rate = mib / result.seconds if result.seconds else 0.0
    print(
        f"bake: {artifact.name}: published image {result.image_id} ({result.name}): "
        f"{mib:.0f} MiB in {result.seconds:.1f}s ({rate:.0f} MiB/s), sha512 and md5 verified"
    )
    return 0


def run_images(args: argparse.Namespace) -> int:
    """List published images, per spec, newest first."""
    cloud = _connect(args)
    try:
        rows = pr.list_images(g.Glance(cloud, _retry(args)), spec=args.spec)
    except g.GlanceError as exc:
        raise OperationFailed(str(exc)) from None
    if args.json:
        print(json.dumps([{**vars(r), "age": r.age()} for r in rows], indent=2))
        return 0
    if not rows:
        print("no published images" + (f" of spec {args.spec}" if args.spec else ""))
        return 0
    print(
        ui.table(
            ("spec", "version", "fingerprint", "size", "status", "age", "id"),
            [
                (r.spec, r.version, r.fingerprint[:12], ui.mib(r.size), r.status, r.age(), r.id)
                for r in rows
            ],
        )
    )
    return 0


def run_prune(args: argparse.Namespace) -> int:
    """Prune one spec's images (or every spec's): keep the newest N and those in use."""
    cloud = _connect(args)
    glance = g.Glance(cloud, _retry(args))
    try:
        specs = [args.spec] if args.spec else sorted({r.spec for r in pr.list_images(glance)})
        for spec in specs:
            result = pr.prune(
                glance, spec, args.keep, dry_run=args.dry_run, deactivate=args.deactivate
            )
            _report_prune(spec, result)
    except g.GlanceError as exc:
        raise OperationFailed(str(exc)) from None
    return 0


def _report_prune(spec: str, result: pr.PruneResult) -> None:
    verb = f"would {result.action}" if result.dry_run else f"{result.action}d"
    if not result.nova_checked and (result.pruned or result.skipped):
        chosen = "chosen" if result.dry_run else "pruned"
        print(
            f"bake: warning: {spec}: the catalog has no compute service (Nova), so in-use "
            f"checks were skipped: images {chosen} by age alone",
            file=sys.stderr,
        )
    for row in result.pruned:
        print(f"{spec}: {verb} {row.id} ({row.name}, {row.version}, {row.age()} old)")
    for row in result.kept:
        servers = result.in_use.get(row.id)
        why = f"in use by {', '.join(servers)}" if servers else "newest"
        print(f"{spec}: kept {row.id} ({row.name}, {row.version}): {why}")
    for row, reason in result.skipped:
        print(f"{spec}: skipped {row.id} ({row.name}): {reason}")
