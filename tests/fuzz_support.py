"""Bad maintenance events for the fuzz test (tests/test_fuzz_pipeline.py): every kind the issue
"Never none" found accepted, crashing the agent or dead-lettered without naming the field.

:func:`bad_record` returns one :class:`Bad` of a given kind, varied by a seeded ``random.Random``:
the raw bytes, the error classes the dead letter may carry, a substring its ``dlq.message`` must
contain (the field, and where it matters the value) and the tenant the record names (``None`` when
it names none), which must come back as ``dlq.tenant``.
"""

from __future__ import annotations

import json
import random
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from tests.delivery_support import work_order


@dataclass(frozen=True)
class Bad:
    kind: str
    key: bytes
    value: bytes
    classes: tuple[str, ...]  # acceptable dlq.error.class values
    mentions: tuple[str, ...]  # substrings dlq.message must contain
    tenant: str | None  # expected dlq.tenant


TENANTS = ("acme-fm", "nordic-hvac")


def _event(rng: random.Random, i: int) -> tuple[str, dict[str, Any]]:
    tenant = rng.choice(TENANTS)
    ev = json.loads(work_order(tenant, f"FZ-{i}", parts=1))
    ev["data"]["expenses"] = [{"id": f"E-{i}", "description": "Parking", "amount": "6.50", "billable": True}]
    return tenant, ev


def _dump(ev: dict[str, Any]) -> bytes:
    return json.dumps(ev).encode()


def _set(ev: dict[str, Any], path: str, value: Any) -> None:
    node: Any = ev
    parts = path.split(".")
    for p in parts[:-1]:
        node = node[int(p)] if isinstance(node, list) else node[p]
    last = parts[-1]
    if isinstance(node, list):
        node[int(last)] = value
    else:
        node[last] = value


def _field_case(path: str, values: list[Any], mention_value: bool = False) -> Callable[[random.Random, int], Bad]:
    def make(rng: random.Random, i: int) -> Bad:
        tenant, ev = _event(rng, i)
        value = rng.choice(values)
        _set(ev, path, value)
        mentions = (f"'{path}'",) + ((repr(value)[:20].strip("'\""),) if mention_value else ())
        return Bad("", f"{tenant}:wo:FZ-{i}".encode(), _dump(ev), ("invalid",), mentions, tenant)

    return make


def _deep(rng: random.Random, i: int) -> Bad:
    depth = rng.randint(900, 5000)
    value = b'{"tenant": "acme-fm", "data": ' + b"[" * depth + b"]" * depth + b"}"
    return Bad("", b"deep", value, ("not_json", "invalid"), ("nest",), "acme-fm")


def _not_json(rng: random.Random, i: int) -> Bad:
    return Bad(
        "", b"junk", rng.choice([b"\xff\xfe", b'{"specversion": "1.0", ', b"nope", b""]), ("not_json",), ("JSON",), None
    )


def _not_cloudevent(rng: random.Random, i: int) -> Bad:
    value, tenant = rng.choice([(b"[1, 2]", None), (b'{"tenant": "acme-fm"}', "acme-fm"), (b"42", None)])
    return Bad("", b"array", value, ("not_cloudevent",), ("specversion",), tenant)


def _unknown_type(rng: random.Random, i: int) -> Bad:
    tenant, ev = _event(rng, i)
    ev["type"] = rng.choice(["maintenance.work_order.exploded", "x", "maintenance.work_order.completed\u0000"])
    return Bad("", b"t", _dump(ev), ("unknown_type",), ("'type'",), tenant)


def _duplicate_key(rng: random.Random, i: int) -> Bad:
    _tenant, ev = _event(rng, i)  # the record names a "ghost" tenant as well
    raw = _dump(ev)
    raw = raw.replace(b'"tenant": ', b'"tenant": "ghost", "tenant": ', 1)
    return Bad("", b"dup", raw, ("invalid", "not_json"), ("tenant",), "ghost")


def _control_char(rng: random.Random, i: int) -> Bad:
    tenant, ev = _event(rng, i)
    path = rng.choice(
        [
            "data.work_order_id",
            "data.client_id",
            "data.site_id",
            "id",
            "data.time_entries.0.id",
            "data.time_entries.0.technician_id",
            "data.parts.0.sku",
        ]
    )
    char = rng.choice(["\u0000", "\u001b", "\u202e", "\u2066", "\u007f"])
    node: Any = ev
    parts = path.split(".")
    for p in parts[:-1]:
        node = node[int(p)] if isinstance(node, list) else node[p]
    node[parts[-1]] = f"{node[parts[-1]]}{char}x"
    return Bad("", b"ctl", _dump(ev), ("invalid",), (f"'{path}'",), tenant)


