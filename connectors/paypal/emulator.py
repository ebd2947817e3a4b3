"""A loopback emulator of PayPal's REST OAuth token endpoint and Invoicing v2 API on one port.

Behaves like the real service where the broker depends on it (sources: the official spec
``invoicing_v2.json`` — paths, schemas, the ``invoices.create-400`` / ``invoices.cancel-422`` issue
lists and the ``invoice_draft`` example — plus ``billing-apis.md`` §9, PayPal's Invoicing
"errors"/"troubleshooting" guides and the REST rate-limiting guideline):

* ``POST /v1/oauth2/token`` – client credentials with HTTP Basic ``client_id:secret`` and
  ``grant_type=client_credentials``; answers ``{"scope", "access_token", "token_type": "Bearer",
  "app_id", "expires_in", "nonce"}``. 401 ``{"error": "invalid_client"}`` for bad credentials, 400
  ``unsupported_grant_type``. Token requests have their own per-minute limit (PayPal rate-limits apps
  that fetch a token per call): 429.
* ``POST /v2/invoicing/invoices`` (draft; 201 with the ``self`` link, or the whole invoice with
  ``Prefer: return=representation``), ``GET /v2/invoicing/invoices`` (list), ``GET``/``DELETE
  /v2/invoicing/invoices/{id}``, ``POST .../{id}/send`` (200 ``payer-view`` link, or 202 and
  ``SCHEDULED`` for a future ``invoice_date``), ``POST .../{id}/cancel`` (a ``notification`` body, as the
  spec requires; the payer is told when ``send_to_recipient``), ``POST .../{id}/payments`` (record an
  external payment, spec ``invoices.payments``: ``PARTIALLY_PAID`` until nothing is due, then ``PAID``;
  ``due_amount`` and ``payments.paid_amount`` follow), ``POST /v2/invoicing/search-invoices``,
  ``POST /v2/invoicing/generate-next-invoice-number``.
* Lifecycle rules of the spec: ``DELETE`` only for ``DRAFT`` / ``SCHEDULED`` (422
  ``CANNOT_DELETE_INVOICE`` otherwise, the issue name is the emulator's), ``cancel`` only for a sent,
  unpaid invoice (the spec's ``CANNOT_CANCEL_*`` / ``INVOICE_CANCELED_ALREADY`` issues), payments only
  on ``SENT`` / ``UNPAID`` / ``PARTIALLY_PAID`` invoices (``CANNOT_PROCESS_PAYMENTS``) and never above
  what is due (``PAYMENT_AMOUNT_GREATER_THAN_AMOUNT_DUE``). PayPal Invoicing has no credit notes.
* Bearer token required (401 ``AUTHENTICATION_FAILURE``), expired after ``access_token_ttl``;
  scopes enforced (403 ``NOT_AUTHORIZED`` / ``PERMISSION_DENIED``): reads need
  ``https://uri.paypal.com/services/invoicing`` or ``.../invoices/read`` or ``.../readwrite``, writes
  the first or the last.
* Validation like PayPal's (400 ``INVALID_REQUEST`` listing every problem in ``details`` with
  ``field`` (JSON pointer), ``value``, ``location``, ``issue``, ``description``): missing required
  fields (``MISSING_REQUIRED_PARAMETER``), lengths (``INVALID_STRING_MAX_LENGTH`` with the spec's own
  descriptions, e.g. "Invoice number length should be less than 25 characters." — 25, not the schema's
  127), number syntax/range (``INVALID_PARAMETER_SYNTAX``), more decimals than the currency has
  (``DECIMAL_PRECISION``), more than 100 items (``INVALID_ARRAY_MAX_ITEMS``). Business rules -> 422
  ``UNPROCESSABLE_ENTITY``: ``DUPLICATE_INVOICE_NUMBER`` (numbers unique per account, case-insensitive,
  including cancelled invoices; a deleted draft frees its number), ``USER_NOT_FOUND`` (invoicer e-mail
  not the account's), ``CURRENCY_NOT_SUPPORTED``, ``CURRENCY_MISMATCH``, one rate per tax name
  (``TAX_NAME_RATE_MISMATCH``, legacy error 570048), a negative total (``NEGATIVE_INVOICE_AMOUNT``,
  legacy 570049), ``INVOICE_ALREADY_SENT``, the spec's ``CANNOT_CANCEL_*`` issues, and a ``send`` with
  ``send_to_recipient`` true (the spec's default) of an invoice whose recipients have no
  ``billing_info.email_address`` (``MISSING_RECIPIENT_EMAIL``; the invoice stays a ``DRAFT``: PayPal
  answers 422 there, and ``send_to_recipient: false`` marks it sent for sharing by link, spec
  ``invoices.send``). Issue names not in PayPal's material (the tax-name, negative-total, due-date and
  missing-recipient-e-mail ones) are the emulator's choice.
* **Totals as PayPal computes them** (the spec's ``invoice_draft`` example is reproduced exactly by
  :func:`compute_amounts`): item amount ``round(quantity × unit_amount)``; item discount = its
  ``amount`` or ``round(amount × percent / 100)``; an invoice-level discount (percent or amount) is
  spread over the items for tax; with ``tax_calculated_after_discount`` (default true) tax is on the
  discounted amount; tax per item ``round(taxable × percent / 100)`` (``tax_inclusive``:
  ``× percent / (100 + percent)``); shipping taxed the same way; ``tax_total`` = sum of the rounded
  taxes; every rounding half-up to the currency's decimals (JPY 0). ``tax.amount`` sent by a client is
  read-only and ignored; a sent ``amount.value`` that differs from the computed total is rejected.
* No idempotency key: ``PayPal-Request-Id`` is not part of the Invoicing v2 spec and is ignored, so a
  repeated create is a new draft unless its number is taken.
* Search: ``invoice_number``, ``reference``, ``memo``, ``recipient_business_name`` match
  case-insensitive **substrings** (PayPal documents no exact-match semantics; clients must filter),
  ``recipient_email``/``currency_code`` exact, ``status`` list, amount and date ranges; newest first;
  ``page``/``page_size`` (1–1000 / 1–100), ``total_required``. ``search_lag_seconds`` delays new
  invoices' visibility in search (eventual consistency; 0 by default).
* Rate limit (PayPal publishes none): sliding 60-second window of ``rate_limit_per_minute`` Invoicing
  calls per account -> 429 ``RATE_LIMIT_REACHED`` with ``Retry-After``.

Test hooks: ``request_validator`` (see :mod:`connectors.paypal.spec`), :meth:`inject_fault`,
:meth:`expire_access_tokens`, :meth:`PayPalEmulator.record_payment` (the payer pays),
:meth:`PayPalEmulator.balance` (what customers owe), :meth:`PayPalEmulator.plant_invoice` (an invoice
made outside the broker), ``enforce_unique_numbers=False`` (accept a taken number),
``on_step(operation, invoice)`` (called after each write is stored and before its answer is
written: crash tests kill a worker there), and the control API::

    GET  /_emulator/invoices   -> [invoice, ...]
    GET  /_emulator/emails     -> [{"invoice_id", "invoice_number", "to", "subject", "note"}, ...]
    GET  /_emulator/stats      -> {"calls", "call_count", "count_429", "validation_failures",
                                   "server_errors", "invoice_count", "token_requests", "pending_faults"}
    POST /_emulator/faults     {"kind": "503", "times": 3, "after": 0, "on": "create"}
    POST /_emulator/reset
    POST /_emulator/expire-tokens
    POST /_emulator/webhooks   {"url", "webhook_id"}   (where webhook events go, the webhook's id)
    GET  /_emulator/webhooks   -> {"deliveries": [[event type, status, attempt], ...], "sent": n}
    POST /_emulator/webhooks/redeliver {"index": -1}   (the same event again as a new transmission)

Webhooks (https://developer.paypal.com/docs/invoicing/webhooks, https://developer.paypal.com/api/rest/webhooks/rest,
spec ``notifications_webhooks_v1.json``): with a ``webhook_url``, a payment (``POST .../payments`` or
:meth:`PayPalEmulator.record_payment`) sends ``INVOICING.INVOICE.PAID`` ("an invoice is paid, partially paid,
or payment is made and is pending") and a cancel ``INVOICING.INVOICE.CANCELLED``: ``{"id": "WH-…",
"event_version", "create_time", "resource_type": "invoices", "event_type", "summary", "resource": <the
invoice>}``. Each attempt is a new transmission with ``PAYPAL-TRANSMISSION-ID`` / ``-TIME`` / ``-SIG``,
``PAYPAL-CERT-URL`` and ``PAYPAL-AUTH-ALGO: SHA256withRSA``. The emulator does not sign with RSA: its
``-SIG`` is Base64 of HMAC-SHA256(a key only it knows, ``"<transmission id>|<time>|<webhook id>|<CRC32 of
the body>"``, PayPal's signed string), and ``POST /v1/notifications/verify-webhook-signature`` (Bearer
token) answers ``{"verification_status": "SUCCESS"}`` only for a transmission it really sent, with the same
headers, the configured ``webhook_id`` and the same event; ``FAILURE`` otherwise (400 ``INVALID_REQUEST``
when a required field is missing).
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
import string
import sys
import time
import uuid
import zlib
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from datetime import UTC, date, datetime, timedelta
from decimal import ROUND_HALF_UP, Decimal, InvalidOperation
from typing import Any
from urllib.parse import unquote

from connectors.sandbox import Emulator, FaultQueue, Window
from connectors.sandbox.emulator import AdminRoute, RequestValidator, StepHook, serve_until_interrupted
from connectors.sandbox.faults import Fault
from connectors.sandbox.http import Request, Response
from connectors.sandbox.oauth import client_credentials, form_of, secret_ok
from connectors.sandbox.values import json_or_none
from connectors.sandbox.webhooks import WebhookSender

#: The demo webhook's id (PayPal shows it on the app's Webhooks page; pattern ``^[a-zA-Z0-9]+$``).
DEFAULT_WEBHOOK_ID = "1JE4291016473214C"
#: PayPal's verification endpoint (spec ``verify-webhook-signature.post``).
VERIFY_PATH = "/v1/notifications/verify-webhook-signature"
#: The fields of a verification request (spec ``verify_webhook_signature``; all required).
VERIFY_FIELDS = (
    "auth_algo",
    "cert_url",
    "transmission_id",
    "transmission_sig",
    "transmission_time",
    "webhook_id",
    "webhook_event",
)
SCOPE_INVOICING = "https://uri.paypal.com/services/invoicing"
SCOPE_READ = "https://uri.paypal.com/services/invoicing/invoices/read"
SCOPE_READWRITE = "https://uri.paypal.com/services/invoicing/invoices/readwrite"
DEFAULT_SCOPES: tuple[str, ...] = (
    SCOPE_INVOICING,
    "https://uri.paypal.com/services/payments/payment/authcapture",
    "https://uri.paypal.com/services/reporting/search/read",
    "openid",
)
FAULT_KINDS = ("503", "500", "429", "reset", "timeout_after_commit", "drop_after_commit", "stale_search")
#: Currencies PayPal accepts (REST "Currency codes" reference) with their decimals.
CURRENCIES: dict[str, int] = {
    "AUD": 2,
    "BRL": 2,
    "CAD": 2,
    "CNY": 2,
    "CZK": 2,
    "DKK": 2,
    "EUR": 2,
    "HKD": 2,
    "HUF": 0,
    "ILS": 2,
    "JPY": 0,
    "MYR": 2,
    "MXN": 2,
    "TWD": 0,
    "NZD": 2,
    "NOK": 2,
    "PHP": 2,
    "PLN": 2,
    "GBP": 2,
    "SGD": 2,
    "SEK": 2,
    "CHF": 2,
    "THB": 2,
    "USD": 2,
}
TERM_DAYS = {"NET_10": 10, "NET_15": 15, "NET_30": 30, "NET_45": 45, "NET_60": 60, "NET_90": 90}
TERM_TYPES = frozenset({"DUE_ON_RECEIPT", "DUE_ON_DATE_SPECIFIED", "NO_DUE_DATE", *TERM_DAYS})
STATUSES = frozenset(
    {
        "DRAFT",
        "SENT",
        "SCHEDULED",
        "PAID",
        "MARKED_AS_PAID",
        "CANCELLED",
        "REFUNDED",
        "PARTIALLY_PAID",
        "PARTIALLY_REFUNDED",
        "MARKED_AS_REFUNDED",
        "UNPAID",
        "PAYMENT_PENDING",
    }
)
UNITS = frozenset({"QUANTITY", "HOURS", "AMOUNT"})
_NUMBER = re.compile(r"^((-?[0-9]+)|(-?([0-9]+)?[.][0-9]+))$")
_DATE = re.compile(r"^[0-9]{4}-(0[1-9]|1[0-2])-(0[1-9]|[1-2][0-9]|3[0-1])$")
_EMAIL = re.compile(r"^.+@[^\"\-].+$")
_LIMIT = Decimal("1000000")
MESSAGES = {
    "INVALID_REQUEST": "Request is not well-formed, syntactically incorrect, or violates schema.",
    "AUTHENTICATION_FAILURE": (
        "Authentication failed due to missing authorization header, or invalid authentication credentials."
    ),
    "NOT_AUTHORIZED": "Authorization failed due to insufficient permissions.",
    "RESOURCE_NOT_FOUND": "The specified resource does not exist.",
    "UNPROCESSABLE_ENTITY": (
        "The requested action could not be performed, semantically incorrect, or failed business validation."
    ),
    "RATE_LIMIT_REACHED": "Too many requests. Blocked due to rate limiting.",
    "INTERNAL_SERVER_ERROR": "An internal server error occurred.",
    "SERVICE_UNAVAILABLE": "Service Unavailable.",
    "METHOD_NOT_SUPPORTED": "The server does not implement the requested HTTP method.",
}
#: Statuses whose ``due_amount`` customers owe (:meth:`PayPalEmulator.balance`).
OPEN_STATUSES = frozenset({"SENT", "UNPAID", "PARTIALLY_PAID"})
PAYMENT_METHODS = frozenset(
    {"BANK_TRANSFER", "CASH", "CHECK", "CREDIT_CARD", "DEBIT_CARD", "PAYPAL", "WIRE_TRANSFER", "OTHER"}
)
#: Operation names for targeted faults, by handler method.
ROUTE_NAMES_BY_HANDLER = {
    "_create": "create",
    "_send": "send",
    "_search": "search",
    "_get": "get",
    "_list": "list",
    "_delete": "delete",
    "_cancel": "cancel",
    "_payments": "payments",
    "_next_number": "next_number",
}
ROUTE_NAMES = tuple(ROUTE_NAMES_BY_HANDLER.values())
STATUS_OF = {
    "INVALID_REQUEST": 400,
    "AUTHENTICATION_FAILURE": 401,
    "NOT_AUTHORIZED": 403,
    "RESOURCE_NOT_FOUND": 404,
    "METHOD_NOT_SUPPORTED": 405,
    "UNPROCESSABLE_ENTITY": 422,
    "RATE_LIMIT_REACHED": 429,
    "INTERNAL_SERVER_ERROR": 500,
    "SERVICE_UNAVAILABLE": 503,
}


# --------------------------------------------------------------------------- money
def decimals_of(currency: str) -> int:
    return CURRENCIES.get(currency.upper(), 2)


def _q(currency: str) -> Decimal:
    return Decimal(1).scaleb(-decimals_of(currency))


def round_money(value: Decimal, currency: str) -> Decimal:
    """Half-up to the currency's decimals (PayPal's rounding, see the module docstring)."""
    return value.quantize(_q(currency), rounding=ROUND_HALF_UP)


def _money(value: Decimal, currency: str) -> dict[str, str]:
    return {"currency_code": currency, "value": format(round_money(value, currency), "f")}


def _places(value: Decimal) -> int:
    exponent = value.as_tuple().exponent
    return max(0, -exponent) if isinstance(exponent, int) else 0


def _now() -> datetime:
    return datetime.now(UTC).replace(microsecond=0)


def _stamp(dt: datetime) -> str:
    return dt.strftime("%Y-%m-%dT%H:%M:%SZ")


def _debug_id() -> str:
    return secrets.token_hex(7)[:13]


# --------------------------------------------------------------------------- PayPal's arithmetic
@dataclass
class Amounts:
    """Result of :func:`compute_amounts` (Decimals, rounded to the currency)."""

    item_amounts: list[Decimal]
    item_discounts: list[Decimal]
    item_taxes: list[Decimal]
    item_total: Decimal
    item_discount_total: Decimal
    invoice_discount: Decimal
    shipping: Decimal
    shipping_tax: Decimal
    custom: Decimal
    tax_total: Decimal
    total: Decimal


def compute_amounts(doc: dict, currency: str) -> Amounts:
    """PayPal's invoice arithmetic on a validated ``invoice`` document (see the module docstring).

    Reproduces the spec's ``invoice_draft`` example: item taxes 3.27 and 0.34, shipping tax 0.73,
    item discount 7.50, invoice discount 2.63 (5 % of 52.50), total 74.21.
    """
    config = doc.get("configuration") or {}
    inclusive = bool(config.get("tax_inclusive", False))
    after_discount = bool(config.get("tax_calculated_after_discount", True))

    def rnd(x: Decimal) -> Decimal:
        return round_money(x, currency)

    def tax_of(base: Decimal, pct: Decimal) -> Decimal:
        return rnd(base * pct / (100 + pct)) if inclusive else rnd(base * pct / 100)

    items = doc.get("items") or []
    amounts, discounts = [], []
    for item in items:
        amount = rnd(Decimal(item["quantity"]) * Decimal(item["unit_amount"]["value"]))
        disc = item.get("discount") or {}
        if disc.get("percent") is not None:
            d = rnd(amount * Decimal(disc["percent"]) / 100)
        elif disc.get("amount") is not None:
            d = rnd(Decimal(disc["amount"]["value"]))
        else:
            d = Decimal(0)
        amounts.append(amount)
        discounts.append(d)
    nets = [a - d for a, d in zip(amounts, discounts, strict=True)]
    net_sum = sum(nets, Decimal(0))
    breakdown = (doc.get("amount") or {}).get("breakdown") or {}
    inv_disc_spec = (breakdown.get("discount") or {}).get("invoice_discount") or {}
    inv_pct: Decimal | None = None
    if inv_disc_spec.get("percent") is not None:
        inv_pct = Decimal(inv_disc_spec["percent"])
        invoice_discount = rnd(net_sum * inv_pct / 100)
    elif inv_disc_spec.get("amount") is not None:
        invoice_discount = rnd(Decimal(inv_disc_spec["amount"]["value"]))
    else:
        invoice_discount = Decimal(0)
    taxes = []
    for item, amount, net in zip(items, amounts, nets, strict=True):
        if after_discount:
            if inv_pct is not None:
                base = net * (100 - inv_pct) / 100
            elif invoice_discount and net_sum:
                base = net - invoice_discount * net / net_sum
            else:
                base = net
        else:
            base = amount
        tax = item.get("tax")
        taxes.append(tax_of(base, Decimal(tax["percent"])) if tax and tax.get("percent") is not None else Decimal(0))
    shipping_doc = breakdown.get("shipping") or {}
    shipping = rnd(Decimal(shipping_doc["amount"]["value"])) if shipping_doc.get("amount") else Decimal(0)
    shipping_tax = Decimal(0)
    if shipping_doc.get("tax") and shipping_doc["tax"].get("percent") is not None:
        shipping_tax = tax_of(shipping, Decimal(shipping_doc["tax"]["percent"]))
    custom_doc = breakdown.get("custom") or {}
    custom = rnd(Decimal(custom_doc["amount"]["value"])) if custom_doc.get("amount") else Decimal(0)
    item_total = sum(amounts, Decimal(0))
    item_discount_total = sum(discounts, Decimal(0))
    tax_total = sum(taxes, Decimal(0)) + shipping_tax
    total = (
        item_total
        - item_discount_total
        - invoice_discount
        + shipping
        + custom
        + (Decimal(0) if inclusive else tax_total)
    )
    return Amounts(
        amounts,
        discounts,
        taxes,
        rnd(item_total),
        rnd(item_discount_total),
        invoice_discount,
        shipping,
        shipping_tax,
        custom,
        rnd(tax_total),
        rnd(total),
    )


# --------------------------------------------------------------------------- errors
def _json(status: int, obj: Any, headers: dict[str, str] | None = None) -> Response:
    h = {"Content-Type": "application/json"}
    h.update(headers or {})
    return Response(status, json.dumps(obj, ensure_ascii=False).encode("utf-8"), h)


def _detail(issue: str, description: str, field_: str | None = None, value: Any = None, location: str = "body") -> dict:
    d: dict[str, Any] = {}
    if field_ is not None:
        d["field"] = field_
        if value is not None:
            d["value"] = str(value)[:1000]
        d["location"] = location
    d["issue"] = issue
    d["description"] = description
    return d


def _recipient_emails(inv: dict) -> list[str]:
    """The ``primary_recipients[].billing_info.email_address`` of an invoice (whom PayPal e-mails), in order."""
    billing = [((r or {}).get("billing_info") or {}) for r in inv.get("primary_recipients") or []]
    return [str(b["email_address"]) for b in billing if b.get("email_address")]


def _error(
    name: str, details: list[dict] | None = None, headers: dict[str, str] | None = None, message: str | None = None
) -> Response:
    """PayPal's error body ``{name, message, debug_id, details, links}`` (spec ``error_4xx``/``error_5xx``)."""
    debug_id = _debug_id()
    body: dict[str, Any] = {"name": name, "message": message or MESSAGES[name], "debug_id": debug_id}
    if details:
        body["details"] = details
    anchor = details[0]["issue"] if details else name
    body["links"] = [
        {
            "href": f"https://developer.paypal.com/docs/api/invoicing/v2/#error-{anchor}",
            "rel": "information_link",
            "method": "GET",
        }
    ]
    h = {"Paypal-Debug-Id": debug_id}
    h.update(headers or {})
    return _json(STATUS_OF[name], body, h)


