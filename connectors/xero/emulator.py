"""A loopback emulator of Xero (identity + Accounting API 2.0 subset) on one port.

Behaves like the real service where the broker depends on it (sources: official spec
``xero_accounting.yaml`` / ``xero-identity.yaml``, https://developer.xero.com/documentation/api/accounting/invoices,
https://developer.xero.com/faq/oauth2, https://developer.xero.com/documentation/auth-and-limits/xero-api-limits,
https://developer.xero.com/documentation/api-guides/rounding-in-xero):

* ``POST /connect/token`` – refresh-token grant with HTTP Basic ``client_id:client_secret`` (or form
  fields). Refresh tokens rotate on every use; the previous one stays valid for a 30-minute grace
  period. Access tokens expire after ``access_token_ttl`` seconds. Errors: 400 ``invalid_client``,
  ``invalid_grant``, ``unsupported_grant_type``.
* ``GET /identity/connect/authorize`` (login.xero.com) – consents at once and redirects (302) to the
  loopback ``redirect_uri`` with ``code`` and ``state``; ``POST /connect/token`` with
  ``grant_type=authorization_code`` exchanges it (single-use, same ``redirect_uri``, PKCE S256
  verifier checked). Tokens carry ``scopes`` (settable, to emulate a connection missing a scope).
* ``GET /connections`` – the organisations (``tenant_ids``) the token can reach.
* ``PUT``/``GET /api.xro/2.0/Invoices``, ``GET /api.xro/2.0/Invoices/{InvoiceID|InvoiceNumber}``,
  ``POST /api.xro/2.0/Invoices/{InvoiceID}`` (``updateInvoice``: status changes only — ``DRAFT``/
  ``SUBMITTED`` -> ``DELETED``, ``AUTHORISED`` without payments -> ``VOIDED``, ``DRAFT`` -> ``SUBMITTED``
  -> ``AUTHORISED``; anything else is Xero's validation error),
  ``PUT``/``GET /api.xro/2.0/CreditNotes``, ``GET /api.xro/2.0/CreditNotes/{CreditNoteID}`` (``ACCRECCREDIT``/
  ``ACCPAYCREDIT``, totals computed like invoices, ``CreditNoteNumber`` unique per organisation, not
  allocated: ``RemainingCredit`` = ``Total``),
  ``PUT``/``GET /api.xro/2.0/Contacts``, ``GET /api.xro/2.0/Contacts/{ContactID}``.
  Bearer token required (401 ``TokenExpired``/``AuthenticationUnsuccessful``), ``xero-tenant-id``
  required and known (403 ``AuthorizationUnsuccessful``).
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

Test hooks: ``request_validator`` (see :mod:`connectors.xero.spec_check`), :meth:`XeroEmulator.inject_fault`,
:meth:`XeroEmulator.expire_access_tokens`, and the control API for other processes::

    GET  /_emulator/invoices   -> [invoice, ...]  (all organisations, each with "TenantID")
    GET  /_emulator/contacts   -> [contact, ...]
    GET  /_emulator/stats      -> {"calls": [[method, path, status], ...], "call_count", "count_429",
                                   "validation_failures": [...], "server_errors": [...], "invoice_count",
                                   "refresh_token_uses"}
    POST /_emulator/faults     {"kind": "503", "times": 3}   (kinds: FAULT_KINDS; "429" answers Retry-After: fault_retry_after)
    POST /_emulator/outage     {"seconds": 120, "tenant_id": "...", "status": 503}   (all calls of that
                               organisation, or of all when tenant_id is omitted, answer 503 until then)
    GET  /_emulator/credit-notes -> [credit note, ...]
    GET  /_emulator/history    -> [[seconds since start, kind, tenant, number, detail], ...]
    POST /_emulator/reset
    POST /_emulator/expire-tokens
"""

from __future__ import annotations

import base64
import binascii
import copy
import hashlib
import math
import re
import secrets
import socket
import socketserver
import struct
import sys
import threading
import time
import traceback
import uuid
from collections import deque
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field
from datetime import UTC, date, datetime
from decimal import ROUND_HALF_UP, Decimal, InvalidOperation
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any
from urllib.parse import parse_qs, unquote, urlsplit

from connectors.sdk.money import dumps, loads

DEFAULT_TENANT_ID = "00000000-0000-0000-0000-000000000001"
PROVIDER_NAME = "Xero Emulator (maintenance-billing-broker)"

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

        if config_path is None:
            import broker

            config_path = Path(broker.__file__).resolve().parent / "examples" / "config.yaml"
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
    except Exception:  # the seed is a convenience; never fail construction over it
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


@dataclass
class _Request:
    method: str
    path: str
    raw_target: str
    query: dict[str, str]
    headers: dict[str, str]
    body: bytes


@dataclass
class _Response:
    status: int
    body: bytes = b""
    headers: dict[str, str] = field(default_factory=dict)
    #: None = send; "reset" = RST without response; "drop" = close without response; "hang" = wait, then drop
    action: str | None = None


def _json(status: int, obj: Any, headers: dict[str, str] | None = None) -> _Response:
    h = {"Content-Type": "application/json; charset=utf-8"}
    h.update(headers or {})
    return _Response(status, dumps(obj), h)


