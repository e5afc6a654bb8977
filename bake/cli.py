"""The ``bake`` command line: thin wrappers that parse arguments and call the step modules.

Exit codes: 0 success (or nothing to do), 1 a build or operation failed, 2 bad input
(spec, arguments, artifact), 130/143 interrupted by SIGINT/SIGTERM, 141 the reader of
stdout went away (SIGPIPE: ``bake list | head``), quietly.
"""

from __future__ import annotations

import argparse
import json
import os
import shlex
import signal
import sys
from collections.abc import Callable
from pathlib import Path

from bake import resources, ui
from bake import spec as specs
from bake.artifacts import Store
from bake.errors import EXIT_BAD_INPUT, EXIT_FAILED, BakeError, InputError


def _elements_dir(args: argparse.Namespace, spec_path: Path) -> Path:
    if args.elements_dir:
        return Path(args.elements_dir)
    return resources.elements_dir(spec_path)  # the checkout's, else the shipped ones


def _load(args: argparse.Namespace, path: str) -> specs.Spec:
    spec_path = resources.spec_path(path)  # a file, or a shipped spec's name (`base`)
    elements_dir = _elements_dir(args, spec_path)
    spec = specs.load_spec(spec_path, [elements_dir], root=Path.cwd())
    if getattr(args, "partitioned", None) is not None:
        spec = spec.replace(partitioned=args.partitioned)
    return spec


def _plan_and_fingerprint(args: argparse.Namespace, path: str):
    from bake.fingerprint import fingerprint
    from bake.plan import make_plan

    spec = _load(args, path)
    elements_dir = _elements_dir(args, resources.spec_path(path))
    try:
        plan = make_plan(spec, elements_dir, os.environ, app_dir=elements_dir.parent / "app")
    except InputError as exc:
        raise InputError(f"{path}: {exc}") from None
    return plan, fingerprint(plan)


def cmd_validate(args: argparse.Namespace) -> int:
    paths = args.specs or [str(p) for p in specs.spec_files(resources.specs_dir())]
    if not paths:
        raise InputError(f"no specs given and none found in {resources.specs_dir()}/")
    failed = 0
    for path in paths:
        try:
            _load(args, path)
        except specs.SpecError as exc:
            failed += 1
            for problem in exc.problems:
                print(f"error: {problem}", file=sys.stderr)
        else:
            print(f"ok: {path}")
    return EXIT_BAD_INPUT if failed else 0


def cmd_fingerprint(args: argparse.Namespace) -> int:
    plan, fp = _plan_and_fingerprint(args, args.spec)
    if args.json:
        print(json.dumps({"fingerprint": fp.value, **fp.inputs}, indent=2, sort_keys=True))
    else:
        print(fp.value)
    return 0


def cmd_build(args: argparse.Namespace) -> int:
    from bake import build, dib

    plan, fp = _plan_and_fingerprint(args, args.spec)
    store = Store(args.output)
    name = plan.spec.name
    if args.dry_run:
        final = store.path_for(name, fp.value) / name
        print(f"# {name} {plan.spec.version}  fingerprint {fp.value}")
        print("env \\")
        for key, value in plan.environment.items():
            print(f"  {key}={shlex.quote(value)} \\")
        print("  " + " ".join(shlex.quote(a) for a in plan.command(final)))
        return 0
    print(f"bake: {name} {plan.spec.version}: fingerprint {fp.value}", file=sys.stderr)

    def show_report(report) -> None:
        for line in report.lines():
            print(f"bake: {name}: smoke: {line}", file=sys.stderr)

    try:
        outcome = build.build(
            plan,
            fp,
            store,
            force=args.force,
            smoke=not args.no_test,
            on_report=show_report,
            on_log=lambda path: print(f"bake: {name}: log: {path}", file=sys.stderr, flush=True),
        )
    except dib.BuildInterrupted as exc:
        print(f"bake: {name}: {exc}; nothing was kept", file=sys.stderr)
        return 128 + exc.signum
    artifact = outcome.artifact
    if outcome.skipped:
        print(f"bake: {name}: up to date, not rebuilt (use --force): {artifact.path}")
    else:
        size = artifact.manifest["total_size"] / 2**20
        seconds = artifact.manifest["build_seconds"]
        print(f"bake: {name}: built in {seconds:.0f}s, {size:.0f} MiB: {artifact.path}")
    if args.publish:
        return _smoke_then_publish(args, artifact)
    return 0


def _smoke_then_publish(args: argparse.Namespace, artifact) -> int:
    """``build --publish``: smoke test an artifact that has not passed one (unless --no-test
    or the spec has no checks), then publish it; a failed smoke test publishes nothing."""
    from bake.cloud import commands as cloud_commands

    if artifact.manifest.get("status") != "good":
        if args.no_test or not artifact.spec.get("smoke"):
            why = "--no-test" if args.no_test else "the spec has no smoke checks"
            print(f"bake: {artifact.name}: publishing untested ({why})", file=sys.stderr)
        else:
            code = cmd_test(argparse.Namespace(**{**vars(args), "target": str(artifact.path)}))
            if code != 0:
                return code
    return cloud_commands.run_publish(args, artifact)


