"""Parse once (issue 15 item 4): ``enrich`` forwards an event's validated form, ``price`` loads it
without validating again (``broker.events.validated_form`` / ``load_validated`` / ``parse_forwarded``).

The loaded event must be exactly what ``parse_event`` returns for the original bytes (every event of
the examples and of the lifecycle types); a record without the form is validated in full; a damaged
form is dead-lettered by the worker with the original event bytes.
"""

from __future__ import annotations

import json
import time
from typing import Any

import pytest
from pydantic import BaseModel, ValidationError

from broker.events import (
    VALIDATED_HEADER,
    EventDecodeError,
    load_validated,
    parse_event,
    parse_forwarded,
    validated_form,
)
from broker.kafka import ensure_topics, read_events_file
from broker.settings import ALL_TOPICS, TOPIC_EVENTS
from tests.conftest import EXAMPLES, write_config


def _change(kind: str, **data: Any) -> bytes:
    body = {"work_order_id": "1001", "revision": 2, "client_id": "CLI-HAL", **data}
    if kind == "maintenance.quote.cancelled":
        body["quote_id"] = body.pop("work_order_id")
    event = {
        "specversion": "1.0",
        "id": f"evt-{kind}",
        "source": "/platforms/test",
        "type": kind,
        "time": "2026-07-03T23:30:00.123456789+01:30",  # fraction cut to microseconds, offset kept
        "tenant": "acme-fm",
        "data": body,
    }
    return json.dumps(event).encode()


def _with_extensions(raw: bytes) -> bytes:
    event = json.loads(raw)
    event.update(traceparent="00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01", sequence=7, replayed=False)
    event.pop("datacontenttype", None)  # a default left unset
    return json.dumps(event).encode()


def _valid_examples() -> list[bytes]:
    out = []
    for raw in read_events_file(EXAMPLES / "events.ndjson"):
        try:
            parse_event(raw)
        except EventDecodeError:
            continue  # the demo's deliberately invalid event
        out.append(raw)
    return out


EXAMPLE_EVENTS = _valid_examples()
CASES = [
    *EXAMPLE_EVENTS,
    _with_extensions(EXAMPLE_EVENTS[0]),
    _change("maintenance.work_order.reopened"),
    _change("maintenance.work_order.cancelled", reason="Client cancelled"),
    _change("maintenance.quote.cancelled"),
]


def _fields_set(value: Any) -> Any:
    """The fields set of a model and of every model inside it, as a comparable tree."""
    if isinstance(value, BaseModel):
        return (
            type(value).__name__,
            sorted(value.model_fields_set),
            value.model_extra,
            {name: _fields_set(getattr(value, name)) for name in type(value).model_fields},
        )
    if isinstance(value, list):
        return [_fields_set(item) for item in value]
    return repr(value)  # Decimal('24.00') vs Decimal('24'), offsets of times: told apart


def test_every_event_type_is_covered():
    types = {json.loads(raw)["type"] for raw in CASES}
    assert types == {
        "maintenance.work_order.completed",
        "maintenance.scheduled_job.closed",
        "maintenance.quote.approved",
        "maintenance.work_order.reopened",
        "maintenance.work_order.cancelled",
        "maintenance.quote.cancelled",
    }


@pytest.mark.parametrize("raw", CASES, ids=lambda raw: json.loads(raw)["id"])
def test_the_validated_form_loads_to_exactly_the_parsed_event(raw):
    parsed = parse_event(raw)
    loaded = load_validated(validated_form(parsed))
    assert type(loaded) is type(parsed)
    assert loaded == parsed
    assert _fields_set(loaded) == _fields_set(parsed)
    assert loaded.model_dump_json() == parsed.model_dump_json()
    assert (loaded.partition_key, loaded.invoice_key) == (parsed.partition_key, parsed.invoice_key)
    assert parse_forwarded(raw, validated_form(parsed)) == parsed
    with pytest.raises(ValidationError):  # frozen, like a validated event
        loaded.id = "changed"  # type: ignore[misc]