def _problem(status: int, title: str, detail: str) -> _Response:
    """Xero's problem-details body for 401/403 (``{"Type": null, "Title", "Status", "Detail", ...}``)."""
    return _json(
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


def _validation_exception(elements: list[dict], message: str = "A validation exception occurred") -> _Response:
    """HTTP 400 with spec schema ``Error`` (``ErrorNumber``, ``Type``, ``Message``, ``Elements`` of ``Element``)."""
    return _json(400, {"ErrorNumber": 10, "Type": "ValidationException", "Message": message, "Elements": elements})


class _TenantLimits:
    def __init__(self) -> None:
        self.minute: deque[float] = deque()
        self.day: deque[float] = deque()
        self.inflight = 0


class XeroEmulator:
    """Local Xero on ``host:port`` (``port=0`` picks a free port); start with :meth:`start` or ``with``.

    State is in memory and per organisation (``tenant_ids``). Public attributes for tests:
    ``calls`` (list of ``(method, path, status)``; status 0 = connection closed without a
    response), ``count_429``, ``validation_failures`` (messages of ``request_validator`` rejections),
    ``server_errors`` (tracebacks of emulator bugs, answered 500), ``refresh_token_uses``
    (refresh tokens presented to ``/connect/token``, in order).

    Extra keyword arguments beyond the documented ones: ``app_rate_limit_per_minute`` (10,000),
    ``idempotency_ttl`` (360 s), ``refresh_grace_seconds`` (1,800 s), ``tax_rates`` (TaxType ->
    percent), ``account_codes`` (valid AccountCodes; ``None`` accepts any), ``base_currency``
    ("EUR"), ``hang_seconds`` (how long a ``timeout_after_commit`` fault keeps the socket open, 30 s),
    ``response_delay`` (seconds each Accounting call holds its concurrency slot, 0),
    ``contacts`` (``{tenant_id: {ContactID: Name}}`` created at start and after :meth:`reset_state`;
    ``None`` = :func:`demo_contacts`, the clients of the bundled demo config; ``{}`` = none),
    ``rate_limit_window_seconds`` (60), ``enforce_unique_numbers`` (True), ``on_invoice_created``
    (test hook). ``history`` lists what changed, in order: ``(seconds since start, kind, tenant,
    number, detail)`` with kinds ``invoice.created``, ``invoice.status``, ``creditnote.created``.
    """

    def __init__(
        self,
        *,
        host: str = "127.0.0.1",
        port: int = 0,
        client_id: str = "demo-client",
        client_secret: str = "demo-secret",
        refresh_token: str = "demo-refresh-token",
        tenant_ids: Iterable[str] = (DEFAULT_TENANT_ID,),
        rate_limit_per_minute: int = 60,
        daily_limit: int = 5000,
        max_concurrency: int = 5,
        access_token_ttl: float = 1800,
        request_validator: Callable[[str, str, dict, dict, bytes], Any] | None = None,
        app_rate_limit_per_minute: int = 10000,
        idempotency_ttl: float = 360,
        refresh_grace_seconds: float = 1800,
        tax_rates: dict[str, Decimal] | None = None,
        account_codes: Iterable[str] | None = DEFAULT_ACCOUNT_CODES,
        base_currency: str = "EUR",
        hang_seconds: float = 30.0,
        response_delay: float = 0.0,
        contacts: Mapping[str, Mapping[str, str]] | None = None,
        rate_limit_window_seconds: float = 60.0,
        enforce_unique_numbers: bool = True,
        on_invoice_created: Callable[[str, dict], Any] | None = None,
    ):
        self.host = host
        self.port = port
        self.client_id = client_id
        self.client_secret = client_secret
        self.initial_refresh_token = refresh_token
        self.tenant_ids = tuple(tenant_ids)
        self.rate_limit_per_minute = rate_limit_per_minute
        self.daily_limit = daily_limit
        self.max_concurrency = max_concurrency
        self.access_token_ttl = access_token_ttl
        self.request_validator = request_validator
        self.app_rate_limit_per_minute = app_rate_limit_per_minute
        self.idempotency_ttl = idempotency_ttl
        self.refresh_grace_seconds = refresh_grace_seconds
        self.tax_rates = {k.upper(): Decimal(v) for k, v in (tax_rates or DEFAULT_TAX_RATES).items()}
        self.account_codes = None if account_codes is None else frozenset(account_codes)
        self.base_currency = base_currency
        self.hang_seconds = hang_seconds
        self.response_delay = response_delay
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
        self._auth_codes: dict[str, dict] = {}
        self.seed_contacts = demo_contacts() if contacts is None else {t: dict(c) for t, c in contacts.items()}

        self._lock = threading.RLock()
        self._stop = threading.Event()
        self._server: _Server | None = None
        self._thread: threading.Thread | None = None
        # auth state survives reset_state()
        self._access_tokens: dict[str, float] = {}
        self._refresh_tokens: dict[str, float | None] = {refresh_token: None}
        self.refresh_token_uses: list[str] = []
        self._init_state()

    # ------------------------------------------------------------------ lifecycle
    def _init_state(self) -> None:
        self._invoices: dict[str, dict[str, dict]] = {t: {} for t in self.tenant_ids}
        self._contacts: dict[str, dict[str, dict]] = {t: {} for t in self.tenant_ids}
        self._idempotency: dict[tuple[str, str], dict] = {}
        self._limits: dict[str, _TenantLimits] = {t: _TenantLimits() for t in self.tenant_ids}
        self._app_minute: deque[float] = deque()
        self._faults: deque[str] = deque()
        self._number_seq: dict[str, int] = dict.fromkeys(self.tenant_ids, 0)
        self._credit_notes: dict[str, dict[str, dict]] = {t: {} for t in self.tenant_ids}
        self._cn_seq: dict[str, int] = dict.fromkeys(self.tenant_ids, 0)
        self._outages: dict[str, tuple[float, int]] = {}
        self.history: list[tuple[float, str, str, str, str]] = []
        for tenant, seeded in self.seed_contacts.items():
            if tenant in self._contacts:
                for contact_id, name in seeded.items():
                    self._new_contact(tenant, {"Name": name}, contact_id=contact_id)
        self.calls: list[tuple[str, str, int]] = []
        self.count_429 = 0
        self.validation_failures: list[str] = []
        self.server_errors: list[str] = []

    def start(self) -> XeroEmulator:
        """Bind and serve in a daemon thread; returns ``self``. Idempotent."""
        if self._server is not None:
            return self
        self._stop.clear()
        handler = type("XeroEmulatorHandler", (_Handler,), {"emulator": self})
        self._server = _Server((self.host, self.port), handler)
        self.port = self._server.server_address[1]
        self._thread = threading.Thread(
            target=self._server.serve_forever,
            kwargs={"poll_interval": 0.05},
            name=f"xero-emulator:{self.port}",
            daemon=True,
        )
        self._thread.start()
        return self

    def stop(self) -> None:
        """Stop serving and close the listening socket (hanging fault handlers are woken up)."""
        self._stop.set()
        server, self._server = self._server, None
        if server is not None:
            server.shutdown()
            server.server_close()
        if self._thread is not None:
            self._thread.join(timeout=5)
            self._thread = None

    def __enter__(self) -> XeroEmulator:
        return self.start()

    def __exit__(self, *exc: Any) -> None:
        self.stop()

    @property
    def url(self) -> str:
        """Base URL, e.g. ``http://127.0.0.1:54321`` (use it as both ``api_url`` and ``identity_url``)."""
        return f"http://{self.host}:{self.port}"

    # ------------------------------------------------------------------ test helpers
    def invoices(self, tenant_id: str | None = None) -> list[dict]:
        """Deep copies of the stored invoices (Xero JSON shape, Decimal amounts) of one or all organisations."""
        with self._lock:
            tenants = [tenant_id] if tenant_id is not None else list(self._invoices)
            return [copy.deepcopy(inv) for t in tenants for inv in self._invoices.get(t, {}).values()]

    def contacts(self, tenant_id: str | None = None) -> list[dict]:
        """Deep copies of the stored contacts of one or all organisations."""
        with self._lock:
            tenants = [tenant_id] if tenant_id is not None else list(self._contacts)
            return [copy.deepcopy(c) for t in tenants for c in self._contacts.get(t, {}).values()]

    def add_contact(self, name: str, tenant_id: str | None = None, contact_id: str | None = None, **fields: Any) -> str:
        """Create a contact directly (no HTTP) and return its ``ContactID`` (``contact_id`` to choose it)."""
        tenant = tenant_id or self.tenant_ids[0]
        with self._lock:
            return self._new_contact(tenant, {"Name": name, **fields}, contact_id=contact_id)["ContactID"]

    def credit_notes(self, tenant_id: str | None = None) -> list[dict]:
        """Deep copies of the stored credit notes of one or all organisations."""
        with self._lock:
            tenants = [tenant_id] if tenant_id is not None else list(self._credit_notes)
            return [copy.deepcopy(cn) for t in tenants for cn in self._credit_notes.get(t, {}).values()]

    def outage(self, seconds: float, tenant_id: str | None = None, status: int = 503) -> None:
        """Every Accounting call of ``tenant_id`` (all organisations when ``None``) answers ``status``
        for the next ``seconds`` (nothing is processed or counted against the limits)."""
        with self._lock:
            self._outages[tenant_id or "*"] = (time.monotonic() + float(seconds), int(status))

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
        if kind not in FAULT_KINDS:
            raise ValueError(f"unknown fault kind {kind!r}; known: {', '.join(FAULT_KINDS)}")
        with self._lock:
            self._faults.extend([kind] * int(times))

    def expire_access_tokens(self) -> None:
        """Expire every issued access token now (next call gets 401 ``TokenExpired``)."""
        with self._lock:
            past = time.monotonic() - 1
            for token in self._access_tokens:
                self._access_tokens[token] = past

    @property
    def current_refresh_token(self) -> str:
        """The newest refresh token issued (the initial one before any refresh)."""
        with self._lock:
            return next(reversed(self._refresh_tokens))

    def reset_state(self) -> None:
        """Forget invoices, contacts, idempotency cache, rate windows, faults and records (tokens are kept)."""
        with self._lock:
            self._init_state()

    def stats(self) -> dict[str, Any]:
        """Snapshot served by ``GET /_emulator/stats``."""
        with self._lock:
            return {
                "calls": [list(c) for c in self.calls],
                "call_count": len(self.calls),
                "count_429": self.count_429,
                "validation_failures": list(self.validation_failures),
                "server_errors": list(self.server_errors),
                "invoice_count": sum(len(v) for v in self._invoices.values()),
                "refresh_token_uses": len(self.refresh_token_uses),
                "pending_faults": list(self._faults),
            }

    # ------------------------------------------------------------------ dispatch
    def _handle(self, req: _Request) -> _Response:
        path = req.path
        lower = path.rstrip("/").lower() or "/"
        if lower.startswith("/_emulator"):
            return self._control(req, lower)
        if self.request_validator is not None:
            try:
                self.request_validator(req.method, path, dict(req.query), dict(req.headers), req.body)
            except Exception as exc:  # any exception = the request does not conform
                message = f"{req.method} {path}: {type(exc).__name__}: {exc}"
                with self._lock:
                    self.validation_failures.append(message)
                return _json(400, {"ErrorNumber": 14, "Type": "PostDataInvalidException", "Message": message})
        if lower == "/identity/connect/authorize":
            return self._authorize(req)
        if lower == "/connect/token":
            if req.method != "POST":
                return _json(405, {"error": "method_not_allowed"}, {"Allow": "POST"})
            return self._token(req)
        if lower == "/connections":
            denied = self._authenticate(req)
            if denied is not None:
                return denied
            if req.method != "GET":
                return _json(405, {"Title": "Method Not Allowed", "Status": 405})
            return self._connections()
        if lower.startswith("/api.xro/2.0/"):
            return self._accounting(req, lower[len("/api.xro/2.0/") :])
        return _json(404, {"Title": "Not Found", "Status": 404, "Detail": f"no emulated resource at {path}"})

    # ------------------------------------------------------------------ identity
    def _token(self, req: _Request) -> _Response:
        form = {k: v[-1] for k, v in parse_qs(req.body.decode("utf-8", "replace"), keep_blank_values=True).items()}
        client_id, client_secret = form.get("client_id"), form.get("client_secret")
        auth = req.headers.get("authorization", "")
        if auth.lower().startswith("basic "):
            try:
                decoded = base64.b64decode(auth[6:].strip(), validate=True).decode("utf-8")
                client_id, _, client_secret = decoded.partition(":")
            except (binascii.Error, UnicodeDecodeError):
                return _json(400, {"error": "invalid_client"})
        if (
            client_id != self.client_id
            or client_secret is None
            or not secrets.compare_digest(client_secret, self.client_secret)
        ):
            return _json(400, {"error": "invalid_client"})
        if form.get("grant_type") == "authorization_code":
            return self._code_grant(form)
        if form.get("grant_type") != "refresh_token":
            return _json(400, {"error": "unsupported_grant_type"})
        presented = form.get("refresh_token", "")
        now = time.monotonic()
        with self._lock:
            self.refresh_token_uses.append(presented)
            if presented not in self._refresh_tokens:
                return _json(400, {"error": "invalid_grant"})
            valid_until = self._refresh_tokens[presented]
            if valid_until is not None and now >= valid_until:
                return _json(400, {"error": "invalid_grant"})
            # rotate: the presented token stays usable for the grace period
            self._refresh_tokens[presented] = now + self.refresh_grace_seconds if valid_until is None else valid_until
            new_refresh = "emu-rt-" + secrets.token_hex(16)
            self._refresh_tokens[new_refresh] = None
            access = "emu-at-" + secrets.token_hex(20)
            self._access_tokens[access] = now + self.access_token_ttl
        return _json(
            200,
            {
                "access_token": access,
                "expires_in": int(math.ceil(self.access_token_ttl)),
                "token_type": "Bearer",
                "refresh_token": new_refresh,
                "scope": self.scopes,
            },
            {"Cache-Control": "no-store"},
        )

    def _authorize(self, req: _Request) -> _Response:
        """``GET /identity/connect/authorize`` (login.xero.com): the user consents at once; 302 to the
        loopback ``redirect_uri`` with ``code`` and ``state``. PKCE ``code_challenge`` (S256) is kept."""
        q = req.query
        if q.get("client_id") != self.client_id:
            return _json(400, {"error": "unauthorized_client"})
        redirect = q.get("redirect_uri", "")
        if q.get("response_type") != "code" or not re.match(
            r"^http://(127\.0\.0\.1|localhost|\[::1\])(:\d+)?/", redirect
        ):
            return _json(
                400,
                {
                    "error": "invalid_request",
                    "error_description": "response_type=code and a loopback redirect_uri are required",
                },
            )
        code = "emu-code-" + secrets.token_hex(12)
        with self._lock:
            self._auth_codes[code] = {
                "redirect_uri": redirect,
                "challenge": q.get("code_challenge"),
                "expires": time.monotonic() + 300,
            }
        sep = "&" if "?" in redirect else "?"
        state = q.get("state", "")
        from urllib.parse import urlencode

        return _Response(302, b"", {"Location": f"{redirect}{sep}{urlencode({'code': code, 'state': state})}"})

    def _code_grant(self, form: dict[str, str]) -> _Response:
        """``grant_type=authorization_code``: single-use code, same ``redirect_uri``, PKCE verifier checked."""
        with self._lock:
            entry = self._auth_codes.pop(form.get("code", ""), None)
            if (
                entry is None
                or time.monotonic() > entry["expires"]
                or entry["redirect_uri"] != form.get("redirect_uri")
            ):
                return _json(400, {"error": "invalid_grant"})
            if entry["challenge"]:
                verifier = form.get("code_verifier", "")
                digest = base64.urlsafe_b64encode(hashlib.sha256(verifier.encode()).digest()).rstrip(b"=").decode()
                if not secrets.compare_digest(digest, entry["challenge"]):
                    return _json(400, {"error": "invalid_grant", "error_description": "code_verifier does not match"})
            now = time.monotonic()
            new_refresh = "emu-rt-" + secrets.token_hex(16)
            self._refresh_tokens[new_refresh] = None
            access = "emu-at-" + secrets.token_hex(20)
            self._access_tokens[access] = now + self.access_token_ttl
        return _json(
            200,
            {
                "access_token": access,
                "expires_in": int(math.ceil(self.access_token_ttl)),
                "token_type": "Bearer",
                "refresh_token": new_refresh,
                "scope": self.scopes,
            },
            {"Cache-Control": "no-store"},
        )

    def _authenticate(self, req: _Request) -> _Response | None:
        auth = req.headers.get("authorization", "")
        if not auth.lower().startswith("bearer "):
            resp = _problem(401, "Unauthorized", "AuthenticationUnsuccessful")
            resp.headers["WWW-Authenticate"] = 'Bearer realm="api.xero.com"'
            return resp
        token = auth[7:].strip()
        with self._lock:
            expires = self._access_tokens.get(token)
        if expires is None:
            resp = _problem(401, "Unauthorized", "AuthenticationUnsuccessful")
            resp.headers["WWW-Authenticate"] = 'Bearer error="invalid_token"'
            return resp
        if time.monotonic() >= expires:
            when = _now_utc().strftime("%m/%d/%Y %H:%M:%S")
            resp = _problem(401, "Unauthorized", f"TokenExpired: token expired at {when}")
            resp.headers["WWW-Authenticate"] = 'Bearer error="invalid_token", error_description="The token expired"'
            return resp
        return None

    def _connections(self) -> _Response:
        stamp = "2024-01-01T00:00:00.0000000"
        return _json(
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

    def _admit(self, tenant: str) -> _Response | None:
        """Count the call against the limits or return the 429. Caller holds the lock."""
        now = time.monotonic()
        lim = self._limits[tenant]
        for window, span in (
            (lim.minute, self.rate_limit_window_seconds),
            (lim.day, 86400.0),
            (self._app_minute, 60.0),
        ):
            while window and now - window[0] >= span:
                window.popleft()
        problem, retry = None, 0.0
        if len(lim.day) >= self.daily_limit:
            problem, retry = "day", 86400.0 - (now - lim.day[0])
        elif len(lim.minute) >= self.rate_limit_per_minute:
            problem, retry = "minute", self.rate_limit_window_seconds - (now - lim.minute[0])
        elif len(self._app_minute) >= self.app_rate_limit_per_minute:
            problem, retry = "appminute", 60.0 - (now - self._app_minute[0])
        elif lim.inflight >= self.max_concurrency:
            problem, retry = "concurrent", 1.0
        if problem is not None:
            self.count_429 += 1
            headers = self._limit_headers(tenant)
            headers.update({"Retry-After": str(max(1, math.ceil(retry))), "X-Rate-Limit-Problem": problem})
            return _json(
                429, {"Title": "Too Many Requests", "Status": 429, "Detail": f"rate limit exceeded: {problem}"}, headers
            )
        lim.minute.append(now)
        lim.day.append(now)
        self._app_minute.append(now)
        lim.inflight += 1
        return None

    def _accounting(self, req: _Request, resource: str) -> _Response:
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
                return _json(
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
            fault = self._faults.popleft() if self._faults else None
        try:
            if fault == "429":
                with self._lock:
                    self.count_429 += 1
                    headers = self._limit_headers(tenant)
                headers.update({"Retry-After": str(self.fault_retry_after), "X-Rate-Limit-Problem": "minute"})
                return _json(
                    429, {"Title": "Too Many Requests", "Status": 429, "Detail": "rate limit exceeded: minute"}, headers
                )
            if fault in ("503", "500"):
                status = int(fault)
                return _json(
                    status,
                    {"Title": "Service Unavailable" if status == 503 else "Internal Server Error", "Status": status},
                )
            if fault == "reset":
                return _Response(0, action="reset")
            if self.response_delay > 0:
                self._stop.wait(self.response_delay)
            with self._lock:
                resp = self._idempotent(req, tenant, resource)
            if fault == "timeout_after_commit":
                resp.action = "hang"
            elif fault == "drop_after_commit":
                resp.action = "drop"
            return resp
        finally:
            with self._lock:
                self._limits[tenant].inflight -= 1

    def _idempotent(self, req: _Request, tenant: str, resource: str) -> _Response:
        """Idempotency-Key cache around :meth:`_route` (caller holds the lock)."""
        key = req.headers.get("idempotency-key")
        if req.method not in ("PUT", "POST", "PATCH") or not key:
            return self._with_limits(self._route(req, tenant, resource), tenant)
        if len(key) > 128:
            return self._with_limits(
                _validation_exception([], f"Idempotency-Key must be 128 characters or fewer (got {len(key)})"), tenant
            )
        now = time.monotonic()
        for cached_key in [k for k, v in self._idempotency.items() if now - v["at"] >= self.idempotency_ttl]:
            del self._idempotency[cached_key]
        fingerprint = (req.method, req.raw_target, hashlib.sha256(req.body).hexdigest())
        entry = self._idempotency.get((tenant, key))
        if entry is not None:
            if entry["fingerprint"] != fingerprint:
                return self._with_limits(
                    _validation_exception(
                        [],
                        f"Idempotency-Key {key} was already used with a different request "
                        "(method, URL and body must match the original)",
                    ),
                    tenant,
                )
            replay = _Response(entry["status"], entry["body"], dict(entry["headers"]))
            return self._with_limits(replay, tenant)
        resp = self._route(req, tenant, resource)
        if resp.status < 500:
            self._idempotency[(tenant, key)] = {
                "at": now,
                "fingerprint": fingerprint,
                "status": resp.status,
                "body": resp.body,
                "headers": dict(resp.headers),
            }
        return self._with_limits(resp, tenant)

    def _with_limits(self, resp: _Response, tenant: str) -> _Response:
        resp.headers.update(self._limit_headers(tenant))
        return resp

    def _route(self, req: _Request, tenant: str, resource: str) -> _Response:
        parts = resource.split("/")
        name = parts[0]
        if name == "invoices" and len(parts) == 1:
            if req.method == "PUT":
                return self._put_invoices(req, tenant)
            if req.method == "GET":
                return self._get_invoices(req, tenant)
        elif name == "invoices" and len(parts) == 2 and req.method == "GET":
            return self._get_invoice(req, tenant, unquote(req.path.rstrip("/").split("/")[-1]))
        elif name == "invoices" and len(parts) == 2 and req.method == "POST":
            return self._update_invoice(req, tenant, unquote(req.path.rstrip("/").split("/")[-1]))
        elif name == "creditnotes" and len(parts) == 1:
            if req.method == "PUT":
                return self._put_credit_notes(req, tenant)
            if req.method == "GET":
                return self._get_credit_notes(req, tenant)
        elif name == "creditnotes" and len(parts) == 2 and req.method == "GET":
            ident = unquote(req.path.rstrip("/").split("/")[-1]).lower()
            note = self._credit_notes[tenant].get(ident)
            if note is None:
                return self._not_found()
            return self._envelope({"CreditNotes": [self._render(note, self._unitdp(req))]})
        elif name == "contacts" and len(parts) == 1:
            if req.method == "PUT":
                return self._put_contacts(req, tenant)
            if req.method == "GET":
                return self._get_contacts(req, tenant)
        elif name == "contacts" and len(parts) == 2 and req.method == "GET":
            contact = self._contacts[tenant].get(unquote(req.path.rstrip("/").split("/")[-1]).lower())
            if contact is None:
                return self._not_found()
            return self._envelope({"Contacts": [copy.deepcopy(contact)]})
        else:
            return self._not_found()
        return _json(
            405,
            {"Title": "Method Not Allowed", "Status": 405, "Detail": f"{req.method} is not emulated on this resource"},
        )

    @staticmethod
    def _not_found() -> _Response:
        return _Response(
            404, b"The resource you're looking for cannot be found", {"Content-Type": "text/plain; charset=utf-8"}
        )

    @staticmethod
    def _envelope(payload: dict) -> _Response:
        body = {
            "Id": str(uuid.uuid4()),
            "Status": "OK",
            "ProviderName": PROVIDER_NAME,
            "DateTimeUTC": f"/Date({int(time.time() * 1000)})/",
        }
        body.update(payload)
        return _json(200, body)

    @staticmethod
    def _parse_body(req: _Request, collection: str) -> list[Any] | _Response:
        try:
            doc = loads(req.body or b"")
        except ValueError as exc:
            return _json(
                400,
                {
                    "ErrorNumber": 14,
                    "Type": "PostDataInvalidException",
                    "Message": f"JSON for post data was invalid: {exc}",
                },
            )
        if isinstance(doc, dict) and isinstance(doc.get(collection), list):
            return doc[collection]
        if isinstance(doc, dict) and collection not in doc:
            return [doc]  # a single object is accepted too
        return _json(
            400,
            {
                "ErrorNumber": 14,
                "Type": "PostDataInvalidException",
                "Message": f"Expected an object with a {collection} array",
            },
        )

    @staticmethod
    def _summarize(req: _Request) -> bool:
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

    def _put_contacts(self, req: _Request, tenant: str) -> _Response:
        elements = self._parse_body(req, "Contacts")
        if isinstance(elements, _Response):
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
                    for el, errs in zip(elements, errors)
                    if errs
                ]
            )
        out = []
        for el, errs in zip(elements, errors):
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

    def _get_contacts(self, req: _Request, tenant: str) -> _Response:
        contacts = list(self._contacts[tenant].values())
        ids = {i.strip().lower() for i in req.query.get("IDs", "").split(",") if i.strip()}
        if ids:
            contacts = [c for c in contacts if c["ContactID"] in ids]
        term = req.query.get("searchTerm", "").strip().lower()
        if term:
            contacts = [c for c in contacts if term in c["Name"].lower()]
        return self._envelope({"Contacts": copy.deepcopy(contacts)})

    # ------------------------------------------------------------------ invoices
    @staticmethod
    def _number(value: Any, field_name: str, errors: list[str]) -> Decimal | None:
        if value is None:
            return None
        if isinstance(value, bool):
            errors.append(f"{field_name} must be a number")
            return None
        if isinstance(value, (int, Decimal)):
            return Decimal(value)
        if isinstance(value, float):
            return Decimal(repr(value))
        if isinstance(value, str):
            try:
                result = Decimal(value.strip())
                if result.is_finite():
                    return result
            except InvalidOperation:
                pass
        errors.append(f"{field_name} must be a number")
        return None

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
            if qty is None and unit is None:
                qty, unit = Decimal(1), sent_amount if sent_amount is not None else Decimal(0)
            elif qty is None:
                qty = (sent_amount / unit) if (sent_amount is not None and unit) else Decimal(1)
            elif unit is None:
                unit = (sent_amount / qty) if (sent_amount is not None and qty) else Decimal(0)
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
            line = {
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
    def _unitdp(req: _Request) -> int:
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
                line["UnitAmount"] = _q2(line["UnitAmount"])
        return out

    def _put_invoices(self, req: _Request, tenant: str) -> _Response:
        elements = self._parse_body(req, "Invoices")
        if isinstance(elements, _Response):
            return elements
        unitdp = self._unitdp(req)
        taken = self._taken_numbers(tenant)
        built = []
        for el in elements:
            invoice, errs, commit = self._build_invoice(tenant, el, unitdp, taken)
            if invoice is not None and invoice["Type"] == "ACCREC" and invoice["InvoiceNumber"]:
                taken.add(invoice["InvoiceNumber"].lower())
            built.append((el, invoice, errs, commit))
        if self._summarize(req) and any(errs for _, _, errs, _ in built):
            return _validation_exception([self._error_element(el, errs) for el, _, errs, _ in built if errs])
        out = []
        for el, invoice, errs, commit in built:
            if errs:
                out.append(self._error_element(el, errs))
            else:
                commit()
                self._log("invoice.created", tenant, invoice["InvoiceNumber"], invoice["Status"])
                if self.on_invoice_created is not None:
                    self.on_invoice_created(tenant, copy.deepcopy(invoice))
                out.append(self._render(invoice, unitdp))
        return self._envelope({"Invoices": out})

    @staticmethod
    def _error_element(el: Any, errs: list[str]) -> dict:
        element = copy.deepcopy(el) if isinstance(el, dict) else {}
        element.update(
            {"HasErrors": True, "StatusAttributeString": "ERROR", "ValidationErrors": [{"Message": m} for m in errs]}
        )
        return element

    def _get_invoices(self, req: _Request, tenant: str) -> _Response:
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
        where = q.get("where", "").strip()
        if where:
            for term in re.split(r"\s+AND\s+", where, flags=re.IGNORECASE):
                m = _WHERE_TERM.match(term)
                if not m or m.group(1) not in ("InvoiceNumber", "Reference", "Status", "Type", "InvoiceID"):
                    return _json(
                        400,
                        {
                            "ErrorNumber": 16,
                            "Type": "QueryParseException",
                            "Message": f"where clause not supported by the emulator: {term!r}",
                        },
                    )
                field_name, value = m.group(1), re.sub(r"\\(.)", r"\1", m.group(2))
                invoices = [i for i in invoices if str(i.get(field_name, "")) == value]
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

    def _get_invoice(self, req: _Request, tenant: str, ident: str) -> _Response:
        invoice = self._invoices[tenant].get(ident.lower())
        if invoice is None:
            invoice = next((i for i in self._invoices[tenant].values() if i["InvoiceNumber"] == ident), None)
        if invoice is None:
            return self._not_found()
        return self._envelope({"Invoices": [self._render(invoice, self._unitdp(req))]})

    # ------------------------------------------------------------------ invoice updates (updateInvoice)
    _STATUS_CHANGES = {
        "DRAFT": {"SUBMITTED", "AUTHORISED", "DELETED"},
        "SUBMITTED": {"DRAFT", "AUTHORISED", "DELETED"},
        "AUTHORISED": {"VOIDED"},
    }

    def _update_invoice(self, req: _Request, tenant: str, ident: str) -> _Response:
        """``POST /Invoices/{InvoiceID}``: change the status (caller holds the lock)."""
        invoice = self._invoices[tenant].get(ident.lower())
        if invoice is None:
            invoice = next((i for i in self._invoices[tenant].values() if i["InvoiceNumber"] == ident), None)
        if invoice is None:
            return self._not_found()
        elements = self._parse_body(req, "Invoices")
        if isinstance(elements, _Response):
            return elements
        if len(elements) != 1 or not isinstance(elements[0], dict):
            return _validation_exception([], "Exactly one invoice must be sent to update an invoice by its InvoiceID")
        el = elements[0]
        if el.get("InvoiceID") and str(el["InvoiceID"]).lower() != invoice["InvoiceID"]:
            return _validation_exception([self._error_element(el, ["InvoiceID in the body does not match the URL"])])
        unsupported = sorted(k for k in el if k not in ("InvoiceID", "Status"))
        if unsupported:
            return _json(
                400,
                {
                    "ErrorNumber": 14,
                    "Type": "PostDataInvalidException",
                    "Message": f"the emulator only changes Status with updateInvoice (got {', '.join(unsupported)})",
                },
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
            self._log("invoice.status", tenant, invoice["InvoiceNumber"], f"{old_status}->{new_status}")
        return self._envelope({"Invoices": [self._render(invoice, self._unitdp(req))]})

    # ------------------------------------------------------------------ credit notes
    def _put_credit_notes(self, req: _Request, tenant: str) -> _Response:
        """``PUT /CreditNotes`` (``createCreditNotes``): validated and totalled like invoices (caller holds the lock)."""
        elements = self._parse_body(req, "CreditNotes")
        if isinstance(elements, _Response):
            return elements
        unitdp = self._unitdp(req)
        taken = (
            {cn["CreditNoteNumber"].lower() for cn in self._credit_notes[tenant].values() if cn.get("CreditNoteNumber")}
            if self.enforce_unique_numbers
            else set()
        )
        built: list[tuple[Any, dict | None, list[str], Callable[[], None] | None]] = []
        for el in elements:
            if not isinstance(el, dict):
                built.append((el, None, ["Credit note must be an object"], None))
                continue
            cn_type = el.get("Type")
            errs: list[str] = []
            if cn_type not in ("ACCRECCREDIT", "ACCPAYCREDIT"):
                errs.append(f"Credit note Type {cn_type!r} is not valid (ACCRECCREDIT, ACCPAYCREDIT)")
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
        if self._summarize(req) and any(errs for _, _, errs, _ in built):
            return _validation_exception([self._error_element(el, errs) for el, _, errs, _ in built if errs])
        out = []
        for el, invoice, errs, commit in built:
            if errs or invoice is None or commit is None:
                out.append(self._error_element(el, errs))
                continue
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
            out.append(self._render(note, unitdp))
        return self._envelope({"CreditNotes": out})

    def _get_credit_notes(self, req: _Request, tenant: str) -> _Response:
        notes = list(self._credit_notes[tenant].values())
        where = req.query.get("where", "").strip()
        if where:
            for term in re.split(r"\s+AND\s+", where, flags=re.IGNORECASE):
                m = _WHERE_TERM.match(term)
                if not m or m.group(1) not in ("CreditNoteNumber", "Reference", "Status", "Type", "CreditNoteID"):
                    return _json(
                        400,
                        {
                            "ErrorNumber": 16,
                            "Type": "QueryParseException",
                            "Message": f"where clause not supported by the emulator: {term!r}",
                        },
                    )
                field_name, value = m.group(1), re.sub(r"\\(.)", r"\1", m.group(2))
                notes = [n for n in notes if str(n.get(field_name, "")) == value]
        unitdp = self._unitdp(req)
        return self._envelope({"CreditNotes": [self._render(n, unitdp) for n in notes]})

    # ------------------------------------------------------------------ control API
    def _control(self, req: _Request, lower: str) -> _Response:
        route = (req.method, lower)
        if route == ("GET", "/_emulator/invoices"):
            with self._lock:
                listing = [
                    dict(copy.deepcopy(inv), TenantID=t) for t, invs in self._invoices.items() for inv in invs.values()
                ]
            return _json(200, listing)
        if route == ("GET", "/_emulator/contacts"):
            with self._lock:
                listing = [dict(copy.deepcopy(c), TenantID=t) for t, cs in self._contacts.items() for c in cs.values()]
            return _json(200, listing)
        if route == ("GET", "/_emulator/credit-notes"):
            with self._lock:
                listing = [
                    dict(copy.deepcopy(cn), TenantID=t) for t, cns in self._credit_notes.items() for cn in cns.values()
                ]
            return _json(200, listing)
        if route == ("GET", "/_emulator/history"):
            with self._lock:
                return _json(200, [list(h) for h in self.history])
        if route == ("POST", "/_emulator/outage"):
            try:
                doc = loads(req.body or b"{}")
                self.outage(float(doc["seconds"]), doc.get("tenant_id"), int(doc.get("status", 503)))
            except (ValueError, KeyError, TypeError) as exc:
                return _json(400, {"error": f"bad outage request: {exc}"})
            return _json(200, {"ok": True})
        if route == ("GET", "/_emulator/stats"):
            return _json(200, self.stats())
        if route == ("POST", "/_emulator/faults"):
            try:
                doc = loads(req.body or b"{}")
                self.inject_fault(str(doc["kind"]), int(doc.get("times", 1)))
            except (ValueError, KeyError, TypeError) as exc:
                return _json(400, {"error": f"bad fault request: {exc}", "kinds": list(FAULT_KINDS)})
            return _json(200, {"ok": True, "pending_faults": list(self._faults)})
        if route == ("POST", "/_emulator/reset"):
            self.reset_state()
            return _json(200, {"ok": True})
        if route == ("POST", "/_emulator/expire-tokens"):
            self.expire_access_tokens()
            return _json(200, {"ok": True})
        return _json(404, {"error": f"unknown control route {req.method} {req.path}"})

    def _record(self, method: str, path: str, status: int) -> None:
        with self._lock:
            self.calls.append((method, path, status))


class _Server(ThreadingHTTPServer):
    daemon_threads = True
    allow_reuse_address = True
    request_queue_size = 64

    def handle_error(self, request: Any, client_address: Any) -> None:
        # a client that died mid-request (crash tests kill workers with SIGKILL) is not an emulator error
        if isinstance(sys.exc_info()[1], (ConnectionResetError, BrokenPipeError)):
            return
        super().handle_error(request, client_address)

    def __init__(self, *args: Any, **kwargs: Any):
        self.reset_sockets: set[socket.socket] = set()
        self._reset_lock = threading.Lock()
        super().__init__(*args, **kwargs)

    def server_bind(self) -> None:
        # HTTPServer.server_bind calls socket.getfqdn(), which can block on reverse DNS.
        socketserver.TCPServer.server_bind(self)
        host, port = self.server_address[:2]
        self.server_name, self.server_port = str(host), port

    def shutdown_request(self, request: Any) -> None:
        with self._reset_lock:
            reset = request in self.reset_sockets
            self.reset_sockets.discard(request)
        if reset:
            # SO_LINGER(1, 0) + close = TCP RST instead of an orderly FIN
            self.close_request(request)
            return
        super().shutdown_request(request)


class _Handler(BaseHTTPRequestHandler):
    emulator: XeroEmulator
    protocol_version = "HTTP/1.1"
    server_version = "XeroEmulator/1.0"
    sys_version = ""

    def log_message(self, format: str, *args: Any) -> None:  # noqa: A002 - silence stderr logging
        pass

    def setup(self) -> None:
        super().setup()
        try:  # headers and body go out in one write anyway; avoid Nagle/delayed-ACK stalls
            self.connection.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        except OSError:
            pass

    def _serve(self) -> None:
        emu = self.emulator
        split = urlsplit(self.path)
        query = {k: v[-1] for k, v in parse_qs(split.query, keep_blank_values=True).items()}
        headers = {k.lower(): v for k, v in self.headers.items()}
        try:
            length = int(self.headers.get("Content-Length") or 0)
        except ValueError:
            length = 0
        body = self.rfile.read(length) if length > 0 else b""
        req = _Request(self.command, split.path, self.path, query, headers, body)
        try:
            resp = emu._handle(req)
        except Exception:  # an emulator bug: answer 500 and keep the traceback for tests
            text = traceback.format_exc()
            with emu._lock:
                emu.server_errors.append(text)
            resp = _json(500, {"Title": "Internal Server Error", "Status": 500, "Detail": "emulator error"})
        if resp.action is not None:
            emu._record(req.method, req.path, 0)
            self.close_connection = True
            if resp.action == "reset":
                try:
                    self.connection.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
                except OSError:
                    pass
                with self.server._reset_lock:  # type: ignore[attr-defined]
                    self.server.reset_sockets.add(self.connection)  # type: ignore[attr-defined]
            elif resp.action == "hang":
                emu._stop.wait(emu.hang_seconds)
            return
        emu._record(req.method, req.path, resp.status)
        self.send_response(resp.status)
        for name, value in resp.headers.items():
            self.send_header(name, value)
        self.send_header("Content-Length", str(len(resp.body)))
        if self.command != "HEAD" and resp.body:
            # one write for status line, headers and body
            self._headers_buffer.append(b"\r\n" + resp.body)  # type: ignore[attr-defined]
            self.flush_headers()
        else:
            self.end_headers()

    do_GET = do_PUT = do_POST = do_PATCH = do_DELETE = do_HEAD = _serve


def serve(host: str = "127.0.0.1", port: int = 0, *, spec_path: str | None = None, **kwargs: Any) -> None:
    """Run an emulator in the foreground until Ctrl-C, printing its URL and the demo credentials.

    ``kwargs`` go to :class:`XeroEmulator`; ``spec_path`` (the official ``xero_accounting.yaml``)
    turns on request validation against the spec.
    """
    if spec_path:
        from connectors.xero.spec_check import make_request_validator

        kwargs["request_validator"] = make_request_validator(spec_path)
    emulator = XeroEmulator(host=host, port=port, **kwargs).start()
    print(f"Xero emulator listening on {emulator.url}")
    print(f"  api_url / identity_url : {emulator.url}")
    print(f"  xero_tenant_id         : {', '.join(emulator.tenant_ids)}")
    print(f"  client_id              : {emulator.client_id}")
    print(f"  client secret          : {emulator.client_secret}   (export XERO_CLIENT_SECRET={emulator.client_secret})")
    print(
        f"  refresh token          : {emulator.initial_refresh_token}   (export XERO_REFRESH_TOKEN={emulator.initial_refresh_token})"
    )
    print(
        f"  control API            : {emulator.url}/_emulator/stats | /_emulator/invoices | POST /_emulator/faults | POST /_emulator/reset"
    )
    print("Press Ctrl-C to stop.", flush=True)
    try:
        while True:
            time.sleep(3600)
    except KeyboardInterrupt:
        print("stopping", file=sys.stderr)
    finally:
        emulator.stop()


__all__ = ["DEFAULT_TAX_RATES", "DEFAULT_TENANT_ID", "FAULT_KINDS", "XeroEmulator", "demo_contacts", "serve"]
