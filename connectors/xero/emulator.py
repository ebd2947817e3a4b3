"""A loopback emulator of Xero (identity + Accounting API 2.0 subset) on one port.

Behaves like the real service where the broker depends on it (sources: official spec
``xero_accounting.yaml`` / ``xero-identity.yaml``, https://developer.xero.com/documentation/api/accounting/invoices,
https://developer.xero.com/faq/oauth2, https://developer.xero.com/documentation/auth-and-limits/xero-api-limits,
https://developer.xero.com/documentation/api-guides/rounding-in-xero):

* ``POST /connect/token`` – refresh-token grant with HTTP Basic ``client_id:client_secret`` (or form
  fields). Refresh tokens rotate on every use and are **single-use by default**: a spent one is
  refused with ``invalid_grant`` at once (``refresh_grace_seconds=0``, stricter than Xero, which keeps
  the previous token usable for a 30-minute grace period: pass ``refresh_grace_seconds=1800`` to
  emulate that). Access tokens expire after ``access_token_ttl`` seconds (Xero: 1,800). Errors: 400
  ``invalid_client``, ``invalid_grant``, ``unsupported_grant_type``. Token lifetimes run on the
  emulator's **clock** (:meth:`XeroEmulator.advance_clock`), so a test can jump past the grace
  period or an access token's expiry without waiting; :meth:`XeroEmulator.revoke_connection` kills
  every token issued (the user disconnected the app; only a new authorisation helps).
* ``GET /identity/connect/authorize`` (login.xero.com) – consents at once and redirects (302) to the
  loopback ``redirect_uri`` with ``code`` and ``state``; ``POST /connect/token`` with
  ``grant_type=authorization_code`` exchanges it (single-use, same ``redirect_uri``, PKCE S256
  verifier checked). Tokens carry ``scopes`` (settable, to emulate a connection missing a scope).
* ``GET /connections`` – the organisations (``tenant_ids``) the token can reach.
* ``PUT``/``GET /api.xro/2.0/Invoices``, ``GET /api.xro/2.0/Invoices/{InvoiceID|InvoiceNumber}``,
  ``POST /api.xro/2.0/Invoices/{InvoiceID}`` (``updateInvoice``: status changes only — ``DRAFT``/
  ``SUBMITTED`` -> ``DELETED``, ``AUTHORISED`` without payments -> ``VOIDED``, ``DRAFT`` -> ``SUBMITTED``
  -> ``AUTHORISED``; anything else is Xero's validation error: a ``PAID`` invoice, or one with a payment,
  cannot be voided or deleted),
  ``PUT``/``GET /api.xro/2.0/CreditNotes``, ``GET /api.xro/2.0/CreditNotes/{CreditNoteID}`` (``ACCRECCREDIT``/
  ``ACCPAYCREDIT``, totals computed like invoices, no line discounts, ``CreditNoteNumber`` unique per
  organisation, not allocated: ``RemainingCredit`` = ``Total``),
  ``PUT``/``GET /api.xro/2.0/Contacts``, ``GET /api.xro/2.0/Contacts/{ContactID}`` (``GET /Contacts``
  leaves ``ARCHIVED`` contacts out unless ``includeArchived=true``). An invoice or credit note for an
  archived contact is refused with :data:`ARCHIVED_CONTACT_MESSAGE` (contacts are archived by
  :meth:`XeroEmulator.archive_contact`; restoring one is a person's job in Xero).
  Bearer token required (401 ``TokenExpired``/``AuthenticationUnsuccessful``), ``xero-tenant-id``
  required and known (403 ``AuthorizationUnsuccessful``).
* A line item with only a ``Description`` (no ``Quantity``, ``UnitAmount``, ``LineAmount``) is a
  description-only line: no amount, no tax (spec ``LineItem.Description``).
* Totals as Xero computes them: ``LineAmount = Quantity × UnitAmount × (100 − DiscountRate)/100``
  (or ``− DiscountAmount``) rounded half-up to 2 dp; a sent ``LineAmount`` that differs fails with
  "The line total X does not match the expected line total Y"; tax per line = the sent
  ``TaxAmount`` or ``LineAmount × rate`` (``Inclusive``: ``LineAmount × rate / (100 + rate)``),
  rounded to 2 dp; ``SubTotal``/``TotalTax``/``Total`` are sums of the rounded lines; a sent
  ``Total`` is ignored. ``UnitAmount`` is kept to 2 dp, or 4 dp with ``?unitdp=4``.
* ACCREC ``InvoiceNumber`` unique per organisation (``Invoice # must be unique.``);
  ``summarizeErrors=false`` -> 200 with per-element ``HasErrors``/``ValidationErrors``, otherwise
  400 ``{"ErrorNumber": 10, "Type": "ValidationException", "Message": ..., "Elements": [...]}``
  and nothing is stored.
* ``Idempotency-Key`` (≤128 chars) cached ``idempotency_ttl`` (6 min) per organisation: the same
  key with the same method + URL + body replays the first response; with a different request it is
  a 400. Rate limits are checked before the idempotency cache.
* Limits per organisation: sliding 60-second window of ``rate_limit_per_minute`` calls,
  ``daily_limit`` per rolling 24 h, ``max_concurrency`` in flight, plus an app-wide per-minute
  limit; over one -> 429 with ``Retry-After`` (seconds) and ``X-Rate-Limit-Problem``
  (``minute``/``day``/``concurrent``/``appminute``). Every Accounting response carries
  ``X-MinLimit-Remaining``, ``X-DayLimit-Remaining`` and ``X-AppMinLimit-Remaining``.

Test hooks: ``request_validator`` (see :mod:`connectors.xero.spec`), :meth:`XeroEmulator.inject_fault`,
:meth:`XeroEmulator.expire_access_tokens`, and the control API for other processes::

    GET  /_emulator/invoices   -> [invoice, ...]  (all organisations, each with "TenantID")
    GET  /_emulator/contacts   -> [contact, ...]
    GET  /_emulator/stats      -> {"calls": [[method, path, status], ...], "call_count", "count_429",
                                   "validation_failures": [...], "server_errors": [...], "invoice_count",
                                   "refresh_token_uses"}
    POST /_emulator/faults     {"kind": "503", "times": 3}   (kinds: FAULT_KINDS; "429" answers
                               Retry-After: fault_retry_after)
    POST /_emulator/outage     {"seconds": 120, "tenant_id": "...", "status": 503}   (all calls of that
                               organisation, or of all when tenant_id is omitted, answer 503 until then)
    GET  /_emulator/credit-notes -> [credit note, ...]
    GET  /_emulator/history    -> [[seconds since start, kind, tenant, number, detail], ...]
    POST /_emulator/payments   {"InvoiceID": "...", "Amount": 10.00}   (a payment; no Amount: all that is due)
    POST /_emulator/archive-contact {"ContactID": "...", "tenant_id": "..."}   (XeroEmulator.archive_contact:
                               its invoices and credit notes are refused from then on)
    GET  /_emulator/balance    ?tenant_id=...&contact_id=...  -> {"balance": "..."}  (see XeroEmulator.balance)
    POST /_emulator/reset
    POST /_emulator/expire-tokens
    POST /_emulator/clock      {"advance": 1860}  -> {"offset": 1860.0}   (token clock moves forward)
    POST /_emulator/revoke     (every access and refresh token issued so far is dead)
    POST /_emulator/webhooks   {"url": "http://.../webhooks/payments/xero/acme", "key": "..."}  (where webhooks go)
    GET  /_emulator/webhooks   -> {"deliveries": [[event, status, attempt], ...], "sent": n}
    POST /_emulator/webhooks/intent    -> {"ok", "bad_signature_status", "good_signature_status"}
    POST /_emulator/webhooks/redeliver {"index": -1}   (the same body and signature again, as Xero retries)

Webhooks (https://developer.xero.com/documentation/guides/webhooks/overview/, spec ``xero-webhooks.yaml``,
``shared/billing-apis.md`` § 2): with a ``webhook_url``, every change to an invoice (a payment recorded by
:meth:`XeroEmulator.mark_paid`, a status change by ``updateInvoice``) POSTs ``{"events": [{"resourceUrl",
"resourceId", "tenantId", "tenantType": "ORGANISATION", "eventCategory": "INVOICE", "eventType": "UPDATE",
"eventDateUtc"}], "firstEventSequence", "lastEventSequence", "entropy"}`` with ``x-xero-signature`` = Base64
of HMAC-SHA256(webhook key, raw body). Xero has no separate "paid" event: the receiver reads the invoice.
:meth:`XeroEmulator.intent_to_receive` runs Xero's "Intent to Receive" check: the endpoint must answer 401
to a wrongly signed request and 200 to a rightly signed one.
"""

from __future__ import annotations

import base64
import copy
import hashlib
import hmac
import json
import math
import re
import secrets
import time
import uuid
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field
from datetime import UTC, date, datetime
from decimal import ROUND_HALF_UP, Decimal
from pathlib import Path
from typing import Any, ClassVar
from urllib.parse import unquote

from connectors.sandbox import Emulator, ReplayCache, TokenHolder, Tokens
from connectors.sandbox.emulator import AdminRoute, RequestValidator, serve_until_interrupted
from connectors.sandbox.faults import Fault
from connectors.sandbox.http import Request, Response, json_response, loads_decimal
from connectors.sandbox.limits import Concurrency, Window, add_all, day_window, first_full
from connectors.sandbox.oauth import INVALID_VERIFIER, LOOPBACK_REDIRECT, bearer, redirect_to, token_grant
from connectors.sandbox.values import decimal_or_none
from connectors.sandbox.webhooks import WebhookSender, post

DEFAULT_TENANT_ID = "00000000-0000-0000-0000-000000000001"
#: Xero's validation message for an invoice or credit note whose ``Contact`` is archived (quoted by Xero
#: integrators' support pages, e.g. https://knowledgebase.agridigital.io/en/articles/7923511-xero-errors-archived-contacts
#: and https://help.writeupp.com/en/article/xero-troubleshooting-axgu8g/; restoring is done in Xero:
#: Contacts > Archived > Restore).
ARCHIVED_CONTACT_MESSAGE = (
    "The contact with the specified contact details has been archived. "
    "The contact must be un-archived before creating new invoices or credit notes."
)
PROVIDER_NAME = "Xero Emulator (maintenance-billing-broker)"
#: The demo app's webhook signing key (Xero shows it on the app's Webhooks page).
DEFAULT_WEBHOOK_KEY = "demo-xero-webhook-key"

