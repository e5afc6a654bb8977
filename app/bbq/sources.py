"""Streaming sources of raw messages: ``socket`` (Spark's text socket) and ``zaqar``.

Both give the same columns, ``value`` (the raw message text), ``timestamp`` (when the job
received it) and ``msgid`` (the source's message id, or null), so the pipeline does not care
where messages come from.

The Zaqar source is a Python Data Source streaming reader: reading a micro-batch *claims*
messages, and Spark committing the batch *deletes* them. While Spark processes a batch, a
helper thread already claims the next one (prefetch), so claiming is off the critical path.
A job that dies before the commit leaves its messages (and the prefetched ones) claimed;
they come back when the claim expires (``claim_ttl``), or at once when the restarted job
releases the claims it recorded in ``claims_file``. Deletes that fail (Zaqar away) are
retried. Delivery is therefore at-least-once, and the store's idempotent writes make it
exactly-once in MongoDB.

>>> spark.dataSource.register(ZaqarDataSource)
>>> df = (spark.readStream.format("zaqar").option("url", "http://127.0.0.1:8888")
...       .option("queue", "bbq").load())
"""

from __future__ import annotations

import concurrent.futures
import contextlib
import datetime as dt
import json
import logging
import os
import queue
import tempfile
import threading

from pyspark.sql import DataFrame, SparkSession
from pyspark.sql import functions as F
from pyspark.sql.datasource import DataSource, SimpleDataSourceStreamReader
from zaqarclient.errors import ZaqarError

from bbq.zaqar import zaqar_client

LOG = logging.getLogger(__name__)

SCHEMA = "value string, timestamp timestamp, msgid string"


def message_text(body) -> str:
    """A Zaqar message body as the text the job parses, whatever it holds: a string as it
    is (lone surrogates escaped: Spark's rows are UTF-8), anything else as JSON, or a
    placeholder the job dead-letters."""
    if not isinstance(body, str):
        try:
            body = json.dumps(body, allow_nan=False)
        except (ValueError, TypeError, RecursionError) as exc:
            return f"<message body of type {type(body).__name__} not representable: {exc}>"[:500]
    try:
        body.encode("utf-8")
    except UnicodeEncodeError:
        body = body.encode("utf-8", "backslashreplace").decode("utf-8")
    return body


