"""FreshBooks' payments: signed, form-encoded callbacks (ids only), then reads of the invoices.

Sources: ``shared/billing-apis.md`` § 5 ("Webhooks": https://www.freshbooks.com/api/webhooks, the official
SDK's ``user_guide/webhooks.md`` and ``freshbooks/api/events.py``):

* A callback is registered with ``POST /events/account/{accountId}/events/callbacks`` (``event``, e.g.
  ``payment.create`` or a whole noun such as ``payment``; ``uri``). FreshBooks then POSTs a
  ``name=callback.verify`` request carrying a **verifier** to the URI, and the callback becomes active
  once the verifier is sent back (``PUT …/callbacks/{id}`` ``{"callback": {"verifier"}}``). The verifier
  is also the key that signs every later delivery: ``billing.payments.webhook_secret_env`` names the
  variable holding it.
* Deliveries are ``application/x-www-form-urlencoded``: ``name`` (event), ``object_id``, ``account_id``,
  ``business_id``, ``identity_id``, ``user_id``. ``X-FreshBooks-Hmac-SHA256`` = Base64(HMAC-SHA256(verifier,
  the form fields serialised as a JSON object)), the serialisation being Python's ``json.dumps`` of the
  fields in the order posted, every value a string, default separators ``", "`` / ``": "`` (the SDK's
  ``verify_webhook_signature``). No timestamp is signed: a replay only causes a read of the current state.
* Assumption: the ``callback.verify`` request cannot be checked (the broker learns the verifier from it),
  so it is answered 200 with nothing read, nothing published and nothing logged; the operator completes
  the registration with FreshBooks (the ``PUT``) and sets the variable. Every other delivery must be signed.
* ``invoice.*`` events name the invoice; ``payment.*`` events name a payment, which is read
  (``GET /accounting/account/{accountId}/payments/payments/{id}``: ``invoiceid``) before its invoice.
  Events of another ``account_id`` than the tenant's are ignored.
* Invoice fields (``GET …/invoices/invoices/{id}``): ``amount``, ``paid``, ``outstanding`` (money objects
  ``{"amount", "code"}``), ``currency_code``, ``invoice_number``, ``notes`` (our marker, last line),
  ``vis_state`` (1 = deleted: FreshBooks has no void, a deleted invoice is reported ``voided``),
  ``updated`` (zone-less, US/Eastern, per the SDK docs).
"""

from __future__ import annotations

import json
from datetime import datetime
from decimal import Decimal
from typing import Any
from urllib.parse import parse_qsl
from zoneinfo import ZoneInfo

from connectors.freshbooks import mapper
from connectors.freshbooks.connector import FreshBooksConnector
from connectors.sdk.invoice import ExternalInvoice
from connectors.sdk.payments import (
    InvoiceState,
    PaymentSource,
    Webhook,
    base64_hmac,
    require_signature,
)

__all__ = ["VERIFY_EVENT", "FreshBooksPayments", "form_fields", "freshbooks_signature"]

#: The registration request's event name (carries the verifier; module docstring).
VERIFY_EVENT = "callback.verify"
_EASTERN = ZoneInfo("America/New_York")


def form_fields(body: bytes) -> dict[str, str]:
    """The fields of a form-encoded body, in order (blank values kept). ``ValueError`` when it is not UTF-8."""
    try:
        text = body.decode("utf-8")
    except UnicodeDecodeError as exc:
        raise ValueError(f"the body is not a form: not UTF-8 ({exc.reason} at byte {exc.start})") from None
    return dict(parse_qsl(text, keep_blank_values=True))


def freshbooks_signature(verifier: bytes, fields: dict[str, str]) -> str:
    """``X-FreshBooks-Hmac-SHA256`` of a delivery's ``fields``: Base64(HMAC-SHA256(``verifier``,
    ``json.dumps(fields)``)), values as strings, Python's default separators (module docstring)."""
    return base64_hmac(verifier, json.dumps({name: str(value) for name, value in fields.items()}).encode())