#: TaxType code -> rate percent. A small organisation TaxRates table (codes from Xero's UK/NZ/AU sets;
#: ``OUTPUT2`` is set to 23 % to match the Portuguese demo tenant). Override with ``tax_rates=``.
DEFAULT_TAX_RATES: dict[str, Decimal] = {
    "OUTPUT2": Decimal("23"),
    "OUTPUT": Decimal("20"),
    "OUTPUT3": Decimal("13"),
    "OUTPUT4": Decimal("6"),
    "RROUTPUT": Decimal("5"),
    "NONE": Decimal("0"),
    "EXEMPTOUTPUT": Decimal("0"),
    "ZERORATEDOUTPUT": Decimal("0"),
    "ECZROUTPUT": Decimal("0"),
    "ECZROUTPUTSERVICES": Decimal("0"),
    "REVERSECHARGES": Decimal("0"),
}
#: Revenue account codes of Xero's demo chart of accounts (200 Sales, 260 Other Revenue, 270 Interest Income).
DEFAULT_ACCOUNT_CODES: tuple[str, ...] = ("200", "260", "270")
FAULT_KINDS = ("503", "500", "429", "timeout_after_commit", "drop_after_commit", "reset")

_CENT = Decimal("0.01")
_Q4 = Decimal("0.0001")
_WHERE_TERM = re.compile(r'^\s*(\w+)\s*==\s*"((?:[^"\\]|\\.)*)"\s*$')


def demo_contacts(config_path: str | Path | None = None) -> dict[str, dict[str, str]]:
    """``{xero_tenant_id: {ContactID: Name}}`` from the clients of the bundled demo configuration.

    Reads ``broker/examples/config.yaml`` (or ``config_path``): for every tenant billed in Xero,
    each client with a ``contact_id`` becomes a contact of that tenant's organisation, so the demo's
    invoices (which reference contacts by ``ContactID``) are accepted. Returns ``{}`` when the file
    is missing or unreadable.
    """
    try:
        import yaml

        if config_path is None:  # the broker's bundled examples, installed beside this package (no import)
            config_path = Path(__file__).resolve().parents[2] / "broker" / "examples" / "config.yaml"
        raw = yaml.safe_load(Path(config_path).read_text(encoding="utf-8"))
        seeded: dict[str, dict[str, str]] = {}
        for tenant in (raw.get("tenants") or {}).values():
            billing = tenant.get("billing") or {}
            org = (billing.get("settings") or {}).get("xero_tenant_id")
            if billing.get("system") != "xero" or not org:
                continue
            for client in (tenant.get("clients") or {}).values():
                if client.get("contact_id"):
                    seeded.setdefault(str(org), {})[str(client["contact_id"])] = str(
                        client.get("name") or client["contact_id"]
                    )
        return seeded
    except Exception:  # noqa: BLE001 - the seed is a convenience; never fail construction over it
        return {}


def _q2(value: Decimal) -> Decimal:
    return value.quantize(_CENT, rounding=ROUND_HALF_UP)


def _ms_date(d: date | datetime) -> str:
    """Xero's JSON date format ``/Date(1552262400000+0000)/`` (milliseconds since the epoch, UTC)."""
    if not isinstance(d, datetime):
        d = datetime(d.year, d.month, d.day, tzinfo=UTC)
    return f"/Date({int(d.timestamp() * 1000)}+0000)/"


def _now_utc() -> datetime:
    return datetime.now(UTC)


def _problem(status: int, title: str, detail: str) -> Response:
    """Xero's problem-details body for 401/403 (``{"Type": null, "Title", "Status", "Detail", ...}``)."""
    return json_response(
        status,
        {
            "Type": None,
            "Title": title,
            "Status": status,
            "Detail": detail,
            "Instance": str(uuid.uuid4()),
            "Extensions": {},
        },
    )


def _validation_exception(elements: list[dict], message: str = "A validation exception occurred") -> Response:
    """HTTP 400 with spec schema ``Error`` (``ErrorNumber``, ``Type``, ``Message``, ``Elements`` of ``Element``)."""
    return json_response(
        400, {"ErrorNumber": 10, "Type": "ValidationException", "Message": message, "Elements": elements}
    )


def _post_data_invalid(message: str) -> Response:
    """HTTP 400 ``PostDataInvalidException`` (a body Xero cannot read)."""
    return json_response(400, {"ErrorNumber": 14, "Type": "PostDataInvalidException", "Message": message})


def _where(rows: list[dict], where: str, fields: tuple[str, ...]) -> list[dict] | Response:
    """``rows`` filtered by a ``where`` of ``Field == "value"`` terms joined by ``AND`` (``fields`` only),
    or the 400 ``QueryParseException`` of a term the emulator does not support."""
    where = where.strip()
    if not where:
        return rows
    for term in re.split(r"\s+AND\s+", where, flags=re.IGNORECASE):
        m = _WHERE_TERM.match(term)
        if not m or m.group(1) not in fields:
            return json_response(
                400,
                {
                    "ErrorNumber": 16,
                    "Type": "QueryParseException",
                    "Message": f"where clause not supported by the emulator: {term!r}",
                },
            )
        field_name, value = m.group(1), re.sub(r"\\(.)", r"\1", m.group(2))
        rows = [r for r in rows if str(r.get(field_name, "")) == value]
    return rows


#: an element of a PUT: (as sent, the built object or None, its validation errors, what stores it or None)
_Built = tuple[Any, dict | None, list[str], Callable[[], None] | None]
#: stores a valid element and renders the answer: (as sent, built object, commit) -> rendered object
_Store = Callable[[Any, dict, Callable[[], None]], dict]


@dataclass
class ClockedTokens(Tokens):
    """:class:`Tokens` whose lifetimes (access-token expiry, refresh-token grace) run on ``clock``
    (monotonic seconds; the emulator's :meth:`XeroEmulator.now`) instead of ``time.monotonic``."""

    clock: Callable[[], float] = field(default=time.monotonic)

    def new_access(self, now: float | None = None) -> str:
        return super().new_access(self.clock() if now is None else now)

    def spend_refresh(self, presented: str, now: float | None = None) -> bool:
        return super().spend_refresh(presented, self.clock() if now is None else now)

    def rotate(self, presented: str, now: float | None = None) -> tuple[str, str] | None:
        return super().rotate(presented, self.clock() if now is None else now)

    def valid(self, token: str) -> bool:
        expires = self.access.get(token)
        return expires is not None and self.clock() < expires

    def revoke(self) -> None:
        """Every access and refresh token issued so far is dead (the next refresh is ``invalid_grant``)."""
        self.access.clear()
        for token in self.refresh:
            self.refresh[token] = -math.inf


@dataclass
class _TenantLimits:
    minute: Window
    day: Window
    inflight: Concurrency


