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
import threading

import pymongo
from pymongo.errors import BulkWriteError

DUPLICATE_KEY = 11000

_clients: dict[str, pymongo.MongoClient] = {}
_clients_lock = threading.Lock()


def client(url: str) -> pymongo.MongoClient:
    """One MongoClient per URL and process (executors reuse it across tasks)."""
    with _clients_lock:
        found = _clients.get(url)
        if found is None:
            found = _clients[url] = pymongo.MongoClient(url, tz_aware=True, connect=False)
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
    ) -> None:
        self.url = url
        db = client(url)[database]
        self.packets = db[collection]
        self.dead_letters = db[dead_letter_collection]
        self.write_batch_size = write_batch_size

    @classmethod
    def from_conf(cls, conf) -> Store:
        m = conf.mongodb
        return cls(m.url, m.database, m.collection, m.dead_letter_collection, m.write_batch_size)

    def settings(self) -> dict:
        """Plain, picklable arguments to rebuild this store in an executor."""
        return {
            "url": self.url,
            "database": self.packets.database.name,
            "collection": self.packets.name,
            "dead_letter_collection": self.dead_letters.name,
            "write_batch_size": self.write_batch_size,
        }

    def ensure_indexes(self) -> None:
        """Indexes for operators' queries of dead letters (by reason).

        Packets get none beyond the unique ``_id``: a secondary index halves the insert
        rate (measured on SecantusDB), and the job needs only a count per service once,
        at start-up. Add one in production if you query packets by field."""
        self.dead_letters.create_index([("reason", pymongo.ASCENDING)])

    def _insert_new(self, collection, docs: list[dict]) -> list[int]:
        """Insert ``docs``; the indexes of those that were already stored (duplicate ``_id``)."""
        if not docs:
            return []
        try:
            collection.insert_many(docs, ordered=False)
        except BulkWriteError as exc:
            errors = exc.details.get("writeErrors", [])
            other = [e for e in errors if e.get("code") != DUPLICATE_KEY]
            if other or exc.details.get("writeConcernErrors"):
                raise
            return [e["index"] for e in errors]
        return []

    def write_packets(self, docs: list[dict]) -> dict[str, int]:
        """Store packets idempotently; the number of *new* documents per service."""
        new: collections.Counter = collections.Counter()
        for start in range(0, len(docs), self.write_batch_size):
            chunk = docs[start : start + self.write_batch_size]
            dup = set(self._insert_new(self.packets, chunk))
            new.update(d["service"] for i, d in enumerate(chunk) if i not in dup)
        return dict(new)

    def write_dead_letters(self, docs: list[dict]) -> int:
        """Store dead letters idempotently; the number of new ones."""
        added = 0
        for start in range(0, len(docs), self.write_batch_size):
            chunk = docs[start : start + self.write_batch_size]
            added += len(chunk) - len(self._insert_new(self.dead_letters, chunk))
        return added

    def counts(self) -> dict[str, int]:
        """Stored packets per service, straight from the database."""
        pipeline = [{"$group": {"_id": "$service", "n": {"$sum": 1}}}]
        return {row["_id"]: row["n"] for row in self.packets.aggregate(pipeline)}

    def dead_letter_count(self) -> int:
        return self.dead_letters.count_documents({})
