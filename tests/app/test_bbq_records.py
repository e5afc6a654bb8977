"""Normalisation of raw messages and the reasons given for rejecting them."""

import datetime as dt
import json

import pytest
from bbq import records


def test_good_message_is_normalised():
    received = dt.datetime(2026, 11, 25, 1, 2, 3, tzinfo=dt.UTC)
    raw = json.dumps(
        {"id": "a-1", "service": " web ", "value": 3, "type": "hit", "time": "2026-11-25T01:00:00"}
    )
    doc, dead = records.normalise(raw, max_bytes=1024, received=received, source_id="z1")
    assert dead is None
    assert doc == {
        "_id": "a-1",
        "service": "web",
        "value": 3.0,
        "type": "hit",
        "sent": dt.datetime(2026, 11, 25, 1, 0, tzinfo=dt.UTC),
        "received": received,
        "source_id": "z1",
    }


def test_integer_id_and_defaults():
    doc, _ = records.normalise(b'{"id": 42, "service": "db", "value": -1.25}', max_bytes=1024)
    assert (doc["_id"], doc["type"], doc["sent"]) == ("42", "event", None)
    assert doc["received"].tzinfo is not None


@pytest.mark.parametrize(
    "raw, reason",
    [
        ("", "not JSON: Expecting value at line 1 column 1"),
        ("{", "not JSON: Expecting property name enclosed in double quotes at line 1 column 2"),
        (b"\xff\xfe", "not UTF-8: invalid start byte"),
        ("[1, 2]", "not a JSON object but list"),
        ('{"service": "web", "value": 1}', "missing field 'id'"),
        (
            '{"id": true, "service": "web", "value": 1}',
            "field 'id' must be a string or an integer, not bool",
        ),
        ('{"id": "", "service": "web", "value": 1}', "field 'id' is empty"),
        ('{"id": 1, "value": 1}', "missing field 'service'"),
        ('{"id": 1, "service": 5, "value": 1}', "field 'service' must be a string, not int"),
        ('{"id": 1, "service": "web"}', "missing field 'value'"),
        ('{"id": 1, "service": "web", "value": "12"}', "field 'value' must be a number, not str"),
        ('{"id": 1, "service": "web", "value": false}', "field 'value' must be a number, not bool"),
        ('{"id": 1, "service": "web", "value": NaN}', "field 'value' must be finite"),
        (
            '{"id": 1, "service": "web", "value": 1, "type": []}',
            "field 'type' must be a string, not list",
        ),
        (
            '{"id": 1, "service": "web", "value": 1, "time": "yesterday"}',
            "field 'time' is not a valid time: Invalid isoformat string: 'yesterday'",
        ),
        (
            '{"id": 1, "service": "' + "s" * 200 + '", "value": 1}',
            "field 'service' is longer than 128 characters",
        ),
    ],
)
def test_bad_messages_become_dead_letters_with_the_reason(raw, reason):
    doc, dead = records.normalise(raw, max_bytes=1024, position="3:0:7")
    assert doc is None
    assert dead["reason"] == reason
    assert dead["_id"].startswith("pos:3:0:7:")
    assert dead["size"] == len(raw if isinstance(raw, bytes) else raw.encode())


def test_oversized_message_is_rejected_before_parsing_and_kept_truncated():
    raw = json.dumps({"id": 1, "service": "web", "value": 1, "pad": "x" * 10000})
    doc, dead = records.normalise(raw, max_bytes=4096, source_id="m9")
    assert doc is None
    assert dead["reason"] == f"oversized: {len(raw)} bytes > 4096"
    assert dead["_id"] == "msg:m9"
    assert len(dead["raw"]) == records.RAW_KEEP_CHARS
    assert dead["size"] == len(raw)


def test_dead_letter_ids_are_stable():
    a = records.normalise("bad", max_bytes=10)[1]["_id"]
    b = records.normalise("bad", max_bytes=10)[1]["_id"]
    c = records.normalise("worse", max_bytes=10)[1]["_id"]
    assert a == b != c
