"""Conformance harness of the QuickBooks Online connector (see :mod:`connectors.testing`).

``tests/test_quickbooks_conformance.py`` is one call: ``make_conformance_tests(QuickBooksHarness)``.
The emulator checks every request against the field reference ``tests/specs/quickbooks/openapi.yaml``
(community file, see :mod:`connectors.quickbooks.spec`) when it is present, and the harness
fails a test that sent a non-conforming request or crashed the emulator.

Lifecycle hooks: :meth:`QuickBooksHarness.mark_paid` records a ``Payment`` (the emulator's admin action),
:meth:`~QuickBooksHarness.balance` is the emulator's customer balance (open ``Balance`` minus unapplied
``RemainingCredit``), :meth:`~QuickBooksHarness.credit_notes` lists ``CreditMemo`` entities and
:meth:`~QuickBooksHarness.plant_foreign` stores an invoice as the QBO UI would (no marker in ``PrivateNote``).
"""

from __future__ import annotations

from decimal import Decimal
from pathlib import Path
from typing import Any

from connectors.quickbooks import mapper as qbo
from connectors.quickbooks.connector import QuickBooksConnector
from connectors.quickbooks.emulator import DEMO_TAX_CODES, QuickBooksEmulator
from connectors.sdk.invoice import Invoice
from connectors.testing.emulated import OAuthEmulatorHarness
from connectors.testing.harness import HOSTILE_CASES, HeldInvoice

REALM = "9341452000000777"
UNKNOWN_REALM = "9341452000000999"
CONTACT_ID = "58"
CONTACT_NAME = "Conformance Client, Lda"
#: A customer id the company does not have: QBO answers Fault 2500 "Invalid Reference Id".
UNKNOWN_CUSTOMER_ID = "999999"
SPEC = Path(__file__).resolve().parents[2] / "tests" / "specs" / "quickbooks" / "openapi.yaml"


class QuickBooksHarness(OAuthEmulatorHarness[QuickBooksEmulator]):
    connector_cls = QuickBooksConnector
    hostile = dict.fromkeys(HOSTILE_CASES, "deliver")
    secret_prefix = "qbo"
    client_secret_env = "QBO_CLIENT_SECRET"
    refresh_token_env = "QBO_REFRESH_TOKEN"
    invalid_requests = "requests not matching the QuickBooks field reference"
    spec_module = "connectors.quickbooks.spec"

    # ------------------------------------------------------------------ lifecycle
    def spec_file(self) -> Path:
        return SPEC

    def new_emulator(self) -> QuickBooksEmulator:
        return QuickBooksEmulator(
            realm_ids=(REALM,),
            customers={CONTACT_ID: {"DisplayName": CONTACT_NAME, "PrimaryEmailAddr": "ap@conformance.example"}},
            rate_limit_per_minute=10_000,
            batch_limit_per_minute=1_000,
            **self.emulator_options(),
        )

    def reset(self) -> None:
        super().reset()
        self.emulator.requestid_ttl = None

    # ------------------------------------------------------------------ configuration
    def settings(self) -> dict[str, Any]:
        emulator = self.emulator
        return {
            "api_url": emulator.url,
            "token_url": emulator.token_url,
            "authorize_url": f"{emulator.url}/connect/oauth2",
            "realm_id": REALM,
            **self.oauth_settings(),
            "tax_codes": DEMO_TAX_CODES,
        }

    def contact(self) -> tuple[str | None, str]:
        return CONTACT_ID, CONTACT_NAME

    # ------------------------------------------------------------------ read back
    @staticmethod
    def _held(entity: dict[str, Any], status: str) -> HeldInvoice:
        return HeldInvoice(
            external_id=entity["Id"],
            number=entity["DocNumber"],
            total=Decimal(entity["TotalAmt"]),
            currency=(entity.get("CurrencyRef") or {}).get("value"),
            line_count=sum(1 for ln in entity["Line"] if ln.get("DetailType") == "SalesItemLineDetail"),
            contact=(entity.get("CustomerRef") or {}).get("value"),
            raw=entity,
            status=status,
            printed=qbo.printed_memo(entity),
        )

    def invoices(self) -> list[HeldInvoice]:
        """Every invoice; ``status`` derived as QBO's UI shows it, ``printed`` the ``CustomerMemo``."""
        return [self._held(inv, qbo.invoice_status(inv)) for inv in self.emulator.invoices(REALM)]

    # ------------------------------------------------------------------ lifecycle
    def mark_paid(self, external_id: str, amount: Decimal | None = None) -> None:
        """A ``Payment`` of ``amount`` (``None``: the whole balance) linked to invoice ``external_id``."""
        self.emulator.pay(REALM, external_id, amount)

    def balance(self) -> Decimal:
        """Σ ``Balance`` of the company's invoices − Σ ``RemainingCredit`` of its credit memos."""
        return self.emulator.balance(REALM)

    def credit_notes(self) -> list[HeldInvoice]:
        """The company's ``CreditMemo`` entities (``status``: ``Open`` while credit remains, else ``Closed``)."""
        return [
            self._held(memo, "Open" if Decimal(memo["RemainingCredit"]) > 0 else "Closed")
            for memo in self.emulator.credit_memos(REALM)
        ]

    def plant_foreign(self, invoice: Invoice, total: Decimal) -> str:
        """An invoice under ``invoice``'s ``DocNumber`` for its customer, one tax-exempt line of ``total``,
        ``PrivateNote`` without our marker (as typed in QBO's UI)."""
        exempt = DEMO_TAX_CODES["0"]
        entity = self.emulator.plant_invoice(
            REALM,
            {
                "DocNumber": invoice.invoice_number,
                "CustomerRef": {"value": invoice.contact_id or CONTACT_ID},
                "PrivateNote": "typed by hand",
                "Line": [
                    {
                        "Amount": total,
                        "DetailType": "SalesItemLineDetail",
                        "SalesItemLineDetail": {
                            "ItemRef": {"value": "1"},
                            "TaxCodeRef": {"value": exempt["tax_code_id"]},
                        },
                    }
                ],
            },
        )
        return str(entity["Id"])

    # ------------------------------------------------------------------ faults (the rest: OAuthEmulatorHarness)
    def expire_idempotency_keys(self) -> None:
        self.emulator.requestid_ttl = 0  # every remembered requestid is past its window (until reset)

    # ------------------------------------------------------------------ data
    def invalid_invoice(self, invoice: Invoice) -> Invoice:
        """A customer id the company does not have: QBO's ValidationFault 2500 "Invalid Reference Id"."""
        return invoice.model_copy(update={"contact_id": UNKNOWN_CUSTOMER_ID})

    def unknown_account_settings(self) -> dict[str, Any]:
        return {"realm_id": UNKNOWN_REALM}

    def contact_creation_settings(self, allow: bool) -> dict[str, Any]:
        return {"create_contacts": allow}


__all__ = ["QuickBooksHarness"]
