"""Hostile records (issue 13): whatever a message holds, normalising it gives exactly one
outcome, a packet or a dead letter with a reason, and that outcome is storable: the
store's encoder and the database never see something they refuse. The store itself turns
the refusal of one document into a dead letter, the rest of the chunk stored.

Cases run here: the hand-made corpus (69 bad, 60 good), and hypothesis examples (fixed
seed): 400 raw texts, 300 raw byte strings, 400 JSON objects of hostile field values, 30
mixed batches stored in SecantusDB."""

import datetime as dt
import json
import math
import random

import bson
from bbq import records
from bbq.store import Store
from hypothesis import given
from hypothesis import strategies as st

from tests.app.hostile import bad_records, bounded, good_records

MAX = 65536


def outcome(raw):
    doc, dead = records.normalise(raw, max_bytes=MAX, position="1:0:1")
    assert (doc is None) != (dead is None), "exactly one outcome"
    bson.encode(doc if doc is not None else dead)  # the encoder takes it, whatever it is
    return doc, dead


def check_packet(doc):
    assert set(doc) == {"_id", "service", "value", "type", "sent", "received"}
    assert 0 < len(doc["_id"]) <= records.MAX_ID_CHARS
    assert 0 < len(doc["service"]) <= records.MAX_SERVICE_CHARS
    assert 0 < len(doc["type"]) <= records.MAX_TYPE_CHARS
    assert isinstance(doc["value"], float) and math.isfinite(doc["value"])
    assert doc["sent"] is None or doc["sent"].utcoffset() == dt.timedelta(0)


def check_dead_letter(dead):
    assert dead["reason"] and len(dead["reason"]) <= 2 * records.REASON_KEEP_CHARS
    assert len(dead["raw"]) <= records.RAW_KEEP_CHARS
    assert "Traceback" not in dead["reason"]


def test_the_issue_examples_are_dead_lettered_with_their_reason():
    cases = {
        '{"id": 1, "service": "\\ud800", "value": 1}': "field 'service' is not valid Unicode",
        '{"id": 1, "service": "web", "value": ' + "9" * 400 + "}": "field 'value' is out of range",
        '{"id": ' + "9" * 4400 + ', "service": "web", "value": 1}': "not JSON: Exceeds the limit",
        '{"id": 1, "service": "web", "value": 1, "time": "0001-01-01T00:00:00+01:00"}': (
            "field 'time' is not a valid time"
        ),
        '{"id": 1, "service": "web", "value": 1, "time": "9999-12-31T23:59:59-01:00"}': (
            "field 'time' is not a valid time"
        ),
        "[" * 100000 + "]" * 100000: "not JSON: nested too deeply",
    }
    for raw, reason in cases.items():
        doc, dead = records.normalise(raw, max_bytes=10**6)
        assert doc is None and dead["reason"].startswith(reason), (raw[:60], dead)
        bson.encode(dead)


def test_hand_made_corpus_bad_ones_rejected_good_ones_kept():
    for raw in bad_records("c", random.Random(13)):
        doc, dead = outcome(raw)
        assert doc is None, raw[:120]
        check_dead_letter(dead)
    lines, _ = good_records("c", 60, random.Random(13))
    for raw in lines:
        doc, dead = outcome(raw)
        assert dead is None, (raw[:120], dead)
        check_packet(doc)


@bounded(max_examples=400)
@given(st.text(max_size=300))
def test_any_text_has_one_storable_outcome(raw):
    doc, dead = outcome(raw)
    if doc is not None:
        check_packet(doc)
    else:
        check_dead_letter(dead)
        assert dead["size"] == len(raw.encode("utf-8", "surrogatepass"))


@bounded(max_examples=300)
@given(st.binary(max_size=300))
def test_any_bytes_have_one_storable_outcome(raw):
    doc, dead = outcome(raw)
    if dead is not None:
        check_dead_letter(dead)
        assert dead["size"] == len(raw)


