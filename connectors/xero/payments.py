"""Xero's payments: signed ``INVOICE`` webhooks, then a read of the invoice.

Sources: ``shared/billing-apis.md`` § 2, spec ``specs/xero/xero-webhooks.yaml``,
https://developer.xero.com/documentation/guides/webhooks/overview/ and
https://developer.xero.com/documentation/webhooks/configuring-your-server:

* The body is ``{"events": [{"resourceUrl", "resourceId", "tenantId", "tenantType", "eventCategory",
  "eventType", "eventDateUtc"}], "firstEventSequence", "lastEventSequence", "entropy"}``. Xero has no
  "paid" event: a payment, a void, any edit is an ``INVOICE`` ``UPDATE``, and the event carries ids only,
  so every invoice named is read back (``GET /api.xro/2.0/Invoices/{InvoiceID}``) with the tenant's
  connector (its OAuth2 tokens, its ``xero-tenant-id`` header, its error taxonomy).
* ``x-xero-signature`` is Base64(HMAC-SHA256(webhook key, raw body)); a wrong one is answered 401, a
  right one 200 with an empty body within 5 s. Xero's "Intent to Receive" check sends event-less
  payloads signed rightly and wrongly and expects exactly that. There is no signed timestamp, so no
  staleness check: a replayed body only causes a read of the current state (deduplicated).
* A Xero app has one webhook key for every organisation it is connected to; events of organisations
  other than the tenant's ``xero_tenant_id`` are ignored.
* Invoice fields (spec schema ``Invoice``): ``Status`` (``AUTHORISED`` -> ``PAID``; ``VOIDED``),
  ``AmountPaid``, ``AmountDue``, ``Total``, ``CurrencyCode``, ``InvoiceNumber``, ``Reference`` (our
  marker), ``UpdatedDateUTC`` (``/Date(<ms>+0000)/``), ``Type`` (``ACCREC``: sales).
"""

from __future__ import annotations

import re
from datetime import UTC, datetime
from decimal import Decimal
from typing import Any, ClassVar

from connectors.sdk.invoice import ExternalInvoice
from connectors.sdk.lifecycle import read_marker
from connectors.sdk.money import amount_or_none
from connectors.sdk.payments import (
    InvoiceState,
    PaymentSource,
    PaymentStatus,
    Webhook,
    base64_hmac,
    require_signature,
)
from connectors.xero.connector import XeroConnector

__all__ = ["XeroPayments", "xero_signature"]

_MS_DATE = re.compile(r"/Date\((-?\d+)([+-]\d{4})?\)/")


def xero_signature(key: bytes, body: bytes) -> str:
    """``x-xero-signature`` of ``body``: Base64 of HMAC-SHA256(``key``, raw body)."""
    return base64_hmac(key, body)


def _ms_date(value: Any) -> datetime | None:
    """Xero's ``/Date(1552262400000+0000)/`` as an aware UTC datetime (``None``: absent or unreadable)."""
    found = _MS_DATE.fullmatch(str(value or ""))
    return datetime.fromtimestamp(int(found.group(1)) / 1000, tz=UTC) if found else None


class XeroPayments(PaymentSource):
    """Xero payment source (module docstring); ``connector`` is a :class:`XeroConnector`."""

    system = "xero"
    webhooks = True
    empty_ack: ClassVar[bool] = True
    connector: XeroConnector

    def verify(self, hook: Webhook, now: float) -> None:  # noqa: ARG002 - Xero signs no timestamp
        """``x-xero-signature`` must be Base64(HMAC-SHA256(webhook key, body)); :class:`WebhookRefused` otherwise."""
        require_signature(hook, "x-xero-signature", xero_signature(self.secret, hook.body))

    def invoice_ids(self, payload: Any) -> list[str]:
        """``resourceId`` of each ``INVOICE`` event of the tenant's organisation, in order, once each."""
        events = payload.get("events") if isinstance(payload, dict) else None
        if not isinstance(events, list):
            raise ValueError("field 'events': expected a list")
        organisation = self.connector.settings.xero_tenant_id.lower()
        ids: list[str] = []
        for index, event in enumerate(events):
            if not isinstance(event, dict) or not isinstance(event.get("resourceId"), str):
                raise ValueError(f"field 'events[{index}].resourceId': expected a string")
            if event.get("eventCategory") != "INVOICE" or str(event.get("tenantId", "")).lower() != organisation:
                continue
            if event["resourceId"] not in ids:
                ids.append(event["resourceId"])
        return ids

    async def fetch(self, external_id: str) -> InvoiceState | None:
        """``GET /api.xro/2.0/Invoices/{InvoiceID}`` through the connector; ``None`` when absent or not ``ACCREC``."""
        invoice = await self.connector._current(ExternalInvoice(external_id=external_id, number=""))
        if invoice is None or invoice.get("Type", "ACCREC") != "ACCREC":
            return None
        total = amount_or_none(invoice.get("Total")) or Decimal("0")
        paid = amount_or_none(invoice.get("AmountPaid")) or Decimal("0")
        due = amount_or_none(invoice.get("AmountDue"))
        xero_status = str(invoice.get("Status") or "").upper()
        status: PaymentStatus = "open"
        if xero_status == "VOIDED":
            status = "voided"
        elif xero_status == "PAID":
            status = "paid"
        elif xero_status == "AUTHORISED" and paid > 0:
            status = "partially_paid"
        return InvoiceState(
            external_id=str(invoice.get("InvoiceID") or external_id),
            invoice_number=invoice.get("InvoiceNumber"),
            invoice_key=read_marker(str(invoice.get("Reference") or "")),
            currency=str(invoice.get("CurrencyCode") or "").upper(),
            total=total,
            amount_paid=paid,
            amount_due=total - paid if due is None else due,
            status=status,
            changed_at=_ms_date(invoice.get("UpdatedDateUTC")),
        )


#: The payment source the registry finds (:func:`connectors.registry.payment_source_class`).
PAYMENT_SOURCE = XeroPayments
