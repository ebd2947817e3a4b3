"""Moloni (Portugal) REST API v1 connector — an AT-certified invoicing system (certificate 2860).

Creates a sales invoice (*fatura*) in two retry-safe steps:

1. **draft** — ``POST {api_url}/v1/invoices/insert/?access_token=…`` with ``status=0`` and our
   invoice number in ``your_reference`` (Moloni numbers documents itself from the AT-registered
   series ``document_set_id``, so our key can only travel in a reference field);
2. **close** — ``POST …/v1/invoices/update/`` with ``document_id`` and ``status=1`` (and
   ``send_email[]`` when the tenant wants the customer e-mailed). This is exactly what the official
   WooCommerce plugin does (``moloni-pt/woocommerce`` ``src/Controllers/Documents.php``: insert as
   draft, compare totals, then ``<type>/update`` with ``status = 1`` and ``send_email``); closing is
   what makes the document legally issued and communicated to the AT. A closed invoice can no
   longer be updated or deleted ("Não é possível actualizar uma fatura que já se encontre no estado
   fechado", https://moloni.pt/dev/documents/invoices/update).

Moloni has **no idempotency key** (none documented), so every :meth:`MoloniConnector.deliver`
starts with a lookup — ``invoices/getAll`` filtered by ``your_reference`` — and resumes from what
it finds: nothing -> insert; a draft -> check totals and close it; a closed invoice -> done
(``created=False``). Before closing, the draft is read back (``invoices/getOne``) and its
``net_value`` (the amount payable) must equal our total to the cent, else nothing is issued.

Auth (https://moloni.pt/dev/autenticacao; plugin ``src/Curl.php``): OAuth2 at
``{api_url}/v1/grant/`` called with query parameters — ``grant_type=refresh_token`` (a token from
``broker connectors authorize moloni`` or ``refresh_token_env``) or ``grant_type=password``
(``username`` + ``password_env``, the plugin's native flow); the access token travels as the
``access_token`` query parameter of every call (so URLs are never logged unredacted: see
:func:`install_log_redaction`). Tokens live in the connector's token store and are refreshed
single-flight (:class:`connectors.sdk.oauth2.OAuth2TokenManager`); a 401 triggers exactly one refresh.

Limits: none published. The plugin retries HTTP 429 up to 5 times with a 2 s pause; we map 429 to
:class:`RateLimitedError` with ``Retry-After`` when present, else 2 s.
"""

from __future__ import annotations

import asyncio
import logging
import re
from collections.abc import Mapping
from decimal import Decimal
from typing import Any, Literal

import httpx
from pydantic import BaseModel, ConfigDict, Field, SecretStr, model_validator

from broker.config import ConfigError as BrokerConfigError
from broker.config import resolve_secret
from connectors.base import (
    AuthError,
    Capabilities,
    ConfigError,
    Connector,
    ConnectorSettings,
    DeliveryResult,
    ExternalInvoice,
    PermanentError,
    RateLimitedError,
    RetryableError,
    UncertainOutcomeError,
    UnknownAccountError,
)
from connectors.moloni.mapper import (
    EXEMPTION_CODE_PATTERN,
    document_label,
    form_body,
    invoice_from_moloni,
    invoice_to_moloni,
    loads,
    moloni_totals,
    reference_of,
)
from connectors.sdk.contacts import ContactQuery, ContactResolver, LookupField, same_value
from connectors.sdk.invoice import Invoice, LineKind
from connectors.sdk.oauth2 import OAuth2Config, OAuth2TokenManager, TokenSet, TokenStore, default_token_store, token_key

log = logging.getLogger("connectors.moloni")

#: Query parameters whose values are secrets (redacted from httpx's request log lines).
_SECRET_PARAMS = ("access_token", "api_key", "client_secret", "password", "refresh_token", "code")
_SECRET_QUERY = re.compile(r"((?:%s)=)[^&\s\"']+" % "|".join(_SECRET_PARAMS))
#: Pause after a 429 without ``Retry-After`` — the official plugin's ``sleep(2)`` between retries.
DEFAULT_RETRY_AFTER = 2.0
#: getAll page size (Moloni: default and maximum 50).
PAGE_SIZE = 50


