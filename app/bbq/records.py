"""Normalise raw messages into packet documents, or dead letters that say why not.

A message is one JSON object (UTF-8), e.g.::

    {"id": "web-1", "service": "web", "value": 12.5, "type": "latency", "time": 1764000000.0}

``id`` (string or integer), ``service`` (string) and ``value`` (number) are required;
``type`` (string, default ``"event"``) and ``time`` (epoch seconds or ISO 8601, when the
producer made it) are optional. The packet id becomes the document ``_id``, which is what
makes storing idempotent: a redelivered message maps to the same document.

>>> doc, dead = normalise('{"id": 1, "service": "web", "value": 2}', max_bytes=1024)
>>> doc["_id"], doc["service"], doc["value"], doc["type"], dead
('1', 'web', 2.0, 'event', None)
>>> normalise("not json", max_bytes=1024)[1]["reason"]
'not JSON: Expecting value at line 1 column 1'
"""

from __future__ import annotations

import datetime as dt
import hashlib
import json
import math
import re

MAX_ID_CHARS = 256
MAX_SERVICE_CHARS = 128
MAX_TYPE_CHARS = 64
RAW_KEEP_CHARS = 2048  # how much of a rejected message the dead letter keeps
REASON_KEEP_CHARS = 300  # how much of an error's own text a reason quotes
MAX_SIGNAL_SERVICES = 1000  # services per count map in a REST signal (bbq-rest's limit)
MAX_ID_BITS = 850  # an integer id of more bits has more than MAX_ID_CHARS digits

UTC = dt.UTC


class Rejected(ValueError):
    """A message that cannot become a packet; str() is the reason kept in the dead letter."""


def printable(text: str, limit: int = REASON_KEEP_CHARS) -> str:
    """``text`` cut to ``limit`` characters and made storable: lone surrogates (which UTF-8,
    BSON and JSON parsers refuse) become ``\\udXXX`` escapes."""
    text = text[:limit]
    try:
        text.encode("utf-8")
    except UnicodeEncodeError:
        text = text.encode("utf-8", "backslashreplace").decode("utf-8")
    return text


def _unicode(key: str, value: str) -> str:
    try:
        value.encode("utf-8")
    except UnicodeEncodeError as exc:
        raise Rejected(
            f"field '{key}' is not valid Unicode (lone surrogate at character {exc.start})"
        ) from None
    return value


def _text(obj: dict, key: str, limit: int, required: bool, default: str | None = None):
    if key not in obj or obj[key] is None:
        if required:
            raise Rejected(f"missing field '{key}'")
        return default
    value = obj[key]
    if not isinstance(value, str):
        raise Rejected(f"field '{key}' must be a string, not {type(value).__name__}")
    value = value.strip()
    if not value:
        raise Rejected(f"field '{key}' is empty")
    if len(value) > limit:
        raise Rejected(f"field '{key}' is longer than {limit} characters")
    return _unicode(key, value)


def _packet_id(obj: dict) -> str:
    if "id" not in obj or obj["id"] is None:
        raise Rejected("missing field 'id'")
    value = obj["id"]
    if isinstance(value, bool) or not isinstance(value, str | int):
        raise Rejected(f"field 'id' must be a string or an integer, not {type(value).__name__}")
    if isinstance(value, int) and value.bit_length() > MAX_ID_BITS:
        raise Rejected(f"field 'id' is longer than {MAX_ID_CHARS} characters")
    value = str(value).strip()
    if not value:
        raise Rejected("field 'id' is empty")
    if len(value) > MAX_ID_CHARS:
        raise Rejected(f"field 'id' is longer than {MAX_ID_CHARS} characters")
    return _unicode("id", value)


def _number(obj: dict, key: str) -> float:
    if key not in obj or obj[key] is None:
        raise Rejected(f"missing field '{key}'")
    value = obj[key]
    if isinstance(value, bool) or not isinstance(value, int | float):
        raise Rejected(f"field '{key}' must be a number, not {type(value).__name__}")
    try:
        value = float(value)
    except OverflowError:
        raise Rejected(f"field '{key}' is out of range (beyond a 64-bit float)") from None
    if not math.isfinite(value):
        raise Rejected(f"field '{key}' must be finite")
    return value


def _time(obj: dict) -> dt.datetime | None:
    """``time`` as an aware UTC datetime within datetime's (and so BSON's) range."""
    value = obj.get("time")
    if value is None:
        return None
    if isinstance(value, bool) or not isinstance(value, int | float | str):
        raise Rejected(
            f"field 'time' must be epoch seconds or an ISO 8601 string, not {type(value).__name__}"
        )
    try:
        if isinstance(value, str):
            parsed = dt.datetime.fromisoformat(value)
            # Offsets are resolved here, so a time near year 1 or 9999 whose offset carries
            # it out of range is refused now, not by the store's encoder.
            return parsed.astimezone(UTC) if parsed.tzinfo else parsed.replace(tzinfo=UTC)
        return dt.datetime.fromtimestamp(value, UTC)
    except (ValueError, OverflowError, OSError) as exc:
        raise Rejected(f"field 'time' is not a valid time: {printable(str(exc))}") from None


