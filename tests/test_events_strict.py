"""Strict validation of maintenance events (issue "Never none", part 2): broker/events.py.

One test per bad input the fuzz run found (exact error class, the field and the value in the
message), the bounds at their edges, ``tenant_hint``, and property tests: arbitrary bytes and
mutated events only ever raise :class:`EventDecodeError` with a bounded message, and every valid
event prices to an invoice or a :class:`PricingError` (never another exception).
"""

from __future__ import annotations

import copy
import json
import re
from datetime import UTC, datetime, timedelta, timezone
from decimal import Decimal
from pathlib import Path
from typing import Any

import pytest
import yaml
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from broker.config import Tenant, load_config
from broker.events import (
    MAX_EVENT_BYTES,
    MAX_MESSAGE_CHARS,
    EventDecodeError,
    QuoteApproved,
    WorkOrderCompleted,
    parse_event,
    show_value,
    tenant_hint,
)
from broker.pricing import PricingError, price_event
from broker.pricing.core import MAX_PRICED_JSON_BYTES
from connectors.sdk.invoice import Invoice, NotBillable
from tests.conftest import EXAMPLES

#: The README's example event (README.md, "Events").
README_EVENT: dict[str, Any] = {
    "specversion": "1.0",
    "id": "maintainx:wo:1001:r1",
    "source": "/platforms/maintainx",
    "type": "maintenance.work_order.completed",
    "time": "2026-03-03T11:30:00+00:00",
    "subject": "work-orders/1001",
    "tenant": "acme-fm",
    "data": {
        "work_order_id": "1001",
        "revision": 1,
        "kind": "corrective",
        "client_id": "CLI-HAL",
        "site_id": "LIS-HAL-ROOF",
        "time_entries": [
            {
                "id": "TE-1",
                "technician_id": "T31",
                "start": "2026-03-03T09:05:00+00:00",
                "end": "2026-03-03T11:12:00+00:00",
            }
        ],
        "parts": [
            {
                "id": "P-1",
                "sku": "REF-R410A",
                "description": "Refrigerant R410A",
                "quantity": "2.5",
                "unit": "kg",
                "unit_cost": "24.00",
            }
        ],
        "expenses": [{"id": "E-1", "description": "Parking", "amount": "6.50", "billable": True}],
    },
}

QUOTE_EVENT: dict[str, Any] = {
    "specversion": "1.0",
    "id": "erp:qt:Q-12:r1",
    "source": "/platforms/erp",
    "type": "maintenance.quote.approved",
    "time": "2026-03-02T10:00:00Z",
    "tenant": "acme-fm",
    "data": {
        "quote_id": "Q-12",
        "client_id": "CLI-HAL",
        "site_id": "LIS-HAL-ROOF",
        "lines": [
            {"id": "QL-1", "description": "Compressor", "quantity": "1", "unit_price": "980.00", "tax_rate": "23"}
        ],
    },
}


def event(**data: Any) -> dict[str, Any]:
    """A deep copy of the README event with ``data`` fields replaced."""
    ev = copy.deepcopy(README_EVENT)
    ev["data"].update(data)
    return ev


def dump(ev: Any) -> bytes:
    """UTF-8 JSON; with ``\\u`` escapes when a value holds a lone surrogate (not encodable as UTF-8)."""
    try:
        return json.dumps(ev, ensure_ascii=False).encode()
    except UnicodeEncodeError:
        return json.dumps(ev).encode()


def with_value(path: str, value: Any, base: dict[str, Any] | None = None) -> bytes:
    """The README event (or ``base``) with the value at dotted ``path`` replaced (``data.parts.0.quantity``)."""
    ev = copy.deepcopy(base or README_EVENT)
    node: Any = ev
    keys = path.split(".")
    for key in keys[:-1]:
        node = node[int(key)] if isinstance(node, list) else node[key]
    if isinstance(node, list):
        node[int(keys[-1])] = value
    else:
        node[keys[-1]] = value
    return dump(ev)


def refused(raw: Any, error_class: str = "invalid") -> str:
    """The message of the :class:`EventDecodeError` ``raw`` raises; asserts its class and bounds."""
    with pytest.raises(EventDecodeError) as info:
        parse_event(raw)
    assert info.value.error_class == error_class, str(info.value)
    message = str(info.value)
    assert len(message) <= MAX_MESSAGE_CHARS
    return message


def entry(eid: str, tech: str, start: str | None, end: str | None = None, **kw: Any) -> dict[str, Any]:
    out: dict[str, Any] = {"id": eid, "technician_id": tech, **kw}
    if start is not None:
        out["start"] = start
    if end is not None:
        out["end"] = end
    return out


# --------------------------------------------------------------------------- good inputs
def test_the_readme_event_and_the_examples_still_parse():
    ev = parse_event(dump(README_EVENT))
    assert isinstance(ev, WorkOrderCompleted)
    assert ev.data.parts[0].quantity == Decimal("2.5") and str(ev.data.parts[0].unit_cost) == "24.00"
    lines = (EXAMPLES / "events.ndjson").read_text(encoding="utf-8").splitlines()
    failures = []
    for line in lines:
        try:
            parse_event(line)
        except EventDecodeError as exc:
            failures.append((json.loads(line)["id"], exc.error_class, str(exc)))
    # the one invalid example event: a negative part quantity
    assert failures == [
        ("maintainx:wo:1042:r1", "invalid", "field 'data.parts.0.quantity': must be greater than 0 (got '-2')")
    ]


