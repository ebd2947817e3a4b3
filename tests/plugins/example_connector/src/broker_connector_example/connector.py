"""Ledgerly connector: the smallest complete connector, built on the connector SDK.

What each part shows (see ``docs/connectors.md``):

* ``LedgerlySettings`` subclasses ``ConnectorSettings``: unknown keys refused, the API key is
  named by ``api_key_env`` and read from the environment when first needed.
* ``capabilities`` declares a native idempotency key *and* lookup by number, no batch endpoint
  (``deliver_many`` is the default loop), no OAuth2, the documented rate limit.
* The SDK's ``HttpConnector`` owns the client, the API key (``ApiKeyAuth``), transport errors and
  the status table; the connector adds only Ledgerly's own rule (``status_overrides``: a ``409``
  is answered, not raised) and how its error body reads (``problem_detail``, ``classify``).
* ``deliver`` sends ``Idempotency-Key`` derived from the invoice identity only
  (``connectors.sdk.idempotency``); a ``409 duplicate_number`` is looked up and returned with
  ``created=False``.
* Contacts go through ``connectors.sdk.contacts.ContactResolver`` (mapping, lookup, creation policy).
"""

from __future__ import annotations

from decimal import Decimal
from types import MappingProxyType
from typing import Any

import httpx

from broker_connector_example.mapper import check_limits, invoice_to_ledgerly
from broker_connector_example.settings import LedgerlySettings
from connectors.sdk import (
    ApiKeyAuth,
    Auth,
    Capabilities,
    ConnectorError,
    DeliveryResult,
    ExternalInvoice,
    HttpConnector,
    RetryableError,
    UnknownAccountError,
)
from connectors.sdk.contacts import ContactQuery, ContactResolver, LookupField, same_value
from connectors.sdk.idempotency import KeyRules, idempotency_key, make_key
from connectors.sdk.invoice import Invoice
from connectors.sdk.lifecycle import check_ours, read_marker

KEY_RULES = KeyRules(max_length=100)  # Ledgerly: Idempotency-Key up to 100 characters of [A-Za-z0-9:._-]


class LedgerlyConnector(HttpConnector):
    """Ledgerly: one account (``account_id``) for one broker tenant; API key in ``Authorization: Bearer``."""

    name = "example"
    label = "Ledgerly"
    version = "0.3.0"
    capabilities = Capabilities(
        native_idempotency=True, lookup_by_reference=True, batch_size=1, rate_limit_per_minute=120, max_concurrency=4
    )
    Settings = LedgerlySettings
    status_overrides = MappingProxyType({409: None})  # duplicate number: answered, looked up by deliver()

    def __init__(self, settings: Any, *, tenant: str, token_store: Any = None) -> None:
        super().__init__(settings, tenant=tenant, token_store=token_store)
        self.settings: LedgerlySettings
        self._contacts: ContactResolver | None = None  # created on first use: the host may set self.clients

    def __repr__(self) -> str:
        return f"LedgerlyConnector(tenant={self.tenant!r}, account_id={self.settings.account_id!r})"

    def make_auth(self) -> Auth:
        return ApiKeyAuth(lambda: self.secret("api_key_env"))  # ConfigError naming LEDGERLY_API_KEY when unset

    def _path(self, suffix: str) -> str:
        return self.url(self.settings.api_url, f"/v1/accounts/{self.settings.account_id}{suffix}")

    async def _request(self, method: str, url: str, **kwargs: Any) -> httpx.Response:
        """An authenticated call; non-2xx statuses raised as taxonomy errors (409 returned)."""
        resp = await self.request(method, url, **kwargs)
        self.raise_for_status(resp, f"Ledgerly {method} {resp.url.path}")
        return resp

    def problem_detail(self, resp: httpx.Response) -> str:
        """Ledgerly's error body: ``{"error": {"code", "field", "message"}}``."""
        err = (self.decode(resp) or {}).get("error") or {}
        return self.scrub(" ".join(str(err[k]) for k in ("code", "field", "message") if err.get(k)))

    def classify(self, resp: httpx.Response, what: str) -> ConnectorError | None:
        """``404 account_not_found`` means the settings name an account these credentials cannot reach."""
        if resp.status_code == 404 and "account_not_found" in self.problem_detail(resp):
            return UnknownAccountError(f"{what}: HTTP 404 {self.problem_detail(resp)}", http_status=404)
        return None

    # ------------------------------------------------------------------ interface
    async def check(self) -> None:
        """``GET /v1/accounts/{account_id}``: bad key -> AuthError, unknown account -> UnknownAccountError."""
        await self._request("GET", self._path(""))

    async def deliver(self, invoice: Invoice) -> DeliveryResult:
        check_limits(invoice)
        if self._contacts is None:
            self._contacts = ContactResolver(
                self, allow_create=self.settings.create_customers, clients=self.clients, setting_name="create_customers"
            )
        contact_id = await self._contacts.resolve(invoice)
        body = invoice_to_ledgerly(invoice, contact_id)
        key = idempotency_key(invoice.tenant, self.name, invoice.invoice_key, "create", KEY_RULES)
        resp = await self._request("POST", self._path("/invoices"), json=body, headers={"Idempotency-Key": key})
        if resp.status_code == 409:  # our number is taken: it is our invoice from an earlier attempt
            found = await self.find(invoice.invoice_number)
            if found is None:
                raise RetryableError(f"Ledgerly reports {invoice.invoice_number} as taken but the lookup misses it")
            check_ours(invoice, found, what="Ledgerly 409 duplicate_number")  # never adopt someone else's
            return DeliveryResult(
                invoice.invoice_key,
                found.external_id,
                found.number,
                created=False,
                details={"total": str(found.total), "duplicate": True},
            )
        data = resp.json()
        total = Decimal(str(data["total"]))
        return DeliveryResult(
            invoice.invoice_key,
            str(data["id"]),
            str(data["number"]),
            created=True,
            details={"total": str(total), "total_matches": total == invoice.total},
        )

    async def find(self, invoice_number: str) -> ExternalInvoice | None:
        resp = await self._request("GET", self._path("/invoices"), params={"number": invoice_number})
        for item in resp.json().get("data", []):
            if item.get("number") == invoice_number:
                return ExternalInvoice(
                    str(item["id"]),
                    item["number"],
                    Decimal(str(item["total"])),
                    item.get("status"),
                    marker=read_marker(item.get("memo")),
                )
        return None

    # ------------------------------------------------------------------ contacts (connectors.sdk.contacts.ContactDirectory)
    async def find_contact(self, field: LookupField, value: str) -> str | None:
        resp = await self._request("GET", self._path("/customers"), params={field: value})
        for customer in resp.json().get("data", []):
            if same_value(field, customer.get(field), value):
                return str(customer["id"])
        return None

    async def create_contact(self, query: ContactQuery) -> str:
        resp = await self._request(
            "POST",
            self._path("/customers"),
            json={"name": query.name, "email": query.email, "tax_number": query.tax_number},
            headers={
                "Idempotency-Key": make_key(f"{self.tenant}:{self.name}:customer:{query.client_id}:create", KEY_RULES)
            },
        )
        return str(resp.json()["id"])
