"""Moloni's payments: polled (Moloni has no webhooks, ``shared/billing-apis.md`` § 6 and § 10).

Every ``poll_seconds`` the source asks ``invoices/getModifiedSince`` (Moloni's per-family "modified
since" listing, https://moloni.pt/changelog/api/versao-1-26/novos-endpoints-para-faturas-recibo-saldos-migrados;
``lastmodified`` at or after the cursor, 50 rows a page) for the invoices changed since the last change it
saw, through the tenant's connector (its OAuth2 tokens, its error taxonomy). A receipt reconciled against
an invoice changes the invoice's ``lastmodified`` and ``reconciled_value``.

* A row that is not closed (``status`` 1), has nothing reconciled, or has not changed since this process
  last read it costs no further call. Any other is read with ``invoices/getOne`` (a ``getAll`` row carries
  no ``notes``, where our marker is) and its reconciliations split into receipts (paid) and credit notes
  (credited) as the connector does for ``find`` (``MoloniConnector._settlement``).
* ``net_value`` is the amount payable; ``amount_due`` = ``net_value`` − ``reconciled_value``; paid in
  full when nothing is due and receipts paid something. Amounts are in the company currency
  (``billing.settings.currency``, EUR by default).
* The cursor is the latest ``lastmodified`` seen (``YYYY-MM-DDTHH:MM:SS+0000``, one-second resolution):
  asking "at or after" it again re-reads that second's rows, which the recorder's deduplication absorbs.
  The pace of reads is the connector's ``rate_limit_per_minute`` setting (Moloni publishes no limit; the
  official plugin retries a 429 up to 5 times, 2 s apart).
"""

from __future__ import annotations

from datetime import UTC, datetime
from decimal import Decimal
from typing import Any

from connectors.moloni.connector import PAGE_SIZE, MoloniConnector
from connectors.sdk.errors import RetryableError
from connectors.sdk.lifecycle import read_marker
from connectors.sdk.money import amount_or_none
from connectors.sdk.payments import InvoiceState, PaymentSource, PaymentStatus

__all__ = ["EPOCH_CURSOR", "MoloniPayments"]

#: The cursor of a first poll: every invoice.
EPOCH_CURSOR = "1970-01-01T00:00:00+0000"


def _when(text: Any) -> datetime | None:
    try:
        return datetime.strptime(str(text), "%Y-%m-%dT%H:%M:%S%z")
    except ValueError:
        return None


class MoloniPayments(PaymentSource):
    """Moloni payment source (module docstring); ``connector`` is a :class:`MoloniConnector`."""

    system = "moloni"
    webhooks = False
    connector: MoloniConnector

    def __init__(self, connector: MoloniConnector, **kwargs: Any):
        super().__init__(connector, **kwargs)
        #: ``document_id`` -> ``(lastmodified, reconciled_value)`` of the rows read by this process
        self._seen: dict[int, tuple[str, Decimal]] = {}

    @property
    def requests_per_minute(self) -> int | None:
        """The tenant's ``rate_limit_per_minute`` setting (Moloni publishes none)."""
        return self.connector.settings.rate_limit_per_minute

    def resume_cursor(self, last_change: datetime | None) -> str | None:
        """``last_change`` as a ``lastmodified`` value (UTC, ``YYYY-MM-DDTHH:MM:SS+0000``); ``None`` stays ``None``."""
        return None if last_change is None else last_change.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%S+0000")

    async def fetch(self, external_id: str) -> InvoiceState | None:
        """``invoices/getOne`` and its reconciliations; ``None`` when absent or not closed."""
        doc = await self.connector._get_one(int(external_id))
        if doc is None or str(doc.get("status")) != "1":
            return None
        paid, _credited = await self.connector._settlement(doc)
        total = amount_or_none(doc.get("net_value")) or Decimal("0")
        due = total - (amount_or_none(doc.get("reconciled_value")) or Decimal("0"))
        status: PaymentStatus = "open"
        if paid > 0:
            status = "paid" if due <= 0 else "partially_paid"
        return InvoiceState(
            external_id=str(doc["document_id"]),
            invoice_number=doc.get("your_reference") or None,
            invoice_key=read_marker(str(doc.get("notes") or "")),
            currency=self.connector.settings.currency.upper(),
            total=total,
            amount_paid=paid,
            amount_due=max(due, Decimal("0")),
            status=status,
            changed_at=_when(doc.get("lastmodified")),
        )

    async def poll(self, cursor: str | None) -> tuple[list[InvoiceState], str | None]:
        """The closed invoices with something reconciled that changed at or after ``cursor``; the next cursor."""
        since = cursor or EPOCH_CURSOR
        latest, states, offset = since, [], 0
        while True:
            fields = self.connector._company(lastmodified=since, qty=PAGE_SIZE, offset=offset)
            page = await self.connector._api("invoices/getModifiedSince", fields, idempotent=True)
            if not isinstance(page, list):
                raise RetryableError(f"Moloni invoices/getModifiedSince: unexpected answer {type(page).__name__}")
            for row in page:
                if not isinstance(row, dict) or not row.get("document_id"):
                    continue
                modified = str(row.get("lastmodified") or since)
                latest = max(latest, modified)
                reconciled = amount_or_none(row.get("reconciled_value")) or Decimal("0")
                ident = int(row["document_id"])
                if str(row.get("status")) != "1" or reconciled <= 0 or self._seen.get(ident) == (modified, reconciled):
                    continue
                state = await self.fetch(str(ident))
                self._seen[ident] = (modified, reconciled)
                if state is not None:
                    states.append(state)
            if len(page) < PAGE_SIZE:
                return states, latest
            offset += PAGE_SIZE


#: The payment source the registry finds (:func:`connectors.registry.payment_source_class`).
PAYMENT_SOURCE = MoloniPayments