@pytest.mark.parametrize(
    ("text", "utc"),
    [
        ("2026-03-03T11:30:00Z", datetime(2026, 3, 3, 11, 30, tzinfo=UTC)),
        ("2026-03-03t11:30:00z", datetime(2026, 3, 3, 11, 30, tzinfo=UTC)),
        ("2026-03-03T11:30:00+05:30", datetime(2026, 3, 3, 6, 0, tzinfo=UTC)),
        ("2026-03-03T11:30:00.123456789-01:00", datetime(2026, 3, 3, 12, 30, 0, 123456, tzinfo=UTC)),
        ("2000-01-01T00:00:00Z", datetime(2000, 1, 1, tzinfo=UTC)),
        ("2100-12-31T23:59:59.999999Z", datetime(2100, 12, 31, 23, 59, 59, 999999, tzinfo=UTC)),
        ("2000-01-01T01:00:00+01:00", datetime(2000, 1, 1, tzinfo=UTC)),
    ],
)
def test_rfc3339_times_with_an_offset_are_accepted(text, utc):
    ev = parse_event(with_value("time", text))
    assert ev.time == utc and ev.time.utcoffset() is not None


def test_values_exactly_at_the_bounds_are_accepted():
    ev = parse_event(
        dump(
            event(
                revision=2**31 - 1,
                parts=[
                    {
                        "id": "P" * 128,
                        "sku": "S" * 128,
                        "description": "d" * 500,
                        "quantity": "999999.999999",
                        "unit": "u" * 64,
                        "unit_cost": "999999999999.999999",
                        "unit_price": "0",
                    }
                ],
                expenses=[{"id": "E-1", "description": "Parking\tlevel 2\r\nrow 3", "amount": "0.000001"}],
                time_entries=[
                    entry("TE-1", "T31", "2026-03-01T00:00:00Z", "2026-03-08T00:00:00Z"),
                    entry("TE-2", "T31", None, duration_seconds=604800, break_minutes=10080),
                    entry("TE-3", "T31", "2026-03-08T00:00:00Z", None, duration_seconds=60),
                ],
                summary="",
            )
            | {"source": "/" + "s" * 1023, "subject": "w" * 1024}
        )
    )
    assert ev.revision == 2**31 - 1 and len(ev.source) == 1024
    assert ev.data.parts[0].unit_cost == Decimal("999999999999.999999")
    assert ev.data.expenses[0].amount == Decimal("0.000001")
    quote = parse_event(
        dump(
            QUOTE_EVENT
            | {
                "data": QUOTE_EVENT["data"]
                | {
                    "lines": [
                        {
                            "id": "QL-1",
                            "description": "x",
                            "quantity": "0.000001",
                            "unit_price": "1",
                            "tax_rate": "100",
                        },
                        {"id": "QL-2", "description": "y", "quantity": "1", "unit_price": "1", "tax_rate": "0"},
                    ]
                }
            }
        )
    )
    assert isinstance(quote, QuoteApproved) and quote.data.lines[0].tax_rate == Decimal(100)


def test_max_items_and_a_utf8_bom_are_accepted():
    entries = [entry(f"TE-{i}", f"T{i}", None, duration_seconds=60) for i in range(500)]
    ev = parse_event(b"\xef\xbb\xbf" + dump(event(time_entries=entries)))
    assert len(ev.data.time_entries) == 500


def test_entries_that_touch_or_differ_in_technician_or_visit_do_not_overlap():
    ev = parse_event(
        dump(
            event(
                time_entries=[
                    entry("TE-1", "T31", "2026-03-03T09:00:00Z", "2026-03-03T10:00:00Z"),
                    entry("TE-2", "T31", "2026-03-03T10:00:00Z", "2026-03-03T11:00:00Z"),  # touches TE-1
                    entry("TE-3", "T32", "2026-03-03T09:30:00Z", "2026-03-03T10:30:00Z"),  # another technician
                    entry(
                        "TE-4", "T31", "2026-03-03T09:30:00Z", "2026-03-03T10:30:00Z", visit_id="V2"
                    ),  # another visit
                    entry("TE-5", "T31", None, duration_seconds=3600),  # unclocked: not checked
                ]
            )
        )
    )
    assert [e.id for e in ev.data.time_entries] == ["TE-1", "TE-2", "TE-3", "TE-4", "TE-5"]


def test_a_parsed_event_survives_its_own_json_round_trip():
    """The pricing agent stores approved quotes as ``model_dump_json`` and parses them again."""
    for raw in (dump(README_EVENT), dump(QUOTE_EVENT), with_value("time", "2026-03-03T11:30:00.5+05:30")):
        ev = parse_event(raw)
        assert parse_event(ev.model_dump_json()) == ev


# --------------------------------------------------------------------------- JSON level
@pytest.mark.parametrize("depth", [1_000, 5_000])
def test_deep_nesting_is_not_json_instead_of_a_recursion_error(depth):
    value = b'{"specversion": "1.0", "tenant": "acme-fm", "data": ' + b"[" * depth + b"]" * depth + b"}"
    assert refused(value, "not_json") == "value is not JSON we accept: nested more than 32 levels deep"
    assert tenant_hint(value) == "acme-fm"


@pytest.mark.parametrize(
    ("raw", "message"),
    [
        (b"", "value is not JSON: it is empty"),
        (b"\xff\xfe{}", "value is not JSON: not UTF-8 (invalid start byte at byte 0)"),
        (b"nope", "value is not JSON: Expecting value: line 1 column 1 (char 0)"),
        (b'{"specversion": "1.0", "x": NaN}', "value is not JSON: NaN is not allowed (JSON has no NaN or Infinity)"),
        (
            b'{"specversion": "1.0", "x": -Infinity}',
            "value is not JSON: -Infinity is not allowed (JSON has no NaN or Infinity)",
        ),
    ],
)
def test_not_json(raw, message):
    assert refused(raw, "not_json") == message


@pytest.mark.parametrize(
    ("raw", "message"),
    [
        (b"[1, 2]", "not a CloudEvent: field 'specversion' is missing (the value is a JSON array, not a JSON object)"),
        (b"42", "not a CloudEvent: field 'specversion' is missing (the value is a JSON number, not a JSON object)"),
        (b'{"specversion": "1.0"}', "not a CloudEvent: field 'type' is missing"),
    ],
)
def test_not_a_cloudevent(raw, message):
    assert refused(raw, "not_cloudevent") == message


