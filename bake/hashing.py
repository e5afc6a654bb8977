"""Hashes, in one place: tree hashes of element and app directories, file digests read in
one pass, and a sha256 cached by (path, mtime, size) for files hashed again and again.

Example::

    tree_hash(Path("elements/spark"))           # sha256 over paths, exec bits and contents
    file_digests(Path("x.qcow2"), ("sha256", "sha512"))
    sha256_cached(Path("bbq-1.0-py3-none-any.whl"))
"""

from __future__ import annotations

import concurrent.futures
import functools
import hashlib
import os
import stat
from collections.abc import Iterator
from pathlib import Path

CHUNK = 1024 * 1024

# Names left out of tree hashes: caches and editor litter that never reach an image.
IGNORED_NAMES = frozenset(
    {"__pycache__", ".pytest_cache", ".ruff_cache", ".tox", ".venv", "build", "dist", ".git"}
)
IGNORED_SUFFIXES = (".pyc", ".pyo", ".egg-info", ".swp", "~")


def tree_hash(root: Path) -> str:
    """sha256 over every file below ``root``: relative path, exec bit, content (or link)."""
    digest = hashlib.sha256()
    for path in sorted(_walk(root), key=lambda p: p.relative_to(root).as_posix()):
        rel = path.relative_to(root).as_posix()
        info = path.lstat()
        if stat.S_ISLNK(info.st_mode):
            kind, content = "l", os.readlink(path).encode()
        else:
            kind = "x" if info.st_mode & stat.S_IXUSR else "f"
            content = path.read_bytes()
        digest.update(f"{rel}\0{kind}\0{len(content)}\0".encode())
        digest.update(content)
    return digest.hexdigest()


def _walk(root: Path) -> Iterator[Path]:
    for dirpath, dirnames, filenames in os.walk(root):
        dirnames[:] = [d for d in dirnames if not _ignored(d)]
        for name in filenames:
            if not _ignored(name):
                yield Path(dirpath) / name


def _ignored(name: str) -> bool:
    return name in IGNORED_NAMES or name.endswith(IGNORED_SUFFIXES)


def file_digests(path: Path, algorithms: tuple[str, ...]) -> dict[str, str]:
    """{algorithm: hex digest} of a file for each hashlib algorithm, in one read pass.

    With several algorithms each hashes on its own thread (hashlib releases the GIL on large
    buffers) while the next chunk is read; memory stays at two chunks.
    """
    digests = {name: hashlib.new(name, usedforsecurity=False) for name in algorithms}
    with (
        open(path, "rb") as handle,
        concurrent.futures.ThreadPoolExecutor(len(digests)) as pool,
    ):
        pending: list[concurrent.futures.Future] = []
        while chunk := handle.read(CHUNK):
            for future in pending:
                future.result()
            pending = [pool.submit(digest.update, chunk) for digest in digests.values()]
        for future in pending:
            future.result()
    return {name: digest.hexdigest() for name, digest in digests.items()}


def sha256_file(path: Path) -> str:
    """Hex sha256 of a file, read in 1 MiB chunks."""
    digest = hashlib.sha256()
    with open(path, "rb") as handle:
        while chunk := handle.read(CHUNK):
            digest.update(chunk)
    return digest.hexdigest()


@functools.lru_cache(maxsize=512)
def _sha256_keyed(path: str, mtime: float, size: int) -> str:
    return sha256_file(Path(path))


def sha256_cached(path: Path) -> str:
    """:func:`sha256_file`, remembered while the file's mtime and size stay the same."""
    info = path.stat()
    return _sha256_keyed(str(path), info.st_mtime, info.st_size)