class XeroEmulator(TokenHolder, Emulator):
    """Local Xero on ``host:port`` (``port=0`` picks a free port); start with :meth:`start` or ``with``.

    State is in memory and per organisation (``tenant_ids``). Public attributes for tests:
    ``calls`` (list of ``(method, path, status)``; status 0 = connection closed without a
    response), ``count_429``, ``validation_failures`` (messages of ``request_validator`` rejections),
    ``server_errors`` (tracebacks of emulator bugs, answered 500), ``refresh_token_uses``
    (refresh tokens presented to ``/connect/token``, in order).

    Extra keyword arguments beyond the documented ones: ``app_rate_limit_per_minute`` (10,000),
    ``idempotency_ttl`` (360 s), ``refresh_grace_seconds`` (0: a spent refresh token is refused at once;
    Xero's own grace is 1,800 s), ``tax_rates`` (TaxType ->
    percent), ``account_codes`` (valid AccountCodes; ``None`` accepts any), ``base_currency``
    ("EUR"), ``hang_seconds`` (how long a ``timeout_after_commit`` fault keeps the socket open, 30 s),
    ``response_delay`` (seconds each Accounting call holds its concurrency slot, 0),
    ``contacts`` (``{tenant_id: {ContactID: Name}}`` created at start and after :meth:`reset_state`;
    ``None`` = :func:`demo_contacts`, the clients of the bundled demo config; ``{}`` = none),
    ``rate_limit_window_seconds`` (60), ``enforce_unique_numbers`` (True), ``on_invoice_created``
    (test hook). ``history`` lists what changed, in order: ``(seconds since start, kind, tenant,
    number, detail)`` with kinds ``invoice.created``, ``invoice.status``, ``invoice.paid``, ``creditnote.created``.
    Lifecycle helpers: :meth:`add_invoice` (a document the broker did not create), :meth:`mark_paid`,
    :meth:`balance`.
    """

    name = "xero-emulator"
    server_version = "XeroEmulator/1.0"
    tokens: ClockedTokens
    fault_kinds = FAULT_KINDS

    def __init__(
        self,
        *,
        tenant_ids: Iterable[str] = (DEFAULT_TENANT_ID,),
        host: str = "127.0.0.1",
        port: int = 0,
        client_id: str = "demo-client",
        client_secret: str = "demo-secret",
        refresh_token: str = "demo-refresh-token",
        rate_limit_per_minute: int = 60,
        daily_limit: int = 5000,
        max_concurrency: int = 5,
        access_token_ttl: float = 1800,
        request_validator: RequestValidator | None = None,
        app_rate_limit_per_minute: int = 10000,
        idempotency_ttl: float = 360,
        refresh_grace_seconds: float = 0.0,
        tax_rates: dict[str, Decimal] | None = None,
        account_codes: Iterable[str] | None = DEFAULT_ACCOUNT_CODES,
        base_currency: str = "EUR",
        hang_seconds: float = 30.0,
        response_delay: float = 0.0,
        contacts: Mapping[str, Mapping[str, str]] | None = None,
        rate_limit_window_seconds: float = 60.0,
        enforce_unique_numbers: bool = True,
        on_invoice_created: Callable[[str, dict], Any] | None = None,
        webhook_url: str | None = None,
        webhook_key: str = DEFAULT_WEBHOOK_KEY,
    ):
        self._init_sandbox(
            host, port, hang_seconds=hang_seconds, response_delay=response_delay, request_validator=request_validator
        )
        self.client_id, self.client_secret = client_id, client_secret
        self.tenant_ids = tuple(tenant_ids)
        # limits (read on every call: tests change them on a running emulator)
        self.rate_limit_per_minute, self.daily_limit = rate_limit_per_minute, daily_limit
        self.max_concurrency, self.app_rate_limit_per_minute = max_concurrency, app_rate_limit_per_minute
        self.idempotency_ttl = idempotency_ttl
        self.tax_rates = {k.upper(): Decimal(v) for k, v in (tax_rates or DEFAULT_TAX_RATES).items()}
        self.account_codes = None if account_codes is None else frozenset(account_codes)
        self.base_currency = base_currency
        #: Length of the sliding window ``rate_limit_per_minute`` counts over (60 s as in Xero;
        #: scaled-down throttling tests use e.g. 20 calls per 10 s).
        self.rate_limit_window_seconds = float(rate_limit_window_seconds)
        #: ``False`` accepts a second ACCREC invoice / credit note with a number already used
        #: (tests that prove the broker never relies on Xero's uniqueness check).
        self.enforce_unique_numbers = enforce_unique_numbers
        #: Test hook called (with the lock held) after an invoice is stored and before the response
        #: is written: ``on_invoice_created(tenant_id, invoice)`` (e.g. to kill a worker right there).
        self.on_invoice_created = on_invoice_created
        self._started_at = time.monotonic()
        #: Scopes granted to every token (tests narrow it to simulate a connection missing a scope).
        self.scopes = "offline_access accounting.transactions accounting.contacts"
        #: ``Retry-After`` seconds of an injected ``"429"`` fault.
        self.fault_retry_after = 1
        self.seed_contacts = demo_contacts() if contacts is None else {t: dict(c) for t, c in contacts.items()}
        #: seconds the token clock (:meth:`now`) runs ahead of ``time.monotonic`` (:meth:`advance_clock`)
        self.clock_offset = 0.0
        # auth state survives reset_state()
        self.tokens = ClockedTokens(refresh_token, access_token_ttl, refresh_grace_seconds, clock=self.now)
        #: Invoice webhooks (module docstring): ``webhooks.url`` is where they go, ``webhook_key`` signs them.
        self.webhooks = WebhookSender(webhook_url)
        self.webhook_key = webhook_key
        self._event_sequence = 0
        self._init_state()

    # ------------------------------------------------------------------ lifecycle
    def _init_state(self) -> None:
        self._invoices: dict[str, dict[str, dict]] = {t: {} for t in self.tenant_ids}
        self._contacts: dict[str, dict[str, dict]] = {t: {} for t in self.tenant_ids}
        #: ``(tenant, Idempotency-Key)`` -> the saved answer
        self._idempotency = ReplayCache(self.idempotency_ttl)
        self._limits: dict[str, _TenantLimits] = {
            t: _TenantLimits(
                Window(self.rate_limit_per_minute, self.rate_limit_window_seconds),
                day_window(self.daily_limit),
                Concurrency(self.max_concurrency),
            )
            for t in self.tenant_ids
        }
        self._app_minute = Window(self.app_rate_limit_per_minute, 60.0)
        self._number_seq: dict[str, int] = dict.fromkeys(self.tenant_ids, 0)
        self._credit_notes: dict[str, dict[str, dict]] = {t: {} for t in self.tenant_ids}
        self._cn_seq: dict[str, int] = dict.fromkeys(self.tenant_ids, 0)
        self._outages: dict[str, tuple[float, int]] = {}
        self.history: list[tuple[float, str, str, str, str]] = []
        for tenant, seeded in self.seed_contacts.items():
            if tenant in self._contacts:
                for contact_id, name in seeded.items():
                    self._new_contact(tenant, {"Name": name}, contact_id=contact_id)
        self._init_records()

    # ------------------------------------------------------------------ test helpers
    def _copies(self, store: dict[str, dict[str, dict]], tenant_id: str | None) -> list[dict]:
        """Deep copies of the objects of one organisation (``tenant_id``) or of all of them."""
        with self._lock:
            tenants = [tenant_id] if tenant_id is not None else list(store)
            return [copy.deepcopy(obj) for t in tenants for obj in store.get(t, {}).values()]

    def invoices(self, tenant_id: str | None = None) -> list[dict]:
        """Deep copies of the stored invoices (Xero JSON shape, Decimal amounts) of one or all organisations."""
        return self._copies(self._invoices, tenant_id)

    def contacts(self, tenant_id: str | None = None) -> list[dict]:
        """Deep copies of the stored contacts of one or all organisations."""
        return self._copies(self._contacts, tenant_id)

    def add_contact(self, name: str, tenant_id: str | None = None, contact_id: str | None = None, **fields: Any) -> str:
        """Create a contact directly (no HTTP) and return its ``ContactID`` (``contact_id`` to choose it)."""
        tenant = tenant_id or self.tenant_ids[0]
        with self._lock:
            return str(self._new_contact(tenant, {"Name": name, **fields}, contact_id=contact_id)["ContactID"])

    def archive_contact(self, contact_id: str, tenant_id: str | None = None) -> dict:
        """Archive contact ``contact_id`` (``ContactStatus`` ``ARCHIVED``), as a person does in Xero
        (Contacts > select > Archive); returns a copy of the contact. ``ValueError`` when it does not exist.

        From then on Xero refuses invoices and credit notes for it with :data:`ARCHIVED_CONTACT_MESSAGE`
        until someone restores it in Xero; it is no longer listed by ``GET /Contacts`` (spec parameter
        ``includeArchived``: archived contacts are left out unless asked for) and a new contact may take
        its name (names are unique across *active* contacts only).
        """
        tenant = tenant_id or self.tenant_ids[0]
        with self._lock:
            contact = self._contacts[tenant].get(contact_id.lower())
            if contact is None:
                raise ValueError(f"no contact {contact_id} in organisation {tenant}")
            contact["ContactStatus"] = "ARCHIVED"
            contact["UpdatedDateUTC"] = _ms_date(_now_utc())
            return copy.deepcopy(contact)

    def credit_notes(self, tenant_id: str | None = None) -> list[dict]:
        """Deep copies of the stored credit notes of one or all organisations."""
        return self._copies(self._credit_notes, tenant_id)

    def add_invoice(self, element: Mapping[str, Any], tenant_id: str | None = None) -> str:
        """Store an invoice directly (no HTTP, no limits), as a person or another app would create it in Xero.

        ``element`` is one element of a ``PUT /Invoices`` body, validated and totalled like one (the
        number must be free); returns its ``InvoiceID``. Raises ``ValueError`` with Xero's validation
        messages. Tests use it to plant a document the broker did not create.
        """
        tenant = tenant_id or self.tenant_ids[0]
        with self._lock:
            invoice, errors, commit = self._build_invoice(tenant, dict(element), 4, self._taken_numbers(tenant))
            if invoice is None or commit is None:
                raise ValueError("; ".join(errors))
            commit()
            self._log("invoice.created", tenant, invoice["InvoiceNumber"], invoice["Status"])
            return str(invoice["InvoiceID"])

    def mark_paid(self, invoice_id: str, amount: Decimal | None = None, tenant_id: str | None = None) -> dict:
        """Record a payment of ``amount`` (``None``: the whole ``AmountDue``) on invoice ``invoice_id``.

        What ``PUT /Payments`` (spec ``createPayment``) does to the invoice: ``AmountPaid`` grows,
        ``AmountDue`` shrinks, the payment is listed in ``Payments``; fully paid -> ``Status`` ``PAID``
        (then it can no longer be voided or deleted). Only ``AUTHORISED`` invoices take payments and
        never more than is due: otherwise ``ValueError`` with Xero's message. Returns the invoice.
        """
        tenant = tenant_id or self.tenant_ids[0]
        with self._lock:
            invoice = self._find_invoice(tenant, invoice_id)
            if invoice is None:
                raise ValueError(f"no invoice {invoice_id} in organisation {tenant}")
            if invoice["Status"] != "AUTHORISED":
                raise ValueError("Payments can only be made against Authorised documents")
            pay = invoice["AmountDue"] if amount is None else _q2(Decimal(amount))
            if pay <= 0 or pay > invoice["AmountDue"]:
                raise ValueError("Payment amount exceeds the amount outstanding on this document")
            now = _now_utc()
            invoice["Payments"] = [
                *invoice.get("Payments", []),
                {"PaymentID": str(uuid.uuid4()), "Date": _ms_date(now), "Amount": pay},
            ]
            invoice["AmountPaid"] = _q2(invoice["AmountPaid"] + pay)
            invoice["AmountDue"] = _q2(invoice["AmountDue"] - pay)
            if invoice["AmountDue"] == 0:
                invoice["Status"] = "PAID"
                invoice["FullyPaidOnDate"] = _ms_date(now)
            invoice["UpdatedDateUTC"] = _ms_date(now)
            self._log("invoice.paid", tenant, invoice["InvoiceNumber"], str(pay))
            self._invoice_webhook(tenant, invoice)
            return copy.deepcopy(invoice)

    def balance(self, tenant_id: str | None = None, contact_id: str | None = None) -> Decimal:
        """What customers owe the organisation (one contact's, with ``contact_id``), as Xero's aged receivables
        count it: ``AmountDue`` of ``AUTHORISED`` sales invoices minus ``RemainingCredit`` of ``AUTHORISED``
        sales credit notes (unallocated credit). Drafts, voided, deleted and paid documents count zero."""
        tenant = tenant_id or self.tenant_ids[0]

        def mine(doc: dict) -> bool:
            return contact_id is None or (doc.get("Contact") or {}).get("ContactID") == contact_id.lower()

        with self._lock:
            due = sum(
                (
                    i["AmountDue"]
                    for i in self._invoices[tenant].values()
                    if i["Type"] == "ACCREC" and i["Status"] == "AUTHORISED" and mine(i)
                ),
                Decimal("0.00"),
            )
            credit = sum(
                (
                    n["RemainingCredit"]
                    for n in self._credit_notes[tenant].values()
                    if n["Type"] == "ACCRECCREDIT" and n["Status"] == "AUTHORISED" and mine(n)
                ),
                Decimal("0.00"),
            )
        return _q2(due - credit)

    # ------------------------------------------------------------------ webhooks
    def webhook_signature(self, body: bytes, key: str | None = None) -> str:
        """``x-xero-signature`` of ``body``: Base64 of HMAC-SHA256(``key`` (default the webhook key), raw body)."""
        digest = hmac.new((key or self.webhook_key).encode(), body, hashlib.sha256).digest()
        return base64.b64encode(digest).decode()

    def _webhook_payload(self, events: list[dict[str, Any]]) -> dict[str, Any]:
        """A webhook body around ``events`` (caller holds the lock): sequence numbers and 20 letters of entropy."""
        first = self._event_sequence + 1
        self._event_sequence += max(1, len(events))
        entropy = "".join(secrets.choice("ABCDEFGHIJKLMNOPQRSTUVWXYZ") for _ in range(20))
        return {
            "events": events,
            "firstEventSequence": first,
            "lastEventSequence": self._event_sequence,
            "entropy": entropy,
        }

    def _invoice_webhook(self, tenant: str, invoice: Mapping[str, Any]) -> None:
        """Queue the ``INVOICE``/``UPDATE`` webhook of ``invoice`` (caller holds the lock; sent after it)."""
        ident = str(invoice["InvoiceID"])
        event = {
            "resourceUrl": f"https://api.xero.com/api.xro/2.0/Invoices/{ident}",
            "resourceId": ident,
            "tenantId": tenant,
            "tenantType": "ORGANISATION",
            "eventCategory": "INVOICE",
            "eventType": "UPDATE",
            "eventDateUtc": _now_utc().strftime("%Y-%m-%dT%H:%M:%S.%f")[:-3],
        }
        self.webhooks.send(
            "INVOICE.UPDATE", self._webhook_payload([event]), lambda body, _t: self._signed_headers(body)
        )

    def _signed_headers(self, body: bytes, key: str | None = None) -> dict[str, str]:
        return {"x-xero-signature": self.webhook_signature(body, key)}

    def intent_to_receive(self, url: str | None = None) -> dict[str, Any]:
        """Xero's "Intent to Receive" check of ``url`` (default ``webhooks.url``): an event-less payload
        signed with a wrong key must be answered 401, the same rightly signed 200. Returns ``{"ok",
        "bad_signature_status", "good_signature_status"}`` (status 0: no answer). ``ValueError`` without a URL."""
        target = url or self.webhooks.url
        if not target:
            raise ValueError("no webhook URL configured")
        with self._lock:
            body = json.dumps(self._webhook_payload([]), separators=(",", ":")).encode()
        bad = post(target, body, self._signed_headers(body, key=self.webhook_key + "-wrong"))
        good = post(target, body, self._signed_headers(body))
        return {"ok": bad == 401 and good == 200, "bad_signature_status": bad, "good_signature_status": good}

    def outage(self, seconds: float, tenant_id: str | None = None, status: int = 503) -> None:
        """Every Accounting call of ``tenant_id`` (all organisations when ``None``) answers ``status``
        for the next ``seconds`` (nothing is processed or counted against the limits)."""
        with self._lock:
            self._outages[tenant_id or "*"] = (time.monotonic() + float(seconds), int(status))

    def now(self) -> float:
        """The token clock: ``time.monotonic()`` plus :attr:`clock_offset` (seconds)."""
        return time.monotonic() + self.clock_offset

    def advance_clock(self, seconds: float) -> float:
        """Move the token clock ``seconds`` forward (access tokens expire, grace periods end, as if that much
        time had passed); returns the new offset. Rate limits and idempotency windows keep real time."""
        if seconds < 0:
            raise ValueError(f"advance_clock: seconds must be >= 0, got {seconds}")
        with self._lock:
            self.clock_offset += float(seconds)
            return self.clock_offset

    def revoke_connection(self) -> None:
        """The user disconnected the app: every token issued so far is refused (access tokens: 401; refresh
        tokens, the initial one included: ``invalid_grant``) until a new authorisation."""
        with self._lock:
            self.tokens.revoke()

    def _log(self, kind: str, tenant: str, number: str, detail: str = "") -> None:
        self.history.append((round(time.monotonic() - self._started_at, 4), kind, tenant, number, detail))

    def inject_fault(self, kind: str, times: int = 1) -> None:
        """Make the next ``times`` Accounting API calls (``/api.xro/2.0/...``) fail with ``kind``.

        Kinds: ``"503"``/``"500"`` answer that status without processing; ``"429"`` answers a rate
        limit with ``Retry-After: fault_retry_after`` (1 s); ``"reset"`` resets the
        TCP connection before processing; ``"timeout_after_commit"`` processes (stores) the request,
        then keeps the socket open ``hang_seconds`` without answering and closes it;
        ``"drop_after_commit"`` processes, then closes the connection without answering.
        """
        self._add_fault(Fault(kind), times)

    def stats(self) -> dict[str, Any]:
        """Snapshot served by ``GET /_emulator/stats``."""
        with self._lock:
            return {
                **super().stats(),
                "invoice_count": sum(len(v) for v in self._invoices.values()),
                "refresh_token_uses": len(self.refresh_token_uses),
            }

    # ------------------------------------------------------------------ dispatch
    def _handle(self, req: Request) -> Response:
        lower = req.path.rstrip("/").lower() or "/"
        if lower.startswith("/_emulator"):
            return self._admin(req, lower)
        message = self._invalid(req)
        if message is not None:  # the request does not conform to the official spec
            return _post_data_invalid(message)
        if lower.startswith("/api.xro/2.0/"):
            return self._accounting(req, lower[len("/api.xro/2.0/") :])
        identity = {
            "/identity/connect/authorize": self._authorize,
            "/connect/token": self._token,
            "/connections": self._connections,
        }.get(lower)
        if identity is not None:
            return identity(req)
        return json_response(
            404, {"Title": "Not Found", "Status": 404, "Detail": f"no emulated resource at {req.path}"}
        )

    def _internal_error(self) -> Response:
        return json_response(500, {"Title": "Internal Server Error", "Status": 500, "Detail": "emulator error"})

    def _fault_status(self, status: int) -> Response:
        title = "Service Unavailable" if status == 503 else "Internal Server Error"
        return json_response(status, {"Title": title, "Status": status})

    # ------------------------------------------------------------------ identity
    def _token(self, req: Request) -> Response:
        """Refresh-token grant (rotating: the presented token stays usable for the grace period) or
        authorization-code grant (single-use code, same ``redirect_uri``, PKCE verifier checked); every
        error is a 400."""
        if req.method != "POST":
            return json_response(405, {"error": "method_not_allowed"}, {"Allow": "POST"})
        with self._lock:
            outcome = token_grant(self.tokens, req, self.client_id, self.client_secret)
        if outcome == INVALID_VERIFIER:
            return json_response(400, {"error": "invalid_grant", "error_description": "code_verifier does not match"})
        if isinstance(outcome, str):
            return json_response(400, {"error": outcome})
        access, new_refresh = outcome
        return json_response(
            200,
            {
                "access_token": access,
                "expires_in": math.ceil(self.access_token_ttl),
                "token_type": "Bearer",
                "refresh_token": new_refresh,
                "scope": self.scopes,
            },
            {"Cache-Control": "no-store"},
        )

    def _authorize(self, req: Request) -> Response:
        """``GET /identity/connect/authorize`` (login.xero.com): the user consents at once; 302 to the
        loopback ``redirect_uri`` with ``code`` and ``state``. PKCE ``code_challenge`` (S256) is kept."""
        q = req.query
        if q.get("client_id") != self.client_id:
            return json_response(400, {"error": "unauthorized_client"})
        redirect = q.get("redirect_uri", "")
        if q.get("response_type") != "code" or not LOOPBACK_REDIRECT.match(redirect):
            return json_response(
                400,
                {
                    "error": "invalid_request",
                    "error_description": "response_type=code and a loopback redirect_uri are required",
                },
            )
        with self._lock:
            code = self.tokens.issue_code(redirect, q.get("code_challenge"))
        return redirect_to(redirect, code=code, state=q.get("state", ""))

    def _authenticate(self, req: Request) -> Response | None:
        if not req.headers.get("authorization", "").lower().startswith("bearer "):
            resp = _problem(401, "Unauthorized", "AuthenticationUnsuccessful")
            resp.headers["WWW-Authenticate"] = 'Bearer realm="api.xero.com"'
            return resp
        with self._lock:
            expires = self.tokens.expiry(bearer(req))
        if expires is None:
            resp = _problem(401, "Unauthorized", "AuthenticationUnsuccessful")
            resp.headers["WWW-Authenticate"] = 'Bearer error="invalid_token"'
            return resp
        if self.now() >= expires:
            when = _now_utc().strftime("%m/%d/%Y %H:%M:%S")
            resp = _problem(401, "Unauthorized", f"TokenExpired: token expired at {when}")
            resp.headers["WWW-Authenticate"] = 'Bearer error="invalid_token", error_description="The token expired"'
            return resp
        return None

    def _connections(self, req: Request) -> Response:
        denied = self._authenticate(req)
        if denied is not None:
            return denied
        if req.method != "GET":
            return json_response(405, {"Title": "Method Not Allowed", "Status": 405})
        stamp = "2024-01-01T00:00:00.0000000"
        return json_response(
            200,
            [
                {
                    "id": str(uuid.uuid5(uuid.NAMESPACE_URL, f"xero-emulator-connection:{t}")),
                    "authEventId": str(uuid.uuid5(uuid.NAMESPACE_URL, "xero-emulator-auth-event")),
                    "tenantId": t,
                    "tenantType": "ORGANISATION",
                    "tenantName": f"Demo Company {i + 1}",
                    "createdDateUtc": stamp,
                    "updatedDateUtc": stamp,
                }
                for i, t in enumerate(self.tenant_ids)
            ],
        )

    # ------------------------------------------------------------------ accounting gate
    def _limit_headers(self, tenant: str) -> dict[str, str]:
        lim = self._limits[tenant]
        return {
            "X-MinLimit-Remaining": str(max(0, self.rate_limit_per_minute - len(lim.minute))),
            "X-DayLimit-Remaining": str(max(0, self.daily_limit - len(lim.day))),
            "X-AppMinLimit-Remaining": str(max(0, self.app_rate_limit_per_minute - len(self._app_minute))),
        }

    def _too_many(self, tenant: str, problem: str, retry_after: str) -> Response:
        headers = self._limit_headers(tenant)
        headers.update({"Retry-After": retry_after, "X-Rate-Limit-Problem": problem})
        return json_response(
            429, {"Title": "Too Many Requests", "Status": 429, "Detail": f"rate limit exceeded: {problem}"}, headers
        )

    def _admit(self, tenant: str) -> Response | None:
        """Count the call against the limits or return the 429. Caller holds the lock."""
        now = time.monotonic()
        lim = self._limits[tenant]
        # the limits are attributes tests change on a running emulator
        lim.minute.limit, lim.minute.span = self.rate_limit_per_minute, self.rate_limit_window_seconds
        lim.day.limit, self._app_minute.limit = self.daily_limit, self.app_rate_limit_per_minute
        lim.inflight.limit = self.max_concurrency
        over = first_full((("day", lim.day), ("minute", lim.minute), ("appminute", self._app_minute)), now)
        if over is None and lim.inflight.full():
            over = ("concurrent", 1.0)
        if over is not None:
            self.count_429 += 1
            problem, retry = over
            return self._too_many(tenant, problem, str(max(1, math.ceil(retry))))
        add_all((lim.minute, lim.day, self._app_minute), now)
        lim.inflight.enter()
        return None

    def _accounting(self, req: Request, resource: str) -> Response:
        denied = self._authenticate(req)
        if denied is not None:
            return denied
        tenant = req.headers.get("xero-tenant-id", "").strip()
        if tenant not in self._invoices:
            return _problem(403, "Forbidden", "AuthorizationUnsuccessful")
        with self._lock:
            down = self._outages.get(tenant) or self._outages.get("*")
            if down is not None and time.monotonic() < down[0]:
                status = down[1]
                return json_response(
                    status,
                    {
                        "Title": "Service Unavailable" if status == 503 else "Error",
                        "Status": status,
                        "Detail": "emulated outage",
                    },
                    {"Retry-After": str(max(1, math.ceil(down[0] - time.monotonic())))} if status == 503 else None,
                )
            limited = self._admit(tenant)
            if limited is not None:
                return limited
            fault = self._take_fault(req.method, req.path)
        try:
            if fault is not None and fault.kind == "429":  # Xero's 429 carries the organisation's limits
                with self._lock:
                    self.count_429 += 1
                    return self._too_many(tenant, "minute", str(self.fault_retry_after))
            answer = self._fault_answer(fault)
            if answer is not None:
                return answer
            self._delay()
            with self._lock:
                resp = self._idempotent(req, tenant, resource)
            return self._answer_processed(resp, fault)
        finally:
            with self._lock:
                self._limits[tenant].inflight.leave()

    def _idempotent(self, req: Request, tenant: str, resource: str) -> Response:
        """Idempotency-Key cache around :meth:`_route` (caller holds the lock)."""
        key = req.headers.get("idempotency-key")
        if req.method not in ("PUT", "POST", "PATCH") or not key:
            return self._with_limits(self._route(req, tenant, resource), tenant)
        if len(key) > 128:
            return self._with_limits(
                _validation_exception([], f"Idempotency-Key must be 128 characters or fewer (got {len(key)})"), tenant
            )
        now = time.monotonic()
        self._idempotency.ttl = self.idempotency_ttl
        fingerprint = (req.method, req.raw_target, hashlib.sha256(req.body).hexdigest())
        saved = self._idempotency.get((tenant, key), now)
        if saved is not None:
            if saved.fingerprint != fingerprint:
                return self._with_limits(
                    _validation_exception(
                        [],
                        f"Idempotency-Key {key} was already used with a different request "
                        "(method, URL and body must match the original)",
                    ),
                    tenant,
                )
            return self._with_limits(saved.response(), tenant)
        resp = self._route(req, tenant, resource)
        if resp.status < 500:
            self._idempotency.save((tenant, key), resp, fingerprint=fingerprint, now=now)
        return self._with_limits(resp, tenant)

    def _with_limits(self, resp: Response, tenant: str) -> Response:
        resp.headers.update(self._limit_headers(tenant))
        return resp

    def _route(self, req: Request, tenant: str, resource: str) -> Response:
        parts = resource.split("/")
        collections: dict[str, dict[str, Callable[[Request, str], Response]]] = {
            "invoices": {"PUT": self._put_invoices, "GET": self._get_invoices},
            "creditnotes": {"PUT": self._put_credit_notes, "GET": self._get_credit_notes},
            "contacts": {"PUT": self._put_contacts, "GET": self._get_contacts},
        }
        elements: dict[tuple[str, str], Callable[[Request, str, str], Response]] = {
            ("invoices", "GET"): self._get_invoice,
            ("invoices", "POST"): self._update_invoice,
            ("creditnotes", "GET"): self._get_credit_note,
            ("contacts", "GET"): self._get_contact,
        }
        if len(parts) == 1 and parts[0] in collections:
            handler = collections[parts[0]].get(req.method)
            if handler is None:
                return json_response(
                    405,
                    {
                        "Title": "Method Not Allowed",
                        "Status": 405,
                        "Detail": f"{req.method} is not emulated on this resource",
                    },
                )
            return handler(req, tenant)
        element = elements.get((parts[0], req.method)) if len(parts) == 2 else None
        if element is None:
            return self._not_found()
        return element(req, tenant, unquote(req.path.rstrip("/").split("/")[-1]))

    @staticmethod
    def _not_found() -> Response:
        return Response(
            404, b"The resource you're looking for cannot be found", {"Content-Type": "text/plain; charset=utf-8"}
        )

    @staticmethod
    def _envelope(payload: dict) -> Response:
        body = {
            "Id": str(uuid.uuid4()),
            "Status": "OK",
            "ProviderName": PROVIDER_NAME,
            "DateTimeUTC": f"/Date({int(time.time() * 1000)})/",
        }
        body.update(payload)
        return json_response(200, body)

    @staticmethod
    def _parse_body(req: Request, collection: str) -> list[Any] | Response:
        try:
            doc = loads_decimal(req.body or b"")
        except ValueError as exc:
            return _post_data_invalid(f"JSON for post data was invalid: {exc}")
        if isinstance(doc, dict) and isinstance(doc.get(collection), list):
            return list(doc[collection])
        if isinstance(doc, dict) and collection not in doc:
            return [doc]  # a single object is accepted too
        return _post_data_invalid(f"Expected an object with a {collection} array")

    @staticmethod
    def _summarize(req: Request) -> bool:
        # The spec declares default false, but Xero summarises (400 for the whole batch) unless told otherwise.
        return req.query.get("summarizeErrors", "true").lower() != "false"

    # ------------------------------------------------------------------ contacts
    def _new_contact(self, tenant: str, element: dict, contact_id: str | None = None) -> dict:
        contact_id = (contact_id or str(uuid.uuid4())).lower()
        contact = {
            "ContactID": contact_id,
            "ContactStatus": "ACTIVE",
            "Name": str(element["Name"]).strip(),
            "Addresses": [],
            "Phones": [],
            "UpdatedDateUTC": _ms_date(_now_utc()),
            "ContactGroups": [],
            "IsSupplier": False,
            "IsCustomer": False,
            "ContactPersons": [],
            "HasValidationErrors": False,
        }
        for key in (
            "ContactNumber",
            "AccountNumber",
            "FirstName",
            "LastName",
            "EmailAddress",
            "TaxNumber",
            "DefaultCurrency",
        ):
            if element.get(key) is not None:
                contact[key] = element[key]
        self._contacts[tenant][contact_id] = contact
        return contact

    def _contact_by_name(self, tenant: str, name: str) -> dict | None:
        wanted = name.strip().lower()
        for contact in self._contacts[tenant].values():
            if contact["Name"].lower() == wanted and contact["ContactStatus"] == "ACTIVE":
                return contact
        return None

    def _put_contacts(self, req: Request, tenant: str) -> Response:
        elements = self._parse_body(req, "Contacts")
        if isinstance(elements, Response):
            return elements
        errors: list[list[str]] = []
        seen: set[str] = set()
        for el in elements:
            errs = []
            name = el.get("Name") if isinstance(el, dict) else None
            if not isinstance(name, str) or not name.strip():
                errs.append("The contact name must be specified.")
            elif self._contact_by_name(tenant, name) is not None or name.strip().lower() in seen:
                errs.append(
                    f"The contact name {name.strip()} is already assigned to another contact. "
                    "The contact name must be unique across all active contacts."
                )
            else:
                seen.add(name.strip().lower())
            errors.append(errs)
        if self._summarize(req) and any(errors):
            return _validation_exception(
                [
                    dict(el if isinstance(el, dict) else {}, ValidationErrors=[{"Message": m} for m in errs])
                    for el, errs in zip(elements, errors, strict=True)
                    if errs
                ]
            )
        out = []
        for el, errs in zip(elements, errors, strict=True):
            if errs:
                out.append(
                    dict(
                        el if isinstance(el, dict) else {},
                        HasValidationErrors=True,
                        StatusAttributeString="ERROR",
                        ValidationErrors=[{"Message": m} for m in errs],
                    )
                )
            else:
                out.append(copy.deepcopy(self._new_contact(tenant, el)))
        return self._envelope({"Contacts": out})

    def _get_contact(self, _req: Request, tenant: str, ident: str) -> Response:
        contact = self._contacts[tenant].get(ident.lower())
        if contact is None:
            return self._not_found()
        return self._envelope({"Contacts": [copy.deepcopy(contact)]})

    def _get_contacts(self, req: Request, tenant: str) -> Response:
        contacts = list(self._contacts[tenant].values())
        ids = {i.strip().lower() for i in req.query.get("IDs", "").split(",") if i.strip()}
        if ids:
            contacts = [c for c in contacts if c["ContactID"] in ids]
        term = req.query.get("searchTerm", "").strip().lower()
        if term:
            contacts = [c for c in contacts if term in c["Name"].lower()]
        if req.query.get("includeArchived", "").lower() != "true":  # spec parameter includeArchived
            contacts = [c for c in contacts if c["ContactStatus"] != "ARCHIVED"]
        return self._envelope({"Contacts": copy.deepcopy(contacts)})

    # ------------------------------------------------------------------ invoices
    @staticmethod
    def _number(value: Any, field_name: str, errors: list[str]) -> Decimal | None:
        if value is None:
            return None
        number = decimal_or_none(value)
        if number is None:  # a boolean, blank or non-numeric text, NaN or an infinity
            errors.append(f"{field_name} must be a number")
        return number

    @staticmethod
    def _date(value: Any, field_name: str, errors: list[str]) -> date | None:
        if value is None or value == "":
            return None
        if isinstance(value, str):
            text = value.strip()
            m = re.fullmatch(r"/Date\((-?\d+)([+-]\d{4})?\)/", text)
            if m:
                return datetime.fromtimestamp(int(m.group(1)) / 1000, tz=UTC).date()
            try:
                return date.fromisoformat(text[:10]) if len(text) >= 10 else date.fromisoformat(text)
            except ValueError:
                pass
        errors.append(f"{field_name} is not a valid date: {value!r}")
        return None

    def _next_number(self, tenant: str, taken: set[str]) -> str:
        while True:
            self._number_seq[tenant] += 1
            candidate = f"INV-{self._number_seq[tenant]:04d}"
            if candidate.lower() not in taken:
                return candidate

    def _taken_numbers(self, tenant: str) -> set[str]:
        if not self.enforce_unique_numbers:
            return set()
        return {
            inv["InvoiceNumber"].lower()
            for inv in self._invoices[tenant].values()
            if inv["Type"] == "ACCREC" and inv.get("InvoiceNumber")
        }

    def _build_invoice(
        self, tenant: str, el: Any, unitdp: int, taken: set[str]
    ) -> tuple[dict | None, list[str], Callable[[], None] | None]:
        """Validate and compute one invoice; returns (invoice, errors, commit-contact callback)."""
        errors: list[str] = []
        if not isinstance(el, dict):
            return None, ["Invoice must be an object"], None
        inv_type = el.get("Type")
        if inv_type is None:
            errors.append("Invoice Type must be specified")
        elif inv_type not in ("ACCREC", "ACCPAY"):
            errors.append(f"Invoice Type {inv_type} is not supported by the emulator (ACCREC, ACCPAY)")
        status = el.get("Status") or "DRAFT"
        if status not in ("DRAFT", "SUBMITTED", "AUTHORISED"):
            errors.append("Invoice not of valid status for creation")
        amount_types = el.get("LineAmountTypes") or "Exclusive"
        if amount_types not in ("Exclusive", "Inclusive", "NoTax"):
            errors.append(f"LineAmountTypes {amount_types!r} is not valid (Exclusive, Inclusive, NoTax)")
        currency = el.get("CurrencyCode") or self.base_currency
        if not (isinstance(currency, str) and re.fullmatch(r"[A-Z]{3}", currency)):
            errors.append(f"The currency code {currency!r} is not valid")

        # Contact
        contact: dict | None = None
        new_contact_name: str | None = None
        raw_contact = el.get("Contact")
        if not isinstance(raw_contact, dict) or not (raw_contact.get("ContactID") or raw_contact.get("Name")):
            errors.append("A Contact must be specified for this type of transaction")
        elif raw_contact.get("ContactID"):
            contact = self._contacts[tenant].get(str(raw_contact["ContactID"]).lower())
            if contact is None:
                errors.append(f"The contact with the specified ContactID ({raw_contact['ContactID']}) does not exist")
            elif contact["ContactStatus"] == "ARCHIVED":
                errors.append(ARCHIVED_CONTACT_MESSAGE)
        else:
            contact = self._contact_by_name(tenant, str(raw_contact["Name"]))
            if contact is None:
                new_contact_name = str(raw_contact["Name"]).strip()

        issued = self._date(el.get("Date"), "Date", errors) or _now_utc().date()
        due = self._date(el.get("DueDate"), "DueDate", errors)
        if due is None and status in ("SUBMITTED", "AUTHORISED"):
            errors.append("Due Date is required for an approved invoice")

        number = el.get("InvoiceNumber")
        if number is not None and not isinstance(number, str):
            errors.append("InvoiceNumber must be a string")
            number = None
        if isinstance(number, str) and len(number) > 255:
            errors.append("Invoice Number must be 255 characters or fewer")
        if inv_type == "ACCREC" and number and number.strip().lower() in taken:
            errors.append("Invoice # must be unique.")

        # Lines
        raw_lines = el.get("LineItems")
        lines_out: list[dict] = []
        if not isinstance(raw_lines, list) or not raw_lines:
            errors.append("At least one line item must be specified")
            raw_lines = []
        unit_q = _Q4 if unitdp >= 4 else _CENT
        sub_total = total_tax = total_discount = Decimal("0")
        for index, raw in enumerate(raw_lines, start=1):
            if not isinstance(raw, dict):
                errors.append(f"Line {index}: must be an object")
                continue
            line_errs: list[str] = []
            desc = raw.get("Description")
            if not (isinstance(desc, str) and desc.strip()) and not raw.get("ItemCode"):
                line_errs.append("Description needs to be at least 1 char long")
            qty = self._number(raw.get("Quantity"), "Quantity", line_errs)
            unit = self._number(raw.get("UnitAmount"), "UnitAmount", line_errs)
            sent_amount = self._number(raw.get("LineAmount"), "LineAmount", line_errs)
            discount_rate = self._number(raw.get("DiscountRate"), "DiscountRate", line_errs)
            discount_amount = self._number(raw.get("DiscountAmount"), "DiscountAmount", line_errs)
            sent_tax = self._number(raw.get("TaxAmount"), "TaxAmount", line_errs)
            if discount_rate is not None and discount_amount is not None:
                line_errs.append("Only one of DiscountRate and DiscountAmount can be specified")
            if discount_rate is not None and not (Decimal(0) <= discount_rate <= Decimal(100)):
                line_errs.append(f"The discount rate '{discount_rate}' is invalid.")
            if line_errs:
                errors.extend(line_errs)
                continue
            if qty is None and unit is None and sent_amount is None and not raw.get("ItemCode"):
                # spec LineItem.Description: "A line item with just a description (i.e no unit amount or
                # quantity) can be created by specifying just a <Description> element": no amount, no tax
                lines_out.append(
                    {
                        "LineItemID": str(uuid.uuid4()),
                        "Description": desc,
                        "LineAmount": Decimal("0.00"),
                        "TaxAmount": Decimal("0.00"),
                        "Tracking": [],
                        "ValidationErrors": [],
                    }
                )
                continue
            if unit is None:
                if qty is None:
                    qty, unit = Decimal(1), sent_amount if sent_amount is not None else Decimal(0)
                else:
                    unit = (sent_amount / qty) if (sent_amount is not None and qty) else Decimal(0)
            elif qty is None:
                qty = (sent_amount / unit) if (sent_amount is not None and unit) else Decimal(1)
            qty = qty.quantize(_Q4, rounding=ROUND_HALF_UP)
            unit = unit.quantize(unit_q, rounding=ROUND_HALF_UP)
            gross = qty * unit
            if discount_rate is not None:
                expected = _q2(gross * (Decimal(100) - discount_rate) / Decimal(100))
            elif discount_amount is not None:
                expected = _q2(gross - discount_amount)
            else:
                expected = _q2(gross)
            if sent_amount is not None and _q2(sent_amount) != expected:
                errors.append(f"The line total {_q2(sent_amount)} does not match the expected line total {expected}")
                continue
            account = raw.get("AccountCode")
            if account is not None and self.account_codes is not None and str(account) not in self.account_codes:
                errors.append(f"Account code '{account}' is not a valid code for this document.")
                continue
            tax_type = raw.get("TaxType") or ("NONE" if amount_types == "NoTax" else "OUTPUT2")
            rate = self.tax_rates.get(str(tax_type).upper())
            if rate is None:
                errors.append(
                    f"The TaxType code '{tax_type}' does not exist or cannot be used for this type of transaction."
                )
                continue
            if amount_types == "NoTax":
                tax = Decimal("0.00")
            elif sent_tax is not None:
                tax = _q2(sent_tax)
            elif amount_types == "Inclusive":
                tax = _q2(expected * rate / (Decimal(100) + rate))
            else:
                tax = _q2(expected * rate / Decimal(100))
            line: dict[str, Any] = {
                "LineItemID": str(uuid.uuid4()),
                "Description": desc if isinstance(desc, str) else "",
                "Quantity": qty,
                "UnitAmount": unit,
                "TaxType": tax_type,
                "TaxAmount": tax,
                "LineAmount": expected,
                "Tracking": [],
                "ValidationErrors": [],
            }
            if account is not None:
                line["AccountCode"] = str(account)
            if raw.get("ItemCode"):
                line["ItemCode"] = raw["ItemCode"]
            if discount_rate is not None:
                line["DiscountRate"] = discount_rate.quantize(_CENT, rounding=ROUND_HALF_UP)
            if discount_amount is not None:
                line["DiscountAmount"] = _q2(discount_amount)
            lines_out.append(line)
            total_discount += _q2(gross) - expected
            if amount_types == "Inclusive":
                sub_total += expected - tax
            else:
                sub_total += expected
            total_tax += tax
        if errors:
            return None, errors, None

        if inv_type == "ACCREC" and not number:
            number = self._next_number(tenant, taken)
        invoice_id = str(uuid.uuid4())
        now = _now_utc()
        total = _q2(sub_total + total_tax)
        invoice = {
            "Type": inv_type,
            "InvoiceID": invoice_id,
            "InvoiceNumber": number or "",
            "Reference": el.get("Reference") or "",
            "Prepayments": [],
            "Overpayments": [],
            "AmountDue": total,
            "AmountPaid": Decimal("0.00"),
            "AmountCredited": Decimal("0.00"),
            "SentToContact": False,
            "CurrencyRate": Decimal("1.000000"),
            "IsDiscounted": total_discount != 0,
            "HasAttachments": False,
            "HasErrors": False,
            "Contact": None,  # filled at commit
            "DateString": issued.isoformat() + "T00:00:00",
            "Date": _ms_date(issued),
            "Status": status,
            "LineAmountTypes": amount_types,
            "LineItems": lines_out,
            "SubTotal": _q2(sub_total),
            "TotalTax": _q2(total_tax),
            "Total": total,
            "UpdatedDateUTC": _ms_date(now),
            "UpdatedDateUTCString": now.strftime("%Y-%m-%dT%H:%M:%SZ"),
            "CurrencyCode": currency,
            "StatusAttributeString": "OK",
        }
        if due is not None:
            invoice["DueDateString"] = due.isoformat() + "T00:00:00"
            invoice["DueDate"] = _ms_date(due)
        if total_discount:
            invoice["TotalDiscount"] = _q2(total_discount)
        if el.get("Url"):
            invoice["Url"] = el["Url"]

        def commit() -> None:
            target = contact if contact is not None else self._contact_by_name(tenant, new_contact_name or "")
            if target is None:
                target = self._new_contact(tenant, {"Name": new_contact_name})
            if inv_type == "ACCREC":
                target["IsCustomer"] = True
            invoice["Contact"] = {
                k: copy.deepcopy(v)
                for k, v in target.items()
                if k
                in (
                    "ContactID",
                    "ContactStatus",
                    "Name",
                    "Addresses",
                    "Phones",
                    "ContactGroups",
                    "ContactPersons",
                    "HasValidationErrors",
                )
            }
            self._invoices[tenant][invoice_id] = invoice

        return invoice, [], commit

    @staticmethod
    def _unitdp(req: Request) -> int:
        try:
            return int(req.query.get("unitdp", "2"))
        except ValueError:
            return 2

    def _render(self, invoice: dict, unitdp: int, summary_only: bool = False) -> dict:
        out = copy.deepcopy(invoice)
        if summary_only:
            out.pop("LineItems", None)
        elif unitdp < 4:
            for line in out.get("LineItems", []):
                if "UnitAmount" in line:  # description-only lines have none
                    line["UnitAmount"] = _q2(line["UnitAmount"])
        return out

    def _put_invoices(self, req: Request, tenant: str) -> Response:
        elements = self._parse_body(req, "Invoices")
        if isinstance(elements, Response):
            return elements
        unitdp = self._unitdp(req)
        taken = self._taken_numbers(tenant)
        built: list[_Built] = []
        for el in elements:
            invoice, errs, commit = self._build_invoice(tenant, el, unitdp, taken)
            if invoice is not None and invoice["Type"] == "ACCREC" and invoice["InvoiceNumber"]:
                taken.add(invoice["InvoiceNumber"].lower())
            built.append((el, invoice, errs, commit))

        def store(_el: Any, invoice: dict, commit: Callable[[], None]) -> dict:
            commit()
            self._log("invoice.created", tenant, invoice["InvoiceNumber"], invoice["Status"])
            if self.on_invoice_created is not None:
                self.on_invoice_created(tenant, copy.deepcopy(invoice))
            return self._render(invoice, unitdp)

        return self._store_all(req, built, "Invoices", store)

    def _store_all(self, req: Request, built: list[_Built], collection: str, store: _Store) -> Response:
        """Xero's batch rule: with ``summarizeErrors`` (the default) one invalid element fails the whole
        request (400, nothing stored); otherwise each valid element is stored and each invalid one is
        answered with its ``ValidationErrors``."""
        if self._summarize(req) and any(errs for _, _, errs, _ in built):
            return _validation_exception([self._error_element(el, errs) for el, _, errs, _ in built if errs])
        out = []
        for el, invoice, errs, commit in built:
            if errs or invoice is None or commit is None:
                out.append(self._error_element(el, errs))
            else:
                out.append(store(el, invoice, commit))
        return self._envelope({collection: out})

    @staticmethod
    def _error_element(el: Any, errs: list[str]) -> dict:
        element = copy.deepcopy(el) if isinstance(el, dict) else {}
        element.update(
            {"HasErrors": True, "StatusAttributeString": "ERROR", "ValidationErrors": [{"Message": m} for m in errs]}
        )
        return element

    def _get_invoices(self, req: Request, tenant: str) -> Response:
        invoices = list(self._invoices[tenant].values())
        q = req.query

        def csv(name: str) -> list[str]:
            return [v.strip().strip('"') for v in q.get(name, "").split(",") if v.strip()]

        if csv("IDs"):
            ids = {v.lower() for v in csv("IDs")}
            invoices = [i for i in invoices if i["InvoiceID"] in ids]
        if csv("InvoiceNumbers"):
            numbers = set(csv("InvoiceNumbers"))
            invoices = [i for i in invoices if i["InvoiceNumber"] in numbers]
        if csv("ContactIDs"):
            contact_ids = {v.lower() for v in csv("ContactIDs")}
            invoices = [i for i in invoices if i["Contact"]["ContactID"] in contact_ids]
        if csv("Statuses"):
            statuses = {v.upper() for v in csv("Statuses")}
            invoices = [i for i in invoices if i["Status"] in statuses]
        filtered = _where(invoices, q.get("where", ""), ("InvoiceNumber", "Reference", "Status", "Type", "InvoiceID"))
        if isinstance(filtered, Response):
            return filtered
        invoices = filtered
        unitdp = self._unitdp(req)
        summary_only = q.get("summaryOnly", "false").lower() == "true"
        payload: dict[str, Any] = {}
        if "page" in q:
            try:
                page = max(1, int(q["page"]))
                size = max(1, min(1000, int(q.get("pageSize", "100"))))
            except ValueError:
                page, size = 1, 100
            item_count = len(invoices)
            invoices = invoices[(page - 1) * size : page * size]
            payload["pagination"] = {
                "page": page,
                "pageSize": size,
                "pageCount": max(1, math.ceil(item_count / size)),
                "itemCount": item_count,
            }
        payload["Invoices"] = [self._render(i, unitdp, summary_only) for i in invoices]
        return self._envelope(payload)

    def _find_invoice(self, tenant: str, ident: str) -> dict | None:
        """The invoice with ``InvoiceID`` ``ident``, else the one with ``InvoiceNumber`` ``ident``."""
        invoice = self._invoices[tenant].get(ident.lower())
        if invoice is None:
            invoice = next((i for i in self._invoices[tenant].values() if i["InvoiceNumber"] == ident), None)
        return invoice

    def _get_invoice(self, req: Request, tenant: str, ident: str) -> Response:
        invoice = self._find_invoice(tenant, ident)
        if invoice is None:
            return self._not_found()
        return self._envelope({"Invoices": [self._render(invoice, self._unitdp(req))]})

    # ------------------------------------------------------------------ invoice updates (updateInvoice)
    _STATUS_CHANGES: ClassVar[dict[str, set[str]]] = {
        "DRAFT": {"SUBMITTED", "AUTHORISED", "DELETED"},
        "SUBMITTED": {"DRAFT", "AUTHORISED", "DELETED"},
        "AUTHORISED": {"VOIDED"},
    }

    def _update_invoice(self, req: Request, tenant: str, ident: str) -> Response:
        """``POST /Invoices/{InvoiceID}``: change the status (caller holds the lock)."""
        invoice = self._find_invoice(tenant, ident)
        if invoice is None:
            return self._not_found()
        elements = self._parse_body(req, "Invoices")
        if isinstance(elements, Response):
            return elements
        if len(elements) != 1 or not isinstance(elements[0], dict):
            return _validation_exception([], "Exactly one invoice must be sent to update an invoice by its InvoiceID")
        el = elements[0]
        if el.get("InvoiceID") and str(el["InvoiceID"]).lower() != invoice["InvoiceID"]:
            return _validation_exception([self._error_element(el, ["InvoiceID in the body does not match the URL"])])
        unsupported = sorted(k for k in el if k not in ("InvoiceID", "Status"))
        if unsupported:
            return _post_data_invalid(
                f"the emulator only changes Status with updateInvoice (got {', '.join(unsupported)})"
            )
        new_status = el.get("Status") or invoice["Status"]
        old_status = invoice["Status"]
        if new_status != old_status:
            allowed = self._STATUS_CHANGES.get(old_status, set())
            errors = []
            if new_status not in allowed:
                errors.append(f"Invoice of status {old_status} cannot be changed to {new_status}")
            elif new_status == "VOIDED" and (invoice["AmountPaid"] != 0 or invoice["AmountCredited"] != 0):
                errors.append("This document cannot be edited as it has a payment or credit note allocated to it.")
            if errors:
                return _validation_exception([self._error_element(el, errors)])
            invoice["Status"] = new_status
            if new_status in ("DELETED", "VOIDED"):
                invoice["AmountDue"] = Decimal("0.00")
            now = _now_utc()
            invoice["UpdatedDateUTC"] = _ms_date(now)
            invoice["UpdatedDateUTCString"] = now.strftime("%Y-%m-%dT%H:%M:%SZ")
            self._invoice_webhook(tenant, invoice)
            self._log("invoice.status", tenant, invoice["InvoiceNumber"], f"{old_status}->{new_status}")
        return self._envelope({"Invoices": [self._render(invoice, self._unitdp(req))]})

    # ------------------------------------------------------------------ credit notes
    def _put_credit_notes(self, req: Request, tenant: str) -> Response:
        """``PUT /CreditNotes`` (``createCreditNotes``): validated and totalled like invoices (caller holds the
        lock)."""
        elements = self._parse_body(req, "CreditNotes")
        if isinstance(elements, Response):
            return elements
        unitdp = self._unitdp(req)
        taken = (
            {cn["CreditNoteNumber"].lower() for cn in self._credit_notes[tenant].values() if cn.get("CreditNoteNumber")}
            if self.enforce_unique_numbers
            else set()
        )
        built: list[_Built] = []
        for el in elements:
            if not isinstance(el, dict):
                built.append((el, None, ["Credit note must be an object"], None))
                continue
            cn_type = el.get("Type")
            errs: list[str] = []
            if cn_type not in ("ACCRECCREDIT", "ACCPAYCREDIT"):
                errs.append(f"Credit note Type {cn_type!r} is not valid (ACCRECCREDIT, ACCPAYCREDIT)")
            discounted = [
                n
                for n, line in enumerate(el.get("LineItems") or [], start=1)
                if isinstance(line, dict) and ("DiscountRate" in line or "DiscountAmount" in line)
            ]
            if discounted:  # spec LineItem.DiscountRate: "credit notes in Xero do not support discounts"
                errs.append(f"Line {discounted[0]}: discounts are not supported on credit notes")
            number = el.get("CreditNoteNumber")
            if cn_type == "ACCRECCREDIT" and not number:
                self._cn_seq[tenant] += 1
                number = f"CN-{self._cn_seq[tenant]:04d}"
            as_invoice = {k: v for k, v in el.items() if k not in ("CreditNoteNumber", "Type", "Allocations")}
            as_invoice.update({"Type": "ACCREC" if cn_type != "ACCPAYCREDIT" else "ACCPAY", "InvoiceNumber": number})
            as_invoice.setdefault("DueDate", el.get("Date"))  # credit notes have no due date requirement
            invoice, inv_errs, commit = self._build_invoice(tenant, as_invoice, unitdp, taken)
            errs += [("Credit Note # must be unique." if m == "Invoice # must be unique." else m) for m in inv_errs]
            if errs:
                built.append((el, None, errs, None))
                continue
            if number:
                taken.add(str(number).lower())
            built.append((el, invoice, [], commit))

        def store(el: dict, invoice: dict, commit: Callable[[], None]) -> dict:
            commit()  # resolves the contact; the "invoice" it stores is moved to the credit notes
            self._invoices[tenant].pop(invoice["InvoiceID"], None)
            note = {
                "CreditNoteID": invoice["InvoiceID"],
                "ID": invoice["InvoiceID"],
                "CreditNoteNumber": invoice["InvoiceNumber"],
                "Type": el.get("Type"),
                "Reference": invoice["Reference"],
                "Payments": [],
                "Allocations": [],
                "CurrencyRate": invoice["CurrencyRate"],
                "RemainingCredit": invoice["Total"],
                "HasAttachments": False,
                "HasErrors": False,
                "Contact": invoice["Contact"],
                "DateString": invoice["DateString"],
                "Date": invoice["Date"],
                "Status": invoice["Status"],
                "LineAmountTypes": invoice["LineAmountTypes"],
                "LineItems": invoice["LineItems"],
                "SubTotal": invoice["SubTotal"],
                "TotalTax": invoice["TotalTax"],
                "Total": invoice["Total"],
                "UpdatedDateUTC": invoice["UpdatedDateUTC"],
                "UpdatedDateUTCString": invoice["UpdatedDateUTCString"],
                "CurrencyCode": invoice["CurrencyCode"],
                "StatusAttributeString": "OK",
            }
            self._credit_notes[tenant][note["CreditNoteID"]] = note
            self._log("creditnote.created", tenant, note["CreditNoteNumber"], str(note["Total"]))
            return self._render(note, unitdp)

        return self._store_all(req, built, "CreditNotes", store)

    def _get_credit_note(self, req: Request, tenant: str, ident: str) -> Response:
        note = self._credit_notes[tenant].get(ident.lower())
        if note is None:
            return self._not_found()
        return self._envelope({"CreditNotes": [self._render(note, self._unitdp(req))]})

    def _get_credit_notes(self, req: Request, tenant: str) -> Response:
        notes = _where(
            list(self._credit_notes[tenant].values()),
            req.query.get("where", ""),
            ("CreditNoteNumber", "Reference", "Status", "Type", "CreditNoteID"),
        )
        if isinstance(notes, Response):
            return notes
        unitdp = self._unitdp(req)
        return self._envelope({"CreditNotes": [self._render(n, unitdp) for n in notes]})

    # ------------------------------------------------------------------ control API
    def _admin_routes(self) -> dict[tuple[str, str], AdminRoute]:
        return {
            **super()._admin_routes(),
            ("GET", "/_emulator/invoices"): lambda _req: self._listing(self._invoices),
            ("GET", "/_emulator/contacts"): lambda _req: self._listing(self._contacts),
            ("GET", "/_emulator/credit-notes"): lambda _req: self._listing(self._credit_notes),
            ("GET", "/_emulator/history"): lambda _req: self._history(),
            ("POST", "/_emulator/outage"): lambda req: self.admin_action(
                req, self._admin_outage, refused="bad outage request"
            ),
            ("POST", "/_emulator/clock"): self._admin_clock,
            ("POST", "/_emulator/revoke"): self._admin_revoke,
            ("POST", "/_emulator/payments"): lambda req: self.admin_action(
                req, self._admin_payment, refused="payment refused"
            ),
            ("POST", "/_emulator/archive-contact"): lambda req: self.admin_action(
                req, self._admin_archive_contact, refused="archive refused"
            ),
            ("GET", "/_emulator/balance"): self._admin_balance,
            ("POST", "/_emulator/webhooks"): lambda req: self.admin_action(
                req, self._admin_webhooks, refused="bad webhook settings"
            ),
            ("GET", "/_emulator/webhooks"): lambda _req: json_response(
                200, {"deliveries": [list(d) for d in self.webhooks.deliveries], "sent": len(self.webhooks.sent)}
            ),
            ("POST", "/_emulator/webhooks/intent"): lambda req: self.admin_action(
                req, lambda doc: self.intent_to_receive(doc.get("url")), refused="intent to receive refused"
            ),
            ("POST", "/_emulator/webhooks/redeliver"): lambda req: self.admin_action(
                req, lambda doc: {"redelivered": self.webhooks.redeliver(int(doc.get("index", -1)))}, refused="nothing"
            ),
        }

    def _admin_webhooks(self, doc: dict[str, Any]) -> dict[str, Any]:
        """``POST /_emulator/webhooks`` ``{"url", "key"}`` (both optional): where webhooks go, what signs them."""
        if doc.get("key"):
            self.webhook_key = str(doc["key"])
        return self.webhooks.configure(doc)

    def _listing(self, store: dict[str, dict[str, dict]]) -> Response:
        """Every object of ``store`` (all organisations), each with its ``TenantID``."""
        with self._lock:
            listing = [dict(copy.deepcopy(obj), TenantID=t) for t, by_id in store.items() for obj in by_id.values()]
        return json_response(200, listing)

    def _history(self) -> Response:
        with self._lock:
            return json_response(200, [list(h) for h in self.history])

    def _admin_payment(self, doc: dict[str, Any]) -> dict[str, Any]:
        """``POST /_emulator/payments`` ``{"InvoiceID", "Amount" (optional), "tenant_id" (optional)}`` ->
        ``{"Invoices": [invoice]}``."""
        amount = doc.get("Amount")
        invoice = self.mark_paid(
            str(doc["InvoiceID"]), None if amount is None else Decimal(str(amount)), doc.get("tenant_id")
        )
        return {"Invoices": [invoice]}

    def _admin_archive_contact(self, doc: dict[str, Any]) -> dict[str, Any]:
        """``POST /_emulator/archive-contact`` ``{"ContactID", "tenant_id" (optional)}`` -> ``{"Contacts": [contact]}``
        (:meth:`archive_contact`)."""
        return {"Contacts": [self.archive_contact(str(doc["ContactID"]), doc.get("tenant_id"))]}

    def _admin_balance(self, req: Request) -> Response:
        """``GET /_emulator/balance?tenant_id=...&contact_id=...`` -> ``{"balance": "12.30"}``."""
        balance = self.balance(req.query.get("tenant_id") or None, req.query.get("contact_id") or None)
        return json_response(200, {"balance": str(balance)})

    def _admin_clock(self, req: Request) -> Response:
        """``POST /_emulator/clock`` ``{"advance": seconds}`` -> ``{"offset": total seconds ahead}``."""
        try:
            offset = self.advance_clock(float(loads_decimal(req.body or b"{}")["advance"]))
        except (ValueError, KeyError, TypeError) as exc:
            return json_response(400, {"error": f"bad clock request: {exc}"})
        return json_response(200, {"offset": Decimal(str(offset))})

    def _admin_revoke(self, _req: Request) -> Response:
        """``POST /_emulator/revoke``: :meth:`revoke_connection`."""
        self.revoke_connection()
        return json_response(200, {"ok": True})

    def _admin_outage(self, doc: dict[str, Any]) -> dict[str, Any]:
        """``POST /_emulator/outage`` ``{"seconds", "tenant_id" (optional), "status" (optional, 503)}``:
        :meth:`outage`."""
        self.outage(float(doc["seconds"]), doc.get("tenant_id"), int(doc.get("status", 503)))
        return {"ok": True}


