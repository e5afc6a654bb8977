"""Cache slots: parallel diskimage-builder builds that share one download cache.

diskimage-builder bind-mounts ``$DIB_IMAGE_CACHE/apt/<distro>`` into the chroot as apt's
archive directory, so two builds using one cache at once fail on apt's lock. A slot is a
private ``DIB_IMAGE_CACHE`` for one build, inside the shared cache (same filesystem):

- ``apt/`` is the slot's own, seeded with hard links to the shared ``apt/<distro>/*.deb``
  (no copy, no download); apt's lock and ``partial/`` are the slot's alone;
- every other entry of the shared cache (``spark/``, debootstrap tarballs, ...) is a
  symlink to it: those are written by a rename of a finished file, safe to share;
- diskimage-builder's debian-minimal runs ``apt-get clean`` right after bind-mounting the
  archive directory, which would throw the seed away (and, without slots, empties the
  shared cache itself): while the slot is open a keeper thread links back any shared
  ``.deb`` missing from the slot, so apt finds them when it installs;
- when the build ends (success or not), files the build added to the slot (new ``.deb``
  files, a new top-level download) are hard-linked or moved into the shared cache, and
  the slot is removed; a gzip file (debootstrap's cached root, a download) joins only when
  it is whole, so an interrupted build never leaves a truncated tarball for the next;
- debootstrap tarballs older than :data:`DEBOOTSTRAP_MAX_AGE` are removed when a slot opens:
  the next build bootstraps afresh (between, diskimage-builder dist-upgrades the cached root).

Example::

    with slot(Path.home() / ".cache/image-create", "bbq-base") as s:
        env["DIB_IMAGE_CACHE"] = str(s.path)   # then run disk-image-create
    s.new_bytes                                 # bytes the build added to the cache
"""

from __future__ import annotations

import contextlib
import dataclasses
import gzip
import os
import shutil
import threading
import time
from collections.abc import Iterator
from pathlib import Path

SLOTS_DIR = ".bake-slots"
PRIVATE = ("apt",)  # per-slot directories (bind-mounted into the chroot by DIB)
SKIP_NAMES = ("lock", "partial", ".bake-build.lock")


@dataclasses.dataclass
class Slot:
    """A private cache directory for one build; ``new_bytes`` is set when it is closed."""

    path: Path
    shared: Path
    seeded: set[Path] = dataclasses.field(default_factory=set)
    new_bytes: int = 0


def _seed(shared: Path, slot: Path) -> set[Path]:
    """Populate ``slot`` from ``shared``; return the slot-relative files that were linked."""
    seeded: set[Path] = set()
    for entry in shared.iterdir():
        if entry.name in (SLOTS_DIR, *SKIP_NAMES):
            continue
        if entry.name in PRIVATE and entry.is_dir():
            for source in entry.rglob("*"):
                if source.is_file() and not set(source.relative_to(shared).parts) & {*SKIP_NAMES}:
                    rel = source.relative_to(shared)
                    (slot / rel).parent.mkdir(parents=True, exist_ok=True)
                    os.link(source, slot / rel)
                    seeded.add(rel)
            (slot / entry.name).mkdir(exist_ok=True)
        else:
            (slot / entry.name).symlink_to(entry)
    return seeded


KEEP_INTERVAL = 0.5  # seconds between the keeper's looks at the slot
DEBOOTSTRAP_MAX_AGE = 7 * 86400  # seconds a cached debootstrap root is used
DEBOOTSTRAP_GLOB = "debootstrap-*.tar.gz"  # diskimage-builder's debootstrap element's names


def expire_debootstrap(shared: Path, max_age: float = DEBOOTSTRAP_MAX_AGE) -> list[Path]:
    """Remove cached debootstrap roots older than ``max_age`` seconds; the removed paths."""
    removed = []
    now = time.time()
    for path in shared.glob(DEBOOTSTRAP_GLOB):
        with contextlib.suppress(FileNotFoundError):
            if now - path.stat().st_mtime > max_age:
                path.unlink()
                removed.append(path)
    return removed


def is_whole(path: Path) -> bool:
    """False for a gzip file that ends early or fails its CRC (a write cut short)."""
    if not path.name.endswith((".gz", ".tgz")):
        return True
    try:
        with gzip.open(path, "rb") as handle:
            while handle.read(1 << 20):
                pass
    except (OSError, EOFError):
        return False
    return True


def _relink(shared: Path, slot: Slot) -> None:
    """Link every shared private-dir file the slot lacks (apt's clean removed it)."""
    for name in PRIVATE:
        for source in (shared / name).glob("*/*"):
            if source.name in SKIP_NAMES or not source.is_file():
                continue
            rel = source.relative_to(shared)
            target = slot.path / rel
            if not target.exists() and target.parent.is_dir():
                with contextlib.suppress(FileExistsError, FileNotFoundError):
                    os.link(source, target)
                    slot.seeded.add(rel)


def _keeper(shared: Path, slot: Slot, stop: threading.Event) -> None:
    while not stop.wait(KEEP_INTERVAL):
        with contextlib.suppress(OSError):
            _relink(shared, slot)


def _merge(slot: Slot) -> int:
    """Give the shared cache what the build added to the slot; return those bytes."""
    added = 0
    for dirpath, dirnames, filenames in os.walk(slot.path):
        here = Path(dirpath)
        dirnames[:] = [d for d in dirnames if d not in SKIP_NAMES and not (here / d).is_symlink()]
        for name in filenames:
            source = here / name
            rel = source.relative_to(slot.path)
            if name in SKIP_NAMES or source.is_symlink() or rel in slot.seeded:
                continue
            if not is_whole(source):
                continue
            added += source.stat().st_size
            target = slot.shared / rel
            if target.exists():
                continue
            target.parent.mkdir(parents=True, exist_ok=True)
            with contextlib.suppress(FileExistsError):
                os.link(source, target)
    return added


def remove_stale(root: Path) -> list[Path]:
    """Remove slots left by processes that no longer run (killed before they merged)."""
    removed = []
    for path in root.iterdir() if root.is_dir() else ():
        try:
            pid = int(path.name.rsplit("-", 2)[1])
        except (IndexError, ValueError):
            continue
        try:
            os.kill(pid, 0)
        except ProcessLookupError:
            shutil.rmtree(path, ignore_errors=True)
            removed.append(path)
        except PermissionError:
            continue
    return removed


@contextlib.contextmanager
def slot(shared: Path, name: str) -> Iterator[Slot]:
    """A private DIB_IMAGE_CACHE for one build, seeded from and merged back into ``shared``."""
    shared.mkdir(parents=True, exist_ok=True)
    root = shared / SLOTS_DIR
    root.mkdir(exist_ok=True)
    remove_stale(root)
    expire_debootstrap(shared)
    path = root / f"{name}-{os.getpid()}-{time.monotonic_ns()}"
    shutil.rmtree(path, ignore_errors=True)
    path.mkdir()
    current = Slot(path, shared)
    stop = threading.Event()
    keeper = threading.Thread(target=_keeper, args=(shared, current, stop), daemon=True)
    try:
        current.seeded = _seed(shared, path)
        keeper.start()
        yield current
    finally:
        stop.set()
        if keeper.is_alive():
            keeper.join()
        try:
            current.new_bytes = _merge(current)
        finally:
            shutil.rmtree(path, ignore_errors=True)
