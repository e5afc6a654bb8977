"""Command-line glue for ``bake publish``, ``bake images``, ``bake prune`` and
``bake build --publish``: options, output and the mapping of errors to one line + exit code.

The work itself is in :mod:`bake.cloud.auth`, :mod:`bake.cloud.publish`,
:mod:`bake.cloud.glance` and :mod:`bake.cloud.prune`; :mod:`bake.cli` only registers these
functions.
"""

from __future__ import annotations

import argparse
import dataclasses
import math
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
from bake.errors import EXIT_FAILED, InputError, Interrupted, OperationFailed


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
        metavar="S",
        help="retry transient Glance errors for up to S seconds "
        "(default $BAKE_RETRY_SECONDS, else 30)",
    )
    group.add_argument(
        "--api-timeout",
        metavar="S",
        help="seconds to wait for each answer of the cloud (default $BAKE_API_TIMEOUT, else "
        f"clouds.yaml's api_timeout, else {auth.DEFAULT_TIMEOUT:g})",
    )


def add_publish_options(p: argparse.ArgumentParser) -> None:
    """``bake publish`` and ``bake build --publish``: how the image is published and shown."""
    group = p.add_argument_group("publishing")
    group.add_argument(
        "--visibility",
        choices=pub.VISIBILITIES,
        help="Glance visibility (default: the spec's glance.visibility, else private)",
    )
    group.add_argument(
        "--tag",
        dest="tags",
        action="append",
        default=[],
        metavar="TAG",
        help="a Glance tag for the image (repeatable)",
    )
    group.add_argument(
        "--hide-older",
        action="store_true",
        help="then hide (os_hidden) the spec's older active images",
    )
    progress = group.add_mutually_exclusive_group()
    progress.add_argument(
        "--progress",
        dest="progress",
        action="store_true",
        default=None,
        help="progress bar (default: a bar on a terminal, else plain lines)",
    )
    progress.add_argument("--no-progress", dest="progress", action="store_false")
    group.add_argument(
        "--progress-interval",
        metavar="S",
        help="seconds between plain progress lines when not on a terminal "
        f"(default $BAKE_PROGRESS_INTERVAL, else {pub.PROGRESS_INTERVAL:g})",
    )


def seconds(option: str, value: str | None, variable: str, default: float | None) -> float | None:
    """A number of seconds from an option (``value``), else ``$variable``, else ``default``;
    InputError (one line) for anything but a finite number >= 0."""
    source = option
    if value is None:
        value, source = os.environ.get(variable), variable
    if value is None or value == "":
        return default
    try:
        number = float(value)
    except ValueError:
        number = math.nan
    if not math.isfinite(number) or number < 0:
        raise InputError(f"{source}: {value!r} is not a number of seconds (a number >= 0)")
    return number


def _publish_options(args: argparse.Namespace) -> pub.PublishOptions:
    interval = seconds(
        "--progress-interval",
        getattr(args, "progress_interval", None),
        "BAKE_PROGRESS_INTERVAL",
        pub.PROGRESS_INTERVAL,
    )
    return pub.PublishOptions(
        visibility=getattr(args, "visibility", None),
        tags=tuple(getattr(args, "tags", None) or ()),
        hide_older=getattr(args, "hide_older", False),
        progress=getattr(args, "progress", None),
        progress_interval=interval if interval is not None else pub.PROGRESS_INTERVAL,
    )


def _timeout(args: argparse.Namespace) -> float | None:
    """--api-timeout, else $BAKE_API_TIMEOUT, else None (the cloud's, else 60 s); also checks
    --retry-seconds, so that bad settings fail before any network call."""
    _retry(args)
    timeout = seconds("--api-timeout", args.api_timeout, "BAKE_API_TIMEOUT", None)
    if timeout == 0:
        raise InputError("--api-timeout: 0 seconds would never wait for an answer; give more")
    return timeout


def connect(args: argparse.Namespace, service: str = "image") -> auth.Cloud:
    """The cloud of a command's options (clouds.yaml, OS_*, --config-file; --api-timeout),
    its credentials checked and ``service`` found in its catalog; InputError (one line,
    exit 2) otherwise."""
    auth.quiet_libraries()
    timeout = _timeout(args)
    try:
        cloud = auth.connect(
            cloud=args.os_cloud,
            config_file=args.config_file,
            region=args.os_region_name,
            interface=args.os_interface,
            timeout=timeout,
        )
        cloud.check()
        cloud.endpoint(service)
    except auth.AuthError as exc:
        raise InputError(str(exc)) from None
    return cloud


