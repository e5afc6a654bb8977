"""``bbq-send``: the producer, and the seed's pop/claim operations, over python-zaqarclient.

Messages are lines of text, normally one JSON object each (see ``bbq.records``); they are
sent as they are, so a bad line reaches the job's dead-letter collection instead of being
dropped on the way. Only a line that is not UTF-8 (it cannot travel in a JSON body) is not
sent: it is reported with its line number, the lines around it are sent, and the exit
status is 1. Posts to Zaqar are batched by request body size (``[zaqar] post_max_bytes``),
not by count. Every request times out (``[zaqar] timeout``) and one that fails for Zaqar's
reasons is retried (``[zaqar] retries``); then bbq-send stops with one line naming the URL.

Examples::

    bbq-send post --file packets.jsonl              # a file of JSON lines to the queue
    bbq-send post --generate 10000 --services web,db
    cat packets.jsonl | bbq-send post                # stdin
    bbq-send post --target socket --generate 500     # serve lines to Spark's socket source
    bbq-send pop --count 10                          # take (and remove) messages, print them
    bbq-send claim --count 10                        # claim messages, print them with claim id
"""

from __future__ import annotations

import itertools
import json
import random
import socket
import sys
import time
import uuid
from collections.abc import Iterable, Iterator

import requests
from oslo_config import cfg
from zaqarclient.errors import ZaqarError
from zaqarclient.transport import errors as zaqar_errors

from bbq import config

POST_OVERHEAD = len('{"messages": []}')


class SendError(Exception):
    pass


def generate(count: int, services: list[str], prefix: str | None = None) -> Iterator[str]:
    """``count`` JSON packets with unique ids, spread over ``services``."""
    prefix = prefix or uuid.uuid4().hex[:8]
    rnd = random.Random(prefix)
    types = ["latency", "hit", "error"]
    for i in range(count):
        yield json.dumps(
            {
                "id": f"{prefix}-{i}",
                "service": services[i % len(services)],
                "value": round(rnd.uniform(0, 100), 3),
                "type": types[i % len(types)],
                "time": time.time(),
            },
            separators=(",", ":"),
        )


def read_lines(stream, name: str = "stdin", errors: list[str] | None = None, out=sys.stderr):
    """The non-blank lines of a binary ``stream`` as ``(where, text)``; a line that is not
    UTF-8 is reported (``NAME line N: ...``), added to ``errors`` and skipped."""
    for number, raw in enumerate(stream, 1):
        try:
            line = raw.decode("utf-8").rstrip("\r\n")
        except UnicodeDecodeError as exc:
            error = (
                f"{name} line {number}: not UTF-8 (byte 0x{raw[exc.start]:02x} at column "
                f"{exc.start + 1}): not sent"
            )
            print(f"bbq-send: {error}", file=out, flush=True)
            if errors is not None:
                errors.append(error)
            continue
        if line.strip():
            yield f"{name} line {number}", line


def batches_by_size(
    messages: Iterable[str], max_bytes: int, ttl: int, max_count: int = 1000
) -> Iterator[tuple[list[dict], list[str]]]:
    """Group messages into posts whose JSON body stays within ``max_bytes`` (the server's
    limit) and that carry at most ``max_count`` messages (the client's: see config).

    Yields (batch, errors); a single message too large for any post is an error, not sent.
    """
    batch: list[dict] = []
    size = POST_OVERHEAD
    errors: list[str] = []
    for n, message in enumerate(messages, 1):
        where, text = message if isinstance(message, tuple) else (f"message {n}", message)
        item = {"body": text, "ttl": ttl}
        item_size = len(json.dumps(item).encode()) + 2  # ", " separator
        if item_size + POST_OVERHEAD > max_bytes:
            errors.append(
                f"{where}: {item_size} bytes encoded, more than a post may carry "
                f"({max_bytes} bytes): not sent"
            )
            continue
        if batch and (size + item_size > max_bytes or len(batch) >= max_count):
            yield batch, errors
            batch, size, errors = [], POST_OVERHEAD, []
        batch.append(item)
        size += item_size
    if batch or errors:
        yield batch, errors