def test_unknown_type_names_the_value_cut_short():
    assert refused(with_value("type", "maintenance.work_order.completed\u0000"), "unknown_type") == (
        "field 'type': unknown event type 'maintenance.work_order.completed\\x00'; expected one of "
        "maintenance.work_order.completed, maintenance.scheduled_job.closed, maintenance.quote.approved, "
        "maintenance.work_order.reopened, maintenance.work_order.cancelled, maintenance.quote.cancelled"
    )
    message = refused(with_value("type", "t" * 10_000), "unknown_type")
    assert f"unknown event type {'t' * 80!r}… (10000 chars);" in message and len(message) < 400


def test_a_key_given_twice_is_refused_naming_the_key():
    raw = dump(README_EVENT).replace(b'"tenant": ', b'"tenant": "ghost", "tenant": ', 1)
    assert refused(raw) == (
        "field 'tenant': key given more than once in one JSON object (first 'ghost', then 'acme-fm')"
    )
    raw = dump(README_EVENT).replace(b'"sku": "REF-R410A"', b'"sku": "A", "sku": "B"', 1)
    assert refused(raw) == "field 'data.parts.0.sku': key given more than once in one JSON object (first 'A', then 'B')"
    assert tenant_hint(dump(README_EVENT).replace(b'"tenant": ', b'"tenant": "ghost", "tenant": ', 1)) == "ghost"


# --------------------------------------------------------------------------- size
def test_a_record_over_512_kib_is_too_large_with_its_size():
    raw = with_value("subject", "s" * (1024 * 1024))
    assert refused(raw, "too_large") == f"event is {len(raw)} bytes; the limit is 524288 bytes (512 KiB)"
    text = raw.decode()
    assert refused(text, "too_large") == f"event is at least {len(text)} bytes; the limit is 524288 bytes (512 KiB)"
    multibyte = with_value("data.summary", "€" * 200_000).decode()  # 200k characters, 600k bytes
    assert refused(multibyte, "too_large") == (
        f"event is {len(multibyte.encode())} bytes; the limit is {MAX_EVENT_BYTES} bytes (512 KiB)"
    )


@pytest.mark.parametrize("field", ["source", "subject"])
def test_a_source_or_subject_over_1024_characters_is_refused(field):
    assert refused(with_value(field, "/" + "s" * 1024)) == (
        f"field '{field}': String should have at most 1024 characters (got {'/' + 's' * 79!r}… (1025 chars))"
    )


def test_ten_thousand_time_entries_are_too_large_and_501_are_too_many():
    entries = [entry(f"TE-{i}", "T31", None, duration_seconds=60) for i in range(10_000)]
    raw = dump(event(time_entries=entries))
    assert refused(raw, "too_large") == f"event is {len(raw)} bytes; the limit is 524288 bytes (512 KiB)"
    message = refused(dump(event(time_entries=entries[:501])))
    assert message.startswith(
        "field 'data.time_entries': List should have at most 500 items after validation, not 501 (got [{"
    )
    for field, item in (("parts", README_EVENT["data"]["parts"][0]), ("expenses", README_EVENT["data"]["expenses"][0])):
        items = [item | {"id": f"X-{i}"} for i in range(501)]
        assert refused(dump(event(**{field: items}))).startswith(
            f"field 'data.{field}': List should have at most 500 items after validation, not 501"
        )


# --------------------------------------------------------------------------- coercion
@pytest.mark.parametrize(
    ("value", "shown", "kind"),
    [
        (12345, "12345", "a JSON number"),
        (1.7e9, "1700000000.0", "a JSON number"),
        (True, "True", "a JSON boolean"),
    ],
)
def test_time_as_a_number_is_refused(value, shown, kind):
    assert refused(with_value("time", value)) == (
        "field 'time': must be an RFC 3339 date-time with a UTC offset, like '2026-03-03T11:30:00+00:00' or "
        f"'2026-03-03T11:30:00Z', not {kind} (got {shown})"
    )


def test_naive_and_malformed_times_are_refused():
    assert refused(with_value("data.time_entries.0.start", "2026-03-03T09:05:00")) == (
        "field 'data.time_entries.0.start': has no UTC offset (naive times are refused): must be an RFC 3339 "
        "date-time with a UTC offset, like '2026-03-03T11:30:00+00:00' or '2026-03-03T11:30:00Z' "
        "(got '2026-03-03T09:05:00')"
    )
    for bad in ("2026-03-03", "2026-03-03 11:30:00Z", "yesterday", "2026-03-03T11:30:00+0000", "2026-03-03T11:30Z"):
        assert refused(with_value("time", bad)).startswith("field 'time': must be an RFC 3339 date-time"), bad
    assert refused(with_value("time", "2026-02-30T11:30:00Z")) == (
        "field 'time': is not a valid date-time (day is out of range for month) (got '2026-02-30T11:30:00Z')"
    )
    assert refused(with_value("time", "2026-03-03T11:30:00+24:00")).startswith(
        "field 'time': has an invalid UTC offset"
    )


@pytest.mark.parametrize(
    "value",
    [
        "1999-12-31T23:59:59Z",
        "1970-01-01T00:00:00Z",
        "2101-01-01T00:00:00Z",
        "9999-12-31T23:59:59+00:00",
        "2100-12-31T23:30:00-01:00",
    ],
)
def test_times_outside_2000_to_2100_are_refused(value):
    assert refused(with_value("time", value)) == f"field 'time': must lie in years 2000–2100 (UTC) (got {value!r})"


@pytest.mark.parametrize(
    ("path", "value", "shown"),
    [
        ("data.revision", True, "True"),
        ("data.revision", "2", "'2'"),
        ("data.revision", 1.0, "1.0"),
        ("data.time_entries.0.break_minutes", False, "False"),
    ],
)
def test_integers_must_be_json_integers(path, value, shown):
    assert refused(with_value(path, value)) == f"field '{path}': Input should be a valid integer (got {shown})"


