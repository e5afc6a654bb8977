"""bake: bake Big Data BBQ's OpenStack images, publish them to Glance, launch their stack.

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
from pathlib import Path

from cliff import _argparse, app, command, commandmanager

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
    rows = []
    for path in paths:
        try:
            spec = _load(args, path)
        except specs.SpecError as exc:
            for problem in exc.problems:
                ui.error(str(problem))
            problems = [str(p) for p in exc.problems]
            rows.append({"spec": path, "name": None, "valid": False, "problems": problems})
        else:
            if args.format is None:
                print(f"ok: {path}")
            rows.append({"spec": path, "name": spec.name, "valid": True, "problems": []})
    if args.format is not None:
        ui.emit_list(args, VALIDATE_COLUMNS, rows, {"problems": lambda p: str(len(p))})
    return EXIT_BAD_INPUT if any(not r["valid"] for r in rows) else 0


VALIDATE_COLUMNS = ("spec", "name", "valid", "problems")
FINGERPRINT_FIELDS = ("fingerprint", "format", "spec", "elements", "environment", "dib_version")
FINGERPRINT_FIELDS += ("app",)


def cmd_fingerprint(args: argparse.Namespace) -> int:
    plan, fp = _plan_and_fingerprint(args, args.spec)
    if args.format is None:
        print(fp.value)
        return 0
    record = {"fingerprint": fp.value, **fp.inputs}
    if args.format == "json" and not args.columns:  # --json: the whole document, keys sorted
        print(json.dumps(record, indent=None if args.noindent else 2, sort_keys=True))
    else:
        ui.emit_record(args, record)
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
    ui.info(f"bake: {name} {plan.spec.version}: fingerprint {fp.value}")

    def show_report(report) -> None:
        for line in report.lines():
            ui.info(f"bake: {name}: smoke: {line}")

    follower = ui.Follower(ui.BUILD_LOG_LOGGER) if args.verbose else None

    def on_log(path: Path) -> None:
        ui.info(f"bake: {name}: log: {path}")
        if follower:
            follower.start(path)

    try:
        outcome = build.build(
            plan,
            fp,
            store,
            force=args.force,
            on_phase=dib.print_phase if not args.quiet else lambda *_: None,
            smoke=not args.no_test,
            on_report=show_report,
            on_log=on_log,
            keep_failed=args.keep_failed,
        )
    except dib.BuildInterrupted as exc:
        ui.PROGRESS.warning(f"bake: {name}: {exc}; nothing was kept")  # shown even with -q
        return 128 + exc.signum
    finally:
        if follower:
            follower.stop()
    artifact = outcome.artifact
    record = _build_record(artifact, outcome.skipped)
    if args.publish:
        return _smoke_then_publish(args, artifact, record)
    _show_build(args, record)
    return 0


BUILD_FIELDS = ("name", "version", "fingerprint", "status", "path", "image", "size", "seconds")
BUILD_FIELDS += ("built_at", "smoke", "log", "published")


def _build_record(artifact, skipped: bool) -> dict:
    """What ``bake build -f json`` prints: the artifact, how it was made, its smoke result."""
    from bake.artifacts import BUILD_LOG, ArtifactError

    try:
        image = str(artifact.image_file()[0])
    except ArtifactError:
        image = None  # a tar-only spec
    manifest = artifact.manifest
    return {
        "name": artifact.name,
        "version": artifact.version,
        "fingerprint": artifact.fingerprint,
        "status": "up to date" if skipped else "built",
        "path": str(artifact.path),
        "image": image,
        "size": manifest.get("total_size"),
        "seconds": manifest.get("build_seconds"),
        "built_at": manifest.get("built_at"),
        "smoke": manifest.get("smoke"),
        "log": str(artifact.path / BUILD_LOG),
        "published": None,
    }


def _show_build(args: argparse.Namespace, record: dict) -> None:
    if args.format is not None:
        ui.emit_record(args, record, {"size": ui.mib})
    elif record["status"] == "up to date":
        print(f"bake: {record['name']}: up to date, not rebuilt (use --force): {record['path']}")
    else:
        size, seconds = record["size"] / 2**20, record["seconds"]
        print(f"bake: {record['name']}: built in {seconds:.0f}s, {size:.0f} MiB: {record['path']}")


def _smoke_then_publish(args: argparse.Namespace, artifact, record: dict) -> int:
    """``build --publish``: smoke test an artifact that has not passed one (unless --no-test
    or the spec has no checks), then publish it; a failed smoke test publishes nothing."""
    from bake.cloud import commands as cloud_commands

    if args.format is None:
        _show_build(args, record)
    if artifact.manifest.get("status") != "good":
        if args.no_test or not artifact.spec.get("smoke"):
            why = "--no-test" if args.no_test else "the spec has no smoke checks"
            ui.info(f"bake: {artifact.name}: publishing untested ({why})")
        else:
            report = _smoke_test(args, artifact)
            record["smoke"] = _test_record(artifact, report)
            if not report.passed:
                _show_build(args, record)
                return EXIT_FAILED
    if args.format is None:
        return cloud_commands.run_publish(args, artifact)
    record["published"] = cloud_commands.publish_record(args, artifact)
    _show_build(args, record)
    return 0


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
    from bake.artifacts import Artifact

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
    report = _smoke_test(args, artifact)
    if args.format is not None:
        ui.emit_record(args, _test_record(artifact, report))
    return 0 if report.passed else EXIT_FAILED


TEST_FIELDS = ("name", "path", "passed", "boot_seconds", "checks", "error")


def _test_record(artifact, report) -> dict:
    return {"name": artifact.name, "path": str(artifact.path), **report.to_dict()}


def _smoke_test(args: argparse.Namespace, artifact):
    """Boot the artifact, run its smoke checks, keep the report beside it; the report
    (its lines printed unless a -f format was asked for)."""
    import tempfile

    from bake import instances
    from bake.artifacts import SMOKE_REPORT

    checks = artifact.spec.get("smoke") or []
    if not checks:
        raise InputError(f"{artifact.path}: the spec has no smoke checks")
    with tempfile.TemporaryDirectory(prefix="bake-test-") as work:
        if getattr(args, "qemu", False):
            from bake.instances import qemu

            try:
                qemu.preflight(args.accel)
            except instances.InstanceError as exc:
                raise InputError(str(exc)) from None
            report = qemu.smoke_test(artifact, checks, Path(work), args.accel)
        else:
            report = instances.smoke_test(artifact.tar_file(), checks, artifact.name, Path(work))
    (artifact.path / SMOKE_REPORT).write_text(json.dumps(report.to_dict(), indent=2) + "\n")
    lines = [*report.lines(), f"smoke test {'passed' if report.passed else 'FAILED'} "]
    lines[-1] += f"(boot {report.boot_seconds:.0f}s)"
    for line in lines:
        if args.format is None:
            print(f"{artifact.name}: {line}")
        else:
            ui.info(f"bake: {artifact.name}: {line}")
    return report


def cmd_list(args: argparse.Namespace) -> int:
    store = Store(args.output)
    artifacts = list(store.artifacts())
    if not artifacts and args.format is None:
        print(f"no artifacts in {store.root}")
        return 0
    # Machine formats: whole fingerprints, sizes in bytes, the artifact's directory.
    display = {"fingerprint": lambda v: v[:12], "size": ui.mib}
    rows = [_list_entry(a) for a in artifacts]
    ui.emit_list(args, LIST_COLUMNS, rows, display, brief=LIST_COLUMNS[:-1])
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


LIST_COLUMNS = ("name", "version", "fingerprint", "status", "size", "built", "path")


def cmd_matrix(args: argparse.Namespace) -> int:
    from bake.matrix import commands as matrix_commands

    return matrix_commands.command(args)


def cmd_stack(args: argparse.Namespace) -> int:
    from bake.cloud import stack

    return stack.command(args)


# -- the commands, on cliff --------------------------------------------------------------


def _output_option(p: argparse.ArgumentParser) -> None:
    p.add_argument(
        "--output",
        default=os.environ.get("BBQ_ARTIFACTS", "artifacts"),
        help="artifact store (default: $BBQ_ARTIFACTS or ./artifacts)",
    )


def _partition_options(p: argparse.ArgumentParser) -> None:
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


class Parser(_argparse.ArgumentParser):
    """cliff's argparse whose usage errors are one line (exit 2), naming the option and the
    value."""

    def error(self, message: str):
        message = " ".join(message.split())  # a value with a newline stays on the line
        self.exit(EXIT_BAD_INPUT, f"{self.prog}: error: {message} (see {self.prog} --help)\n")


class BakeCommand(command.Command):
    """A bake command: :meth:`arguments` adds its options, :meth:`action` runs it with the
    global options merged in; bake's errors are one line and their exit code, a bug one
    line and exit 1 (its traceback with --debug and in the --log-file)."""

    def get_parser(self, prog_name: str) -> argparse.ArgumentParser:
        parser = Parser(
            prog=prog_name,
            description=self.get_description(),
            formatter_class=_argparse.SmartHelpFormatter,
        )
        self.arguments(parser)
        return parser

    def arguments(self, parser: argparse.ArgumentParser) -> None:
        """Add this command's options."""

    def action(self, args: argparse.Namespace) -> int:
        """Run the command (a ``cmd_*`` function of this module, as a staticmethod)."""
        raise NotImplementedError

    def take_action(self, parsed_args: argparse.Namespace) -> int:
        args = argparse.Namespace(**vars(_global_options(self.app_args)), **vars(parsed_args))
        try:
            return self.action(args)
        except BakeError as exc:
            if args.debug:
                ui.PROGRESS.debug("debug: where the error below was raised:", exc_info=True)
            for line in exc.lines():
                ui.error(line)
            return exc.exit_code
        except (KeyboardInterrupt, BrokenPipeError):
            raise
        except Exception as exc:  # a bug: one line, the traceback with --debug or in --log-file
            ui.PROGRESS.debug("debug: an unexpected error:", exc_info=True)
            hint = "" if args.debug else " (--debug shows the traceback)"
            ui.error(f"unexpected {type(exc).__name__}: {exc}{hint}")
            return EXIT_FAILED


