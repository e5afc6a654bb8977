"""Run ``disk-image-create`` for a build plan: progress by phase, a log file, clean interrupts.

diskimage-builder works in ``TMP_DIR``; bake points that at a directory of its own per build,
so whatever the build mounted, attached or started can be found and undone afterwards, on
success, failure or interruption alike (:func:`bake.hostsys.release_build_dir`).

Downloads are cached in ``DIB_IMAGE_CACHE``; each build gets its own cache slot inside it
(:mod:`bake.cache_slots`), so the ``.deb`` files apt fetched for one build are reused by
the next (diskimage-builder's ``apt-get clean`` would otherwise empty the shared cache).

Example::

    result = run(plan, output_stem=work / "out" / "bbq-base", work_dir=work / "tmp",
                 log_path=work / "out" / "build.log")
    result.returncode, result.seconds
"""

from __future__ import annotations

import contextlib
import dataclasses
import fcntl
import os
import re
import shutil
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Iterator
from pathlib import Path

from bake import cache_slots, hostsys
from bake.errors import Interrupted
from bake.plan import BuildPlan

# diskimage-builder's phases in the order it runs them, and what marks their start in its log.
PHASES = (
    "root.d",
    "extra-data.d",
    "pre-install.d",
    "install.d",
    "post-install.d",
    "post-root.d",
    "block-device.d",
    "pre-finalise.d",
    "finalise.d",
    "cleanup.d",
    "convert",
)
_PHASE_LINE = re.compile(r"(?:hooks|in_target\.d)/([a-z-]+\.d)\b")
_BLOCK_DEVICE_LINE = re.compile(
    r"block_device\.level0\.\w+ \[-\] (Create image file|loopdev attach)"
)
_CONVERT_LINE = re.compile(r"Converting image using qemu-img")


class BuildInterrupted(Interrupted):
    """The build was stopped by SIGINT or SIGTERM; ``signum`` says which."""

    def __init__(self, signum: int):
        super().__init__(f"interrupted by {signal.Signals(signum).name}", signum)


@dataclasses.dataclass(frozen=True)
class RunResult:
    returncode: int
    seconds: float
    phases: dict[str, float]  # phase -> seconds since start when it began
    cache_new_bytes: int | None = None  # bytes the build added to the download cache


def phase_of(line: str) -> str | None:
    """The DIB phase a log line announces, if any."""
    match = _PHASE_LINE.search(line)
    if match and match.group(1) in PHASES and ("Running" in line or "Target" in line):
        return match.group(1)
    if _BLOCK_DEVICE_LINE.search(line):
        return "block-device.d"
    if _CONVERT_LINE.search(line):
        return "convert"
    return None


def print_phase(name: str, phase: str, elapsed: float) -> None:
    """Default progress reporter: one line per phase on stderr."""
    index = PHASES.index(phase) + 1
    minutes, seconds = divmod(int(elapsed), 60)
    print(
        f"bake: {name}: [{index}/{len(PHASES)}] {phase:<15} {minutes}:{seconds:02d}",
        file=sys.stderr,
        flush=True,
    )


def run(
    plan: BuildPlan,
    output_stem: Path,
    work_dir: Path,
    log_path: Path,
    on_phase: Callable[[str, str, float], None] = print_phase,
    keep_work: bool = False,
) -> RunResult:
    """Run disk-image-create; raise BuildInterrupted on SIGINT/SIGTERM (after cleaning up).

    ``keep_work`` (``bake build --keep-failed``): ``work_dir`` is released (unmounted) but
    not removed, and when an in-target phase fails, diskimage-builder's image tree is copied
    to ``work_dir/failed-image-root`` before diskimage-builder removes it (its ``break``
    hook, run outside the chroot).

    The full output goes to ``log_path``; ``on_phase(name, phase, elapsed)`` is called as
    each phase begins. Whatever the outcome, ``work_dir`` is released and removed. Builds
    sharing a download cache run one at a time (:func:`cache_lock`), each in its own cache
    slot (:func:`private_cache`).
    """
    work_dir.mkdir(parents=True, exist_ok=True)
    env = dict(os.environ)
    env.update(plan.environment)
    env["TMP_DIR"] = str(work_dir)
    env.update(KEEP_WORK_ENV if keep_work else {})
    env.setdefault("DIB_IMAGE_CACHE", str(Path.home() / ".cache" / "image-create"))
    for key, value in CACHE_DEFAULTS.items():
        env.setdefault(key, value)
    command = plan.command(output_stem)
    command[0] = shutil.which(command[0]) or _venv_tool(command[0])
    received: list[int] = []
    phases: dict[str, float] = {}
    process: subprocess.Popen | None = None
    cache: cache_slots.Slot | None = None

    def on_signal(signum, _frame):
        received.append(signum)
        if process is None:  # still waiting for the cache: nothing started yet
            raise BuildInterrupted(signum)
        if process.poll() is None:
            os.killpg(process.pid, signal.SIGTERM)
            # A child that ignores SIGTERM must not keep the build (and its mounts) alive.
            timer = threading.Timer(STOP_GRACE, hostsys.kill_group, (process.pid,))
            timer.daemon = True
            timer.start()

    previous = {sig: signal.signal(sig, on_signal) for sig in (signal.SIGINT, signal.SIGTERM)}
    try:
        with (
            cache_lock(Path(env["DIB_IMAGE_CACHE"]), plan.spec.name),
            private_cache(Path(env["DIB_IMAGE_CACHE"]), plan.spec.name) as cache,
            open(log_path, "a", buffering=1) as log,
        ):
            env["DIB_IMAGE_CACHE"] = str(cache.path)
            start = time.monotonic()
            log.write(f"$ {' '.join(command)}\n")
            for key, value in plan.environment.items():
                log.write(f"  {key}={value}\n")
            process = subprocess.Popen(
                command,
                env=env,
                stdout=subprocess.PIPE,
                stderr=subprocess.STDOUT,
                stdin=subprocess.DEVNULL,
                start_new_session=True,  # our own process group: signals reach every child
                text=True,
                errors="replace",
            )
            assert process.stdout is not None
            for line in process.stdout:
                log.write(line)
                phase = phase_of(line)
                if phase and phase not in phases and not received:
                    phases[phase] = time.monotonic() - start
                    on_phase(plan.spec.name, phase, phases[phase])
            returncode = hostsys.wait_group(process)
            seconds = time.monotonic() - start
    finally:
        for sig, handler in previous.items():
            signal.signal(sig, handler)
        if process is not None and process.poll() is None:
            os.killpg(process.pid, signal.SIGKILL)
            process.wait()
        _release(work_dir, log_path, keep_work)
    if received:
        raise BuildInterrupted(received[0])
    new_bytes = cache.new_bytes if cache is not None and cache.shared != cache.path else None
    return RunResult(returncode, seconds, phases, new_bytes)


