"""A loopback emulator of Zoho Invoice API v3 (and the Zoho accounts token endpoint) on one port.

Behaves like Zoho where the broker depends on it (``shared/billing-apis.md`` § 4,
https://www.zoho.com/invoice/api/v3/, https://www.zoho.com/invoice/api/v3/oauth/,
https://www.zoho.com/invoice/api/v3/errors/):

* ``GET /oauth/v2/auth`` – consents at once and redirects (302) to the loopback ``redirect_uri`` with
  ``code`` and ``state``; ``grant_type=authorization_code`` exchanges the code (single use, PKCE
  checked) and issues a refresh token only with ``access_type=offline`` (as Zoho does).
* ``POST /oauth/v2/token`` – ``grant_type=refresh_token`` with ``client_id``/``client_secret``/
  ``refresh_token`` form fields; answers ``access_token``, ``expires_in`` (``access_token_ttl``),
  ``api_domain``, ``token_type`` and no new refresh token (Zoho refresh tokens do not rotate).
  Refusals are HTTP 200 with ``{"error": "invalid_client"}`` / ``{"error": "invalid_code"}``;
  more than ``token_limit`` grants per refresh token in ``token_window`` seconds -> 400
  ``{"error": "Access Denied", ...}`` (off unless ``token_limit`` is set).
* ``/invoice/v3/...`` needs ``Authorization: Zoho-oauthtoken <token>`` (401 ``code 14`` invalid or
  expired token; 401 ``code 57`` when a ``scope_denied`` path is hit) and the organisation in
  ``X-com-zoho-invoice-organizationid`` or ``?organization_id=`` (400 ``code 6041`` when unknown).
* ``GET /organizations``; ``GET /settings/taxes``; ``GET/POST /contacts``, ``GET /contacts/{id}``;
  ``POST/GET /invoices``, ``GET``/``DELETE /invoices/{id}``, ``POST /invoices/{id}/status/sent``,
  ``POST /invoices/{id}/status/void``, ``POST /invoices/{id}/email``; ``POST/GET /creditnotes``
  (list filters ``creditnote_number``, ``customer_id``, ``reference_number``, ``status``),
  ``GET /creditnotes/{id}``, ``POST /creditnotes/{id}/invoices`` (credit to an invoice).
* Invoice life (https://www.zoho.com/invoice/api/v3/invoices/, /credit-notes/): ``balance = total -
  payment_made - credits_applied``; a payment or credit makes the invoice ``partially_paid``, or
  ``paid`` at balance 0. Only a ``draft`` can be marked sent; a draft cannot be voided (code 1007); an
  invoice with payments or credits applied can be neither voided nor deleted (code 1040; Zoho's
  reference says "Invoices which have payment or credits note applied cannot be deleted" — for void
  the emulator is deliberately as strict: the broker credits such invoices, it never voids them).
  Credit notes: ``creditnote_number`` unique (code 12018), ``open`` while ``balance > 0`` else
  ``closed``; applying credit to a ``draft`` / ``paid`` / ``void`` invoice is refused (codes 12005,
  12006, 12007, from Zoho's credit-note error table), to more than either balance too (code 12008,
  the emulator's). Test hooks: :meth:`ZohoEmulator.record_payment` (the customer pays),
  :meth:`ZohoEmulator.balance` (receivables minus unapplied credit),
  :meth:`ZohoEmulator.plant_invoice` (a document created outside the broker).
* Envelope ``{"code": 0, "message": ..., <object>}``; errors ``{"code": n, "message": ...}``.
  ``invoice_number`` unique per organisation -> 400 ``{"code": 1001, "message": "Invoice Number already exist"}``;
  a custom number without ``ignore_auto_number_generation=true`` while auto-numbering is on -> 400
  code 4; unknown ``customer_id`` / ``tax_id`` -> 400; ``contact_name`` unique -> 400 code 3062.
  (Codes other than 0, 1001, 14, 57 are the emulator's choice.)
* Totals: ``item_total = rate × quantity`` rounded half up to the currency's decimals; tax per tax
  on the sum of its lines' item totals, rounded once (exclusive ``Σ × p / 100``; inclusive
  ``Σ × p / (100 + p)`` contained); ``total = sub_total + tax_total + adjustment``.
* ``GET /invoices`` filters ``last_modified_time`` (invoices changed at or after that time,
  ``YYYY-MM-DDTHH:MM:SS+HHMM``; the exact semantics of Zoho's filter were not retrieved: "at or after" is
  this emulator's assumption) and sorts by ``sort_column`` ``last_modified_time`` / ``created_time``
  (``sort_order`` ``A`` / ``D``); every invoice carries ``created_time`` and ``last_modified_time``, the latter
  changed by every payment, credit, status change and e-mail.
* 100 requests per minute per organisation (``rate_limit_per_minute``) -> 429 with ``Retry-After``,
  ``X-Rate-Limit-Limit``, ``X-Rate-Limit-Remaining`` and ``X-Rate-Limit-Reset``.

Test hooks: :meth:`ZohoEmulator.inject_fault` (``429``, ``503``, ``500``, ``reset``,
``timeout_after_commit``, ``drop_after_commit``; optionally for one method and path glob),
:meth:`ZohoEmulator.expire_access_tokens`, ``refresh_count``, and the control API
(``GET /_emulator/invoices|creditnotes|contacts|emails|stats``, ``POST /_emulator/faults|reset|expire-tokens|payments``
with ``{"invoice_id", "amount"}``).
"""

from __future__ import annotations

import copy
import fnmatch
import secrets
import time
from collections.abc import KeysView, Mapping
from datetime import UTC, date, datetime
from decimal import ROUND_HALF_UP, Decimal
from typing import Any
from urllib.parse import parse_qs, unquote