# Zaqar's own failures, worth another try; anything else (401, 403, 400) is final.
RETRYABLE = (
    requests.ConnectionError,
    requests.Timeout,
    zaqar_errors.ServiceUnavailableError,
    zaqar_errors.InternalServerError,
    ValueError,  # an answer that is not JSON (a proxy's error page, 502/504)
)


class ZaqarUnavailable(SendError):
    pass


class BadAnswer(ValueError):
    """Zaqar (or what stands in its place) answered, but not what the request asks for."""


def retrying(call, what: str, retries: int = 2, delay: float = 0.5, out=sys.stderr):
    """``call()``, tried ``retries`` more times (doubling ``delay``) on Zaqar's failures."""
    for attempt in range(retries + 1):
        try:
            return call()
        except RETRYABLE as exc:
            if attempt == retries:
                raise ZaqarUnavailable(f"{what}: {describe(exc)}") from None
            print(
                f"bbq-send: {what}: {describe(exc)}; retrying in {delay:g}s", file=out, flush=True
            )
            time.sleep(delay)
            delay *= 2
    raise AssertionError("unreachable")


def describe(exc: Exception) -> str:
    """One line for a failed request."""
    if isinstance(exc, requests.Timeout):
        return "no answer within the timeout"
    if isinstance(exc, requests.ConnectionError):
        return "connection failed"
    if isinstance(exc, BadAnswer):
        return str(exc)
    if isinstance(exc, ValueError):
        return "answer is not JSON"
    return f"{type(exc).__name__}: {' '.join(str(exc).split())[:200]}"


def post_batch(queue, batch: list[dict]) -> None:
    """Post one batch; BadAnswer unless Zaqar lists every message as created.

    python-zaqarclient returns None, logging a warning, for an answer it cannot read (a
    proxy's 502 page) and raises for only some error statuses: without this check such a
    post would count as sent."""
    result = queue.post(batch)
    created = result.get("resources") if isinstance(result, dict) else None
    if not isinstance(created, list) or len(created) != len(batch):
        raise BadAnswer("answer does not list the posted messages (not Zaqar, or it failed)")


def post_to_zaqar(
    queue,
    messages: Iterable,
    max_bytes: int,
    ttl: int,
    max_count: int = 1000,
    out=sys.stderr,
    retries: int = 0,
    what: str = "Zaqar",
):
    """Post all messages (str or ``(where, str)``); returns (sent, errors)."""
    sent = 0
    errors: list[str] = []
    for batch, errs in batches_by_size(messages, max_bytes, ttl, max_count):
        errors += errs
        for e in errs:
            print(f"bbq-send: {e}", file=out)
        if batch:
            retrying(lambda b=batch: post_batch(queue, b), what, retries, out=out)
            sent += len(batch)
    return sent, errors


def serve_socket(
    host: str, port: int, messages: Iterable[str], accept_timeout: float, linger: float
) -> int:
    """Listen on host:port and send the messages as lines to the first client (Spark's socket
    source connects to us, like ``nc -lk``). Returns how many were sent."""
    with socket.create_server((host, port), reuse_port=False) as server:
        server.settimeout(accept_timeout)
        print(f"bbq-send: waiting for the job on {host}:{port}", file=sys.stderr, flush=True)
        try:
            conn, _ = server.accept()
        except TimeoutError:
            raise SendError(f"no client connected to {host}:{port} in {accept_timeout}s") from None
        with conn:
            sent = 0
            chunk: list[bytes] = []
            for message in messages:
                text = message[1] if isinstance(message, tuple) else message
                if "\n" in text:
                    raise SendError(f"message {sent + 1} contains a newline")
                chunk.append(text.encode() + b"\n")
                sent += 1
                if len(chunk) >= 1000:
                    conn.sendall(b"".join(chunk))
                    chunk = []
            if chunk:
                conn.sendall(b"".join(chunk))
            time.sleep(linger)
    return sent


def _queue(conf):
    from bbq.zaqar import zaqar_client

    session = config.keystone_session(conf)
    client = zaqar_client(
        conf.zaqar.url, conf.zaqar.project_id, session=session, timeout=conf.zaqar.timeout
    )
    return client.queue(conf.zaqar.queue)