class _Problems:
    """Collects 400 ``INVALID_REQUEST`` details and the first 422 business error."""

    def __init__(self) -> None:
        self.invalid: list[dict] = []
        self.unprocessable: list[dict] = []

    def bad(self, issue: str, description: str, field_: str, value: Any = None) -> None:
        self.invalid.append(_detail(issue, description, field_, value))

    def business(self, issue: str, description: str, field_: str | None = None, value: Any = None) -> None:
        self.unprocessable.append(_detail(issue, description, field_, value))

    def response(self) -> Response | None:
        if self.invalid:
            return _error("INVALID_REQUEST", self.invalid)
        if self.unprocessable:
            return _error("UNPROCESSABLE_ENTITY", self.unprocessable[:1])
        return None


def _length(p: _Problems, value: Any, field_: str, limit: int, description: str, minimum: int = 0) -> None:
    if value is None:
        return
    if not isinstance(value, str):
        p.bad("INVALID_PARAMETER_SYNTAX", f"{field_} must be a string.", field_, value)
    elif not (minimum <= len(value) <= limit):
        p.bad(
            "INVALID_STRING_MAX_LENGTH" if len(value) > limit else "INVALID_STRING_LENGTH", description, field_, value
        )


def _array_ok(p: _Problems, value: Any, limit: int, field_: str, description: str, *, echo: bool = False) -> bool:
    """Whether ``value`` is a list of at most ``limit`` items; else an ``INVALID_ARRAY_MAX_ITEMS`` problem (naming
    the value when ``echo``)."""
    if isinstance(value, list) and len(value) <= limit:
        return True
    p.bad("INVALID_ARRAY_MAX_ITEMS", description, field_, value if echo else None)
    return False