# Values a hostile producer puts in the fields: every JSON type and the edges of each.
hostile_scalars = st.one_of(
    st.none(),
    st.booleans(),
    st.integers(),
    st.integers(min_value=10**300, max_value=10**1200),
    st.floats(allow_nan=True, allow_infinity=True),
    st.text(max_size=40),
    st.sampled_from(["\ud800", "\udfff x", "", "  ", "0001-01-01T00:00:00+01:00"]),
    st.sampled_from(["9999-12-31T23:59:59-01:00", "2026-01-01T00:00:00+14:00", "x" * 300]),
)
hostile_values = st.recursive(
    hostile_scalars,
    lambda inner: st.lists(inner, max_size=3) | st.dictionaries(st.text(max_size=5), inner),
    max_leaves=8,
)
hostile_objects = st.fixed_dictionaries(
    {},
    optional={
        "id": hostile_values,
        "service": hostile_values,
        "value": hostile_values,
        "type": hostile_values,
        "time": hostile_values,
        "other": hostile_values,
    },
)


def to_line(obj) -> str:
    """The object as a producer would send it: JSON with NaN/Infinity as bare tokens, and
    big integers written out (allowed past Python's 4300-digit str limit here)."""
    return json.dumps(obj, default=str)


@bounded(max_examples=400)
@given(hostile_objects)
def test_any_json_object_has_one_storable_outcome(obj):
    try:
        raw = to_line(obj)
    except ValueError:  # an integer json cannot write (4300+ digits): the parser's case
        raw = '{"id": ' + "7" * 4400 + "}"
    doc, dead = outcome(raw)
    if doc is not None:
        check_packet(doc)
        assert doc["_id"] == str(obj["id"]).strip()
        assert doc["value"] == float(obj["value"])
    else:
        check_dead_letter(dead)


def unencodable_docs():
    """Documents the client cannot encode, as a buggy or future normaliser might make."""
    now = dt.datetime.now(dt.UTC)
    plus_one = dt.timezone(dt.timedelta(hours=1))
    return [
        {"_id": "\ud800", "service": "web", "value": 1.0, "received": now},
        {"_id": "u1", "service": "we\udfffb", "value": 1.0, "received": now},
        {"_id": "u2", "service": "web", "value": 2**70, "received": now},
        {
            "_id": "u3",
            "service": "web",
            "value": 1.0,
            "sent": dt.datetime(1, 1, 1, tzinfo=plus_one),
        },
        {"_id": "u4", "service": "web", "value": object(), "received": now},
    ]


@bounded(max_examples=30)
@given(st.lists(st.booleans(), min_size=1, max_size=30), st.integers(0, 2**16))
def test_store_keeps_good_documents_and_dead_letters_refused_ones(mongo_server, mix, seed):
    rng = random.Random(seed)
    store = Store(mongo_server.url, mongo_server.new_database(), write_batch_size=7)
    lines, _ = good_records(f"s{seed}", len(mix), rng)
    bad = unencodable_docs()
    docs, good_ids, bad_ids = [], set(), []
    for k, is_good in enumerate(mix):
        if is_good:
            doc, _ = records.normalise(lines[k], max_bytes=MAX)
            docs.append(doc)
            good_ids.add(doc["_id"])
        else:
            doc = dict(rng.choice(bad))
            doc["_id"] = f"{doc['_id']}-{k}"
            docs.append(doc)
            bad_ids.append(doc["_id"])
    new, dead = store.insert_packets(docs)
    assert sum(new.values()) == len(good_ids)
    assert {d["_id"] for d in store.packets.find({}, {"_id": 1})} == good_ids
    assert len(dead) == len(bad_ids)
    assert all(d["reason"].startswith("not storable:") for d in dead)
    assert store.write_dead_letters(dead) == len(bad_ids)
    # Redelivered: nothing new, nothing twice.
    new, dead = store.insert_packets(docs)
    assert new == {} and store.write_dead_letters(dead) == 0
    assert store.packets.count_documents({}) == len(good_ids)
    assert store.dead_letter_count() == len(bad_ids)


def test_database_refusal_of_one_document_is_a_dead_letter(mongo_server):
    store = Store(mongo_server.url, mongo_server.new_database())
    big = {"_id": "big", "service": "web", "value": 1.0, "pad": "x" * (16 << 20)}
    docs = [{"_id": f"ok{i}", "service": "web", "value": float(i)} for i in range(5)]
    new, dead = store.insert_packets(docs[:2] + [big] + docs[2:])
    assert new == {"web": 5}
    assert len(dead) == 1 and dead[0]["_id"] == "id:big"
    assert dead[0]["reason"].startswith("refused by the database:") or dead[0]["reason"].startswith(
        "not storable:"
    )
    assert store.write_dead_letters(dead) == 1