def _loads(raw: str):
    try:
        return json.loads(raw)
    except json.JSONDecodeError as exc:
        raise Rejected(f"not JSON: {exc.msg} at line {exc.lineno} column {exc.colno}") from None
    except RecursionError:
        raise Rejected("not JSON: nested too deeply") from None
    except ValueError as exc:  # e.g. an integer of more than 4300 digits
        raise Rejected(f"not JSON: {printable(str(exc).split(':')[0])}") from None


def _parse(raw: str | bytes, max_bytes: int) -> dict:
    size = len(raw) if isinstance(raw, bytes) else len(raw.encode("utf-8", "surrogatepass"))
    if size > max_bytes:
        raise Rejected(f"oversized: {size} bytes > {max_bytes}")
    if isinstance(raw, bytes):
        try:
            raw = raw.decode("utf-8")
        except UnicodeDecodeError as exc:
            raise Rejected(f"not UTF-8: {exc.reason}") from None
    obj = _loads(raw)
    if not isinstance(obj, dict):
        raise Rejected(f"not a JSON object but {type(obj).__name__}")
    return {
        "_id": _packet_id(obj),
        "service": _text(obj, "service", MAX_SERVICE_CHARS, required=True),
        "value": _number(obj, "value"),
        "type": _text(obj, "type", MAX_TYPE_CHARS, required=False, default="event"),
        "sent": _time(obj),
    }


def parse(raw: str | bytes, max_bytes: int) -> dict:
    """The packet fields of one raw message; raises Rejected with the reason, and nothing
    else, whatever the message holds."""
    try:
        return _parse(raw, max_bytes)
    except Rejected:
        raise
    except (ValueError, TypeError, ArithmeticError, RecursionError, MemoryError) as exc:
        # Not expected (every known case has its own reason above), but a message must
        # never stop the stream: it is dead-lettered with what went wrong.
        raise Rejected(f"unreadable: {type(exc).__name__}: {printable(str(exc))}") from None


# A dead letter's reason code (a metric label: few, fixed values) from the start of its
# reason, first match wins; "other" for none.
REASON_CODES = [
    ("oversized", r"oversized:"),
    ("not_utf8", r"not UTF-8"),
    ("not_json", r"not JSON"),
    ("not_object", r"not a JSON object"),
    ("missing_field", r"missing field"),
    ("invalid_unicode", r"field '[^']*' is not valid Unicode"),
    ("invalid_time", r"field 'time' is not a valid time"),
    ("out_of_range", r"field '[^']*' (is out of range|must be finite)"),
    ("too_long", r"field '[^']*' is longer than"),
    ("empty_field", r"field '[^']*' is empty"),
    ("wrong_type", r"field '[^']*' must be"),
    ("refused_by_database", r"refused by the database"),
    ("not_storable", r"not storable"),
    ("unreadable", r"unreadable"),
]
_REASON_CODES = [(code, re.compile(pattern)) for code, pattern in REASON_CODES]


def reason_code(reason: str) -> str:
    """The code of a dead letter's reason: ``"not JSON: ..."`` is ``not_json``."""
    for code, pattern in _REASON_CODES:
        if pattern.match(reason):
            return code
    return "other"


def dead_letter_id(raw: str | bytes, source_id: str | None, position: str | None) -> str:
    """A stable id for a rejected message, so a redelivered one is kept only once.

    The source's own message id when it has one (Zaqar), else the message's position in
    its micro-batch (a replayed batch replays the same positions), else a content hash.
    """
    if source_id:
        return f"msg:{printable(source_id)}"
    data = raw if isinstance(raw, bytes) else raw.encode("utf-8", "surrogatepass")
    digest = hashlib.sha256(data).hexdigest()[:32]
    return f"pos:{position}:{digest}" if position else f"sha:{digest}"


def dead_letter(
    raw: str | bytes,
    reason: str,
    received: dt.datetime,
    source_id: str | None = None,
    position: str | None = None,
) -> dict:
    """The dead-letter document of a rejected message: every string in it storable (UTF-8
    without lone surrogates) and bounded, whatever the message held."""
    if isinstance(raw, bytes):
        text, size = raw[: RAW_KEEP_CHARS * 4].decode("utf-8", "replace"), len(raw)
    else:
        text, size = raw, len(raw.encode("utf-8", "surrogatepass"))
    return {
        "_id": dead_letter_id(raw, source_id, position),
        "reason": printable(reason, REASON_KEEP_CHARS * 2),
        "raw": printable(text, RAW_KEEP_CHARS),
        "size": size,
        "received": received,
        "source_id": printable(source_id) if source_id else source_id,
    }


def normalise(
    raw: str | bytes | None,
    max_bytes: int,
    received: dt.datetime | None = None,
    source_id: str | None = None,
    position: str | None = None,
) -> tuple[dict | None, dict | None]:
    """``(packet, None)`` for a good message, ``(None, dead_letter)`` for a bad one."""
    received = received or dt.datetime.now(UTC)
    if received.tzinfo is None:
        received = received.replace(tzinfo=UTC)
    if raw is None:
        raw = ""
    try:
        doc = parse(raw, max_bytes)
    except Rejected as exc:
        return None, dead_letter(raw, str(exc), received, source_id, position)
    doc["received"] = received
    if source_id:
        doc["source_id"] = printable(source_id)
    return doc, None
