"""The AsyncAPI 3.0 document of the broker's topics (``schemas/asyncapi.json``, written by
``broker schemas export``): each topic's key, headers and payload, the payloads referring to the
JSON Schemas beside it in ``schemas/``.

Source: AsyncAPI 3.0.0 specification (https://www.asyncapi.com/docs/reference/specification/v3.0.0):
``channels`` (``address`` = topic), ``operations`` (``send`` / ``receive``), ``components.messages``
with a multi-format ``payload`` (``schemaFormat`` ``application/schema+json;version=draft-2020-12``)
and the Kafka message binding's ``key``.
"""

from __future__ import annotations

from typing import Any

from broker.settings import (
    TOPIC_APPROVALS,
    TOPIC_DELIVERIES,
    TOPIC_DLQ,
    TOPIC_EVENTS,
    TOPIC_INVOICES,
    DeliverySettings,
)

__all__ = ["asyncapi_document"]

_SCHEMA_FORMAT = "application/schema+json;version=draft-2020-12"


def _payload(*files: str) -> dict[str, Any]:
    refs = [{"$ref": f"./{name}.schema.json"} for name in files]
    return {"schemaFormat": _SCHEMA_FORMAT, "schema": refs[0] if len(refs) == 1 else {"oneOf": refs}}


def _headers(fields: dict[str, str], required: list[str] | None = None) -> dict[str, Any]:
    schema: dict[str, Any] = {
        "type": "object",
        "properties": {name: {"type": "string", "description": text} for name, text in fields.items()},
    }
    if required:
        schema["required"] = required
    return schema


def _key(text: str) -> dict[str, Any]:
    return {"kafka": {"key": {"type": "string", "description": text}, "bindingVersion": "0.5.0"}}


_DLQ_HEADERS = {
    "dlq.topic": "topic the record was consumed from",
    "dlq.partition": "its partition",
    "dlq.offset": "its offset",
    "dlq.stage": "decode, enrich, price or deliver",
    "dlq.error.class": "the failure's class (invalid, not_json, unknown_tenant, auth, number_conflict, ...)",
    "dlq.exception.type": "the exception's type",
    "dlq.message": "the reason, naming the field and the value (secrets redacted)",
    "dlq.tenant": "the tenant, when known",
    "dlq.connector": "the billing system, when known",
    "dlq.http.status": "the billing system's HTTP status, when there was one",
    "dlq.attempts": "calls made",
    "dlq.first.failure": "ISO 8601 time of the first failure",
    "dlq.idempotency.key": "the idempotency key the connector used",
    "dlq.replay.count": "times the record was replayed by broker dlq replay",
    "dlq.key.truncated": "true when the key was cut to the topic's limit",
    "dlq.value.truncated": "true when the value was cut to the topic's limit",
    "dlq.key.size": "the original key's size in bytes (when cut)",
    "dlq.key.sha256": "the original key's SHA-256 (when cut)",
    "dlq.value.size": "the original value's size in bytes (when cut)",
    "dlq.value.sha256": "the original value's SHA-256 (when cut)",
}
_RETRY_HEADERS = {
    "retry.due": "unix time (seconds) when the record is due again",
    "retry.level": "the retry topic's level (1..N)",
    "retry.reason": "why it was parked (unavailable, rate_limited, needs_reauth, behind_revision, ...)",
    "retry.origin": "topic:partition:offset of the record on billing.invoices",
    "retry.parks": "times it was parked",
    "retry.attempts": "calls made so far",
    "retry.first.failure": "unix time of the first failure",
    "retry.last.error": "the last error",
    "dlq.replay.count": "carried from a replayed record",
}


