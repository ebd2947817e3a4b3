"""The AsyncAPI 3 document of the topics (:mod:`broker.asyncapi`): complete, consistent with the code."""

from __future__ import annotations

import json
from datetime import UTC, datetime
from pathlib import Path

from broker.asyncapi import asyncapi_document
from broker.delivery import RecordMeta
from broker.dlq import bounded_copy, dlq_headers
from broker.settings import ALL_TOPICS, DeliverySettings

SCHEMAS = Path(__file__).parent.parent / "schemas"


def _resolve(doc: dict, ref: str) -> dict:
    node = doc
    for part in ref.removeprefix("#/").split("/"):
        node = node[part]
    return node


def test_every_topic_has_a_channel_and_every_reference_resolves():
    doc = asyncapi_document()
    assert doc["asyncapi"] == "3.0.0"
    addresses = {channel["address"] for channel in doc["channels"].values()}
    assert addresses == set(ALL_TOPICS) | set(DeliverySettings().retry_topics)
    for name, operation in doc["operations"].items():
        channel = _resolve(doc, operation["channel"]["$ref"])
        assert operation["action"] in ("send", "receive"), name
        for message in operation["messages"]:
            assert _resolve(doc, message["$ref"]) == channel["messages"][message["$ref"].rsplit("/", 1)[1]]
    for message in doc["components"]["messages"].values():
        schema = message["payload"]["schema"]
        for ref in [schema] if "$ref" in schema else schema.get("oneOf", []):
            assert (SCHEMAS / ref["$ref"].removeprefix("./")).is_file(), ref
        assert message["bindings"]["kafka"]["key"]["type"] == "string"


def test_the_documented_headers_are_the_ones_the_code_writes():
    doc = asyncapi_document()
    messages = doc["components"]["messages"]
    written = dlq_headers(
        topic="t",
        partition=0,
        offset=1,
        stage="deliver",
        error_class="invalid",
        exc=ValueError("x"),
        tenant="a",
        connector="xero",
        http_status=400,
        attempts=1,
        first_failure=datetime.now(UTC),
        idempotency_key="k",
    )
    _, _, truncation = bounded_copy(b"k" * 10**6, b"v" * 10**7)
    assert {name for name, _ in written + truncation} <= set(messages["DeadLetter"]["headers"]["properties"])
    meta = RecordMeta("billing.invoices", 0, 1, parks=1, first_failure=1.0, attempts=2, last_error="e")
    parked = {name for name, _ in meta.to_headers()} | {"retry.due", "retry.level", "retry.reason"}
    assert parked == set(messages["ParkedRecord"]["headers"]["properties"])


def test_the_exported_document_is_current():
    assert json.loads((SCHEMAS / "asyncapi.json").read_text()) == asyncapi_document()
