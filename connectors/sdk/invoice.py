"""The invoice the ``enrich`` stage produces and the ``deliver`` stage sends.

An :class:`Invoice` is billing-system neutral: connectors map it to their own payload. All
amounts are :class:`~decimal.Decimal` in ``currency``; ``net``, ``tax`` and ``total`` of each line
are already rounded half-up to the currency's minor unit (see :mod:`connectors.sdk.money`), and document
totals are sums of the rounded lines, so ``net_total + tax_total == total`` always holds.

On ``billing.invoices`` pricing publishes an invoice, a "not billable" record explaining why no
invoice was made, or a :class:`DocumentChange` (a work order reopened or cancelled, a quote
cancelled). Invoices and not-billable records carry ``allowance`` when the event consumed (or
re-used) part of a client contract's monthly corrective-hours allowance.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import date, datetime
from decimal import Decimal
from typing import Literal

from pydantic import AwareDatetime, BaseModel, ConfigDict, Field

LineKind = Literal["labour", "travel", "call_out", "part", "expense", "quote", "discount", "subscription"]


class InvoiceLine(BaseModel):
    """One invoice line.

    ``quantity`` is hours for labour/travel lines, units for parts; ``unit_price`` is per that unit,
    net of tax unless the tenant prices tax-inclusive (then see ``tax_inclusive`` on the invoice).
    ``tax_rate`` is a percentage (``Decimal("23")``). ``source`` names where the line came from
    (``time_entry:TE-1``) and ``rule`` the pricing rule applied (``rate:skill:hvac``).
    ``cost`` is our cost for the line (never sent to the billing system): for labour and travel the
    cost rate × ``worked_minutes`` (the tenant's ``cost_basis: worked``, default) or ×
    ``billed_minutes`` (``billed``).
    """

    model_config = ConfigDict(frozen=True)

    kind: LineKind
    description: str
    quantity: Decimal
    unit: str = "un"
    unit_price: Decimal
    discount_percent: Decimal = Decimal("0")
    net: Decimal
    tax_rate: Decimal
    tax: Decimal
    total: Decimal
    source: str
    rule: str
    cost: Decimal = Decimal("0")
    account_code: str | None = None
    tax_type: str | None = Field(default=None, description="Billing-system tax code, when the tenant maps one.")
    covered_by: str | None = Field(default=None, description="Contract id when the line is covered (zero-priced).")
    worked_minutes: Decimal | None = Field(
        default=None,
        description="Labour and travel lines: the time worked, in minutes (after unpaid breaks, before "
        "increments and minimums; 2 decimals).",
    )
    billed_minutes: int | None = Field(
        default=None, description="Labour and travel lines: the time billed, in minutes (increments, minimum)."
    )
    technician_id: str | None = Field(default=None, description="Labour and travel lines: the technician.")
    visit_id: str | None = Field(
        default=None,
        description="Labour, travel and call-out lines: the visit (the document id when it has one visit).",
    )


class AllowanceUse(BaseModel):
    """What one event did to a contract's monthly corrective-hours allowance (all in minutes).

    ``key`` is the allowance table key ``tenant:client:YYYY-MM`` (month in the tenant's zone);
    ``used_before_minutes`` is what other work orders had consumed this month when the event was
    priced; ``consumed_minutes`` is this invoice version's consumption (when the same invoice key
    had already been priced — a redelivery — its recorded consumption is re-used, so the record
    is identical).
    """

    model_config = ConfigDict(frozen=True)

    key: str
    contract_id: str
    month: str = Field(description="YYYY-MM in the tenant's time zone.")
    invoice_key: str
    allowance_minutes: int
    used_before_minutes: int
    needed_minutes: int = Field(description="Corrective labour minutes the event would bill without the allowance.")
    consumed_minutes: int

    @property
    def remaining_minutes(self) -> int:
        """Allowance left this month after this invoice (never below 0)."""
        return max(0, self.allowance_minutes - self.used_before_minutes - self.consumed_minutes)


class Invoice(BaseModel):
    """A priced invoice for one billable event (one invoice version per revision)."""

    model_config = ConfigDict(frozen=True)

    status: Literal["invoice"] = "invoice"
    invoice_key: str = Field(description="tenant:doc:id:rN; unique per invoice version.")
    invoice_number: str = Field(description="Our deterministic number sent to the billing system.")
    order_key: str = Field(description="tenant:doc:id; the Kafka key, same for all revisions.")
    tenant: str
    billing_system: str
    event_id: str
    event_type: str
    event_time: AwareDatetime
    document: Literal["wo", "sj", "qt", "per"]
    document_id: str
    revision: int
    client_id: str
    client_name: str
    contact_id: str | None = None
    site_id: str
    currency: str
    issue_date: date
    due_date: date
    reference: str = Field(description="Human reference shown on the invoice (work order / job / quote id).")
    tax_inclusive: bool = False
    lines: list[InvoiceLine]
    net_total: Decimal
    tax_total: Decimal
    total: Decimal
    cost_total: Decimal = Field(description="Our cost; never sent to the billing system.")
    margin: Decimal = Field(description="net_total - cost_total; never sent to the billing system.")
    notes: list[str] = Field(default_factory=list)
    legal_notes: list[str] = Field(
        default_factory=list, description="Legal text to print on the invoice (reverse charge, exemption)."
    )
    contract_id: str | None = Field(default=None, description="Client contract that applied, if any.")
    allowance: AllowanceUse | None = None
    asset_ids: list[str] = Field(default_factory=list, description="Assets the work was done on (from the event).")
    priced_at: datetime | None = None
    fingerprint: str | None = Field(
        default=None,
        description="sha256:<hex> of the billable content (client, currency, lines, taxes, totals, legal notes; "
        "no times or ids): a delivered invoice key arriving with another fingerprint is a correction "
        "(docs/delivery.md). None on records priced before fingerprints existed.",
    )
    corrects: str | None = Field(
        default=None,
        description="Set by the deliver stage on a correction it delivers: the invoice key it corrects "
        "(its own key is <that key>:c<n>, its number <that number>-C<n>).",
    )
    draft: bool = Field(
        default=False,
        description="Post it as a draft, for someone to finalise in the billing system (the client's or tenant's "
        "approval: draft). Only for systems whose connector declares Capabilities.drafts; not part of the "
        "fingerprint: the same content posted as a draft or final is the same invoice version.",
    )


class NotBillable(BaseModel):
    """Record emitted instead of an invoice.

    ``reason_code``: ``zero_total`` (nothing billable), ``covered_by_contract`` (everything was
    covered by ``contract_id``; ``lines`` lists the zero-priced covered lines) or
    ``billed_on_completion`` (an approved quote invoiced later with its work order).
    """

    model_config = ConfigDict(frozen=True)

    status: Literal["not_billable"] = "not_billable"
    invoice_key: str
    order_key: str
    tenant: str
    event_id: str
    event_type: str
    event_time: AwareDatetime
    client_id: str
    site_id: str | None = Field(default=None, description="The event's site (None on records from before this field).")
    reason: str
    reason_code: Literal["zero_total", "covered_by_contract", "billed_on_completion"] = "zero_total"
    contract_id: str | None = None
    lines: list[InvoiceLine] = Field(default_factory=list, description="Zero-priced (covered) lines, for traceability.")
    cost_total: Decimal = Decimal("0")
    allowance: AllowanceUse | None = None
    asset_ids: list[str] = Field(default_factory=list, description="Assets the work was done on (from the event).")


class DocumentChange(BaseModel):
    """A lifecycle change of a delivered (or still undelivered) document, on ``billing.invoices``.

    Published by pricing for ``maintenance.work_order.reopened`` (``action="reopen"``: the invoice is
    held as it is; revisions up to ``revision`` are not billed, a later one amends it) and
    ``maintenance.work_order.cancelled`` / ``maintenance.quote.cancelled`` (``action="cancel"``: the
    billed invoice is retired, revisions up to ``revision`` are never billed). Keyed and partitioned
    like the document's invoices (``order_key``), so the deliver stage sees it in the document's order.
    ``change_key`` (``tenant:doc:id:rN:reopen|cancel``) names its ledger entry and the idempotency
    keys of the calls it makes; ``issue_date`` (the event's local date) dates a credit note.
    """

    model_config = ConfigDict(frozen=True)

    status: Literal["change"] = "change"
    action: Literal["reopen", "cancel"]
    change_key: str = Field(description="tenant:doc:id:rN:reopen|cancel; unique per change.")
    order_key: str = Field(description="tenant:doc:id; the Kafka key, the same as the document's invoices.")
    tenant: str
    billing_system: str
    event_id: str
    event_type: str
    event_time: AwareDatetime
    document: Literal["wo", "sj", "qt"]
    document_id: str
    revision: int = Field(description="The revision reopened or cancelled (or the latest the platform knew).")
    client_id: str
    reason: str = Field(description="Printed as the void or credit note reason.")
    issue_date: date = Field(description="The event's date in the tenant's time zone (a credit note's date).")

    @property
    def invoice_key(self) -> str:
        """Its ledger key (``change_key``), for the code it shares with invoices (queues, retry topics)."""
        return self.change_key

    @property
    def subject_key(self) -> str:
        """The invoice version it concerns, ``tenant:doc:id:rN``: the key of its outcome on ``billing.deliveries``."""
        return f"{self.order_key}:r{self.revision}"


class DeliveryOutcome(BaseModel):
    """One record per delivery on ``billing.deliveries``.

    ``outcome``: ``created`` (new invoice in the billing system), ``already_delivered`` (ledger or
    billing system already had it: nothing created), ``not_billable``, ``dead_lettered``,
    ``superseded`` (a newer revision of the work order is already billed: nothing created),
    ``amended`` (a correction: the invoice version arrived again with other content and replaced
    the billed document), ``cancelled`` (the document was cancelled: its billed document retired, or
    this revision is not billed because the document is cancelled), ``held`` (the work order was
    reopened: its billed document stays as it is until a later revision completes; this revision
    is not billed), ``awaiting_approval`` (its client's approval is ``required``: held in the broker,
    nothing sent, until an operator approves it; ``docs/approval.md``), ``rejected`` (an operator
    rejected it while it awaited approval: never sent), ``parked`` (not delivered yet: the billing system is
    down, throttling or the tenant's circuit is open; ``error`` says why, ``next_attempt_at`` when it is tried
    again; published once per parking, not per retry), ``needs_reauth`` (parked because the tenant's OAuth
    connection must be re-authorised; ``docs/delivery.md`` §4). A later outcome (``created``,
    ``dead_lettered`` …) supersedes either. ``billed_total`` always states what the
    billing system holds for the document after the outcome (see its description).
    ``reconciled``: an earlier attempt's outcome was unknown and the invoice was found by lookup.
    ``amendment``: what happened to the previous revision (``credited``, ``deleted``, ``voided``,
    ``deducted`` — PayPal: the amount of the paid previous invoice deducted on the new one — or ``none``),
    ``replaced`` its invoice key and ``credit_note_number`` the credit note issued for it.
    """

    invoice_key: str
    event_id: str | None = None
    tenant: str
    billing_system: str | None
    outcome: Literal[
        "created",
        "already_delivered",
        "not_billable",
        "dead_lettered",
        "superseded",
        "amended",
        "cancelled",
        "held",
        "awaiting_approval",
        "rejected",
        "parked",
        "needs_reauth",
    ]
    external_id: str | None = None
    external_number: str | None = None
    total: Decimal | None = None
    currency: str | None = None
    attempts: int = 0
    error: str | None = None
    latency_seconds: float | None = Field(default=None, description="Event time to confirmed invoice, seconds.")
    reconciled: bool = False
    amendment: str | None = None
    replaced: str | None = None
    credit_note_number: str | None = None
    billed_total: Decimal | None = Field(
        default=None,
        description="What the billing system holds for the document after this outcome, net of credit notes: "
        "the total of the invoice it bills (external_number), 0 when it bills none (cancelled: deleted, voided "
        "or credited in full); None when not known (not_billable, records from before this field).",
    )
    next_attempt_at: AwareDatetime | None = Field(
        default=None,
        description="parked / needs_reauth: when the deliver stage tries it again (the retry topic's due time); "
        "an operator's retry request (billing.invoice.retry_requested) tries it sooner.",
    )
    at: AwareDatetime


@dataclass(frozen=True)
class ExternalInvoice:
    """An invoice as it exists in the billing system (``total`` as :class:`~decimal.Decimal`)."""

    external_id: str
    number: str
    total: Decimal | None = None
    status: str | None = None
    #: The broker's ownership marker read back from the document (``broker:<invoice key>``, see
    #: :mod:`connectors.sdk.lifecycle`); ``None`` when the document carries none (not ours).
    marker: str | None = None
    #: Amount paid so far (``None``: unknown); a document with payments is never voided or deleted.
    paid: Decimal | None = None