def _artifact_for(args: argparse.Namespace, target: str):
    """An artifact directory, or the stored artifact of a spec's current fingerprint."""
    from bake.artifacts import MANIFEST, Artifact

    path = resources.spec_path(target)  # a spec's name (`spark`) finds the spec
    target = str(path)
    if path.is_dir() or path.name == MANIFEST or not path.exists():
        if not path.exists():
            raise InputError(f"{target}: no such artifact directory or spec file")
        return Artifact.load(path.parent if path.name == MANIFEST else path)
    plan, fp = _plan_and_fingerprint(args, target)
    artifact = Store(args.output).find(plan.spec.name, fp.value)
    if artifact is None:
        raise InputError(
            f"{target}: no artifact with fingerprint {fp.value[:12]} in {args.output} "
            "(run `bake build` first)"
        )
    return artifact


def cmd_publish(args: argparse.Namespace) -> int:
    from bake.cloud import commands as cloud_commands

    return cloud_commands.run_publish(args, _artifact_for(args, args.target))


def cmd_images(args: argparse.Namespace) -> int:
    from bake.cloud import commands as cloud_commands

    return cloud_commands.run_images(args)


def cmd_prune(args: argparse.Namespace) -> int:
    from bake.cloud import commands as cloud_commands

    return cloud_commands.run_prune(args)


def cmd_test(args: argparse.Namespace) -> int:
    import tempfile

    from bake import instances
    from bake.artifacts import SMOKE_REPORT, Artifact

    target = resources.spec_path(args.target)  # a spec's name (`spark`) finds the spec
    if target.is_dir():
        artifact = Artifact.load(target)
    else:
        plan, fp = _plan_and_fingerprint(args, args.target)
        artifact = Store(args.output).find(plan.spec.name, fp.value)
        if artifact is None:
            raise InputError(
                f"{args.target}: no built artifact with fingerprint {fp.value[:12]} in "
                f"{args.output}; run bake build first"
            )
    checks = artifact.spec.get("smoke") or []
    if not checks:
        raise InputError(f"{artifact.path}: the spec has no smoke checks")
    with tempfile.TemporaryDirectory(prefix="bake-test-") as work:
        if args.qemu:
            from bake.instances import qemu

            try:
                qemu.preflight(args.accel)
            except instances.InstanceError as exc:
                raise InputError(str(exc)) from None
            report = qemu.smoke_test(artifact, checks, Path(work), args.accel)
        else:
            report = instances.smoke_test(artifact.tar_file(), checks, artifact.name, Path(work))
    (artifact.path / SMOKE_REPORT).write_text(json.dumps(report.to_dict(), indent=2) + "\n")
    for line in report.lines():
        print(f"{artifact.name}: {line}")
    verdict = "passed" if report.passed else "FAILED"
    print(f"{artifact.name}: smoke test {verdict} (boot {report.boot_seconds:.0f}s)")
    return 0 if report.passed else EXIT_FAILED


def cmd_list(args: argparse.Namespace) -> int:
    store = Store(args.output)
    artifacts = list(store.artifacts())
    if args.json:
        # Machine-readable: whole fingerprints, sizes in bytes, the artifact's directory.
        print(json.dumps([_list_entry(a) for a in artifacts], indent=2))
        return 0
    if not artifacts:
        print(f"no artifacts in {store.root}")
        return 0
    rows = [
        (
            a.name,
            a.version,
            a.fingerprint[:12],
            a.manifest.get("status", "untested"),
            ui.mib(a.manifest.get("total_size", 0)),
            a.manifest.get("built_at", "-"),
        )
        for a in artifacts
    ]
    print(ui.table(_LIST_HEADER, rows))
    return 0


def _list_entry(artifact) -> dict:
    manifest = artifact.manifest
    return {
        "name": artifact.name,
        "version": artifact.version,
        "fingerprint": artifact.fingerprint,
        "status": manifest.get("status", "untested"),
        "size": manifest.get("total_size", sum(f["size"] for f in artifact.files.values())),
        "built": manifest.get("built_at"),
        "path": str(artifact.path),
    }


_LIST_HEADER = ("name", "version", "fingerprint", "status", "size", "built")


def cmd_matrix(args: argparse.Namespace) -> int:
    from bake.matrix import commands as matrix_commands

    return matrix_commands.command(args)


def cmd_stack(args: argparse.Namespace) -> int:
    from bake.cloud import stack

    return stack.command(args)


