"""The REST service's recent batch summaries: kept in memory for the API and the page, and
in MongoDB beside the packets so that a restarted ``bbq-rest`` keeps its history.

:class:`Summaries` is the in-memory part (bounded: ``history`` summaries and
``max_bytes`` of their JSON, the oldest go first). :class:`History` adds the MongoDB copy
(:class:`bbq.store.HistoryStore`): a writer thread first loads what the last run kept, then
writes every new summary and prunes MongoDB to what memory keeps. Requests never wait for
MongoDB beyond a short grace: a signal is acknowledged once kept in memory, and written as
soon as MongoDB answers (when it is away, the service keeps serving from memory).

Each summary gets a sequence number ``seq`` (arrival order) that continues across restarts;
the view's ``epoch`` changes whenever earlier numbers may have changed meaning (a new
process, history loaded from MongoDB), so a page polling with ``since`` starts over.

>>> s = Summaries(history=10)
>>> s.add({"run": "r", "batch_id": 0, "time": 1.0, "records": 2, "counts": {"web": 2},
...        "totals": {"web": 2}, "dead": 0, "dead_total": 0})
(True, 1)
>>> s.view()["total"]
2
"""

from __future__ import annotations

import collections
import json
import logging
import threading
import time
import uuid

from pymongo.errors import PyMongoError

LOG = logging.getLogger(__name__)

MAX_HISTORY_BYTES = 32 << 20
HISTORY_COLLECTION = "rest_history"
PERSIST_GRACE_SECONDS = 2.0  # a signal waits at most this for its MongoDB write
RETRY_MAX_SECONDS = 30.0


def store_for(conf):
    """The :class:`bbq.store.HistoryStore` of ``conf``'s ``[mongodb] url`` and ``database``
    (collection ``[rest] history_collection``, default ``rest_history``; empty: None, the
    history in memory only), or None when this program has no [mongodb] options."""
    from oslo_config import cfg

    from bbq.store import HistoryStore

    try:
        url, database = conf.mongodb.url, conf.mongodb.database
    except (cfg.NoSuchOptError, cfg.NoSuchGroupError):
        LOG.warning("history in memory only: bbq-rest has no [mongodb] url and database options")
        return None
    try:
        collection = conf.rest.history_collection
    except cfg.NoSuchOptError:
        collection = HISTORY_COLLECTION
    return HistoryStore(url, database, collection) if collection else None


class Summaries:
    """Recent batch summaries and the latest totals; safe across request threads.

    Keeps at most ``history`` summaries and ``max_bytes`` of their JSON (oldest go first).
    The totals shown are those of the summary with the latest batch ``time`` (a late
    signal of an older batch does not turn them back)."""

    def __init__(self, history: int, max_bytes: int = MAX_HISTORY_BYTES) -> None:
        self.lock = threading.Lock()
        self._recent: collections.deque = collections.deque()
        self._history = history
        self._max_bytes = max_bytes
        self._bytes = 0
        self._seen: collections.OrderedDict = collections.OrderedDict()
        self._seq = 0
        self._latest: dict | None = None
        self.epoch = uuid.uuid4().hex[:12]
        self.updated: float | None = None
        self.stored: bool | None = None  # None: not kept in MongoDB; else whether it is now

    @property
    def seq(self) -> int:
        return self._seq

    def _keep(self, summary: dict) -> None:
        size = len(json.dumps(summary))
        self._recent.append((summary, size))
        self._bytes += size
        while len(self._recent) > self._history or (
            self._bytes > self._max_bytes and len(self._recent) > 1
        ):
            self._bytes -= self._recent.popleft()[1]

    def _remember(self, summary: dict) -> None:
        self._seen[(summary["run"], summary["batch_id"])] = summary["seq"]
        while len(self._seen) > self._history * 2:
            self._seen.popitem(last=False)
        if self._latest is None or summary["time"] >= self._latest["time"]:
            self._latest = summary

    def add(self, summary: dict) -> tuple[bool, int]:
        """Keep one summary; (False, seq) when the same run's batch was already kept."""
        key = (summary["run"], summary["batch_id"])
        with self.lock:
            if key in self._seen:
                return False, self._seen[key]
            self._seq += 1
            summary = dict(summary, seq=self._seq)
            self._keep(summary)
            self._remember(summary)
            self.updated = time.time()
            return True, self._seq

    def restore(self, stored: list[dict]) -> None:
        """Put the summaries a previous run kept (oldest first, each with its ``seq``)
        before the ones received since this process started, which are numbered after
        them (one also among ``stored`` is dropped)."""
        with self.lock:
            known = {(s["run"], s["batch_id"]) for s in stored}
            local = [s for s, _ in self._recent if (s["run"], s["batch_id"]) not in known]
            last = max((s["seq"] for s in stored), default=0)
            renumbered = [dict(s, seq=last + i) for i, s in enumerate(local, 1)]
            self._recent.clear()
            self._bytes = 0
            self._seen.clear()
            self._latest = None
            for summary in stored + renumbered:
                self._keep(summary)
                self._remember(summary)
            self._seq = last + len(renumbered)
            if self.updated is None and self._latest is not None:
                self.updated = self._latest["time"]
            self.epoch = uuid.uuid4().hex[:12]

    def since(self, seq: int) -> list[dict]:
        with self.lock:
            return [s for s, _ in self._recent if s["seq"] > seq]

    def oldest(self) -> int:
        """The sequence number of the oldest summary kept (the next one when none is)."""
        with self.lock:
            return self._recent[0][0]["seq"] if self._recent else self._seq + 1

    def view(self, since: int = 0) -> dict:
        with self.lock:
            latest = self._latest or {"totals": {}, "dead_total": 0}
            totals = dict(latest["totals"])
            return {
                "totals": totals,
                "total": sum(totals.values()),
                "dead_total": latest["dead_total"],
                "updated": self.updated,
                "seq": self._seq,
                "batches": self._seq,
                "epoch": self.epoch,
                "oldest": self._recent[0][0]["seq"] if self._recent else self._seq + 1,
                "limit": self._history,
                "stored": self.stored,
                "history": [s for s, _ in self._recent if s["seq"] > since],
            }


