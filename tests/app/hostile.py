"""Hostile inputs shared by the app's tests: bad records built to be rejected, good records
built to be awkward but valid, and hypothesis settings that keep property runs bounded."""

from __future__ import annotations

import json
import random

from hypothesis import HealthCheck, settings

# Fixed seed (derandomize), bounded count and no deadline (a loaded 2-core machine): the
# property tests run the same examples every time and stay fast.
BOUNDED = settings(
    derandomize=True,
    deadline=None,
    database=None,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large],
)


def bounded(max_examples: int) -> settings:
    """BOUNDED with this many examples."""
    return settings(BOUNDED, max_examples=max_examples)


LONE_SURROGATES = ["\ud800", "\udbff", "\udc00", "\udfff", "a\ud83d", "\ude00b"]


def _obj(**fields) -> str:
    """A JSON object line (json.dumps escapes lone surrogates as \\udXXX: ASCII text)."""
    return json.dumps(fields)


def bad_records(tag: str, rng: random.Random) -> list[str]:
    """One line per hostile class, none of which may become a packet. Lines hold no raw
    newline or carriage return (they travel as lines through the socket source too)."""
    digits = lambda a, b: "".join(rng.choice("123456789") for _ in range(rng.randint(a, b)))  # noqa: E731
    i = iter(range(10**6))

    def pid() -> str:
        return f"{tag}-bad-{next(i)}"

    lines = [
        *[_obj(id=pid(), service=s, value=1) for s in LONE_SURROGATES],
        _obj(id=pid(), service="web", value=1, type="\udc80"),
        _obj(id="\ud800" + pid(), service="web", value=1),
        f'{{"id": "{pid()}", "service": "web", "value": {digits(310, 1200)}}}',
        f'{{"id": "{pid()}", "service": "web", "value": -{digits(310, 600)}}}',
        f'{{"id": {digits(4301, 6000)}, "service": "web", "value": 1}}',
        f'{{"id": {digits(257, 4300)}, "service": "web", "value": 1}}',
        f'{{"id": "{pid()}", "service": "web", "value": 1, "pad": {digits(4400, 5000)}}}',
        *[
            _obj(id=pid(), service="web", value=1, time=t)
            for t in [
                "0001-01-01T00:00:00+01:00",
                "0001-01-01T00:30:00+23:59",
                "9999-12-31T23:59:59-01:00",
                "9999-12-31T23:00:00-23:59",
                "yesterday",
                "\ud800",
                "",
                1e300,
                -1e20,
                10**30,
                True,
                [1],
                {"s": 1},
            ]
        ],
        *[
            f'{{"id": "{pid()}", "service": "web", "value": {c}}}'
            for c in ["NaN", "Infinity", "-Infinity", "1e999", "-1e400"]
        ],
        f'{{"id": "{pid()}", "service": "web", "value": 1, "time": NaN}}',
        f'{{"id": "{pid()}", "service": "web", "value": 1, "time": Infinity}}',
        "[" * rng.randint(3000, 20000) + "]" * 5,
        '{"id": "' + pid() + '", "service": "web", "value": ' + "[" * 30000 + "}",
        '{"a": ' * 2000 + "1" + "}" * 2000,
        *[_obj(id=pid(), service=s, value=1) for s in ["", "   ", 5, None, ["web"], "w" * 129]],
        *[_obj(id=v, service="web", value=1) for v in ["", " ", True, 1.5, None, [1], "x" * 257]],
        *[_obj(id=pid(), service="web", value=v) for v in ["1", True, None, [], {}]],
        _obj(id=pid(), service="web", value=1, type=""),
        _obj(id=pid(), service="web", value=1, type="t" * 65),
        *["null", "true", "12", '"text"', "[]", "{}", "{", "}", "\\u0000", "\x00\x01\x02"],
        "".join(rng.choice("abc{}[]:,\"'\\ 0123456789") for _ in range(rng.randint(1, 200))),
        "\ufeff" + _obj(id=pid(), service="web", value=1),  # a BOM is not JSON
        _obj(id=pid(), service="web", value=1, pad="x" * 70000),  # beyond max_message_bytes
    ]
    return lines


def good_records(tag: str, n: int, rng: random.Random) -> tuple[list[str], dict[str, int]]:
    """``n`` awkward but valid records with unique ids; (lines, expected count per service)."""
    services = ["web", "db", "naïve", "日本語", "emoji 🔥", "nul\x00inside", "tab\tand\x7f", "$x.y"]
    times = [
        None,
        0,
        1764000000.5,
        "0001-01-01T00:00:00+00:00",
        "9999-12-31T23:59:59Z",
        "0001-01-01T01:00:00+01:00",
        "2026-11-25T01:00:00",
    ]
    values = [0, -0.0, 5e-324, 1.7976931348623157e308, -(10**300), 12.5, 10**20]
    lines, counts = [], {}
    for k in range(n):
        service = services[k % len(services)]
        fields = {"id": f"{tag}-good-{k}", "service": service, "value": rng.choice(values)}
        if k % 3 == 0:
            fields["id"] = rng.choice([f" {tag}-good-{k} ", f"{tag}-good-{k}"])
        when = times[k % len(times)]
        if when is not None:
            fields["time"] = when
        if k % 5 == 0:
            fields["type"] = "ünïcode type"
        if k % 7 == 0:
            fields["extra"] = {"nested": [1, 2, {"deep": "\ud800"}]}  # ignored fields
        # Raw non-ASCII text in half of them; the lone surrogate of "extra" only escaped
        # (raw, it is not UTF-8: no producer can send it, and Zaqar refuses it).
        lines.append(json.dumps(fields, ensure_ascii=k % 2 == 0 or "extra" in fields))
        counts[service] = counts.get(service, 0) + 1
    return lines, counts


def good_ids(tag: str, n: int) -> set[str]:
    return {f"{tag}-good-{k}" for k in range(n)}
