"""QuickBooks Online (QBO) Accounting API v3 connector.

Creates invoices with ``POST {api_url}/v3/company/{realmId}/invoice?minorversion=N&requestid=K``
(facts: ``/work/shared/billing-apis.md`` §3; field reference ``tests/specs/quickbooks/openapi.yaml``):

* **Auth** — OAuth 2.0: ``POST https://oauth.platform.intuit.com/oauth2/v1/tokens/bearer`` with
  ``grant_type=refresh_token`` and HTTP Basic ``client_id:client_secret``; access tokens last 1 h,
  the refresh token changes on refresh (always keep the latest). Tokens live in a
  :class:`~connectors.sdk.oauth2.TokenStore`; refreshes are single-flight per tenant across coroutines and
  processes (:class:`~connectors.sdk.oauth2.OAuth2TokenManager`). A 401 refreshes exactly once; a second
  401 is :class:`AuthError`.
* **Idempotency** — QBO's ``requestid`` query parameter (≤ 50 characters, ≤ 36 on ``/batch``,
  unique per company): a repeat returns the original response instead of executing again.
  :func:`request_id` derives it only from business identity (tenant, invoice key, operation), so
  each step — ``create``, ``send`` — has its own key. Because the retention window is undocumented,
  the connector also relies on ``DocNumber`` (our invoice number) being unique per company: a
  duplicate answers error 6140 "Duplicate Document Number Error" (Intuit's blog lists 6210; both are
  recognised, as is the message), and the existing invoice is looked up with
  ``GET /query?query=select * from Invoice where DocNumber = '...'`` and returned with ``created=False``.
  QBO replays *failed* responses too: re-delivering the same invoice version after fixing its data
  (e.g. a tax-code mapping) within Intuit's retention window gets the original fault back; a new
  revision (``rN+1``) has a new key.
* **Totals** — see :mod:`connectors.quickbooks.mapper`: line ``Amount`` = our net with a
  ``Qty``/``UnitPrice`` layout QBO accepts, and explicit ``TxnTaxDetail`` tax lines, so
  ``TotalAmt`` equals our total to the cent (checked on every response: ``details["total_matches"]``).
* **Status/e-mail** — QBO invoices have no draft state (an invoice is an open receivable once
  created). ``email_invoice: true`` sends it with ``POST /invoice/{id}/send`` (own ``requestid``;
  skipped when ``EmailStatus`` is already ``EmailSent``).
* **Batch** — :meth:`QuickBooksConnector.deliver_many` uses ``POST /batch`` (≤ 30 items per call,
  per-item results matched by ``bId``).
* **Limits** — 500 requests/minute per company, 10 concurrent (429 ``ThrottlingFault``; wait
  ``Retry-After`` or 60 s), 40 batch calls/minute.
* **Errors** — Intuit ``Fault`` bodies (``{"Fault": {"Error": [{"Message", "Detail", "code",
  "element"}], "type"}}``), also inside HTTP 200 responses, mapped onto the taxonomy.
"""

from __future__ import annotations

import asyncio
import hashlib
import logging
from collections.abc import Awaitable, Callable, Sequence
from decimal import Decimal
from typing import Any
from urllib.parse import urljoin

import httpx
from pydantic import BaseModel, ConfigDict, Field, SecretStr

from connectors.base import (
    AuthError,
    BatchItem,
    Capabilities,
    ConfigError,
    Connector,
    ConnectorError,
    ConnectorSettings,
    DeliveryResult,
    ExternalInvoice,
    PermanentError,
    RateLimitedError,
    RetryableError,
    UncertainOutcomeError,
    UnknownAccountError,
)
from connectors.errors import retry_after_seconds
from connectors.quickbooks.mapper import check_limits, dumps, invoice_from_qbo, invoice_to_qbo, loads, tax_lines
from connectors.sdk.contacts import ContactQuery, ContactResolver, LookupField
from connectors.sdk.idempotency import QUICKBOOKS, QUICKBOOKS_BATCH, idempotency_key, make_key
from connectors.sdk.invoice import Invoice, LineKind
from connectors.sdk.oauth2 import OAuth2Config, OAuth2TokenManager, default_token_store, refresh_grant, token_key

log = logging.getLogger("connectors.quickbooks")