def asyncapi_document(retry_topics: tuple[str, ...] | None = None) -> dict[str, Any]:
    """The AsyncAPI 3.0 document (a JSON object). ``retry_topics``: the retry topics' names
    (default: those of the default park delays, :class:`broker.settings.DeliverySettings`)."""
    retries = retry_topics if retry_topics is not None else DeliverySettings().retry_topics
    messages: dict[str, Any] = {
        "MaintenanceEvent": {
            "name": "MaintenanceEvent",
            "title": "A maintenance platform's event (CloudEvents 1.0)",
            "summary": "Structured mode; binary mode carries the attributes in ce_* headers and data as the value.",
            "contentType": "application/cloudevents+json",
            "payload": _payload("maintenance-event"),
            "bindings": _key("tenant:doc:id (doc: wo, sj or qt): one document's events stay in order"),
        },
        "PricedRecord": {
            "name": "PricedRecord",
            "title": "What pricing made of an event: an invoice, a not-billable notice or a document change",
            "contentType": "application/json",
            "payload": _payload("invoice", "not-billable", "document-change"),
            "bindings": _key("tenant:doc:id"),
        },
        "ParkedRecord": {
            "name": "ParkedRecord",
            "title": "A priced record waiting for its billing system",
            "contentType": "application/json",
            "headers": _headers(_RETRY_HEADERS, ["retry.due", "retry.level", "retry.reason"]),
            "payload": _payload("invoice", "document-change"),
            "bindings": _key("the work order's order key tenant:doc:id"),
        },
        "DeliveryOutcome": {
            "name": "DeliveryOutcome",
            "title": "What happened to an invoice version (created, already_delivered, amended, dead_lettered, ...)",
            "contentType": "application/json",
            "payload": _payload("delivery-outcome"),
            "bindings": _key("the invoice key tenant:doc:id:rN"),
        },
        "ApprovalDecision": {
            "name": "ApprovalDecision",
            "title": "An operator's decision on an invoice awaiting approval (CloudEvents 1.0, structured mode)",
            "summary": "billing.invoice.approved or billing.invoice.rejected; data: invoice_key, operator, reason.",
            "contentType": "application/cloudevents+json",
            "payload": _payload("approval-decision"),
            "bindings": _key("the document's order key tenant:doc:id, as on billing.invoices (same partitions)"),
        },
        "DeadLetter": {
            "name": "DeadLetter",
            "title": "A record no stage could handle: the original key and value, the failure in headers",
            "headers": _headers(
                _DLQ_HEADERS, ["dlq.topic", "dlq.partition", "dlq.offset", "dlq.stage", "dlq.error.class"]
            ),
            "payload": {"schemaFormat": _SCHEMA_FORMAT, "schema": {"description": "the original value, unchanged"}},
            "bindings": _key("the original key"),
        },
    }
    topics = [
        ("maintenanceEvents", TOPIC_EVENTS, "MaintenanceEvent", "Events from the maintenance platforms."),
        ("billingInvoices", TOPIC_INVOICES, "PricedRecord", "Priced invoices and document changes, to deliver."),
        ("billingDeliveries", TOPIC_DELIVERIES, "DeliveryOutcome", "One outcome per invoice version."),
        ("billingDlq", TOPIC_DLQ, "DeadLetter", "Dead letters of every stage."),
        ("billingApprovals", TOPIC_APPROVALS, "ApprovalDecision", "Decisions on invoices awaiting approval."),
    ]
    topics += [
        (f"billingInvoicesRetry{i}", name, "ParkedRecord", f"Parked invoices, level {i}.")
        for i, name in enumerate(retries, start=1)
    ]
    channels = {
        channel: {
            "address": address,
            "description": text,
            "messages": {message: {"$ref": f"#/components/messages/{message}"}},
        }
        for channel, address, message, text in topics
    }
    # what the broker's worker does on each topic (the platforms send to maintenance.events)
    actions = {
        "maintenanceEvents": "receive",
        "billingInvoices": "send",
        "billingDeliveries": "send",
        "billingDlq": "send",
        "billingApprovals": "receive",
    }
    operations: dict[str, Any] = {}
    for channel, _, message, _ in topics:
        action = actions.get(channel, "send")
        operations[f"{action}{channel[0].upper()}{channel[1:]}"] = {
            "action": action,
            "channel": {"$ref": f"#/channels/{channel}"},
            "messages": [{"$ref": f"#/channels/{channel}/messages/{message}"}],
        }
    return {
        "asyncapi": "3.0.0",
        "info": {
            "title": "maintenance-billing-broker topics",
            "version": "1.0.0",
            "description": "Kafka topics of the broker: maintenance events in, invoices priced and delivered, "
            "outcomes and dead letters out (README, docs/delivery.md).",
        },
        "defaultContentType": "application/json",
        "servers": {"kafka": {"host": "localhost:9092", "protocol": "kafka", "description": "KAFKA_BOOTSTRAP_SERVERS"}},
        "channels": channels,
        "operations": operations,
        "components": {"messages": messages},
    }
