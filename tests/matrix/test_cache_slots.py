"""Cache slots: private apt archives seeded by hard links, shared downloads, merge back."""

from __future__ import annotations

import gzip
import os
import subprocess
import time
from pathlib import Path

from bake import cache_slots

TARBALL = gzip.compress(b"a root file system" * 100)


def _shared(tmp_path: Path) -> Path:
    shared = tmp_path / "cache"
    (shared / "apt" / "debian" / "partial").mkdir(parents=True)
    (shared / "apt" / "debian" / "a_1_all.deb").write_bytes(b"a" * 10)
    (shared / "apt" / "debian" / "lock").write_text("")
    (shared / "spark").mkdir()
    (shared / "spark" / "pyspark.tar.gz").write_bytes(b"s" * 5)
    return shared


def test_slot_links_apt_and_symlinks_the_rest(tmp_path):
    shared = _shared(tmp_path)
    with cache_slots.slot(shared, "row") as slot:
        seeded = slot.path / "apt" / "debian" / "a_1_all.deb"
        assert seeded.stat().st_ino == (shared / "apt/debian/a_1_all.deb").stat().st_ino
        assert not (slot.path / "apt").is_symlink()
        assert not (slot.path / "apt" / "debian" / "lock").exists()  # apt's lock: per slot
        assert (slot.path / "spark").is_symlink()
        assert (slot.path / "spark").resolve() == (shared / "spark").resolve()
        path = slot.path
    assert not path.exists()


def test_downloads_of_a_slot_reach_the_shared_cache(tmp_path):
    shared = _shared(tmp_path)
    with cache_slots.slot(shared, "row") as slot:
        (slot.path / "apt" / "debian" / "b_2_all.deb").write_bytes(b"b" * 7)
        (slot.path / "apt" / "debian" / "partial" / "c.deb").parent.mkdir(exist_ok=True)
        (slot.path / "apt" / "debian" / "partial" / "c.deb").write_bytes(b"half")
        (slot.path / "debootstrap-debian-bookworm-amd64.tar.gz").write_bytes(TARBALL)
        (slot.path / "apt" / "debian" / "a_1_all.deb").unlink()  # apt-get clean in a slot
    assert (shared / "apt/debian/b_2_all.deb").read_bytes() == b"b" * 7
    assert (shared / "apt/debian/a_1_all.deb").read_bytes() == b"a" * 10
    assert not (shared / "apt/debian/partial/c.deb").exists()
    assert (shared / "debootstrap-debian-bookworm-amd64.tar.gz").exists()
    assert slot.new_bytes == 7 + len(TARBALL)


def test_two_slots_at_once_have_their_own_apt_dirs(tmp_path):
    shared = _shared(tmp_path)
    with cache_slots.slot(shared, "one") as one, cache_slots.slot(shared, "two") as two:
        assert one.path != two.path
        (one.path / "apt/debian/x.deb").write_bytes(b"1")
        assert not (two.path / "apt/debian/x.deb").exists()
        assert os.path.samefile(
            one.path / "apt/debian/a_1_all.deb", two.path / "apt/debian/a_1_all.deb"
        )
    assert (shared / "apt/debian/x.deb").exists()
    assert list((shared / cache_slots.SLOTS_DIR).iterdir()) == []


def test_a_failing_build_still_returns_its_downloads(tmp_path):
    shared = _shared(tmp_path)
    try:
        with cache_slots.slot(shared, "row") as slot:
            (slot.path / "apt/debian/y.deb").write_bytes(b"y")
            raise RuntimeError("build failed")
    except RuntimeError:
        pass
    assert (shared / "apt/debian/y.deb").exists()


def test_apt_clean_in_a_slot_is_undone_by_the_keeper(tmp_path):
    # debian-minimal runs `apt-get clean` on the bind-mounted archive right after mounting it.
    shared = _shared(tmp_path)
    with cache_slots.slot(shared, "row") as slot:
        seeded = slot.path / "apt" / "debian" / "a_1_all.deb"
        seeded.unlink()
        deadline = time.monotonic() + 10
        while not seeded.exists() and time.monotonic() < deadline:
            time.sleep(0.1)
        assert seeded.exists()
        assert os.path.samefile(seeded, shared / "apt/debian/a_1_all.deb")
    assert slot.new_bytes == 0


def test_slots_of_dead_processes_are_removed(tmp_path):
    shared = _shared(tmp_path)
    stale = shared / cache_slots.SLOTS_DIR / f"row-{_dead_pid()}-1"
    stale.mkdir(parents=True)
    live = shared / cache_slots.SLOTS_DIR / f"row-{os.getpid()}-1"
    live.mkdir()
    with cache_slots.slot(shared, "other"):
        assert not stale.exists()
        assert live.exists()


def _dead_pid() -> int:
    process = subprocess.Popen(["true"])
    process.wait()
    return process.pid


def test_a_cut_short_tarball_never_reaches_the_shared_cache(tmp_path):
    """A build interrupted while diskimage-builder writes its debootstrap tarball leaves a
    truncated file in its slot: the next build must not unpack it."""
    shared = _shared(tmp_path)
    name = "debootstrap-debian-bookworm-amd64.tar.gz"
    with cache_slots.slot(shared, "row") as slot:
        (slot.path / name).write_bytes(TARBALL[: len(TARBALL) // 2])
        (slot.path / "other.tar.gz").write_bytes(TARBALL[:-4] + b"\0\0\0\0")  # bad length
    assert not (shared / name).exists() and not (shared / "other.tar.gz").exists()
    with cache_slots.slot(shared, "row") as slot:
        (slot.path / name).write_bytes(TARBALL)
    assert (shared / name).read_bytes() == TARBALL


def test_old_debootstrap_roots_are_removed_when_a_slot_opens(tmp_path):
    shared = _shared(tmp_path)
    old, fresh = (
        shared / "debootstrap-debian-bookworm-amd64.tar.gz",
        shared / "debootstrap-ubuntu-noble-amd64.tar.gz",
    )
    for path in (old, fresh):
        path.write_bytes(TARBALL)
    week = cache_slots.DEBOOTSTRAP_MAX_AGE
    os.utime(old, (time.time() - week - 60, time.time() - week - 60))
    with cache_slots.slot(shared, "row") as slot:
        assert not (slot.path / old.name).exists()
        assert (slot.path / fresh.name).is_symlink()
    assert not old.exists() and fresh.exists()
    assert (shared / "spark" / "pyspark.tar.gz").exists(), "other downloads are not expired"
