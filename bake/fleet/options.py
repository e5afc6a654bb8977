"""``fab``'s options, each declared once (default, help, how its text is read), and
:func:`parse`, which turns what a task was given into one :class:`TaskOptions`.

Invoke hands a task each value as the text typed (``None`` when not given); every value is
read here, so a wrong one (``--keep x``, ``--batch 20x``, ``--health-timeout -1``) is one
line naming the option and the value, exit code 2, before any host is touched.

``--batch`` takes Ansible's ``serial`` list: comma-separated sizes, each a number of hosts
or a percentage of all of them (rounded down, at least 1); the last size repeats until every
host had its turn (``1,25%,100%``: a canary, then a quarter, then the rest).
``--max-fail N`` stops the rollout before the next batch once more than N hosts failed in
all; ``--max-fail P%`` once more than P% of a batch's hosts failed (Ansible's
``max_fail_percentage``, which is per batch: a failed canary of ``1,...`` stops it).

Example::

    opts = parse("deploy", {"batch": "1,25%", "max_fail": "10%", "keep": "3"})
    opts.batch.split(10)          # [1, 2, 2, 2, 2, 1]; "1,25%,100%": [1, 2, 7]
    opts.max_fail.stops(failed=1, batch_failed=1, batch_size=1)   # True
"""

from __future__ import annotations

import dataclasses
import math
import re
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path
from typing import Any

from bake.errors import EXIT_BAD_INPUT
from bake.fleet import DeployError
from bake.fleet.host import DEFAULT_KEEP, HEALTH_TIMEOUT
from bake.fleet.shipment import MODES

FORMATS = ("table", "json")
INTERFACES = ("public", "internal", "admin")

_SIZE = re.compile(r"(\d+)(%?)")


def _bad(flag: str, what: str, text: str) -> DeployError:
    return DeployError(f"--{flag} must be {what}, not {text!r}", EXIT_BAD_INPUT)


