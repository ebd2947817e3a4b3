"""Conformance harness of the FreshBooks connector (see :mod:`connectors.testing`).

``tests/test_freshbooks_conformance.py`` is one call: ``make_conformance_tests(FreshBooksHarness)``.
The emulator checks every request against the field reference ``tests/specs/freshbooks/openapi.yaml``
(community file, see :mod:`connectors.freshbooks.spec_check`) when it is present.

FreshBooks refresh tokens are single-use. The kit gives every connector it builds its own
in-memory token store, all seeded from the same environment variable — in production one tenant's
connectors share one token store, so the seed is spent once. The harness therefore lets a spent
refresh token live on for an hour (``refresh_grace_seconds``); single-flight refreshing is still
measured exactly (the kit counts refreshes), and ``tests/test_freshbooks_connector.py`` covers the
strict single-use behaviour.
"""

from __future__ import annotations

import secrets
from decimal import Decimal
from pathlib import Path
from typing import Any

from connectors.freshbooks.connector import FreshBooksConnector
from connectors.freshbooks.emulator import FreshBooksEmulator
from connectors.sdk.invoice import Invoice
from connectors.testing import ConnectorHarness, HeldInvoice

ACCOUNT = "CfAcct7"
UNKNOWN_ACCOUNT = "NoSuchAcct9"
CONTACT_ID = 31007
CONTACT_NAME = "Conformance Client, Lda"
#: A client id the account does not have: FreshBooks answers errno 1012 "Client not found.".
UNKNOWN_CLIENT_ID = "999999"
SPEC = Path(__file__).resolve().parents[2] / "tests" / "specs" / "freshbooks" / "openapi.yaml"


class FreshBooksHarness(ConnectorHarness):
    connector_cls = FreshBooksConnector
    hostile = dict.fromkeys(
        ("long_description", "non_ascii", "many_lines", "zero_amount_line", "negative_line", "odd_number"), "deliver"
    )
    fast_timeout = 0.5

    def __init__(self) -> None:
        self.client_secret = "conf-fb-secret-" + secrets.token_hex(8)
        self.refresh_token = "conf-fb-refresh-" + secrets.token_hex(8)
        self.emu: FreshBooksEmulator | None = None

    # ------------------------------------------------------------------ lifecycle
    def start(self) -> None:
        validator = None
        if SPEC.exists():
            from connectors.freshbooks.spec_check import make_request_validator

            validator = make_request_validator(SPEC)
        self.emu = FreshBooksEmulator(
            client_secret=self.client_secret,
            refresh_token=self.refresh_token,
            account_ids=(ACCOUNT,),
            clients={CONTACT_ID: {"organization": CONTACT_NAME, "email": "ap@conformance.example"}},
            refresh_grace_seconds=3600,
            hang_seconds=2.0,
            request_validator=validator,
        ).start()

    def stop(self) -> None:
        if self.emu is not None:
            self.emu.stop()

    def reset(self) -> None:
        assert self.emu is not None
        self.emu.reset_state()
        self.emu.fault_retry_after = 1

    # ------------------------------------------------------------------ configuration
    def settings(self) -> dict[str, Any]:
        assert self.emu is not None
        return {
            "api_url": self.emu.url,
            "authorize_url": f"{self.emu.url}/oauth/authorize",
            "account_id": ACCOUNT,
            "client_id": self.emu.client_id,
            "client_secret_env": "FRESHBOOKS_CLIENT_SECRET",
            "refresh_token_env": "FRESHBOOKS_REFRESH_TOKEN",
            "tax_names": {"23": "IVA"},
        }

    def env(self) -> dict[str, str]:
        return {"FRESHBOOKS_CLIENT_SECRET": self.client_secret, "FRESHBOOKS_REFRESH_TOKEN": self.refresh_token}

    def contact(self) -> tuple[str | None, str]:
        return str(CONTACT_ID), CONTACT_NAME

    # ------------------------------------------------------------------ read back
    def invoices(self) -> list[HeldInvoice]:
        assert self.emu is not None
        return [
            HeldInvoice(
                external_id=str(inv["invoiceid"]),
                number=inv["invoice_number"],
                total=Decimal(inv["amount"]["amount"]),
                currency=inv.get("currency_code"),
                line_count=len(inv.get("lines") or []),
                contact=str(inv["customerid"]),
                raw=inv,
            )
            for inv in self.emu.invoices(ACCOUNT, include_deleted=False)
        ]

    # ------------------------------------------------------------------ faults
    def inject_rate_limit(self, retry_after: int = 1) -> None:
        assert self.emu is not None
        self.emu.fault_retry_after = retry_after
        self.emu.inject_fault("429")

    def inject_server_error(self, status: int = 503, times: int = 1) -> None:
        assert self.emu is not None
        self.emu.inject_fault(str(status), times)

    def inject_timeout_after_commit(self) -> None:
        assert self.emu is not None
        self.emu.inject_fault("timeout_after_commit")

    def expire_tokens(self) -> None:
        assert self.emu is not None
        self.emu.expire_access_tokens()

    def refresh_count(self) -> int:
        assert self.emu is not None
        return len(self.emu.refresh_token_uses)

    # ------------------------------------------------------------------ data
    def invalid_invoice(self, invoice: Invoice) -> Invoice:
        """A client id the account does not have: FreshBooks' errno 1012 "Client not found."."""
        return invoice.model_copy(update={"contact_id": UNKNOWN_CLIENT_ID})

    def unknown_account_settings(self) -> dict[str, Any]:
        return {"account_id": UNKNOWN_ACCOUNT}

    def contact_creation_settings(self, allow: bool) -> dict[str, Any]:
        return {"create_contacts": allow}

    # ------------------------------------------------------------------ checks
    def issued_secrets(self) -> list[str]:
        assert self.emu is not None
        with self.emu._lock:
            return [*self.emu._access_tokens, *self.emu._refresh_tokens]

    def assert_healthy(self) -> None:
        assert self.emu is not None
        failures, errors = list(self.emu.validation_failures), list(self.emu.server_errors)
        assert not failures, f"requests not matching the FreshBooks field reference: {failures[:3]}"
        assert not errors, f"emulator errors: {errors[:1]}"


__all__ = ["FreshBooksHarness"]