def _retry(args: argparse.Namespace) -> g.RetryPolicy:
    retry = seconds("--retry-seconds", args.retry_seconds, "BAKE_RETRY_SECONDS", 30.0)
    return g.RetryPolicy(seconds=30.0 if retry is None else retry)


def _publish(args: argparse.Namespace, artifact: Artifact) -> pub.PublishResult:
    """Publish one artifact; errors as BakeError (an interrupt: Interrupted, 128 + n)."""
    options = _publish_options(args)
    if getattr(args, "quiet", False) and options.progress is None:
        options = dataclasses.replace(options, progress=False)
    cloud = connect(args)
    caught: list[int] = []

    def interrupt(signum: int, _frame: Any) -> None:
        caught.append(signum)
        raise KeyboardInterrupt  # publish deletes the half-made image, then re-raises

    previous = signal.signal(signal.SIGTERM, interrupt)
    try:
        result = pub.publish(artifact, cloud, retry=_retry(args), options=options)
    except pub.Interrupted as exc:
        signum = caught[0] if caught else signal.SIGINT
        name = signal.Signals(signum).name
        raise Interrupted(f"{artifact.name}: {exc} ({name})", signum) from None
    except (pub.PublishError, g.GlanceError) as exc:
        raise OperationFailed(f"{artifact.name}: {exc}") from None
    except auth.AuthError as exc:
        raise InputError(str(exc)) from None
    finally:
        signal.signal(signal.SIGTERM, previous)
    for leftover in result.removed_leftovers:
        ui.info(f"bake: {artifact.name}: removed leftover image {leftover}")
    return result


PUBLISH_FIELDS = ("name", "fingerprint", "image_id", "image_name", "uploaded", "bytes_sent")
PUBLISH_FIELDS += ("seconds", "sha512", "md5", "verified", "hidden", "removed_leftovers")


def publish_record(args: argparse.Namespace, artifact: Artifact) -> dict[str, Any]:
    """Publish one artifact; what ``bake publish -f json`` prints."""
    result = _publish(args, artifact)
    return {
        "name": artifact.name,
        "fingerprint": artifact.fingerprint,
        "image_id": result.image_id,
        "image_name": result.name,
        "uploaded": result.uploaded,
        "bytes_sent": result.bytes_sent,
        "seconds": round(result.seconds, 2),
        "sha512": result.sha512,
        "md5": result.md5,
        # the hashes Glance computed, compared with the artifact's (on upload)
        "verified": ["sha512", "md5"] if result.uploaded else [],
        "hidden": list(result.hidden),
        "removed_leftovers": list(result.removed_leftovers),
    }


def run_publish(args: argparse.Namespace, artifact: Artifact) -> int:
    """Publish one artifact; print what happened on one line (and one per image hidden), or
    the record in the -f format."""
    if getattr(args, "format", None) is not None:
        ui.emit_record(args, publish_record(args, artifact))
        return 0
    result = _publish(args, artifact)
    for hidden in result.hidden:
        print(f"bake: {artifact.name}: hid older image {hidden} (os_hidden)")
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
    """List published images, per spec, newest first (hidden ones too with --hidden)."""
    cloud = connect(args)
    try:
        glance = g.Glance(cloud, _retry(args))
        rows = pr.list_images(glance, spec=args.spec, hidden=args.hidden)
    except g.GlanceError as exc:
        raise OperationFailed(str(exc)) from None
    if not rows and args.format is None:
        print("no published images" + (f" of spec {args.spec}" if args.spec else ""))
        return 0
    records = [{**vars(r), "age": r.age(), "flags": _flags(r)} for r in rows]
    ui.emit_list(args, IMAGES_COLUMNS, records, IMAGES_DISPLAY, brief=IMAGES_BRIEF)
    return 0


IMAGES_COLUMNS = ("id", "name", "spec", "version", "fingerprint", "size", "status", "created_at")
IMAGES_COLUMNS += ("protected", "hidden", "latest", "visibility", "tags", "age", "flags")
IMAGES_BRIEF = ("spec", "version", "fingerprint", "size", "status", "age", "id", "name", "flags")
IMAGES_DISPLAY = {
    "fingerprint": lambda v: v[:12],
    "size": ui.mib,
    "flags": lambda v: ",".join(v) or "-",
}


def _flags(row: pr.ImageRow) -> list[str]:
    return [f for f, on in (("latest", row.latest), ("hidden", row.hidden)) if on]


