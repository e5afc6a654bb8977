"""Build: from a plan and its fingerprint to a complete artifact in the store.

Nothing reaches the store until the build has succeeded: the image is written in
``STORE/.tmp/...`` and moved into ``STORE/<name>/<fingerprint>/`` in one rename. A failed
build keeps its log under ``STORE/.failed/`` (with ``keep_failed``, its whole directory:
``out/`` with the log and outputs, ``work/`` diskimage-builder's); an interrupted one leaves
nothing.

Example::

    outcome = build(plan, fp, Store("artifacts"))
    outcome.artifact.path, outcome.skipped
"""

from __future__ import annotations

import dataclasses
import datetime
import json
import os
import shutil
from collections.abc import Callable
from pathlib import Path

from bake import dib, instances, wheelhouse
from bake.artifacts import BUILD_LOG, SMOKE_REPORT, Artifact, Store
from bake.errors import EXIT_BAD_INPUT, OperationFailed
from bake.fingerprint import Fingerprint
from bake.plan import BuildPlan

DEVICE_MAPPER = Path("/dev/mapper/control")


class BuildError(OperationFailed):
    """The build did not succeed; the message says why and where its log is."""


class PreflightError(BuildError):
    """The build cannot start on this host as asked (nothing was done)."""

    exit_code = EXIT_BAD_INPUT


class SmokeTestFailed(BuildError):
    """The image was built but failed its smoke test; it is kept aside, not in the store."""

    def __init__(self, message: str, report: instances.SmokeReport):
        super().__init__(message)
        self.report = report


@dataclasses.dataclass(frozen=True)
class Outcome:
    artifact: Artifact
    skipped: bool  # True when an artifact with this fingerprint was already complete


def preflight(plan: BuildPlan) -> None:
    """Refuse early what would fail minutes into a build."""
    if plan.spec.partitioned and not DEVICE_MAPPER.exists():
        raise PreflightError(
            f"{plan.spec.name}: a partitioned image (vm element) needs device-mapper, and "
            f"{DEVICE_MAPPER} is missing here; build a plain filesystem image with --plain"
        )
    if os.geteuid() != 0 and not shutil.which("sudo"):
        raise PreflightError("diskimage-builder needs root or sudo; neither is available")
    for tool in ("debootstrap", "qemu-img") if plan.spec.distro in ("debian", "ubuntu") else ():
        if not shutil.which(tool):
            raise PreflightError(f"{tool} is not installed: run tools/bootstrap")


def packages(output_dir: Path, name: str) -> list[dict[str, str]]:
    """The packages installed in the image, from diskimage-builder's dpkg manifest (if any):
    those removed during the build with their configuration files left ("rc") are not."""
    manifest = output_dir / f"{name}.d" / "dib-manifests" / f"dib-manifest-dpkg-{name}"
    if not manifest.is_file():
        return []
    data = json.loads(manifest.read_text())
    return [
        # dpkg names multi-arch packages "name:arch"; the arch is recorded on its own.
        {"name": p["package"].split(":")[0], "version": p["version"], "arch": p["arch"]}
        for p in data.get("packages", [])
        if p.get("status", "ii")[1:2] == "i"
    ]


def build(
    plan: BuildPlan,
    fingerprint: Fingerprint,
    store: Store,
    force: bool = False,
    on_phase: Callable[[str, str, float], None] = dib.print_phase,
    smoke: bool = True,
    on_report: Callable[[instances.SmokeReport], None] | None = None,
    on_log: Callable[[Path], None] | None = None,
    keep_failed: bool = False,
) -> Outcome:
    """Build the plan into the store unless an artifact with this fingerprint is complete.

    With ``smoke`` (and checks in the spec) the image is booted and its smoke checks must
    pass before it enters the store. Raises BuildError (build failed; log kept under
    STORE/.failed), SmokeTestFailed (image, log and report set aside under STORE/.failed)
    or dib.BuildInterrupted (nothing kept). ``on_log`` is told where the build's log is
    being written, before diskimage-builder starts. ``keep_failed`` keeps a failed build's
    whole directory under STORE/.failed (the message names it), not only its log.
    """
    name = plan.spec.name
    existing = store.find(name, fingerprint.value)
    if existing and not force:
        return Outcome(existing, skipped=True)
    preflight(plan)
    if plan.app_dir is not None:
        wheelhouse.ensure(plan.app_dir, plan.app_hash, plan.app_extras)
    build_dir = store.new_build_dir(name)
    output_dir = build_dir / "out"
    output_dir.mkdir()
    log_path = output_dir / BUILD_LOG
    if on_log:
        on_log(log_path)
    started = datetime.datetime.now(datetime.UTC)
    try:
        result = dib.run(
            plan, output_dir / name, build_dir / "work", log_path, on_phase, keep_work=keep_failed
        )
    except dib.BuildInterrupted:
        shutil.rmtree(build_dir, ignore_errors=True)
        raise
    except BaseException:
        shutil.rmtree(build_dir, ignore_errors=True)
        raise
    if result.returncode != 0 and keep_failed:
        kept = store.set_aside(build_dir, name, fingerprint.value)
        raise BuildError(
            f"{name}: disk-image-create failed (exit {result.returncode}); build directory kept "
            f"for inspection: {kept} (log: {kept / 'out' / BUILD_LOG})"
        )
    if result.returncode != 0:
        kept = store.keep_failed(name, fingerprint.value, [log_path])
        shutil.rmtree(build_dir, ignore_errors=True)
        raise BuildError(
            f"{name}: disk-image-create failed (exit {result.returncode}); log: {kept / BUILD_LOG}"
        )
    smoke_summary: dict = {"run": False, "reason": "no smoke checks in the spec"}
    if smoke and plan.spec.smoke:
        report = instances.smoke_test(
            output_dir / f"{name}.tar", plan.spec.smoke, name, build_dir / "smoke"
        )
        (output_dir / SMOKE_REPORT).write_text(json.dumps(report.to_dict(), indent=2) + "\n")
        if on_report:
            on_report(report)
        if not report.passed:
            kept = store.set_aside(output_dir, name, fingerprint.value)
            shutil.rmtree(build_dir, ignore_errors=True)
            raise SmokeTestFailed(
                f"{name}: smoke test failed; image set aside, not in the store: {kept}", report
            )
        smoke_summary = {
            "run": True,
            "passed": True,
            "checks": len(report.checks),
            "boot_seconds": report.boot_seconds,
        }
    elif plan.spec.smoke:
        smoke_summary["reason"] = "skipped (--no-test)"
    manifest = {
        "name": name,
        "version": plan.spec.version,
        "fingerprint": fingerprint.value,
        "spec": plan.spec.to_dict(),
        "spec_file": plan.spec.path.name,
        "dib_version": fingerprint.dib_version,
        "elements": fingerprint.elements,
        "app": fingerprint.app,
        "command": plan.command(name),
        "environment": plan.fingerprinted_environment(),
        "packages": packages(output_dir, name),
        "built_at": started.isoformat(timespec="seconds"),
        "build_seconds": round(result.seconds, 1),
        "cache_new_bytes": result.cache_new_bytes,
        "phases": {k: round(v, 1) for k, v in result.phases.items()},
        "smoke": smoke_summary,
        "status": "good" if smoke_summary["run"] else "untested",
    }
    return Outcome(store.commit(build_dir, output_dir, manifest), skipped=False)
