"""MongoDB store: idempotent writes of packets and dead letters, and the counts per service.

Idempotence comes from the packet id being the document ``_id``: ``insert_many`` with
``ordered=False`` inserts every new document and reports the ones already there as
duplicate-key errors (code 11000), which are ignored, so a redelivered batch adds nothing.
Only the common MongoDB API is used (real MongoDB in production, SecantusDB in tests).

>>> store = Store("mongodb://127.0.0.1:27017", "bbq")
>>> store.write_packets([{"_id": "1", "service": "web", "value": 1.0}])
{'web': 1}
"""

from __future__ import annotations

import collections
import datetime as dt
import json
import logging
import threading
import time
import urllib.parse

import pymongo
from bson.errors import InvalidDocument
from pymongo.errors import (
    BulkWriteError,
    ConnectionFailure,
    DuplicateKeyError,
    ExecutionTimeout,
    WriteConcernError,
    WriteError,
)

from bbq import records

LOG = logging.getLogger(__name__)

DUPLICATE_KEY = 11000
# What the client's encoder raises for a document it cannot turn into BSON (a string with a
# lone surrogate, an int beyond 64 bits, a datetime out of range, a document too large).
UNENCODABLE = (InvalidDocument, OverflowError, ValueError, TypeError)
# Failures that are not the documents' fault: the write is retried (it is idempotent).
TRANSIENT = (ConnectionFailure, WriteConcernError, ExecutionTimeout)
# Client timeouts unless the URL sets its own: no call waits forever on a silent server.
TIMEOUTS_MS = {
    "connectTimeoutMS": 10000,
    "serverSelectionTimeoutMS": 10000,
    "socketTimeoutMS": 120000,
}

_clients: dict[str, pymongo.MongoClient] = {}
_clients_lock = threading.Lock()


class StoreUnavailable(Exception):
    """MongoDB did not take a write within the retry time (down, unreachable, no primary)."""


def _timeouts(url: str) -> dict[str, int]:
    given = {k.lower() for k in urllib.parse.parse_qs(urllib.parse.urlsplit(url).query)}
    return {k: v for k, v in TIMEOUTS_MS.items() if k.lower() not in given}


def client(url: str) -> pymongo.MongoClient:
    """One MongoClient per URL and process (executors reuse it across tasks)."""
    with _clients_lock:
        found = _clients.get(url)
        if found is None:
            found = _clients[url] = pymongo.MongoClient(
                url, tz_aware=True, connect=False, **_timeouts(url)
            )
        return found


def close_clients() -> None:
    with _clients_lock:
        for found in _clients.values():
            found.close()
        _clients.clear()