def _messages(conf, errors: list[str]) -> Iterator:
    args = conf.command
    if args.generate is not None:
        services = [s.strip() for s in args.services.split(",") if s.strip()]
        if not services:
            raise SendError("--services must name at least one service")
        return generate(args.generate, services, args.id_prefix)
    if args.file in (None, "-"):
        return read_lines(sys.stdin.buffer, "stdin", errors)
    try:
        stream = open(args.file, "rb")  # closed at exit
    except OSError as exc:
        raise SendError(f"cannot read {args.file}: {exc.strerror}") from None
    return read_lines(stream, args.file, errors)


def cmd_post(conf) -> int:
    args = conf.command
    errors: list[str] = []  # lines not sent (not UTF-8, too large)
    messages = _messages(conf, errors)
    if args.limit:
        messages = itertools.islice(messages, args.limit)
    started = time.monotonic()
    if args.target == "socket":
        sent = serve_socket(
            conf.stream.socket_host,
            conf.stream.socket_port,
            messages,
            args.accept_timeout,
            args.linger,
        )
    else:
        sent, too_large = post_to_zaqar(
            _queue(conf),
            messages,
            conf.zaqar.post_max_bytes,
            conf.zaqar.message_ttl,
            conf.zaqar.post_max_messages,
            retries=conf.zaqar.retries,
            what=f"Zaqar at {conf.zaqar.url}",
        )
        errors += too_large
    took = time.monotonic() - started
    print(f"bbq-send: sent {sent} messages in {took:.2f}s", file=sys.stderr)
    return 1 if errors else 0


def cmd_take(conf) -> int:
    args = conf.command
    queue = _queue(conf)
    if args.name == "pop":  # not retried: a pop that timed out may have taken messages
        messages = list(queue.pop(count=args.count))
        for m in messages:
            print(json.dumps({"id": m.id, "body": m.body}))
    else:
        claim = retrying(
            lambda: queue.claim(
                ttl=conf.zaqar.claim_ttl, grace=conf.zaqar.claim_grace, limit=args.count
            ),
            f"Zaqar at {conf.zaqar.url}",
            conf.zaqar.retries,
        )
        for m in claim:
            print(json.dumps({"id": m.id, "claim_id": claim.id, "body": m.body}))
    return 0


def add_commands(subparsers):
    post = subparsers.add_parser("post", help="send messages to the queue (or the socket source)")
    source = post.add_mutually_exclusive_group()
    source.add_argument("--file", help="file of JSON lines ('-' or none: stdin)")
    source.add_argument("--generate", type=int, metavar="N", help="generate N packets")
    post.add_argument("--services", default="web,db,cache", help="services to generate for")
    post.add_argument("--id-prefix", help="prefix of generated packet ids (default: random)")
    post.add_argument("--limit", type=int, default=0, help="send at most this many")
    post.add_argument("--target", choices=["zaqar", "socket"], default="zaqar")
    post.add_argument(
        "--accept-timeout",
        type=float,
        default=120.0,
        help="socket target: seconds to wait for the job to connect",
    )
    post.add_argument(
        "--linger",
        type=float,
        default=1.0,
        help="socket target: seconds to keep the connection after the last line",
    )
    for name in ("pop", "claim"):
        take = subparsers.add_parser(name, help=f"{name} messages from the queue and print them")
        take.add_argument("--count", type=int, default=10)


COMMAND = cfg.SubCommandOpt(
    "command",
    handler=add_commands,
    title="operations",
    description="What bbq-send does; 'bbq-send OPERATION --help' lists its options.",
    help="post, pop or claim",
)


def main(argv: list[str] | None = None) -> int:
    from bbq import logs

    conf = config.load(argv, program=config.SEND, cli_opts=[COMMAND])
    logs.setup_or_exit(conf, config.SEND)
    try:
        if conf.command.name == "post":
            return cmd_post(conf)
        return cmd_take(conf)
    except SendError as exc:
        print(f"bbq-send: {exc}", file=sys.stderr)
        return 2
    except (*RETRYABLE, ZaqarError) as exc:
        print(f"bbq-send: Zaqar at {conf.zaqar.url}: {describe(exc)}", file=sys.stderr)
        return 2
    except OSError as exc:
        print(f"bbq-send: {type(exc).__name__}: {exc}", file=sys.stderr)
        return 2


if __name__ == "__main__":
    sys.exit(main())
