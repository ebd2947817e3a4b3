"""Stripe's payments: signed Events, then a read of the invoice.

Sources: ``shared/billing-apis.md`` § 8; https://docs.stripe.com/webhooks (signatures), the official
SDKs' verification (stripe-node ``Webhooks.ts``, stripe-go ``webhook.DefaultTolerance`` = 300 s),
https://docs.stripe.com/invoicing/integration/workflow-transitions (invoice events) and
https://docs.stripe.com/changelog/basil/2025-05-28/partial-payments (``invoice_payment.paid``):

* ``Stripe-Signature: t=<unix seconds>,v1=<hex>[,v1=<hex>…]``; ``v1`` = HMAC-SHA256(endpoint secret,
  ``"<t>." + raw body``) in hex. One matching ``v1`` suffices (several appear while a secret is rolled);
  ``t`` further than the tolerance (300 s) from now is refused as a replay (``stale``).
* Events (``{"id": "evt_…", "type", "created", "data": {"object": …}}``) that can change what is paid:
  ``invoice.paid``, ``invoice.payment_succeeded``, ``invoice.voided``, ``invoice.marked_uncollectible``,
  ``invoice.updated`` (``data.object`` is the invoice) and ``invoice_payment.paid`` (``data.object`` is an
  Invoice Payment naming its ``invoice``). Stripe does not promise order, and the object in an event is a
  snapshot, so the invoice is read again (``GET /v1/invoices/{id}``, the tenant's connector).
* Invoice fields: ``status`` (``open``, ``paid``, ``void``, ``uncollectible``, ``draft``), ``amount_paid``,
  ``amount_remaining``, ``total`` in minor units of ``currency`` (lower case), ``number`` (Stripe's),
  ``metadata[broker_invoice_key]`` (our marker), ``metadata[broker_invoice_number]`` (our number),
  ``status_transitions.paid_at`` / ``voided_at``.
"""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

from connectors.sdk.invoice import ExternalInvoice
from connectors.sdk.payments import (
    InvoiceState,
    PaymentSource,
    PaymentStatus,
    Webhook,
    WebhookRefused,
    hmac_sha256,
    same_signature,
)
from connectors.stripe.connector import StripeConnector
from connectors.stripe.mapper import from_minor

__all__ = ["INVOICE_EVENTS", "StripePayments", "stripe_signature"]

#: Event types whose invoice is read again (module docstring).
INVOICE_EVENTS = frozenset(
    {
        "invoice.paid",
        "invoice.payment_succeeded",
        "invoice.voided",
        "invoice.marked_uncollectible",
        "invoice.updated",
        "invoice_payment.paid",
    }
)


def stripe_signature(secret: bytes, timestamp: int, body: bytes) -> str:
    """The ``v1`` signature of ``body`` sent at ``timestamp``: hex HMAC-SHA256(``secret``, ``"<t>." + body``)."""
    return hmac_sha256(secret, f"{timestamp}.".encode() + body).hex()


def _when(value: Any) -> datetime | None:
    return datetime.fromtimestamp(int(value), tz=UTC) if isinstance(value, int) and value > 0 else None


class StripePayments(PaymentSource):
    """Stripe payment source (module docstring); ``connector`` is a :class:`StripeConnector`."""

    system = "stripe"
    webhooks = True
    connector: StripeConnector

    def verify(self, hook: Webhook, now: float) -> None:
        """A ``v1`` of ``Stripe-Signature`` must match and ``t`` be within the tolerance of ``now``."""
        header = hook.headers.get("stripe-signature")
        if not header:
            raise WebhookRefused("bad_signature", "header 'Stripe-Signature' is missing")
        pairs = [item.strip().partition("=") for item in header.split(",")]
        stamps = [value for name, _, value in pairs if name == "t"]
        given = [value for name, _, value in pairs if name == "v1"]
        if len(stamps) != 1 or not stamps[0].isdigit() or not given:
            raise WebhookRefused("bad_signature", "header 'Stripe-Signature': expected 't=<unix seconds>,v1=<hex>'")
        timestamp = int(stamps[0])
        expected = stripe_signature(self.secret, timestamp, hook.body)
        if not any(same_signature(expected, candidate) for candidate in given):
            raise WebhookRefused("bad_signature", "header 'Stripe-Signature': no v1 signature matches the body")
        if abs(now - timestamp) > self.tolerance:
            raise WebhookRefused(
                "stale",
                f"header 'Stripe-Signature': t={timestamp} is {abs(now - timestamp):.0f} s from now; "
                f"the tolerance is {self.tolerance:.0f} s",
            )

    def invoice_ids(self, payload: Any) -> list[str]:
        """The invoice of an event of :data:`INVOICE_EVENTS` (``[]`` for other events)."""
        if not isinstance(payload, dict) or not isinstance(payload.get("type"), str):
            raise ValueError("field 'type': expected a string")
        if payload["type"] not in INVOICE_EVENTS:
            return []
        obj = (payload.get("data") or {}).get("object") if isinstance(payload.get("data"), dict) else None
        if not isinstance(obj, dict):
            raise ValueError("field 'data.object': expected an object")
        ident = obj.get("invoice") if obj.get("object") == "invoice_payment" else obj.get("id")
        if isinstance(ident, dict):  # an expanded invoice
            ident = ident.get("id")
        if not isinstance(ident, str) or not ident.startswith("in_"):
            raise ValueError(f"field 'data.object': no invoice id (got {str(ident)[:40]!r})")
        return [ident]

    async def fetch(self, external_id: str) -> InvoiceState | None:
        """``GET /v1/invoices/{id}`` through the connector; ``None`` when absent."""
        inv = await self.connector._current(ExternalInvoice(external_id=external_id, number=""))
        if inv is None:
            return None
        currency = str(inv.get("currency") or "").upper()
        paid = from_minor(int(inv.get("amount_paid") or 0), currency)
        stripe_status = str(inv.get("status") or "")
        status: PaymentStatus = "open"
        if stripe_status == "void":
            status = "voided"
        elif stripe_status == "paid":
            status = "paid"
        elif stripe_status in ("open", "uncollectible") and paid > 0:
            status = "partially_paid"
        metadata: dict[str, Any] = inv.get("metadata") or {}
        transitions: dict[str, Any] = inv.get("status_transitions") or {}
        changed = transitions.get("voided_at") if status == "voided" else transitions.get("paid_at")
        return InvoiceState(
            external_id=str(inv.get("id") or external_id),
            invoice_number=metadata.get("broker_invoice_number") or inv.get("number"),
            invoice_key=metadata.get("broker_invoice_key") or None,
            currency=currency,
            total=from_minor(int(inv.get("total") or 0), currency),
            amount_paid=paid,
            amount_due=from_minor(int(inv.get("amount_remaining") or 0), currency),
            status=status,
            changed_at=_when(changed) if status != "partially_paid" else None,
        )


#: The payment source the registry finds (:func:`connectors.registry.payment_source_class`).
PAYMENT_SOURCE = StripePayments