def _global_options(app_args: argparse.Namespace | None) -> argparse.Namespace:
    """The options before (or anywhere around) the command, in the names commands read."""
    level = getattr(app_args, "verbose_level", 1)
    return argparse.Namespace(
        verbose=max(level - 1, 0),
        quiet=level == 0,
        debug=getattr(app_args, "debug", False),
        log_file=getattr(app_args, "log_file", None),
        elements_dir=getattr(app_args, "elements_dir", None),
    )


class Validate(BakeCommand):
    """check specs; report every problem, build nothing"""

    def arguments(self, p):
        p.add_argument("specs", nargs="*", metavar="SPEC", help="default: image-specs/*.yaml")
        ui.add_format_options(p, VALIDATE_COLUMNS)

    action = staticmethod(cmd_validate)


class Fingerprint(BakeCommand):
    """print the fingerprint of a spec's build"""

    def arguments(self, p):
        p.add_argument("spec", metavar="SPEC")
        ui.json_option(p, "also print every input hashed (as -f json)")
        ui.add_format_options(p, FINGERPRINT_FIELDS, listing=False)
        _partition_options(p)

    action = staticmethod(cmd_fingerprint)


class Build(BakeCommand):
    """build a spec's image into the artifact store"""

    def arguments(self, p):
        from bake.cloud import commands as cloud_commands

        p.add_argument("spec", metavar="SPEC")
        _output_option(p)
        p.add_argument("--dry-run", action="store_true", help="print the command and environment")
        p.add_argument("--force", action="store_true", help="rebuild even if up to date")
        p.add_argument(
            "--keep-failed",
            action="store_true",
            help="keep a failed build's directory (log, outputs, diskimage-builder's work "
            "directory, the image tree of a failed in-target phase) under STORE/.failed; "
            "the path is printed",
        )
        p.add_argument(
            "--no-test", action="store_true", help="do not boot the image for its smoke checks"
        )
        _partition_options(p)
        p.add_argument(
            "--publish", action="store_true", help="then publish to Glance (bake publish)"
        )
        ui.add_format_options(p, BUILD_FIELDS, listing=False)
        cloud_commands.add_publish_options(p)
        cloud_commands.add_cloud_options(p)

    action = staticmethod(cmd_build)


