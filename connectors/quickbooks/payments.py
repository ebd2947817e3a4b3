"""QuickBooks Online's payments: signed change notifications (ids only), then reads of the invoices.

Sources: ``shared/billing-apis.md`` § 3 ("Webhooks") and the pages it cites,
https://developer.intuit.com/app/developer/qbo/docs/develop/webhooks/managing-webhooks-notifications and
https://blogs.a.intuit.com/2025/11/12/upcoming-change-to-webhooks-payload-structure:

* ``intuit-signature`` is Base64(HMAC-SHA256(the app's **verifier token**, raw body)). No timestamp is
  signed, so there is no staleness check: a replayed body only causes a read of the current state,
  which deduplication absorbs (as Xero's).
* The legacy payload is ``{"eventNotifications": [{"realmId", "dataChangeEvent": {"entities": [{"name",
  "id", "operation", "lastUpdated"}]}}]}``; Intuit's CloudEvents payload (mandatory from mid-2026) is an
  array of ``{"type": "qbo.<entity>.<operation>.v1", "intuitentityid", "intuitaccountid", …}``. Both are
  read. Entities carry **ids only**. One verifier token serves every company the app is connected to,
  and one delivery may mix companies: only the tenant's ``realm_id`` is read.
* ``Invoice`` entities name the invoice. ``Payment`` entities name a payment: it is read
  (``GET /v3/company/{realmId}/payment/{id}``) and the invoices of its ``Line[].LinkedTxn`` with
  ``TxnType: Invoice`` are read. A deleted payment (``operation`` ``Delete``, or 610 "Object Not Found")
  names nothing: QBO raises the invoice's ``Balance`` again, and that change is seen with the invoice's
  next notification or webhook (an assumption: Intuit does not document which entities a payment
  deletion notifies).
* Invoice fields (``GET /v3/company/{realmId}/invoice/{id}`` through the tenant's connector): QBO keeps
  no payment status; ``TotalAmt``, ``Balance`` (still due), paid = ``TotalAmt − Balance``
  (:func:`connectors.quickbooks.mapper.amount_paid`), voided = ``TotalAmt`` 0 with ``PrivateNote``
  starting ``Voided`` (:func:`connectors.quickbooks.mapper.is_voided`), ``DocNumber``, ``CurrencyRef``,
  ``PrivateNote`` (our marker), ``MetaData.LastUpdatedTime``.
"""

from __future__ import annotations

from decimal import Decimal
from typing import Any

from connectors.quickbooks import mapper as qbo
from connectors.quickbooks.connector import QuickBooksConnector
from connectors.sdk.invoice import ExternalInvoice
from connectors.sdk.money import amount_or_none
from connectors.sdk.payments import (
    InvoiceState,
    PaymentSource,
    Webhook,
    base64_hmac,
    iso_time,
    require_signature,
)

__all__ = ["QuickBooksPayments", "intuit_signature"]


def intuit_signature(verifier_token: bytes, body: bytes) -> str:
    """``intuit-signature`` of ``body``: Base64 of HMAC-SHA256(``verifier_token``, raw body)."""
    return base64_hmac(verifier_token, body)


def _entities(payload: Any) -> list[tuple[str, str, str, str]]:
    """``(realm id, entity name, entity id, operation)`` of every entity of a legacy or CloudEvents payload,
    in order. Raises ``ValueError`` naming the field that is unreadable."""
    found: list[tuple[str, str, str, str]] = []
    if isinstance(payload, list):  # CloudEvents: [{"type": "qbo.invoice.updated.v1", "intuitentityid", ...}]
        for index, event in enumerate(payload):
            kind = event.get("type") if isinstance(event, dict) else None
            if not isinstance(kind, str) or not isinstance(event.get("intuitentityid"), str):
                raise ValueError(f"field '[{index}]': expected an event with 'type' and 'intuitentityid'")
            parts = kind.split(".")
            if len(parts) >= 3 and parts[0] == "qbo":
                name, operation = parts[1].capitalize(), parts[2].capitalize()
                found.append((str(event.get("intuitaccountid", "")), name, event["intuitentityid"], operation))
        return found
    notes = payload.get("eventNotifications") if isinstance(payload, dict) else None
    if not isinstance(notes, list):
        raise ValueError("field 'eventNotifications': expected a list")
    for index, note in enumerate(notes):
        change = note.get("dataChangeEvent") if isinstance(note, dict) else None
        entities = change.get("entities") if isinstance(change, dict) else None
        if not isinstance(entities, list):
            raise ValueError(f"field 'eventNotifications[{index}].dataChangeEvent.entities': expected a list")
        for entity in entities:
            if not isinstance(entity, dict) or not isinstance(entity.get("id"), str):
                raise ValueError(f"field 'eventNotifications[{index}]…entities[].id': expected a string")
            name, operation = str(entity.get("name", "")), str(entity.get("operation", ""))
            found.append((str(note.get("realmId", "")), name, entity["id"], operation))
    return found


