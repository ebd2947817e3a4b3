"""CloudEvents protocol bindings (:mod:`broker.cloudevents`): binary and batched modes to structured."""

from __future__ import annotations

import json

import pytest

from broker.cloudevents import (
    http_binary_attributes,
    kafka_structured,
    media_type,
    split_batch,
    structured_from_binary,
)
from broker.events import MAX_EVENT_BYTES, EventDecodeError, parse_event
from broker.kafka import read_events_file
from tests.conftest import EXAMPLES

EVENT = json.loads(read_events_file(EXAMPLES / "events.ndjson")[0])


def _binary_parts(event: dict) -> tuple[dict[str, str], bytes]:
    attrs = {k: str(v) for k, v in event.items() if k not in ("data", "datacontenttype")}
    return attrs, json.dumps(event["data"]).encode()


def test_binary_mode_becomes_the_same_event_as_structured_mode():
    attrs, data = _binary_parts(EVENT)
    raw = structured_from_binary({**attrs, "traceparent": "00-ab-cd-01"}, "application/json; charset=utf-8", data)
    event = parse_event(raw)
    assert event == parse_event(
        json.dumps({**EVENT, "traceparent": "00-ab-cd-01", "datacontenttype": "application/json; charset=utf-8"})
    )
    assert event.model_extra == {"traceparent": "00-ab-cd-01"}
    assert json.loads(structured_from_binary(attrs, None, data))["datacontenttype"] == "application/json"


@pytest.mark.parametrize(
    ("attrs", "content_type", "data", "error_class", "message"),
    [
        ({}, "text/xml", b"{}", "invalid", "header 'content-type': 'text/xml': expected application/json"),
        ({"data": "x"}, None, b"{}", "invalid", "header 'ce-data': in binary mode the data is the body"),
        ({}, None, b"\xff{}", "not_json", "data is not JSON: not UTF-8 (invalid start byte at byte 0)"),
        ({}, None, b"{", "not_json", "data is not JSON: Expecting property name"),
        ({}, None, b" " * (MAX_EVENT_BYTES + 1), "too_large", f"data is {MAX_EVENT_BYTES + 1} bytes"),
    ],
)
def test_binary_mode_errors_name_the_header_or_the_data(attrs, content_type, data, error_class, message):
    with pytest.raises(EventDecodeError) as caught:
        structured_from_binary(attrs, content_type, data)
    assert caught.value.error_class == error_class
    assert str(caught.value).startswith(message)


def test_http_binary_attributes_are_percent_decoded_and_case_insensitive():
    headers = [
        ("Ce-Id", "wo-1"),
        ("ce-source", "/platforms/maintainx"),
        ("CE-SUBJECT", "work%20orders/caf%C3%A9"),
        ("Content-Type", "application/json"),
        ("x-other", "ignored"),
    ]
    assert http_binary_attributes(headers) == {
        "id": "wo-1",
        "source": "/platforms/maintainx",
        "subject": "work orders/café",
    }


@pytest.mark.parametrize(
    ("headers", "message"),
    [
        ([("ce-id", "a"), ("Ce-Id", "b")], "header 'Ce-Id' is given more than once"),
        ([("ce-id", "50%")], "header 'ce-id': '50%' has a '%' not followed by two hex digits"),
        ([("ce-id", "%ff")], "header 'ce-id': '%ff' is not UTF-8 once percent-decoded"),
    ],
)
def test_bad_http_binary_headers_are_refused_naming_them(headers, message):
    with pytest.raises(EventDecodeError, match=None) as caught:
        http_binary_attributes(headers)
    assert str(caught.value) == message


def test_kafka_records_in_structured_mode_pass_unchanged_and_binary_ones_are_built():
    raw = json.dumps(EVENT).encode()
    assert kafka_structured(None, raw) is raw
    assert kafka_structured([("origin.topic", b"x")], raw) is raw
    attrs, data = _binary_parts(EVENT)
    headers = [(f"ce_{k}", v.encode()) for k, v in attrs.items()] + [("content-type", b"application/json")]
    assert parse_event(kafka_structured(headers, data)) == parse_event(raw)
    assert parse_event(kafka_structured(dict(headers), data)) == parse_event(raw)
    with pytest.raises(EventDecodeError, match="header 'ce_source' is not UTF-8"):
        kafka_structured([*headers[:1], ("ce_specversion", b"1.0"), ("ce_source", b"\xff")], data)


def test_a_batch_is_split_into_structured_events():
    other = {**EVENT, "id": "other"}
    body = json.dumps([EVENT, other]).encode()
    assert [parse_event(raw).id for raw in split_batch(body)] == [EVENT["id"], "other"]
    assert split_batch(b"[]") == []
    with pytest.raises(EventDecodeError, match="a batch is a JSON array of CloudEvents"):
        split_batch(json.dumps(EVENT).encode())
    with pytest.raises(EventDecodeError, match="batch item 1: not a JSON object"):
        split_batch(b'[{"a": 1}, 2]')


def test_media_type():
    assert media_type("Application/CloudEvents+JSON; charset=utf-8") == "application/cloudevents+json"
    assert media_type(None) == ""
