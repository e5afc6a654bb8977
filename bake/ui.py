"""What ``bake`` and ``fab`` print: prefixed lines, one table renderer, sizes, the output
formats of ``-f/-c`` and the logging of ``-v/-q/--debug/--log-file`` (the one home of both).

Example::

    say("bbq-rest", "built in 95s")                 # [bbq-rest] built in 95s
    print(table(("name", "size"), [("bbq-rest", mib(300 * 2**20))]))
    binary_size(33_000)                             # '32.2KiB'
    add_format_options(parser, ("name", "size"))    # -f json -c name ...
    emit_list(args, ("name", "size"), [{"name": "bbq-rest", "size": 3 << 20}],
              display={"size": mib})
    configure_logging(verbose=1, log_file="bake.log"); info("bake: bbq-rest: built")
"""

from __future__ import annotations

import argparse
import functools
import json
import logging
import sys
import threading
from collections.abc import Callable, Iterable, Sequence
from typing import Any, TextIO

from cliff.columns import FormattableColumn

from bake.errors import InputError

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


# -- output formats: cliff's formatters (the openstack CLI's own -f/-c) ---------------------

LIST_FORMATTERS = "cliff.formatter.list"  # table, json, yaml, value, csv
SHOW_FORMATTERS = "cliff.formatter.show"  # table, json, yaml, value, shell
Display = Callable[[Any], str]


@functools.cache
def _formatters(namespace: str) -> dict[str, Any]:
    """cliff's formatter plugins of ``namespace`` (stevedore entry points), by name."""
    from stevedore import ExtensionManager

    return {e.name: e.obj for e in ExtensionManager(namespace, invoke_on_load=True)}


def add_format_options(
    parser: argparse.ArgumentParser, columns: Sequence[str], listing: bool = True
) -> None:
    """``-f/--format``, ``-c/--column``, each formatter's own options (``--noindent``,
    ``--max-width``, ``--quote``...) and, for a ``listing``, ``--sort-column`` and
    ``--sort-ascending/--sort-descending``: cliff's formatters, spelled as the openstack CLI
    spells them. A bad format or column is argparse's one-line usage error (exit 2).
    Empty ``columns``: the record's keys are only known when it is read (a stack's outputs);
    a column it lacks is then an InputError from :func:`emit_record`."""
    formatters = _formatters(LIST_FORMATTERS if listing else SHOW_FORMATTERS)
    group = parser.add_argument_group("output formatters")
    group.add_argument(
        "-f",
        "--format",
        choices=sorted(formatters),
        help="output format (default: table" + ("" if listing else ", or a human summary") + ")",
    )
    group.add_argument(
        "-c",
        "--column",
        dest="columns",
        action="append",
        default=[],
        choices=columns or None,
        metavar="COLUMN",
        help=f"show only this column (repeatable): {', '.join(columns)}"
        if columns
        else "show only this field (repeatable)",
    )
    for formatter in formatters.values():
        formatter.add_argument_group(parser)
    if listing:
        group.add_argument(
            "--sort-column",
            action="append",
            default=[],
            choices=columns or None,
            metavar="COLUMN",
            help="sort the rows by this column (repeatable)",
        )
        order = group.add_mutually_exclusive_group()
        order.add_argument(
            "--sort-ascending",
            dest="sort_descending",
            action="store_false",
            default=False,
            help="sort in ascending order (the default)",
        )
        order.add_argument(
            "--sort-descending",
            dest="sort_descending",
            action="store_true",
            help="sort in descending order",
        )


def json_option(p: argparse.ArgumentParser, help: str = "same as -f json") -> None:
    """``--json``, kept where it came before ``-f``: the same as ``-f json``."""
    p.add_argument("--json", dest="format", action="store_const", const="json", help=help)


def emit_list(
    args: argparse.Namespace,
    columns: Sequence[str],
    rows: Iterable[dict[str, Any]],
    display: dict[str, Display] | None = None,
    brief: Sequence[str] | None = None,
    stream: TextIO | None = None,
) -> None:
    """Print ``rows`` (dicts keyed by column) with cliff's formatter ``args.format``
    (default table).

    Machine formats (json, yaml, csv, value) carry the raw values of every column; the table
    shows the ``brief`` columns (default: all), each cell through ``display[column]``.
    ``-c`` picks columns (in ``columns``' order) for any format.
    """
    fmt = getattr(args, "format", None) or "table"
    rows = _sorted(list(rows), getattr(args, "sort_column", None) or [], args)
    chosen = _chosen(args, columns, brief if fmt == "table" else None)
    text = fmt in ("csv", "value")  # nested values as compact JSON, not Python's repr
    data = [[_Cell(row.get(c), (display or {}).get(c), text) for c in chosen] for row in rows]
    formatter = _formatters(LIST_FORMATTERS)[fmt]
    formatter.emit_list(chosen, data, stream or sys.stdout, _options(args, LIST_FORMATTERS))


