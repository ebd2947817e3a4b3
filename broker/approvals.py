"""Approval decisions on ``billing.approvals`` (issue 12 item 4; ``docs/approval.md``).

An invoice of a client whose approval is ``required`` (:meth:`broker.config.Tenant.approval_of`) is held
by the deliver stage (ledger ``awaiting_approval``, outcome ``awaiting_approval``) until a decision
arrives on :data:`~broker.settings.TOPIC_APPROVALS`: a CloudEvent 1.0 in structured JSON mode,
:class:`ApprovalDecision`, of type ``billing.invoice.approved`` or ``billing.invoice.rejected``, with
``data`` ``{invoice_key, operator, reason}``. Its Kafka key is the document's order key
``tenant:doc:id``, the key of the document's records on ``billing.invoices``: with the same partition
count, the decision lands on the partition number of the invoice it decides, so the worker that owns
the invoice's ledger entry handles it.

The same topic carries ``billing.invoice.retry_requested``: an operator asks the deliver stage to try a
parked invoice version now instead of at its retry topic's due time (the console's "Retry now"). The
worker attempts it once if it is parked; for anything else it does nothing (``docs/delivery.md`` §4).

:func:`decision_event` builds a decision (:func:`retry_request_event` a retry request) and
:func:`publish_decision` sends one and waits for Kafka's acknowledgement (the operator console's approve,
reject and retry actions).
"""

from __future__ import annotations

import re
import uuid
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any, Final, Literal

from pydantic import AwareDatetime, BaseModel, ConfigDict, Field, model_validator

from broker.settings import TOPIC_APPROVALS

__all__ = [
    "APPROVED",
    "REJECTED",
    "RETRY_REQUESTED",
    "ApprovalData",
    "ApprovalDecision",
    "PublishedDecision",
    "decision_event",
    "order_key_of",
    "publish_decision",
    "retry_request_event",
]

#: The CloudEvent types of a decision.
APPROVED: Final = "billing.invoice.approved"
REJECTED: Final = "billing.invoice.rejected"
#: The CloudEvent type of an operator's request to try a parked invoice version now.
RETRY_REQUESTED: Final = "billing.invoice.retry_requested"
#: The types a record of ``billing.approvals`` may have.
DecisionType = Literal["billing.invoice.approved", "billing.invoice.rejected", "billing.invoice.retry_requested"]

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
    """A record of ``billing.approvals``: a CloudEvent whose ``type`` says approved or rejected, or (not a
    decision on approval) that an operator asks for a parked invoice version to be tried now."""

    model_config = ConfigDict(extra="allow")

    specversion: Literal["1.0"] = "1.0"
    id: str = Field(min_length=1, max_length=200)
    source: str = Field(min_length=1)
    type: DecisionType
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
        """True for an approval, False for a rejection (and a retry request)."""
        return self.type == APPROVED

    @property
    def retry_requested(self) -> bool:
        """True for a request to try a parked invoice version now."""
        return self.type == RETRY_REQUESTED

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
    return _event(APPROVED if approved else REJECTED, invoice_key, operator, reason, source=source, at=at)


def retry_request_event(invoice_key: str, operator: str, reason: str | None = None, **where: Any) -> ApprovalDecision:
    """A new request to try parked ``invoice_key`` now (type :data:`RETRY_REQUESTED`), with a fresh UUID id
    (``where``: ``source`` and ``at``, as for :func:`decision_event`)."""
    return _event(RETRY_REQUESTED, invoice_key, operator, reason, **where)


def _event(
    kind: DecisionType,
    invoice_key: str,
    operator: str,
    reason: str | None,
    *,
    source: str = "/broker/console",
    at: datetime | None = None,
) -> ApprovalDecision:
    return ApprovalDecision(
        id=str(uuid.uuid4()),
        source=source,
        type=kind,
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
