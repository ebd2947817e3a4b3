"""Ledgerly connector: the smallest complete connector of the broker's plugin model.

What each part shows (see ``docs/connectors.md``):

* ``LedgerlySettings`` subclasses ``ConnectorSettings``: unknown keys refused, the API key is
  named by ``api_key_env`` and read from the environment when first needed.
* ``capabilities`` declares a native idempotency key *and* lookup by number, no batch endpoint
  (``deliver_many`` is the default loop), no OAuth2, the documented rate limit.
* ``deliver`` sends ``Idempotency-Key`` derived from the invoice identity only
  (``connectors.sdk.idempotency``); a ``409
  duplicate_number`` is looked up and returned with ``created=False``.
* Transport failures become ``RetryableError`` (not sent) or ``UncertainOutcomeError`` (sent, no
  answer); statuses go through the shared table ``connectors.errors.error_for_status``.
* Contacts go through ``connectors.sdk.contacts.ContactResolver`` (mapping, lookup, creation policy).
* Every message is passed through ``self.scrub`` so no secret can leak.
"""

from __future__ import annotations

import asyncio
from decimal import Decimal
from typing import Any

import httpx
from pydantic import Field

from connectors.base import (
    Capabilities,
    Connector,
    ConnectorSettings,
    DeliveryResult,
    ExternalInvoice,
    PermanentError,
    RetryableError,
    UncertainOutcomeError,
    UnknownAccountError,
)
from connectors.errors import error_for_status, retry_after_seconds
from connectors.sdk.contacts import ContactQuery, ContactResolver, LookupField, same_value
from connectors.sdk.idempotency import KeyRules, idempotency_key, make_key
from connectors.sdk.invoice import Invoice

MAX_DESCRIPTION = 5000  # Ledgerly's documented field limit, checked before sending
MAX_LINES = 1000
KEY_RULES = KeyRules(max_length=100)  # Ledgerly: Idempotency-Key up to 100 characters of [A-Za-z0-9:._-]


class LedgerlySettings(ConnectorSettings):
    """``billing.settings`` of a tenant billed in Ledgerly."""

    api_url: str = "https://api.ledgerly.example"
    account_id: str = Field(min_length=1, description="Ledgerly account the invoices belong to.")
    api_key_env: str = Field(min_length=1, description="Environment variable holding the API key.")
    create_customers: bool = Field(default=False, description="Create a customer that cannot be found.")


def _money(value: Decimal) -> str:
    return format(value, "f")