def emit_record(
    args: argparse.Namespace,
    record: dict[str, Any],
    display: dict[str, Display] | None = None,
    stream: TextIO | None = None,
) -> None:
    """Print one record with cliff's formatter ``args.format`` (default table: a
    field/value table)."""
    fmt = getattr(args, "format", None) or "table"
    chosen = _chosen(args, list(record), None)
    text = fmt in ("csv", "value", "shell")  # nested values as compact JSON, not Python's repr
    data = [_Cell(record[c], (display or {}).get(c), text) for c in chosen]
    formatter = _formatters(SHOW_FORMATTERS)[fmt]
    formatter.emit_one(chosen, data, stream or sys.stdout, _options(args, SHOW_FORMATTERS))


def _options(args: argparse.Namespace, namespace: str) -> argparse.Namespace:
    """``args`` with the defaults of every formatter option it lacks (a caller whose parser
    did not add them)."""
    parser = argparse.ArgumentParser(add_help=False)
    for formatter in _formatters(namespace).values():
        formatter.add_argument_group(parser)
    defaults = vars(parser.parse_args([]))
    return argparse.Namespace(**{**defaults, **vars(args)})


class _Cell(FormattableColumn):
    """One value for cliff's formatters: the raw value for machine formats (JSON-safe; for
    the ``text`` ones, csv and value, a nested value as compact JSON), ``display(value)``
    in a table (``-`` for none, nested values as compact JSON)."""

    def __init__(self, value: Any, display: Display | None, text: bool = False):
        super().__init__(value)
        self.display, self.text = display, text

    def human_readable(self) -> str:
        if self.display is not None:
            return self.display(self._value)
        return "-" if self._value is None else _plain(self._value)

    def machine_readable(self) -> Any:
        if isinstance(self._value, str | int | float | bool) or self._value is None:
            return self._value
        if self.text:
            return _plain(self._value)
        return json.loads(json.dumps(self._value, default=str))


def _chosen(args: argparse.Namespace, columns: Sequence[str], brief: Sequence[str] | None):
    wanted = getattr(args, "columns", None) or []
    unknown = [c for c in wanted if c not in columns]
    if unknown:
        raise InputError(
            f"-c {unknown[0]}: no such column (there are: {', '.join(columns) or 'none'})"
        )
    if wanted:
        return [c for c in columns if c in wanted]
    return list(brief or columns)


def _sorted(rows: list[dict[str, Any]], keys: Sequence[str], args: argparse.Namespace):
    if not keys:
        return rows
    known = set().union(*rows) if rows else set(keys)
    unknown = [k for k in keys if k not in known]
    if unknown:
        raise InputError(f"--sort-column {unknown[0]}: no such column")

    def key(row: dict[str, Any]) -> tuple:
        values = (row.get(k) for k in keys)
        return tuple((v is not None, isinstance(v, str), v if v is not None else 0) for v in values)

    return sorted(rows, key=key, reverse=bool(getattr(args, "sort_descending", False)))


def _plain(value: Any) -> str:
    """A cell of a table: nested values as compact JSON, None as empty."""
    if value is None:
        return ""
    if isinstance(value, dict | list | tuple):
        return json.dumps(value, sort_keys=True, default=str)
    return str(value)


# -- logging (as the openstack CLI's -v/-q/--debug/--log-file) --------------------------------

# bake's own progress lines ("bake: NAME: ...") are INFO records of this logger; the lines of
# a build log streamed with -v are DEBUG records of BUILD_LOG_LOGGER.
PROGRESS = logging.getLogger("bake.progress")
BUILD_LOG_LOGGER = logging.getLogger("bake.buildlog")
_installed: list[logging.Handler] = []
_NEVER = logging.CRITICAL + 1


class _ConsoleFilter(logging.Filter):
    """bake's records from ``ours`` up; the client libraries' from ``others`` up."""

    def __init__(self, ours: int, others: int):
        super().__init__()
        self.ours, self.others = ours, others

    def filter(self, record: logging.LogRecord) -> bool:
        mine = record.name == "bake" or record.name.startswith("bake.")
        return record.levelno >= (self.ours if mine else self.others)