@dataclasses.dataclass(frozen=True)
class Size:
    """One batch size: ``count`` hosts, or ``percent`` of all hosts (at least 1)."""

    count: int = 0
    percent: int = 0

    def of(self, total: int) -> int:
        return self.count or max(1, self.percent * total // 100)

    def __str__(self) -> str:
        return f"{self.percent}%" if self.percent else str(self.count)


@dataclasses.dataclass(frozen=True)
class Batches:
    """Ansible's ``serial`` list: the sizes of the batches, the last one repeating."""

    sizes: tuple[Size, ...] = (Size(1),)

    @classmethod
    def of(cls, count: int) -> Batches:
        """Batches of ``count`` hosts (DeployError, exit 2, below 1)."""
        return read_batches("batch", str(count))

    def split(self, total: int) -> list[int]:
        """How many hosts each batch of a rollout to ``total`` hosts has."""
        sizes: list[int] = []
        while sum(sizes) < total:
            size = self.sizes[min(len(sizes), len(self.sizes) - 1)].of(total)
            sizes.append(min(size, total - sum(sizes)))
        return sizes

    def __str__(self) -> str:
        return ",".join(map(str, self.sizes))


@dataclasses.dataclass(frozen=True)
class MaxFail:
    """When a rollout stops: more than ``count`` failed hosts in all, or (``percent`` set)
    more than ``percent``% of one batch's hosts failed."""

    count: int = 0
    percent: int | None = None

    @classmethod
    def of(cls, value: int | str) -> MaxFail:
        return read_max_fail("max-fail", str(value))

    def stops(self, failed: int, batch_failed: int, batch_size: int) -> bool:
        """Whether the rollout stops after a batch (``failed``: in all so far)."""
        if self.percent is None:
            return failed > self.count
        return batch_failed * 100 > self.percent * batch_size

    def __str__(self) -> str:
        return str(self.count) if self.percent is None else f"{self.percent}%"


NEVER = MaxFail(percent=100)  # more than 100% of a batch never fails: a rollout never stops


def read_batches(flag: str, text: str) -> Batches:
    what = "comma-separated numbers of hosts (1 or more) or percentages (1% to 100%)"
    sizes = []
    for item in text.split(","):
        found = _SIZE.fullmatch(item.strip())
        number = int(found.group(1)) if found else 0
        percent = bool(found and found.group(2))
        if number < 1 or (percent and number > 100):
            raise _bad(flag, what, text)
        sizes.append(Size(percent=number) if percent else Size(count=number))
    return Batches(tuple(sizes))


def read_max_fail(flag: str, text: str) -> MaxFail:
    found = _SIZE.fullmatch(text.strip())
    if not found or (found.group(2) and int(found.group(1)) > 100):
        raise _bad(flag, "a number of hosts (0 or more) or a percentage (0% to 100%)", text)
    number = int(found.group(1))
    return MaxFail(percent=number) if found.group(2) else MaxFail(count=number)


def read_keep(flag: str, text: str) -> int:
    value = text.strip()
    if not value.isdigit() or int(value) < 2:
        raise _bad(flag, "a whole number, at least 2 (current and its rollback)", text)
    return int(value)


def read_seconds(flag: str, text: str) -> float:
    try:
        value = float(text)
    except ValueError:
        value = math.nan
    if not (math.isfinite(value) and 0 < value <= 86400):
        raise _bad(flag, "a positive number of seconds (at most a day)", text)
    return value


def one_of(choices: Sequence[str]) -> Callable[[str, str], str]:
    def read(flag: str, text: str) -> str:
        if text not in choices:
            raise _bad(flag, f"one of {', '.join(choices)}", text)
        return text

    return read


def text_value(flag: str, text: str) -> str | None:
    """A name or path; an empty one counts as not given."""
    return text or None


def existing_file(flag: str, text: str) -> str:
    if not Path(text).expanduser().is_file():
        raise DeployError(f"--{flag} {text}: no such file", EXIT_BAD_INPUT)
    return text


def user_name(flag: str, text: str) -> str:
    if not text or any(c.isspace() or c in "@:" for c in text):
        raise _bad(flag, "a user name", text)
    return text


@dataclasses.dataclass(frozen=True)
class Option:
    """One option: its ``default`` text (None: not given), ``help``, and ``read``
    ((flag, text) -> value). ``kind`` is "value", "flag" (on/off) or "list" (repeatable)."""

    default: str | None
    help: str
    read: Callable[[str, str], Any] = text_value
    kind: str = "value"


# Every task's options: which hosts, how to reach them, how many at a time, what to print.
HOST_OPTIONS: dict[str, Option] = {
    "hosts": Option(None, "hosts, comma-separated [user@]host[:port] (also fab -H)"),
    "stack": Option(None, "Nova: servers whose metadata bbq_stack is this (a Heat stack's name)"),
    "role": Option(None, "Nova: servers whose metadata bbq_role is this"),
    "image": Option(None, "Nova: servers running this image id"),
    "network": Option(None, "Nova: the network whose address to use"),
    "os_cloud": Option(None, "cloud in clouds.yaml (default: $OS_CLOUD or the OS_* variables)"),
    "os_region_name": Option(None, "catalog region (default: the cloud's)"),
    "os_interface": Option(
        None,
        "catalog interface: public, internal or admin (default: the cloud's, else public)",
        one_of(INTERFACES),
    ),
    "config_file": Option(
        None, "oslo.config file whose [keystone] group holds keystoneauth1 options", existing_file
    ),
    "user": Option("root", "SSH user (root, or a user with passwordless sudo)", user_name),
    "known_hosts": Option("~/.ssh/known_hosts", "known_hosts file host keys are checked against"),
    "key": Option(None, "SSH private key file (repeatable)", existing_file, kind="list"),
    "accept_new_host_keys": Option(
        None, "trust and record host keys seen for the first time", kind="flag"
    ),
    "batch": Option(
        "1",
        "hosts at a time: numbers or percentages, the last repeating (1,25%,100%)",
        read_batches,
    ),
    "max_fail": Option(
        "0",
        "stop once more than N hosts failed, or more than P% of a batch (N or P%)",
        read_max_fail,
    ),
    "format": Option("table", "table, or json: one JSON document on stdout", one_of(FORMATS)),
}
# Tasks that change hosts: what they wait for, and --check.
CHANGE_OPTIONS: dict[str, Option] = {
    "health_timeout": Option(
        f"{HEALTH_TIMEOUT:g}",
        "seconds to wait for the units and the health endpoint",
        read_seconds,
    ),
    "check": Option(None, "print each host's plan and change nothing", kind="flag"),
}
DEPLOY_OPTIONS: dict[str, Option] = {
    "app": Option(None, "the app source directory (default: app/ beside the fabfile)"),
    "keep": Option(str(DEFAULT_KEEP), "releases kept per host (2 or more)", read_keep),
    "mode": Option(
        "clone",
        "clone (hard-linked copy of the current venv, changed wheels reinstalled) or fresh",
        one_of(MODES),
    ),
}
# Each task's options, in the order its help lists them.
TASK_OPTIONS: dict[str, dict[str, Option]] = {
    "deploy": {**HOST_OPTIONS, **CHANGE_OPTIONS, **DEPLOY_OPTIONS},
    "rollback": {**HOST_OPTIONS, **CHANGE_OPTIONS},
    "restart": {**HOST_OPTIONS, **CHANGE_OPTIONS},
    "status": HOST_OPTIONS,
    "releases": HOST_OPTIONS,
    # `fab hosts` only resolves the hosts (no SSH): the options that choose them, and --format.
    "hosts": {
        name: option
        for name, option in HOST_OPTIONS.items()
        if name not in ("known_hosts", "key", "accept_new_host_keys", "batch", "max_fail")
    },
}


@dataclasses.dataclass(frozen=True)
class TaskOptions:
    """A task's options, read (see the tables above for each one's meaning)."""

    hosts: str | None = None
    stack: str | None = None
    role: str | None = None
    image: str | None = None
    network: str | None = None
    os_cloud: str | None = None
    os_region_name: str | None = None
    os_interface: str | None = None
    config_file: str | None = None
    user: str = "root"
    known_hosts: str = "~/.ssh/known_hosts"
    key: tuple[str, ...] = ()
    accept_new_host_keys: bool = False
    batch: Batches = Batches()
    max_fail: MaxFail = MaxFail()
    format: str = "table"
    health_timeout: float = HEALTH_TIMEOUT
    check: bool = False
    app: str | None = None
    keep: int = DEFAULT_KEEP
    mode: str = "clone"


def _read(name: str, option: Option, given: Any) -> Any:
    flag = name.replace("_", "-")
    if option.kind == "flag":
        return bool(given)
    if option.kind == "list":
        items = [given] if isinstance(given, str) else list(given or ())
        return tuple(option.read(flag, str(item)) for item in items)
    text = option.default if given is None else str(given)
    return None if text is None else option.read(flag, text)


def parse(action: str, given: Mapping[str, Any]) -> TaskOptions:
    """The TaskOptions of ``action`` from ``given`` (option name: text, None when not
    given; numbers are taken too); DeployError (exit 2) naming the first bad one."""
    table = TASK_OPTIONS.get(action)
    if table is None:
        raise DeployError(
            f"unknown task {action!r} (one of {', '.join(TASK_OPTIONS)})", EXIT_BAD_INPUT
        )
    unknown = sorted(set(given) - set(table))
    if unknown:
        raise DeployError(f"fab {action} takes no --{unknown[0].replace('_', '-')}", EXIT_BAD_INPUT)
    values = {name: _read(name, option, given.get(name)) for name, option in table.items()}
    return TaskOptions(**values)
