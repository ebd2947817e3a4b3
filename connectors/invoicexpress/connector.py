"""InvoiceXpress API v2 connector — an AT-certified Portuguese invoicing system.

Creates an invoice in up to three retry-safe steps (https://invoicexpress.com/api-v2/):

1. **draft** — ``POST https://{account}.app.invoicexpress.com/invoices.json?api_key=…`` with our
   invoice number in ``reference`` (InvoiceXpress numbers documents from its AT-registered
   sequence, so our key can only travel in a reference field);
2. **finalise** — ``PUT /invoices/{id}/change-state.json`` ``{"invoice": {"state": "finalized"}}``
   (what makes the invoice legally issued; only draft -> finalized is allowed, so a repeat on a
   final invoice fails — the connector reads the state first and treats "already final" as done);
3. **e-mail** (optional) — ``PUT /invoices/{id}/email-document.json``.

There is **no idempotency key** (none documented). Every :meth:`InvoiceXpressConnector.deliver`
starts with a lookup — ``GET /invoices.json?text=<our number>`` listed page by page, exact match on
``reference`` checked here — and resumes from what it finds. Caveat: the list filters were not
retrieved from InvoiceXpress's own reference; that ``text`` searches the reference is a
secondary-source fact (a community client schema, see ``../shared/billing-apis.md`` §7), which is
why every result is re-checked for an exact ``reference`` and why the emulator's ``text`` filter is
documented as an assumption. Before finalising, the draft's own ``total`` must equal ours to the
cent; a draft this call created with another total is deleted and nothing is issued.

Auth: the account's API key as the ``api_key`` query parameter (HTTPS only); URLs are therefore
never logged unredacted: :func:`install_log_redaction` puts a filter on the ``httpx`` logger (which
logs request URLs at INFO). Limit: 100 requests per minute per account, then 429
(``Capabilities.rate_limit_per_minute``).
"""

from __future__ import annotations

import asyncio
import logging
import re
from collections.abc import Mapping
from decimal import Decimal
from typing import Any, Literal

import httpx
from pydantic import Field, SecretStr

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
from connectors.invoicexpress.mapper import (
    DEFAULT_TAX_NAMES,
    EXEMPTION_CODE_PATTERN,
    dumps,
    invoice_from_invoicexpress,
    invoice_to_invoicexpress,
    ix_totals,
    loads,
    reference_of,
)
from connectors.sdk.invoice import Invoice, LineKind

log = logging.getLogger("connectors.invoicexpress")

#: Query parameters whose values are secrets (redacted from httpx's request log lines).
_SECRET_PARAMS = ("api_key", "access_token", "client_secret", "password", "refresh_token", "code")
_SECRET_QUERY = re.compile(r"((?:%s)=)[^&\s\"']+" % "|".join(_SECRET_PARAMS))
PAGE_SIZE = 25
#: Wait after a 429 without ``Retry-After``: the limit is counted per minute.
DEFAULT_RETRY_AFTER = 60.0


class _RedactQuerySecrets(logging.Filter):
    """Rewrites log records so ``api_key=…`` (and other credential) query values read ``***``."""

    marker = "broker-redact-query-secrets:invoicexpress"

    def filter(self, record: logging.LogRecord) -> bool:
        if record.args:
            args = record.args if isinstance(record.args, tuple) else (record.args,)
            record.args = tuple(_SECRET_QUERY.sub(r"\1***", str(a)) if "=" in str(a) else a for a in args)
        if isinstance(record.msg, str) and "=" in record.msg:
            record.msg = _SECRET_QUERY.sub(r"\1***", record.msg)
        return True


def install_log_redaction() -> None:
    """A filter on the ``httpx``/``httpcore`` loggers redacting ``api_key=…`` (httpx logs request URLs at INFO)."""
    for name in ("httpx", "httpcore"):
        logger = logging.getLogger(name)
        if not any(isinstance(f, _RedactQuerySecrets) for f in logger.filters):
            logger.addFilter(_RedactQuerySecrets())


install_log_redaction()