from connectors.sandbox.emulator import AdminRoute, Emulator, serve_until_interrupted
from connectors.sandbox.faults import Fault
from connectors.sandbox.http import Request, Response, json_response, loads_decimal
from connectors.sandbox.limits import Window
from connectors.sandbox.oauth import TokenHolder, Tokens, authorization_refusal, form_of, redirect_to, secret_ok
from connectors.sandbox.values import decimal_or_none
from connectors.sdk.money import minor_units

DEFAULT_ORG = "10234695"
FAULT_KINDS = ("429", "503", "500", "reset", "timeout_after_commit", "drop_after_commit")
DEFAULT_TAXES: dict[str, Decimal] = {"VAT 23%": Decimal("23"), "VAT 13%": Decimal("13"), "VAT 6%": Decimal("6")}
#: The fields of a credit note in ``GET /creditnotes`` (the list's summary rows)
CREDITNOTE_LIST_KEYS = (
    "creditnote_id",
    "creditnote_number",
    "status",
    "date",
    "customer_id",
    "customer_name",
    "reference_number",
    "currency_code",
    "total",
    "balance",
)
#: Zoho's JSON content type (as its servers spell it)
ZOHO_JSON = "application/json;charset=UTF-8"


class ZohoError(Exception):
    def __init__(self, status: int, code: int, message: str):
        super().__init__(message)
        self.status, self.code, self.message = status, code, message


def _json(status: int, obj: Any, headers: dict[str, str] | None = None) -> Response:
    return json_response(status, obj, headers, content_type=ZOHO_JSON)


def _err(status: int, code: int, message: str, headers: dict[str, str] | None = None) -> Response:
    return _json(status, {"code": code, "message": message}, headers)


def _q(value: Decimal, currency: str) -> Decimal:
    return value.quantize(Decimal(1).scaleb(-minor_units(currency)), rounding=ROUND_HALF_UP)


def _num(value: Any, name: str) -> Decimal:
    number = decimal_or_none(value)
    if number is None:
        raise ZohoError(400, 4, f"Invalid value passed for {name}")
    return number


def _zoho_secret() -> str:
    return f"1000.{secrets.token_hex(16)}.{secrets.token_hex(16)}"


class _ZohoTokens(Tokens):
    """Zoho's token shape (``1000.<hex>.<hex>``); refresh tokens neither rotate nor expire."""

    def new_access(self, now: float | None = None) -> str:
        token = _zoho_secret()
        self.access[token] = (time.monotonic() if now is None else now) + self.access_token_ttl
        return token

    def new_refresh(self) -> str:
        token = _zoho_secret()
        self.refresh[token] = None
        return token


