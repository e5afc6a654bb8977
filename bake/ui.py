"""What ``bake`` and ``fab`` print: prefixed lines, one table renderer, sizes.

Example::

    say("bbq-rest", "built in 95s")                 # [bbq-rest] built in 95s
    print(table(("name", "size"), [("bbq-rest", mib(300 * 2**20))]))
    binary_size(33_000)                             # '32.2KiB'
"""

from __future__ import annotations

import sys
import threading
from collections.abc import Sequence
from typing import Any

_print_lock = threading.Lock()


def say(prefix: str, message: str, stream=None) -> None:
    """Print ``[prefix] message`` (whole lines only, safe from many threads)."""
    with _print_lock:
        for line in message.splitlines() or [""]:
            print(f"[{prefix}] {line}", file=stream or sys.stdout, flush=True)


def table(header: Sequence[str], rows: Sequence[Sequence[Any]], rule: bool = False) -> str:
    """An aligned text table: columns padded to their widest cell, two spaces apart, no
    trailing blanks; ``rule`` puts a line of dashes under the header."""
    lines = [tuple(str(c) for c in header), *(tuple(str(c) for c in row) for row in rows)]
    widths = [max(len(line[i]) for line in lines) for i in range(len(header))]
    text = ["  ".join(c.ljust(w) for c, w in zip(line, widths, strict=True)) for line in lines]
    if rule:
        text.insert(1, "  ".join("-" * w for w in widths))
    return "\n".join(line.rstrip() for line in text)


def mib(size: Any) -> str:
    """A size in whole MiB as ``300M`` (``-`` for an unknown size)."""
    return f"{size / 2**20:.0f}M" if isinstance(size, int | float) else "-"


def binary_size(n: float) -> str:
    """Bytes as ``512B``, ``32.2KiB`` or ``20.8MiB``."""
    for unit in ("B", "KiB", "MiB"):
        if n < 1024 or unit == "MiB":
            return f"{n:.0f}{unit}" if unit == "B" else f"{n:.1f}{unit}"
        n /= 1024
    return str(n)