#: Error codes QBO uses for a duplicate DocNumber: 6140 as observed in practice, 6210 per Intuit's blog table.
DUPLICATE_DOC_NUMBER_CODES = frozenset({"6140", "6210"})
DUPLICATE_NAME_CODE = "6240"
SCOPE = "com.intuit.quickbooks.accounting"


class QboTaxCode(BaseModel):
    """One tax rate of the company: ``tax_code_id`` (for ``TaxCodeRef``) and ``tax_rate_id`` (for ``TaxRateRef``)."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    tax_code_id: str = Field(min_length=1)
    tax_rate_id: str = Field(min_length=1)


class QuickBooksSettings(ConnectorSettings):
    """Settings of a tenant whose ``billing.system`` is ``quickbooks``.

    Secrets are environment variable *names*: ``client_secret_env``, ``refresh_token_env`` (the
    first refresh token, from ``broker connectors authorize`` or Intuit's OAuth playground; later
    ones live in the token store). ``realm_id`` is the company id. ``tax_codes`` maps a tax-rate
    percentage (``"23"``) to the company's tax code and rate ids; ``item_ids`` maps our line kinds
    (``labour``, ``part``, ...) to QBO Item ids (``default_item_id`` otherwise). ``email_invoice``
    sends each new invoice to the customer; ``create_contacts`` lets the connector create a missing
    customer (otherwise a missing ``contact_id`` is a permanent error naming the client).
    """

    api_url: str = "https://quickbooks.api.intuit.com"
    token_url: str = "https://oauth.platform.intuit.com/oauth2/v1/tokens/bearer"
    authorize_url: str = "https://appcenter.intuit.com/connect/oauth2"
    realm_id: str = Field(pattern=r"^\d{1,32}$")
    client_id: str = Field(min_length=1)
    client_secret_env: str = Field(min_length=1)
    refresh_token_env: str = Field(min_length=1)
    minor_version: int = Field(default=75, ge=1, le=999)
    default_item_id: str = Field(default="1", min_length=1)
    item_ids: dict[LineKind, str] = Field(default_factory=dict)
    tax_codes: dict[str, QboTaxCode] = Field(default_factory=dict)
    email_invoice: bool = False
    create_contacts: bool = False
    batch_size: int = Field(default=30, ge=1, le=30)


def request_id(invoice: Invoice, operation: str) -> str:
    """Deterministic ``requestid`` for ``operation`` (``"create"``, ``"send"``) on ``invoice``.

    :func:`connectors.sdk.idempotency.idempotency_key` with QuickBooks' rules: the readable
    ``f"{tenant}:quickbooks:{invoice_key}:{operation}"`` when it is ≤ 50 characters of
    ``[A-Za-z0-9:._-]``, else the first 50 hex digits of its SHA-256. Only business identity goes
    in, so a retry of the same step — from any worker — sends the same key, and each step has its own.
    """
    return idempotency_key(invoice.tenant, "quickbooks", invoice.invoice_key, operation, QUICKBOOKS)


def batch_request_id(tenant: str, invoice_keys: Sequence[str]) -> str:
    """``requestid`` of one ``/batch`` call (≤ 36 characters): derived from the tenant and the *sorted*
    invoice keys of the batch, so the same batch retried carries the same key."""
    keys = hashlib.sha256("\n".join(sorted(invoice_keys)).encode("utf-8")).hexdigest()
    return make_key(f"{tenant}:quickbooks:batch:{keys}", QUICKBOOKS_BATCH)


def customer_request_id(tenant: str, client_id: str) -> str:
    """``requestid`` of creating the customer of our client ``client_id``."""
    return make_key(f"{tenant}:quickbooks:customer:{client_id}:create", QUICKBOOKS)


def quote(value: str) -> str:
    """A QBO query-language string literal: ``'`` and ``\\`` escaped with a backslash."""
    return "'" + value.replace("\\", "\\\\").replace("'", "\\'") + "'"


def _fault_errors(body: Any) -> list[dict]:
    if isinstance(body, dict):
        fault = body.get("Fault") or body.get("fault")
        if isinstance(fault, dict):
            errors = fault.get("Error") or fault.get("error") or []
            return [e for e in errors if isinstance(e, dict)]
    return []


def _fault_type(body: Any) -> str:
    if isinstance(body, dict) and isinstance(body.get("Fault"), dict):
        return str(body["Fault"].get("type") or "")
    return ""