class ZohoEmulator(TokenHolder, Emulator):
    """Local Zoho Invoice on ``host:port`` (``port=0``: a free port). Use :attr:`url` as both
    ``api_url`` and ``accounts_url``.

    Keyword arguments: ``client_id``/``client_secret``/``refresh_token`` (accepted credentials),
    ``organizations`` (``{organization_id: currency}``), ``taxes`` (``{name: percent}`` per
    organisation), ``contacts`` (``{contact_id: {"contact_name", "email"}}`` seeded in every
    organisation), ``rate_limit_per_minute`` (100), ``access_token_ttl`` (3600 s), ``token_limit``
    / ``token_window`` (off / 600 s), ``auto_number`` (True: the organisation auto-numbers invoices),
    ``hang_seconds`` (30), ``scope_denied`` (path globs answered 401 code 57).

    Public attributes: ``calls`` (``(method, path, status)``), ``count_429``, ``refresh_count``
    (token grants served), ``refresh_token_uses``, ``server_errors``, ``emails``.
    """

    name = "zoho-emulator"
    server_version = "ZohoEmulator/1.0"
    fault_kinds = FAULT_KINDS
    http_methods = frozenset({"GET", "POST", "PUT", "DELETE"})

    def __init__(
        self,
        *,
        organizations: Mapping[str, str] | None = None,
        taxes: Mapping[str, Decimal] | None = None,
        contacts: Mapping[str, Mapping[str, Any]] | None = None,
        auto_number: bool = True,
        scope_denied: tuple[str, ...] = (),
        rate_limit_per_minute: int = 100,
        token_limit: int | None = None,
        token_window: float = 600.0,
        access_token_ttl: float = 3600.0,
        client_id: str = "1000.DEMOCLIENT",
        client_secret: str = "demo-zoho-secret",
        refresh_token: str = "1000.demo.refresh",
        host: str = "127.0.0.1",
        port: int = 0,
        hang_seconds: float = 30.0,
    ):
        self._init_sandbox(host, port, hang_seconds=hang_seconds)
        self.client_id, self.client_secret = client_id, client_secret
        self.organizations = dict(organizations or {DEFAULT_ORG: "EUR"})
        self.tax_table = {k: Decimal(v) for k, v in (taxes or DEFAULT_TAXES).items()}
        self.seed_contacts = {k: dict(v) for k, v in (contacts or {}).items()}
        self.rate_limit_per_minute = rate_limit_per_minute
        self.token_limit, self.token_window = token_limit, token_window
        self.auto_number = auto_number
        self.scope_denied = tuple(scope_denied)
        # Zoho refresh tokens do not rotate: one token serves every grant (grace unused)
        self.tokens = _ZohoTokens(refresh_token, access_token_ttl, 0.0, code_prefix="1000.", code_bytes=16)
        #: token grants per refresh token in the last ``token_window`` seconds (survive reset_state())
        self._grants: dict[str, Window] = {}
        self.refresh_count = 0
        self._init_state()

    def _init_state(self) -> None:
        self._taxes: dict[str, dict[str, dict[str, Any]]] = {}
        self._contacts: dict[str, dict[str, dict[str, Any]]] = {}
        self._invoices: dict[str, dict[str, dict[str, Any]]] = {}
        self._creditnotes: dict[str, dict[str, dict[str, Any]]] = {}
        self._seq = 0
        for org in self.organizations:
            self._taxes[org] = {}
            for name, pct in self.tax_table.items():
                tid = self._id()
                self._taxes[org][tid] = {
                    "tax_id": tid,
                    "tax_name": name,
                    "tax_percentage": pct,
                    "tax_type": "tax",
                    "is_editable": True,
                }
            self._contacts[org] = {}
            for cid, fields in self.seed_contacts.items():
                self._contacts[org][cid] = self._contact(cid, fields)
            self._invoices[org] = {}
            self._creditnotes[org] = {}
        self._windows = {org: Window(self.rate_limit_per_minute) for org in self.organizations}
        self._auto_seq: dict[str, int] = dict.fromkeys(self.organizations, 0)
        self._init_records()
        self.emails: list[dict[str, Any]] = []

    def _id(self) -> str:
        self._seq += 1
        return f"4600000{self._seq:06d}"

    @staticmethod
    def _contact(cid: str, fields: Mapping[str, Any]) -> dict[str, Any]:
        return {
            "contact_id": cid,
            "contact_name": fields["contact_name"],
            "company_name": fields.get("company_name", ""),
            "contact_type": "customer",
            "status": "active",
            "email": fields.get("email") or "",
            "currency_code": fields.get("currency_code", "EUR"),
        }

    @property
    def refresh_tokens(self) -> KeysView[str]:
        """The refresh tokens accepted (the initial one, and those of ``access_type=offline`` codes)."""
        return self.tokens.refresh.keys()

    # ------------------------------------------------------------------ test helpers
    def invoices(self, organization_id: str | None = None) -> list[dict[str, Any]]:
        with self._lock:
            orgs = [organization_id] if organization_id else list(self._invoices)
            return [copy.deepcopy(i) for o in orgs for i in self._invoices.get(o, {}).values()]

    def contacts(self, organization_id: str | None = None) -> list[dict[str, Any]]:
        with self._lock:
            orgs = [organization_id] if organization_id else list(self._contacts)
            return [copy.deepcopy(c) for o in orgs for c in self._contacts.get(o, {}).values()]

    def creditnotes(self, organization_id: str | None = None) -> list[dict[str, Any]]:
        """Deep copies of the stored credit notes (of one organisation, or all)."""
        with self._lock:
            orgs = [organization_id] if organization_id else list(self._creditnotes)
            return [copy.deepcopy(c) for o in orgs for c in self._creditnotes.get(o, {}).values()]

    def record_payment(
        self, invoice_id: str, amount: Decimal | None = None, organization_id: str = DEFAULT_ORG
    ) -> None:
        """The customer pays ``amount`` (``None``: the whole balance) on invoice ``invoice_id`` (what
        ``POST /customerpayments`` does). Raises :class:`ValueError` for a draft or void invoice, a
        non-positive amount or more than the balance."""
        with self._lock:
            inv = self._invoices[organization_id][invoice_id]
            pay = inv["balance"] if amount is None else Decimal(amount)
            if inv["status"] in ("draft", "void") or not 0 < pay <= inv["balance"]:
                raise ValueError(
                    f"cannot record {pay} on invoice {invoice_id} ({inv['status']}, balance {inv['balance']})"
                )
            inv["payment_made"] += pay
            self._settle(inv)

    def balance(self, customer_id: str | None = None, organization_id: str = DEFAULT_ORG) -> Decimal:
        """What the customer (or all customers) owes: the ``balance`` of invoices neither draft nor void,
        minus the unapplied ``balance`` of ``open`` credit notes."""
        with self._lock:
            due = sum(
                (
                    i["balance"]
                    for i in self._invoices[organization_id].values()
                    if i["status"] not in ("draft", "void") and customer_id in (None, i["customer_id"])
                ),
                Decimal("0.00"),
            )
            credit = sum(
                (
                    c["balance"]
                    for c in self._creditnotes[organization_id].values()
                    if c["status"] == "open" and customer_id in (None, c["customer_id"])
                ),
                Decimal("0.00"),
            )
            return due - credit

    def plant_invoice(
        self, number: str, customer_id: str, total: Decimal, organization_id: str = DEFAULT_ORG, status: str = "sent"
    ) -> str:
        """An invoice created by someone else (no broker marker): one untaxed line of ``total``; its id."""
        with self._lock:
            body = {
                "customer_id": customer_id,
                "invoice_number": number,
                "line_items": [{"name": "Manual invoice", "rate": Decimal(total), "quantity": 1}],
                "notes": "Thank you for your business.",
            }
            inv = self._new_invoice(organization_id, body, number)
            inv["status"] = status
            return str(inv["invoice_id"])

    def taxes(self, organization_id: str = DEFAULT_ORG) -> list[dict[str, Any]]:
        with self._lock:
            return [copy.deepcopy(t) for t in self._taxes.get(organization_id, {}).values()]

    def tax_id(self, percent: str | Decimal, organization_id: str = DEFAULT_ORG) -> str:
        for tax in self.taxes(organization_id):
            if tax["tax_percentage"] == Decimal(str(percent)):
                return str(tax["tax_id"])
        raise KeyError(percent)

    def inject_fault(self, kind: str, times: int = 1, *, method: str | None = None, path: str | None = None) -> None:
        """The next ``times`` matching ``/invoice/v3`` calls fail with ``kind`` (see the module docstring).

        ``429``/``503``/``500``/``reset`` happen before processing; ``timeout_after_commit`` processes,
        then holds the socket ``hang_seconds``; ``drop_after_commit`` processes, then closes it.
        """
        self._add_fault(Fault(kind, method.upper() if method else None, path), times)

    def _inject_from_admin(self, doc: dict[str, Any]) -> None:
        self.inject_fault(str(doc["kind"]), int(doc.get("times", 1)), method=doc.get("method"), path=doc.get("path"))

    def issued_tokens(self) -> list[str]:
        with self._lock:
            return list(self.tokens.access)

    def stats(self) -> dict[str, Any]:
        with self._lock:
            return {
                **super().stats(),
                "refresh_count": self.refresh_count,
                "invoice_count": sum(len(v) for v in self._invoices.values()),
                "email_count": len(self.emails),
            }

    # ------------------------------------------------------------------ dispatch
    def _internal_error(self) -> Response:
        return _err(500, 9999, "emulator error")

    def _handle(self, req: Request) -> Response:
        path = req.path.rstrip("/") or "/"
        if path.startswith("/_emulator"):
            return self._admin(req, path)
        if path == "/oauth/v2/auth" and req.method == "GET":
            return self._authorize(req)
        if path == "/oauth/v2/token":
            return self._token(req) if req.method == "POST" else _json(405, {"error": "method not allowed"})
        if not path.startswith("/invoice/v3/"):
            return _err(404, 5, "Invalid URL Passed")
        resource = path[len("/invoice/v3") :]
        auth = req.headers.get("authorization", "")
        token = auth[len("Zoho-oauthtoken ") :].strip() if auth.startswith("Zoho-oauthtoken ") else ""
        with self._lock:
            valid = self.tokens.valid(token)
        if not valid:
            return _err(401, 14, "Invalid OAuth access token.")
        if any(fnmatch.fnmatchcase(resource, pattern) for pattern in self.scope_denied):
            return _err(401, 57, "You are not authorized to perform this operation")
        if resource == "/organizations" and req.method == "GET":
            return self._organizations()
        org = req.headers.get("x-com-zoho-invoice-organizationid") or req.query.get("organization_id") or ""
        if org not in self.organizations:
            return _err(400, 6041, f"This user is not associated with the organization ID {org or '(none)'}.")
        with self._lock:
            limited = self._admit(org)
            if limited is not None:
                return limited
            fault = self._take_fault(req.method, resource)
        refused = self._fault_answer(fault)
        if refused is not None:
            return refused
        with self._lock:
            try:
                resp = self._route(req, org, resource)
            except ZohoError as exc:
                resp = _err(exc.status, exc.code, exc.message)
            resp.headers.update(self._limit_headers(org))
        return self._answer_processed(resp, fault)

    def _fault_throttled(self, fault: Fault) -> Response:
        return self._too_many(fault.retry_after or 1)

    def _fault_status(self, status: int) -> Response:
        if status == 500:
            return _err(500, 9999, "Internal error")
        return _err(status, 503, "Service temporarily unavailable")

    def _too_many(self, retry: int) -> Response:
        return _err(
            429,
            45,
            "You have made too many requests. Please try again after some time.",
            {
                "Retry-After": str(retry),
                "X-Rate-Limit-Limit": str(self.rate_limit_per_minute),
                "X-Rate-Limit-Remaining": "0",
                "X-Rate-Limit-Reset": str(retry),
            },
        )

    def _limit_headers(self, org: str) -> dict[str, str]:
        window = self._windows[org]
        return {
            "X-Rate-Limit-Limit": str(self.rate_limit_per_minute),
            "X-Rate-Limit-Remaining": str(max(0, self.rate_limit_per_minute - len(window))),
            "X-Rate-Limit-Reset": str(window.retry_after_seconds() if window else 60),
        }

    def _admit(self, org: str) -> Response | None:
        """100 calls per minute per organisation (``rate_limit_per_minute``)."""
        retry = self._throttle(self._windows[org], self.rate_limit_per_minute)
        return None if retry is None else self._too_many(retry)

    def _organizations(self) -> Response:
        return _json(
            200,
            {
                "code": 0,
                "message": "success",
                "organizations": [
                    {
                        "organization_id": org,
                        "name": f"Demo Organisation {i + 1}",
                        "currency_code": cur,
                        "is_default_org": i == 0,
                    }
                    for i, (org, cur) in enumerate(self.organizations.items())
                ],
            },
        )

    # ------------------------------------------------------------------ accounts
    def _token(self, req: Request) -> Response:
        form = form_of(req.body)
        form.update({k: v for k, v in req.query.items() if k not in form})
        if not secret_ok(self.client_id, self.client_secret, form.get("client_id"), form.get("client_secret", "")):
            return _json(200, {"error": "invalid_client"})
        if form.get("grant_type") == "authorization_code":
            return self._code_grant(form)
        if form.get("grant_type") != "refresh_token":
            return _json(200, {"error": "unsupported_grant_type"})
        presented = form.get("refresh_token", "")
        now = time.monotonic()
        with self._lock:
            self.refresh_token_uses.append(presented)
            if presented not in self.tokens.refresh:
                return _json(200, {"error": "invalid_code"})
            grants = self._grants.setdefault(presented, Window(None))
            grants.limit, grants.span = self.token_limit, self.token_window
            if not grants.admit(now):
                return _json(
                    400,
                    {
                        "error_description": (
                            "You have made too many requests continuously. Please try again after some time."
                        ),
                        "error": "Access Denied",
                        "status": "failure",
                    },
                )
            self.refresh_count += 1
            body = self._grant_body(self.tokens.new_access(now))
        return _json(200, body)

    def _grant_body(self, access: str) -> dict[str, Any]:
        return {
            "access_token": access,
            "api_domain": self.url,
            "token_type": "Bearer",
            "expires_in": int(self.access_token_ttl),
        }

    def _authorize(self, req: Request) -> Response:
        """``GET /oauth/v2/auth``: the user consents at once; 302 to the loopback ``redirect_uri`` with
        ``code``, ``state`` and ``accounts-server``. A refresh token is only issued for ``access_type=offline``."""
        q = req.query
        refusal = authorization_refusal(q, self.client_id)
        if refusal is not None:  # Zoho names a bad request by its redirect_uri
            return _json(400, {"error": "invalid_redirect_uri" if refusal == "invalid_request" else refusal})
        redirect = q["redirect_uri"]
        with self._lock:
            code = self.tokens.issue_code(redirect, q.get("code_challenge"), lifetime=120)
            self.tokens.codes[code]["offline"] = q.get("access_type") == "offline"
        where = {"location": "eu", "accounts-server": self.url}
        return redirect_to(redirect, code=code, state=q.get("state", ""), **where)

    def _code_grant(self, form: dict[str, str]) -> Response:
        """``grant_type=authorization_code``: single-use code (2 minutes), same ``redirect_uri``, PKCE checked."""
        with self._lock:
            entry = self.tokens.codes.get(form.get("code", "")) or {}
            if self.tokens.redeem_code(form) is not None:
                return _json(200, {"error": "invalid_code"})
            body = self._grant_body(self.tokens.new_access())
            if entry.get("offline"):
                body["refresh_token"] = self.tokens.new_refresh()
        return _json(200, body)

    # ------------------------------------------------------------------ API
    def _route(self, req: Request, org: str, resource: str) -> Response:
        parts = [unquote(p) for p in resource.strip("/").split("/")]
        m = req.method
        if parts == ["settings", "taxes"] and m == "GET":
            return _json(
                200, {"code": 0, "message": "success", "taxes": list(copy.deepcopy(list(self._taxes[org].values())))}
            )
        if parts[0] == "contacts":
            if len(parts) == 1 and m == "GET":
                rows = list(self._contacts[org].values())
                if "contact_name" in req.query:
                    rows = [c for c in rows if c["contact_name"].casefold() == req.query["contact_name"].casefold()]
                if "email" in req.query:
                    rows = [c for c in rows if c["email"].casefold() == req.query["email"].casefold()]
                return _json(
                    200,
                    {
                        "code": 0,
                        "message": "success",
                        "contacts": copy.deepcopy(rows),
                        "page_context": {"page": 1, "per_page": 200, "has_more_page": False},
                    },
                )
            if len(parts) == 1 and m == "POST":
                return self._create_contact(org, self._body(req))
            if len(parts) == 2 and m == "GET":
                contact = self._contacts[org].get(parts[1])
                if contact is None:
                    raise ZohoError(404, 1002, "Contact does not exist.")
                return _json(200, {"code": 0, "message": "success", "contact": copy.deepcopy(contact)})
        if parts[0] == "invoices":
            if len(parts) == 1 and m == "POST":
                return self._create_invoice(org, req, self._body(req))
            if len(parts) == 1 and m == "GET":
                return self._list_invoices(org, req.query)
            inv = self._invoices[org].get(parts[1]) if len(parts) >= 2 else None
            if inv is None:
                raise ZohoError(404, 1002, "Invoice does not exist.")
            if len(parts) == 2 and m == "GET":
                return _json(200, {"code": 0, "message": "success", "invoice": copy.deepcopy(inv)})
            if len(parts) == 2 and m == "DELETE":
                self._untouched(inv, "deleted")
                del self._invoices[org][inv["invoice_id"]]
                return _json(200, {"code": 0, "message": "The invoice has been deleted."})
            if parts[2:] == ["status", "void"] and m == "POST":
                if inv["status"] == "draft":
                    raise ZohoError(400, 1007, "Draft invoices cannot be voided; delete them instead.")
                if inv["status"] == "void":
                    raise ZohoError(400, 1007, "The invoice is already void.")
                self._untouched(inv, "voided")
                inv["status"], inv["balance"] = "void", Decimal(0)
                _touch(inv)
                return _json(200, {"code": 0, "message": "Invoice status has been changed to Void."})
            if parts[2:] == ["status", "sent"] and m == "POST":
                if inv["status"] != "draft":
                    raise ZohoError(400, 1007, "Only draft invoices can be marked as sent.")
                inv["status"] = "sent"
                _touch(inv)
                return _json(200, {"code": 0, "message": "Invoice status has been changed to Sent."})
            if parts[2:] == ["email"] and m == "POST":
                body = self._body(req)
                to = body.get("to_mail_ids") if isinstance(body, dict) else None
                if not isinstance(to, list) or not to or not all(isinstance(t, str) and "@" in t for t in to):
                    raise ZohoError(400, 4, "Invalid value passed for to_mail_ids")
                self.emails.append(
                    {
                        "invoice_id": inv["invoice_id"],
                        "invoice_number": inv["invoice_number"],
                        "to": list(to),
                        "subject": body.get("subject"),
                    }
                )
                inv["is_emailed"] = True
                if inv["status"] == "draft":
                    inv["status"] = "sent"
                _touch(inv)
                return _json(200, {"code": 0, "message": "Your invoice has been sent."})
        if parts[0] == "creditnotes":
            return self._creditnote_route(req, org, parts[1:])
        raise ZohoError(404, 5, "Invalid URL Passed")

    @staticmethod
    def _untouched(inv: dict[str, Any], what: str) -> None:
        """Refuse to void or delete an invoice that has payments or credits applied (code 1040)."""
        if inv["payment_made"] or inv["credits_applied"]:
            raise ZohoError(
                400, 1040, f"Invoices which have payments or credits applied cannot be {what} ({inv['status']})."
            )

    @staticmethod
    def _settle(inv: dict[str, Any]) -> None:
        """``balance`` and status after a payment or credit: ``paid`` at 0, else ``partially_paid``."""
        inv["balance"] = inv["total"] - inv["payment_made"] - inv["credits_applied"]
        inv["status"] = "paid" if inv["balance"] <= 0 else "partially_paid"
        _touch(inv)

    # ------------------------------------------------------------------ credit notes
    def _creditnote_route(self, req: Request, org: str, parts: list[str]) -> Response:
        m = req.method
        if not parts and m == "POST":
            return self._create_creditnote(org, req, self._body(req))
        if not parts and m == "GET":
            rows = list(self._creditnotes[org].values())
            for name in ("creditnote_number", "customer_id", "reference_number", "status"):
                if name in req.query:
                    rows = [c for c in rows if str(c[name]) == req.query[name]]
            keys = CREDITNOTE_LIST_KEYS
            listed = [{k: copy.deepcopy(c[k]) for k in keys} for c in rows]
            page = {"page": 1, "per_page": 200, "has_more_page": False}
            return _json(200, {"code": 0, "message": "success", "creditnotes": listed, "page_context": page})
        note = self._creditnotes[org].get(parts[0]) if parts else None
        if note is None:
            raise ZohoError(404, 1002, "Credit Note does not exists")
        if len(parts) == 1 and m == "GET":
            return _json(200, {"code": 0, "message": "success", "creditnote": copy.deepcopy(note)})
        if parts[1:] == ["invoices"] and m == "POST":
            return self._credit_invoices(org, note, self._body(req))
        raise ZohoError(404, 5, "Invalid URL Passed")

    def _create_creditnote(self, org: str, req: Request, body: Any) -> Response:
        if not isinstance(body, dict):
            raise ZohoError(400, 2, "Invalid JSON input")
        customer = self._contacts[org].get(str(body.get("customer_id") or ""))
        if customer is None:
            raise ZohoError(400, 1002, "Contact does not exist.")
        invoice_id = req.query.get("invoice_id")
        if invoice_id is not None:
            inv = self._invoices[org].get(invoice_id)
            if inv is None:
                raise ZohoError(400, 1002, "Invoice does not exist.")
            if inv["customer_id"] != customer["contact_id"]:
                raise ZohoError(400, 4, "The invoice belongs to another customer.")
        number = body.get("creditnote_number")
        if number is not None:
            if not isinstance(number, str) or not number.strip() or len(number) > 100:
                raise ZohoError(400, 4, "Invalid value passed for creditnote_number")
            if self.auto_number and req.query.get("ignore_auto_number_generation", "false").lower() != "true":
                raise ZohoError(400, 4, "Invalid value passed for creditnote_number: auto-numbering is enabled")
            if any(c["creditnote_number"] == number for c in self._creditnotes[org].values()):
                raise ZohoError(400, 12018, "The specified Credit Note Number already exists")
        else:
            number = f"CN-{len(self._creditnotes[org]) + 1:05d}"
        priced = self._priced(org, body, customer.get("currency_code") or self.organizations[org])
        cn_id = self._id()
        note = {
            "creditnote_id": cn_id,
            "creditnote_number": number,
            "status": "open" if priced["total"] > 0 else "closed",
            "date": body.get("date") or date.today().isoformat(),
            "customer_id": customer["contact_id"],
            "customer_name": customer["contact_name"],
            "reference_number": str(body.get("reference_number") or ""),
            "invoice_id": invoice_id or "",
            "notes": body.get("notes", ""),
            **priced,
            "balance": priced["total"],
            "invoices_credited": [],
        }
        self._creditnotes[org][cn_id] = note
        return _json(
            201, {"code": 0, "message": "The credit note has been created.", "creditnote": copy.deepcopy(note)}
        )

    def _credit_invoices(self, org: str, note: dict[str, Any], body: Any) -> Response:
        rows = body.get("invoices") if isinstance(body, dict) else None
        if not isinstance(rows, list) or not rows:
            raise ZohoError(400, 4, "Invalid value passed for invoices")
        if note["status"] != "open":
            raise ZohoError(400, 12003, "Credit notes that are in closed status cannot be applied to invoices")
        for row in rows:
            inv = self._invoices[org].get(str((row or {}).get("invoice_id") or ""))
            if inv is None:
                raise ZohoError(400, 1002, "Invoice does not exist.")
            refused = {"draft": 12005, "paid": 12006, "void": 12007}.get(inv["status"])
            if refused is not None:
                raise ZohoError(400, refused, f"Credits cannot be applied to invoices in the {inv['status']} status")
            applied = _num(row.get("amount_applied"), "amount_applied")
            if not 0 < applied <= min(inv["balance"], note["balance"]):
                raise ZohoError(400, 12008, "The amount applied exceeds the invoice or credit note balance.")
            if inv["customer_id"] != note["customer_id"]:
                raise ZohoError(400, 4, "The invoice belongs to another customer.")
            inv["credits_applied"] += applied
            self._settle(inv)
            note["balance"] -= applied
            note["invoices_credited"].append({"invoice_id": inv["invoice_id"], "amount_applied": applied})
            if note["balance"] <= 0:
                note["status"] = "closed"
        return _json(200, {"code": 0, "message": "Credits have been applied to the invoice(s)."})

    @staticmethod
    def _body(req: Request) -> Any:
        if not req.body:
            return {}
        try:
            if "json" in req.headers.get("content-type", "") or req.body.lstrip()[:1] in (b"{", b"["):
                return loads_decimal(req.body)
            form = {k: v[-1] for k, v in parse_qs(req.body.decode("utf-8"), keep_blank_values=True).items()}
            return loads_decimal(form.get("JSONString", "{}"))
        except (ValueError, UnicodeDecodeError):
            raise ZohoError(400, 2, "Invalid JSON input") from None

    def _create_contact(self, org: str, body: Any) -> Response:
        if (
            not isinstance(body, dict)
            or not isinstance(body.get("contact_name"), str)
            or not body["contact_name"].strip()
        ):
            raise ZohoError(400, 4, "Invalid value passed for contact_name")
        name = body["contact_name"].strip()
        if len(name) > 200:
            raise ZohoError(400, 4, "contact_name must be at most 200 characters")
        if any(c["contact_name"].casefold() == name.casefold() for c in self._contacts[org].values()):
            raise ZohoError(400, 3062, f'The customer "{name}" already exists. Please specify a different name.')
        email = ""
        for person in body.get("contact_persons") or []:
            if isinstance(person, dict) and person.get("email"):
                email = str(person["email"])
                break
        cid = self._id()
        self._contacts[org][cid] = self._contact(
            cid, {"contact_name": name, "email": email, "currency_code": self.organizations[org]}
        )
        return _json(
            201,
            {"code": 0, "message": "The contact has been added.", "contact": copy.deepcopy(self._contacts[org][cid])},
        )

    def _create_invoice(self, org: str, req: Request, body: Any) -> Response:
        if not isinstance(body, dict):
            raise ZohoError(400, 2, "Invalid JSON input")
        customer = self._contacts[org].get(str(body.get("customer_id") or ""))
        if customer is None:
            raise ZohoError(
                400,
                1002,
                "Contact does not exist." if body.get("customer_id") else "Invalid value passed for customer_id",
            )
        number = body.get("invoice_number")
        ignore_auto = req.query.get("ignore_auto_number_generation", "false").lower() == "true"
        if number is not None:
            if not isinstance(number, str) or not number.strip():
                raise ZohoError(400, 4, "Invalid value passed for invoice_number")
            if len(number) > 100:
                raise ZohoError(400, 4, "invoice_number must be at most 100 characters")
            if self.auto_number and not ignore_auto:
                raise ZohoError(
                    400,
                    4,
                    "Invalid value passed for invoice_number: auto-numbering is enabled for invoices; pass "
                    "ignore_auto_number_generation=true to use your own number",
                )
            if any(i["invoice_number"] == number for i in self._invoices[org].values()):
                raise ZohoError(400, 1001, "Invoice Number already exist")
        else:
            self._auto_seq[org] += 1
            number = f"INV-{self._auto_seq[org]:06d}"
        reference = body.get("reference_number") or ""
        if len(str(reference)) > 50:
            raise ZohoError(400, 4, "reference_number must be at most 50 characters")
        for name in ("date", "due_date"):
            if body.get(name) is not None:
                try:
                    date.fromisoformat(str(body[name]))
                except ValueError:
                    raise ZohoError(400, 4, f"Invalid value passed for {name}") from None
        for name, limit in (("notes", 5000), ("terms", 10000)):
            if len(str(body.get(name) or "")) > limit:
                raise ZohoError(400, 4, f"{name} must be at most {limit} characters")
        inv = self._new_invoice(org, body, number, reference=reference)
        inv_id, customer = inv["invoice_id"], self._contacts[org][inv["customer_id"]]
        if req.query.get("send", "false").lower() == "true":
            if not customer.get("email"):
                raise ZohoError(400, 4, "The customer has no email address")
            self.emails.append(
                {"invoice_id": inv_id, "invoice_number": number, "to": [customer["email"]], "subject": None}
            )
            inv["status"], inv["is_emailed"] = "sent", True
        return _json(201, {"code": 0, "message": "The invoice has been created.", "invoice": copy.deepcopy(inv)})

    def _new_invoice(self, org: str, body: dict[str, Any], number: str, *, reference: str = "") -> dict[str, Any]:
        """Price and store a validated create body as a ``draft``."""
        customer = self._contacts[org][str(body["customer_id"])]
        currency = customer.get("currency_code") or self.organizations[org]
        priced = self._priced(org, body, currency)
        inv_id = self._id()
        inv = {
            "invoice_id": inv_id,
            "invoice_number": number,
            "status": "draft",
            "date": body.get("date") or date.today().isoformat(),
            "due_date": body.get("due_date") or body.get("date") or date.today().isoformat(),
            "customer_id": customer["contact_id"],
            "customer_name": customer["contact_name"],
            "reference_number": reference,
            **priced,
            "payment_made": _q(Decimal(0), currency),
            "credits_applied": _q(Decimal(0), currency),
            "balance": priced["total"],
            "is_emailed": False,
            "notes": body.get("notes", ""),
            "terms": body.get("terms", ""),
            "created_time": _zoho_now(),
            "last_modified_time": _zoho_now(),
        }
        self._invoices[org][inv_id] = inv
        return inv

    def _priced(self, org: str, body: dict[str, Any], currency: str) -> dict[str, Any]:
        """Zoho's arithmetic on a body's ``line_items`` / ``is_inclusive_tax`` / ``adjustment`` (module docstring):
        ``currency_code``, ``is_inclusive_tax``, ``line_items``, ``sub_total``, ``tax_total``, ``taxes``,
        ``adjustment``, ``adjustment_description``, ``total``. Raises :class:`ZohoError` for a bad line."""
        inclusive = bool(body.get("is_inclusive_tax", False))
        raw_lines = body.get("line_items")
        if not isinstance(raw_lines, list) or not raw_lines:
            raise ZohoError(400, 4, "Invalid value passed for line_items")
        lines: list[dict[str, Any]] = []
        groups: dict[str, list[Any]] = {}
        gross = Decimal(0)
        for n, raw in enumerate(raw_lines, start=1):
            if not isinstance(raw, dict) or not (raw.get("name") or raw.get("item_id")):
                raise ZohoError(400, 4, f"Line {n}: an item_id or name is required")
            if len(str(raw.get("name") or "")) > 100:
                raise ZohoError(400, 4, f"Line {n}: name must be at most 100 characters")
            if len(str(raw.get("description") or "")) > 2000:
                raise ZohoError(400, 4, f"Line {n}: description must be at most 2000 characters")
            rate = _num(raw.get("rate", 0), "rate")
            quantity = _num(raw.get("quantity", 1), "quantity")
            amount = _q(rate * quantity, currency)
            tax = None
            if raw.get("tax_id"):
                tax = self._taxes[org].get(str(raw["tax_id"]))
                if tax is None:
                    raise ZohoError(400, 1008, f"Line {n}: the tax {raw['tax_id']} does not exist.")
                groups.setdefault(tax["tax_id"], [tax, Decimal(0)])[1] += amount
            gross += amount
            lines.append(
                {
                    "line_item_id": self._id(),
                    "name": raw.get("name"),
                    "description": raw.get("description", ""),
                    "rate": rate,
                    "quantity": quantity,
                    "unit": raw.get("unit", ""),
                    "item_order": raw.get("item_order", n),
                    "tax_id": tax["tax_id"] if tax else "",
                    "tax_name": tax["tax_name"] if tax else "",
                    "tax_percentage": tax["tax_percentage"] if tax else Decimal(0),
                    "item_total": amount,
                }
            )
        taxes, tax_total = [], Decimal(0)
        for tax, base in groups.values():
            pct = tax["tax_percentage"]
            amount = _q(base * pct / (Decimal(100) + pct) if inclusive else base * pct / Decimal(100), currency)
            tax_total += amount
            taxes.append({"tax_name": tax["tax_name"], "tax_amount": amount})
        adjustment = _num(body.get("adjustment", 0), "adjustment")
        return {
            "currency_code": currency,
            "is_inclusive_tax": inclusive,
            "line_items": lines,
            "sub_total": _q(gross - tax_total if inclusive else gross, currency),
            "tax_total": _q(tax_total, currency),
            "taxes": taxes,
            "adjustment": _q(adjustment, currency),
            "adjustment_description": body.get("adjustment_description", ""),
            "total": _q(gross + adjustment if inclusive else gross + tax_total + adjustment, currency),
        }

    def _list_invoices(self, org: str, query: dict[str, str]) -> Response:
        rows = list(self._invoices[org].values())
        for name in ("invoice_number", "reference_number", "customer_id", "status"):
            if name in query:
                rows = [i for i in rows if str(i[name]) == query[name]]
        if "last_modified_time" in query:
            since = _zoho_time(query["last_modified_time"])
            rows = [i for i in rows if _zoho_time(i["last_modified_time"]) >= since]
        if query.get("sort_column") in ("last_modified_time", "created_time"):
            column = query["sort_column"]
            rows.sort(key=lambda i: (_zoho_time(i[column]), i["invoice_id"]), reverse=query.get("sort_order") == "D")
        if "invoice_number_startswith" in query:
            rows = [i for i in rows if i["invoice_number"].startswith(query["invoice_number_startswith"])]
        try:
            page, per_page = max(1, int(query.get("page", "1"))), max(1, min(200, int(query.get("per_page", "200"))))
        except ValueError:
            raise ZohoError(400, 4, "Invalid value passed for page") from None
        chunk = rows[(page - 1) * per_page : page * per_page]
        keys = (
            "invoice_id",
            "invoice_number",
            "status",
            "date",
            "due_date",
            "customer_id",
            "customer_name",
            "currency_code",
            "reference_number",
            "total",
            "balance",
            "is_emailed",
            "created_time",
            "last_modified_time",
        )
        return _json(
            200,
            {
                "code": 0,
                "message": "success",
                "invoices": [{k: copy.deepcopy(i[k]) for k in keys} for i in chunk],
                "page_context": {"page": page, "per_page": per_page, "has_more_page": len(rows) > page * per_page},
            },
        )

    # ------------------------------------------------------------------ control API
    def _admin_routes(self) -> dict[tuple[str, str], AdminRoute]:
        return {
            **super()._admin_routes(),
            ("GET", "/_emulator/invoices"): lambda _req: _json(200, self.invoices()),
            ("GET", "/_emulator/creditnotes"): lambda _req: _json(200, self.creditnotes()),
            ("POST", "/_emulator/payments"): self._admin_payment,
            ("GET", "/_emulator/contacts"): lambda _req: _json(200, self.contacts()),
            ("GET", "/_emulator/emails"): lambda _req: _json(200, self._emails()),
        }

    def _admin_payment(self, req: Request) -> Response:
        """``POST /_emulator/payments`` ``{"invoice_id", "amount"?, "organization_id"?}``: :meth:`record_payment`."""
        doc = loads_decimal(req.body or b"{}")
        try:
            self.record_payment(
                str(doc["invoice_id"]), doc.get("amount"), str(doc.get("organization_id") or DEFAULT_ORG)
            )
        except (KeyError, ValueError) as exc:
            return _json(400, {"error": str(exc)})
        return _json(200, {"recorded": True})

    def _emails(self) -> list[dict[str, Any]]:
        with self._lock:
            return list(self.emails)