class InvoiceXpressSettings(ConnectorSettings):
    """``billing.settings`` of a tenant billed in InvoiceXpress.

    ``account_name`` (the subdomain), ``api_key_env`` (variable holding the API key), ``api_url``
    (a template with ``{account}``), ``sequence_id`` (the AT-registered series; the account default
    when unset), ``tax_names`` (VAT percentage text -> the account's tax name), ``tax_exemption``
    (AT code such as ``M07``/``M40``, required when any line is 0 %), ``item_names`` (our line kind
    -> catalogue item name), ``invoice_status`` (``finalized`` = issued, ``draft`` = left for
    review), ``send_email`` (+ ``email_subject``/``email_body``, ``{number}`` and ``{reference}``
    are filled in), ``rounding_method`` (how the account rounds VAT: ``line`` per item, which
    matches our rule, or ``document``; used to refuse before sending an invoice whose total would
    differ — the draft's own total is checked before finalising in any case).

    Clients: InvoiceXpress itself matches the invoice's ``client`` by ``code`` (our ``contact_id``,
    else our client id) and then name, and creates an unknown one. ``create_clients: false`` first
    looks the client up (``clients/find-by-code``, then ``find-by-name``) and refuses the invoice
    naming the client when neither finds it. ``rate_limit_per_minute``: a lower share of the
    account's 100 requests/minute when other integrations use the same account.
    """

    api_url: str = "https://{account}.app.invoicexpress.com"
    account_name: str = Field(pattern=r"^[a-z0-9][a-z0-9-]*$")
    api_key_env: str = Field(min_length=1)
    sequence_id: str | None = Field(default=None, pattern=r"^\d+$")
    tax_names: dict[str, str] = Field(default_factory=lambda: dict(DEFAULT_TAX_NAMES))
    tax_exemption: str | None = Field(default=None, pattern=EXEMPTION_CODE_PATTERN)
    item_names: dict[LineKind, str] = Field(default_factory=dict)
    invoice_status: Literal["finalized", "draft"] = "finalized"
    send_email: bool = False
    email_subject: str = "Fatura {number}"
    email_body: str = "Segue em anexo a fatura {number} ({reference})."
    rounding_method: Literal["line", "document"] = "line"
    currency: str = Field(default="EUR", min_length=3, max_length=3)
    create_clients: bool = True
    rate_limit_per_minute: int | None = Field(
        default=None,
        gt=0,
        le=100,
        description="Lower than the account's 100 requests/minute when other integrations share the account.",
    )


