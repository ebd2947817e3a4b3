"""Approval decisions on ``billing.approvals`` (issue 12 item 4; ``docs/approval.md``).

An invoice of a client whose approval is ``required`` (:meth:`broker.config.Tenant.approval_of`) is held
by the deliver stage (ledger ``awaiting_approval``, outcome ``awaiting_approval``) until a decision
arrives on :data:`~broker.settings.TOPIC_APPROVALS`: a CloudEvent 1.0 in structured JSON mode,
:class:`ApprovalDecision`, of type ``billing.invoice.approved`` or ``billing.invoice.rejected``, with
``data`` ``{invoice_key, operator, reason}``. Its Kafka key is the document's order key
``tenant:doc:id``, the key of the document's records on ``billing.invoices``: with the same partition
count, the decision lands on the partition number of the invoice it decides, so the worker that owns
the invoice's ledger entry handles it.

:func:`decision_event` builds a decision and :func:`publish_decision` sends one and waits for Kafka's
acknowledgement (the operator console's approve and reject actions).
"""

from __future__ import annotations

import re
import uuid
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Literal

from pydantic import AwareDatetime, BaseModel, ConfigDict, Field, model_validator

from broker.settings import TOPIC_APPROVALS

__all__ = [
    "APPROVED",
    "REJECTED",
    "ApprovalData",
    "ApprovalDecision",
    "PublishedDecision",
    "decision_event",
    "order_key_of",
    "publish_decision",
]

#: The CloudEvent types of a decision.
APPROVED = "billing.invoice.approved"
REJECTED = "billing.invoice.rejected"

_VERSION_KEY = re.compile(r"^(?P<order>[^:]+:[^:]+:.+):r\d+$")


def order_key_of(invoice_key: str) -> str:
    """The order key ``tenant:doc:id`` of an invoice key ``tenant:doc:id:rN``; ``ValueError`` for another key."""
    match = _VERSION_KEY.match(invoice_key)
    if match is None:
        raise ValueError(f"{invoice_key!r} is not an invoice key tenant:doc:id:rN")
    return match.group("order")


class ApprovalData(BaseModel):
    """A decision's ``data``: the invoice version decided (``tenant:doc:id:rN``, as ``billing.deliveries``
    keys it), who decided and, optionally, why."""

    model_config = ConfigDict(extra="forbid")

    invoice_key: str = Field(pattern=r"^[^:]+:[^:]+:.+:r\d+$", max_length=400)
    operator: str = Field(min_length=1, max_length=200)
    reason: str | None = Field(default=None, max_length=500)


class ApprovalDecision(BaseModel):
    """A record of ``billing.approvals``: a CloudEvent whose ``type`` says approved or rejected."""

    model_config = ConfigDict(extra="allow")

    specversion: Literal["1.0"] = "1.0"
    id: str = Field(min_length=1, max_length=200)
    source: str = Field(min_length=1)
    type: Literal["billing.invoice.approved", "billing.invoice.rejected"]
    time: AwareDatetime
    tenant: str = Field(min_length=1)
    subject: str | None = None
    datacontenttype: str | None = "application/json"
    data: ApprovalData

    @model_validator(mode="after")
    def _tenant_of_the_invoice(self) -> ApprovalDecision:
        owner = self.data.invoice_key.split(":", 1)[0]
        if self.tenant != owner:
            raise ValueError(f"tenant {self.tenant!r} is not the tenant of {self.data.invoice_key!r} ({owner!r})")
        return self

    @property
    def approved(self) -> bool:
        """True for an approval, False for a rejection."""
        return self.type == APPROVED

    @property
    def invoice_key(self) -> str:
        """The invoice version decided."""
        return self.data.invoice_key

    @property
    def order_key(self) -> str:
        """Its document's key ``tenant:doc:id`` (the record's Kafka key)."""
        return order_key_of(self.data.invoice_key)


def decision_event(
    approved: bool,
    invoice_key: str,
    operator: str,
    reason: str | None = None,
    *,
    source: str = "/broker/console",
    at: datetime | None = None,
) -> ApprovalDecision:
    """A new decision on ``invoice_key`` (its tenant is the key's first part) with a fresh UUID id."""
    return ApprovalDecision(
        id=str(uuid.uuid4()),
        source=source,
        type=APPROVED if approved else REJECTED,
        time=at or datetime.now(UTC),
        tenant=invoice_key.split(":", 1)[0],
        subject=invoice_key,
        data=ApprovalData(invoice_key=invoice_key, operator=operator, reason=reason or None),
    )


@dataclass(frozen=True)
class PublishedDecision:
    """Where a decision went: its id and ``topic:partition:offset``."""

    id: str
    topic: str
    partition: int
    offset: int

    @property
    def where(self) -> str:
        """``topic:partition:offset``."""
        return f"{self.topic}:{self.partition}:{self.offset}"


def publish_decision(bootstrap: str, decision: ApprovalDecision) -> PublishedDecision:
    """Send ``decision`` to ``billing.approvals`` keyed by its order key, on the partition Kafka's default
    partitioner gives that key (the invoice's partition number), and wait for the acknowledgement
    (``acks=all``). Raises kafka-python's ``KafkaError`` when Kafka does not take it."""
    from kafka import KafkaProducer

    from broker.dlq import key_partition
    from broker.kafka_security import tool_options

    producer = KafkaProducer(bootstrap_servers=bootstrap, acks="all", retries=5, **tool_options())
    try:
        key = decision.order_key.encode()
        partitions = sorted(producer.partitions_for(TOPIC_APPROVALS) or [])
        partition = key_partition(key, len(partitions)) if partitions else None
        value = decision.model_dump_json(exclude_none=True).encode()
        meta = producer.send(TOPIC_APPROVALS, key=key, value=value, partition=partition).get(timeout=30)
        return PublishedDecision(decision.id, TOPIC_APPROVALS, int(meta.partition), int(meta.offset))
    finally:
        producer.close()