def _zoho_now() -> str:
    """Zoho's time stamps: ``YYYY-MM-DDTHH:MM:SS+HHMM`` (the organisation's offset; here UTC)."""
    return datetime.now(UTC).strftime("%Y-%m-%dT%H:%M:%S%z")


def _zoho_time(text: str) -> datetime:
    """A Zoho time stamp (or a ``last_modified_time`` filter value) as an aware datetime; 400 code 4 if unreadable."""
    try:
        return datetime.strptime(text, "%Y-%m-%dT%H:%M:%S%z")
    except ValueError:
        raise ZohoError(400, 4, f"Invalid value passed for last_modified_time: {text!r}") from None


def _touch(inv: dict[str, Any]) -> None:
    """The invoice changed now: its ``last_modified_time``."""
    inv["last_modified_time"] = _zoho_now()


def serve(host: str = "127.0.0.1", port: int = 0, **kwargs: Any) -> None:
    """Run an emulator in the foreground until Ctrl-C, printing its URL and demo credentials."""
    emulator = ZohoEmulator(host=host, port=port, **kwargs).start()
    organizations = ", ".join(emulator.organizations)
    listening = f"Zoho Invoice emulator listening on {emulator.url} (api_url and accounts_url)"
    serve_until_interrupted(
        emulator, [listening, f"  organization_id: {organizations}   client_id: {emulator.client_id}"]
    )


__all__ = ["DEFAULT_ORG", "DEFAULT_TAXES", "FAULT_KINDS", "ZohoEmulator", "serve"]