class Store:
    def __init__(
        self,
        url: str,
        database: str,
        collection: str = "packets",
        dead_letter_collection: str = "dead_letters",
        write_batch_size: int = 5000,
        retry_seconds: float = 60.0,
    ) -> None:
        self.url = url
        db = client(url)[database]
        self.packets = db[collection]
        self.dead_letters = db[dead_letter_collection]
        self.write_batch_size = write_batch_size
        self.retry_seconds = retry_seconds
        # Set when a write was retried after a failure that was not the documents': part of
        # it may have landed before, so the new-document counts may be short (recount).
        self.retried = False

    @classmethod
    def from_conf(cls, conf) -> Store:
        m = conf.mongodb
        return cls(
            m.url,
            m.database,
            m.collection,
            m.dead_letter_collection,
            m.write_batch_size,
            m.retry_seconds,
        )

    def settings(self) -> dict:
        """Plain, picklable arguments to rebuild this store in an executor."""
        return {
            "url": self.url,
            "database": self.packets.database.name,
            "collection": self.packets.name,
            "dead_letter_collection": self.dead_letters.name,
            "write_batch_size": self.write_batch_size,
            "retry_seconds": self.retry_seconds,
        }

    def ensure_indexes(self) -> None:
        """Indexes for operators' queries of dead letters (by reason).

        Packets get none beyond the unique ``_id``: a secondary index halves the insert
        rate (measured on SecantusDB), and the job needs only a count per service once,
        at start-up. Add one in production if you query packets by field."""
        self._retrying(
            lambda: self.dead_letters.create_index([("reason", pymongo.ASCENDING)]), "index"
        )

    def ping(self) -> None:
        """Raises (pymongo's error) unless the server answers now."""
        self.packets.database.client.admin.command("ping")

    # -- writes: every document stored, already there, or refused with a reason ----------
    def _retrying(self, call, what: str):
        """``call()``, tried again with a growing delay while MongoDB is away (a transient
        failure, not the documents'), for at most ``retry_seconds``."""
        deadline = time.monotonic() + self.retry_seconds
        delay = 0.5
        while True:
            try:
                return call()
            except TRANSIENT as exc:
                if time.monotonic() + delay > deadline:
                    raise StoreUnavailable(
                        f"MongoDB ({what}) unavailable for {self.retry_seconds:g}s: "
                        f"{type(exc).__name__}: {exc}"
                    ) from None
                LOG.warning("MongoDB (%s) failed, retrying in %.1fs: %s", what, delay, exc)
                self.retried = True
                time.sleep(delay)
                delay = min(delay * 2, 10.0)

    @staticmethod
    def _bulk_outcome(exc: BulkWriteError) -> tuple[set[int], dict[int, str]]:
        if exc.details.get("writeConcernErrors"):
            raise WriteConcernError(str(exc.details["writeConcernErrors"][:1]))
        dup: set[int] = set()
        refused: dict[int, str] = {}
        for e in exc.details.get("writeErrors", []):
            if e.get("code") == DUPLICATE_KEY:
                dup.add(e["index"])
            else:
                message = records.printable(str(e.get("errmsg", "")))
                refused[e["index"]] = f"refused by the database: {message} (code {e.get('code')})"
        return dup, refused

    @staticmethod
    def _one_by_one(collection, docs: list[dict]) -> tuple[set[int], dict[int, str]]:
        """The slow path, for a chunk holding a document the client cannot encode."""
        dup: set[int] = set()
        refused: dict[int, str] = {}
        for i, doc in enumerate(docs):
            try:
                collection.insert_one(doc)
            except DuplicateKeyError:
                dup.add(i)
            except WriteError as exc:
                message = records.printable(str(exc.details.get("errmsg", exc)))
                refused[i] = f"refused by the database: {message} (code {exc.code})"
            except UNENCODABLE as exc:
                message = records.printable(str(exc))
                refused[i] = f"not storable: {type(exc).__name__}: {message}"
        return dup, refused

    def _insert(self, collection, docs: list[dict]) -> tuple[set[int], dict[int, str]]:
        """Insert ``docs``: (indexes already stored, {index: why it was refused})."""
        if not docs:
            return set(), {}

        def call():
            try:
                collection.insert_many(docs, ordered=False)
            except BulkWriteError as exc:
                return self._bulk_outcome(exc)
            except UNENCODABLE:  # one document the client cannot encode: nothing was sent
                return self._one_by_one(collection, docs)
            return set(), {}

        return self._retrying(call, f"insert into {collection.name}")

    def insert_packets(self, docs: list[dict]) -> tuple[dict[str, int], list[dict]]:
        """Store packets idempotently: (the number of *new* documents per service, a dead
        letter for each document the database or its encoder refused)."""
        new: collections.Counter = collections.Counter()
        dead: list[dict] = []
        for start in range(0, len(docs), self.write_batch_size):
            chunk = docs[start : start + self.write_batch_size]
            dup, refused = self._insert(self.packets, chunk)
            new.update(
                d["service"] for i, d in enumerate(chunk) if i not in dup and i not in refused
            )
            dead += [refused_packet(chunk[i], why) for i, why in refused.items()]
        return dict(new), dead

    def write_packets(self, docs: list[dict]) -> dict[str, int]:
        """Store packets idempotently (refused ones as dead letters); new ones per service."""
        new, dead = self.insert_packets(docs)
        if dead:
            self.write_dead_letters(dead)
        return new

    def write_dead_letters(self, docs: list[dict]) -> int:
        """Store dead letters idempotently; the number of new ones. One the database refuses
        is stored again without its raw text; if even that is refused, it is logged."""
        added = 0
        for start in range(0, len(docs), self.write_batch_size):
            chunk = docs[start : start + self.write_batch_size]
            dup, refused = self._insert(self.dead_letters, chunk)
            added += len(chunk) - len(dup) - len(refused)
            if refused:
                bare = [
                    dict(chunk[i], raw="", reason=f"{chunk[i]['reason']}; raw text not kept: {why}")
                    for i, why in refused.items()
                ]
                dup2, lost = self._insert(self.dead_letters, bare)
                added += len(bare) - len(dup2) - len(lost)
                for i, why in lost.items():
                    LOG.error("dead letter %s not storable: %s", bare[i].get("_id"), why)
        return added

    # -- reads ------------------------------------------------------------------------------
    def counts(self) -> dict[str, int]:
        """Stored packets per service, straight from the database."""
        pipeline = [{"$group": {"_id": "$service", "n": {"$sum": 1}}}]
        return self._retrying(
            lambda: {row["_id"]: row["n"] for row in self.packets.aggregate(pipeline)}, "count"
        )

    def dead_letter_count(self) -> int:
        return self._retrying(lambda: self.dead_letters.count_documents({}), "count")