def _date_value(p: _Problems, value: Any, field_: str, description: str) -> date | None:
    if value is None:
        return None
    if not isinstance(value, str) or not _DATE.match(value):
        p.bad("INVALID_PARAMETER_SYNTAX", description, field_, value)
        return None
    try:
        return date.fromisoformat(value)
    except ValueError:
        p.bad("INVALID_PARAMETER_SYNTAX", description, field_, value)
        return None


class PayPalEmulator(Emulator):
    """Local PayPal on ``host:port`` (``port=0`` picks a free port); start with :meth:`start` or ``with``.

    One PayPal business account (``account_email``, ``business_name``) reachable with one REST app
    (``client_id`` / ``client_secret``, granted ``scopes``). Public attributes for tests: ``calls``
    (``(method, path, status)``; 0 = closed without answer; the control API is not recorded),
    ``count_429``, ``validation_failures``, ``server_errors``, ``token_requests``, ``emails``
    (notifications "sent" by ``/send``).

    Keyword arguments: ``access_token_ttl`` (32,400 s, PayPal's ~9 h), ``rate_limit_per_minute``
    (300 Invoicing calls; PayPal publishes none), ``token_rate_limit_per_minute`` (60),
    ``retry_after`` (seconds announced with a fault-injected 429, 1), ``search_lag_seconds`` (0),
    ``hang_seconds`` (how long ``timeout_after_commit`` holds the socket, 30 s), ``response_delay`` (0),
    ``enforce_unique_numbers`` (True), ``on_step`` (test hook, see the attribute),
    ``today`` (a callable giving the account's current date, for ``SCHEDULED`` invoices; UTC today).
    """

    name = "paypal-emulator"
    server_version = "PayPalEmulator/1.0"
    fault_kinds = FAULT_KINDS
    #: the control API is not part of the emulated service
    record_admin_calls = False

    def __init__(
        self,
        *,
        account_email: str = "billing@demo-business.example",
        business_name: str = "Demo Business",
        host: str = "127.0.0.1",
        port: int = 0,
        request_validator: RequestValidator | None = None,
        client_id: str = "demo-client",
        client_secret: str = "demo-secret",
        scopes: Iterable[str] = DEFAULT_SCOPES,
        access_token_ttl: float = 32400,
        rate_limit_per_minute: int = 300,
        token_rate_limit_per_minute: int = 60,
        today: Callable[[], date] | None = None,
        retry_after: int = 1,
        search_lag_seconds: float = 0.0,
        hang_seconds: float = 30.0,
        response_delay: float = 0.0,
        enforce_unique_numbers: bool = True,
        on_step: StepHook | None = None,
        webhook_url: str | None = None,
        webhook_id: str = DEFAULT_WEBHOOK_ID,
    ):
        self._init_sandbox(
            host, port, hang_seconds=hang_seconds, response_delay=response_delay, request_validator=request_validator
        )
        #: Webhooks (module docstring): ``webhooks.url`` is where they go, ``webhook_id`` names the endpoint.
        self.webhooks = WebhookSender(webhook_url)
        self.webhook_id = webhook_id
        self._signing_key = secrets.token_bytes(32)
        #: transmission id -> (the headers sent, the body) of every transmission, for the verify endpoint
        self._transmissions: dict[str, tuple[dict[str, str], bytes]] = {}
        self.client_id, self.client_secret, self.scopes = client_id, client_secret, tuple(scopes)
        self.account_email, self.business_name = account_email, business_name
        # limits (read on every call: tests change them on a running emulator)
        self.rate_limit_per_minute, self.token_rate_limit_per_minute = (
            rate_limit_per_minute,
            token_rate_limit_per_minute,
        )
        self.access_token_ttl, self.retry_after = access_token_ttl, retry_after
        self.search_lag_seconds = search_lag_seconds
        self.today = today or (lambda: datetime.now(UTC).date())
        self.app_id = "APP-80W284485P519543T"
        #: ``False`` accepts a number already taken (tests that prove the broker never relies on
        #: PayPal's ``DUPLICATE_INVOICE_NUMBER`` check to avoid a second invoice).
        self.enforce_unique_numbers = enforce_unique_numbers
        #: Test hook ``on_step(operation, invoice)``: called after a write (``create``, ``send``,
        #: ``cancel``, ``delete``) succeeded and before its answer is written (e.g. to kill a worker
        #: right there); ``invoice`` is a copy of the stored invoice (``{"id": ...}`` once deleted).
        #: May be set after :meth:`start`.
        self.on_step = on_step
        # auth state survives reset_state(): access token -> (expires, scopes)
        self._tokens: dict[str, tuple[float, frozenset[str]]] = {}
        self._token_minute = Window(token_rate_limit_per_minute, 60.0)
        self.token_requests = 0
        self._init_state()

    # ------------------------------------------------------------------ lifecycle
    def _init_state(self) -> None:
        self._invoices: dict[str, dict] = {}
        self._created_at: dict[str, float] = {}
        self._seq = 0
        self._minute = Window(self.rate_limit_per_minute, 60.0)
        #: ``"stale_search"`` faults pending (they hit search calls only)
        self._stale_searches = 0
        #: operations aimed at by faults, in the order they were first aimed at (for ``pending_faults``)
        self._fault_operations: dict[str, None] = {}
        self._init_records()
        self.emails: list[dict] = []

    def _new_fault_queue(self) -> FaultQueue:
        # a fault aimed at an operation (``on=``) hits that operation's calls before any untargeted one
        return FaultQueue(self.fault_kinds, targeted_first=True)

    # ------------------------------------------------------------------ test helpers
    def invoices(self) -> list[dict]:
        """Deep copies of the stored invoices (PayPal JSON shape), oldest first."""
        with self._lock:
            return [copy.deepcopy(inv) for inv in self._invoices.values()]

    def invoice(self, invoice_id: str) -> dict | None:
        with self._lock:
            inv = self._invoices.get(invoice_id)
            return copy.deepcopy(inv) if inv is not None else None

    def inject_fault(self, kind: str, times: int = 1, *, after: int = 0, on: str | None = None) -> None:
        """Make the next ``times`` Invoicing calls (``/v2/invoicing/...``) fail with ``kind``, after
        letting ``after`` calls through (e.g. ``after=2``: search and create pass, the send fails).
        ``on`` targets one operation instead of the next calls: ``create``, ``send``, ``search``,
        ``get``, ``list``, ``delete``, ``cancel`` or ``next_number`` (``after`` then counts those calls).

        ``"503"``/``"500"`` answer that status without processing; ``"429"`` answers
        ``RATE_LIMIT_REACHED`` with ``Retry-After: retry_after``; ``"reset"`` resets the connection
        before processing; ``"timeout_after_commit"`` processes the request, then holds the socket
        ``hang_seconds`` and closes it unanswered; ``"drop_after_commit"`` processes, then closes.
        ``"stale_search"`` is consumed by the next ``times`` *search* calls only: they answer as if no
        invoice were indexed yet (PayPal's search is not documented as read-after-write consistent).
        """
        self.faults.check(kind)
        if on is not None and on not in ROUTE_NAMES:
            raise ValueError(f"unknown operation {on!r}; known: {', '.join(ROUTE_NAMES)}")
        with self._lock:
            if kind == "stale_search":
                self._stale_searches += int(times)
                return
            if on is not None:
                self._fault_operations.setdefault(on, None)
            self.faults.add(Fault(kind, operation=on, after=int(after)), times, after_each=False)

    def _inject_from_admin(self, doc: dict[str, Any]) -> None:
        """``POST /_emulator/faults``: ``{"kind", "times", "after", "on"}``."""
        self.inject_fault(str(doc["kind"]), int(doc.get("times", 1)), after=int(doc.get("after", 0)), on=doc.get("on"))

    def _pending_faults(self) -> list[Any]:
        """The untargeted faults, each after ``None`` for every call it still lets through."""
        return [k for f in self.faults.entries() if f.operation is None for k in [None] * f.after + [f.kind]]

    def expire_access_tokens(self) -> None:
        """Expire every issued access token now (next call gets 401 ``AUTHENTICATION_FAILURE``)."""
        with self._lock:
            past = time.monotonic() - 1
            for token, (_, scopes) in list(self._tokens.items()):
                self._tokens[token] = (past, scopes)

    def record_payment(self, invoice_id: str, amount: Decimal | None = None, method: str = "BANK_TRANSFER") -> None:
        """The payer pays ``amount`` (``None``: all that is due) on ``invoice_id``, as ``POST .../payments`` records
        it; :class:`ValueError` naming PayPal's issue when refused (not sent, more than is due)."""
        with self._lock:
            resp = self._pay(self._invoices[invoice_id], amount, method, None)
        if resp.status != 200:
            raise ValueError(json.loads(resp.body)["details"][0]["issue"])

    def balance(self) -> Decimal:
        """What customers owe: the ``due_amount`` of ``SENT`` / ``UNPAID`` / ``PARTIALLY_PAID`` invoices (drafts,
        scheduled, paid, cancelled and refunded ones count 0; there are no credit notes)."""
        with self._lock:
            due = [Decimal(i["due_amount"]["value"]) for i in self._invoices.values() if i["status"] in OPEN_STATUSES]
            return sum(due, Decimal("0.00"))

    def plant_invoice(self, number: str, total: Decimal, currency: str = "EUR", business_name: str = "Client") -> str:
        """A ``SENT`` invoice made outside the broker (one untaxed item of ``total``, no memo); its id."""
        doc = {
            "detail": {"invoice_number": number, "currency_code": currency, "note": "Thank you."},
            "primary_recipients": [{"billing_info": {"business_name": business_name}}],
            "items": [{"name": "Services", "quantity": "1", "unit_amount": _money(Decimal(total), currency)}],
        }
        with self._lock:
            inv = self._store(doc, currency, compute_amounts(doc, currency))
            inv["status"] = "SENT"
            return str(inv["id"])

    def set_status(self, invoice_id: str, status: str) -> None:
        """Force an invoice's status (e.g. ``PAID``) — what the payer or merchant would do on paypal.com."""
        if status not in STATUSES:
            raise ValueError(f"unknown status {status!r}")
        with self._lock:
            self._invoices[invoice_id]["status"] = status

    def stats(self) -> dict[str, Any]:
        with self._lock:
            aimed = [f for f in self.faults.entries() if f.operation is not None]
            targeted = [f"{f.kind}@{op}" for op in self._fault_operations for f in aimed if f.operation == op]
            pending = self._pending_faults() + ["stale_search"] * self._stale_searches + targeted
            counts = {"invoice_count": len(self._invoices), "token_requests": self.token_requests}
            return super().stats() | counts | {"emails": len(self.emails), "pending_faults": pending}

    # ------------------------------------------------------------------ dispatch
    def _handle(self, req: Request) -> Response:
        path = req.path.rstrip("/") or "/"
        if path.startswith("/_emulator"):
            return self._admin(req, path)
        message = self._invalid(req, path)
        if message is not None:  # the request does not conform to the spec
            return _error("INVALID_REQUEST", [_detail("SPEC_VALIDATION", message[:2000])])
        if path == "/v1/oauth2/token":
            if req.method != "POST":
                return _error("METHOD_NOT_SUPPORTED", headers={"Allow": "POST"})
            return self._token(req)
        if path.startswith("/v2/invoicing"):
            return self._invoicing(req, path)
        if path == VERIFY_PATH and req.method == "POST":
            return self._verify_webhook_signature(req)
        return _error(
            "RESOURCE_NOT_FOUND",
            [_detail("INVALID_RESOURCE_ID", f"No emulated resource at {path}.", "path", path, "path")],
        )

    def _internal_error(self) -> Response:
        return _error("INTERNAL_SERVER_ERROR")

    def _fault_throttled(self, fault: Fault) -> Response:  # noqa: ARG002 - the kit's signature
        return _error("RATE_LIMIT_REACHED", headers={"Retry-After": str(self.retry_after)})

    def _fault_status(self, status: int) -> Response:
        return _error("SERVICE_UNAVAILABLE" if status == 503 else "INTERNAL_SERVER_ERROR")

    def _throttled(self, window: Window, limit: int) -> Response | None:
        """Count the call in ``window`` or answer ``RATE_LIMIT_REACHED``. Caller holds the lock."""
        retry = self._throttle(window, limit)
        return None if retry is None else _error("RATE_LIMIT_REACHED", headers={"Retry-After": str(retry)})

    # ------------------------------------------------------------------ OAuth2
    def _token(self, req: Request) -> Response:
        """Client-credentials grant; the app authenticates with HTTP Basic only (form fields do not count)."""
        now = time.monotonic()
        with self._lock:
            self.token_requests += 1
            limited = self._throttled(self._token_minute, self.token_rate_limit_per_minute)
            if limited is not None:
                return limited
        credentials = client_credentials(req, {})
        if credentials is None or not secret_ok(self.client_id, self.client_secret, *credentials):
            return _json(401, {"error": "invalid_client", "error_description": "Client Authentication failed"})
        grant = form_of(req.body).get("grant_type")
        if not grant:
            return _json(400, {"error": "unsupported_grant_type", "error_description": "Grant Type is NULL"})
        if grant != "client_credentials":
            return _json(
                400, {"error": "unsupported_grant_type", "error_description": f"unsupported grant_type {grant}"}
            )
        access = "A21AA" + "".join(secrets.choice(string.ascii_letters + string.digits + "-_") for _ in range(90))
        with self._lock:
            self._tokens[access] = (now + self.access_token_ttl, frozenset(self.scopes))
        return _json(
            200,
            {
                "scope": " ".join(self.scopes),
                "access_token": access,
                "token_type": "Bearer",
                "app_id": self.app_id,
                "expires_in": math.ceil(self.access_token_ttl),
                "nonce": f"{_stamp(_now())}{secrets.token_urlsafe(24)}",
            },
        )

    def _authenticate(self, req: Request) -> tuple[Response | None, frozenset[str]]:
        auth = req.headers.get("authorization", "")
        if not auth.startswith("Bearer "):
            return _error(
                "AUTHENTICATION_FAILURE", [_detail("MISSING_AUTHORIZATION_HEADER", "Authorization header is missing.")]
            ), frozenset()
        token = auth[7:].strip()
        with self._lock:
            entry = self._tokens.get(token)
        if entry is None:
            return _error(
                "AUTHENTICATION_FAILURE", [_detail("INVALID_TOKEN", "The access token is not valid.")]
            ), frozenset()
        expires, scopes = entry
        if time.monotonic() >= expires:
            return _error(
                "AUTHENTICATION_FAILURE", [_detail("TOKEN_EXPIRED", "The access token has expired.")]
            ), frozenset()
        return None, scopes

    @staticmethod
    def _allowed(scopes: frozenset[str], write: bool) -> bool:
        if SCOPE_INVOICING in scopes or SCOPE_READWRITE in scopes:
            return True
        return not write and SCOPE_READ in scopes

    # ------------------------------------------------------------------ invoicing gate
    def _invoicing(self, req: Request, path: str) -> Response:
        denied, scopes = self._authenticate(req)
        if denied is not None:
            return denied
        route = self._route_for(req.method, path)
        if route is None:
            return _error(
                "RESOURCE_NOT_FOUND",
                [_detail("INVALID_RESOURCE_ID", f"No such resource {req.method} {path}.", "path", path, "path")],
            )
        handler, write, ident = route
        operation = ROUTE_NAMES_BY_HANDLER.get(handler.__name__, "")
        if not self._allowed(scopes, write):
            return _error(
                "NOT_AUTHORIZED",
                [
                    _detail(
                        "PERMISSION_DENIED",
                        "You do not have permission to access or perform operations on this resource.",
                    )
                ],
            )
        with self._lock:
            limited = self._throttled(self._minute, self.rate_limit_per_minute)
            if limited is not None:
                return limited
            fault = self._take_fault(req.method, path, operation)
        answer = self._fault_answer(fault)
        if answer is not None:
            return answer
        self._delay()
        with self._lock:
            resp = handler(req, ident) if ident is not None else handler(req)
            stored = None
            if self.on_step is not None and write and 200 <= resp.status < 300:
                invoice_id = ident or self._id_of(resp)
                stored = copy.deepcopy(self._invoices.get(invoice_id or "")) or {"id": invoice_id}
        return self._answer_processed(resp, fault, (operation, stored))

    @staticmethod
    def _id_of(resp: Response) -> str | None:
        """The invoice id of a create's answer (the representation's ``id`` or the ``self`` link)."""
        body = json_or_none(resp.body)
        if isinstance(body, dict):
            if body.get("id"):
                return str(body["id"])
            if body.get("href"):
                return str(body["href"]).rstrip("/").rsplit("/", 1)[-1]
        return None

    def _route_for(self, method: str, path: str) -> tuple[Callable[..., Response], bool, str | None] | None:
        parts = path.split("/")[3:]  # after /v2/invoicing
        if parts == ["invoices"]:
            if method == "POST":
                return self._create, True, None
            if method == "GET":
                return self._list, False, None
        elif parts == ["search-invoices"] and method == "POST":
            return self._search, False, None
        elif parts == ["generate-next-invoice-number"] and method == "POST":
            return self._next_number, True, None
        elif len(parts) == 2 and parts[0] == "invoices":
            ident = unquote(parts[1])
            if method == "GET":
                return self._get, False, ident
            if method == "DELETE":
                return self._delete, True, ident
        elif len(parts) == 3 and parts[0] == "invoices" and method == "POST":
            ident = unquote(parts[1])
            if parts[2] == "send":
                return self._send, True, ident
            if parts[2] == "cancel":
                return self._cancel, True, ident
            if parts[2] == "payments":
                return self._payments, True, ident
        return None

    # ------------------------------------------------------------------ representation
    def _href(self, invoice_id: str) -> str:
        return f"{self.url}/v2/invoicing/invoices/{invoice_id}"

    def _links(self, inv: dict) -> list[dict]:
        href = self._href(inv["id"])
        links = [{"href": href, "rel": "self", "method": "GET"}]
        if inv["status"] == "DRAFT":
            links += [
                {"href": f"{href}/send", "rel": "send", "method": "POST"},
                {"href": href, "rel": "replace", "method": "PUT"},
                {"href": href, "rel": "delete", "method": "DELETE"},
            ]
        elif inv["status"] in ("SENT", "UNPAID", "SCHEDULED"):
            links += [{"href": f"{href}/cancel", "rel": "cancel", "method": "POST"}]
        links.append({"href": f"{href}/generate-qr-code", "rel": "qr-code", "method": "POST"})
        return links

    def _render(self, inv: dict, summary: bool = False) -> dict:
        out = copy.deepcopy(inv)
        out["links"] = self._links(inv)
        if summary:
            out.pop("items", None)
            out.pop("configuration", None)
        return out

    def _new_id(self) -> str:
        alphabet = string.ascii_uppercase + string.digits
        while True:
            ident = "INV2-" + "-".join("".join(secrets.choice(alphabet) for _ in range(4)) for _ in range(4))
            if ident not in self._invoices:
                return ident

    def _taken(self) -> dict[str, str]:
        return {inv["detail"]["invoice_number"].lower(): i for i, inv in self._invoices.items()}

    def _auto_number(self) -> str:
        taken = self._taken()
        while True:
            self._seq += 1
            candidate = f"{self._seq:04d}"
            if candidate not in taken:
                return candidate

    # ------------------------------------------------------------------ create
    def _parse(self, req: Request) -> Any:
        try:
            return json.loads(req.body or b"null")
        except ValueError:
            return _error(
                "INVALID_REQUEST", [_detail("MALFORMED_REQUEST_JSON", "The request JSON is not well formed.")]
            )

    def _money_field(
        self,
        p: _Problems,
        m: Any,
        field_: str,
        currency: str | None,
        *,
        lo: Decimal = -_LIMIT,
        hi: Decimal = _LIMIT,
        required: bool = True,
    ) -> Decimal | None:
        if m is None:
            if required:
                p.bad("MISSING_REQUIRED_PARAMETER", f"{field_} is missing.", field_)
            return None
        if not isinstance(m, dict):
            p.bad("INVALID_PARAMETER_SYNTAX", f"{field_} must be an object.", field_, m)
            return None
        code, value = m.get("currency_code"), m.get("value")
        if code is None:
            p.bad("MISSING_REQUIRED_PARAMETER", "Currency code is missing.", f"{field_}/currency_code")
        elif not isinstance(code, str) or len(code) != 3:
            p.bad(
                "INVALID_STRING_LENGTH", "Currency code length should be 3 characters.", f"{field_}/currency_code", code
            )
        elif currency is not None and code != currency:
            p.business(
                "CURRENCY_MISMATCH",
                f"Currency code {code} does not match the invoice currency {currency}.",
                f"{field_}/currency_code",
                code,
            )
        if value is None:
            p.bad("MISSING_REQUIRED_PARAMETER", "Amount value is missing.", f"{field_}/value")
            return None
        if not isinstance(value, str) or len(value) > 32 or not _NUMBER.match(value):
            p.bad(
                "INVALID_PARAMETER_SYNTAX",
                "Amount value is invalid. Should be a numeric value.",
                f"{field_}/value",
                value,
            )
            return None
        amount = Decimal(value)
        if currency is not None and _places(amount) > decimals_of(currency):
            p.bad(
                "DECIMAL_PRECISION",
                f"The value of the field should not have more than {decimals_of(currency)} decimal places for "
                f"{currency}.",
                f"{field_}/value",
                value,
            )
        if not (lo <= amount <= hi):
            p.bad("INVALID_PARAMETER_SYNTAX", f"Value must be between {lo} and {hi}.", f"{field_}/value", value)
        return amount

    def _percent_field(self, p: _Problems, value: Any, field_: str) -> Decimal | None:
        if value is None:
            p.bad("MISSING_REQUIRED_PARAMETER", f"{field_} is missing.", field_)
            return None
        if not isinstance(value, str) or not _NUMBER.match(value):
            p.bad("INVALID_PARAMETER_SYNTAX", "Percent value is invalid.", field_, value)
            return None
        pct = Decimal(value)
        if not (0 <= pct <= 100) or _places(pct) > 5:
            p.bad(
                "INVALID_PARAMETER_SYNTAX",
                "Percent must be from 0 to 100 with up to five decimal places.",
                field_,
                value,
            )
            return None
        return pct

    def _validate_invoice(self, doc: Any, p: _Problems, *, existing_id: str | None = None) -> str | None:
        """Validate an ``invoice`` request document; returns its currency (None when unusable)."""
        if not isinstance(doc, dict):
            p.bad("INVALID_PARAMETER_SYNTAX", "The request body must be an invoice object.", "/", doc)
            return None
        detail = doc.get("detail")
        if not isinstance(detail, dict):
            p.bad("MISSING_REQUIRED_PARAMETER", "Invoice detail is missing.", "/detail")
            return None
        currency = detail.get("currency_code")
        if currency is None:
            p.bad("MISSING_REQUIRED_PARAMETER", "Currency code is missing.", "/detail/currency_code")
            currency = None
        elif not isinstance(currency, str) or len(currency) != 3:
            p.bad(
                "INVALID_STRING_LENGTH",
                "Currency code length should be 3 characters.",
                "/detail/currency_code",
                currency,
            )
            currency = None
        elif currency not in CURRENCIES:
            p.business(
                "CURRENCY_NOT_SUPPORTED",
                f"Currency code {currency} is not supported.",
                "/detail/currency_code",
                currency,
            )
        _length(
            p,
            detail.get("invoice_number"),
            "/detail/invoice_number",
            25,
            "Invoice number length should be less than 25 characters.",
        )
        _length(
            p,
            detail.get("reference"),
            "/detail/reference",
            120,
            "Reference field length should be less than 120 characters.",
        )
        _length(p, detail.get("note"), "/detail/note", 4000, "Invoice note length should be less than 4000 characters.")
        _length(
            p,
            detail.get("terms_and_conditions"),
            "/detail/terms_and_conditions",
            4000,
            "Terms and Conditions length should be less than 4000 characters.",
        )
        _length(p, detail.get("memo"), "/detail/memo", 500, "Memo length should be less than 500 characters.")
        invoice_date = _date_value(p, detail.get("invoice_date"), "/detail/invoice_date", "Invoice date is invalid.")
        term = detail.get("payment_term")
        if term is not None:
            if not isinstance(term, dict):
                p.bad("INVALID_PARAMETER_SYNTAX", "Payment term must be an object.", "/detail/payment_term", term)
            else:
                if term.get("term_type") is not None and term["term_type"] not in TERM_TYPES:
                    p.bad(
                        "INVALID_PARAMETER_SYNTAX",
                        "Payment term type is invalid.",
                        "/detail/payment_term/term_type",
                        term["term_type"],
                    )
                due = _date_value(p, term.get("due_date"), "/detail/payment_term/due_date", "Due date is invalid.")
                if due is not None and due < (invoice_date or self.today()):
                    p.business(
                        "DUE_DATE_BEFORE_INVOICE_DATE",
                        "The due date cannot be earlier than the invoice date.",
                        "/detail/payment_term/due_date",
                        term.get("due_date"),
                    )
        # invoicer
        invoicer = doc.get("invoicer")
        if isinstance(invoicer, dict):
            email = invoicer.get("email_address")
            _length(
                p, email, "/invoicer/email_address", 254, "Email address length should be between 3 and 254.", minimum=3
            )
            if isinstance(email, str) and email.lower() != self.account_email.lower():
                p.business(
                    "USER_NOT_FOUND",
                    "User is not associated with paypal based on invoicer email.",
                    "/invoicer/email_address",
                    email,
                )
            _length(
                p,
                invoicer.get("business_name"),
                "/invoicer/business_name",
                300,
                "Business name length should be less than 300 characters.",
            )
        # recipients
        recipients = doc.get("primary_recipients")
        if recipients is not None and _array_ok(
            p, recipients, 100, "/primary_recipients", "The number of items in an array parameter is too large."
        ):
            for i, rec in enumerate(recipients):
                billing = (rec or {}).get("billing_info") if isinstance(rec, dict) else None
                if not isinstance(billing, dict):
                    continue
                base = f"/primary_recipients/{i}/billing_info"
                email = billing.get("email_address")
                _length(
                    p,
                    email,
                    f"{base}/email_address",
                    254,
                    "Email address length should be between 3 and 254.",
                    minimum=3,
                )
                if isinstance(email, str) and not _EMAIL.match(email):
                    p.bad("INVALID_PARAMETER_SYNTAX", "Email address is invalid.", f"{base}/email_address", email)
                if isinstance(email, str) and email.lower() == self.account_email.lower():
                    p.business(
                        "CANNOT_INVOICE_SELF",
                        "The recipient cannot be the invoicer.",
                        f"{base}/email_address",
                        email,
                    )
                _length(
                    p,
                    billing.get("business_name"),
                    f"{base}/business_name",
                    300,
                    "Business name length should be less than 300 characters.",
                )
        # items
        items = doc.get("items")
        if not isinstance(items, list) or not items:
            p.bad("MISSING_REQUIRED_PARAMETER", "The invoice must include at least one item.", "/items")
            items = []
        elif len(items) > 100:
            p.bad(
                "INVALID_ARRAY_MAX_ITEMS",
                "The number of items in an array parameter is too large (maximum 100).",
                "/items",
                len(items),
            )
        tax_rates: dict[str, tuple[Decimal, int]] = {}
        for i, item in enumerate(items):
            base = f"/items/{i}"
            if not isinstance(item, dict):
                p.bad("INVALID_PARAMETER_SYNTAX", "Item must be an object.", base, item)
                continue
            name = item.get("name")
            if name is None or (isinstance(name, str) and not name.strip()):
                p.bad("MISSING_REQUIRED_PARAMETER", "Item name is missing.", f"{base}/name")
            _length(p, name, f"{base}/name", 200, "Item name length should be less than 200 characters.")
            _length(
                p,
                item.get("description"),
                f"{base}/description",
                1000,
                "Item description length should be less than 1000 characters.",
            )
            qty = item.get("quantity")
            if qty is None:
                p.bad("MISSING_REQUIRED_PARAMETER", "Item quantity is missing.", f"{base}/quantity")
            elif not isinstance(qty, str) or not (1 <= len(qty) <= 14):
                p.bad("INVALID_STRING_LENGTH", "Item quantity length should be 1 and 14.", f"{base}/quantity", qty)
            elif not _NUMBER.match(qty) or not (-_LIMIT <= Decimal(qty) <= _LIMIT) or _places(Decimal(qty)) > 5:
                p.bad(
                    "INVALID_PARAMETER_SYNTAX",
                    "Item quantity must be a number from -1000000 to 1000000 with up to five decimal places.",
                    f"{base}/quantity",
                    qty,
                )
            self._money_field(p, item.get("unit_amount"), f"{base}/unit_amount", currency)
            tax = item.get("tax")
            if tax is not None:
                if not isinstance(tax, dict):
                    p.bad("INVALID_PARAMETER_SYNTAX", "Tax must be an object.", f"{base}/tax", tax)
                else:
                    tname = tax.get("name")
                    if tname is None:
                        p.bad("MISSING_REQUIRED_PARAMETER", "Tax name is missing.", f"{base}/tax/name")
                    _length(p, tname, f"{base}/tax/name", 100, "Tax name length should be less than 100.")
                    pct = self._percent_field(p, tax.get("percent"), f"{base}/tax/percent")
                    if isinstance(tname, str) and pct is not None:
                        seen = tax_rates.setdefault(tname.lower(), (pct, i))
                        if seen[0] != pct:
                            p.business(
                                "TAX_NAME_RATE_MISMATCH",
                                f"Tax name {tname!r} is used with the rates {seen[0]} and {pct}; a tax name can "
                                "have only one rate on an invoice.",
                                f"{base}/tax/percent",
                                tax.get("percent"),
                            )
            disc = item.get("discount")
            if disc is not None:
                if not isinstance(disc, dict):
                    p.bad("INVALID_PARAMETER_SYNTAX", "Discount must be an object.", f"{base}/discount", disc)
                elif disc.get("percent") is not None:
                    self._percent_field(p, disc.get("percent"), f"{base}/discount/percent")
                elif disc.get("amount") is not None:
                    self._money_field(p, disc.get("amount"), f"{base}/discount/amount", currency, lo=Decimal(0))
            unit = item.get("unit_of_measure")
            if unit is not None and unit not in UNITS:
                p.bad("INVALID_PARAMETER_SYNTAX", "Unit of measure is invalid.", f"{base}/unit_of_measure", unit)
            _date_value(p, item.get("item_date"), f"{base}/item_date", "Item Date is invalid.")
        config = doc.get("configuration")
        if config is not None and isinstance(config, dict):
            for flag in ("tax_inclusive", "tax_calculated_after_discount", "allow_tip"):
                if config.get(flag) is not None and not isinstance(config[flag], bool):
                    p.bad(
                        "INVALID_PARAMETER_SYNTAX", f"{flag} must be a boolean.", f"/configuration/{flag}", config[flag]
                    )
        amount = doc.get("amount")
        if isinstance(amount, dict):
            breakdown = amount.get("breakdown") or {}
            if isinstance(breakdown, dict):
                shipping = breakdown.get("shipping") or {}
                if isinstance(shipping, dict) and shipping.get("amount") is not None:
                    self._money_field(
                        p, shipping.get("amount"), "/amount/breakdown/shipping/amount", currency, lo=Decimal(0)
                    )
                    if shipping.get("tax") is not None:
                        _length(
                            p,
                            shipping["tax"].get("name"),
                            "/amount/breakdown/shipping/tax/name",
                            100,
                            "Shipping Tax name length should be less than 100 characters.",
                        )
                        self._percent_field(p, shipping["tax"].get("percent"), "/amount/breakdown/shipping/tax/percent")
                custom = breakdown.get("custom") or {}
                if isinstance(custom, dict) and custom:
                    _length(
                        p,
                        custom.get("label"),
                        "/amount/breakdown/custom/label",
                        50,
                        "Custom label length should be less than 50 characters.",
                    )
                    self._money_field(p, custom.get("amount"), "/amount/breakdown/custom/amount", currency)
                inv_disc = (
                    ((breakdown.get("discount") or {}).get("invoice_discount"))
                    if isinstance(breakdown.get("discount"), dict)
                    else None
                )
                if isinstance(inv_disc, dict):
                    if inv_disc.get("percent") is not None:
                        self._percent_field(
                            p, inv_disc["percent"], "/amount/breakdown/discount/invoice_discount/percent"
                        )
                    elif inv_disc.get("amount") is not None:
                        self._money_field(
                            p,
                            inv_disc["amount"],
                            "/amount/breakdown/discount/invoice_discount/amount",
                            currency,
                            lo=Decimal(0),
                        )
            total_value = amount.get("value")
            if total_value is not None and (not isinstance(total_value, str) or not _NUMBER.match(total_value)):
                p.bad(
                    "INVALID_PARAMETER_SYNTAX",
                    "Amount value is invalid. Should be a numeric value.",
                    "/amount/value",
                    total_value,
                )
        # uniqueness (case-insensitive, over every stored invoice incl. cancelled)
        number = detail.get("invoice_number")
        if isinstance(number, str) and number:
            owner = self._taken().get(number.lower())
            if owner is not None and owner != existing_id and self.enforce_unique_numbers:
                p.business(
                    "DUPLICATE_INVOICE_NUMBER", "Invoice number already exists.", "/detail/invoice_number", number
                )
        return currency

    def _create(self, req: Request) -> Response:
        doc = self._parse(req)
        if isinstance(doc, Response):
            return doc
        p = _Problems()
        currency = self._validate_invoice(doc, p)
        early = p.response()
        if early is not None:
            return early
        assert currency is not None
        amounts = compute_amounts(doc, currency)
        sent_total = (doc.get("amount") or {}).get("value")
        if sent_total is not None and round_money(Decimal(sent_total), currency) != amounts.total:
            return _error(
                "INVALID_REQUEST",
                [
                    _detail(
                        "INVALID_PARAMETER_VALUE",
                        f"The amount {sent_total} does not match the calculated invoice amount {amounts.total}.",
                        "/amount/value",
                        sent_total,
                    )
                ],
            )
        if amounts.total < 0:
            return _error(
                "UNPROCESSABLE_ENTITY",
                [
                    _detail(
                        "NEGATIVE_INVOICE_AMOUNT",
                        "The total amount of the invoice cannot be negative.",
                        "/amount/value",
                        str(amounts.total),
                    )
                ],
            )
        inv = self._store(doc, currency, amounts)
        if "return=representation" in req.headers.get("prefer", "").replace(" ", "").lower():
            return _json(201, self._render(inv))
        return _json(
            201, {"rel": "self", "href": self._href(inv["id"]), "method": "GET"}, {"Location": self._href(inv["id"])}
        )

    def _store(self, doc: dict, currency: str, amounts: Amounts) -> dict:
        now = _now()
        invoice_id = self._new_id()
        detail = copy.deepcopy(doc["detail"])
        if not detail.get("invoice_number"):
            detail["invoice_number"] = self._auto_number()
        invoice_date = date.fromisoformat(detail["invoice_date"]) if detail.get("invoice_date") else self.today()
        detail["invoice_date"] = invoice_date.isoformat()
        term = dict(detail.get("payment_term") or {})
        if term.get("term_type") in TERM_DAYS:
            term["due_date"] = (invoice_date + timedelta(days=TERM_DAYS[term["term_type"]])).isoformat()
        elif term.get("term_type") == "DUE_ON_RECEIPT":
            term["due_date"] = invoice_date.isoformat()
        elif term.get("due_date"):
            term.setdefault("term_type", "DUE_ON_DATE_SPECIFIED")
        else:
            term = {"term_type": "NO_DUE_DATE"}
        detail["payment_term"] = term
        detail["metadata"] = {
            "create_time": _stamp(now),
            "created_by": self.account_email,
            "last_update_time": _stamp(now),
            "last_updated_by": self.account_email,
            "created_by_flow": "REGULAR_SINGLE",
            "recipient_view_url": "https://www.sandbox.paypal.com/invoice/p/#"
            + invoice_id.replace("INV2-", "").replace("-", ""),
            "invoicer_view_url": f"https://www.sandbox.paypal.com/invoice/details/{invoice_id}",
        }
        invoicer = copy.deepcopy(doc.get("invoicer") or {})
        invoicer.setdefault("email_address", self.account_email)
        invoicer.setdefault("business_name", self.business_name)
        items_out = []
        for i, item in enumerate(doc["items"]):
            out = copy.deepcopy(item)
            out["id"] = f"ITEM-{secrets.token_hex(8).upper()}"[:22]
            if out.get("tax"):
                out["tax"]["amount"] = _money(amounts.item_taxes[i], currency)
            if out.get("discount"):
                out["discount"]["amount"] = _money(amounts.item_discounts[i], currency)
            items_out.append(out)
        config = {
            "tax_calculated_after_discount": True,
            "tax_inclusive": False,
            "allow_tip": False,
            "partial_payment": {"allow_partial_payment": False},
            "template_id": "TEMP-PAYPAL-SYSTEM",
        }
        config.update(copy.deepcopy(doc.get("configuration") or {}))
        sent_breakdown = (doc.get("amount") or {}).get("breakdown") or {}
        breakdown: dict[str, Any] = {"item_total": _money(amounts.item_total, currency)}
        discount: dict[str, Any] = {}
        if amounts.item_discount_total:
            discount["item_discount"] = _money(-amounts.item_discount_total, currency)
        if amounts.invoice_discount:
            inv_disc = dict((sent_breakdown.get("discount") or {}).get("invoice_discount") or {})
            inv_disc["amount"] = _money(-amounts.invoice_discount, currency)
            discount["invoice_discount"] = inv_disc
        if discount:
            breakdown["discount"] = discount
        breakdown["tax_total"] = _money(amounts.tax_total, currency)
        if sent_breakdown.get("shipping"):
            shipping = copy.deepcopy(sent_breakdown["shipping"])
            if shipping.get("tax"):
                shipping["tax"]["amount"] = _money(amounts.shipping_tax, currency)
            breakdown["shipping"] = shipping
        if sent_breakdown.get("custom"):
            breakdown["custom"] = copy.deepcopy(sent_breakdown["custom"])
        inv = {
            "id": invoice_id,
            "status": "DRAFT",
            "detail": detail,
            "invoicer": invoicer,
            "primary_recipients": copy.deepcopy(doc.get("primary_recipients") or []),
            "items": items_out,
            "configuration": config,
            "amount": {"currency_code": currency, "value": format(amounts.total, "f"), "breakdown": breakdown},
            "due_amount": _money(amounts.total, currency),
        }
        if doc.get("additional_recipients"):
            inv["additional_recipients"] = list(doc["additional_recipients"])
        self._invoices[invoice_id] = inv
        self._created_at[invoice_id] = time.monotonic()
        return inv

    # ------------------------------------------------------------------ read
    def _get(self, _req: Request, ident: str) -> Response:
        inv = self._invoices.get(ident)
        if inv is None:
            return self._not_found(ident)
        return _json(200, self._render(inv))

    @staticmethod
    def _not_found(ident: str) -> Response:
        return _error(
            "RESOURCE_NOT_FOUND",
            [_detail("INVALID_RESOURCE_ID", "Requested resource ID was not found.", "invoice_id", ident, "path")],
        )

    def _paging(self, req: Request, p: _Problems) -> tuple[int, int, bool]:
        """``page`` (1–1000, default 1), ``page_size`` (1–100, default 20), ``total_required``; problems go to ``p``."""
        values = {"page": 1, "page_size": 20}
        for name, default, lo, hi in (("page", 1, 1, 1000), ("page_size", 20, 1, 100)):
            raw = req.query.get(name, str(default))
            try:
                value = int(raw)
            except ValueError:
                p.bad(
                    "INVALID_PARAMETER_SYNTAX",
                    "The value of a field does not conform to the expected format.",
                    name,
                    raw,
                )
                continue
            if value < lo:
                p.bad("INVALID_INTEGER_MIN_VALUE", "Value less than minimum value.", name, raw)
            elif value > hi:
                p.bad("INVALID_INTEGER_MAX_VALUE", "Value exceeds max value.", name, raw)
            else:
                values[name] = value
        for issue in p.invalid:
            issue["location"] = "query"
        return values["page"], values["page_size"], req.query.get("total_required", "false").lower() == "true"

    def _page(
        self, req: Request, matches: list[dict], page: int, page_size: int, total_required: bool, method: str
    ) -> Response:
        start = (page - 1) * page_size
        chunk = matches[start : start + page_size]
        base = f"{self.url}{req.path}"
        body: dict[str, Any] = {}
        if total_required:
            body["total_items"] = len(matches)
            body["total_pages"] = max(1, math.ceil(len(matches) / page_size)) if matches else 0
        body["items"] = [self._render(inv, summary=True) for inv in chunk]
        links = [
            {
                "href": f"{base}?page={page}&page_size={page_size}&total_required={str(total_required).lower()}",
                "rel": "self",
                "method": method,
            }
        ]
        if start + page_size < len(matches):
            links.append(
                {
                    "href": f"{base}?page={page + 1}&page_size={page_size}"
                    f"&total_required={str(total_required).lower()}",
                    "rel": "next",
                    "method": method,
                }
            )
        body["links"] = links
        return _json(200, body)

    def _list(self, req: Request) -> Response:
        p = _Problems()
        paging = self._paging(req, p)
        bad = p.response()
        if bad is not None:
            return bad
        newest_first = list(reversed(self._invoices.values()))
        return self._page(req, newest_first, *paging, method="GET")

    def _search(self, req: Request) -> Response:
        p = _Problems()
        paging = self._paging(req, p)
        doc = self._parse(req) if req.body else {}
        if isinstance(doc, Response):
            return doc
        if doc is None:
            doc = {}
        if not isinstance(doc, dict):
            return _error(
                "INVALID_REQUEST", [_detail("INVALID_PARAMETER_SYNTAX", "The search body must be an object.")]
            )
        for name, limit in (
            ("recipient_email", 254),
            ("recipient_first_name", 140),
            ("recipient_last_name", 140),
            ("recipient_business_name", 300),
            ("invoice_number", 25),
            ("reference", 120),
            ("memo", 500),
        ):
            if doc.get(name) is not None and (not isinstance(doc[name], str) or len(doc[name]) > limit):
                p.bad("INVALID_STRING_MAX_LENGTH", "the value of a field is too long.", f"/{name}", doc[name])
        statuses = doc.get("status")
        if statuses is not None:
            too_many = "the number of items in an array parameter is too large."
            if _array_ok(p, statuses, 5, "/status", too_many, echo=True) and any(s not in STATUSES for s in statuses):
                p.bad(
                    "INVALID_PARAMETER_SYNTAX",
                    "the value of a field does not conform to the expected format.",
                    "/status",
                    statuses,
                )
        bad = p.response()
        if bad is not None:
            return bad
        now = time.monotonic()
        stale = self._stale_searches > 0
        if stale:
            self._stale_searches -= 1

        def contains(haystack: Any, needle: Any) -> bool:
            return needle is None or (isinstance(haystack, str) and needle.lower() in haystack.lower())

        def in_range(value: str | None, rng: dict | None) -> bool:
            if not rng:
                return True
            if value is None:
                return False
            return str(rng.get("start", ""))[:10] <= value[:10] <= str(rng.get("end", "9999"))[:10]

        matches = []
        for inv_id, inv in reversed(self._invoices.items()):
            if stale or now - self._created_at.get(inv_id, 0) < self.search_lag_seconds:
                continue
            detail = inv["detail"]
            billing = [(r or {}).get("billing_info") or {} for r in inv.get("primary_recipients") or []]
            if not contains(detail.get("invoice_number"), doc.get("invoice_number")):
                continue
            if not contains(detail.get("reference"), doc.get("reference")):
                continue
            if not contains(detail.get("memo"), doc.get("memo")):
                continue
            if doc.get("recipient_email") and not any(
                str(b.get("email_address", "")).lower() == doc["recipient_email"].lower() for b in billing
            ):
                continue
            if doc.get("recipient_business_name") and not any(
                contains(b.get("business_name"), doc["recipient_business_name"]) for b in billing
            ):
                continue
            if doc.get("currency_code") and inv["amount"]["currency_code"] != doc["currency_code"]:
                continue
            if statuses and inv["status"] not in statuses:
                continue
            rng = doc.get("total_amount_range")
            if rng:
                total = Decimal(inv["amount"]["value"])
                try:
                    lo, hi = Decimal(rng["lower_amount"]["value"]), Decimal(rng["upper_amount"]["value"])
                except (KeyError, TypeError, InvalidOperation):
                    return _error(
                        "INVALID_REQUEST",
                        [
                            _detail(
                                "INVALID_PARAMETER_SYNTAX",
                                "the value of a field does not conform to the expected format.",
                                "/total_amount_range",
                            )
                        ],
                    )
                if not (lo <= total <= hi):
                    continue
            if not in_range(detail.get("invoice_date"), doc.get("invoice_date_range")):
                continue
            if not in_range(detail.get("payment_term", {}).get("due_date"), doc.get("due_date_range")):
                continue
            if not in_range(detail["metadata"]["create_time"], doc.get("creation_date_range")):
                continue
            if doc.get("archived") is True:
                continue  # nothing is archived in the emulator
            matches.append(inv)
        return self._page(req, matches, *paging, method="POST")

    def _next_number(self, _req: Request) -> Response:
        taken = self._taken()
        n = self._seq + 1
        while f"{n:04d}" in taken:
            n += 1
        return _json(200, {"invoice_number": f"{n:04d}"})

    # ------------------------------------------------------------------ state changes
    def _send(self, req: Request, ident: str) -> Response:
        inv = self._invoices.get(ident)
        if inv is None:
            return self._not_found(ident)
        note = self._notification(req)
        if isinstance(note, Response):
            return note
        if inv["status"] != "DRAFT":
            issue = "CANNOT_SEND_CANCELLED_INVOICE" if inv["status"] == "CANCELLED" else "INVOICE_ALREADY_SENT"
            return _error(
                "UNPROCESSABLE_ENTITY",
                [
                    _detail(
                        issue,
                        f"The invoice is {inv['status']}; only a DRAFT invoice can be sent.",
                        "invoice_id",
                        ident,
                        "path",
                    )
                ],
            )
        if note.get("send_to_recipient", True) and not _recipient_emails(inv):
            return _error(
                "UNPROCESSABLE_ENTITY",
                [
                    _detail(
                        "MISSING_RECIPIENT_EMAIL",
                        "A recipient email address is required to send the invoice to the recipient; set "
                        "send_to_recipient to false to share it by link.",
                        "/primary_recipients/0/billing_info/email_address",
                    )
                ],
            )
        now = _now()
        meta = inv["detail"]["metadata"]
        scheduled = date.fromisoformat(inv["detail"]["invoice_date"]) > self.today()
        inv["status"] = "SCHEDULED" if scheduled else "SENT"
        meta["last_update_time"] = _stamp(now)
        if not scheduled:
            meta["first_sent_time"] = meta.get("first_sent_time") or _stamp(now)
            meta["last_sent_time"] = _stamp(now)
            meta["last_sent_by"] = self.account_email
            self._notify(inv, note)
        if scheduled:
            return _json(202, {"links": [{"href": self._href(ident), "rel": "self", "method": "GET"}]})
        return _json(200, {"href": meta["recipient_view_url"], "rel": "payer-view", "method": "GET"})

    def _notification(self, req: Request) -> dict[str, Any] | Response:
        """A ``notification`` body (send, cancel): checked lengths and flags; an error answer when invalid."""
        if not req.body:
            return {}
        parsed = self._parse(req)
        if isinstance(parsed, Response):
            return parsed
        note = parsed or {}
        p = _Problems()
        if not isinstance(note, dict):
            p.bad("INVALID_PARAMETER_SYNTAX", "The notification must be an object.", "/", note)
            return p.response() or {}
        _length(p, note.get("subject"), "/subject", 4000, "the value of a field is too long.")
        _length(p, note.get("note"), "/note", 4000, "the value of a field is too long.")
        for flag in ("send_to_recipient", "send_to_invoicer"):
            if note.get(flag) is not None and not isinstance(note[flag], bool):
                p.bad("INVALID_PARAMETER_SYNTAX", f"{flag} must be a boolean.", f"/{flag}", note[flag])
        bad = p.response()
        return note if bad is None else bad

    def _notify(self, inv: dict, note: dict[str, Any], subject: str | None = None) -> None:
        """Record the e-mails of a ``notification`` (send, cancel): to the payers and CC addresses unless
        ``send_to_recipient`` is false, to the invoicer with ``send_to_invoicer``; ``subject`` by default."""
        to: list[str] = []
        if note.get("send_to_recipient", True):
            to += _recipient_emails(inv)
            to += list(note.get("additional_recipients") or [])
        if note.get("send_to_invoicer", False):
            to.append(inv["invoicer"].get("email_address", self.account_email))
        for address in to:
            self.emails.append(
                {
                    "invoice_id": inv["id"],
                    "invoice_number": inv["detail"]["invoice_number"],
                    "to": address,
                    "subject": note.get("subject") or subject,
                    "note": note.get("note"),
                }
            )

    def _cancel(self, req: Request, ident: str) -> Response:
        inv = self._invoices.get(ident)
        if inv is None:
            return self._not_found(ident)
        note = self._notification(req)
        if isinstance(note, Response):
            return note
        status = inv["status"]
        issue = {
            "DRAFT": ("CANNOT_CANCEL_DRAFT_INVOICE", "Draft invoice cannot be canceled."),
            "SCHEDULED": ("CANNOT_CANCEL_SCHEDULED_INVOICE", "Cannot cancel a scheduled invoice."),
            "CANCELLED": ("INVOICE_CANCELED_ALREADY", "Invoice is already cancelled."),
            "PAID": ("CANNOT_CANCEL_PAID_INVOICE", "Cannot cancel a paid or partially paid invoice."),
            "PARTIALLY_PAID": ("CANNOT_CANCEL_PAID_INVOICE", "Cannot cancel a paid or partially paid invoice."),
            "MARKED_AS_PAID": ("CANNOT_CANCEL_PAID_INVOICE", "Cannot cancel a paid or partially paid invoice."),
            "REFUNDED": ("CANNOT_CANCEL_REFUNDED_INVOICE", "Cannot cancel a refunded or partially refunded invoice."),
            "PARTIALLY_REFUNDED": (
                "CANNOT_CANCEL_REFUNDED_INVOICE",
                "Cannot cancel a refunded or partially refunded invoice.",
            ),
        }.get(status)
        if issue is not None:
            return _error("UNPROCESSABLE_ENTITY", [_detail(issue[0], issue[1], "invoice_id", ident, "path")])
        inv["status"] = "CANCELLED"
        inv["due_amount"] = _money(Decimal(0), inv["amount"]["currency_code"])
        inv["detail"]["metadata"]["cancel_time"] = _stamp(_now())
        inv["detail"]["metadata"]["cancelled_by"] = self.account_email
        self._notify(inv, note, subject="Invoice cancelled")
        self._event("INVOICING.INVOICE.CANCELLED", inv, f"Invoice {inv['id']} cancelled")
        return Response(204)

    def _payments(self, req: Request, ident: str) -> Response:
        """``POST .../{id}/payments`` (spec ``invoices.payments``): record an external payment."""
        inv = self._invoices.get(ident)
        if inv is None:
            return self._not_found(ident)
        doc = self._parse(req)
        if isinstance(doc, Response):
            return doc
        p = _Problems()
        if not isinstance(doc, dict):
            p.bad("INVALID_PARAMETER_SYNTAX", "The payment detail must be an object.", "/", doc)
            return p.response() or _error("INVALID_REQUEST")
        currency = inv["amount"]["currency_code"]
        if doc.get("method") is None:
            p.bad(
                "MISSING_REQUIRED_PARAMETER",
                "Payment method is missing. Please provide a valid payment method.",
                "/method",
            )
        elif doc["method"] not in PAYMENT_METHODS:
            p.bad(
                "INVALID_PAYMENT_METHOD",
                "The value provided is not an acceptable method of payment.",
                "/method",
                doc["method"],
            )
        _date_value(p, doc.get("payment_date"), "/payment_date", "Date should be of format yyyy-mm-dd.")
        amount = self._money_field(p, doc.get("amount"), "/amount", currency, lo=Decimal(0), required=False)
        if amount == 0:
            p.bad(
                "VALUE_CANNOT_BE_ZERO", "Payment amount cannot be zero. Please provide a valid amount.", "/amount/value"
            )
        bad = p.response()
        if bad is not None:
            return bad
        return self._pay(inv, amount, str(doc["method"]), doc.get("payment_date"))

    def _pay(self, inv: dict, amount: Decimal | None, method: str, when: str | None) -> Response:
        """Record ``amount`` (``None``: all that is due) on ``inv``; the spec's 422 issues when refused."""
        currency = inv["amount"]["currency_code"]
        due = Decimal(inv["due_amount"]["value"])
        if inv["status"] not in OPEN_STATUSES:
            issue = ("CANNOT_PROCESS_PAYMENTS", "Current invoice state does not support payment processing.")
            return _error("UNPROCESSABLE_ENTITY", [_detail(*issue, "invoice_id", inv["id"], "path")])
        pay = due if amount is None else amount
        if pay > due:
            issue = ("PAYMENT_AMOUNT_GREATER_THAN_AMOUNT_DUE", "Payment amount is greater than the amount due.")
            return _error("UNPROCESSABLE_ENTITY", [_detail(*issue, "/amount/value", str(pay))])
        payments = inv.setdefault("payments", {"paid_amount": _money(Decimal(0), currency), "transactions": []})
        payment_id = f"EXTR-{secrets.token_hex(8).upper()}"[:22]
        payments["transactions"].append(
            {
                "payment_id": payment_id,
                "type": "EXTERNAL",
                "method": method,
                "payment_date": when or self.today().isoformat(),
                "amount": _money(pay, currency),
            }
        )
        payments["paid_amount"] = _money(Decimal(payments["paid_amount"]["value"]) + pay, currency)
        inv["due_amount"] = _money(due - pay, currency)
        inv["status"] = "PAID" if due - pay == 0 else "PARTIALLY_PAID"
        inv["detail"]["metadata"]["last_update_time"] = _stamp(_now())
        self._event("INVOICING.INVOICE.PAID", inv, f"Invoice {inv['id']} paid ({pay} {currency})")
        return _json(200, {"payment_id": payment_id})

    # ------------------------------------------------------------------ webhooks
    def _event(self, kind: str, inv: dict, summary: str) -> None:
        """Queue the webhook event ``kind`` about ``inv`` (caller holds the lock; sent once it is released)."""
        event = {
            "id": f"WH-{secrets.token_hex(8).upper()}-{secrets.token_hex(8).upper()}",
            "event_version": "1.0",
            "create_time": _stamp(_now()),
            "resource_type": "invoices",
            "event_type": kind,
            "summary": summary,
            "resource": self._render(inv),
        }
        self.webhooks.send(kind, event, self._transmission)

    def _transmission(self, body: bytes, when: int) -> dict[str, str]:
        """The headers of one new transmission of ``body`` at ``when`` (unix seconds), remembered for the
        verify endpoint (module docstring)."""
        ident = str(uuid.uuid1())
        stamp = _stamp(datetime.fromtimestamp(when, UTC))
        signed = f"{ident}|{stamp}|{self.webhook_id}|{zlib.crc32(body)}".encode()
        headers = {
            "PAYPAL-TRANSMISSION-ID": ident,
            "PAYPAL-TRANSMISSION-TIME": stamp,
            "PAYPAL-TRANSMISSION-SIG": base64.b64encode(
                hmac.new(self._signing_key, signed, hashlib.sha256).digest()
            ).decode(),
            "PAYPAL-CERT-URL": f"{self.url}/v1/notifications/certs/CERT-360caa42-fca2a594-a5cafa77",
            "PAYPAL-AUTH-ALGO": "SHA256withRSA",
        }
        with self._lock:
            self._transmissions[ident] = (headers, body)
        return headers

    def _verify_webhook_signature(self, req: Request) -> Response:
        """``POST /v1/notifications/verify-webhook-signature`` (module docstring)."""
        denied, _scopes = self._authenticate(req)
        if denied is not None:
            return denied
        doc = self._parse(req)
        if isinstance(doc, Response):
            return doc
        p = _Problems()
        for field_ in VERIFY_FIELDS:
            if not isinstance(doc, dict) or doc.get(field_) in (None, ""):
                p.bad("MISSING_REQUIRED_PARAMETER", f"{field_} is required.", f"/{field_}")
        bad = p.response()
        if bad is not None:
            return bad
        with self._lock:
            sent = self._transmissions.get(str(doc["transmission_id"]))
        ok = sent is not None and doc["webhook_id"] == self.webhook_id
        if sent is not None:
            headers, body = sent
            ok = ok and all(
                doc[f] == headers[f"PAYPAL-{h}"]
                for f, h in (
                    ("auth_algo", "AUTH-ALGO"),
                    ("cert_url", "CERT-URL"),
                    ("transmission_sig", "TRANSMISSION-SIG"),
                    ("transmission_time", "TRANSMISSION-TIME"),
                )
            )
            ok = ok and doc["webhook_event"] == json.loads(body)
        return _json(200, {"verification_status": "SUCCESS" if ok else "FAILURE"})

    def _delete(self, _req: Request, ident: str) -> Response:
        inv = self._invoices.get(ident)
        if inv is None:
            return self._not_found(ident)
        if inv["status"] not in ("DRAFT", "SCHEDULED"):
            return _error(
                "UNPROCESSABLE_ENTITY",
                [
                    _detail(
                        "CANNOT_DELETE_INVOICE",
                        f"Only draft or scheduled invoices can be deleted (status {inv['status']}).",
                        "invoice_id",
                        ident,
                        "path",
                    )
                ],
            )
        del self._invoices[ident]
        self._created_at.pop(ident, None)
        return Response(204)

    # ------------------------------------------------------------------ control API
    def _admin_routes(self) -> dict[tuple[str, str], AdminRoute]:
        return {
            **super()._admin_routes(),
            ("GET", "/_emulator/invoices"): lambda _req: _json(200, self.invoices()),
            ("GET", "/_emulator/emails"): lambda _req: self._emails(),
            **self.webhooks.admin_routes(self, "webhook_id", lambda value: setattr(self, "webhook_id", value)),
        }

    def _emails(self) -> Response:
        with self._lock:
            return _json(200, list(self.emails))