def test_a_record_without_the_form_is_validated_in_full():
    raw = EXAMPLE_EVENTS[0]
    assert parse_forwarded(raw, None) == parse_event(raw)
    bad = json.loads(raw)
    bad["data"]["parts"][0]["quantity"] = "-2"
    with pytest.raises(EventDecodeError) as caught:
        parse_forwarded(json.dumps(bad).encode(), None)
    assert caught.value.error_class == "invalid" and "data.parts.0.quantity" in str(caught.value)


def test_a_form_written_with_other_event_models_is_ignored_and_the_event_parsed():
    """The form's tag digests the event models: another worker version's form is not trusted."""
    raw = EXAMPLE_EVENTS[0]
    _, _, text = validated_form(parse_event(raw)).partition(b":")
    foreign = b"1.0000000000000000:" + text
    assert parse_forwarded(raw, foreign) == parse_event(raw)
    with pytest.raises(EventDecodeError) as caught:  # the original bytes decide, validated in full
        parse_forwarded(b'{"specversion": "1.0", "type": "maintenance.work_order.completed"}', foreign)
    assert caught.value.error_class == "invalid"
    with pytest.raises(EventDecodeError) as caught:
        load_validated(foreign)
    assert caught.value.error_class == "internal"


def _damaged_forms() -> list[bytes]:
    form = validated_form(parse_event(EXAMPLE_EVENTS[0]))
    tag, _, text = form.partition(b":")
    event = json.loads(text)
    unknown_type = {**event, "type": "maintenance.x.y"}
    no_type = {key: value for key, value in event.items() if key != "type"}
    extra_data_field = {**event, "data": {**event["data"], "colour": "red"}}
    bad_time = {**event, "time": "yesterday"}
    bad_money = {**event, "data": {**event["data"], "parts": [{**event["data"]["parts"][0], "unit_cost": "nine"}]}}
    data_not_object = {**event, "data": "oops"}
    return [
        tag + b":" + text[: len(text) // 2],  # cut short
        tag + b":",
        tag + b":[]",
        *(tag + b":" + json.dumps(obj).encode() for obj in (unknown_type, no_type, extra_data_field, bad_time)),
        *(tag + b":" + json.dumps(obj).encode() for obj in (bad_money, data_not_object)),
    ]


@pytest.mark.parametrize("form", _damaged_forms())
def test_a_damaged_form_is_an_internal_error(form):
    with pytest.raises(EventDecodeError) as caught:
        parse_forwarded(EXAMPLE_EVENTS[0], form)  # the original bytes are fine: the form is not trusted
    assert caught.value.error_class == "internal" and "validated form" in str(caught.value)


# =========================================================================== on a real worker
@pytest.mark.integration
def test_the_price_stage_loads_forms_parses_unmarked_records_and_dead_letters_damaged_ones(
    kafka, xero, tmp_path, worker_factory
):
    """Records written straight to the by-client topic: one with a damaged form is dead-lettered with
    its original event bytes (``internal``); one without a form (a record from before the upgrade) is
    priced and delivered; an invalid one without a form is dead-lettered as ``invalid``."""
    from kafka import KafkaProducer

    from broker.demo import Tally

    by_client = "broker-test-events-by-client"
    ensure_topics(kafka, 4, [*ALL_TOPICS, by_client])
    worker = worker_factory(write_config(tmp_path, xero.url), kafka)
    by_id = {json.loads(raw)["id"]: raw for raw in EXAMPLE_EVENTS}
    damaged_raw, unmarked_raw = by_id["maintainx:wo:1001:r1"], by_id["maintainx:wo:1007:r1"]
    invalid = json.loads(by_id["maintainx:wo:1103:r1"])
    invalid["data"]["parts"][0]["quantity"] = "-2"
    invalid_raw = json.dumps(invalid).encode()
    damaged_form = validated_form(parse_event(damaged_raw))[:-40]

    def origin(offset: int, key: bytes) -> list[tuple[str, bytes]]:
        return [
            ("origin.topic", TOPIC_EVENTS.encode()),
            ("origin.partition", b"2"),
            ("origin.offset", str(offset).encode()),
            ("origin.key", key),
        ]

    producer = KafkaProducer(bootstrap_servers=kafka, acks="all", linger_ms=0, batch_size=0)
    try:
        for raw, headers in (
            (damaged_raw, [*origin(11, b"acme-fm:wo:1001"), (VALIDATED_HEADER, damaged_form)]),
            (unmarked_raw, origin(12, b"acme-fm:wo:1007")),
            (invalid_raw, origin(13, b"acme-fm:wo:1103")),
        ):
            client = json.loads(raw)["data"]["client_id"]
            producer.send(by_client, key=f"acme-fm:{client}".encode(), value=raw, headers=headers).get(timeout=30)
    finally:
        producer.close()
    tally = Tally(kafka)
    try:
        deadline = time.monotonic() + 90
        while len(tally.dead) < 2 or not tally.outcomes:
            assert time.monotonic() < deadline, (
                f"dead {len(tally.dead)}, outcomes {tally.outcomes}:\n{worker.log()[-4000:]}"
            )
            assert worker.proc.poll() is None, worker.log()[-4000:]
            tally.poll()
        assert [(o["invoice_key"], o["outcome"]) for o in tally.outcomes] == [("acme-fm:wo:1007:r1", "created")]
        dead = {r["headers"]["dlq.offset"]: r for r in tally.dead}
        assert sorted(dead) == ["11", "13"]
        assert dead["11"]["value"] == damaged_raw  # the original event bytes, not the form
        assert (dead["11"]["headers"]["dlq.error.class"], dead["11"]["headers"]["dlq.stage"]) == ("internal", "enrich")
        assert (dead["11"]["headers"]["dlq.topic"], dead["11"]["key"]) == (TOPIC_EVENTS, b"acme-fm:wo:1001")
        assert dead["13"]["value"] == invalid_raw
        assert dead["13"]["headers"]["dlq.error.class"] == "invalid"
    finally:
        tally.close()


@pytest.mark.integration
def test_a_large_event_is_forwarded_without_its_form_and_priced_from_its_bytes(kafka, xero, tmp_path, worker_factory):
    """An event over ``FORM_MAX_EVENT_BYTES`` (here 480 one-minute time entries, ~72 KiB) goes to the
    by-client topic without the form (value and form together would approach Kafka's 1 MiB); ``price``
    parses it and it is delivered. A small event on the same run carries its form."""
    from datetime import UTC, datetime, timedelta

    from broker.app import FORM_MAX_EVENT_BYTES
    from broker.demo import Tally
    from broker.kafka import publish
    from tests.delivery_support import topic_records

    ensure_topics(kafka, 4, ALL_TOPICS)
    worker = worker_factory(write_config(tmp_path, xero.url), kafka)
    small = next(raw for raw in EXAMPLE_EVENTS if json.loads(raw)["id"] == "maintainx:wo:1007:r1")
    large = json.loads(small)
    large["id"] = "maintainx:wo:1990:r1"
    large["data"]["work_order_id"] = "1990"
    start = datetime(2026, 3, 16, 8, 0, tzinfo=UTC)
    large["data"]["time_entries"] = [
        {
            "id": f"TE-1990-{i:04d}-{'x' * 30}",
            "technician_id": "T33",
            "start": (start + timedelta(minutes=i)).isoformat(),
            "end": (start + timedelta(minutes=i + 1)).isoformat(),
        }
        for i in range(480)
    ]
    large_raw = json.dumps(large).encode()
    assert len(large_raw) > FORM_MAX_EVENT_BYTES > len(small)
    publish(kafka, TOPIC_EVENTS, [small, large_raw])
    tally = Tally(kafka)
    try:
        deadline = time.monotonic() + 90
        while len(tally.outcomes) < 2:
            assert time.monotonic() < deadline, f"{tally.outcomes}:\n{worker.log()[-4000:]}"
            assert worker.proc.poll() is None, worker.log()[-4000:]
            tally.poll()
        assert sorted((o["invoice_key"], o["outcome"]) for o in tally.outcomes) == [
            ("acme-fm:wo:1007:r1", "created"),
            ("acme-fm:wo:1990:r1", "created"),
        ]
    finally:
        tally.close()
    forwarded = {
        json.loads(r.value)["id"]: {k for k, _ in r.headers}
        for r in topic_records(kafka, "broker-test-events-by-client")
    }
    assert VALIDATED_HEADER in forwarded["maintainx:wo:1007:r1"]
    assert VALIDATED_HEADER not in forwarded["maintainx:wo:1990:r1"]