def _describe_errors(errors: list[dict]) -> str:
    parts = []
    for e in errors:
        code = e.get("code") or "?"
        text = e.get("Detail") or e.get("Message") or ""
        element = f" [{e['element']}]" if e.get("element") else ""
        parts.append(f"{code} {text}{element}".strip())
    return "; ".join(parts) or "no error details"


def is_duplicate_doc_number(errors: list[dict]) -> bool:
    """True when the Fault reports a duplicate ``DocNumber`` (code 6140/6210 or the message)."""
    for e in errors:
        text = f"{e.get('Message', '')} {e.get('Detail', '')}".lower()
        if "duplicate document number" in text:
            return True
        if str(e.get("code")) == "6140":
            return True
    return False


class QuickBooksConnector(Connector):
    """QuickBooks Online connector for one company (``realm_id``) of one broker tenant.

    ``QuickBooksConnector(settings, *, tenant, token_store=None, on_refresh_token=None)``.
    ``on_refresh_token(new_token)`` (sync or async) is called after each rotation, once the token
    store has it. Errors: :class:`RateLimitedError` (429), :class:`RetryableError` (5xx, request not
    sent), :class:`UncertainOutcomeError` (sent, no answer: reconcile with :meth:`find`),
    :class:`AuthError` (token refused, 401 after one refresh, 403), :class:`UnknownAccountError`
    (realm not reachable, from :meth:`check`), :class:`PermanentError` (validation faults, field
    limits, unmapped tax rate), :class:`ConfigError` (settings, missing secret variable).
    """

    name = "quickbooks"
    version = "0.1.0"
    capabilities = Capabilities(
        native_idempotency=True,
        lookup_by_reference=True,
        batch_size=30,
        amendments=False,
        oauth2=True,
        rate_limit_per_minute=500,
        max_concurrency=10,
        daily_limit=None,
    )
    Settings = QuickBooksSettings

    def __init__(
        self,
        settings: QuickBooksSettings | dict,
        *,
        tenant: str,
        token_store=None,
        on_refresh_token: Callable[[str], Any | Awaitable[Any]] | None = None,
    ):
        super().__init__(settings, tenant=tenant, token_store=token_store)
        self.settings: QuickBooksSettings
        self.on_refresh_token = on_refresh_token
        self._client: httpx.AsyncClient | None = None
        self._client_loop: asyncio.AbstractEventLoop | None = None
        self._client_secret: SecretStr | None = None
        self._tokens: OAuth2TokenManager | None = None
        self._contacts: ContactResolver | None = None

    @property
    def contacts(self) -> ContactResolver:
        """The tenant's contact resolver, built on first use (the host may set ``self.clients`` after construction)."""
        if self._contacts is None:
            self._contacts = ContactResolver(
                self, allow_create=self.settings.create_contacts, clients=self.clients, setting_name="create_contacts"
            )
        return self._contacts

    def __repr__(self) -> str:
        return f"QuickBooksConnector(tenant={self.tenant!r}, realm_id={self.settings.realm_id!r})"

    # ------------------------------------------------------------------ secrets and tokens
    def _secret_client(self) -> SecretStr:
        if self._client_secret is None:
            self._client_secret = self.secret("client_secret_env")
        return self._client_secret

    def secret_values(self) -> list[str]:
        values = super().secret_values()
        if self._client_secret is not None:
            values.append(self._client_secret.get_secret_value())
        if self._tokens is not None:
            values.extend(self._tokens.known_secrets())
        return values

    def store_key(self) -> str:
        return token_key("quickbooks", self.tenant, issuer=self.settings.token_url, client_id=self.settings.client_id)

    def _token_manager(self) -> OAuth2TokenManager:
        if self._tokens is None:
            if self.token_store is None:
                self.token_store = default_token_store()

            async def refresh(refresh_token: SecretStr | None):
                return await refresh_grant(
                    self._http(),
                    self.settings.token_url,
                    client_id=self.settings.client_id,
                    client_secret=self._secret_client(),
                    refresh_token=refresh_token,
                    auth_method="basic",
                    what="QuickBooks token refresh",
                    hint=f": check {self.settings.client_secret_env} and {self.settings.refresh_token_env}",
                )

            self._tokens = OAuth2TokenManager(
                key=self.store_key(),
                store=self.token_store,
                refresh=refresh,
                seed=lambda: self.secret("refresh_token_env"),
                on_rotate=self.on_refresh_token,
            )
        return self._tokens

    @property
    def token_refreshes(self) -> int:
        """Refresh grants performed by this connector."""
        return self._tokens.refreshes if self._tokens is not None else 0

    def oauth2_config(self) -> OAuth2Config:
        return OAuth2Config(
            authorize_url=self.settings.authorize_url,
            token_url=self.settings.token_url,
            client_id=self.settings.client_id,
            client_secret=self._secret_client(),
            scopes=(SCOPE,),
            store_key=self.store_key(),
            auth_method="basic",
            use_pkce=False,
        )

    # ------------------------------------------------------------------ HTTP plumbing
    def _http(self) -> httpx.AsyncClient:
        loop = asyncio.get_running_loop()
        if self._client is not None and self._client_loop is not loop:
            self._client = None  # a client of a closed loop: start afresh
        if self._client is None:
            self._client_loop = loop
            self._client = httpx.AsyncClient(
                timeout=httpx.Timeout(self.settings.timeout_seconds),
                headers={"User-Agent": "maintenance-billing-broker/0.1 (quickbooks connector)"},
            )
        return self._client

    def _company_url(self, resource: str) -> str:
        base = self.settings.api_url.rstrip("/") + "/"
        return urljoin(base, f"v3/company/{self.settings.realm_id}/{resource.lstrip('/')}")

    async def _send(self, method: str, url: str, **kwargs: Any) -> httpx.Response:
        what = f"QuickBooks {method} {httpx.URL(url).path}"
        try:
            return await self._http().request(method, url, **kwargs)
        except (httpx.ConnectError, httpx.ConnectTimeout, httpx.PoolTimeout) as exc:
            raise RetryableError(f"{what}: request not sent ({type(exc).__name__})") from None
        except (
            httpx.ReadTimeout,
            httpx.RemoteProtocolError,
            httpx.ReadError,
            httpx.WriteError,
            httpx.WriteTimeout,
        ) as exc:
            raise UncertainOutcomeError(
                f"{what}: request sent but no response ({type(exc).__name__}); outcome unknown, reconcile with find()"
            ) from None
        except (httpx.UnsupportedProtocol, httpx.InvalidURL) as exc:
            raise ConfigError(f"{what}: bad URL in settings ({exc})") from None
        except httpx.TransportError as exc:
            raise UncertainOutcomeError(f"{what}: transport error ({type(exc).__name__})") from None

    async def _call(
        self,
        method: str,
        resource: str,
        *,
        params: dict[str, str] | None = None,
        headers: dict[str, str] | None = None,
        **kwargs: Any,
    ) -> httpx.Response:
        """Authenticated company call with ``minorversion``; on 401 refresh exactly once and retry."""
        url = self._company_url(resource)
        query = {"minorversion": str(self.settings.minor_version), **(params or {})}
        manager = self._token_manager()
        token = await manager.access_token()
        for attempt in (1, 2):
            all_headers = {"Accept": "application/json", "Authorization": f"Bearer {token.get_secret_value()}"}
            all_headers.update(headers or {})
            resp = await self._send(method, url, params=query, headers=all_headers, **kwargs)
            if resp.status_code != 401:
                return resp
            if attempt == 1:
                log.info(
                    "quickbooks tenant=%s: 401 from %s, refreshing the access token once",
                    self.tenant,
                    httpx.URL(url).path,
                )
                token = await manager.access_token(stale=token)
        raise AuthError(
            self.scrub(
                f"QuickBooks {method} {httpx.URL(url).path}: 401 after a token refresh ({_describe_errors(_fault_errors(self._json(resp)))})"
            ),
            http_status=401,
        )

    @staticmethod
    def _json(resp: httpx.Response) -> Any:
        try:
            return loads(resp.content)
        except ValueError:
            return None

    @staticmethod
    def _rate_limited(resp: httpx.Response, what: str) -> RateLimitedError:
        retry_after = retry_after_seconds(resp.headers.get("Retry-After"), 60.0)  # Intuit: "on 429 wait 60 s"
        return RateLimitedError(f"{what}: 429 throttled, retry after {retry_after:g}s", retry_after=retry_after)

    def _raise_for_status(self, resp: httpx.Response, what: str) -> Any:
        """Return the parsed body of a successful response; map anything else (including a Fault in a 200)."""
        status = resp.status_code
        body = self._json(resp)
        errors = _fault_errors(body)
        if 200 <= status < 300 and not errors:
            return body
        if status == 429:
            raise self._rate_limited(resp, what)
        detail = self.scrub(_describe_errors(errors) if errors else (resp.text[:200] if resp.text else "no body"))
        if status >= 500:
            raise RetryableError(f"{what}: HTTP {status} ({detail})", http_status=status)
        if status in (401, 403):
            raise AuthError(f"{what}: HTTP {status} {_fault_type(body)} ({detail})", http_status=status)
        if errors and any(str(e.get("code")) in ("3001", "3002") for e in errors):
            raise RateLimitedError(f"{what}: throttled ({detail})", retry_after=60.0, http_status=status)
        if errors and _fault_type(body) == "SystemFault":
            raise RetryableError(f"{what}: {detail}", http_status=status)
        raise PermanentError(f"{what}: QuickBooks rejected it: {detail}", http_status=status if status >= 400 else 400)

    # ------------------------------------------------------------------ Connector API
    async def check(self) -> None:
        """``GET /v3/company/{realmId}/companyinfo/{realmId}`` — the cheapest authenticated call.

        :class:`UnknownAccountError` when the token cannot reach the company (403), :class:`AuthError`
        when credentials are refused, :class:`ConfigError` for a missing secret variable.
        """
        resp = await self._call("GET", f"companyinfo/{self.settings.realm_id}")
        if resp.status_code == 403:
            raise UnknownAccountError(
                f"unknown QuickBooks company (realm) {self.settings.realm_id}: these credentials cannot reach it "
                f"({_describe_errors(_fault_errors(self._json(resp)))})"
            )
        body = self._raise_for_status(resp, "QuickBooks GET companyinfo")
        if not isinstance(body, dict) or not isinstance(body.get("CompanyInfo"), dict):
            raise RetryableError("QuickBooks GET companyinfo: unreadable body", http_status=resp.status_code)

    async def deliver(self, invoice: Invoice) -> DeliveryResult:
        """Create ``invoice`` unless it exists; then send it by e-mail when ``email_invoice``.

        ``POST invoice?minorversion&requestid=request_id(invoice, "create")``. A duplicate
        ``DocNumber`` fault is resolved by :meth:`find` and returned with ``created=False``.
        ``details``: ``TotalAmt``, ``TotalTax`` (decimal strings), ``total_matches``, ``EmailStatus``,
        ``requestid`` (and ``duplicate``, ``email_error`` when they apply).
        """
        self._precheck(invoice)
        customer_id = await self.contacts.resolve(invoice)
        body = invoice_to_qbo(invoice, self.settings, customer_id=customer_id)
        key = request_id(invoice, "create")
        what = f"QuickBooks POST invoice {invoice.invoice_number}"
        resp = await self._call(
            "POST",
            "invoice",
            params={"requestid": key},
            content=dumps(body),
            headers={"Content-Type": "application/json"},
        )
        parsed = self._json(resp)
        errors = _fault_errors(parsed)
        if errors and resp.status_code == 400 and is_duplicate_doc_number(errors):
            result = await self._existing(invoice, key)
        else:
            parsed = self._raise_for_status(resp, what)
            entity = parsed.get("Invoice") if isinstance(parsed, dict) else None
            if not isinstance(entity, dict) or not entity.get("Id"):
                raise UncertainOutcomeError(
                    f"{what}: HTTP {resp.status_code} without an Invoice", http_status=resp.status_code
                )
            result = self._result(invoice, entity, created=True, key=key)
        return await self._maybe_email(invoice, result)

    def _precheck(self, invoice: Invoice) -> None:
        """Field limits and tax mappings, before any call (even a customer lookup) is made."""
        check_limits(invoice)
        tax_lines(invoice, self.settings)

    def _result(self, invoice: Invoice, entity: dict, *, created: bool, key: str) -> DeliveryResult:
        total = entity.get("TotalAmt")
        tax = (
            (entity.get("TxnTaxDetail") or {}).get("TotalTax") if isinstance(entity.get("TxnTaxDetail"), dict) else None
        )
        matches = isinstance(total, (Decimal, int)) and Decimal(total) == invoice.total
        if not matches:
            log.warning(
                "quickbooks tenant=%s invoice=%s: QuickBooks total %s differs from ours %s",
                self.tenant,
                invoice.invoice_number,
                total,
                invoice.total,
            )
        details = {
            "TotalAmt": str(total),
            "TotalTax": str(tax),
            "total_matches": matches,
            "EmailStatus": entity.get("EmailStatus"),
            "requestid": key,
        }
        if not created:
            details["duplicate"] = True
        return DeliveryResult(
            invoice_key=invoice.invoice_key,
            external_id=str(entity["Id"]),
            external_number=str(entity.get("DocNumber") or invoice.invoice_number),
            created=created,
            details=details,
        )

    async def _existing(self, invoice: Invoice, key: str) -> DeliveryResult:
        entity = await self._find_entity(invoice.invoice_number)
        if entity is None:
            raise RetryableError(
                f"QuickBooks reported DocNumber {invoice.invoice_number} as taken but the query does not return it yet"
            )
        return self._result(invoice, entity, created=False, key=key)

    async def _maybe_email(self, invoice: Invoice, result: DeliveryResult) -> DeliveryResult:
        if not self.settings.email_invoice or result.details.get("EmailStatus") == "EmailSent":
            return result
        key = request_id(invoice, "send")
        what = f"QuickBooks POST invoice/{result.external_id}/send ({invoice.invoice_number})"
        resp = await self._call(
            "POST",
            f"invoice/{result.external_id}/send",
            params={"requestid": key},
            content=b"",
            headers={"Content-Type": "application/octet-stream"},
        )
        details = dict(result.details)
        try:
            parsed = self._raise_for_status(resp, what)
        except PermanentError as exc:
            # The invoice exists: report the e-mail failure instead of dead-lettering a delivered invoice.
            log.warning(
                "quickbooks tenant=%s invoice=%s: e-mail not sent: %s", self.tenant, invoice.invoice_number, exc
            )
            details["email_error"] = str(exc)
            return DeliveryResult(
                result.invoice_key, result.external_id, result.external_number, result.created, result.attempts, details
            )
        entity = parsed.get("Invoice") if isinstance(parsed, dict) else None
        details["EmailStatus"] = entity.get("EmailStatus") if isinstance(entity, dict) else "EmailSent"
        details["send_requestid"] = key
        return DeliveryResult(
            result.invoice_key, result.external_id, result.external_number, result.created, result.attempts, details
        )

    async def _query(self, text: str, what: str) -> dict:
        resp = await self._call("GET", "query", params={"query": text})
        body = self._raise_for_status(resp, what)
        response = body.get("QueryResponse") if isinstance(body, dict) else None
        if not isinstance(response, dict):
            raise RetryableError(f"{what}: unreadable body", http_status=resp.status_code)
        return response

    async def _find_entity(self, invoice_number: str) -> dict | None:
        response = await self._query(
            f"select * from Invoice where DocNumber = {quote(invoice_number)}",
            f"QuickBooks query Invoice DocNumber={invoice_number}",
        )
        for entity in response.get("Invoice") or []:
            if isinstance(entity, dict) and str(entity.get("DocNumber", "")) == invoice_number and entity.get("Id"):
                return entity
        return None

    async def find(self, invoice_number: str) -> ExternalInvoice | None:
        """``GET /query?query=select * from Invoice where DocNumber = '<n>'`` — the exact match or ``None``."""
        entity = await self._find_entity(invoice_number)
        return invoice_from_qbo(entity) if entity is not None else None

    async def _find_many(self, numbers: Sequence[str]) -> dict[str, dict]:
        found: dict[str, dict] = {}
        for start in range(0, len(numbers), 30):
            chunk = list(numbers[start : start + 30])
            listed = ", ".join(quote(n) for n in chunk)
            response = await self._query(
                f"select * from Invoice where DocNumber in ({listed}) maxresults 1000",
                f"QuickBooks query Invoice DocNumber in ({len(chunk)})",
            )
            for entity in response.get("Invoice") or []:
                if isinstance(entity, dict) and entity.get("DocNumber") in chunk and entity.get("Id"):
                    found.setdefault(str(entity["DocNumber"]), entity)
        return found

    # ------------------------------------------------------------------ batch
    async def deliver_many(self, invoices: Sequence[Invoice]) -> list[BatchItem]:
        """Deliver with ``POST /batch`` (≤ ``batch_size`` invoices per call); one :class:`BatchItem` per invoice, in order.

        Each chunk is sorted by invoice key, items are ``bId`` ``b0``..``b29`` and the call carries
        :func:`batch_request_id` of the chunk's keys, so a retried chunk is replayed by QBO. A
        duplicate ``DocNumber`` item is looked up (one ``DocNumber in (...)`` query) and reported
        ``created=False``. After a 429, auth or config error the remaining invoices get that error.
        Retry failed items one by one (:meth:`deliver`, their own ``requestid``): the same batch
        again would be answered with the replayed batch response.
        """
        results: dict[str, BatchItem] = {}
        stop: ConnectorError | None = None
        size = self.settings.batch_size
        for start in range(0, len(invoices), size):
            chunk = list(invoices[start : start + size])
            if stop is not None:
                for invoice in chunk:
                    results[invoice.invoice_key] = BatchItem(invoice.invoice_key, error=stop)
                continue
            try:
                results.update(await self._deliver_chunk(chunk))
            except (RateLimitedError, AuthError, ConfigError) as exc:
                stop = exc
                for invoice in chunk:
                    results.setdefault(invoice.invoice_key, BatchItem(invoice.invoice_key, error=exc))
            except ConnectorError as exc:
                for invoice in chunk:
                    results.setdefault(invoice.invoice_key, BatchItem(invoice.invoice_key, error=exc))
        return [results[invoice.invoice_key] for invoice in invoices]

    async def _deliver_chunk(self, chunk: list[Invoice]) -> dict[str, BatchItem]:
        out: dict[str, BatchItem] = {}
        ready: list[tuple[Invoice, dict]] = []
        for invoice in sorted(chunk, key=lambda i: i.invoice_key):
            try:
                self._precheck(invoice)
                customer_id = await self.contacts.resolve(invoice)
                ready.append((invoice, invoice_to_qbo(invoice, self.settings, customer_id=customer_id)))
            except (PermanentError, ConfigError) as exc:
                if isinstance(exc, ConfigError):
                    raise
                out[invoice.invoice_key] = BatchItem(invoice.invoice_key, error=exc)
        if not ready:
            return out
        bids = {f"b{i}": invoice for i, (invoice, _) in enumerate(ready)}
        request = {
            "BatchItemRequest": [
                {"bId": f"b{i}", "operation": "create", "Invoice": body} for i, (_, body) in enumerate(ready)
            ]
        }
        key = batch_request_id(self.tenant, [invoice.invoice_key for invoice, _ in ready])
        resp = await self._call(
            "POST",
            "batch",
            params={"requestid": key},
            content=dumps(request),
            headers={"Content-Type": "application/json"},
        )
        body = self._raise_for_status(resp, f"QuickBooks POST batch ({len(ready)} invoices)")
        answers = body.get("BatchItemResponse") if isinstance(body, dict) else None
        if not isinstance(answers, list):
            raise UncertainOutcomeError(
                "QuickBooks POST batch: response without BatchItemResponse", http_status=resp.status_code
            )
        by_bid = {str(a.get("bId")): a for a in answers if isinstance(a, dict)}
        duplicates: list[Invoice] = []
        created: list[tuple[Invoice, DeliveryResult]] = []
        for bid, invoice in bids.items():
            answer = by_bid.get(bid)
            what = f"QuickBooks batch item {bid} ({invoice.invoice_number})"
            if answer is None:
                out[invoice.invoice_key] = BatchItem(
                    invoice.invoice_key,
                    error=UncertainOutcomeError(f"{what}: missing from the batch response; reconcile with find()"),
                )
                continue
            errors = _fault_errors(answer)
            if errors:
                if is_duplicate_doc_number(errors):
                    duplicates.append(invoice)
                else:
                    out[invoice.invoice_key] = BatchItem(invoice.invoice_key, error=self._item_error(answer, what))
                continue
            entity = answer.get("Invoice")
            if not isinstance(entity, dict) or not entity.get("Id"):
                out[invoice.invoice_key] = BatchItem(
                    invoice.invoice_key,
                    error=UncertainOutcomeError(f"{what}: no Invoice in the answer; reconcile with find()"),
                )
                continue
            created.append((invoice, self._result(invoice, entity, created=True, key=key)))
        if duplicates:
            existing = await self._find_many([i.invoice_number for i in duplicates])
            for invoice in duplicates:
                entity = existing.get(invoice.invoice_number)
                if entity is None:
                    out[invoice.invoice_key] = BatchItem(
                        invoice.invoice_key,
                        error=RetryableError(
                            f"QuickBooks reported DocNumber {invoice.invoice_number} as taken but the query does not return it yet"
                        ),
                    )
                else:
                    created.append((invoice, self._result(invoice, entity, created=False, key=key)))
        for invoice, result in created:
            try:
                out[invoice.invoice_key] = BatchItem(
                    invoice.invoice_key, result=await self._maybe_email(invoice, result)
                )
            except (RateLimitedError, AuthError, ConfigError):
                raise
            except ConnectorError as exc:
                out[invoice.invoice_key] = BatchItem(invoice.invoice_key, error=exc)
        return out

    def _item_error(self, answer: dict, what: str) -> ConnectorError:
        errors = _fault_errors(answer)
        detail = self.scrub(_describe_errors(errors))
        fault_type = str((answer.get("Fault") or {}).get("type") or "")
        if fault_type == "SystemFault":
            return RetryableError(f"{what}: {detail}")
        if any(str(e.get("code")) in ("3001", "3002") for e in errors):
            return RateLimitedError(f"{what}: {detail}", retry_after=60.0)
        if fault_type in ("AuthenticationFault", "AuthorizationFault"):
            return AuthError(f"{what}: {detail}")
        return PermanentError(f"{what}: QuickBooks rejected it: {detail}", http_status=400)

    # ------------------------------------------------------------------ contacts (ContactDirectory)
    async def find_contact(self, field: LookupField, value: str) -> str | None:
        """Customer id by ``DisplayName`` (name) or ``PrimaryEmailAddr`` (email). QBO's query language
        cannot filter on tax identifiers, so ``tax_number`` lookups return ``None``."""
        column = {"name": "DisplayName", "email": "PrimaryEmailAddr"}.get(field)
        if column is None:
            return None
        response = await self._query(
            f"select * from Customer where {column} = {quote(value)}", f"QuickBooks query Customer {column}"
        )
        for customer in response.get("Customer") or []:
            if not isinstance(customer, dict):
                continue
            got = customer.get(column)
            got = got.get("Address") if isinstance(got, dict) else got
            if isinstance(got, str) and got.strip().casefold() == value.strip().casefold():
                return str(customer["Id"])
        return None

    async def create_contact(self, query: ContactQuery) -> str:
        """``POST /customer`` with ``DisplayName`` (and e-mail / tax id when known); a duplicate name is looked up."""
        body: dict[str, Any] = {"DisplayName": query.name}
        if query.email:
            body["PrimaryEmailAddr"] = {"Address": query.email}
        if query.tax_number:
            body["PrimaryTaxIdentifier"] = query.tax_number
        resp = await self._call(
            "POST",
            "customer",
            params={"requestid": customer_request_id(self.tenant, query.client_id)},
            content=dumps(body),
            headers={"Content-Type": "application/json"},
        )
        errors = _fault_errors(self._json(resp))
        if errors and any(str(e.get("code")) == DUPLICATE_NAME_CODE for e in errors):
            found = await self.find_contact("name", query.name)
            if found:
                return found
        parsed = self._raise_for_status(resp, f"QuickBooks POST customer for client {query.client_id}")
        customer = parsed.get("Customer") if isinstance(parsed, dict) else None
        if not isinstance(customer, dict) or not customer.get("Id"):
            raise UncertainOutcomeError("QuickBooks POST customer: response without a Customer")
        return str(customer["Id"])

    async def aclose(self) -> None:
        if self._client is not None:
            client, self._client = self._client, None
            try:
                if self._client_loop is asyncio.get_running_loop():
                    await client.aclose()
            except RuntimeError:
                pass


__all__ = [
    "QboTaxCode",
    "QuickBooksConnector",
    "QuickBooksSettings",
    "batch_request_id",
    "is_duplicate_doc_number",
    "quote",
    "request_id",
]
