"""PayPal's payments: webhooks verified by PayPal's own API, then a read of the invoice.

Sources: ``shared/billing-apis.md`` § 9 ("Webhooks"), spec ``specs/paypal/notifications_webhooks_v1.json``
(``POST /v1/notifications/verify-webhook-signature``: ``auth_algo``, ``cert_url``, ``transmission_id``,
``transmission_sig``, ``transmission_time``, ``webhook_id``, ``webhook_event`` → ``verification_status``
``SUCCESS`` / ``FAILURE``), https://developer.paypal.com/api/rest/webhooks/rest and
https://developer.paypal.com/docs/invoicing/webhooks:

* PayPal signs asymmetrically (SHA256withRSA, certificate at ``PAYPAL-CERT-URL``). The broker does not
  fetch certificates: it asks PayPal, through the tenant's connector (its OAuth2 app token), with the
  five transmission headers, the **webhook id** (``billing.payments.webhook_secret_env`` names the
  variable holding it: it is what identifies our endpoint to PayPal) and the event as received. Only
  ``SUCCESS`` passes; ``FAILURE`` (or a missing header) is 401; PayPal not answering is 503, so PayPal
  delivers again (it retries a non-2xx up to 25 times over 3 days).
* ``PAYPAL-TRANSMISSION-TIME`` further than ``tolerance_seconds`` (300) from now is refused as stale
  before PayPal is asked. Assumption: each PayPal retry is a new transmission (new id, time and
  signature), so a retry is not stale.
* Events read: ``INVOICING.INVOICE.PAID`` ("an invoice is paid, partially paid, or payment is made and is
  pending"), ``INVOICING.INVOICE.CANCELLED``, ``INVOICING.INVOICE.UPDATED``,
  ``INVOICING.INVOICE.REFUNDED``. The event's ``resource`` is the invoice (``resource.id``, ``INV2-…``;
  older payloads nest it as ``resource.invoice``); it is a snapshot, so the invoice is read again
  (``GET /v2/invoicing/invoices/{id}``).
* Invoice fields (spec ``invoice``): ``status`` (``PAID`` / ``MARKED_AS_PAID`` → paid; ``PARTIALLY_PAID``;
  ``CANCELLED`` → voided), ``amount.value`` / ``amount.currency_code`` (total), ``due_amount.value``,
  ``payments.paid_amount.value``, ``detail.invoice_number``, ``detail.memo`` (our marker),
  ``detail.metadata.last_update_time``.
"""

from __future__ import annotations

import json
from decimal import Decimal
from typing import Any

from connectors.paypal.connector import PayPalConnector
from connectors.paypal.mapper import invoice_from_paypal
from connectors.sdk.invoice import ExternalInvoice
from connectors.sdk.money import amount_or_none
from connectors.sdk.payments import (
    InvoiceState,
    PaymentSource,
    Webhook,
    WebhookRefused,
    iso_time,
)

__all__ = ["INVOICE_EVENTS", "TRANSMISSION_HEADERS", "VERIFY_PATH", "PayPalPayments", "verification_request"]

#: PayPal's verification endpoint (spec ``verify-webhook-signature.post``).
VERIFY_PATH = "/v1/notifications/verify-webhook-signature"
#: Request field -> the webhook header it is read from (lower case).
TRANSMISSION_HEADERS = {
    "auth_algo": "paypal-auth-algo",
    "cert_url": "paypal-cert-url",
    "transmission_id": "paypal-transmission-id",
    "transmission_sig": "paypal-transmission-sig",
    "transmission_time": "paypal-transmission-time",
}
#: Event types whose invoice is read again (module docstring).
INVOICE_EVENTS = frozenset(
    {
        "INVOICING.INVOICE.PAID",
        "INVOICING.INVOICE.CANCELLED",
        "INVOICING.INVOICE.UPDATED",
        "INVOICING.INVOICE.REFUNDED",
    }
)