# diskimage-builder's debootstrap element: keep the bootstrapped root as a tarball in the
# download cache and start later builds from it (debian-minimal dist-upgrades it right
# after), instead of downloading and unpacking ~100 packages each time (about 35 s here).
# Cache slots expire the tarball after a week and never keep a truncated one.
CACHE_DEFAULTS = {"DIB_DEBOOTSTRAP_CACHE": "1", "DIB_DEBIAN_USE_DEBOOTSTRAP_CACHE": "1"}


def _release(work_dir: Path, log_path: Path, keep: bool) -> None:
    """Undo what the build left mounted or attached (said in the log); remove ``work_dir``
    unless asked to ``keep`` it."""
    left = hostsys.release_build_dir(work_dir)
    if left:
        with open(log_path, "a") as log:
            log.write(f"bake: released after the build: {', '.join(left)}\n")
    if not keep:
        shutil.rmtree(work_dir, ignore_errors=True)


STOP_GRACE = 30.0  # seconds DIB gets to stop after SIGTERM before its group is killed

# diskimage-builder's break_cmd for keep_work: one simple command (DIB runs it as the words
# of a trap), copying the image tree once, as root, without crossing into /proc, /sys, /dev.
KEEP_IMAGE_ROOT = (
    "sh -c '"
    'kept="$TMP_DIR/failed-image-root"; '
    '[ -n "$TMP_MOUNT_PATH" ] && [ -d "$TMP_MOUNT_PATH" ] && [ ! -e "$kept" ] || exit 0; '
    'if [ "$(id -u)" = 0 ]; then cp -a --one-file-system "$TMP_MOUNT_PATH" "$kept"; '
    'else sudo -n cp -a --one-file-system "$TMP_MOUNT_PATH" "$kept"; fi; '
    'echo "bake: image tree kept in $kept"'
    "'"
)
KEEP_WORK_ENV = {"break": "after-error", "break_outside_target": "1", "break_cmd": KEEP_IMAGE_ROOT}


@contextlib.contextmanager
def cache_lock(cache_dir: Path, name: str) -> Iterator[None]:
    """Hold the download cache for one build at a time.

    diskimage-builder shares ``$DIB_IMAGE_CACHE/apt`` with the chroot, and two builds using
    it at once fail on apt's lock; a second build waits here (and says so) instead.
    """
    cache_dir.mkdir(parents=True, exist_ok=True)
    with open(cache_dir / ".bake-build.lock", "w") as handle:
        try:
            fcntl.flock(handle, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            print(
                f"bake: {name}: waiting for another build using {cache_dir}",
                file=sys.stderr,
                flush=True,
            )
            fcntl.flock(handle, fcntl.LOCK_EX)
        yield


@contextlib.contextmanager
def private_cache(cache_dir: Path, name: str) -> Iterator[cache_slots.Slot]:
    """A cache slot for one build inside ``cache_dir``, merged back when the build ends.

    A ``cache_dir`` that already is a slot (``bake matrix`` opens one per row) is used as
    it is; its ``new_bytes`` are then counted by whoever opened it.
    """
    if cache_dir.parent.name == cache_slots.SLOTS_DIR:
        yield cache_slots.Slot(cache_dir, cache_dir)
        return
    with cache_slots.slot(cache_dir, name) as slot:
        yield slot


def _venv_tool(name: str) -> str:
    """A tool installed beside this Python (the venv's bin), for runs without PATH set."""
    candidate = Path(sys.executable).parent / name
    if candidate.exists():
        return str(candidate)
    raise FileNotFoundError(f"{name} not found on PATH or beside {sys.executable}")