class Test(BakeCommand):
    """boot a built image as an instance and run its smoke checks"""

    def arguments(self, p):
        p.add_argument(
            "target", metavar="SPEC|ARTIFACT", help="a spec file or an artifact directory"
        )
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
        _output_option(p)
        _partition_options(p)
        ui.add_format_options(p, TEST_FIELDS, listing=False)

    action = staticmethod(cmd_test)


class Matrix(BakeCommand):
    """build the image matrix's rows in parallel, then a table"""

    def arguments(self, p):
        from bake.matrix import commands as matrix_commands

        _output_option(p)
        _partition_options(p)
        matrix_commands.add_arguments(p)

    action = staticmethod(cmd_matrix)


class Stack(BakeCommand):
    """the whole stack (stacks/) on Heat, or on this machine with --local: create, update, ..."""

    def arguments(self, p):
        from bake.cloud import stack as stack_commands

        stack_commands.add_arguments(p)

    action = staticmethod(cmd_stack)


class List(BakeCommand):
    """list the artifacts in the store"""

    def arguments(self, p):
        _output_option(p)
        ui.json_option(p)
        ui.add_format_options(p, LIST_COLUMNS)

    action = staticmethod(cmd_list)


class Publish(BakeCommand):
    """upload an artifact to Glance (once per fingerprint)"""

    def arguments(self, p):
        from bake.cloud import commands as cloud_commands

        p.add_argument("target", metavar="ARTIFACT|SPEC", help="artifact directory or spec file")
        _output_option(p)
        _partition_options(p)
        ui.add_format_options(p, cloud_commands.PUBLISH_FIELDS, listing=False)
        cloud_commands.add_publish_options(p)
        cloud_commands.add_cloud_options(p)

    action = staticmethod(cmd_publish)


