"""Records of the four topics the status view reads, with exact values (tests/test_status_view*.py)."""

from __future__ import annotations

import json
from datetime import UTC, date, datetime
from decimal import Decimal as D

from connectors.sdk.invoice import DeliveryOutcome, DocumentChange, Invoice, InvoiceLine, NotBillable

AT = datetime(2026, 3, 2, 10, 0, tzinfo=UTC)


def invoice(tenant: str = "acme-fm", wo: str = "1001", revision: int = 1, *, hours: str = "2.5") -> Invoice:
    """A work order's invoice version: ``hours`` × 40.00 net, VAT 23 % (2.5 h: 100.00 + 23.00 = 123.00)."""
    net = (D(hours) * D("40.00")).quantize(D("0.01"))
    tax = (net * D("0.23")).quantize(D("0.01"))
    line = InvoiceLine(
        kind="labour",
        description="HVAC labour",
        quantity=D(hours),
        unit="h",
        unit_price=D("40.00"),
        net=net,
        tax_rate=D("23"),
        tax=tax,
        total=net + tax,
        source="time_entry:TE-1",
        rule="rate:skill:hvac",
    )
    number = f"ACME-WO-{wo}-R{revision}"
    return Invoice(
        invoice_key=f"{tenant}:wo:{wo}:r{revision}",
        invoice_number=number,
        order_key=f"{tenant}:wo:{wo}",
        tenant=tenant,
        billing_system="xero",
        event_id=f"maintainx:wo:{wo}:r{revision}",
        event_type="maintenance.work_order.completed",
        event_time=AT,
        document="wo",
        document_id=wo,
        revision=revision,
        client_id="CLI-HAL",
        client_name="Hotel Atlântico Lisboa, S.A.",
        site_id="LIS-HAL-ROOF",
        currency="EUR",
        issue_date=date(2026, 3, 2),
        due_date=date(2026, 4, 1),
        reference=f"WO {wo}",
        lines=[line],
        net_total=net,
        tax_total=tax,
        total=net + tax,
        cost_total=D("0"),
        margin=net,
    )


def outcome(inv: Invoice, kind: str = "created", **kw: object) -> DeliveryOutcome:
    """The delivery outcome of ``inv`` (``created``: external id ``X-<number>``)."""
    fields: dict[str, object] = {
        "invoice_key": inv.invoice_key,
        "event_id": inv.event_id,
        "tenant": inv.tenant,
        "billing_system": inv.billing_system,
        "outcome": kind,
        "total": inv.total,
        "currency": inv.currency,
        "attempts": 1,
        "at": AT,
    }
    if kind in ("created", "already_delivered", "amended"):
        fields.update(external_id=f"X-{inv.invoice_number}", external_number=inv.invoice_number, billed_total=inv.total)
    fields.update(kw)
    return DeliveryOutcome.model_validate(fields)


def not_billable(tenant: str = "acme-fm", wo: str = "1002") -> NotBillable:
    return NotBillable(
        invoice_key=f"{tenant}:wo:{wo}:r1",
        order_key=f"{tenant}:wo:{wo}",
        tenant=tenant,
        event_id=f"maintainx:wo:{wo}:r1",
        event_type="maintenance.work_order.completed",
        event_time=AT,
        client_id="CLI-HAL",
        reason="everything is covered by contract C-1",
        reason_code="covered_by_contract",
        contract_id="C-1",
    )


def cancel(inv: Invoice) -> DocumentChange:
    return DocumentChange(
        action="cancel",
        change_key=f"{inv.order_key}:r{inv.revision}:cancel",
        order_key=inv.order_key,
        tenant=inv.tenant,
        billing_system=inv.billing_system,
        event_id=f"{inv.event_id}:cancel",
        event_type="maintenance.work_order.cancelled",
        event_time=AT,
        document="wo",
        document_id=inv.document_id,
        revision=inv.revision,
        client_id=inv.client_id,
        reason="Client cancelled",
        issue_date=date(2026, 3, 4),
    )


def payment(inv: Invoice, kind: str = "paid", *, amount: str | None = None, due: str = "0.00") -> bytes:
    """A ``billing.invoice.<kind>`` CloudEvent for ``inv`` (JSON bytes; amounts as decimal strings)."""
    paid = amount or str(inv.total)
    return json.dumps(
        {
            "specversion": "1.0",
            "id": f"xero:payment:{inv.invoice_number}:{kind}",
            "source": "/billing/xero",
            "type": f"billing.invoice.{kind}",
            "time": "2026-03-10T09:30:00Z",
            "tenant": inv.tenant,
            "subject": inv.invoice_key,
            "data": {
                "invoice_key": inv.invoice_key,
                "invoice_number": inv.invoice_number,
                "billing_system": inv.billing_system,
                "external_id": f"X-{inv.invoice_number}",
                "currency": inv.currency,
                "amount": paid,
                "amount_paid": paid,
                "amount_due": due,
            },
        }
    ).encode()


def as_bytes(model: Invoice | NotBillable | DocumentChange | DeliveryOutcome) -> bytes:
    return model.model_dump_json().encode()
