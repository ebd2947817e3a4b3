"""The life of a delivered invoice: ownership proof, and what retiring a document did.

A delivered invoice can later be **replaced** (a new revision of its work order, or a correction)
or **cancelled** (the work order or quote was cancelled). Each connector implements one primitive,
:meth:`connectors.sdk.interface.Connector.retire`, following its billing system's own rules (the
table in ``docs/connectors.md``): delete or void a document that is still a draft or unpaid where
the system allows it, and issue a credit note where it does not or where money was already received
(a paid document is never deleted or voided). :meth:`~connectors.sdk.interface.Connector.amend` is
``retire`` then ``deliver``; :meth:`~connectors.sdk.interface.Connector.cancel` is ``retire``. Both
steps are idempotent, so a worker that dies between them completes the pair exactly once when the
same call is made again.

**Ownership.** A document found under our number counts as ours only when it carries our marker
(:func:`marker`, written at create time into a field the system keeps — reference, memo, metadata)
**and** our total. :func:`check_ours` raises :class:`~connectors.sdk.errors.NumberConflictError`
otherwise, naming both totals; the broker dead-letters the invoice as ``number_conflict`` and
records nothing as delivered.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from decimal import Decimal
from typing import Any, Literal

from connectors.sdk.errors import NumberConflictError
from connectors.sdk.invoice import ExternalInvoice, Invoice

__all__ = [
    "MARKER_PREFIX",
    "RetireAction",
    "Retirement",
    "check_ours",
    "credit_note_conflict",
    "credit_note_number",
    "marker",
    "read_marker",
]

#: Every ownership marker starts with this; the invoice key follows (``broker:acme:wo:WO-1:r2``).
MARKER_PREFIX = "broker:"

#: What :meth:`Connector.retire` did to the previous document:
#: ``deleted`` (a draft, removed), ``voided`` (an unpaid document, voided / cancelled in place),
#: ``credited`` (a credit note for its whole total was issued: finalised documents that cannot be
#: voided, and every document with a payment), ``none`` (already retired, or not in the system).
RetireAction = Literal["deleted", "voided", "credited", "none"]


def marker(invoice_key: str) -> str:
    """The ownership marker written on every document we create: ``broker:<invoice key>``.

    ``invoice_key`` is :attr:`Invoice.invoice_key` (``tenant:doc:id:rN``). Connectors write it where
    the system keeps free text with the document and returns it on reads (Xero ``Reference``, Stripe
    ``metadata``, QuickBooks ``PrivateNote``...), at the end of that text or on a line of its own;
    their ``find`` reads it back with :func:`read_marker`.
    """
    return f"{MARKER_PREFIX}{invoice_key}"


def read_marker(text: str | None) -> str | None:
    """The invoice key of the last marker in ``text``: what follows the last ``broker:`` up to the end
    of its line, stripped (``None`` when there is none). Invoice keys never contain line breaks."""
    if not text or MARKER_PREFIX not in text:
        return None
    key = text.rsplit(MARKER_PREFIX, 1)[1].split("\n", 1)[0].strip()
    return key or None


def credit_note_number(invoice_number: str) -> str:
    """Our number for the credit note that retires ``invoice_number``: ``<number>-CN``."""
    return f"{invoice_number}-CN"


def check_ours(invoice: Invoice, found: ExternalInvoice, *, what: str = "") -> None:
    """Raise :class:`NumberConflictError` unless ``found`` is ``invoice`` as we created it.

    Ours = ``found.marker`` equals ``invoice.invoice_key`` **and** ``found.total`` equals
    ``invoice.total`` to the cent (a missing total counts as different: we cannot prove it). The
    message names the number, both totals, the marker found and ``what`` (where it was found).
    """
    ours = found.marker == invoice.invoice_key
    same_total = found.total is not None and Decimal(found.total) == invoice.total
    if ours and same_total:
        return
    why = []
    if not ours:
        why.append(
            f"it does not carry our marker {marker(invoice.invoice_key)!r}"
            + (f" (it carries {marker(found.marker)!r})" if found.marker else "")
        )
    if not same_total:
        why.append(f"its total is {found.total if found.total is not None else 'unknown'}, ours {invoice.total}")
    where = f" ({what})" if what else ""
    raise NumberConflictError(
        f"number_conflict: {invoice.billing_system} already holds a document numbered {invoice.invoice_number} "
        f"(id {found.external_id}){where} that is not ours: {'; '.join(why)}. Total in the billing system: "
        f"{found.total if found.total is not None else 'unknown'} {invoice.currency}; ours: {invoice.total} "
        f"{invoice.currency}. Nothing was recorded as delivered: rename or remove that document, then replay",
        number=invoice.invoice_number,
        ours=invoice.total,
        theirs=None if found.total is None else Decimal(found.total),
        external_id=found.external_id,
    )


def credit_note_conflict(
    system: str,
    number: str,
    *,
    note_id: object,
    invoice: str,
    ours: Decimal,
    theirs: Decimal | None,
    why: str,
    remedy: str = "rename or remove that credit note",
) -> NumberConflictError:
    """The :class:`NumberConflictError` for a credit note found under our credit note ``number`` (see
    :func:`credit_note_number`) that is not the one retiring our invoice; the caller raises it.

    ``system``: the billing system's label (``"Xero"``); ``note_id``: the note's id in it (``None`` or
    ``""``: unknown); ``invoice``: the invoice it should retire, as the message names it (its number, or
    its document id where the system has no number for it); ``ours``: that invoice's total (what our note
    would credit), ``theirs``: the found note's total (``None``: the system did not say); ``why``: what
    shows it is not ours (another marker, another invoice credited...); ``remedy``: what the operator does
    before replaying. Nothing was retired or issued: the broker dead-letters the amendment or
    cancellation as ``number_conflict`` with both totals.
    """
    found = "unknown" if theirs is None else theirs
    return NumberConflictError(
        f"number_conflict: {system} already holds a credit note numbered {number} (id {note_id}) that is not ours: "
        f"{why}. Its total: {found}; invoice {invoice} totals {ours}. Invoice {invoice} was not retired and no "
        f"credit note was issued: {remedy}, then replay",
        number=number,
        ours=ours,
        theirs=theirs,
        external_id=None if note_id is None or note_id == "" else str(note_id),
    )


@dataclass(frozen=True)
class Retirement:
    """What :meth:`Connector.retire` did to a previously delivered document.

    ``action``: :data:`RetireAction`; ``previous_number`` / ``previous_status``: the document and the
    status it had before (``None`` when not found); ``paid``: amount paid on it when credited
    because of a payment (the operator is told: money may be owed back); ``credit_note_*``: the
    credit note issued (``action == "credited"``), its total positive. ``details``: anything else the
    connector wants on the outcome record.
    """

    action: RetireAction
    previous_number: str
    previous_status: str | None = None
    paid: Decimal | None = None
    credit_note_id: str | None = None
    credit_note_number: str | None = None
    credit_note_total: Decimal | None = None
    details: dict[str, Any] = field(default_factory=dict)

    def as_details(self) -> dict[str, Any]:
        """Flat ``DeliveryResult.details`` entries (``amendment``, ``previous_number``, ...), ``None`` left out."""
        values: dict[str, Any] = {
            "amendment": self.action,
            "previous_number": self.previous_number,
            "previous_status": self.previous_status,
            "previous_paid": None if self.paid is None else str(self.paid),
            "credit_note_id": self.credit_note_id,
            "credit_note_number": self.credit_note_number,
            "credit_note_total": None if self.credit_note_total is None else str(self.credit_note_total),
        }
        return {**{k: v for k, v in values.items() if v is not None}, **self.details}