class ZaqarStreamReader(SimpleDataSourceStreamReader):
    """Claim on read (the next batch prefetched meanwhile), delete on commit.
    Offsets are batch numbers: {"batch": n}."""

    DELETE_RETRY_SECONDS = 2.0

    def __init__(self, options: dict) -> None:
        self.url = options["url"]
        self.queue_name = options["queue"]
        self.project_id = options.get("project_id", "")
        self.auth = json.loads(options.get("auth", "{}") or "{}")
        self.claim_ttl = int(options.get("claim_ttl", 60))
        self.claim_grace = int(options.get("claim_grace", 60))
        self.claim_limit = int(options.get("claim_limit", 1000))
        self.max_batch = int(options.get("max_batch_messages", 20000))
        self.delete_chunk = int(options.get("delete_ids_per_request", 50))
        self.claims_file = options.get("claims_file") or ""
        self.prefetch = options.get("prefetch", "true").lower() not in ("false", "0", "no")
        self.timeout = float(options.get("timeout", 30))
        self._claim_errors = 0
        self._queue = None
        self._delete_queue = None
        # Claims not yet deleted, by the batch that read them; guarded by _lock because a
        # helper thread deletes committed batches while Spark plans the next one.
        self._pending: dict[int, list[tuple[str, list[str]]]] = {}
        # Claims of the prefetched batch, not yet handed to Spark (guarded by _lock too).
        self._prefetched: list[tuple[str, list[str]]] = []
        self._prefetcher: concurrent.futures.ThreadPoolExecutor | None = None
        self._next: concurrent.futures.Future | None = None
        self._lock = threading.Lock()
        self._last_read = 0  # end offset of the last batch that claimed messages
        self._last_committed = 0
        self._to_delete: queue.Queue = queue.Queue()
        self._deleter: threading.Thread | None = None
        self._released = False

    _UNPICKLED = (
        "_lock",
        "_to_delete",
        "_deleter",
        "_queue",
        "_delete_queue",
        "_prefetcher",
        "_next",
    )

    def __getstate__(self) -> dict:
        """Spark pickles the reader to plan reads: leave out locks, threads and clients."""
        return {k: v for k, v in self.__dict__.items() if k not in self._UNPICKLED}

    def __setstate__(self, state: dict) -> None:
        self.__dict__.update(state)
        self._lock = threading.Lock()
        self._to_delete = queue.Queue()
        self._deleter = None
        self._queue = None
        self._delete_queue = None
        self._prefetcher = None
        self._next = None

    # -- Zaqar -------------------------------------------------------------------------
    @property
    def queue(self):
        if self._queue is None:
            client = zaqar_client(self.url, self.project_id, self.auth, timeout=self.timeout)
            self._queue = client.queue(self.queue_name)
        return self._queue

    def _claim_batch(self) -> tuple[list[tuple], list[tuple[str, list[str]]]]:
        rows: list[tuple] = []
        claims: list[tuple[str, list[str]]] = []
        while len(rows) < self.max_batch:
            limit = min(self.claim_limit, self.max_batch - len(rows))
            try:
                claim = self.queue.claim(ttl=self.claim_ttl, grace=self.claim_grace, limit=limit)
                messages = list(claim)
            except (ZaqarError, OSError, ValueError) as exc:
                # Zaqar busy, away or answering garbage (a proxy's error page) for a moment:
                # go with what was claimed so far and try again at the next trigger, rather
                # than failing the query. (Requests time out: [zaqar] timeout.)
                LOG.warning("claiming from %s failed: %s", self.queue_name, exc)
                self._claim_errors += 1
                break
            if not messages:
                break
            now = dt.datetime.now(dt.UTC)
            ids = []
            for m in messages:
                rows.append((message_text(m.body), now, str(m.id)))
                ids.append(m.id)
            claims.append((claim.id, ids))
            if len(messages) < limit:
                break
        return rows, claims

    def _delete(self, ids: list[str]) -> None:
        if self._delete_queue is None:  # the deleter thread's own client
            client = zaqar_client(self.url, self.project_id, self.auth, timeout=self.timeout)
            self._delete_queue = client.queue(self.queue_name)
        for start in range(0, len(ids), self.delete_chunk):
            self._delete_queue.delete_messages(*ids[start : start + self.delete_chunk])

    # -- claims a crashed run left behind ------------------------------------------------
    def _save_claims(self) -> None:
        if not self.claims_file:
            return
        with self._lock:  # held while writing, so an older snapshot never lands last
            claims = [c for batch in self._pending.values() for c in batch] + self._prefetched
            claim_ids = [cid for cid, _ in claims]
            directory = os.path.dirname(self.claims_file) or "."
            os.makedirs(directory, exist_ok=True)
            fd, tmp = tempfile.mkstemp(dir=directory, prefix=".claims-")
            with os.fdopen(fd, "w") as f:
                json.dump(claim_ids, f)
            os.replace(tmp, self.claims_file)

    def _release_old_claims(self) -> None:
        """Release the claims a previous run recorded but never committed (it died)."""
        if self._released or not self.claims_file:
            return
        self._released = True
        try:
            with open(self.claims_file) as f:
                claim_ids = json.load(f)
        except (OSError, ValueError):
            return
        from zaqarclient.queues.v2 import claim as claim_api

        for claim_id in claim_ids:
            with contextlib.suppress(Exception):  # already expired or deleted
                claim_api.Claim(self.queue, id=claim_id).delete()
        LOG.info("released %d claims left by a previous run", len(claim_ids))
        self._save_claims()

    # -- Spark ----------------------------------------------------------------------------
    def initialOffset(self) -> dict:
        return {"batch": 0}

    def _claim_ahead(self) -> tuple[list[tuple], list[tuple[str, list[str]]]]:
        """Claim a batch and record its claims (claims file too) before Spark sees it."""
        rows, claims = self._claim_batch()
        if claims:
            with self._lock:
                self._prefetched = claims
            self._save_claims()
        return rows, claims

    def read(self, start: dict):
        self._release_old_claims()
        if self._next is not None:  # the batch prefetched while Spark ran the last one
            rows, claims = self._next.result()  # _claim_batch never raises for Zaqar errors
            self._next = None
        else:
            rows, claims = self._claim_ahead()
        end = start["batch"] + 1
        if rows:
            with self._lock:
                self._pending[end] = claims
                self._prefetched = []
                self._last_read = end
            self._save_claims()
        if self.prefetch:
            if self._prefetcher is None:
                self._prefetcher = concurrent.futures.ThreadPoolExecutor(
                    max_workers=1, thread_name_prefix="zaqar-prefetch"
                )
            self._next = self._prefetcher.submit(self._claim_ahead)
        if rows:
            return iter(rows), {"batch": end}
        if self._last_committed < self._last_read <= start["batch"]:
            # Spark commits a batch only when it plans the next one: an empty batch lets it
            # commit (delete) the last claimed messages now, not at the next message or when
            # their claim expires.
            return iter([]), {"batch": end}
        return iter([]), start

    def readBetweenOffsets(self, start: dict, end: dict):
        # Replay of a batch a previous run planned but did not commit. Its messages are
        # still in the queue (never deleted): they come back once their claim is released
        # or expires, and are read again then. So the replay itself is empty.
        return iter([])

    def commit(self, end: dict) -> None:
        """Hand the committed batches' messages to the deleter thread and return: deleting
        is off Spark's critical path. Should this process die first, the messages come
        back (claim released or expired) and are stored again without duplicates."""
        self._last_committed = max(self._last_committed, end["batch"])
        if self._deleter is None:
            self._deleter = threading.Thread(
                target=self._delete_loop, name="zaqar-deleter", daemon=True
            )
            self._deleter.start()
        self._to_delete.put(end["batch"])

    def _delete_loop(self) -> None:
        """Delete committed batches' messages; what fails (Zaqar away) is kept and retried."""
        upto, failed = 0, False
        while True:
            try:
                upto = max(
                    upto,
                    self._to_delete.get(timeout=self.DELETE_RETRY_SECONDS if failed else None),
                )
            except queue.Empty:
                pass  # retry time
            with self._lock:
                work = [(b, list(self._pending[b])) for b in sorted(self._pending) if b <= upto]
            failed = done = False
            for batch, claims in work:
                for claim in claims:
                    try:
                        self._delete(claim[1])
                    except Exception as exc:
                        LOG.warning(
                            "deleting batch %d's messages failed (will retry): %s", batch, exc
                        )
                        failed = True
                        break
                    with self._lock:
                        left = self._pending.get(batch, [])
                        if claim in left:
                            left.remove(claim)
                        if not left:
                            self._pending.pop(batch, None)
                    done = True
                if failed:
                    break
            if done:
                self._save_claims()

    def pending_claims(self) -> int:
        """Claims read or prefetched but not yet deleted (for tests and monitoring)."""
        with self._lock:
            return sum(len(c) for c in self._pending.values()) + len(self._prefetched)