class LedgerlyConnector(Connector):
    name = "example"
    version = "0.2.0"
    capabilities = Capabilities(
        native_idempotency=True, lookup_by_reference=True, batch_size=1, rate_limit_per_minute=120, max_concurrency=4
    )
    Settings = LedgerlySettings

    def __init__(self, settings: Any, *, tenant: str, token_store: Any = None):
        super().__init__(settings, tenant=tenant, token_store=token_store)
        self.settings: LedgerlySettings
        self._client: httpx.AsyncClient | None = None
        self._loop: asyncio.AbstractEventLoop | None = None
        self._contacts: ContactResolver | None = None  # created on first use: the host may set self.clients

    def __repr__(self) -> str:
        return f"LedgerlyConnector(tenant={self.tenant!r}, account_id={self.settings.account_id!r})"

    # ------------------------------------------------------------------ plumbing
    def _http(self) -> httpx.AsyncClient:
        loop = asyncio.get_running_loop()
        if self._client is None or self._loop is not loop:  # one client per event loop
            self._client, self._loop = httpx.AsyncClient(timeout=self.settings.timeout_seconds), loop
        return self._client

    def _api_key(self) -> str:
        return self.secret("api_key_env").get_secret_value()  # ConfigError naming LEDGERLY_API_KEY when unset

    def _path(self, suffix: str) -> str:
        return f"{self.settings.api_url.rstrip('/')}/v1/accounts/{self.settings.account_id}{suffix}"

    async def _request(self, method: str, url: str, **kwargs: Any) -> httpx.Response:
        """One call: transport errors and non-2xx statuses mapped onto the taxonomy."""
        headers = {
            "Authorization": f"Bearer {self._api_key()}",
            "Accept": "application/json",
            **kwargs.pop("headers", {}),
        }
        what = f"Ledgerly {method} {httpx.URL(url).path}"
        try:
            resp = await self._http().request(method, url, headers=headers, **kwargs)
        except (httpx.ConnectError, httpx.ConnectTimeout, httpx.PoolTimeout) as exc:
            raise RetryableError(f"{what}: not sent ({type(exc).__name__})") from None
        except httpx.TransportError as exc:  # sent, but no answer: the server may have acted on it
            raise UncertainOutcomeError(f"{what}: no response ({type(exc).__name__}); reconcile with find()") from None
        if resp.status_code >= 400 and resp.status_code != 409:
            error = self._error_body(resp)
            exc = error_for_status(
                resp.status_code,
                self.scrub(f"{what}: HTTP {resp.status_code} {error}"),
                method=method,
                retry_after=retry_after_seconds(resp.headers.get("Retry-After")),
                overrides={404: UnknownAccountError} if "account_not_found" in error else None,
            )
            if exc is not None:
                raise exc
        return resp

    @staticmethod
    def _error_body(resp: httpx.Response) -> str:
        try:
            err = resp.json().get("error") or {}
            return " ".join(str(err[k]) for k in ("code", "field", "message") if err.get(k))
        except (ValueError, AttributeError):
            return resp.text[:200]

    # ------------------------------------------------------------------ interface
    async def check(self) -> None:
        """``GET /v1/accounts/{account_id}``: bad key -> AuthError, unknown account -> UnknownAccountError."""
        await self._request("GET", self._path(""))

    async def deliver(self, invoice: Invoice) -> DeliveryResult:
        self._check_limits(invoice)
        if self._contacts is None:
            self._contacts = ContactResolver(
                self, allow_create=self.settings.create_customers, clients=self.clients, setting_name="create_customers"
            )
        contact_id = await self._contacts.resolve(invoice)
        body = {
            "number": invoice.invoice_number,
            "reference": invoice.reference,
            "customer_id": contact_id,
            "currency": invoice.currency,
            "issue_date": invoice.issue_date.isoformat(),
            "due_date": invoice.due_date.isoformat(),
            "lines": [
                {
                    "description": ln.description,
                    "quantity": _money(ln.quantity),
                    "unit_price": _money(ln.unit_price),
                    "tax_rate": _money(ln.tax_rate),
                }
                for ln in invoice.lines
            ],
        }
        key = idempotency_key(invoice.tenant, self.name, invoice.invoice_key, "create", KEY_RULES)
        resp = await self._request("POST", self._path("/invoices"), json=body, headers={"Idempotency-Key": key})
        if resp.status_code == 409:  # our number is taken: it is our invoice from an earlier attempt
            found = await self.find(invoice.invoice_number)
            if found is None:
                raise RetryableError(f"Ledgerly reports {invoice.invoice_number} as taken but the lookup misses it")
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

    def _check_limits(self, invoice: Invoice) -> None:
        """Field limits checked before sending: a PermanentError naming the field, never a truncation."""
        if len(invoice.lines) > MAX_LINES:
            raise PermanentError(f"{invoice.invoice_number}: {len(invoice.lines)} lines, Ledgerly accepts {MAX_LINES}")
        for n, line in enumerate(invoice.lines, 1):
            if len(line.description) > MAX_DESCRIPTION:
                raise PermanentError(
                    f"{invoice.invoice_number} line {n}: description of {len(line.description)} "
                    f"characters, Ledgerly accepts {MAX_DESCRIPTION}"
                )

    async def find(self, invoice_number: str) -> ExternalInvoice | None:
        resp = await self._request("GET", self._path("/invoices"), params={"number": invoice_number})
        for item in resp.json().get("data", []):
            if item.get("number") == invoice_number:
                return ExternalInvoice(str(item["id"]), item["number"], Decimal(str(item["total"])), item.get("status"))
        return None

    async def aclose(self) -> None:
        client, self._client = self._client, None
        if client is not None and self._loop is asyncio.get_running_loop():
            await client.aclose()

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