class History(Summaries):
    """:class:`Summaries` kept in MongoDB too (``store``: a :class:`HistoryStore`)."""

    def __init__(self, history: int, store, max_bytes: int = MAX_HISTORY_BYTES) -> None:
        super().__init__(history, max_bytes)
        self.store = store
        self.stored = False
        self.loaded = False
        self.persisted = 0
        self.changed = threading.Condition()
        self.stopping = False
        self.thread = threading.Thread(target=self._run, name="bbq-history", daemon=True)
        self.thread.start()

    def add(self, summary: dict) -> tuple[bool, int]:
        added, seq = super().add(summary)
        with self.changed:
            self.changed.notify_all()
            # Wait a little for the write while MongoDB answers: a restart right after a
            # signal keeps it. Never while MongoDB is away or before the history is loaded.
            if added and self.loaded and self.stored:
                self.changed.wait_for(
                    lambda: self.persisted >= seq or not self.stored, PERSIST_GRACE_SECONDS
                )
        return added, seq

    def stop(self) -> None:
        with self.changed:
            self.stopping = True
            self.changed.notify_all()
        self.thread.join(timeout=10)

    def _failed(self, what: str, exc: Exception, delay: float) -> float:
        if self.stored is not False or delay <= 1.0:
            LOG.warning("history: MongoDB %s failed, retrying: %s", what, exc)
        with self.changed:
            self.stored = False
            self.changed.notify_all()
            self.changed.wait_for(lambda: self.stopping, delay)
        return min(delay * 2, RETRY_MAX_SECONDS)

    def _load(self) -> None:
        delay = 1.0
        while not self.stopping:
            try:
                stored = self.store.load(self._history)
            except PyMongoError as exc:
                delay = self._failed("load", exc, delay)
                continue
            self.restore(stored)
            with self.changed:
                self.persisted = max((s["seq"] for s in stored), default=0)
                self.loaded = self.stored = True
                self.changed.notify_all()
            LOG.info("history: %d summaries loaded from MongoDB", len(stored))
            return

    def _write(self) -> float:
        pending = self.since(self.persisted)
        if pending:
            self.store.add(pending)
        self.store.prune(self.oldest())
        with self.changed:
            if pending:
                self.persisted = max(self.persisted, pending[-1]["seq"])
            if not self.stored:
                LOG.info("history: MongoDB writes work again")
            self.stored = True
            self.changed.notify_all()
        return 1.0

    def _run(self) -> None:
        self._load()
        delay = 1.0
        while True:
            with self.changed:
                self.changed.wait_for(lambda: self.stopping or self.seq > self.persisted, 60)
                if self.stopping:
                    return
            try:
                delay = self._write()
            except PyMongoError as exc:
                delay = self._failed("write", exc, delay)