class InvoiceXpressConnector(Connector):
    """InvoiceXpress connector for one account of one broker tenant.

    Errors: :class:`RateLimitedError` (429), :class:`RetryableError` (5xx, not sent, a lost read),
    :class:`UncertainOutcomeError` (a create / state change sent without an answer — the next
    :meth:`deliver` looks up first), :class:`AuthError` (401/403: bad API key),
    :class:`UnknownAccountError` (404 on the account), :class:`PermanentError` (422 validation,
    field limits, a 0 % line without ``tax_exemption``, a total InvoiceXpress computes differently),
    :class:`ConfigError` (settings, missing variable).
    """

    name = "invoicexpress"
    version = "0.1.0"
    capabilities = Capabilities(
        native_idempotency=False,
        lookup_by_reference=True,
        batch_size=1,
        amendments=False,
        oauth2=False,
        rate_limit_per_minute=100,
        max_concurrency=None,
        daily_limit=None,
    )
    Settings = InvoiceXpressSettings

    def __init__(self, settings: InvoiceXpressSettings | Mapping[str, Any], *, tenant: str, token_store: Any = None):
        super().__init__(settings, tenant=tenant, token_store=token_store)
        self.settings: InvoiceXpressSettings = self.settings  # type: ignore[assignment]
        self._client: httpx.AsyncClient | None = None
        self._client_loop: asyncio.AbstractEventLoop | None = None
        self._api_key: SecretStr | None = None

    def __repr__(self) -> str:
        return f"InvoiceXpressConnector(tenant={self.tenant!r}, account={self.settings.account_name!r})"

    # ------------------------------------------------------------------ plumbing
    def _http(self) -> httpx.AsyncClient:
        loop = asyncio.get_running_loop()
        if self._client is not None and self._client_loop is not loop:
            self._client = None
        if self._client is None:
            install_log_redaction()  # cheap; survives a logging reconfiguration that dropped the filter
            self._client_loop = loop
            self._client = httpx.AsyncClient(
                timeout=httpx.Timeout(self.settings.timeout_seconds),
                headers={
                    "User-Agent": "maintenance-billing-broker/0.1 (invoicexpress connector)",
                    "Accept": "application/json",
                },
            )
        return self._client

    @property
    def base_url(self) -> str:
        return self.settings.api_url.replace("{account}", self.settings.account_name).rstrip("/")

    def secret_values(self) -> list[str]:
        values = super().secret_values()
        if self._api_key is not None and self._api_key.get_secret_value():
            values.append(self._api_key.get_secret_value())
        return values

    def _key(self) -> SecretStr:
        if self._api_key is None:
            try:
                self._api_key = resolve_secret(self.settings.api_key_env, field="billing.settings.api_key_env")
            except BrokerConfigError as exc:
                raise ConfigError(str(exc)) from None
        return self._api_key

    async def _request(
        self,
        method: str,
        path: str,
        *,
        idempotent: bool,
        what: str,
        params: Mapping[str, Any] | None = None,
        body: Any = None,
    ) -> httpx.Response:
        """One API call with ``api_key``; transport failures and 401/403/404/429/5xx mapped onto the taxonomy."""
        query: dict[str, Any] = dict(params or {})
        query["api_key"] = self._key().get_secret_value()
        kwargs: dict[str, Any] = {"params": query}
        if body is not None:
            kwargs["content"] = dumps(body)
            kwargs["headers"] = {"Content-Type": "application/json; charset=utf-8"}
        try:
            resp = await self._http().request(method, self.base_url + path, **kwargs)
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
            raise ConfigError(f"{what}: bad api_url/account_name in settings ({self.settings.api_url})") from None
        except httpx.TransportError as exc:
            if idempotent:
                raise RetryableError(f"{what}: transport error ({type(exc).__name__})") from None
            raise UncertainOutcomeError(f"{what}: transport error ({type(exc).__name__})") from None
        status = resp.status_code
        if status == 429:
            raw = resp.headers.get("Retry-After")
            try:
                retry_after = float(raw) if raw is not None else DEFAULT_RETRY_AFTER
            except ValueError:
                retry_after = DEFAULT_RETRY_AFTER
            raise RateLimitedError(
                f"{what}: 429 rate limited (100 requests/minute per account), retry after {retry_after:g}s",
                retry_after=retry_after,
            )
        if status >= 500:
            raise RetryableError(f"{what}: HTTP {status} ({self._detail(resp)})", http_status=status)
        if status in (401, 403):
            raise AuthError(
                f"{what}: HTTP {status} ({self._detail(resp)}): check {self.settings.api_key_env} "
                f"for account {self.settings.account_name}",
                http_status=status,
            )
        return resp

    @staticmethod
    def _json(resp: httpx.Response) -> Any:
        try:
            return loads(resp.content) if resp.content else None
        except ValueError:
            return None

    def _messages(self, resp: httpx.Response) -> list[str]:
        """Messages of ``{"errors": [{"error": …}]}`` (also ``{"errors": {field: [...]}}``, ``{"error": …}``)."""
        body = self._json(resp)
        out: list[str] = []
        if isinstance(body, dict):
            errors = body.get("errors")
            if isinstance(errors, list):
                for err in errors:
                    if isinstance(err, dict):
                        out.append(str(err.get("error") or err.get("message") or err))
                    else:
                        out.append(str(err))
            elif isinstance(errors, dict):
                for key, value in errors.items():
                    for msg in value if isinstance(value, list) else [value]:
                        out.append(f"{key}: {msg}")
            for key in ("error", "message"):
                if isinstance(body.get(key), str):
                    out.append(body[key])
        return [self.scrub(m) for m in out]

    def _detail(self, resp: httpx.Response) -> str:
        messages = self._messages(resp)
        if messages:
            return "; ".join(messages)[:300]
        return self.scrub(resp.text[:200]) if resp.text else "no body"

    def _fail(self, resp: httpx.Response, what: str) -> PermanentError:
        return PermanentError(
            f"{what}: InvoiceXpress refused (HTTP {resp.status_code}): {self._detail(resp)}",
            http_status=resp.status_code,
        )

    # ------------------------------------------------------------------ documents
    async def _lookup(self, invoice_number: str) -> dict[str, Any] | None:
        """The invoice whose ``reference`` is ours (``GET /invoices.json?text=…``, every page); the oldest when several."""
        reference = reference_of(invoice_number)
        matches: list[dict[str, Any]] = []
        page = 1
        what = f"InvoiceXpress GET /invoices.json?text={reference}"
        while True:
            resp = await self._request(
                "GET",
                "/invoices.json",
                idempotent=True,
                what=what,
                params={"text": reference, "page": page, "per_page": PAGE_SIZE},
            )
            if resp.status_code == 404:
                raise UnknownAccountError(f"unknown InvoiceXpress account {self.settings.account_name} (HTTP 404)")
            if resp.status_code >= 400:
                raise self._fail(resp, what)
            body = self._json(resp)
            docs = body.get("invoices") if isinstance(body, dict) else None
            if not isinstance(docs, list):
                raise RetryableError(f"{what}: answer without an 'invoices' list")
            matches += [
                d
                for d in docs
                if isinstance(d, dict)
                and str(d.get("reference") or "") == reference
                and d.get("id")
                and d.get("status") != "deleted"
            ]
            pagination = body.get("pagination") if isinstance(body.get("pagination"), dict) else {}
            total_pages = int(pagination.get("total_pages") or 1)
            if page >= total_pages or not docs:
                break
            page += 1
        if len(matches) > 1:
            log.warning(
                "invoicexpress tenant=%s: %d invoices carry reference %s; using the oldest",
                self.tenant,
                len(matches),
                reference,
            )
        return min(matches, key=lambda d: int(d["id"])) if matches else None

    async def _get(self, document_id: int) -> dict[str, Any]:
        what = f"InvoiceXpress GET /invoices/{document_id}.json"
        resp = await self._request("GET", f"/invoices/{document_id}.json", idempotent=True, what=what)
        if resp.status_code >= 400:
            raise self._fail(resp, what)
        body = self._json(resp)
        doc = body.get("invoice") if isinstance(body, dict) else None
        if not isinstance(doc, dict) or not doc.get("id"):
            raise RetryableError(f"{what}: answer without an invoice")
        return doc

    async def _change_state(self, document_id: int, state: str, what: str) -> dict[str, Any]:
        resp = await self._request(
            "PUT",
            f"/invoices/{document_id}/change-state.json",
            idempotent=False,
            what=what,
            body={"invoice": {"state": state}},
        )
        if resp.status_code >= 400:
            raise self._fail(resp, what)
        body = self._json(resp)
        doc = body.get("invoice") if isinstance(body, dict) else None
        return doc if isinstance(doc, dict) else await self._get(document_id)

    def _client_info(self, invoice: Invoice) -> tuple[str | None, str | None]:
        client = self.clients.get(invoice.client_id)
        return (getattr(client, "email", None) or None, getattr(client, "tax_number", None) or None)

    async def _find_client(self, kind: str, value: str) -> dict[str, Any] | None:
        """``GET /clients/find-by-code.json?client_code=`` or ``find-by-name.json?client_name=``; None on 404."""
        param = "client_code" if kind == "code" else "client_name"
        what = f"InvoiceXpress GET /clients/find-by-{kind}.json"
        resp = await self._request(
            "GET", f"/clients/find-by-{kind}.json", idempotent=True, what=what, params={param: value}
        )
        if resp.status_code == 404:
            return None
        if resp.status_code >= 400:
            raise self._fail(resp, what)
        body = self._json(resp)
        client = body.get("client") if isinstance(body, dict) else None
        return client if isinstance(client, dict) else None

    async def _resolve_client(self, invoice: Invoice) -> Invoice:
        """With ``create_clients: false``: the existing client (by code, then exact name) or a PermanentError naming it."""
        if self.settings.create_clients:
            return invoice
        code = invoice.contact_id or invoice.client_id
        client = await self._find_client("code", code)
        if client is None:
            client = await self._find_client("name", invoice.client_name)
        if client is None:
            raise PermanentError(
                f"client {invoice.client_id} ({invoice.client_name}) has no InvoiceXpress client: none with code {code!r} "
                f"or that name; add it in InvoiceXpress, map clients.{invoice.client_id}.contact_id to its code, or allow "
                "creation (billing.settings.create_clients: true)"
            )
        if client.get("code") and str(client["code"]) != code:
            invoice = invoice.model_copy(update={"contact_id": str(client["code"])})
        return invoice

    def _expected_total(self, invoice: Invoice, body: Mapping[str, Any]) -> Decimal:
        rows = [
            (Decimal(item["quantity"]), Decimal(item["unit_price"]), Decimal(item.get("discount") or 0), line.tax_rate)
            for item, line in zip(body["invoice"]["items"], invoice.lines)
        ]
        return ix_totals(rows, self.settings.rounding_method).total

    async def deliver(self, invoice: Invoice) -> DeliveryResult:
        """Create the draft, verify its total, finalise and e-mail — resuming from what a previous attempt left.

        Returns ``DeliveryResult(external_id=<id>, external_number=<sequence_number>`` (empty while a
        draft), ``created`` = created by this call, ``details``: ``total``, ``status``,
        ``total_matches``, ``steps``, ``email``).
        """
        what = f"InvoiceXpress invoice {invoice.invoice_number}"
        invoice = await self._resolve_client(invoice)
        email, fiscal_id = self._client_info(invoice)
        body = invoice_to_invoicexpress(invoice, self.settings, client_email=email, client_fiscal_id=fiscal_id)
        expected = self._expected_total(invoice, body)
        if expected != invoice.total:
            raise PermanentError(
                f"{what}: InvoiceXpress would compute a total of {expected} (VAT rounded per "
                f"{'item' if self.settings.rounding_method == 'line' else 'document'}) but ours is {invoice.total}; nothing was sent"
            )
        steps: list[str] = []
        existing = await self._lookup(invoice.invoice_number)
        created = False
        if existing is None:
            resp = await self._request(
                "POST", "/invoices.json", idempotent=False, what=f"{what}: POST /invoices.json", body=body
            )
            if resp.status_code == 404:
                raise UnknownAccountError(f"unknown InvoiceXpress account {self.settings.account_name} (HTTP 404)")
            if resp.status_code >= 400:
                raise self._fail(resp, f"{what}: POST /invoices.json")
            answer = self._json(resp)
            doc = answer.get("invoice") if isinstance(answer, dict) else None
            if not isinstance(doc, dict) or not doc.get("id"):
                raise UncertainOutcomeError(f"{what}: create answered without an invoice id; reconcile with find()")
            created = True
            steps.append("created draft")
        else:
            doc = await self._get(int(existing["id"]))
            steps.append(f"found {doc.get('status')}")
        document_id = int(doc["id"])
        email_note = None
        if doc.get("status") == "draft":
            total = Decimal(str(doc.get("total")))
            if total != invoice.total:
                if created:
                    await self._change_state(document_id, "deleted", f"{what}: delete draft (total mismatch)")
                    steps.append("deleted draft")
                raise PermanentError(
                    f"{what}: InvoiceXpress computed a total of {total} for draft {document_id} but ours is {invoice.total}; "
                    + (
                        "the draft was deleted and nothing was issued"
                        if created
                        else "the existing draft was left unissued"
                    )
                )
            if self.settings.invoice_status == "finalized":
                doc = await self._finalize(document_id, what)
                steps.append("finalized")
                if self.settings.send_email:
                    email_note = await self._email(invoice, doc, email)
        return DeliveryResult(
            invoice_key=invoice.invoice_key,
            external_id=str(document_id),
            external_number=invoice_from_invoicexpress(doc).number,
            created=created,
            details={
                "total": str(doc.get("total")),
                "taxes": str(doc.get("taxes")),
                "status": doc.get("status"),
                "total_matches": Decimal(str(doc.get("total"))) == invoice.total,
                "reference": reference_of(invoice.invoice_number),
                "atcud": doc.get("atcud"),
                "steps": steps,
                "email": email_note,
            },
        )

    async def _finalize(self, document_id: int, what: str) -> dict[str, Any]:
        """draft -> finalized; an invoice already final (an earlier attempt whose answer was lost) counts as done."""
        try:
            return await self._change_state(document_id, "finalized", f"{what}: finalize")
        except PermanentError:
            doc = await self._get(document_id)
            if doc.get("status") in ("final", "settled"):
                return doc
            raise

    async def _email(self, invoice: Invoice, doc: Mapping[str, Any], email: str | None) -> str:
        """``PUT /invoices/{id}/email-document.json``; never undoes the issued invoice.

        Sent only right after this call finalised the invoice (an invoice found already final is
        not e-mailed again, so a redelivery never spams the customer). A transient failure is retried
        once (after ``Retry-After`` when ≤ 10 s); a remaining failure is logged and reported in
        ``details["email"]`` — the invoice is issued either way.
        """
        client = doc.get("client") if isinstance(doc.get("client"), dict) else {}
        address = email or str(client.get("email") or "").strip() or None
        if not address:
            log.warning(
                "invoicexpress tenant=%s invoice=%s: send_email is on but the client has no e-mail address",
                self.tenant,
                invoice.invoice_number,
            )
            return "skipped: no e-mail address for the client"
        number = invoice_from_invoicexpress(doc).number or invoice.invoice_number
        fill = {"number": number, "reference": invoice.invoice_number}
        message = {
            "message": {
                "client": {"email": address, "save": "0"},
                "subject": self.settings.email_subject.format_map(fill),
                "body": self.settings.email_body.format_map(fill),
            }
        }
        what = f"InvoiceXpress invoice {invoice.invoice_number}: e-mail"
        last: Exception | None = None
        for attempt in (1, 2):
            try:
                resp = await self._request(
                    "PUT", f"/invoices/{doc['id']}/email-document.json", idempotent=False, what=what, body=message
                )
                if resp.status_code >= 400:
                    raise self._fail(resp, what)
                return f"sent to {address}"
            except RateLimitedError as exc:
                last = exc
                if attempt == 1 and exc.retry_after <= 10:
                    await asyncio.sleep(exc.retry_after)
                    continue
                break
            except (RetryableError, UncertainOutcomeError) as exc:
                last = exc
                if isinstance(exc, UncertainOutcomeError):
                    break  # may have been sent: do not send twice
                if attempt == 1:
                    await asyncio.sleep(1.0)
                    continue
            except PermanentError as exc:
                last = exc
                break
        log.warning(
            "invoicexpress tenant=%s invoice=%s: invoice issued but e-mail failed: %s",
            self.tenant,
            invoice.invoice_number,
            last,
        )
        return f"failed: {last}"

    async def find(self, invoice_number: str) -> ExternalInvoice | None:
        """The InvoiceXpress invoice whose ``reference`` is ``invoice_number``, when its delivery is complete.

        With ``invoice_status: finalized`` a draft (a delivery interrupted before finalising) is
        reported as ``None`` so that a caller reconciling with :meth:`find` calls :meth:`deliver`
        again, which verifies and finalises that draft instead of creating another.
        """
        doc = await self._lookup(invoice_number)
        if doc is None:
            return None
        found = invoice_from_invoicexpress(doc)
        if self.settings.invoice_status == "finalized" and found.status == "draft":
            return None
        return found

    async def check(self) -> None:
        """``GET /sequences.json`` — cheap, authenticated, and it proves ``sequence_id`` exists when one is set."""
        what = "InvoiceXpress GET /sequences.json"
        resp = await self._request("GET", "/sequences.json", idempotent=True, what=what)
        if resp.status_code == 404:
            raise UnknownAccountError(
                f"unknown InvoiceXpress account {self.settings.account_name} (HTTP 404 at {self.base_url})"
            )
        if resp.status_code >= 400:
            raise self._fail(resp, what)
        if self.settings.sequence_id:
            body = self._json(resp)
            ids = (
                [str(s.get("id")) for s in (body.get("sequences") or []) if isinstance(s, dict)]
                if isinstance(body, dict)
                else []
            )
            if self.settings.sequence_id not in ids:
                raise ConfigError(
                    f"billing.settings.sequence_id {self.settings.sequence_id} is not a sequence of account "
                    f"{self.settings.account_name} (known: {', '.join(ids) or 'none'})"
                )

    async def aclose(self) -> None:
        if self._client is not None:
            client, self._client = self._client, None
            try:
                if self._client_loop is asyncio.get_running_loop():
                    await client.aclose()
            except RuntimeError:
                pass


__all__ = ["InvoiceXpressConnector", "InvoiceXpressSettings", "install_log_redaction"]