class _ConsoleFormatter(logging.Formatter):
    """Progress and error lines as they are; bake's other warnings as ``bake: ...``; the
    libraries' records named (``keystoneauth.session: DEBUG: ...``)."""

    def format(self, record: logging.LogRecord) -> str:
        message = record.getMessage()
        if record.exc_info:  # --debug: the traceback of an error
            message += "\n" + self.formatException(record.exc_info)
        if record.name in (PROGRESS.name, BUILD_LOG_LOGGER.name):
            return message
        if record.name == "bake" or record.name.startswith("bake."):
            return f"bake: {message}"
        return f"{record.name}: {record.levelname}: {message}"


def configure_logging(verbose: int = 0, quiet: bool = False, debug: bool = False, log_file=None):
    """Where log records go, by the openstack CLI's options.

    Console (stderr): ``quiet`` (-q) errors and warnings only; default also bake's progress
    lines; ``verbose`` 1 (-v) also the build log as it is written and the libraries'
    warnings; 2 (-vv) their info; ``debug`` (or -vvv) everything, keystoneauth's HTTP log
    included (it masks tokens and passwords). ``log_file``: every record, with times.
    """
    root = logging.getLogger()
    for handler in _installed:
        root.removeHandler(handler)
        handler.close()
    _installed.clear()
    level = 0 if quiet else 1 + verbose + (3 if debug else 0)
    ours = {0: logging.WARNING, 1: logging.INFO}.get(level, logging.DEBUG)
    others = {0: _NEVER, 1: _NEVER, 2: logging.WARNING, 3: logging.INFO}.get(level, logging.DEBUG)
    console = logging.StreamHandler(sys.stderr)
    console.addFilter(_ConsoleFilter(ours, others))
    console.setFormatter(_ConsoleFormatter())
    _installed.append(console)
    root.addHandler(console)
    if log_file:
        try:
            file_handler = logging.FileHandler(log_file, encoding="utf-8")
        except OSError as exc:
            raise InputError(f"--log-file: {log_file}: {exc.strerror or exc}") from None
        file_handler.setFormatter(
            logging.Formatter("%(asctime)s %(process)d %(levelname)s %(name)s: %(message)s")
        )
        _installed.append(file_handler)
        root.addHandler(file_handler)
    root.setLevel(logging.DEBUG if log_file else min(ours, others))
    # cliff loads its formatters through stevedore, which logs each entry point it finds:
    # quiet, as osc-lib quiets it for the openstack CLI.
    logging.getLogger("stevedore").setLevel(logging.ERROR)
    bake_logger = logging.getLogger("bake")
    bake_logger.setLevel(logging.NOTSET)
    if not bake_logger.handlers:  # keeps auth.quiet_libraries from adding its own
        bake_logger.addHandler(logging.NullHandler())
    return level


def info(message: str) -> None:
    """A progress line on stderr (hidden by -q), and in the --log-file."""
    PROGRESS.info(message)


def error(message: str) -> None:
    """An ``error: ...`` line on stderr (always), and in the --log-file."""
    PROGRESS.error(f"error: {message}")


class Follower:
    """Follow a file as it is written (``tail -f``), each new line (after ``prefix``) a DEBUG
    record of ``logger`` (``bake build -v``: the build log on stderr as diskimage-builder
    writes it; ``bake matrix -v``: each row's log, its lines prefixed with the row).

    Example::

        follower = Follower(BUILD_LOG_LOGGER)
        follower.start(log_path)   # when the file is about to be written
        ...
        follower.stop()            # reads what is left, then ends
    """

    POLL = 0.2

    def __init__(self, logger: logging.Logger, prefix: str = ""):
        self.logger, self.prefix = logger, prefix
        self._done = threading.Event()
        self._thread: threading.Thread | None = None

    def start(self, path) -> None:
        self._thread = threading.Thread(target=self._run, args=(path,), daemon=True)
        self._thread.start()

    def stop(self) -> None:
        self._done.set()
        if self._thread is not None:
            self._thread.join(timeout=10)

    def _run(self, path) -> None:
        while True:  # the file may not exist yet when asked to follow it
            try:
                handle = open(path, encoding="utf-8", errors="replace")  # noqa: SIM115
                break
            except FileNotFoundError:
                if self._done.wait(self.POLL):
                    return
        with handle:
            partial = ""
            while True:
                done = self._done.is_set()  # read once more after being told to stop
                chunk = handle.read()
                lines = (partial + chunk).split("\n")
                partial = lines.pop()
                for line in lines:
                    self.logger.debug(self.prefix + line)
                if done:
                    if partial:
                        self.logger.debug(self.prefix + partial)
                    return
                if not chunk:
                    self._done.wait(self.POLL)