def _overlap(rng: random.Random, i: int) -> Bad:
    tenant, ev = _event(rng, i)
    first = dict(ev["data"]["time_entries"][0])
    second = dict(first)
    if rng.random() < 0.5:
        second["id"] = f"TE-{i}-dup"  # the same interval again under another id
        mentions = (first["id"], second["id"])
    else:
        second["id"] = first["id"]  # the same id twice
        mentions = (first["id"],)
    ev["data"]["time_entries"].append(second)
    return Bad("", b"ovl", _dump(ev), ("invalid",), ("'data.time_entries'", *mentions), tenant)


def _huge_record(rng: random.Random, i: int) -> Bad:
    tenant, ev = _event(rng, i)
    ev["data"]["summary"] = "s" * rng.randint(1_050_000, 1_200_000)
    return Bad("", b"huge", _dump(ev), ("too_large",), ("bytes",), tenant)


def _long_source(rng: random.Random, i: int) -> Bad:
    tenant, ev = _event(rng, i)
    field = rng.choice(["source", "subject"])
    ev[field] = "/" + "s" * rng.randint(5_000, 100_000)
    return Bad("", b"long", _dump(ev), ("invalid",), (f"'{field}'",), tenant)


def _many_entries(rng: random.Random, i: int) -> Bad:
    tenant, ev = _event(rng, i)
    entry = ev["data"]["time_entries"][0]
    n = rng.randint(1_000, 2_000)
    ev["data"]["time_entries"] = [{"id": f"TE-{k}", "technician_id": f"T{k}", "duration_seconds": 60} for k in range(n)]
    del entry
    return Bad("", b"many", _dump(ev), ("invalid", "too_large"), ("time_entries",), tenant)


def _unknown_tenant(rng: random.Random, i: int) -> Bad:
    _, ev = _event(rng, i)
    ev["tenant"] = "ghost-co"
    return Bad("", b"ghost", _dump(ev), ("unknown_tenant",), ("'tenant'", "ghost-co"), "ghost-co")


#: kind -> maker(rng, i)
KINDS: dict[str, Callable[[random.Random, int], Bad]] = {
    "deep_nesting": _deep,
    "not_json": _not_json,
    "not_cloudevent": _not_cloudevent,
    "unknown_type": _unknown_type,
    "duplicate_key": _duplicate_key,
    "control_char": _control_char,
    "overlap": _overlap,
    "huge_record": _huge_record,
    "long_source": _long_source,
    "many_entries": _many_entries,
    "unknown_tenant": _unknown_tenant,
    "time_number": _field_case("time", [12345, 1.7e9, 0]),
    "time_naive": _field_case("time", ["2026-03-03T11:30:00", "2026-03-03", "yesterday"]),
    "time_range": _field_case("time", ["1900-01-01T00:00:00+00:00", "9999-12-31T23:59:59+00:00"]),
    "start_number": _field_case("data.time_entries.0.start", [1772530000, True]),
    "revision_bool": _field_case("data.revision", [True, False, "2", 1.0]),
    "billable_number": _field_case("data.expenses.0.billable", [1, 0, "true", "yes"]),
    "amount_tiny": _field_case("data.expenses.0.amount", ["1e-400", "0.0000000001"]),
    "amount_huge": _field_case("data.expenses.0.amount", ["1e400", "9" * 30, "Infinity", "NaN"]),
    "amount_number": _field_case("data.expenses.0.amount", [6.5, 6]),
    "quantity_digits": _field_case("data.parts.0.quantity", ["1" * 30, "1e30", "0.1234567890123"]),
    "cost_control": _field_case("data.parts.0.unit_cost", ["10\u0000", "1\u202e0"]),
}


def bad_record(kind: str, rng: random.Random, i: int) -> Bad:
    """One bad record of ``kind`` (a key of :data:`KINDS`)."""
    bad = KINDS[kind](rng, i)
    return Bad(kind, bad.key, bad.value, bad.classes, bad.mentions, bad.tenant)


def good_record(rng: random.Random, i: int) -> tuple[str, bytes, bytes]:
    """``(invoice key, kafka key, value)`` of a valid work order that must be invoiced once."""
    tenant, ev = _event(rng, i)
    return f"{tenant}:wo:FZ-{i}:r1", f"{tenant}:wo:FZ-{i}".encode(), _dump(ev)
