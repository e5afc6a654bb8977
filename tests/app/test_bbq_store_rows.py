"""The executor's side of a micro-batch (``job.store_rows``) against a real MongoDB-wire server
(SecantusDB), without Spark: a partition starts writing with a small chunk while the store's
writer is idle, then full chunks; every row is stored once, a rerun of the same rows adds
nothing, and bad rows are dead letters, wherever they fall among the chunks."""

import datetime as dt
import json

from bbq import job
from bbq.store import Store


def rows(n, prefix, bad_every=0):
    for i in range(n):
        if bad_every and i % bad_every == 0:
            yield "not json " + str(i), None, None
        else:
            value = json.dumps({"id": f"{prefix}-{i}", "service": f"s{i % 3}", "value": i})
            yield value, None, None


def settings(mongo_server, batch):
    return Store(mongo_server.url, mongo_server.new_database(), write_batch_size=batch).settings()


def test_every_row_is_stored_once_across_small_and_full_chunks(mongo_server, monkeypatch):
    conf = settings(mongo_server, batch=2000)
    n = 7777  # a small first chunk, full ones, and a partial last one
    chunks = []
    real = Store.insert_packets

    def recorded(self, docs):  # the real insert, its chunk sizes noted
        chunks.append(len(docs))
        return real(self, docs)

    monkeypatch.setattr(Store, "insert_packets", recorded)
    summary = job.store_rows(conf, 65536, 3, 0, rows(n, "p"))
    monkeypatch.undo()
    # The idle writer got a small first chunk (it did not wait for a whole write batch);
    # no chunk is larger than the write batch size.
    assert chunks[0] == job.IDLE_FLUSH_ROWS
    assert max(chunks) <= 2000 and sum(chunks) == n
    assert summary["records"] == n
    assert summary["counts"] == {"s0": 2593, "s1": 2592, "s2": 2592}
    assert summary["rejected"] == 0 and summary["dead"] == 0
    assert 0 < summary["first_row"] <= summary["first_write"] <= summary["seconds"]
    assert abs(summary["started_at"] - dt.datetime.now(dt.UTC).timestamp()) < 120
    store = Store(**conf)
    assert store.packets.count_documents({}) == n
    # The same rows again (a batch run again): nothing new, nothing doubled.
    again = job.store_rows(conf, 65536, 3, 0, rows(n, "p"))
    assert again["records"] == n and again["counts"] == {}
    assert store.packets.count_documents({}) == n


def test_bad_rows_among_chunks_become_dead_letters_once(mongo_server):
    conf = settings(mongo_server, batch=1000)
    n = 3000
    summary = job.store_rows(conf, 65536, 5, 1, rows(n, "b", bad_every=7))
    bad = len(range(0, n, 7))
    assert summary["rejected"] == bad and summary["dead"] == bad
    assert sum(summary["counts"].values()) == n - bad
    store = Store(**conf)
    assert store.packets.count_documents({}) == n - bad
    assert store.dead_letter_count() == bad
    again = job.store_rows(conf, 65536, 5, 1, rows(n, "b", bad_every=7))
    assert again["dead"] == 0 and again["counts"] == {}
    assert store.dead_letter_count() == bad