class _RedactQuerySecrets(logging.Filter):
    """Rewrites log records so ``access_token=…``/``api_key=…`` query values read ``***``."""

    marker = "broker-redact-query-secrets:moloni"

    def filter(self, record: logging.LogRecord) -> bool:
        if record.args:
            args = record.args if isinstance(record.args, tuple) else (record.args,)
            record.args = tuple(_SECRET_QUERY.sub(r"\1***", str(a)) if ("=" in str(a)) else a for a in args)
        if isinstance(record.msg, str) and "=" in record.msg:
            record.msg = _SECRET_QUERY.sub(r"\1***", record.msg)
        return True


def install_log_redaction() -> None:
    """Install (once) a filter on the ``httpx``/``httpcore`` loggers that redacts secret query values.

    httpx logs every request URL at INFO (``HTTP Request: POST https://…?access_token=…``); Moloni
    and InvoiceXpress put credentials in the query string, so without this a DEBUG/INFO log would
    carry them.
    """
    for name in ("httpx", "httpcore"):
        logger = logging.getLogger(name)
        if not any(isinstance(f, _RedactQuerySecrets) for f in logger.filters):
            logger.addFilter(_RedactQuerySecrets())


install_log_redaction()


class MoloniCustomerDefaults(BaseModel):
    """Values for the fields ``customers/insert`` requires that the broker does not know
    (https://moloni.pt/dev/entities/customers/insert): ids from ``languages/getAll``,
    ``countries/getAll``, ``maturityDates/getAll``, ``paymentMethods/getAll``; address and city
    (required by Moloni) are the tenant's choice of placeholder until the customer record is completed."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    language_id: int = Field(default=1, gt=0)
    country_id: int = Field(default=1, gt=0)
    maturity_date_id: int = Field(gt=0)
    payment_method_id: int = Field(gt=0)
    address: str = Field(min_length=1)
    city: str = Field(min_length=1)
    zip_code: str = ""


#: The generic Portuguese NIF for an unidentified final consumer ("consumidor final").
FINAL_CONSUMER_VAT = "999999990"


class MoloniSettings(ConnectorSettings):
    """``billing.settings`` of a tenant billed in Moloni.

    Auth: ``client_id`` + ``client_secret_env`` (developer credentials) and either
    ``refresh_token_env`` (a refresh token, e.g. from ``broker connectors authorize moloni``) or
    ``username`` + ``password_env`` (the password grant). Secrets are environment-variable names.

    Document: ``company_id``, ``document_set_id`` (the AT-registered series), ``product_ids`` (our
    line kind -> Moloni ``product_id``; ``default_product_id`` for the rest), ``tax_ids`` (VAT
    percentage text ``"23"`` -> ``tax_id``), ``exemption_reason`` (AT code, e.g. ``M07``, required
    when any line is 0 %), ``invoice_status`` (``closed`` = issued, ``draft`` = left for review),
    ``send_email`` (e-mail the customer when closing; ``email_message`` is the text),
    ``rounding_method`` — the company's *método de cálculo* in Moloni (Configurações > Empresa >
    Documentos > Método de cálculo): ``line`` (arredondamento à linha, which matches our per-line
    rule) or ``document`` (arredondamento ao documento, Moloni's default for new companies; the
    connector then refuses invoices whose total Moloni would compute differently from ours).

    Customers: an invoice's ``contact_id`` is the Moloni ``customer_id``; without one the customer
    is found by VAT number, e-mail or name, and created when ``create_customers`` (with
    ``customer_defaults`` for the fields Moloni requires; VAT ``999999990`` — consumidor final —
    when the client has no tax number; customer ``number`` = our client id).

    ``rate_limit_per_minute`` / ``max_concurrency``: optional limits the broker applies to this
    tenant (Moloni publishes none; a 429 is honoured either way).
    """

    api_url: str = "https://api.moloni.pt"
    api_version: Literal["v1", "v2"] = "v1"
    authorize_url: str = "https://api.moloni.pt/v1/authorize/"
    client_id: str = Field(min_length=1)
    client_secret_env: str = Field(min_length=1)
    refresh_token_env: str | None = Field(default=None, min_length=1)
    username: str | None = Field(default=None, min_length=1)
    password_env: str | None = Field(default=None, min_length=1)
    company_id: int = Field(gt=0)
    document_set_id: int = Field(gt=0)
    product_ids: dict[LineKind, int] = Field(default_factory=dict)
    default_product_id: int | None = Field(default=None, gt=0)
    tax_ids: dict[str, int] = Field(default_factory=dict)
    exemption_reason: str | None = Field(default=None, pattern=EXEMPTION_CODE_PATTERN)
    invoice_status: Literal["closed", "draft"] = "closed"
    send_email: bool = False
    email_message: str = ""
    rounding_method: Literal["line", "document"] = "line"
    currency: str = Field(default="EUR", min_length=3, max_length=3)
    maturity_date_id: int | None = Field(default=None, gt=0)
    eac_id: int | None = Field(default=None, gt=0)
    create_customers: bool = False
    customer_defaults: MoloniCustomerDefaults | None = None
    rate_limit_per_minute: int | None = Field(
        default=None, gt=0, description="Moloni publishes no rate limit; set one to throttle this tenant proactively."
    )
    max_concurrency: int | None = Field(default=None, gt=0, description="Calls in flight at most (none published).")

    @model_validator(mode="after")
    def _one_grant(self) -> MoloniSettings:
        if not self.refresh_token_env and not (self.username and self.password_env):
            raise ValueError("set refresh_token_env, or username and password_env (password grant)")
        if self.password_env and not self.username:
            raise ValueError("password_env needs username")
        if self.create_customers and self.customer_defaults is None:
            raise ValueError(
                "create_customers needs customer_defaults (maturity_date_id, payment_method_id, address, city)"
            )
        return self


def _is_error_list(body: Any) -> bool:
    """A Moloni validation answer: a JSON list whose items are error objects (or lists of them)."""
    if not isinstance(body, list) or not body:
        return False
    first = body[0]
    if isinstance(first, list) and first:
        first = first[0]
    return isinstance(first, dict) and ("description" in first or "code" in first) and "document_id" not in first


def _error_messages(body: Any) -> list[str]:
    out: list[str] = []
    for item in body if isinstance(body, list) else []:
        for err in item if isinstance(item, list) else [item]:
            if isinstance(err, dict):
                where = err.get("field") or str(err.get("code") or "").partition(" ")[2]
                text = str(err.get("description") or err.get("code") or "error")
                out.append(f"{where}: {text}" if where and where not in text else text)
    return out


class MoloniConnector(Connector):
    """Moloni connector for one company (``company_id``) of one broker tenant.

    ``MoloniConnector(settings, *, tenant, token_store=None)``. Errors: :class:`RateLimitedError`
    (429), :class:`RetryableError` (5xx, not sent, read of a lookup lost), :class:`UncertainOutcomeError`
    (an insert/update sent without an answer — the next :meth:`deliver` looks up before acting),
    :class:`AuthError` (grant refused, 401 after one refresh), :class:`PermanentError` (Moloni
    validation errors, field limits, a 0 % line without exemption reason, a total Moloni would
    compute differently), :class:`ConfigError` / :class:`UnknownAccountError` (settings, missing
    secret variable, company not reachable).
    """

    name = "moloni"
    version = "0.1.0"
    capabilities = Capabilities(
        native_idempotency=False,
        lookup_by_reference=True,
        batch_size=1,
        amendments=False,
        oauth2=True,
        rate_limit_per_minute=None,  # not published by Moloni
        max_concurrency=None,
        daily_limit=None,
    )
    Settings = MoloniSettings

    def __init__(
        self, settings: MoloniSettings | Mapping[str, Any], *, tenant: str, token_store: TokenStore | None = None
    ):
        super().__init__(settings, tenant=tenant, token_store=token_store)
        self.settings: MoloniSettings = self.settings  # type: ignore[assignment]
        self._client: httpx.AsyncClient | None = None
        self._client_loop: asyncio.AbstractEventLoop | None = None
        self._oauth: OAuth2TokenManager | None = None
        self._client_secret: SecretStr | None = None
        self._password: SecretStr | None = None
        self._contacts: ContactResolver | None = None

    def __repr__(self) -> str:
        return f"MoloniConnector(tenant={self.tenant!r}, company_id={self.settings.company_id})"

    # ------------------------------------------------------------------ plumbing
    def _http(self) -> httpx.AsyncClient:
        loop = asyncio.get_running_loop()
        if self._client is not None and self._client_loop is not loop:
            self._client = None  # a new event loop: the old client's connections are unusable
        if self._client is None:
            install_log_redaction()  # cheap; survives a logging reconfiguration that dropped the filter
            self._client_loop = loop
            self._client = httpx.AsyncClient(
                timeout=httpx.Timeout(self.settings.timeout_seconds),
                headers={
                    "User-Agent": "maintenance-billing-broker/0.1 (moloni connector)",
                    "Accept": "application/json",
                },
            )
        return self._client

    def _url(self, action: str) -> str:
        return f"{self.settings.api_url.rstrip('/')}/{self.settings.api_version}/{action.strip('/')}/"

    def secret_values(self) -> list[str]:
        values = super().secret_values()
        for secret in (self._client_secret, self._password):
            if secret is not None and secret.get_secret_value():
                values.append(secret.get_secret_value())
        if self._oauth is not None:
            values.extend(self._oauth.known_secrets())
        return values

    def _secret(self, env_name: str, field: str) -> SecretStr:
        try:
            return resolve_secret(env_name, field=field)
        except BrokerConfigError as exc:
            raise ConfigError(str(exc)) from None

    async def _send(self, method: str, url: str, *, idempotent: bool, **kwargs: Any) -> httpx.Response:
        """One HTTP exchange; transport failures mapped onto the taxonomy (messages never carry the URL)."""
        what = f"Moloni {method} {httpx.URL(url).path}"
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
            if idempotent:
                raise RetryableError(f"{what}: no response ({type(exc).__name__}); a read, safe to retry") from None
            raise UncertainOutcomeError(
                f"{what}: request sent but no response ({type(exc).__name__}); outcome unknown, reconcile with find()"
            ) from None
        except (httpx.UnsupportedProtocol, httpx.InvalidURL):
            raise ConfigError(f"{what}: bad api_url in settings ({self.settings.api_url})") from None
        except httpx.TransportError as exc:
            if idempotent:
                raise RetryableError(f"{what}: transport error ({type(exc).__name__})") from None
            raise UncertainOutcomeError(f"{what}: transport error ({type(exc).__name__})") from None

    # ------------------------------------------------------------------ OAuth2
    def _store_key(self) -> str:
        return token_key("moloni", self.tenant, issuer=self.settings.api_url, client_id=self.settings.client_id)

    def _token_manager(self) -> OAuth2TokenManager:
        if self._oauth is None:
            store = self.token_store if self.token_store is not None else default_token_store()
            self.token_store = store
            seed = None
            if self.settings.refresh_token_env:
                env = self.settings.refresh_token_env
                seed = lambda: self._secret(env, "billing.settings.refresh_token_env")  # noqa: E731
            self._oauth = OAuth2TokenManager(key=self._store_key(), store=store, refresh=self._grant, seed=seed)
        return self._oauth

    async def _grant(self, refresh_token: SecretStr | None) -> TokenSet:
        """``GET {api_url}/v1/grant/`` with ``grant_type=refresh_token`` (or ``password`` when no refresh token is configured).

        Parameters go in the query string, as Moloni documents them and the plugin sends them.
        400/401 -> :class:`AuthError` with Moloni's ``error`` code (never a secret); 429/5xx/transport
        -> :class:`RateLimitedError` / :class:`RetryableError`.
        """
        if self._client_secret is None:
            self._client_secret = self._secret(self.settings.client_secret_env, "billing.settings.client_secret_env")
        params = {"client_id": self.settings.client_id, "client_secret": self._client_secret.get_secret_value()}
        if refresh_token is not None:
            params.update(grant_type="refresh_token", refresh_token=refresh_token.get_secret_value())
            hint = f"check {self.settings.client_secret_env} and {self.settings.refresh_token_env} (or run `broker connectors authorize moloni`)"
        else:
            if self._password is None:
                self._password = self._secret(self.settings.password_env or "", "billing.settings.password_env")
            params.update(
                grant_type="password", username=self.settings.username or "", password=self._password.get_secret_value()
            )
            hint = f"check {self.settings.client_secret_env}, username {self.settings.username} and {self.settings.password_env}"
        what = f"Moloni grant ({params['grant_type']})"
        resp = await self._send("GET", self._url("grant"), idempotent=True, params=params)
        if resp.status_code == 429:
            raise self._rate_limited(resp, what)
        if resp.status_code >= 500:
            raise RetryableError(f"{what}: HTTP {resp.status_code}", http_status=resp.status_code)
        body = self._json(resp)
        if resp.status_code != 200 or not isinstance(body, dict) or body.get("error") or not body.get("access_token"):
            code = str(body.get("error") or "no error code") if isinstance(body, dict) else "unreadable answer"
            description = str(body.get("error_description") or "") if isinstance(body, dict) else ""
            raise AuthError(
                self.scrub(
                    f"{what} refused (HTTP {resp.status_code} {code}: {description}) for client_id "
                    f"{self.settings.client_id}: {hint}"
                ),
                http_status=resp.status_code,
            )
        return TokenSet.from_token_response(body, previous_refresh=refresh_token)

    async def _token(self, stale: SecretStr | None = None) -> SecretStr:
        self._http()
        return await self._token_manager().access_token(stale=stale)

    def oauth2_config(self) -> OAuth2Config:
        """Authorization-code flow (``{api_url}/v1/authorize/`` -> ``/v1/grant/``); Moloni has no scopes and no PKCE."""
        try:
            secret = self._secret(self.settings.client_secret_env, "billing.settings.client_secret_env")
        except ConfigError:
            secret = None
        return OAuth2Config(
            authorize_url=self.settings.authorize_url,
            token_url=self._url("grant"),
            client_id=self.settings.client_id,
            client_secret=secret,
            scopes=(),
            store_key=self._store_key(),
            auth_method="post",
            use_pkce=False,
        )

    # ------------------------------------------------------------------ API calls
    @staticmethod
    def _json(resp: httpx.Response) -> Any:
        try:
            return loads(resp.content)
        except ValueError:
            return None

    @staticmethod
    def _rate_limited(resp: httpx.Response, what: str) -> RateLimitedError:
        raw = resp.headers.get("Retry-After")
        try:
            retry_after = float(raw) if raw is not None else DEFAULT_RETRY_AFTER
        except ValueError:
            retry_after = DEFAULT_RETRY_AFTER
        return RateLimitedError(f"{what}: 429 rate limited, retry after {retry_after:g}s", retry_after=retry_after)

    async def _api(self, action: str, fields: Mapping[str, Any], *, idempotent: bool, what: str | None = None) -> Any:
        """``POST {api_url}/v1/<action>/?access_token=…`` with ``fields`` form-encoded; the parsed JSON answer.

        A 401 refreshes the access token once and repeats the call; a second 401 -> :class:`AuthError`.
        A validation answer (a list of ``{code, field, description}``) -> :class:`PermanentError`
        carrying Moloni's descriptions (``.moloni_errors`` holds them).
        """
        what = what or f"Moloni {action}"
        body = form_body(fields)
        token = await self._token()
        for attempt in (1, 2):
            resp = await self._send(
                "POST",
                self._url(action),
                idempotent=idempotent,
                params={"access_token": token.get_secret_value()},
                content=body.encode("utf-8"),
                headers={"Content-Type": "application/x-www-form-urlencoded; charset=utf-8"},
            )
            if resp.status_code != 401:
                break
            if attempt == 1:
                log.info("moloni tenant=%s: 401 from %s, refreshing the access token once", self.tenant, action)
                token = await self._token(stale=token)
        else:
            raise AuthError(f"{what}: 401 invalid_token after a token refresh ({self._detail(resp)})", http_status=401)
        status = resp.status_code
        if status == 429:
            raise self._rate_limited(resp, what)
        if status >= 500:
            raise RetryableError(f"{what}: HTTP {status} ({self._detail(resp)})", http_status=status)
        if status == 403:
            raise AuthError(f"{what}: HTTP 403 ({self._detail(resp)})", http_status=status)
        parsed = self._json(resp)
        if _is_error_list(parsed):
            messages = _error_messages(parsed)
            # Moloni answers validation errors in the body (HTTP 200 in our emulator): no 4xx to report then
            exc = PermanentError(
                self.scrub(f"{what}: Moloni refused: {'; '.join(messages)}"),
                http_status=status if status >= 400 else None,
            )
            exc.moloni_errors = messages  # type: ignore[attr-defined]
            raise exc
        if status >= 400:
            raise PermanentError(f"{what}: HTTP {status} ({self._detail(resp)})", http_status=status)
        if parsed is None:
            if idempotent:
                raise RetryableError(f"{what}: HTTP {status} with an unreadable body", http_status=status)
            raise UncertainOutcomeError(f"{what}: HTTP {status} with an unreadable body", http_status=status)
        return parsed

    def _detail(self, resp: httpx.Response) -> str:
        body = self._json(resp)
        if isinstance(body, dict):
            parts = [str(body[k]) for k in ("error", "error_description") if body.get(k)]
            if parts:
                return self.scrub(": ".join(parts))[:300]
        return self.scrub(resp.text[:200]) if resp.text else "no body"

    # ------------------------------------------------------------------ documents
    async def _lookup(self, invoice_number: str) -> dict[str, Any] | None:
        """The invoice whose ``your_reference`` is ours (``invoices/getAll``, all pages); the oldest when several."""
        reference = reference_of(invoice_number)
        matches: list[dict[str, Any]] = []
        offset = 0
        while True:
            page = await self._api(
                "invoices/getAll",
                {
                    "company_id": self.settings.company_id,
                    "your_reference": reference,
                    "qty": PAGE_SIZE,
                    "offset": offset,
                },
                idempotent=True,
                what=f"Moloni invoices/getAll your_reference={reference}",
            )
            if not isinstance(page, list):
                raise RetryableError(f"Moloni invoices/getAll: unexpected answer {type(page).__name__}")
            matches += [
                d
                for d in page
                if isinstance(d, dict) and str(d.get("your_reference", "")) == reference and d.get("document_id")
            ]
            if len(page) < PAGE_SIZE:
                break
            offset += PAGE_SIZE
        if len(matches) > 1:
            log.warning(
                "moloni tenant=%s: %d invoices carry your_reference %s; using the oldest",
                self.tenant,
                len(matches),
                reference,
            )
        return min(matches, key=lambda d: int(d["document_id"])) if matches else None

    async def _get_one(self, document_id: int) -> dict[str, Any] | None:
        doc = await self._api(
            "invoices/getOne",
            {"company_id": self.settings.company_id, "document_id": document_id},
            idempotent=True,
            what=f"Moloni invoices/getOne {document_id}",
        )
        return doc if isinstance(doc, dict) and doc.get("document_id") else None

    def _expected_total(self, payload: Mapping[str, Any]) -> Decimal:
        rows = [
            (p["qty"], p["price"], p["discount"], sum((t["value"] for t in p.get("taxes") or []), Decimal(0)))
            for p in payload["products"]
        ]
        return moloni_totals(rows, self.settings.rounding_method).net_value

    async def deliver(self, invoice: Invoice) -> DeliveryResult:
        """Create (draft), verify and close ``invoice``; resume from whatever a previous attempt left.

        Returns ``DeliveryResult(external_id=document_id, external_number="FT <series>/<n>"`` (empty
        while a draft), ``created`` = inserted by this call, ``details``: ``net_value``, ``status``,
        ``total_matches``, ``steps`` (what this call did), ``email``).
        """
        what = f"Moloni invoice {invoice.invoice_number}"
        customer_id = await self._customer_id(invoice)
        payload = invoice_to_moloni(invoice, self.settings, customer_id=customer_id)
        expected = self._expected_total(payload)
        if expected != invoice.total:
            raise PermanentError(
                f"{what}: Moloni would compute a total of {expected} (método de cálculo '{self.settings.rounding_method}') "
                f"but ours is {invoice.total}; nothing was sent. Set the company's método de cálculo to "
                "'Arredondamento à linha' and billing.settings.rounding_method: line"
            )
        steps: list[str] = []
        existing = await self._lookup(invoice.invoice_number)
        created = False
        if existing is None:
            answer = await self._api("invoices/insert", payload, idempotent=False, what=f"{what}: invoices/insert")
            if not isinstance(answer, dict) or not answer.get("document_id"):
                raise UncertainOutcomeError(
                    f"{what}: invoices/insert answered without a document_id; reconcile with find()"
                )
            document_id = int(answer["document_id"])
            created = True
            steps.append("inserted draft")
        else:
            document_id = int(existing["document_id"])
            steps.append("found " + ("closed invoice" if str(existing.get("status")) == "1" else "draft"))
        doc = await self._get_one(document_id)
        if doc is None:
            raise RetryableError(f"{what}: document {document_id} not returned by invoices/getOne yet")
        total = Decimal(str(doc.get("net_value")))
        email_note = None
        if str(doc.get("status")) != "1":
            if total != invoice.total:
                if created:
                    await self._api(
                        "invoices/delete",
                        {"company_id": self.settings.company_id, "document_id": document_id},
                        idempotent=False,
                        what=f"{what}: invoices/delete (total mismatch)",
                    )
                    steps.append("deleted draft")
                raise PermanentError(
                    f"{what}: Moloni computed a total of {total} for draft {document_id} but ours is {invoice.total}; "
                    + (
                        "the draft was deleted and nothing was issued"
                        if created
                        else "the existing draft was left unissued"
                    )
                )
            if self.settings.invoice_status == "closed":
                email_note = await self._close(invoice, doc)
                steps.append("closed")
                doc = await self._get_one(document_id) or doc
        result_status = "closed" if str(doc.get("status")) == "1" else "draft"
        return DeliveryResult(
            invoice_key=invoice.invoice_key,
            external_id=str(document_id),
            external_number=document_label(doc),
            created=created,
            details={
                "net_value": str(doc.get("net_value")),
                "taxes_value": str(doc.get("taxes_value")),
                "status": result_status,
                "total_matches": Decimal(str(doc.get("net_value"))) == invoice.total,
                "your_reference": reference_of(invoice.invoice_number),
                "steps": steps,
                "email": email_note,
            },
        )

    async def _close(self, invoice: Invoice, doc: Mapping[str, Any]) -> str | None:
        """``invoices/update`` with ``status=1`` (+ ``send_email``); an already-closed invoice counts as done."""
        document_id = int(doc["document_id"])
        fields: dict[str, Any] = {"company_id": self.settings.company_id, "document_id": document_id, "status": 1}
        note = None
        if self.settings.send_email:
            email = await self._email_for(invoice, int(doc.get("customer_id") or 0))
            if email:
                fields["send_email"] = [
                    {
                        "email": email,
                        "name": str(doc.get("entity_name") or invoice.client_name),
                        "msg": self.settings.email_message,
                    }
                ]
                note = f"sent to {email}"
            else:
                note = "skipped: no e-mail address for the customer"
                log.warning(
                    "moloni tenant=%s invoice=%s: send_email is on but the customer has no e-mail address",
                    self.tenant,
                    invoice.invoice_number,
                )
        try:
            await self._api(
                "invoices/update", fields, idempotent=False, what=f"Moloni invoice {invoice.invoice_number}: close"
            )
        except PermanentError:
            again = await self._get_one(document_id)
            if again is not None and str(again.get("status")) == "1":
                return note  # closed meanwhile (an earlier attempt whose answer was lost)
            raise
        return note

    async def _email_for(self, invoice: Invoice, customer_id: int) -> str | None:
        client = self.clients.get(invoice.client_id)
        if client is not None and getattr(client, "email", None):
            return str(client.email)
        if customer_id:
            customer = await self._api(
                "customers/getOne",
                {"company_id": self.settings.company_id, "customer_id": customer_id},
                idempotent=True,
            )
            if isinstance(customer, dict) and customer.get("email"):
                return str(customer["email"])
        return None

    async def find(self, invoice_number: str) -> ExternalInvoice | None:
        """The Moloni invoice carrying ``your_reference == invoice_number``, when its delivery is complete.

        With ``invoice_status: closed`` a draft (a delivery interrupted before closing) is reported as
        ``None``, so a caller that reconciles with :meth:`find` and then calls :meth:`deliver` again
        resumes the flow — the draft is verified and closed — instead of stopping at a document
        with no fiscal value. With ``invoice_status: draft`` any match is returned.
        """
        doc = await self._lookup(invoice_number)
        if doc is None:
            return None
        found = invoice_from_moloni(doc)
        if self.settings.invoice_status == "closed" and found.status != "closed":
            return None
        return found

    # ------------------------------------------------------------------ customers (connectors.sdk.contacts)
    async def _customer_id(self, invoice: Invoice) -> int:
        """The Moloni ``customer_id``: the mapped ``contact_id``, else a customer found by VAT number / e-mail / name."""
        if invoice.contact_id:
            if not str(invoice.contact_id).strip().isdigit():
                raise PermanentError(
                    f"client {invoice.client_id}: contact_id {invoice.contact_id!r} is not a Moloni customer_id (an integer)"
                )
            return int(invoice.contact_id)
        if self._contacts is None:
            self._contacts = ContactResolver(
                self, allow_create=self.settings.create_customers, clients=self.clients, setting_name="create_customers"
            )
        return int(await self._contacts.resolve(invoice) or 0)

    async def find_contact(self, field: LookupField, value: str) -> str | None:
        """``customers/getByVat`` / ``getByEmail`` / ``getByName``; the exact match is checked here."""
        action, param, key = {
            "number": ("customers/getByNumber", "number", "number"),
            "tax_number": ("customers/getByVat", "vat", "vat"),
            "email": ("customers/getByEmail", "email", "email"),
            "name": ("customers/getByName", "name", "name"),
        }[field]
        found = await self._api(
            action,
            {"company_id": self.settings.company_id, param: value, "qty": PAGE_SIZE, "offset": 0},
            idempotent=True,
        )
        for customer in found if isinstance(found, list) else []:
            if (
                isinstance(customer, dict)
                and customer.get("customer_id")
                and same_value(field, str(customer.get(key) or ""), value)
            ):
                return str(customer["customer_id"])
        return None

    async def create_contact(self, query: ContactQuery) -> str:
        """``customers/insert`` with ``customer_defaults``; ``number`` = our client id (≤ 20 characters).
        A number already taken (a creation whose answer was lost) is looked up with ``getByNumber``."""
        defaults = self.settings.customer_defaults
        if defaults is None:  # pragma: no cover - the settings validator requires it with create_customers
            raise PermanentError(
                f"client {query.client_id}: customer creation needs billing.settings.customer_defaults"
            )
        number = query.client_id
        if len(number) > 20:
            raise PermanentError(
                f"client {query.client_id}: Moloni customer field number is {len(number)} characters, 20 max"
            )
        fields = {
            "company_id": self.settings.company_id,
            "vat": (query.tax_number or FINAL_CONSUMER_VAT).replace(" ", ""),
            "number": number,
            "name": query.name,
            "email": query.email or "",
            "language_id": defaults.language_id,
            "address": defaults.address,
            "zip_code": defaults.zip_code,
            "city": defaults.city,
            "country_id": defaults.country_id,
            "maturity_date_id": defaults.maturity_date_id,
            "payment_method_id": defaults.payment_method_id,
        }
        try:
            answer = await self._api(
                "customers/insert",
                fields,
                idempotent=False,
                what=f"Moloni customers/insert for client {query.client_id}",
            )
        except PermanentError as exc:
            if any("number" in m and "exist" in m for m in getattr(exc, "moloni_errors", [])):
                found = await self.find_contact("number", number)  # type: ignore[arg-type]
                if found:
                    return found
            raise
        if not isinstance(answer, dict) or not answer.get("customer_id"):
            raise UncertainOutcomeError(
                f"Moloni customers/insert for client {query.client_id}: no customer_id in the answer"
            )
        return str(answer["customer_id"])

    # ------------------------------------------------------------------ check
    async def check(self) -> None:
        """``companies/getAll`` (the cheapest authenticated call): credentials work and ``company_id`` is reachable."""
        companies = await self._api("companies/getAll", {}, idempotent=True)
        ids = (
            [int(c["company_id"]) for c in companies if isinstance(c, dict) and str(c.get("company_id", "")).isdigit()]
            if isinstance(companies, list)
            else []
        )
        if self.settings.company_id not in ids:
            raise UnknownAccountError(
                f"unknown company {self.settings.company_id}: these Moloni credentials reach "
                f"{', '.join(str(i) for i in ids) or 'no company'}"
            )

    async def aclose(self) -> None:
        if self._client is not None:
            client, self._client = self._client, None
            try:
                if self._client_loop is asyncio.get_running_loop():
                    await client.aclose()
            except RuntimeError:
                pass


__all__ = ["MoloniConnector", "MoloniSettings", "install_log_redaction"]