class HistoryStore:
    """The REST service's recent batch summaries, in a collection beside the packets.

    One document per summary: ``_id`` is ``{"run", "batch_id"}`` (a summary is kept once),
    ``seq`` its number in arrival order (indexed), ``time`` the batch's epoch seconds and
    ``summary`` its JSON text (service names are arbitrary strings, so they are never used
    as field names). Bounded by :meth:`prune`, which the writer calls after every write with
    the oldest sequence number the service still keeps in memory (``[rest] history``
    summaries and 32 MiB of JSON): the collection holds no more than that, plus what a
    failed prune left until the next one. Only the common MongoDB API is used (no capped
    collection, no TTL index), so the bound follows ``[rest] history`` when it changes."""

    def __init__(self, url: str, database: str, collection: str = "rest_history") -> None:
        self.collection = client(url)[database][collection]
        self.indexed = False

    def _index(self) -> None:
        if not self.indexed:
            self.collection.create_index([("seq", pymongo.ASCENDING)])
            self.indexed = True

    def load(self, limit: int) -> list[dict]:
        """The latest ``limit`` summaries (by ``seq``), oldest first; pymongo's errors
        propagate (the caller retries)."""
        self._index()
        found = self.collection.find({}, {"summary": 1, "seq": 1})
        docs = list(found.sort("seq", pymongo.DESCENDING).limit(limit))
        out = []
        for doc in reversed(docs):
            try:
                summary = json.loads(doc["summary"])
            except (KeyError, TypeError, ValueError):
                LOG.warning("history document %r unreadable: skipped", doc.get("_id"))
                continue
            out.append(dict(summary, seq=doc["seq"]))
        return out

    def add(self, summaries: list[dict]) -> None:
        """Store summaries (each with its ``seq``); one already stored is left as it is."""
        if not summaries:
            return
        self._index()
        docs = [
            {
                "_id": {"run": s["run"], "batch_id": s["batch_id"]},
                "seq": s["seq"],
                "time": s["time"],
                "summary": json.dumps(s, allow_nan=False),
            }
            for s in summaries
        ]
        try:
            self.collection.insert_many(docs, ordered=False)
        except BulkWriteError as exc:
            others = [e for e in exc.details.get("writeErrors", []) if e.get("code") != 11000]
            if others or exc.details.get("writeConcernErrors"):
                raise

    def prune(self, oldest_seq: int) -> int:
        """Remove the summaries older than ``oldest_seq``; how many went."""
        return self.collection.delete_many({"seq": {"$lt": oldest_seq}}).deleted_count


def refused_packet(doc: dict, reason: str) -> dict:
    """The dead letter of a normalised packet that could not be stored; keyed by the packet
    id, so a redelivered one is kept once."""
    try:
        raw = json.dumps(doc, default=str)
    except (ValueError, TypeError, RecursionError):
        raw = ""
    received = doc.get("received") or dt.datetime.now(dt.UTC)
    dead = records.dead_letter(raw, reason, received, doc.get("source_id"))
    dead["_id"] = "id:" + records.printable(str(doc.get("_id")), records.MAX_ID_CHARS * 2)
    return dead