def build_parser() -> argparse.ArgumentParser:
    from bake.cloud import commands as cloud_commands
    from bake.cloud import stack as stack_commands
    from bake.matrix import commands as matrix_commands

    parser = argparse.ArgumentParser(prog="bake", description=__doc__.splitlines()[0])
    parser.add_argument("--version", action="version", version=f"bake {resources.version()}")
    parser.add_argument(
        "--elements-dir",
        help="our elements (default: elements/ of the spec's checkout, else of the current "
        "directory, else the ones shipped with bake)",
    )
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")

    def command(name: str, func: Callable[[argparse.Namespace], int], help: str):
        p = sub.add_parser(name, help=help, description=help)
        p.set_defaults(func=func)
        return p

    def output_option(p: argparse.ArgumentParser) -> None:
        p.add_argument(
            "--output",
            default=os.environ.get("BBQ_ARTIFACTS", "artifacts"),
            help="artifact store (default: $BBQ_ARTIFACTS or ./artifacts)",
        )

    def partition_options(p: argparse.ArgumentParser) -> None:
        group = p.add_mutually_exclusive_group()
        group.add_argument(
            "--plain",
            dest="partitioned",
            action="store_false",
            default=None,
            help="plain filesystem image + kernel/initrd (no device-mapper needed)",
        )
        group.add_argument(
            "--partitioned",
            dest="partitioned",
            action="store_true",
            help="partitioned disk image (vm element; needs device-mapper)",
        )

    p = command("validate", cmd_validate, "check specs; report every problem, build nothing")
    p.add_argument("specs", nargs="*", metavar="SPEC", help="default: image-specs/*.yaml")

    p = command("fingerprint", cmd_fingerprint, "print the fingerprint of a spec's build")
    p.add_argument("spec", metavar="SPEC")
    p.add_argument("--json", action="store_true", help="also print every input hashed")
    partition_options(p)

    p = command("build", cmd_build, "build a spec's image into the artifact store")
    p.add_argument("spec", metavar="SPEC")
    output_option(p)
    p.add_argument("--dry-run", action="store_true", help="print the command and environment")
    p.add_argument("--force", action="store_true", help="rebuild even if up to date")
    p.add_argument(
        "--no-test", action="store_true", help="do not boot the image for its smoke checks"
    )
    partition_options(p)
    p.add_argument("--publish", action="store_true", help="then publish to Glance (bake publish)")
    cloud_commands.add_publish_options(p)
    cloud_commands.add_cloud_options(p)

    p = command("test", cmd_test, "boot a built image as an instance and run its smoke checks")
    p.add_argument("target", metavar="SPEC|ARTIFACT", help="a spec file or an artifact directory")
    p.add_argument(
        "--qemu",
        action="store_true",
        help="boot the disk image with its own kernel under QEMU instead of systemd-nspawn",
    )
    p.add_argument(
        "--accel",
        choices=("tcg", "kvm"),
        default="tcg",
        help="QEMU accelerator (default tcg: emulation, works without KVM; slower)",
    )
    output_option(p)
    partition_options(p)

    p = command("matrix", cmd_matrix, "build the image matrix's rows in parallel, then a table")
    output_option(p)
    partition_options(p)
    matrix_commands.add_arguments(p)

    p = command(
        "stack",
        cmd_stack,
        "the whole stack (stacks/) on Heat, or on this machine with --local: create, update, ...",
    )
    stack_commands.add_arguments(p)

    p = command("list", cmd_list, "list the artifacts in the store")
    output_option(p)
    p.add_argument("--json", action="store_true")

    p = command("publish", cmd_publish, "upload an artifact to Glance (once per fingerprint)")
    p.add_argument("target", metavar="ARTIFACT|SPEC", help="artifact directory or spec file")
    output_option(p)
    partition_options(p)
    cloud_commands.add_publish_options(p)
    cloud_commands.add_cloud_options(p)

    p = command("images", cmd_images, "list the images published to Glance, per spec")
    p.add_argument("--spec", metavar="NAME", help="only this spec's images")
    p.add_argument("--hidden", action="store_true", help="also images hidden by --hide-older")
    p.add_argument("--json", action="store_true")
    cloud_commands.add_cloud_options(p)

    p = command("prune", cmd_prune, "delete (or deactivate) older published images of a spec")
    p.add_argument("--spec", metavar="NAME", help="only this spec (default: every spec)")
    p.add_argument("--keep", type=int, required=True, metavar="N", help="newest images to keep")
    p.add_argument("--dry-run", action="store_true", help="only say what would be pruned")
    p.add_argument("--deactivate", action="store_true", help="deactivate instead of delete")
    p.add_argument("--yes", action="store_true", help="do not ask (needed without a terminal)")
    p.add_argument(
        "--allow-age-only",
        action="store_true",
        help="prune by age alone when the cloud has no compute service to ask what is in use",
    )
    cloud_commands.add_cloud_options(p)
    return parser


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    try:
        return args.func(args)
    except BakeError as exc:
        for line in exc.lines():
            print(f"error: {line}", file=sys.stderr)
        return exc.exit_code
    except KeyboardInterrupt:
        return 128 + signal.SIGINT
    except BrokenPipeError:
        # The reader went away (`bake list | head`): end quietly, as the shell's own tools do
        # when SIGPIPE ends them, and keep Python from complaining when it flushes stdout.
        devnull = os.open(os.devnull, os.O_WRONLY)
        os.dup2(devnull, sys.stdout.fileno())
        return 128 + signal.SIGPIPE


if __name__ == "__main__":
    sys.exit(main())