def test_duration_seconds_must_be_an_integer_within_7_days():
    unclocked = {"id": "TE-1", "technician_id": "T31", "duration_seconds": "60"}
    assert refused(with_value("data.time_entries.0", unclocked)) == (
        "field 'data.time_entries.0.duration_seconds': Input should be a valid integer (got '60')"
    )
    assert refused(with_value("data.time_entries.0", unclocked | {"duration_seconds": 604801})) == (
        "field 'data.time_entries.0.duration_seconds': Input should be less than or equal to 604800 (got 604801)"
    )
    assert refused(with_value("data.time_entries.0.end", "2026-03-10T09:05:00.000001+00:00")) == (
        "field 'data.time_entries.0': entry from 2026-03-03T09:05:00+00:00 to 2026-03-10T09:05:00.000001+00:00 "
        "is longer than 7 days"
    )


@pytest.mark.parametrize(("value", "shown"), [(1, "1"), (0, "0"), ("true", "'true'"), ("yes", "'yes'"), (None, "None")])
def test_booleans_only_true_or_false(value, shown):
    assert refused(with_value("data.expenses.0.billable", value)) == (
        f"field 'data.expenses.0.billable': Input should be a valid boolean (got {shown})"
    )


# --------------------------------------------------------------------------- time entries
def test_duplicate_time_entry_ids_are_refused():
    first = README_EVENT["data"]["time_entries"][0]
    later = first | {"start": "2026-03-04T09:00:00+00:00", "end": "2026-03-04T10:00:00+00:00"}
    assert refused(dump(event(time_entries=[first, later]))) == (
        "field 'data.time_entries': entry id 'TE-1' is given twice (items 0 and 1)"
    )


def test_overlapping_entries_of_one_technician_in_one_visit_are_refused_naming_both():
    entries = [
        entry("TE-1", "T31", "2026-03-03T09:05:00+00:00", "2026-03-03T11:12:00+00:00"),
        entry("TE-2", "T31", "2026-03-03T11:00:00+00:00", None, duration_seconds=3600, kind="travel"),
    ]
    assert refused(dump(event(time_entries=entries))) == (
        "field 'data.time_entries': entries 'TE-1' and 'TE-2' of technician 'T31' overlap in visit '1001' "
        "(2026-03-03T09:05:00+00:00–2026-03-03T11:12:00+00:00 and 2026-03-03T11:00:00+00:00–2026-03-03T12:00:00+00:00)"
    )
    # the same interval twice under two ids, in a named visit, written with other offsets
    same = [
        entry("TE-1", "T31", "2026-03-03T10:00:00+01:00", "2026-03-03T11:00:00+01:00", visit_id="V2"),
        entry("TE-9", "T31", "2026-03-03T09:00:00Z", "2026-03-03T10:00:00Z", visit_id="V2"),
    ]
    assert refused(dump(event(time_entries=same))) == (
        "field 'data.time_entries': entries 'TE-1' and 'TE-9' of technician 'T31' overlap in visit 'V2' "
        "(2026-03-03T10:00:00+01:00–2026-03-03T11:00:00+01:00 and 2026-03-03T09:00:00+00:00–2026-03-03T10:00:00+00:00)"
    )


def test_a_long_entry_containing_two_others_reports_both_and_counts_the_rest():
    entries = [entry("TE-A", "T31", "2026-03-03T08:00:00Z", "2026-03-03T18:00:00Z")] + [
        entry(f"TE-{i}", "T31", f"2026-03-03T{9 + i:02d}:00:00Z", f"2026-03-03T{9 + i:02d}:30:00Z") for i in range(4)
    ]
    message = refused(dump(event(time_entries=entries)))
    assert message.startswith("field 'data.time_entries': entries 'TE-A' and 'TE-0' of technician 'T31' overlap")
    assert "; entries 'TE-A' and 'TE-1' of technician 'T31' overlap" in message
    assert message.endswith("; and 2 more overlaps")


def test_braces_in_values_are_copied_verbatim_into_messages():
    entries = [
        entry("{text}", "{at}", "2026-03-03T09:00:00Z", "2026-03-03T10:00:00Z"),
        entry("B{names_value}", "{at}", "2026-03-03T09:30:00Z", "2026-03-03T10:00:00Z"),
    ]
    assert refused(dump(event(time_entries=entries))).startswith(
        "field 'data.time_entries': entries '{text}' and 'B{names_value}' of technician '{at}' overlap in visit '1001'"
    )


def test_duplicate_part_expense_and_quote_line_ids_are_refused():
    part = README_EVENT["data"]["parts"][0]
    assert refused(dump(event(parts=[part, part | {"sku": "X"}]))) == (
        "field 'data.parts': part id 'P-1' is given twice (items 0 and 1)"
    )
    expense = README_EVENT["data"]["expenses"][0]
    assert refused(dump(event(expenses=[expense, expense]))) == (
        "field 'data.expenses': expense id 'E-1' is given twice (items 0 and 1)"
    )
    line = QUOTE_EVENT["data"]["lines"][0]
    quote = copy.deepcopy(QUOTE_EVENT)
    quote["data"]["lines"] = [line, line | {"id": "QL-2"}, line]
    assert refused(dump(quote)) == "field 'data.lines': line id 'QL-1' is given twice (items 0 and 2)"


def test_distance_on_a_work_entry_and_end_before_start_name_the_values():
    assert refused(with_value("data.time_entries.0.distance_km", "12.5")) == (
        "field 'data.time_entries.0': distance_km is only allowed on travel entries (kind 'travel'), not on kind 'work'"
    )
    assert refused(with_value("data.time_entries.0.end", "2026-03-03T09:05:00Z")) == (
        "field 'data.time_entries.0': end 2026-03-03T09:05:00+00:00 is not after start 2026-03-03T09:05:00+00:00"
    )