def serve(host: str = "127.0.0.1", port: int = 8766, *, spec_path: str | None = None, **kwargs: Any) -> None:
    """Run an emulator in the foreground until Ctrl-C, printing its URL and the demo credentials.

    ``spec_path`` (the official ``invoicing_v2.json``) turns on request validation against the spec.
    """
    if spec_path:
        from connectors.paypal.spec import make_request_validator

        kwargs["request_validator"] = make_request_validator(spec_path)
    emulator = PayPalEmulator(host=host, port=port, **kwargs).start()
    secret = emulator.client_secret
    serve_until_interrupted(
        emulator,
        [
            f"PayPal emulator listening on {emulator.url}",
            f"  api_url        : {emulator.url}",
            f"  client_id      : {emulator.client_id}",
            f"  client secret  : {secret}   (export PAYPAL_CLIENT_SECRET={secret})",
            f"  account e-mail : {emulator.account_email}",
            (
                f"  control API    : {emulator.url}/_emulator/stats | /_emulator/invoices | /_emulator/emails"
                " | POST /_emulator/faults | POST /_emulator/reset"
            ),
        ],
    )


if __name__ == "__main__":  # python -m connectors.paypal.emulator [port] [spec]
    serve(port=int(sys.argv[1]) if len(sys.argv) > 1 else 8766, spec_path=sys.argv[2] if len(sys.argv) > 2 else None)


__all__ = [
    "CURRENCIES",
    "DEFAULT_SCOPES",
    "DEFAULT_WEBHOOK_ID",
    "FAULT_KINDS",
    "SCOPE_INVOICING",
    "SCOPE_READ",
    "SCOPE_READWRITE",
    "PayPalEmulator",
    "compute_amounts",
    "serve",
]
