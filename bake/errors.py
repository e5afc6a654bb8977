"""One exception tree for all of ``bake`` (and ``fab``), each class with its exit code.

Every error meant for the user derives from :class:`BakeError` and carries the exit code
the command leaves with; the command line (:mod:`bake.cli`, ``fabfile.py``) prints its
:meth:`~BakeError.lines` on stderr as ``error: ...`` and exits with :attr:`exit_code`:

============================  ====  ==================================================
class                         exit  meaning
============================  ====  ==================================================
:class:`InputError`           2     bad input: spec, arguments, credentials, artifact;
                                    nothing was done
:class:`OperationFailed`      1     a build, upload, host step or cloud call failed
:class:`Interrupted`          130,  stopped by SIGINT / SIGTERM (128 + signal number),
                              143   after cleaning up
============================  ====  ==================================================

Example::

    try:
        ...
    except BakeError as exc:
        for line in exc.lines():
            print(f"error: {line}", file=sys.stderr)
        sys.exit(exc.exit_code)
"""

from __future__ import annotations

import signal

EXIT_OK = 0
EXIT_FAILED = 1
EXIT_BAD_INPUT = 2


class BakeError(Exception):
    """An error for the user: a one-line message (or several lines) and an exit code.

    ``exit_code`` may be given per instance; otherwise the class's own applies.
    """

    exit_code: int = EXIT_FAILED

    def __init__(self, message: str = "", exit_code: int | None = None):
        super().__init__(message)
        if exit_code is not None:
            self.exit_code = exit_code

    def lines(self) -> list[str]:
        """What to print, one ``error:`` line each."""
        return str(self).splitlines() or [type(self).__name__]


class InputError(BakeError):
    """Bad input (a spec, an argument, credentials, an artifact): nothing was done."""

    exit_code = EXIT_BAD_INPUT


class OperationFailed(BakeError):
    """An operation failed (a build, an upload, a host step, a cloud call)."""

    exit_code = EXIT_FAILED


class Interrupted(BakeError):
    """Stopped by a signal after cleaning up; exit code 128 + the signal's number."""

    def __init__(self, message: str = "", signum: int = signal.SIGINT):
        super().__init__(message, 128 + int(signum))
        self.signum = int(signum)


__all__ = [
    "EXIT_BAD_INPUT",
    "EXIT_FAILED",
    "EXIT_OK",
    "BakeError",
    "InputError",
    "Interrupted",
    "OperationFailed",
]