# --------------------------------------------------------------------------- characters
@pytest.mark.parametrize(
    "path",
    [
        "id",
        "data.work_order_id",
        "data.client_id",
        "data.site_id",
        "data.time_entries.0.id",
        "data.time_entries.0.technician_id",
        "data.parts.0.sku",
        "data.parts.0.id",
        "data.expenses.0.id",
        "source",
        "subject",
        "data.parts.0.unit",
    ],
)
@pytest.mark.parametrize(
    ("char", "name", "shown"),
    [
        ("\u0000", "U+0000", "\\x00"),
        ("\u001b", "U+001B", "\\x1b"),
        ("\u007f", "U+007F", "\\x7f"),
        ("\u202e", "U+202E (RIGHT-TO-LEFT OVERRIDE)", "\\u202e"),
        ("\u2066", "U+2066 (LEFT-TO-RIGHT ISOLATE)", "\\u2066"),
        ("\u200b", "U+200B (ZERO WIDTH SPACE)", "\\u200b"),
        ("\u2028", "U+2028 (LINE SEPARATOR)", "\\u2028"),
    ],
)
def test_control_and_format_characters_are_refused_in_identifiers(path, char, name, shown):
    assert refused(with_value(path, f"AB{char}x")) == (
        f"field '{path}': control or format character {name} at position 2 is not allowed (got 'AB{shown}x')"
    )


@pytest.mark.parametrize("path", ["data.client_id", "data.parts.0.description", "source"])
def test_a_lone_surrogate_is_refused_anywhere(path):
    assert refused(with_value(path, "AB\ud800x")) == (
        f"field '{path}': Input should be a valid string, unable to parse raw data as a unicode string "
        "(got 'AB\\ud800x')"
    )


def test_free_text_allows_newlines_but_not_other_controls_or_bidi_overrides():
    ev = parse_event(with_value("data.parts.0.description", "Valve\n22 mm\tbrass – ação 👍\u200d"))
    assert ev.data.parts[0].description.startswith("Valve\n22 mm")
    assert refused(with_value("data.summary", "ok\u0000")) == (
        "field 'data.summary': control character U+0000 at position 2 is not allowed (free text allows tab, CR and "
        "LF) (got 'ok\\x00')"
    )
    assert refused(with_value("data.expenses.0.description", "Parking \u202egpj.exe")) == (
        "field 'data.expenses.0.description': control character U+202E (RIGHT-TO-LEFT OVERRIDE) at position 8 is "
        "not allowed (free text allows tab, CR and LF) (got 'Parking \\u202egpj.exe')"
    )


def test_an_unknown_field_with_a_hostile_name_is_shown_escaped():
    raw = dump(README_EVENT).replace(b'"subject"', b'"x\\u202e\\u0000"', 1)
    assert refused(raw) == (
        "field ''x\\u202e\\x00'': not a CloudEvents attribute name: lower-case ASCII letters and digits, at most 20"
    )


# --------------------------------------------------------------------------- decimals
PLAIN_12 = (
    'must be a plain decimal string like "24.00" (at most 12 integer digits and 6 decimals; '
    "no exponent, spaces or other signs)"
)
DIGITS_12 = "has too many integer digits (at most 12 integer digits and 6 decimals)"


@pytest.mark.parametrize(
    ("path", "value", "reason"),
    [
        ("data.expenses.0.amount", "1e-400", PLAIN_12),
        ("data.expenses.0.amount", "1e400", PLAIN_12),
        ("data.expenses.0.amount", "Infinity", PLAIN_12),
        ("data.expenses.0.amount", " 6.50", PLAIN_12),
        ("data.expenses.0.amount", "+6.50", PLAIN_12),
        ("data.expenses.0.amount", "9" * 30, DIGITS_12),
        ("data.expenses.0.amount", "1000000000000", DIGITS_12),
        ("data.expenses.0.amount", "0.0000001", "has too many decimals (at most 12 integer digits and 6 decimals)"),
        ("data.expenses.0.amount", "-0.01", "must not be negative"),
        ("data.parts.0.unit_cost", "10\u0000", PLAIN_12),
        ("data.parts.0.unit_cost", "1\u202e0", PLAIN_12),
        ("data.parts.0.quantity", "1000000", "has too many integer digits (at most 6 integer digits and 6 decimals)"),
        ("data.parts.0.quantity", "0", "must be greater than 0"),
        ("data.parts.0.quantity", "-2", "must be greater than 0"),
    ],
)
def test_bad_decimal_strings_are_refused(path, value, reason):
    assert refused(with_value(path, value)) == f"field '{path}': {reason} (got {value!r})"


@pytest.mark.parametrize(
    ("literal", "shown", "kind"),
    [
        (b"6.5", "6.5", "a JSON number"),
        (b"6", "6", "a JSON number"),
        (b"1e400", "1e400", "a JSON number"),
        (b"true", "True", "a JSON boolean"),
        (b"null", "None", "null"),
    ],
)
def test_money_as_a_json_number_is_refused(literal, shown, kind):
    raw = dump(README_EVENT).replace(b'"amount": "6.50"', b'"amount": ' + literal, 1)
    assert refused(raw) == (
        f"field 'data.expenses.0.amount': must be a decimal string like \"24.00\", not {kind} (got {shown})"
    )


def test_a_quote_tax_rate_above_100_is_refused():
    quote = copy.deepcopy(QUOTE_EVENT)
    quote["data"]["lines"][0]["tax_rate"] = "100.000001"
    assert refused(dump(quote)) == "field 'data.lines.0.tax_rate': must be at most 100 (got '100.000001')"