class Images(BakeCommand):
    """list the images published to Glance, per spec"""

    def arguments(self, p):
        from bake.cloud import commands as cloud_commands

        p.add_argument("--spec", metavar="NAME", help="only this spec's images")
        p.add_argument("--hidden", action="store_true", help="also images hidden by --hide-older")
        ui.json_option(p)
        ui.add_format_options(p, cloud_commands.IMAGES_COLUMNS)
        cloud_commands.add_cloud_options(p)

    action = staticmethod(cmd_images)


class Prune(BakeCommand):
    """delete (or deactivate) older published images of a spec"""

    def arguments(self, p):
        from bake.cloud import commands as cloud_commands

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
        ui.add_format_options(p, cloud_commands.PRUNE_COLUMNS)

    action = staticmethod(cmd_prune)


class Complete(BakeCommand):
    """print a bash completion script for bake"""

    def arguments(self, p):
        p.add_argument("--shell", choices=("bash",), default="bash", help="the shell (bash)")

    def action(self, args):
        from bake import completion

        app = self.app if self.app is not None else BakeApp()
        print(completion.bash(app.parser, command_parsers(app)))
        return 0


# The one table of bake's commands (cliff's CommandManager reads it; so do the docs, the
# bash completion and `bake help`).
COMMANDS: dict[str, type[BakeCommand]] = {
    "validate": Validate,
    "fingerprint": Fingerprint,
    "build": Build,
    "test": Test,
    "matrix": Matrix,
    "stack": Stack,
    "list": List,
    "publish": Publish,
    "images": Images,
    "prune": Prune,
    "complete": Complete,
}


