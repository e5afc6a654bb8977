"""Logging for the bbq programs, through oslo.log (the OpenStack convention beside
oslo.config), and bbq-rest's access log.

Every program takes oslo.log's options: ``--debug``, ``--log-file PATH``, ``--log-dir``,
``--use-journal``, ``--use-syslog``, ``--use-json``, ``--log-config-append`` (and the
``[DEFAULT]`` file options of the same names). Without a file, syslog or the journal, lines
go to standard error (standard output carries ``bbq-send pop``'s messages).

>>> conf = config.load(argv, program=config.REST)
>>> setup(conf, config.REST)
>>> app.wsgi_app = AccessLog(app.wsgi_app)
"""

from __future__ import annotations

import logging
import sys
import time

from oslo_log import log

# Loggers of libraries that are too chatty at INFO (or at DEBUG with --debug).
QUIET = ["py4j=WARN", "pymongo=WARN", "pyspark=WARN", "stevedore=WARN", "zaqarclient=WARN"]

ACCESS = logging.getLogger("bbq.rest.access")


def register(conf) -> None:
    """oslo.log's options on ``conf``."""
    log.register_options(conf)
    conf.set_default("default_log_levels", log.get_default_log_levels() + QUIET)


class LoggingUnavailable(Exception):
    pass


def setup(conf, program: str) -> None:
    """Apply the logging options (once per process); LoggingUnavailable (one line) when
    they cannot be: a log file that cannot be opened, --use-journal without the systemd
    Python package (under systemd, standard error reaches the journal anyway)."""
    from bbq import config

    if not (conf.log_file or conf.use_journal or conf.use_stderr):
        # oslo.log's last resort is standard output: bbq-send pop prints messages there.
        conf.set_override("use_stderr", True)
    try:
        log.setup(conf, program, version=config.version())
    except OSError as exc:
        where = exc.filename or conf.log_file or "syslog"
        raise LoggingUnavailable(f"cannot log to {where}: {exc.strerror or exc}") from None
    except (RuntimeError, ValueError, ImportError) as exc:
        if conf.use_journal and "ystemd" in str(exc):
            raise LoggingUnavailable(
                "--use-journal: the systemd Python package (systemd-python) is not "
                "installed; under systemd, standard error already goes to the journal"
            ) from None
        raise LoggingUnavailable(f"cannot set up logging: {exc}") from None


def setup_or_exit(conf, program: str) -> None:
    """``setup``, or exit with status 2 and one line saying why not."""
    try:
        setup(conf, program)
    except LoggingUnavailable as exc:
        print(f"{program}: {exc}", file=sys.stderr)
        raise SystemExit(2) from None


def spark_level(conf) -> str:
    """Spark's own log level: WARN, or INFO with --debug (Spark's DEBUG is megabytes a
    minute of its internals)."""
    return "INFO" if conf.debug else "WARN"


def _printable(text: str, limit: int = 1000) -> str:
    """``text`` for one log line: non-ASCII and control characters escaped, quotes too."""
    return text[:limit].encode("unicode_escape").decode("ascii").replace('"', '\\"')


def request_line(environ: dict) -> str:
    """``METHOD /path?query`` of a WSGI request, as the client sent it (escaped)."""
    path = environ.get("SCRIPT_NAME", "") + environ.get("PATH_INFO", "")
    query = environ.get("QUERY_STRING", "")
    if query:
        path += "?" + query
    return f"{_printable(environ.get('REQUEST_METHOD', '-'), 20)} {_printable(path)}"


class AccessLog:
    """WSGI middleware: one INFO line per request on the ``bbq.rest.access`` logger,
    ``CLIENT "METHOD /path?query" STATUS BYTES SECONDSs``, written when the response has
    been sent (so BYTES and SECONDS are what the client got and waited); ``observe``, if
    given, is called with (environ, status, seconds) as well."""

    def __init__(self, app, observe=None, logger: logging.Logger = ACCESS) -> None:
        self.app = app
        self.observe = observe
        self.logger = logger

    def __call__(self, environ, start_response):
        started = time.monotonic()
        state = {"status": 500}

        def start(status, headers, exc_info=None):
            state["status"] = int(status.split(" ", 1)[0])
            return start_response(status, headers, exc_info)

        try:
            body = self.app(environ, start)
        except BaseException:
            self._done(environ, state["status"], 0, started)
            raise
        return _Body(body, lambda sent: self._done(environ, state["status"], sent, started))

    def _done(self, environ, status: int, sent: int, started: float) -> None:
        seconds = time.monotonic() - started
        self.logger.info(
            '%s "%s" %d %d %.4fs',
            _printable(environ.get("REMOTE_ADDR") or "-", 60),
            request_line(environ),
            status,
            sent,
            seconds,
        )
        if self.observe is not None:
            self.observe(environ, status, seconds)


class _Body:
    """A response body that counts what is sent and reports it when closed."""

    def __init__(self, body, done) -> None:
        self.body = body
        self.done = done
        self.sent = 0

    def __iter__(self):
        for chunk in self.body:
            self.sent += len(chunk)
            yield chunk

    def close(self) -> None:
        try:
            close = getattr(self.body, "close", None)
            if close is not None:
                close()
        finally:
            self.done(self.sent)