def run_prune(args: argparse.Namespace) -> int:
    """Prune one spec's images (or every spec's): keep the newest N and those in use. On a
    terminal the plan is shown and confirmed first (unless --yes); without a terminal,
    --yes (or --dry-run) is required."""
    _timeout(args)
    ask = not (args.dry_run or args.yes)
    if ask and not sys.stdin.isatty():
        raise InputError(
            "prune: no terminal to confirm on: pass --yes to prune, or --dry-run to see what "
            "would be pruned"
        )
    cloud = connect(args)
    glance = g.Glance(cloud, _retry(args))
    try:
        specs = [args.spec] if args.spec else sorted({r.spec for r in pr.list_images(glance)})
        plans = [(spec, _plan(glance, spec, args)) for spec in specs]
        human = args.format is None
        if ask:
            for spec, result in plans:  # with -f, the plan to confirm goes to stderr
                _report_prune(spec, result, preview=True, stream=None if human else sys.stderr)
            if not _confirmed(plans):
                print("bake: prune: not confirmed; nothing pruned", file=sys.stderr)
                return EXIT_FAILED
        for spec, result in plans:
            if not args.dry_run and result.pruned:
                pr.apply(glance, result)
            if not human:
                continue
            if ask:
                _report_done(spec, result)
            else:
                _report_prune(spec, result)
    except g.GlanceError as exc:
        raise OperationFailed(str(exc)) from None
    if not human:
        rows = [row for spec, result in plans for row in _prune_rows(spec, result)]
        ui.emit_list(args, PRUNE_COLUMNS, rows)
    return 0


# -f/-c of bake prune: one row per image looked at; result: deleted, deactivated, would
# delete, would deactivate, kept or skipped.
PRUNE_COLUMNS = ("spec", "id", "name", "version", "age", "result", "reason")


def _prune_rows(spec: str, result: pr.PruneResult) -> list[dict[str, Any]]:
    def row(image: pr.ImageRow, outcome: str, reason: str) -> dict[str, Any]:
        return {
            "spec": spec,
            "id": image.id,
            "name": image.name,
            "version": image.version,
            "age": image.age(),
            "result": outcome,
            "reason": reason,
        }

    done = f"would {result.action}" if result.dry_run else f"{result.action}d"
    why = "" if result.nova_checked else "by age alone: no compute service to ask"
    rows = [row(image, done, why) for image in result.pruned]
    for image in result.kept:
        servers = result.in_use.get(image.id)
        rows.append(row(image, "kept", f"in use by {', '.join(servers)}" if servers else "newest"))
    rows += [row(image, "skipped", reason) for image, reason in result.skipped]
    return rows


def _plan(glance: g.Glance, spec: str, args: argparse.Namespace) -> pr.PruneResult:
    return pr.plan(
        glance,
        spec,
        args.keep,
        deactivate=args.deactivate,
        allow_age_only=args.allow_age_only,
        dry_run=args.dry_run,
    )


def _confirmed(plans: list[tuple[str, pr.PruneResult]]) -> bool:
    """Ask on the terminal whether to go ahead with the plans' pruning (True if none)."""
    count = sum(len(result.pruned) for _, result in plans)
    if not count:
        return True
    action = plans[0][1].action
    print(f"{action.capitalize()} {count} image(s)? [y/N] ", end="", file=sys.stderr, flush=True)
    answer = sys.stdin.readline().strip().lower()
    return answer in ("y", "yes")


def _report_prune(spec: str, result: pr.PruneResult, preview: bool = False, stream=None) -> None:
    """The plan (``preview``: what would be done, before asking) or what was done."""
    would = result.dry_run or preview
    verb = f"would {result.action}" if would else f"{result.action}d"
    if not result.nova_checked and (result.pruned or result.skipped):
        chosen = "chosen" if would else "pruned"
        print(
            f"bake: warning: {spec}: the catalog has no compute service (Nova), so in-use "
            f"checks were skipped: images {chosen} by age alone",
            file=sys.stderr,
        )
    for row in result.pruned:
        print(f"{spec}: {verb} {row.id} ({row.name}, {row.version}, {row.age()} old)", file=stream)
    for row in result.kept:
        servers = result.in_use.get(row.id)
        why = f"in use by {', '.join(servers)}" if servers else "newest"
        print(f"{spec}: kept {row.id} ({row.name}, {row.version}): {why}", file=stream)
    for row, reason in result.skipped:
        print(f"{spec}: skipped {row.id} ({row.name}): {reason}", file=stream)


def _report_done(spec: str, result: pr.PruneResult) -> None:
    for row in result.pruned:
        print(f"{spec}: {result.action}d {row.id} ({row.name}, {row.version})")