class ZaqarDataSource(DataSource):
    """``spark.readStream.format("zaqar")``; options: url, queue, project_id, auth (JSON),
    claim_ttl, claim_grace, claim_limit, delete_ids_per_request, max_batch_messages,
    claims_file, timeout (seconds per request), prefetch (true: claim the next batch while
    Spark processes this one)."""

    @classmethod
    def name(cls) -> str:
        return "zaqar"

    def schema(self) -> str:
        return SCHEMA

    def simpleStreamReader(self, schema) -> ZaqarStreamReader:
        for required in ("url", "queue"):
            if not self.options.get(required):
                raise ValueError(f"zaqar source: option '{required}' is required")
        return ZaqarStreamReader(dict(self.options))


def zaqar_options(conf, claims_file: str = "") -> dict[str, str]:
    """The zaqar source's options from the [zaqar], [zaqar_auth] and [stream] config."""
    from bbq.config import ZAQAR_AUTH_GROUP

    group = conf[ZAQAR_AUTH_GROUP]
    auth = {}
    if group.auth_type:
        from keystoneauth1 import loading as ks_loading

        # Loading registers the plugin's own options (username, ...) so they can be read.
        ks_loading.load_auth_from_conf_options(conf, ZAQAR_AUTH_GROUP)
        auth = {"auth_type": group.auth_type}
        names = [o.dest for o in ks_loading.get_auth_plugin_conf_options(group.auth_type)]
        for name in [*names, "timeout", "insecure", "cafile"]:
            value = group[name]
            if value not in (None, ""):
                auth[name] = value
    return {
        "url": conf.zaqar.url,
        "queue": conf.zaqar.queue,
        "project_id": conf.zaqar.project_id,
        "auth": json.dumps(auth),
        "claim_ttl": str(conf.zaqar.claim_ttl),
        "claim_grace": str(conf.zaqar.claim_grace),
        "claim_limit": str(conf.zaqar.claim_limit),
        "delete_ids_per_request": str(conf.zaqar.delete_ids_per_request),
        "max_batch_messages": str(conf.stream.max_batch_messages),
        "timeout": str(conf.zaqar.timeout),
        "claims_file": claims_file,
    }


def read_stream(spark: SparkSession, conf) -> DataFrame:
    """The configured source as a streaming DataFrame (value, timestamp, msgid)."""
    source = conf.stream.source
    if source == "socket":
        df = (
            spark.readStream.format("socket")
            .option("host", conf.stream.socket_host)
            .option("port", conf.stream.socket_port)
            .option("numPartitions", conf.stream.socket_partitions)
            .load()
        )
        # No per-line timestamp column: the job stamps lines with the time it stores their
        # batch (cheaper than carrying a timestamp per row from the JVM).
        return df.select(
            "value",
            F.lit(None).cast("timestamp").alias("timestamp"),
            F.lit(None).cast("string").alias("msgid"),
        )
    if source == "zaqar":
        spark.dataSource.register(ZaqarDataSource)
        claims_file = ""
        checkpoint = conf.stream.checkpoint_dir
        if checkpoint and "://" not in checkpoint:
            claims_file = os.path.join(checkpoint, "zaqar-claims.json")
        return spark.readStream.format("zaqar").options(**zaqar_options(conf, claims_file)).load()
    raise ValueError(f"unknown source '{source}' (expected socket or zaqar)")
