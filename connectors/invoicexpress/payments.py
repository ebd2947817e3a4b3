"""InvoiceXpress's payments: polled (no webhooks located, ``shared/billing-apis.md`` § 7 and § 10).

Every ``poll_seconds`` the source lists the account's invoices that are **settled** (paid in full) or
**canceled** (annulled) — ``GET /invoices.json?status[]=settled&status[]=canceled&date[from]=<dd/mm/yyyy>``,
100 a page (``pagination.total_pages``) — through the tenant's connector (its API key, error taxonomy and
pacing; InvoiceXpress allows 100 requests a minute per account, which the connector declares).

* Assumptions (InvoiceXpress's list filters were not retrieved from an official page, § 10 "Gaps"):
  ``status[]`` takes the document states (``draft``, ``final``, ``settled``, ``canceled``, ``deleted``)
  and ``date[from]`` the earliest invoice **date** (``dd/mm/yyyy``, as documents carry dates). The API
  offers no "changed since" filter and documents no modification time, so the poll looks at invoices
  dated in the last :data:`LOOKBACK_DAYS` days (an invoice settled more than a year after its date is
  not seen) and the records carry the time they were read.
* A row whose ``status`` this process already read and recorded costs nothing
  (:class:`~connectors.sdk.payments.ReadMemo`); a new one is taken from the row (list rows are whole
  documents, ``observations`` included — else it is read with ``GET /invoices/{id}.json``).
* States: ``settled`` → paid (``amount_paid`` = ``total``, nothing due); ``canceled`` → voided.
  **Partial payments are not reported**: a partly paid invoice stays ``final`` and only its related
  documents (receipts, ``GET /invoices/{id}/related-documents.json``) show the payment, which would cost
  one call per open invoice per poll. Amounts are in the account currency (``billing.settings.currency``).
* The cursor is not used (``None``): every poll lists the window again; deduplication absorbs repeats.
"""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from decimal import Decimal
from typing import Any

import httpx

from connectors.invoicexpress.connector import InvoiceXpressConnector
from connectors.invoicexpress.mapper import invoice_from_invoicexpress
from connectors.sdk.errors import RetryableError
from connectors.sdk.payments import InvoiceState, PaymentSource

__all__ = ["LIST_STATUSES", "LOOKBACK_DAYS", "InvoiceXpressPayments"]

#: How far back (invoice date) a poll looks, in days.
LOOKBACK_DAYS = 365
#: The document states a poll lists: paid in full, annulled.
LIST_STATUSES = ("settled", "canceled")
PAGE_SIZE = 100


class InvoiceXpressPayments(PaymentSource):
    """InvoiceXpress payment source (module docstring); ``connector`` is an :class:`InvoiceXpressConnector`."""

    system = "invoicexpress"
    webhooks = False
    connector: InvoiceXpressConnector

    def state_of(self, doc: dict[str, Any]) -> InvoiceState | None:
        """The state of an invoice document (``None``: neither settled nor canceled)."""
        found = invoice_from_invoicexpress(doc)
        total = found.total or Decimal("0")
        if found.status not in LIST_STATUSES:
            return None
        nothing = total - total  # 0 with the total's decimals
        paid = total if found.status == "settled" else nothing
        ids = (found.external_id, found.number or None, found.marker)
        return InvoiceState.read(
            ids, self.connector.settings.currency, total, paid, nothing, voided=found.status == "canceled"
        )

    async def fetch(self, external_id: str) -> InvoiceState | None:
        """``GET /invoices/{id}.json`` through the connector; ``None`` when absent or neither settled nor canceled."""
        doc = await self.connector._get_or_none(int(external_id))
        return None if doc is None else self.state_of(doc)

    async def poll(self, cursor: str | None) -> tuple[list[InvoiceState], str | None]:
        """The settled or canceled invoices of the last :data:`LOOKBACK_DAYS` days not recorded yet; ``cursor``."""
        since = (datetime.now(UTC) - timedelta(days=LOOKBACK_DAYS)).strftime("%d/%m/%Y")
        what = "InvoiceXpress GET /invoices.json (settled, canceled)"
        self.memo.start()
        states: list[InvoiceState] = []
        page, pages = 1, 1
        while page <= pages:
            params: dict[str, str | list[str]] = {
                "status[]": list(LIST_STATUSES),
                "date[from]": since,
                "page": str(page),
                "per_page": str(PAGE_SIZE),
            }
            body = await self.connector._call("GET", "/invoices.json", what, params=httpx.QueryParams(params))
            docs = body.get("invoices") if isinstance(body, dict) else None
            if not isinstance(docs, list):
                raise RetryableError(f"{what}: answer without an 'invoices' list")
            for doc in docs:
                if not isinstance(doc, dict) or not doc.get("id"):
                    continue
                ident, status = str(doc["id"]), str(doc.get("status") or "")
                if not self.memo.fresh(ident, status):
                    continue
                state = self.state_of(doc) if "observations" in doc else await self.fetch(ident)
                self.memo.note(ident, status)
                if state is not None:
                    states.append(state)
            pagination = body.get("pagination") if isinstance(body.get("pagination"), dict) else {}
            pages = int(pagination.get("total_pages") or 1) if docs else 0
            page += 1
        return states, cursor


#: The payment source the registry finds (:func:`connectors.registry.payment_source_class`).
PAYMENT_SOURCE = InvoiceXpressPayments
