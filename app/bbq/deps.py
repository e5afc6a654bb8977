"""Start-up: wait until the streaming job's dependencies answer, instead of crashing.

In a stack whose servers boot together (Heat, the local stack), the job often starts before
MongoDB, the Spark master, Zaqar or the REST service listen. ``wait_for`` probes each in
turn, logs what it waits for, and tries again with a delay that doubles up to ``max_delay``;
it returns once all have answered, or raises ``DependencyTimeout`` after ``timeout`` seconds
(0: no limit).

>>> wait_for(dependencies(conf), timeout=conf.stream.dependency_timeout)
"""

from __future__ import annotations

import dataclasses
import logging
import socket
import time
import urllib.parse
from collections.abc import Callable

import requests

LOG = logging.getLogger(__name__)

PROBE_TIMEOUT = 5.0


class DependencyTimeout(Exception):
    pass


@dataclasses.dataclass
class Dependency:
    name: str
    where: str  # shown in logs: no credentials
    probe: Callable[[], None]  # raises unless the dependency answers now


def redact(url: str) -> str:
    """``url`` without the user and password it may carry."""
    parts = urllib.parse.urlsplit(url)
    if "@" not in parts.netloc:
        return url
    return urllib.parse.urlunsplit(parts._replace(netloc=parts.netloc.rpartition("@")[2]))


def _mongo(url: str) -> Callable[[], None]:
    def probe() -> None:
        import pymongo

        ms = 2000  # pymongo keeps selecting a server until this passes, even when refused
        client = pymongo.MongoClient(
            url, serverSelectionTimeoutMS=ms, connectTimeoutMS=ms, socketTimeoutMS=ms
        )
        try:
            client.admin.command("ping")
        finally:
            client.close()

    return probe


def _tcp(hosts: list[tuple[str, int]]) -> Callable[[], None]:
    def probe() -> None:
        errors = []
        for host, port in hosts:  # a standalone master may be several (ZooKeeper HA)
            try:
                with socket.create_connection((host, port), timeout=PROBE_TIMEOUT):
                    return
            except OSError as exc:
                errors.append(f"{host}:{port}: {exc.strerror or exc}")
        raise ConnectionError("; ".join(errors))

    return probe


def _http(url: str, answered: Callable[[int], bool]) -> Callable[[], None]:
    def probe() -> None:
        reply = requests.get(url, timeout=PROBE_TIMEOUT)
        if not answered(reply.status_code):
            raise ConnectionError(f"HTTP {reply.status_code}")

    return probe


def spark_master_hosts(master: str) -> list[tuple[str, int]]:
    """The host:port pairs of a ``spark://`` master URL (none for local[N])."""
    if not master.startswith("spark://"):
        return []
    hosts = []
    for item in master[len("spark://") :].split(","):
        host, _, port = item.strip().rpartition(":")
        hosts.append((host.strip("[]") or item, int(port) if port.isdigit() else 7077))
    return hosts


def dependencies(conf) -> list[Dependency]:
    """What the job needs answering before it starts, from its configuration."""
    deps = [Dependency("MongoDB", redact(conf.mongodb.url), _mongo(conf.mongodb.url))]
    hosts = spark_master_hosts(conf.stream.spark_master)
    if hosts:
        deps.append(Dependency("the Spark master", conf.stream.spark_master, _tcp(hosts)))
    if conf.stream.source == "zaqar":
        ping = conf.zaqar.url.rstrip("/") + "/v2/ping"
        # Any answer but a server error: 401 means Zaqar is up and wants a token.
        deps.append(Dependency("Zaqar", redact(ping), _http(ping, lambda code: code < 500)))
    health = conf.rest.url.rstrip("/") + "/healthz"
    # Any HTTP answer: a draining service (503) still takes the job's signals.
    deps.append(Dependency("the REST service", redact(health), _http(health, lambda c: True)))
    return deps


def _failure(exc: Exception) -> str:
    text = " ".join(str(exc).split()) or type(exc).__name__
    return text.split(" (configured timeouts")[0][:200]  # pymongo's long tail


def wait_for(
    deps: list[Dependency],
    timeout: float = 0.0,
    max_delay: float = 30.0,
    first_delay: float = 1.0,
) -> None:
    """Return once every dependency has answered (each is probed until it does)."""
    deadline = time.monotonic() + timeout if timeout else None
    for dep in deps:
        delay = first_delay
        while True:
            try:
                dep.probe()
                break
            except Exception as exc:  # whatever the client raises: not answering yet
                why = _failure(exc)
            if deadline is not None and time.monotonic() + delay > deadline:
                raise DependencyTimeout(
                    f"{dep.name} at {dep.where} did not answer within {timeout:g}s: {why}"
                )
            LOG.warning(
                "waiting for %s at %s (%s); next try in %gs", dep.name, dep.where, why, delay
            )
            time.sleep(delay)
            delay = min(delay * 2, max_delay)
        LOG.info("%s at %s answers", dep.name, dep.where)
