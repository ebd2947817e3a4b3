"""FreshBooks Accounting API connector.

Creates invoices with ``POST {api_url}/accounting/account/{accountId}/invoices/invoices`` and body
``{"invoice": {...}}`` (facts: ``/work/shared/billing-apis.md`` §5; official SDK
``freshbooks-python-sdk``; field reference ``tests/specs/freshbooks/openapi.yaml``):

* **Auth** — OAuth 2.0: ``POST {api_url}/auth/oauth/token`` with ``grant_type=refresh_token`` and
  ``client_id``/``client_secret`` (and ``redirect_uri`` when configured) in the form body, as the SDK
  does. Access tokens last 12 h; **refresh tokens are single-use** — the token manager
  (:class:`~connectors.sdk.oauth2.OAuth2TokenManager`) refreshes single-flight per tenant across coroutines
  and processes and persists the new token before anyone else may refresh. A 401 refreshes exactly
  once; a second 401 is :class:`AuthError`.
* **Idempotency** — FreshBooks has no idempotency key. Our invoice number goes in
  ``invoice_number`` (unique per account, deleted invoices included, per FreshBooks support), and
  the connector **looks it up before creating** (``GET .../invoices/invoices?search[invoice_number]=…``).
  A create that races another (the lookup saw nothing) is stopped by the uniqueness rule; the
  connector then looks the number up again and reports the existing invoice with ``created=False``.
  A number held by a *deleted* invoice cannot be reused: :class:`PermanentError` says so.
* **Totals** — see :mod:`connectors.freshbooks.mapper`: line amounts equal our nets, tax per line
  by percentage, so FreshBooks' ``amount`` equals our total (``details["total_matches"]``).
* **Status/e-mail** — FreshBooks creates drafts. ``invoice_status: sent`` marks it sent
  (``{"action_mark_as_sent": true}``); ``email_invoice: true`` e-mails it to the client instead
  (``{"action_email": true}``, which also marks it sent). This second step is retry-safe by state:
  it runs only while the invoice is still ``draft``.
* **Limits** — FreshBooks publishes none; a 429 is honoured through ``Retry-After`` (60 s otherwise).
* **Errors** — ``{"response": {"errors": [{"errno", "field", "message", "object", "value"}]}}``
  mapped onto the taxonomy (422/400/404 permanent, 401/403 auth, 429 rate limited, 5xx retryable).
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Awaitable, Callable
from typing import Any, Literal

import httpx
from pydantic import Field, SecretStr

from connectors.base import (
    AuthError,
    Capabilities,
    ConfigError,
    Connector,
    ConnectorSettings,
    DeliveryResult,
    ExternalInvoice,
    MissingScopeError,
    PermanentError,
    RateLimitedError,
    RetryableError,
    UncertainOutcomeError,
    UnknownAccountError,
)
from connectors.errors import retry_after_seconds
from connectors.freshbooks.mapper import check_limits, dumps, invoice_from_freshbooks, invoice_to_freshbooks, loads
from connectors.sdk.contacts import ContactQuery, ContactResolver, LookupField
from connectors.sdk.invoice import Invoice, LineKind
from connectors.sdk.oauth2 import OAuth2Config, OAuth2TokenManager, TokenSet, default_token_store, token_key

log = logging.getLogger("connectors.freshbooks")

#: ``v3_status`` values of an invoice that is no longer a draft.
NOT_DRAFT = frozenset(
    {
        "sent",
        "viewed",
        "paid",
        "partial",
        "autopaid",
        "failed",
        "retry",
        "success",
        "disputed",
        "resolved",
        "overdue",
        "outstanding",
        "created",
    }
)
SCOPES = ("user:profile:read", "user:invoices:read", "user:invoices:write", "user:clients:read", "user:clients:write")


class FreshBooksSettings(ConnectorSettings):
    """Settings of a tenant whose ``billing.system`` is ``freshbooks``.

    Secrets are environment variable *names* (``client_secret_env``, ``refresh_token_env``).
    ``account_id`` is the accounting account (``business_memberships[].business.account_id`` of
    ``GET /auth/api/v1/users/me``). ``invoice_status``: ``draft`` leaves invoices as drafts,
    ``sent`` marks them sent; ``email_invoice`` e-mails them to the client (and so marks them sent).
    ``tax_names`` maps a tax-rate percentage (``"23"``) to the FreshBooks tax name (``"IVA"``;
    ``default_tax_name`` otherwise); ``line_names`` the line ``name`` per line kind.
    ``create_contacts`` lets the connector create a missing client.
    """

    api_url: str = "https://api.freshbooks.com"
    authorize_url: str = "https://auth.freshbooks.com/oauth/authorize"
    account_id: str = Field(pattern=r"^[A-Za-z0-9]{1,32}$")
    client_id: str = Field(min_length=1)
    client_secret_env: str = Field(min_length=1)
    refresh_token_env: str = Field(min_length=1)
    redirect_uri: str | None = None
    invoice_status: Literal["draft", "sent"] = "sent"
    email_invoice: bool = False
    tax_names: dict[str, str] = Field(default_factory=dict)
    default_tax_name: str = Field(default="VAT", min_length=1)
    line_names: dict[LineKind, str] = Field(default_factory=dict)
    language: str | None = Field(default=None, pattern=r"^[a-z]{2}$")
    create_contacts: bool = False

    @property
    def token_url(self) -> str:
        return self.api_url.rstrip("/") + "/auth/oauth/token"


def _errors(body: Any) -> list[dict]:
    if isinstance(body, dict):
        response = body.get("response")
        if isinstance(response, dict) and isinstance(response.get("errors"), list):
            return [e for e in response["errors"] if isinstance(e, dict)]
    return []


def _describe(errors: list[dict], body: Any = None) -> str:
    if errors:
        return "; ".join(f"errno {e.get('errno')} {e.get('field') or '-'}: {e.get('message')}" for e in errors)
    if isinstance(body, dict) and (body.get("error") or body.get("message")):
        return str(body.get("error_description") or body.get("message") or body.get("error"))
    return "no error details"


def is_duplicate_number(errors: list[dict]) -> bool:
    """True when the errors say the ``invoice_number`` is already used."""
    for e in errors:
        message = str(e.get("message", "")).lower()
        if e.get("field") == "invoice_number" and any(
            w in message for w in ("exist", "unique", "already", "taken", "used")
        ):
            return True
    return False


class FreshBooksConnector(Connector):
    """FreshBooks connector for one account (``account_id``) of one broker tenant.

    ``FreshBooksConnector(settings, *, tenant, token_store=None, on_refresh_token=None)``. Errors:
    :class:`RateLimitedError`, :class:`RetryableError`, :class:`UncertainOutcomeError` (sent, no
    answer: reconcile with :meth:`find`), :class:`AuthError`, :class:`UnknownAccountError` (from
    :meth:`check`), :class:`PermanentError`, :class:`ConfigError`.
    """

    name = "freshbooks"
    version = "0.1.0"
    capabilities = Capabilities(
        native_idempotency=False,
        lookup_by_reference=True,
        batch_size=1,
        amendments=False,
        oauth2=True,
        rate_limit_per_minute=None,
        max_concurrency=None,
        daily_limit=None,
    )
    Settings = FreshBooksSettings

    def __init__(
        self,
        settings: FreshBooksSettings | dict,
        *,
        tenant: str,
        token_store=None,
        on_refresh_token: Callable[[str], Any | Awaitable[Any]] | None = None,
    ):
        super().__init__(settings, tenant=tenant, token_store=token_store)
        self.settings: FreshBooksSettings
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
        return f"FreshBooksConnector(tenant={self.tenant!r}, account_id={self.settings.account_id!r})"

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
        return token_key("freshbooks", self.tenant, issuer=self.settings.token_url, client_id=self.settings.client_id)

    async def _refresh(self, refresh_token: SecretStr | None) -> TokenSet:
        """``grant_type=refresh_token`` with the client credentials in the form body (as the FreshBooks SDK posts them)."""
        what = "FreshBooks token refresh"
        form = {
            "grant_type": "refresh_token",
            "refresh_token": refresh_token.get_secret_value() if refresh_token else "",
            "client_id": self.settings.client_id,
            "client_secret": self._secret_client().get_secret_value(),
        }
        if self.settings.redirect_uri:
            form["redirect_uri"] = self.settings.redirect_uri
        try:
            resp = await self._http().post(self.settings.token_url, data=form, headers={"Accept": "application/json"})
        except (httpx.TimeoutException, httpx.TransportError) as exc:
            raise RetryableError(f"{what}: no response from the token endpoint ({type(exc).__name__})") from None
        if resp.status_code == 429:
            raise self._rate_limited(resp, what)
        if resp.status_code >= 500:
            raise RetryableError(f"{what}: HTTP {resp.status_code}", http_status=resp.status_code)
        body = self._json(resp)
        if resp.status_code != 200 or not isinstance(body, dict):
            code = body.get("error") if isinstance(body, dict) else None
            raise AuthError(
                f"{what} refused (HTTP {resp.status_code} {code or 'no error code'}) for client_id {self.settings.client_id}: "
                f"check {self.settings.client_secret_env} and {self.settings.refresh_token_env} "
                "(FreshBooks refresh tokens are single-use: re-run `broker connectors authorize` if it was spent elsewhere)",
                http_status=resp.status_code,
            )
        return TokenSet.from_token_response(body, previous_refresh=refresh_token)

    def _token_manager(self) -> OAuth2TokenManager:
        if self._tokens is None:
            if self.token_store is None:
                self.token_store = default_token_store()
            self._tokens = OAuth2TokenManager(
                key=self.store_key(),
                store=self.token_store,
                refresh=self._refresh,
                seed=lambda: self.secret("refresh_token_env"),
                on_rotate=self.on_refresh_token,
            )
        return self._tokens

    @property
    def token_refreshes(self) -> int:
        return self._tokens.refreshes if self._tokens is not None else 0

    def oauth2_config(self) -> OAuth2Config:
        return OAuth2Config(
            authorize_url=self.settings.authorize_url,
            token_url=self.settings.token_url,
            client_id=self.settings.client_id,
            client_secret=self._secret_client(),
            scopes=SCOPES,
            store_key=self.store_key(),
            auth_method="post",
            use_pkce=False,
        )

    # ------------------------------------------------------------------ HTTP plumbing
    def _http(self) -> httpx.AsyncClient:
        loop = asyncio.get_running_loop()
        if self._client is not None and self._client_loop is not loop:
            self._client = None
        if self._client is None:
            self._client_loop = loop
            self._client = httpx.AsyncClient(
                timeout=httpx.Timeout(self.settings.timeout_seconds),
                headers={"User-Agent": "maintenance-billing-broker/0.1 (freshbooks connector)"},
            )
        return self._client

    def _url(self, path: str) -> str:
        return self.settings.api_url.rstrip("/") + "/" + path.lstrip("/")

    def _account_url(self, resource: str) -> str:
        return self._url(f"accounting/account/{self.settings.account_id}/{resource.lstrip('/')}")

    async def _send(self, method: str, url: str, **kwargs: Any) -> httpx.Response:
        what = f"FreshBooks {method} {httpx.URL(url).path}"
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
        self, method: str, url: str, *, headers: dict[str, str] | None = None, **kwargs: Any
    ) -> httpx.Response:
        """Authenticated call; on 401 refresh exactly once and retry; a second 401 is :class:`AuthError`."""
        manager = self._token_manager()
        token = await manager.access_token()
        for attempt in (1, 2):
            all_headers = {"Accept": "application/json", "Authorization": f"Bearer {token.get_secret_value()}"}
            all_headers.update(headers or {})
            resp = await self._send(method, url, headers=all_headers, **kwargs)
            if resp.status_code != 401:
                return resp
            if attempt == 1:
                log.info(
                    "freshbooks tenant=%s: 401 from %s, refreshing the access token once",
                    self.tenant,
                    httpx.URL(url).path,
                )
                token = await manager.access_token(stale=token)
        body = self._json(resp)
        raise AuthError(
            self.scrub(
                f"FreshBooks {method} {httpx.URL(url).path}: 401 after a token refresh "
                f"({_describe(_errors(body), body)})"
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
        retry_after = retry_after_seconds(resp.headers.get("Retry-After"), 60.0)
        return RateLimitedError(f"{what}: 429 rate limited, retry after {retry_after:g}s", retry_after=retry_after)

    def _raise_for_status(self, resp: httpx.Response, what: str) -> Any:
        status = resp.status_code
        body = self._json(resp)
        if 200 <= status < 300:
            if not isinstance(body, dict) or not isinstance(body.get("response"), dict):
                raise RetryableError(f"{what}: HTTP {status} with an unexpected body", http_status=status)
            return body["response"].get("result", body["response"])
        if status == 429:
            raise self._rate_limited(resp, what)
        detail = self.scrub(_describe(_errors(body), body) if body is not None else (resp.text[:200] or "no body"))
        if status >= 500:
            raise RetryableError(f"{what}: HTTP {status} ({detail})", http_status=status)
        if status == 403 and isinstance(body, dict) and body.get("error") == "insufficient_scope":
            raise MissingScopeError(
                f"{what}: HTTP 403 ({detail}); re-run `broker connectors authorize freshbooks --tenant {self.tenant}`",
                missing=[],
                http_status=status,
            )
        if status in (401, 403):
            raise AuthError(f"{what}: HTTP {status} ({detail})", http_status=status)
        raise PermanentError(f"{what}: FreshBooks rejected it (HTTP {status}): {detail}", http_status=status)

    # ------------------------------------------------------------------ Connector API
    async def check(self) -> None:
        """``GET /auth/api/v1/users/me`` — the cheapest authenticated call; the account must be among the
        identity's ``business_memberships`` (:class:`UnknownAccountError` otherwise) and the token's
        granted scopes must include :meth:`required_scopes` (:class:`MissingScopeError`)."""
        resp = await self._call("GET", self._url("auth/api/v1/users/me"))
        body = self._raise_for_status(resp, "FreshBooks GET users/me")
        memberships = body.get("business_memberships") if isinstance(body, dict) else None
        accounts = [str((m.get("business") or {}).get("account_id")) for m in memberships or [] if isinstance(m, dict)]
        if self.settings.account_id not in accounts:
            raise UnknownAccountError(
                f"unknown FreshBooks account {self.settings.account_id}: this identity can reach "
                f"{', '.join(a for a in accounts if a and a != 'None') or 'no account'}"
            )
        tokens = self._tokens.tokens if self._tokens is not None else None
        granted = tokens.scopes if tokens is not None else frozenset()
        missing = [scope for scope in self.required_scopes() if granted and scope not in granted]
        if missing:
            raise MissingScopeError(
                f"missing scope {', '.join(missing)}: the FreshBooks app was authorised with {' '.join(sorted(granted))}; "
                f"re-run `broker connectors authorize freshbooks --tenant {self.tenant}`",
                missing=missing,
            )

    def required_scopes(self) -> tuple[str, ...]:
        """OAuth scopes the connector needs with these settings (``user:clients:write`` only with ``create_contacts``)."""
        needed = SCOPES if self.settings.create_contacts else tuple(s for s in SCOPES if s != "user:clients:write")
        return needed

    async def deliver(self, invoice: Invoice) -> DeliveryResult:
        """Create ``invoice`` unless an invoice with its number exists; then mark it sent / e-mail it.

        Lookup (``search[invoice_number]``) -> ``POST .../invoices/invoices`` -> (when wanted and still a
        draft) ``PUT .../invoices/{id}`` with ``action_mark_as_sent`` or ``action_email``.
        ``details``: ``amount`` (decimal string), ``total_matches``, ``v3_status``, ``looked_up``
        (found before create), ``duplicate`` (found after a uniqueness error), ``email_error``.
        """
        check_limits(invoice, self.settings)  # before any call, even a client lookup
        customer_id = await self.contacts.resolve(invoice)
        body = invoice_to_freshbooks(invoice, self.settings, customer_id=customer_id)
        existing = await self._find_entity(invoice.invoice_number)
        if existing is not None:
            result = self._result(invoice, existing, created=False, looked_up=True)
        else:
            url = self._account_url("invoices/invoices")
            what = f"FreshBooks POST invoices {invoice.invoice_number}"
            resp = await self._call("POST", url, content=dumps(body), headers={"Content-Type": "application/json"})
            errors = _errors(self._json(resp))
            if resp.status_code in (400, 409, 422) and is_duplicate_number(errors):
                found = await self._find_entity(invoice.invoice_number)
                if found is None:
                    raise PermanentError(
                        f"{what}: invoice number {invoice.invoice_number} is already used by an invoice FreshBooks does not "
                        "list (a deleted one); FreshBooks never reuses numbers: rename or undelete that invoice",
                        http_status=resp.status_code,
                    )
                result = self._result(invoice, found, created=False, duplicate=True)
            else:
                parsed = self._raise_for_status(resp, what)
                entity = parsed.get("invoice") if isinstance(parsed, dict) else None
                if not isinstance(entity, dict) or entity.get("invoiceid", entity.get("id")) is None:
                    raise UncertainOutcomeError(
                        f"{what}: HTTP {resp.status_code} without an invoice", http_status=resp.status_code
                    )
                result = self._result(invoice, entity, created=True)
        return await self._finish(invoice, result)

    def _result(
        self, invoice: Invoice, entity: dict, *, created: bool, looked_up: bool = False, duplicate: bool = False
    ) -> DeliveryResult:
        external = invoice_from_freshbooks(entity)
        matches = external.total is not None and external.total == invoice.total
        if not matches:
            log.warning(
                "freshbooks tenant=%s invoice=%s: FreshBooks amount %s differs from our total %s",
                self.tenant,
                invoice.invoice_number,
                external.total,
                invoice.total,
            )
        details: dict[str, Any] = {
            "amount": str(external.total),
            "total_matches": matches,
            "v3_status": external.status,
        }
        if looked_up:
            details["looked_up"] = True
        if duplicate:
            details["duplicate"] = True
        return DeliveryResult(
            invoice_key=invoice.invoice_key,
            external_id=external.external_id,
            external_number=external.number or invoice.invoice_number,
            created=created,
            details=details,
        )

    async def _finish(self, invoice: Invoice, result: DeliveryResult) -> DeliveryResult:
        """Second step: mark sent or e-mail, only while the invoice is still a draft."""
        wanted_sent = self.settings.email_invoice or self.settings.invoice_status == "sent"
        if not wanted_sent or result.details.get("v3_status") != "draft":
            return result
        url = self._account_url(f"invoices/invoices/{result.external_id}")
        details = dict(result.details)
        if self.settings.email_invoice:
            resp = await self._call(
                "PUT",
                url,
                content=dumps({"invoice": {"action_email": True, "email_include_pdf": False}}),
                headers={"Content-Type": "application/json"},
            )
            try:
                parsed = self._raise_for_status(resp, f"FreshBooks e-mail invoice {invoice.invoice_number}")
            except PermanentError as exc:
                log.warning(
                    "freshbooks tenant=%s invoice=%s: e-mail not sent: %s", self.tenant, invoice.invoice_number, exc
                )
                details["email_error"] = str(exc)
                parsed = None
            if parsed is not None:
                details["emailed"] = True
                return self._with_status(result, details, parsed)
            if self.settings.invoice_status != "sent":
                return DeliveryResult(
                    result.invoice_key,
                    result.external_id,
                    result.external_number,
                    result.created,
                    result.attempts,
                    details,
                )
        resp = await self._call(
            "PUT",
            url,
            content=dumps({"invoice": {"action_mark_as_sent": True}}),
            headers={"Content-Type": "application/json"},
        )
        parsed = self._raise_for_status(resp, f"FreshBooks mark invoice {invoice.invoice_number} as sent")
        return self._with_status(result, details, parsed)

    @staticmethod
    def _with_status(result: DeliveryResult, details: dict, parsed: Any) -> DeliveryResult:
        entity = parsed.get("invoice") if isinstance(parsed, dict) else None
        if isinstance(entity, dict):
            details["v3_status"] = entity.get("v3_status") or entity.get("display_status")
        return DeliveryResult(
            result.invoice_key, result.external_id, result.external_number, result.created, result.attempts, details
        )

    async def _find_entity(self, invoice_number: str) -> dict | None:
        url = self._account_url("invoices/invoices")
        resp = await self._call("GET", url, params={"search[invoice_number]": invoice_number, "per_page": "100"})
        result = self._raise_for_status(resp, f"FreshBooks GET invoices?search[invoice_number]={invoice_number}")
        invoices = result.get("invoices") if isinstance(result, dict) else None
        if not isinstance(invoices, list):
            raise RetryableError("FreshBooks GET invoices: unreadable body", http_status=resp.status_code)
        for entity in invoices:  # the filter is trusted for nothing: exact match, active only
            if (
                isinstance(entity, dict)
                and str(entity.get("invoice_number", "")) == invoice_number
                and entity.get("vis_state", 0) == 0
                and entity.get("invoiceid", entity.get("id")) is not None
            ):
                return entity
        return None

    async def find(self, invoice_number: str) -> ExternalInvoice | None:
        """``GET .../invoices/invoices?search[invoice_number]=<n>`` — the exact, active match or ``None``."""
        entity = await self._find_entity(invoice_number)
        return invoice_from_freshbooks(entity) if entity is not None else None

    # ------------------------------------------------------------------ contacts (ContactDirectory)
    async def find_contact(self, field: LookupField, value: str) -> str | None:
        """Client ``userid`` by e-mail (``search[email]``) or organisation name (``search[organization_like]``,
        then exact match). Tax numbers are not searchable in the material available: ``None``."""
        if field == "email":
            params, column = {"search[email]": value}, "email"
        elif field == "name":
            params, column = {"search[organization_like]": value}, "organization"
        else:
            return None
        resp = await self._call("GET", self._account_url("users/clients"), params={**params, "per_page": "100"})
        result = self._raise_for_status(resp, f"FreshBooks GET clients by {field}")
        for client in (result.get("clients") if isinstance(result, dict) else None) or []:
            if (
                isinstance(client, dict)
                and str(client.get(column) or "").strip().casefold() == value.strip().casefold()
            ):
                return str(client.get("userid", client.get("id")))
        return None

    async def create_contact(self, query: ContactQuery) -> str:
        """``POST .../users/clients`` with ``organization`` (and ``email``/``vat_number`` when known)."""
        client: dict[str, Any] = {"organization": query.name}
        if query.email:
            client["email"] = query.email
        if query.tax_number:
            client["vat_number"] = query.tax_number
        resp = await self._call(
            "POST",
            self._account_url("users/clients"),
            content=dumps({"client": client}),
            headers={"Content-Type": "application/json"},
        )
        result = self._raise_for_status(resp, f"FreshBooks POST client for {query.client_id}")
        created = result.get("client") if isinstance(result, dict) else None
        if not isinstance(created, dict) or created.get("userid", created.get("id")) is None:
            raise UncertainOutcomeError("FreshBooks POST clients: response without a client")
        return str(created.get("userid", created.get("id")))

    async def aclose(self) -> None:
        if self._client is not None:
            client, self._client = self._client, None
            try:
                if self._client_loop is asyncio.get_running_loop():
                    await client.aclose()
            except RuntimeError:
                pass


__all__ = ["FreshBooksConnector", "FreshBooksSettings", "is_duplicate_number"]