def _eastern(value: Any) -> datetime | None:
    try:
        return datetime.strptime(str(value), "%Y-%m-%d %H:%M:%S").replace(tzinfo=_EASTERN)
    except ValueError:
        return None


class FreshBooksPayments(PaymentSource):
    """FreshBooks payment source (module docstring); ``connector`` is a :class:`FreshBooksConnector`;
    ``secret`` is the callback's verifier."""

    system = "freshbooks"
    webhooks = True
    connector: FreshBooksConnector

    def verify(self, hook: Webhook, now: float) -> None:  # noqa: ARG002 - FreshBooks signs no timestamp
        """``X-FreshBooks-Hmac-SHA256`` must sign the form fields with the verifier (``callback.verify`` passes,
        module docstring); :class:`WebhookRefused` otherwise."""
        try:
            fields = form_fields(hook.body)
        except ValueError:
            fields = {}
        if fields.get("name") == VERIFY_EVENT:
            return
        expected = freshbooks_signature(self.secret, fields)
        require_signature(hook, "x-freshbooks-hmac-sha256", expected, "the form fields")

    def parse(self, body: bytes) -> dict[str, str]:
        """The delivery's form fields; ``ValueError`` without ``name`` and ``object_id``."""
        fields = form_fields(body)
        for name in ("name", "object_id"):
            if not fields.get(name):
                raise ValueError(f"form field '{name}' is missing")
        return fields

    def _named(self, payload: Any, noun: str) -> list[str]:
        if not isinstance(payload, dict) or payload.get("name") == VERIFY_EVENT:
            return []
        if str(payload.get("account_id", "")) != self.connector.settings.account_id:
            return []
        return [str(payload["object_id"])] if str(payload.get("name", "")).startswith(f"{noun}.") else []

    def invoice_ids(self, payload: Any) -> list[str]:
        """``object_id`` of an ``invoice.*`` delivery of the tenant's account (``[]`` otherwise)."""
        return self._named(payload, "invoice")

    async def invoices_of(self, payload: Any) -> list[str]:
        """:meth:`invoice_ids`, or the invoice of the payment a ``payment.*`` delivery names."""
        ids = self.invoice_ids(payload)
        for payment_id in self._named(payload, "payment"):
            await self.paced()
            ids += [ident for ident in [await self.payment_invoice(payment_id)] if ident and ident not in ids]
        return ids

    async def payment_invoice(self, payment_id: str) -> str | None:
        """``GET …/payments/payments/{id}``: the payment's ``invoiceid`` (``None``: no payment, or none named)."""
        what = f"FreshBooks GET payment {payment_id}"
        resp = await self.connector._api("GET", self.connector._account_url(f"payments/payments/{payment_id}"))
        if resp.status_code == 404:
            return None
        result = self.connector._result(resp, what)
        payment = result.get("payment") if isinstance(result, dict) else None
        ident = payment.get("invoiceid") if isinstance(payment, dict) else None
        return str(ident) if ident else None

    async def fetch(self, external_id: str) -> InvoiceState | None:
        """``GET …/invoices/invoices/{id}`` through the connector; ``None`` when absent."""
        entity = await self.connector._reread(ExternalInvoice(external_id=external_id, number=""))
        if entity is None:
            return None
        found = mapper.invoice_from_freshbooks(entity)
        return InvoiceState.read(
            (found.external_id, found.number or None, found.marker),
            str(entity.get("currency_code") or (entity.get("amount") or {}).get("code") or ""),
            found.total or Decimal("0"),
            found.paid or Decimal("0"),
            mapper.money_amount(entity.get("outstanding")),
            voided=str(entity.get("vis_state")) == "1",  # deleted: FreshBooks has no void
            changed_at=_eastern(entity.get("updated")),
        )


#: The payment source the registry finds (:func:`connectors.registry.payment_source_class`).
PAYMENT_SOURCE = FreshBooksPayments