def verification_request(hook: Webhook, webhook_id: str, now: float, tolerance: float) -> dict[str, Any]:
    """The body of ``POST /v1/notifications/verify-webhook-signature`` for ``hook``: the five transmission
    headers, ``webhook_id`` and ``webhook_event`` (the body as JSON). Raises :class:`WebhookRefused`:
    ``bad_signature`` for a missing header or a body that is not a JSON object, ``stale`` for a
    ``PAYPAL-TRANSMISSION-TIME`` more than ``tolerance`` seconds from ``now`` (unix seconds)."""
    fields: dict[str, Any] = {}
    for field, header in TRANSMISSION_HEADERS.items():
        value = hook.headers.get(header, "").strip()
        if not value:
            raise WebhookRefused("bad_signature", f"header '{header.upper()}' is missing")
        fields[field] = value
    sent = iso_time(fields["transmission_time"])
    if sent is None:
        raise WebhookRefused("bad_signature", "header 'PAYPAL-TRANSMISSION-TIME': expected an RFC 3339 time")
    if abs(now - sent.timestamp()) > tolerance:
        raise WebhookRefused(
            "stale",
            f"header 'PAYPAL-TRANSMISSION-TIME' is {abs(now - sent.timestamp()):.0f} s from now; "
            f"the tolerance is {tolerance:.0f} s",
        )
    try:
        event = json.loads(hook.body, parse_float=Decimal)
    except ValueError:
        event = None
    if not isinstance(event, dict):
        raise WebhookRefused("bad_signature", "the body is not a JSON event: PayPal cannot verify it")
    return {**fields, "webhook_id": webhook_id, "webhook_event": event}


class PayPalPayments(PaymentSource):
    """PayPal payment source (module docstring); ``connector`` is a :class:`PayPalConnector`; ``secret`` is
    the webhook id PayPal gave the broker's endpoint (not a secret, but kept with the others)."""

    system = "paypal"
    webhooks = True
    connector: PayPalConnector

    def verify(self, hook: Webhook, now: float) -> None:
        """The local part of the check: every transmission header present, the time within the tolerance."""
        verification_request(hook, self.secret.decode(), now, self.tolerance)

    async def authenticate(self, hook: Webhook, now: float) -> None:
        """:meth:`verify`, then PayPal's ``verify-webhook-signature`` must answer ``SUCCESS``
        (:class:`WebhookRefused` otherwise; the connector's errors when PayPal could not answer)."""
        body = verification_request(hook, self.secret.decode(), now, self.tolerance)
        await self.paced()
        resp = await self.connector._call("POST", VERIFY_PATH, body, read_only=True)  # changes nothing
        self.connector._raise(resp, f"PayPal POST {VERIFY_PATH}", read=True)
        answer = self.connector.decode(resp)
        status = answer.get("verification_status") if isinstance(answer, dict) else None
        if status != "SUCCESS":
            raise WebhookRefused("bad_signature", f"PayPal's verify-webhook-signature answered {status!r}")

    def invoice_ids(self, payload: Any) -> list[str]:
        """The invoice of an event of :data:`INVOICE_EVENTS` (``[]`` for other events)."""
        if not isinstance(payload, dict) or not isinstance(payload.get("event_type"), str):
            raise ValueError("field 'event_type': expected a string")
        if payload["event_type"] not in INVOICE_EVENTS:
            return []
        resource = payload.get("resource")
        if isinstance(resource, dict) and isinstance(resource.get("invoice"), dict):
            resource = resource["invoice"]
        ident = resource.get("id") if isinstance(resource, dict) else None
        if not isinstance(ident, str) or not ident:
            raise ValueError("field 'resource.id': expected the invoice id")
        return [ident]

    async def fetch(self, external_id: str) -> InvoiceState | None:
        """``GET /v2/invoicing/invoices/{id}`` through the connector; ``None`` when absent."""
        invoice = await self.connector._current(ExternalInvoice(external_id=external_id, number=""))
        if invoice is None:
            return None
        found = invoice_from_paypal(invoice)
        amount: dict[str, Any] = invoice.get("amount") or {}
        total = found.total or Decimal("0")
        paid = (found.paid or Decimal("0")) + (total - total)  # no payment yet: 0 with the currency's decimals
        due = amount_or_none((invoice.get("due_amount") or {}).get("value"))
        if found.status in ("PAID", "MARKED_AS_PAID") and paid == 0:  # marked paid without a recorded payment
            paid, due = total, Decimal("0")
        detail: dict[str, Any] = invoice.get("detail") or {}
        return InvoiceState.read(
            (found.external_id, found.number or None, found.marker),
            str(amount.get("currency_code") or ""),
            total,
            paid,
            due,
            voided=found.status == "CANCELLED",
            changed_at=iso_time((detail.get("metadata") or {}).get("last_update_time")),
        )


#: The payment source the registry finds (:func:`connectors.registry.payment_source_class`).
PAYMENT_SOURCE = PayPalPayments
