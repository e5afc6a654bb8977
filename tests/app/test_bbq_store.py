"""The store against a real MongoDB-wire server (SecantusDB)."""

import datetime as dt

from bbq import records
from bbq.store import Store


def make_store(mongo_server, **kw):
    return Store(mongo_server.url, mongo_server.new_database(), **kw)


def packet(i, service):
    doc, dead = records.normalise(
        f'{{"id": "p{i}", "service": "{service}", "value": {i}}}', max_bytes=1024
    )
    assert dead is None
    return doc


def test_write_packets_is_idempotent(mongo_server):
    store = make_store(mongo_server, write_batch_size=7)
    docs = [packet(i, "web" if i % 3 else "db") for i in range(50)]
    assert store.write_packets(docs) == {"web": 33, "db": 17}
    # The same batch again, overlapping with 10 new ones: only the new ones count.
    again = docs[25:] + [packet(i, "cache") for i in range(50, 60)]
    assert store.write_packets(again) == {"cache": 10}
    assert store.packets.count_documents({}) == 60
    assert store.counts() == {"web": 33, "db": 17, "cache": 10}


def test_stored_document_shape(mongo_server):
    store = make_store(mongo_server)
    doc, _ = records.normalise(
        '{"id": 7, "service": "web", "value": 1.5, "type": "latency", "time": 0}',
        max_bytes=1024,
        received=dt.datetime(2026, 1, 2, tzinfo=dt.UTC),
    )
    store.write_packets([doc])
    got = store.packets.find_one({"_id": "7"})
    assert got["service"] == "web"
    assert got["value"] == 1.5
    assert got["type"] == "latency"
    assert got["sent"] == dt.datetime(1970, 1, 1, tzinfo=dt.UTC)
    assert got["received"] == dt.datetime(2026, 1, 2, tzinfo=dt.UTC)


def test_dead_letters_are_kept_once_with_reason(mongo_server):
    store = make_store(mongo_server)
    bad = ["not json", '{"id": 1, "service": "web"}', "x" * 200]
    dead = [
        records.normalise(raw, max_bytes=100, source_id=f"m{i}")[1] for i, raw in enumerate(bad)
    ]
    assert store.write_dead_letters(dead) == 3
    assert store.write_dead_letters(dead) == 0
    reasons = {d["_id"]: d["reason"] for d in store.dead_letters.find()}
    assert reasons == {
        "msg:m0": "not JSON: Expecting value at line 1 column 1",
        "msg:m1": "missing field 'value'",
        "msg:m2": "oversized: 200 bytes > 100",
    }
    assert store.dead_letter_count() == 3