GLOBAL_HELP = {  # what cliff's global options do in bake
    "-v": "more output (repeatable): -v streams a build's log (bake matrix: every "
    "row's) to stderr as it is written and shows the client libraries' warnings, -vv their "
    "info",
    "--log-file": "every log record, with times, into this file",
    "--debug": "everything on stderr (keystoneauth's HTTP log, secrets masked) and a traceback "
    "for unexpected errors",
}


class BakeApp(app.App):
    """``bake`` on cliff: its global options (``--version``, ``-v/-q/--debug/--log-file``,
    ``--elements-dir``), anywhere on the line as the openstack CLI takes them; bake's
    logging; one-line errors for an unknown command or no command at all."""

    NAME = "bake"

    def __init__(self):
        manager = commandmanager.CommandManager("bake.cli")
        for name, command_class in COMMANDS.items():
            manager.add_command(name, command_class)
        super().__init__(
            description=__doc__.splitlines()[0],
            version=resources.version(),
            command_manager=manager,
            deferred_help=True,
        )
        manager.add_command("complete", Complete)  # ours completes values and files too

    def build_option_parser(self, description, version, argparse_kwargs=None):
        parser = super().build_option_parser(
            description,
            version,
            {
                "allow_abbrev": False,  # `--out` of a command is not a global option's prefix
                "epilog": __doc__.split("\n\n")[1],
                "formatter_class": argparse.RawDescriptionHelpFormatter,
                "prog": self.NAME,
            },
        )
        parser.__class__ = Parser  # one-line usage errors here too
        for action in parser._actions:
            if isinstance(action, argparse._VersionAction):
                action.version = f"{self.NAME} {version}"
            action.help = GLOBAL_HELP.get(action.option_strings[0], action.help)
        parser.add_argument(
            "--elements-dir",
            help="our elements (default: elements/ of the spec's checkout, else of the current "
            "directory, else the ones shipped with bake)",
        )
        return parser

    def configure_logging(self) -> None:
        options = _global_options(self.options)
        try:
            ui.configure_logging(options.verbose, options.quiet, options.debug, options.log_file)
        except InputError as exc:  # a bad --log-file: one line, before any command runs
            ui.error(str(exc))
            raise SystemExit(exc.exit_code) from None

    def interact(self) -> None:
        self.parser.error("a command is required: " + ", ".join(COMMANDS))

    def run_subcommand(self, argv: list[str]) -> int:
        try:
            self.command_manager.find_command(argv)
        except ValueError:
            close = self.get_fuzzy_matches(argv[0])
            hint = f"; did you mean {' or '.join(close)}?" if close else ""
            ui.error(f"{argv[0]!r} is not a bake command{hint} (see bake --help)")
            return EXIT_BAD_INPUT
        return super().run_subcommand(argv)


def command_parsers(bake: BakeApp) -> dict[str, argparse.ArgumentParser]:
    """Each command's parser, by name (the docs and the completion read them)."""
    return {
        name: command_class(bake, None, cmd_name=name).get_parser(f"bake {name}")
        for name, command_class in COMMANDS.items()
    }


def main(argv: list[str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else argv
    try:
        code = BakeApp().run(argv)
    except SystemExit as exc:  # argparse and cliff: --version, --help, a usage error
        code = exc.code if isinstance(exc.code, int) else 0 if exc.code is None else 1
    except KeyboardInterrupt:
        code = 128 + signal.SIGINT
    except BrokenPipeError:
        code = 128 + signal.SIGPIPE
    if code == 128 + signal.SIGPIPE:
        # The reader went away (`bake list | head`; cliff returns 141 for it): end quietly,
        # as the shell's own tools do when SIGPIPE ends them, and keep Python from
        # complaining when it flushes stdout.
        devnull = os.open(os.devnull, os.O_WRONLY)
        os.dup2(devnull, sys.stdout.fileno())
    return code


if __name__ == "__main__":
    sys.exit(main())