def serve(host: str = "127.0.0.1", port: int = 0, *, spec_path: str | None = None, **kwargs: Any) -> None:
    """Run an emulator in the foreground until Ctrl-C, printing its URL and the demo credentials.

    ``kwargs`` go to :class:`XeroEmulator`; ``spec_path`` (the official ``xero_accounting.yaml``)
    turns on request validation against the spec.
    """
    if spec_path:
        from connectors.xero.spec import make_request_validator

        kwargs["request_validator"] = make_request_validator(spec_path)
    emulator = XeroEmulator(host=host, port=port, **kwargs).start()
    secret, refresh = emulator.client_secret, emulator.initial_refresh_token
    serve_until_interrupted(
        emulator,
        [
            f"Xero emulator listening on {emulator.url}",
            f"  api_url / identity_url : {emulator.url}",
            f"  xero_tenant_id         : {', '.join(emulator.tenant_ids)}",
            f"  client_id              : {emulator.client_id}",
            f"  client secret          : {secret}   (export XERO_CLIENT_SECRET={secret})",
            f"  refresh token          : {refresh}   (export XERO_REFRESH_TOKEN={refresh})",
            (
                f"  control API            : {emulator.url}/_emulator/stats | /_emulator/invoices"
                " | POST /_emulator/faults | POST /_emulator/reset"
            ),
        ],
    )


__all__ = [
    "ARCHIVED_CONTACT_MESSAGE",
    "DEFAULT_TAX_RATES",
    "DEFAULT_TENANT_ID",
    "FAULT_KINDS",
    "XeroEmulator",
    "demo_contacts",
    "serve",
]
