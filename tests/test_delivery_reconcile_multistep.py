"""A lost answer to the first step of a multi-step create (PayPal: draft, then send) must not leave a
draft behind: the deliver stage finds the draft by our number and lets deliver() finish it."""

from __future__ import annotations

import asyncio

from broker import delivery
from broker.config import parse_config
from connectors.paypal.testing import PayPalHarness
from connectors.testing.invoices import make_invoice, standard_lines


def test_lost_create_answer_is_completed_not_left_as_a_draft(monkeypatch):
    harness = PayPalHarness()
    harness.start()
    try:
        for k, v in harness.env().items():
            monkeypatch.setenv(k, v)
        config = parse_config(
            {
                "tenants": {
                    "conformance": {
                        "name": "T",
                        "currency": "EUR",
                        "vat_percent": "23",
                        "invoice_prefix": "CF",
                        "billing": {"system": "paypal", "settings": {**harness.settings(), "timeout_seconds": 0.5}},
                        "rate_card": {"skills": {"general": {"hourly_rate": "40"}}, "default_skill": "general"},
                    }
                }
            }
        )
        invoice = make_invoice("CF-RECON-1-R1", standard_lines())
        harness.emu.inject_fault("timeout_after_commit", on="create")  # draft stored, its answer lost

        async def go():
            deliverer = delivery.Deliverer(config, max_retry_seconds=20)
            try:
                ledger = delivery.InvoiceLedger(delivery.DictLedgerStore())
                return await deliverer.process(invoice, ledger, delivery.RecordMeta("billing.invoices", 0, 0))
            finally:
                await deliverer.aclose()

        outcome = asyncio.run(go())
        assert isinstance(outcome, delivery.Delivered), outcome
        assert outcome.reconciled is True and outcome.result.created is True
        held = harness.invoices()
        assert len(held) == 1  # one invoice, not two
        assert held[0].raw["status"] == "SENT"  # and it was sent, not left as a draft
        assert held[0].total == invoice.total
    finally:
        harness.stop()