def _once(ids: list[str]) -> list[str]:
    return list(dict.fromkeys(ids))


class QuickBooksPayments(PaymentSource):
    """QuickBooks Online payment source (module docstring); ``connector`` is a :class:`QuickBooksConnector`;
    ``secret`` is the app's webhook verifier token."""

    system = "quickbooks"
    webhooks = True
    connector: QuickBooksConnector

    def verify(self, hook: Webhook, now: float) -> None:  # noqa: ARG002 - QuickBooks signs no timestamp
        """``intuit-signature`` must be Base64(HMAC-SHA256(verifier token, body)); :class:`WebhookRefused` otherwise."""
        require_signature(hook, "intuit-signature", intuit_signature(self.secret, hook.body))

    def _of_realm(self, payload: Any, name: str) -> list[str]:
        realm = self.connector.settings.realm_id
        return _once([ident for r, n, ident, op in _entities(payload) if r == realm and n == name and op != "Delete"])

    def invoice_ids(self, payload: Any) -> list[str]:
        """Ids of the ``Invoice`` entities of the tenant's company (deleted ones left out), once each, in order."""
        return self._of_realm(payload, "Invoice")

    def payment_ids(self, payload: Any) -> list[str]:
        """Ids of the ``Payment`` entities of the tenant's company (deleted ones left out), once each, in order."""
        return self._of_realm(payload, "Payment")

    async def invoices_of(self, payload: Any) -> list[str]:
        """The invoices named, then those each named payment is linked to (``Line[].LinkedTxn``, ``TxnType``
        ``Invoice``), once each."""
        ids = self.invoice_ids(payload)
        for payment_id in self.payment_ids(payload):
            await self.paced()
            ids += await self.linked_invoices(payment_id)
        return _once(ids)

    async def linked_invoices(self, payment_id: str) -> list[str]:
        """``GET payment/{id}``: the ids of the invoices the payment pays (``[]``: the payment is gone)."""
        what = f"QuickBooks GET payment/{payment_id}"
        resp = await self.connector._call("GET", f"payment/{payment_id}")
        if resp.status_code == 400 and qbo.has_code(qbo.fault_errors(self.connector.decode(resp)), qbo.NOT_FOUND_CODE):
            return []
        body = self.connector._ok(resp, what)
        payment = body.get("Payment") if isinstance(body, dict) else None
        lines = payment.get("Line") if isinstance(payment, dict) else None
        return [
            str(link["TxnId"])
            for line in lines or []
            if isinstance(line, dict)
            for link in line.get("LinkedTxn") or []
            if isinstance(link, dict) and link.get("TxnType") == "Invoice" and link.get("TxnId")
        ]

    async def fetch(self, external_id: str) -> InvoiceState | None:
        """``GET invoice/{id}`` through the connector; ``None`` when absent."""
        entity = await self.connector._reread(ExternalInvoice(external_id=external_id, number=""))
        if entity is None:
            return None
        note = entity.get("PrivateNote")
        marker = qbo.read_marker(note if isinstance(note, str) else None)
        return InvoiceState.read(
            (str(entity.get("Id") or external_id), entity.get("DocNumber"), marker),
            str((entity.get("CurrencyRef") or {}).get("value") or ""),
            amount_or_none(entity.get("TotalAmt")) or Decimal("0"),
            qbo.amount_paid(entity),  # TotalAmt − Balance
            amount_or_none(entity.get("Balance")),
            voided=qbo.is_voided(entity),
            changed_at=iso_time((entity.get("MetaData") or {}).get("LastUpdatedTime")),
        )


#: The payment source the registry finds (:func:`connectors.registry.payment_source_class`).
PAYMENT_SOURCE = QuickBooksPayments