# --------------------------------------------------------------------------- messages
def test_the_message_shows_the_first_errors_then_how_many_more():
    parts = [{"id": f"P-{i}", "sku": "S", "description": "d", "quantity": "-1", "unit_cost": "x"} for i in range(200)]
    message = refused(dump(event(parts=parts)))
    shown = message.count("field 'data.parts.")
    more = int(re.fullmatch(r".*; and (\d+) more", message).group(1))
    assert shown + more == 400 and shown >= 5
    assert message.startswith(
        "field 'data.parts.0.quantity': must be greater than 0 (got '-1'); "
        "field 'data.parts.0.unit_cost': must be a plain decimal string"
    )


def test_show_value_cuts_values():
    assert show_value("x" * 81) == repr("x" * 80) + "… (81 chars)"
    assert show_value("x" * 80) == repr("x" * 80)
    nested: Any = []
    for _ in range(2000):
        nested = [nested]
    assert show_value(nested) == "[[[...]]]"
    assert len(show_value({"k" * 500: ["v" * 500] * 500})) <= 81


# --------------------------------------------------------------------------- tenant hint
@pytest.mark.parametrize(
    ("raw", "tenant"),
    [
        (dump(README_EVENT), "acme-fm"),
        (dump(README_EVENT).decode(), "acme-fm"),
        (b'{"specversion": "1.0", "tenant": "acme-fm", "data": {"x": [[[[', "acme-fm"),  # cut short after the tenant
        (b'{"data": {"tenant": "inner"}, "tenant": "outer"}', "outer"),  # top-level member, not a nested one
        (b'{"data": {"tenant": "inner"}}', None),
        (b'{"data": [[[[[, "tenant": "late"}', "late"),  # unreadable before the tenant: first "tenant" in the text
        (b'{"tenant": "bad tenant"}', None),
        (b'{"tenant": "\\u0000x"}', None),
        (b'{"tenant": 42}', None),
        (b'{"tenant": "' + b"t" * 65 + b'"}', None),
        (b'["tenant", "acme-fm"]', None),
        (b"\xef\xbb\xbf" + dump(README_EVENT), "acme-fm"),
        (b"\xff\xfe\x00", None),
        (b"", None),
        (None, None),
        (bytearray(b'{"tenant":"nordic-hvac"}'), "nordic-hvac"),
    ],
)
def test_tenant_hint(raw, tenant):
    assert tenant_hint(raw) == tenant


def test_tenant_hint_of_a_huge_record_reads_its_head_only():
    raw = b'{"tenant": "acme-fm", "data": "' + b"x" * 3_000_000 + b'"}'
    assert tenant_hint(raw) == "acme-fm"
    assert tenant_hint(b'{"data": "' + b"x" * 3_000_000 + b'", "tenant": "acme-fm"}') is None


# --------------------------------------------------------------------------- properties
_JSON = st.recursive(
    st.none() | st.booleans() | st.integers(-(10**40), 10**40) | st.floats() | st.text(max_size=20),
    lambda children: st.lists(children, max_size=4) | st.dictionaries(st.text(max_size=8), children, max_size=4),
    max_leaves=12,
)


def _paths(node: Any, prefix: tuple = ()) -> list[tuple]:
    out = [prefix] if prefix else []
    if isinstance(node, dict):
        for key, child in node.items():
            out += _paths(child, (*prefix, key))
    elif isinstance(node, list):
        for index, child in enumerate(node):
            out += _paths(child, (*prefix, index))
    return out


_README_PATHS = _paths(README_EVENT)


def _decode_error(raw: bytes | str) -> EventDecodeError | None:
    """The :class:`EventDecodeError` parsing ``raw`` raises, ``None`` when it parses (any other exception propagates)."""
    try:
        parse_event(raw)
    except EventDecodeError as exc:
        return exc
    return None


@settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(st.binary(max_size=200) | st.text(max_size=200).map(str.encode))
def test_arbitrary_bytes_only_raise_event_decode_errors(raw):
    error = _decode_error(raw)
    if error is not None:
        assert error.error_class in ("not_json", "not_cloudevent", "unknown_type", "invalid")
        assert len(str(error)) <= MAX_MESSAGE_CHARS


@settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(st.lists(st.tuples(st.sampled_from(_README_PATHS), _JSON), min_size=1, max_size=3), st.booleans())
def test_mutated_events_only_raise_event_decode_errors(changes, ascii_only):
    ev = copy.deepcopy(README_EVENT)
    for path, value in changes:
        node: Any = ev
        try:
            for key in path[:-1]:
                node = node[key]
            node[path[-1]] = value
        except (KeyError, IndexError, TypeError):  # an earlier change replaced a parent
            continue
    error = _decode_error(json.dumps(ev, ensure_ascii=ascii_only))
    if error is not None:
        assert error.error_class in ("not_json", "invalid", "not_cloudevent", "unknown_type")
        assert len(str(error)) <= MAX_MESSAGE_CHARS


def _tenants() -> dict[str, Tenant]:
    """The example tenants plus variants of acme-fm that exercise the other pricing modes."""
    config = load_config(EXAMPLES / "config.yaml")
    tenants = dict(config.tenants)
    raw = yaml.safe_load((EXAMPLES / "config.yaml").read_text(encoding="utf-8"))["tenants"]["acme-fm"]
    variants = {
        "mileage": {
            "rate_card": {
                "travel_billing": "mileage",
                "mileage_rate_per_km": "0.45",
                "mileage_cost_per_km": "0.21",
                "rounding_per": "entry",
            }
        },
        "completion": {"quotes": {"invoice_at": "completion"}, "currency": "JPY"},
        "deposit": {"quotes": {"deposit_percent": "30"}, "currency": "BHD", "tax": {"prices_include_tax": True}},
    }
    for name, change in variants.items():
        tenant = copy.deepcopy(raw)
        for key, value in change.items():
            tenant[key] = tenant.get(key, {}) | value if isinstance(value, dict) else value
        tenants[f"acme-fm-{name}"] = Tenant.model_validate(tenant)
    return tenants


