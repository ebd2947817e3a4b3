"""Zoho Invoice's payments: polled (no signed webhooks, ``shared/billing-apis.md`` § 4).

Zoho Invoice's webhooks are workflow actions with no documented signature scheme (only Zoho *Billing*
documents ``X-Zoho-Webhook-Signature``), so the broker does not take them: it polls. Every ``poll_seconds``
the source lists ``GET /invoice/v3/invoices?last_modified_time=<cursor>&sort_column=last_modified_time&
sort_order=A`` (200 a page, ``page_context.has_more_page``), through the tenant's connector (its OAuth2
tokens, organisation header, error taxonomy and its own pacer of 100 requests a minute, Zoho Books'
published limit, which the connector declares).

* Assumption: the ``last_modified_time`` filter (a list parameter Zoho's invoice API takes, format
  ``YYYY-MM-DDTHH:MM:SS+HHMM``) returns the invoices changed **at or after** that time. The Zoho Invoice
  page stating its exact semantics was not retrieved; should it match a day or an exact instant instead,
  polls would see fewer changes, never wrong ones (every state is read again before it is published).
* A row whose ``status`` is ``paid``, ``partially_paid`` or ``void`` and whose ``(last_modified_time,
  balance, status)`` this process has not read and recorded yet
  (:class:`~connectors.sdk.payments.ReadMemo`) is read with ``GET /invoices/{id}`` (list rows carry no
  ``notes``, where our marker is). Others cost no further call.
* Invoice fields: ``total``, ``payment_made`` (paid; credits applied are not payments), ``balance``
  (due), ``status`` (``void`` → voided), ``currency_code``, ``invoice_number``, ``notes`` (our marker, last
  line), ``last_modified_time``.
* The cursor is the latest ``last_modified_time`` seen (one-second resolution): asking "at or after" it
  again re-reads that second's rows, which the memory above and the recorder's deduplication absorb. At
  start it resumes from the latest record's ``time`` for the tenant (or from the beginning).
"""

from __future__ import annotations

from datetime import UTC, datetime
from decimal import Decimal

from connectors.sdk.errors import RetryableError
from connectors.sdk.invoice import ExternalInvoice
from connectors.sdk.lifecycle import read_marker
from connectors.sdk.money import amount_or_none
from connectors.sdk.payments import InvoiceState, PaymentSource, iso_time
from connectors.zoho.connector import ZohoConnector

__all__ = ["EPOCH_CURSOR", "SETTLED_STATUSES", "ZohoPayments", "zoho_time"]

#: The cursor of a first poll: every invoice.
EPOCH_CURSOR = "1970-01-01T00:00:00+0000"
#: Zoho statuses that mean money was received or the invoice was voided (``overdue``, ``sent``… do not).
SETTLED_STATUSES = frozenset({"paid", "partially_paid", "void"})
PAGE_SIZE = 200


def zoho_time(when: datetime) -> str:
    """``when`` as Zoho writes times: ``YYYY-MM-DDTHH:MM:SS+0000`` (in UTC)."""
    return when.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%S+0000")


class ZohoPayments(PaymentSource):
    """Zoho Invoice payment source (module docstring); ``connector`` is a :class:`ZohoConnector`."""

    system = "zoho"
    webhooks = False
    connector: ZohoConnector

    def resume_cursor(self, last_change: datetime | None) -> str | None:
        """``last_change`` as a ``last_modified_time`` value (:func:`zoho_time`); ``None`` stays ``None``."""
        return None if last_change is None else zoho_time(last_change)

    async def fetch(self, external_id: str) -> InvoiceState | None:
        """``GET /invoices/{id}`` through the connector; ``None`` when absent."""
        inv = await self.connector._current(ExternalInvoice(external_id=external_id, number=""))
        if inv is None:
            return None
        ids = (str(inv.get("invoice_id") or external_id), inv.get("invoice_number"), read_marker(inv.get("notes")))
        return InvoiceState.read(
            ids,
            str(inv.get("currency_code") or ""),
            amount_or_none(inv.get("total")) or Decimal("0"),
            amount_or_none(inv.get("payment_made")) or Decimal("0"),
            amount_or_none(inv.get("balance")),
            voided=inv.get("status") == "void",
            changed_at=iso_time(inv.get("last_modified_time")),
        )

    async def poll(self, cursor: str | None) -> tuple[list[InvoiceState], str | None]:
        """The paid, partially paid or voided invoices changed at or after ``cursor``; the next cursor."""
        since = cursor or EPOCH_CURSOR
        latest, states, page = iso_time(since), [], 1
        self.memo.start()
        while True:
            params = {
                "last_modified_time": since,
                "sort_column": "last_modified_time",
                "sort_order": "A",
                "page": str(page),
                "per_page": str(PAGE_SIZE),
            }
            body = await self.connector._get("/invoices", params)
            rows = body.get("invoices")
            if not isinstance(rows, list):
                raise RetryableError("Zoho GET /invoices: answer without an 'invoices' list")
            for row in rows:
                if not isinstance(row, dict) or not row.get("invoice_id"):
                    continue
                modified = iso_time(row.get("last_modified_time"))
                if modified is not None and (latest is None or modified > latest):
                    latest = modified
                ident, status = str(row["invoice_id"]), str(row.get("status") or "")
                seen = (str(row.get("last_modified_time")), str(row.get("balance")), status)
                if status not in SETTLED_STATUSES or not self.memo.fresh(ident, seen):
                    continue
                state = await self.fetch(ident)
                self.memo.note(ident, seen)
                if state is not None:
                    states.append(state)
            if not (body.get("page_context") or {}).get("has_more_page"):
                return states, since if latest is None else zoho_time(latest)
            page += 1


#: The payment source the registry finds (:func:`connectors.registry.payment_source_class`).
PAYMENT_SOURCE = ZohoPayments