TENANTS = _tenants()
_EDGE_MONEY = ["0", "0.000001", "1", "24.00", "999999999999.999999", "123456789012.123456"]
_EDGE_QTY = ["0.000001", "1", "2.5", "999999.999999", "123456.654321"]


def _decimal_text(top: int, edges: list[str], positive: bool) -> st.SearchStrategy[str]:
    low = Decimal("0.000001") if positive else Decimal(0)
    numbers = st.decimals(
        min_value=low, max_value=Decimal(10**top) - Decimal("0.000001"), places=6, allow_nan=False, allow_infinity=False
    ).map(lambda d: format(d, "f"))
    return st.sampled_from(edges) | numbers


_money = _decimal_text(12, _EDGE_MONEY, positive=False)
_qty = _decimal_text(6, _EDGE_QTY, positive=True)
_ids = st.text(st.characters(codec="utf-8", categories=["L", "N", "P", "S", "Zs"]), min_size=1, max_size=12)


@st.composite
def _valid_events(draw) -> tuple[str, dict[str, Any], dict[str, Any]]:
    tenant_id = draw(st.sampled_from(sorted(TENANTS)))
    tenant = TENANTS[tenant_id]
    card = tenant.rate_card
    client = draw(_ids) if draw(st.integers(0, 9)) == 0 else draw(st.sampled_from(sorted(tenant.clients)))
    if draw(st.integers(0, 3)) == 0:  # inside the example contract (CLI-CDP, 2026)
        base = draw(st.datetimes(min_value=datetime(2026, 1, 1, 12), max_value=datetime(2026, 12, 1)))
    else:
        base = draw(st.datetimes(min_value=datetime(2000, 1, 2), max_value=datetime(2100, 6, 1)))
    offset = draw(
        st.sampled_from([timedelta(0), timedelta(hours=1), timedelta(hours=-5, minutes=-30), timedelta(hours=14)])
    )
    zone = timezone(offset)

    def stamp(moment: datetime) -> str:
        return moment.replace(tzinfo=UTC).astimezone(zone).isoformat().replace("+00:00", "Z")

    technicians = [*sorted(card.technicians), "T-UNKNOWN"]
    cursor: dict[str, datetime] = {}
    entries = []
    for i in range(draw(st.integers(0, 12))):
        tech = draw(st.sampled_from(technicians))
        kind = draw(st.sampled_from(["work", "work", "travel"]))
        item: dict[str, Any] = {"id": f"TE-{i}", "technician_id": tech, "kind": kind}
        length = draw(st.integers(1, 7 * 24 * 3600))
        mode = draw(st.sampled_from(["start_end", "start_duration", "duration"]))
        if mode == "duration":
            item["duration_seconds"] = length
        else:
            start = cursor.get(tech, base) + timedelta(seconds=draw(st.integers(0, 3 * 86400)))
            cursor[tech] = start + timedelta(seconds=length)
            item["start"] = stamp(start)
            if mode == "start_end":
                item["end"] = stamp(start + timedelta(seconds=length))
            else:
                item["duration_seconds"] = length
        if draw(st.booleans()):
            item["break_minutes"] = draw(st.integers(0, 10080))
        if draw(st.booleans()):
            item["visit_id"] = draw(st.sampled_from(["V1", "V2"]))
        if draw(st.integers(0, 4)) == 0:
            item["skill"] = draw(st.sampled_from([*sorted(card.skills), "welding"]))
        if kind == "travel" and draw(st.integers(0, 3)) > 0:
            item["distance_km"] = draw(_decimal_text(6, ["0", "12.5", "999999.999999"], positive=False))
        item["outside_quote"] = draw(st.booleans())
        entries.append(item)
    parts = []
    for i in range(draw(st.integers(0, 4))):
        part: dict[str, Any] = {
            "id": f"P-{i}",
            "sku": draw(st.sampled_from([*sorted(card.catalogue), "SKU-X"])),
            "description": draw(_ids),
            "quantity": draw(_qty),
        }
        for key in ("unit_cost", "unit_price"):
            if draw(st.booleans()):
                part[key] = draw(_money)
        part["client_supplied"] = draw(st.integers(0, 5)) == 0
        part["outside_quote"] = draw(st.booleans())
        if draw(st.booleans()):
            part["category"] = draw(st.sampled_from(["consumables", "spares", "other"]))
        parts.append(part)
    expenses = [
        {
            "id": f"E-{i}",
            "description": "Parking",
            "amount": draw(_money),
            "billable": draw(st.booleans()),
            "outside_quote": draw(st.booleans()),
        }
        for i in range(draw(st.integers(0, 3)))
    ]
    envelope = {"specversion": "1.0", "source": "/platforms/prop", "time": stamp(base), "tenant": tenant_id}
    quote = envelope | {
        "id": "prop:qt",
        "type": "maintenance.quote.approved",
        "data": {
            "quote_id": "Q-1",
            "revision": draw(st.integers(1, 2**31 - 1)),
            "client_id": client,
            "site_id": "S-1",
            "lines": [
                {
                    "id": f"QL-{i}",
                    "description": "Line",
                    "quantity": draw(_qty),
                    "unit_price": draw(_money),
                    **(
                        {"tax_rate": draw(_decimal_text(2, ["0", "100", "23"], positive=False))}
                        if draw(st.booleans())
                        else {}
                    ),
                }
                for i in range(draw(st.integers(1, 3)))
            ],
        },
    }
    doc = draw(st.sampled_from(["wo", "sj"]))
    data: dict[str, Any] = {
        "revision": draw(st.integers(1, 2**31 - 1)),
        "client_id": client,
        "site_id": draw(st.sampled_from(["LIS-HAL-ROOF", "LIS-CDP-WARD2", "S-1"])),
        "time_entries": entries,
        "parts": parts,
        "expenses": expenses,
    }
    if doc == "wo":
        data |= {"work_order_id": draw(_ids), "kind": draw(st.sampled_from(["corrective", "preventive"]))}
        if draw(st.booleans()):
            data["quote_id"] = "Q-1"
        work = envelope | {"id": "prop:wo", "type": "maintenance.work_order.completed", "data": data}
    else:
        data |= {"scheduled_job_id": draw(_ids)}
        work = envelope | {"id": "prop:sj", "type": "maintenance.scheduled_job.closed", "data": data}
    return tenant_id, work, quote


@settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large])
@given(_valid_events(), st.booleans())
def test_valid_events_price_or_raise_only_pricing_errors(case, with_quote):
    tenant_id, work, quote_raw = case
    tenant = TENANTS[tenant_id]
    quote = parse_event(dump(quote_raw))
    event = parse_event(dump(work))
    for ev, kwargs in ((quote, {}), (event, {"quote": quote if with_quote else None})):
        try:
            priced = price_event(ev, tenant_id, tenant, **kwargs)
        except PricingError:
            continue
        text = priced.model_dump_json()
        assert len(text.encode()) <= MAX_PRICED_JSON_BYTES
        again = (Invoice if priced.status == "invoice" else NotBillable).model_validate_json(text)
        if isinstance(again, Invoice):
            assert again.net_total + again.tax_total == again.total


def test_an_event_whose_invoice_cannot_fit_a_kafka_record_is_a_pricing_error():
    """500 visits of 6.5 h across bands, each with a call-out, plus long parts: more than 900 KiB of invoice."""
    entries = [
        entry(
            f"{i:04d}" + "E" * 124,
            f"T3{i % 2 + 1}",
            f"2026-03-{1 + i % 28:02d}T17:00:00Z",
            f"2026-03-{1 + i % 28:02d}T23:30:00Z",
            visit_id=f"{i:04d}" + "V" * 124,
        )
        for i in range(500)
    ]
    parts = [
        {
            "id": f"{i:04d}" + "P" * 124,
            "sku": f"{i:04d}" + "K" * 124,
            "description": "d" * 500,
            "quantity": "1",
            "unit_cost": "10",
        }
        for i in range(200)
    ]
    ev = parse_event(dump(event(time_entries=entries, parts=parts, expenses=[])))
    tenant = TENANTS["acme-fm"]
    with pytest.raises(PricingError) as info:
        price_event(ev, "acme-fm", tenant)
    assert info.value.field == "data" and info.value.value == "1577 lines"
    assert re.fullmatch(
        r"data: the priced invoice would be \d+ bytes of JSON, more than the 921600 one Kafka record "
        r"can carry \(too many visits, time entries or items in one event\) \(got '1577 lines'\)",
        str(info.value),
    )
    fewer = parse_event(dump(event(time_entries=entries[:100], parts=parts[:50], expenses=[])))
    assert len(price_event(fewer, "acme-fm", tenant).model_dump_json()) < MAX_PRICED_JSON_BYTES


# --------------------------------------------------------------------------- CloudEvents extensions
def test_extension_attributes_dataschema_and_json_media_types_with_parameters_are_accepted():
    """Any CloudEvents extension attribute (``traceparent``, ...), ``dataschema`` and a
    ``datacontenttype`` with parameters are valid CloudEvents: kept, and the event priced as usual."""
    raw = dict(README_EVENT)
    raw.update(
        traceparent="00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01",
        dataschema="https://example.com/schemas/work-order.json",
        datacontenttype="Application/JSON; charset=UTF-8",
        sequence=42,
        replayed=False,
    )
    event = parse_event(dump(raw))
    assert event.model_extra == {
        "traceparent": "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01",
        "sequence": 42,
        "replayed": False,
    }
    assert event.dataschema == "https://example.com/schemas/work-order.json"
    assert event.datacontenttype == "Application/JSON; charset=UTF-8"
    assert event.invoice_key == parse_event(dump(README_EVENT)).invoice_key


@pytest.mark.parametrize(
    ("extra", "message"),
    [
        (
            {"TraceParent": "x"},
            "field 'TraceParent': not a CloudEvents attribute name: lower-case ASCII letters and digits, at most 20",
        ),
        (
            {"a" * 21: "x"},
            f"field '{'a' * 21}': not a CloudEvents attribute name: lower-case ASCII letters and digits, at most 20",
        ),
        ({"seq": 2**31}, "field 'seq': integer 2147483648 is outside the 32-bit range"),
        ({"seq": 1.5}, "field 'seq': an extension attribute is a string, an integer or a boolean, not a JSON number"),
        (
            {"ctx": {"a": 1}},
            "field 'ctx': an extension attribute is a string, an integer or a boolean, not a JSON object",
        ),
        (
            {"datacontenttype": "text/plain"},
            "field 'datacontenttype': 'text/plain': expected application/json (parameters such as charset=utf-8 allowed)",
        ),
        (
            {"datacontenttype": "application/json; charset=latin-1"},
            "field 'datacontenttype': 'application/json; charset=latin-1': charset 'latin-1' is not UTF-8",
        ),
    ],
)
def test_bad_extension_attributes_and_media_types_are_refused_naming_them(extra, message):
    raw = dict(README_EVENT)
    raw.update(extra)
    assert refused(dump(raw)) == message


def test_at_most_32_extension_attributes():
    raw = dict(README_EVENT)
    raw.update({f"x{i}": i for i in range(33)})
    assert refused(dump(raw)) == "field '(root)': 33 extension attributes; at most 32"


def test_the_exported_json_schema_allows_extensions_and_refuses_bad_names():
    import jsonschema

    schema = json.loads((Path(__file__).parent.parent / "schemas" / "maintenance-event.schema.json").read_text())
    validator = jsonschema.Draft202012Validator(schema)
    good = dict(README_EVENT, traceparent="00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01", sequence=42)
    assert list(validator.iter_errors(good)) == []
    assert list(validator.iter_errors(dict(README_EVENT, TraceParent="x"))) != []
    assert list(validator.iter_errors(dict(README_EVENT, ctx={"a": 1}))) != []
