"""A loopback emulator of the Stripe API subset the Stripe Invoicing connector uses.

Behaves like Stripe where the broker depends on it (sources: official spec ``spec3.yaml``,
API version 2023-08-16; https://docs.stripe.com/idempotency, https://docs.stripe.com/rate-limits,
https://docs.stripe.com/search, https://docs.stripe.com/currencies, https://docs.stripe.com/api/errors,
``shared/billing-apis.md`` § 8):

* Auth: ``Authorization: Bearer <secret key>`` (or HTTP Basic with the key as user). Missing,
  unknown or expired keys -> 401 ``invalid_request_error`` (``api_key_expired`` for expired ones).
  A ``Stripe-Account`` header (Connect) naming an account outside ``connected_accounts`` -> 403
  ``account_invalid`` (objects are not partitioned per connected account).
* Form-encoded bodies with bracket notation; unknown parameters, bad types and missing required
  parameters are refused with 400 ``invalid_request_error`` naming ``param`` (``request_validator``
  from :mod:`connectors.stripe.spec` checks every body and query against the official spec).
* ``POST/GET /v1/customers``, ``GET /v1/customers/search``, ``GET /v1/customers/{id}``;
  ``POST/GET /v1/tax_rates``; ``POST/GET /v1/invoiceitems``; ``POST/GET /v1/invoices``,
  ``GET /v1/invoices/search``, ``GET/POST/DELETE /v1/invoices/{id}``, ``POST .../finalize``,
  ``POST .../send``, ``POST .../void``, ``POST .../pay`` (``paid_out_of_band`` only);
  ``POST/GET /v1/credit_notes``, ``GET /v1/credit_notes/{id}``; ``GET /v1/balance``.
* Lifecycle (https://docs.stripe.com/invoicing/integration/workflow-transitions, spec ``PostCreditNotes``):
  only drafts can be deleted (``You can only delete draft invoices.``); only ``open``/``uncollectible``
  invoices without a payment can be voided (the customer balance they consumed goes back to the
  customer); a paid invoice changes no more (only its metadata). A credit note (``amount``; no
  ``lines``) first reduces an unpaid invoice's ``amount_due`` (pre-payment); what exceeds it
  (post-payment, all of it on a paid invoice) must equal ``credit_amount`` + ``out_of_band_amount``,
  and ``credit_amount`` is credited to the customer's ``balance`` (negative = credit). Stripe numbers
  credit notes ``<invoice number>-CN-NN``. A void refused is Stripe's own 400 (``You can only pass in
  open invoices. This invoice isn't open.``); the wording of pay and credit-note refusals is the
  emulator's (status 400 ``invalid_request_error`` as Stripe answers).
* Invoices are drafts until finalised; ``pending_invoice_items_behavior`` ``exclude`` (the default
  since API 2022-08-01) leaves the customer's pending invoice items alone, ``include`` sweeps them in.
  Items can only be added to drafts, in the invoice's currency, at most 250 per invoice.
* Money in integer minor units. Tax per line item and Tax Rate, rounded half up to the minor unit:
  exclusive ``amount × p / 100`` added on top, inclusive ``amount × p / (100 + p)`` taken out;
  ``subtotal`` = Σ line amounts, ``tax`` = Σ line taxes, ``total`` = subtotal + exclusive taxes,
  ``amount_due`` = max(0, total + customer balance). ``unit_amount_decimal × quantity`` is rounded
  half up to an integer amount. Finalising assigns ``number`` (customer ``invoice_prefix``-NNNN) and
  ``due_date``; an invoice with nothing due is ``paid`` at once.
* ``Idempotency-Key`` (≤ 255 characters) on POST, kept ``idempotency_ttl`` (24 h): the same key
  replays the saved status and body with ``Idempotent-Replayed: true``; with another endpoint or
  other parameters it is 400 ``idempotency_error``. Parameter-validation failures (400) and 429s are
  not saved; executed requests are, including a ``500_saved`` fault (answered with
  ``Stripe-Should-Retry: false``).
* Search (``query`` with ``field:'value'`` / ``metadata['key']:'value'`` clauses joined by ``AND`` or
  ``OR``) only sees objects ``search_delay`` seconds after they were written (Stripe search is
  eventually consistent); lists are strongly consistent.
* Rate limits: ``rate_limit_per_second`` requests (25, Stripe's test mode) in any one-second window
  and ``search_rate_limit_per_second`` (20) for search; over -> 429 ``rate_limit`` with ``Retry-After``.

Test hooks: ``request_validator``, :meth:`StripeEmulator.inject_fault` (``429``, ``503``, ``500``,
``500_saved``, ``reset``, ``timeout_after_commit``, ``drop_after_commit``; optionally only for a
method and a path glob), :meth:`StripeEmulator.expire_api_key`, :meth:`StripeEmulator.add_customer`,
:meth:`StripeEmulator.add_invoice` (a Dashboard invoice), :meth:`StripeEmulator.mark_paid`,
:meth:`StripeEmulator.balance_minor`,
``on_step(step, obj)`` (called after each write is stored and before its answer is written: crash
tests kill a worker there), and the control API::

    GET  /_emulator/invoices   -> [invoice (all lines), ...]
    GET  /_emulator/customers | /_emulator/tax_rates | /_emulator/invoiceitems | /_emulator/emails
    GET  /_emulator/credit_notes
    POST /_emulator/payments   {"invoice": "in_..."}   (paid in full out of band, see StripeEmulator.mark_paid)
    POST /_emulator/partial-payments {"invoice": "in_...", "amount": 1000}   (StripeEmulator.mark_partially_paid)
    POST /_emulator/webhooks   {"url": "http://.../webhooks/payments/stripe/acme", "secret": "whsec_..."}
    GET  /_emulator/webhooks   -> {"deliveries": [[event type, status, attempt], ...], "sent": n}
    POST /_emulator/webhooks/redeliver {"index": -1}   (the same event again, signed anew, as Stripe retries)
    GET  /_emulator/balance    ?customer=cus_...  -> {"balance": <minor units>}  (StripeEmulator.balance_minor)
    GET  /_emulator/stats      -> {"calls", "call_count", "count_429", "validation_failures", "server_errors",
                                   "invoice_count", ...}
    POST /_emulator/faults     {"kind": "503", "times": 1, "method": "POST", "path": "/v1/invoices/*/finalize"}
    POST /_emulator/reset

Webhooks (https://docs.stripe.com/webhooks, ``shared/billing-apis.md`` § 8): with a ``webhook_url``, paying
an invoice sends ``invoice.paid``, voiding it ``invoice.voided`` (Event objects: ``id`` ``evt_…``,
``type``, ``created``, ``data.object`` = the invoice), and a partial payment ``invoice_payment.paid``
(``data.object`` = an Invoice Payment naming its ``invoice``; partial payments and that event came with API
2025-05-28.basil, https://docs.stripe.com/changelog/basil/2025-05-28/partial-payments). Each attempt carries
``Stripe-Signature: t=<unix seconds>,v1=<hex HMAC-SHA256(endpoint secret, "<t>." + raw body)>``, signed anew
per attempt (Stripe's scheme; the official SDKs refuse a ``t`` older than 300 s).
"""

from __future__ import annotations

import base64
import binascii
import copy
import fnmatch
import hashlib
import hmac
import json
import re
import secrets
import time
from collections.abc import Callable
from decimal import ROUND_HALF_UP, Decimal, InvalidOperation
from typing import Any
from urllib.parse import unquote

from connectors.sandbox import Emulator, ReplayCache
from connectors.sandbox.emulator import AdminRoute, RequestValidator, StepHook, serve_until_interrupted
from connectors.sandbox.faults import Fault
from connectors.sandbox.http import Request, Response
from connectors.sandbox.limits import Window, add_all, first_full
from connectors.sandbox.webhooks import WebhookSender
from connectors.stripe.mapper import MAX_AMOUNT_MINOR, MAX_INVOICE_ITEMS, THREE_DECIMAL, decode_form

DEFAULT_API_KEY = "sk_test_emulator_0000000000000000"
FAULT_KINDS = ("429", "503", "500", "500_saved", "reset", "timeout_after_commit", "drop_after_commit")
DEFAULT_CONNECTED_ACCOUNT = "acct_1EmulatorConnected"
ACCOUNT_NAME = "Stripe Emulator (maintenance-billing-broker)"
#: The demo webhook endpoint's signing secret (Stripe shows it as ``whsec_…`` on the endpoint's page).
DEFAULT_WEBHOOK_SECRET = "whsec_emulator_0000000000000000"

_ID_CHARS = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789"
_CLAUSE = re.compile(
    r"""\s*(?:metadata\[\s*(?P<mq>['"])(?P<mkey>(?:\\.|(?!(?P=mq)).)*)(?P=mq)\s*\]|(?P<field>[a-z_]+))\s*:\s*"""
    r"""(?P<vq>['"])(?P<value>(?:\\.|(?!(?P=vq)).)*)(?P=vq)\s*"""
)


def _new_id(prefix: str, n: int = 24) -> str:
    return prefix + "".join(secrets.choice(_ID_CHARS) for _ in range(n))


def _unescape(text: str) -> str:
    return re.sub(r"\\(.)", r"\1", text)


class StripeError(Exception):
    """An error response: ``status`` and Stripe's ``{"error": {...}}`` fields."""

    def __init__(
        self,
        status: int,
        message: str,
        *,
        type_: str = "invalid_request_error",
        code: str | None = None,
        param: str | None = None,
        saved: bool = False,
    ):
        super().__init__(message)
        self.status, self.message, self.type = status, message, type_
        self.code, self.param, self.saved = code, param, saved

    def body(self) -> dict:
        err: dict[str, Any] = {"message": self.message, "type": self.type}
        if self.code:
            err["code"] = self.code
            err["doc_url"] = f"https://stripe.com/docs/error-codes/{self.code.replace('_', '-')}"
        if self.param:
            err["param"] = self.param
        return {"error": err}


#: ``on_step`` step names: ``(method, path pattern)`` of the writes that change Stripe's state.
STEPS: tuple[tuple[str, str, str], ...] = (
    ("customer", "POST", "/v1/customers"),
    ("tax_rate", "POST", "/v1/tax_rates"),
    ("invoiceitem", "POST", "/v1/invoiceitems"),
    ("invoice", "POST", "/v1/invoices"),
    ("finalize", "POST", "/v1/invoices/*/finalize"),
    ("send", "POST", "/v1/invoices/*/send"),
    ("void", "POST", "/v1/invoices/*/void"),
    ("pay", "POST", "/v1/invoices/*/pay"),
    ("update", "POST", "/v1/invoices/*"),
    ("delete", "DELETE", "/v1/invoices/*"),
    ("credit_note", "POST", "/v1/credit_notes"),
)


def _step_name(method: str, path: str) -> str | None:
    """The :data:`STEPS` name of a request (``None``: a read or a call outside the invoicing flow)."""
    if path.endswith("/search"):
        return None
    for name, step_method, pattern in STEPS:
        if method == step_method and fnmatch.fnmatchcase(path, pattern) and path.count("/") == pattern.count("/"):
            return name
    return None


def _missing(kind: str, ident: str, param: str) -> StripeError:
    return StripeError(
        400 if param else 404, f"No such {kind}: '{ident}'", code="resource_missing", param=param or None
    )


def _json_default(obj: Any) -> Any:
    if isinstance(obj, Decimal):
        return int(obj) if obj == obj.to_integral_value() else float(obj)
    raise TypeError(f"not JSON serialisable: {type(obj).__name__}")


def _json(status: int, obj: Any, headers: dict[str, str] | None = None) -> Response:
    h = {"Content-Type": "application/json", "Request-Id": _new_id("req_", 14)}
    h.update(headers or {})
    return Response(status, json.dumps(obj, default=_json_default, ensure_ascii=False).encode("utf-8"), h)


def _int(value: Any, param: str, *, minimum: int | None = None) -> int:
    if isinstance(value, int) and not isinstance(value, bool):
        number = value
    elif isinstance(value, str) and re.fullmatch(r"-?\d+", value.strip()):
        number = int(value)
    else:
        raise StripeError(400, f"Invalid integer: {value}", param=param)
    if minimum is not None and number < minimum:
        raise StripeError(400, f"Invalid {'non-negative ' if minimum == 0 else ''}integer: {value}", param=param)
    return number


def _bool(value: Any, param: str) -> bool:
    if value in ("true", True):
        return True
    if value in ("false", False):
        return False
    raise StripeError(400, f"Invalid boolean: {value}", param=param)


def _str(value: Any, param: str, limit: int = 5000) -> str:
    if not isinstance(value, str):
        raise StripeError(400, f"Invalid string: {value!r}", param=param)
    if len(value) > limit:
        raise StripeError(400, f"Invalid string: {value[:20]}...; must be at most {limit} characters", param=param)
    return value


def _metadata(raw: Any, current: dict[str, str] | None = None) -> dict[str, str]:
    """Merge ``raw`` metadata into ``current`` (empty value deletes a key; ``""`` clears all)."""
    result = dict(current or {})
    if raw == "":
        return {}
    if not isinstance(raw, dict):
        raise StripeError(400, "Invalid metadata: must be a hash", param="metadata")
    for key, value in raw.items():
        if not isinstance(value, str):
            raise StripeError(400, f"Invalid metadata[{key}]: must be a string", param=f"metadata[{key}]")
        if len(key) > 40:
            raise StripeError(
                400,
                f"Metadata keys can have up to 40 characters; {key[:45]!r} has {len(key)}.",
                param=f"metadata[{key}]",
            )
        if len(value) > 500:
            raise StripeError(
                400,
                "Metadata values can have up to 500 characters, but you passed in a value that is "
                f"{len(value)} characters.",
                param=f"metadata[{key}]",
            )
        if value == "":
            result.pop(key, None)
        else:
            result[key] = value
    if len(result) > 50:
        raise StripeError(
            400,
            "You can specify up to 50 keys, with key names up to 40 characters long and values up to 500 "
            "characters long.",
            param="metadata",
        )
    return result


def _round(value: Decimal) -> int:
    return int(value.quantize(Decimal(1), rounding=ROUND_HALF_UP))


def _rate_limited(retry_after: int) -> Response:
    """Stripe's 429 ``rate_limit`` (``Retry-After`` seconds; retrying is safe)."""
    err = StripeError(
        429,
        "Request rate limit exceeded. You can learn more about rate limits here https://stripe.com/docs/rate-limits.",
        code="rate_limit",
    )
    return _json(429, err.body(), {"Retry-After": str(retry_after), "Stripe-Should-Retry": "true"})


class StripeEmulator(Emulator):
    """Local Stripe on ``host:port`` (``port=0`` picks a free one); ``start()``/``stop()`` or ``with``.

    Keyword arguments: ``api_keys`` (accepted secret keys, default :data:`DEFAULT_API_KEY`),
    ``livemode`` (False), ``rate_limit_per_second`` (25), ``search_rate_limit_per_second`` (20),
    ``idempotency_ttl`` (86,400 s), ``search_delay`` (0 s: how long a write stays invisible to
    search), ``request_validator``, ``hang_seconds`` (how long ``timeout_after_commit`` holds the
    socket, 30 s), ``default_currency`` ("eur"), ``customers`` (``{id: {"name", "email", ...}}``
    created at start and after :meth:`reset_state`).

    Public attributes for tests: ``calls`` (``(method, path, status)``, status 0 = closed without a
    response), ``count_429``, ``validation_failures``, ``server_errors``, ``emails`` (invoices sent
    with ``/send``), ``requests`` (``(method, path, idempotency key, decoded params)``).
    """

    name = "stripe-emulator"
    server_version = "StripeEmulator/1.0"
    fault_kinds = FAULT_KINDS
    http_methods = frozenset({"GET", "POST", "DELETE"})

    def __init__(
        self,
        *,
        api_keys: tuple[str, ...] | list[str] = (DEFAULT_API_KEY,),
        host: str = "127.0.0.1",
        port: int = 0,
        request_validator: RequestValidator | None = None,
        hang_seconds: float = 30.0,
        livemode: bool = False,
        default_currency: str = "eur",
        rate_limit_per_second: int = 25,
        search_rate_limit_per_second: int = 20,
        idempotency_ttl: float = 86400.0,
        search_delay: float = 0.0,
        customers: dict[str, dict[str, Any]] | None = None,
        connected_accounts: tuple[str, ...] | list[str] = (DEFAULT_CONNECTED_ACCOUNT,),
        on_step: StepHook | None = None,
        webhook_url: str | None = None,
        webhook_secret: str = DEFAULT_WEBHOOK_SECRET,
    ):
        self._init_sandbox(host, port, hang_seconds=hang_seconds, request_validator=request_validator)
        #: Webhooks (module docstring): ``webhooks.url`` is where they go, ``webhook_secret`` signs them.
        self.webhooks = WebhookSender(webhook_url)
        self.webhook_secret = webhook_secret
        self.api_keys: dict[str, dict[str, Any]] = {k: {"expired": False} for k in api_keys}
        self.livemode, self.default_currency = livemode, default_currency
        # limits (read on every call: tests change them on a running emulator)
        self.rate_limit_per_second, self.idempotency_ttl = rate_limit_per_second, idempotency_ttl
        self.search_rate_limit_per_second, self.search_delay = search_rate_limit_per_second, search_delay
        self.seed_customers = {k: dict(v) for k, v in (customers or {}).items()}
        self.connected_accounts = frozenset(connected_accounts)
        #: Test hook ``on_step(step, obj)``: called after a write was executed and stored, before its
        #: answer is written (e.g. to kill a worker right there). ``step`` is a :data:`STEPS` name
        #: (``customer``, ``tax_rate``, ``invoice`` = the draft, ``invoiceitem``, ``finalize``,
        #: ``send``, ``update``, ``delete``), ``obj`` the object answered. Not called for replays of
        #: an idempotency key nor for refused requests. May be set after :meth:`start`.
        self.on_step = on_step
        self._init_state()

    # ------------------------------------------------------------------ lifecycle
    def _init_state(self) -> None:
        self._customers: dict[str, dict] = {}
        self._tax_rates: dict[str, dict] = {}
        self._items: dict[str, dict] = {}
        self._invoices: dict[str, dict] = {}
        self._credit_notes: dict[str, dict] = {}
        self._seq = 0  # creation order, for list ordering
        #: Idempotency-Key -> the saved answer (fingerprint: the endpoint and the decoded parameters)
        self._idempotency = ReplayCache(self.idempotency_ttl)
        self._window = Window(self.rate_limit_per_second, 1.0)
        self._search_window = Window(self.search_rate_limit_per_second, 1.0)
        self._number_seq: dict[str, int] = {}
        self._init_records()
        self.requests: list[tuple[str, str, str | None, dict]] = []
        self.emails: list[dict] = []
        for cid, fields in self.seed_customers.items():
            self._create_customer(dict(fields), cid)

    # ------------------------------------------------------------------ test helpers
    def invoices(self) -> list[dict]:
        """Every invoice as ``GET /v1/invoices/{id}`` renders it, with all lines, oldest first."""
        with self._lock:
            return [
                self._render_invoice(inv, all_lines=True)
                for inv in sorted(self._invoices.values(), key=lambda i: i["_seq"])
            ]

    def customers(self) -> list[dict]:
        with self._lock:
            return [self._public(c) for c in sorted(self._customers.values(), key=lambda c: c["_seq"])]

    def tax_rates(self) -> list[dict]:
        with self._lock:
            return [self._public(t) for t in sorted(self._tax_rates.values(), key=lambda t: t["_seq"])]

    def invoice_items(self) -> list[dict]:
        with self._lock:
            return [self._render_item(i) for i in sorted(self._items.values(), key=lambda i: i["_seq"])]

    def credit_notes(self) -> list[dict]:
        """Every credit note as ``GET /v1/credit_notes/{id}`` renders it, oldest first."""
        with self._lock:
            return [self._public(n) for n in sorted(self._credit_notes.values(), key=lambda n: n["_seq"])]

    def mark_paid(self, invoice_id: str, amount: int | None = None) -> dict:
        """Record that the customer paid invoice ``invoice_id`` outside Stripe (what ``POST /v1/invoices/{id}/pay``
        with ``paid_out_of_band=true`` does): ``amount`` in minor units, ``None`` = what remains.

        Stripe (API 2023-08-16) records a payment of an invoice in full only: an ``amount`` other than
        ``amount_remaining`` raises ``ValueError``, as does an invoice that is not open. Returns the invoice.
        """
        with self._lock:
            inv = self._invoices.get(invoice_id)
            if inv is None:
                raise ValueError(f"No such invoice: '{invoice_id}'")
            remaining = self._render_invoice(inv)["amount_remaining"]
            if amount is not None and amount != remaining:
                raise ValueError(
                    f"Stripe invoices are paid in full: {amount} given, {remaining} remaining (no partial payments "
                    "in API 2023-08-16)"
                )
            try:
                return self._render_invoice(self._pay(inv, {"paid_out_of_band": "true"}))
            except StripeError as exc:
                raise ValueError(exc.message) from None

    def mark_partially_paid(self, invoice_id: str, amount: int) -> dict:
        """Record a payment of ``amount`` (minor units, less than ``amount_remaining``) on open invoice
        ``invoice_id``, as a payment attached with ``POST /v1/invoices/{id}/attach_payment`` does since API
        2025-05-28.basil: ``amount_paid`` grows, ``amount_remaining`` shrinks, the invoice stays ``open``,
        and ``invoice_payment.paid`` is sent. Pay the rest with :meth:`mark_paid`. Returns the invoice;
        ``ValueError`` when it is not open or ``amount`` is not in ``1 .. amount_remaining - 1``."""
        with self._lock:
            inv = self._invoices.get(invoice_id)
            if inv is None:
                raise ValueError(f"No such invoice: '{invoice_id}'")
            remaining = self._render_invoice(inv)["amount_remaining"]
            if inv["status"] != "open" or not 0 < amount < remaining:
                raise ValueError(
                    f"a partial payment needs an open invoice and 0 < amount < {remaining} (got {amount}, "
                    f"invoice {inv['status']})"
                )
            inv["_amount_paid"] = inv.get("_amount_paid", 0) + amount
            self._touch(inv)
            now = int(time.time())
            payment = {
                "id": _new_id("inpay_"),
                "object": "invoice_payment",
                "amount_paid": amount,
                "amount_requested": amount,
                "created": now,
                "currency": inv["currency"],
                "invoice": inv["id"],
                "is_default": False,
                "livemode": self.livemode,
                "status": "paid",
                "status_transitions": {"canceled_at": None, "paid_at": now},
            }
            self._event("invoice_payment.paid", payment)
            return self._render_invoice(inv)

    def webhook_signature(self, body: bytes, timestamp: int, secret: str | None = None) -> str:
        """``Stripe-Signature`` of ``body`` sent at ``timestamp`` (unix seconds): ``t=<timestamp>,v1=<hex of
        HMAC-SHA256(secret (default the endpoint secret), "<timestamp>." + body)>``."""
        key = (secret or self.webhook_secret).encode()
        digest = hmac.new(key, f"{timestamp}.".encode() + body, hashlib.sha256).hexdigest()
        return f"t={timestamp},v1={digest}"

    def _event(self, kind: str, obj: dict) -> None:
        """Queue the Event ``kind`` about ``obj`` (caller holds the lock; sent once it is released)."""
        event = {
            "id": _new_id("evt_"),
            "object": "event",
            "api_version": "2023-08-16",
            "created": int(time.time()),
            "data": {"object": json.loads(json.dumps(obj, default=_json_default))},
            "livemode": self.livemode,
            "pending_webhooks": 1,
            "request": {"id": None, "idempotency_key": None},
            "type": kind,
        }
        self.webhooks.send(kind, event, lambda body, t: {"Stripe-Signature": self.webhook_signature(body, t)})

    def balance_minor(self, customer: str | None = None) -> int:
        """What customers owe (one customer's, with ``customer``), in minor units, as Stripe counts it: the
        ``amount_remaining`` of ``open`` invoices plus the customers' ``balance`` (negative = credit the
        customer holds, e.g. from a credit note's ``credit_amount``; applied to their next invoice)."""
        with self._lock:
            due = sum(
                self._render_invoice(inv)["amount_remaining"]
                for inv in self._invoices.values()
                if inv["status"] == "open" and customer in (None, inv["customer"])
            )
            held = sum(int(c["balance"]) for c in self._customers.values() if customer in (None, c["id"]))
            return int(due) + held

    def add_invoice(
        self,
        customer: str,
        amount: int,
        *,
        currency: str = "eur",
        description: str | None = None,
        custom_fields: list[dict[str, str]] | None = None,
        metadata: dict[str, str] | None = None,
        finalize: bool = True,
    ) -> str:
        """An invoice made in the Dashboard (no HTTP): one untaxed item of ``amount`` minor units, ``send_invoice``
        due in 30 days, finalised unless ``finalize=False``; returns its id. Tests plant documents with it."""
        with self._lock:
            params: dict[str, Any] = {
                "customer": customer,
                "currency": currency,
                "collection_method": "send_invoice",
                "days_until_due": "30",
                "custom_fields": custom_fields or [],
                "metadata": metadata or {},
            }
            if description is not None:
                params["description"] = description
            inv = self._create_invoice(params)
            self._new_item(customer, inv, amount, currency, description or "Manual invoice", [], {}, None, None, 1)
            if finalize:
                self._finalize(inv, {})
            return str(inv["id"])

    def add_customer(
        self, name: str, *, email: str | None = None, customer_id: str | None = None, **fields: Any
    ) -> str:
        """Create a customer directly (no HTTP); returns its id."""
        with self._lock:
            return str(self._create_customer({"name": name, "email": email, **fields}, customer_id)["id"])

    def add_pending_item(
        self, customer: str, amount: int, currency: str = "eur", description: str = "pending item"
    ) -> str:
        """A pending invoice item (not on any invoice) for ``customer``: the kind ``exclude`` must not sweep in."""
        with self._lock:
            item = self._new_item(customer, None, amount, currency, description, [], {}, None, None, 1)
            return str(item["id"])

    def inject_fault(
        self, kind: str, times: int = 1, *, method: str | None = None, path: str | None = None, after: int = 0
    ) -> None:
        """Make the next ``times`` matching ``/v1`` requests fail with ``kind``.

        ``429``: answered 429 ``rate_limit`` with ``Retry-After: 1`` before executing;
        ``503``/``500``: answered before executing, not saved for the idempotency key
        (``Stripe-Should-Retry: true``); ``500_saved``: a 500 saved for the key, so retries with it replay
        the failure (``Stripe-Should-Retry: false``); ``reset``: TCP reset before executing;
        ``timeout_after_commit``: executed, then the socket is held ``hang_seconds`` and closed;
        ``drop_after_commit``: executed, then closed without an answer. ``method``/``path`` (a glob such
        as ``/v1/invoices/*/finalize``) restrict which requests the fault hits; ``after`` lets that many
        matching requests through first.
        """
        self._add_fault(Fault(kind, method.upper() if method else None, path, after=int(after)), times)

    def _inject_from_admin(self, doc: dict[str, Any]) -> None:
        """``POST /_emulator/faults``: ``{"kind", "times", "method", "path"}``."""
        self.inject_fault(str(doc["kind"]), int(doc.get("times", 1)), method=doc.get("method"), path=doc.get("path"))

    def forget_idempotency_keys(self) -> None:
        """Drop every saved idempotency key (as Stripe may once keys are 24 hours old)."""
        with self._lock:
            self._idempotency.clear()

    def expire_api_key(self, key: str = DEFAULT_API_KEY) -> None:
        """Mark ``key`` expired: requests with it get 401 ``api_key_expired``."""
        with self._lock:
            self.api_keys.setdefault(key, {})["expired"] = True

    def expire_access_tokens(self) -> None:
        """Stripe has no access tokens (static API keys): nothing to expire. Kept for harness symmetry."""

    def stats(self) -> dict[str, Any]:
        with self._lock:
            counts = {"invoice_count": len(self._invoices), "customer_count": len(self._customers)}
            return super().stats() | counts | {"email_count": len(self.emails)}

    # ------------------------------------------------------------------ dispatch
    def _handle(self, req: Request) -> Response:
        path = req.path.rstrip("/") or "/"
        if path.startswith("/_emulator"):
            return self._admin(req, path)
        if not path.startswith("/v1/"):
            return _json(404, StripeError(404, f"Unrecognized request URL ({req.method}: {path}).").body())
        denied = self._authenticate(req)
        if denied is not None:
            return denied
        with self._lock:
            limited = self._admit(path, time.monotonic())
            if limited is not None:
                return limited
            fault = self._take_fault(req.method, path)
        answer = None if fault is None or fault.kind == "500_saved" else self._fault_answer(fault)
        if answer is not None:
            return answer
        refused = self._refused(req, path)
        if refused is not None:
            return refused
        with self._lock:
            resp = self._idempotent(req, path, fault)
        step = None
        if self.on_step is not None:
            name = _step_name(req.method, path)
            if name is not None and 200 <= resp.status < 300 and resp.headers.get("Idempotent-Replayed") != "true":
                # executed and stored (not a replay, not refused); the answer is not written yet
                step = (name, json.loads(resp.body))
        return self._answer_processed(resp, fault, step)

    def _refused(self, req: Request, path: str) -> Response | None:
        """The 400 of a request ``request_validator`` rejects (the body and the raw query are checked)."""
        if self.request_validator is None:
            return None
        try:
            self.request_validator(req.method, path, {}, dict(req.headers, **{"x-raw-query": req.raw_query}), req.body)
        except Exception as exc:  # noqa: BLE001 - any exception = the request does not conform
            with self._lock:
                self.validation_failures.append(f"{req.method} {path}: {exc}")
            return _json(400, StripeError(400, str(exc), param=getattr(exc, "param", None)).body())
        return None

    def _internal_error(self) -> Response:
        return _json(500, StripeError(500, "emulator error", type_="api_error").body())

    def _fault_throttled(self, fault: Fault) -> Response:  # noqa: ARG002 - the kit's signature; Stripe says 1 s
        return _rate_limited(1)

    def _fault_status(self, status: int) -> Response:
        err = StripeError(
            status,
            "An unknown error occurred" if status == 500 else "Stripe is temporarily unavailable.",
            type_="api_error",
        )
        return _json(status, err.body(), {"Stripe-Should-Retry": "true"})

    def _authenticate(self, req: Request) -> Response | None:
        auth = req.headers.get("authorization", "")
        key = None
        if auth.lower().startswith("bearer "):
            key = auth[7:].strip()
        elif auth.lower().startswith("basic "):
            try:
                key = base64.b64decode(auth[6:].strip(), validate=True).decode("utf-8").partition(":")[0]
            except (binascii.Error, UnicodeDecodeError):
                key = ""
        if not key:
            err = StripeError(
                401,
                "You did not provide an API key. You need to provide your API key in the Authorization header, "
                "using Bearer auth (e.g. 'Authorization: Bearer YOUR_SECRET_KEY').",
            )
            return _json(401, err.body(), {"WWW-Authenticate": 'Bearer realm="Stripe"'})
        masked = key[:8] + "*" * max(0, len(key) - 12) + key[-4:] if len(key) > 12 else "****"
        with self._lock:
            info = self.api_keys.get(key)
        if info is None:
            return _json(
                401,
                StripeError(401, f"Invalid API Key provided: {masked}").body(),
                {"WWW-Authenticate": 'Bearer realm="Stripe"'},
            )
        if info.get("expired"):
            return _json(401, StripeError(401, f"Expired API Key provided: {masked}", code="api_key_expired").body())
        account = req.headers.get("stripe-account")
        if account is not None and account not in self.connected_accounts:
            err = StripeError(
                403,
                f"The provided key '{masked}' does not have access to account '{account}' (or that account "
                "does not exist). Application access may have been revoked.",
                code="account_invalid",
            )
            return _json(403, err.body())
        return None

    def _admit(self, path: str, now: float) -> Response | None:
        """Count the call in the per-second windows (search calls in both) or return the 429. Caller holds the lock."""
        self._window.limit = self.rate_limit_per_second
        self._search_window.limit = self.search_rate_limit_per_second
        windows = [("api", self._window)]
        if path.endswith("/search"):
            windows.append(("search", self._search_window))
        over = first_full(windows, now)
        if over is not None:
            self.count_429 += 1
            return _rate_limited(max(1, int(over[1] + 0.999)))
        add_all((window for _, window in windows), now)
        return None

    def _idempotent(self, req: Request, path: str, fault: Fault | None) -> Response:
        key = req.headers.get("idempotency-key") if req.method == "POST" else None
        try:
            params = decode_form(req.body or b"") if req.method in ("POST", "DELETE") else decode_form(req.raw_query)
        except (ValueError, UnicodeDecodeError) as exc:
            return _json(400, StripeError(400, f"Invalid request body: {exc}").body())
        self.requests.append((req.method, path, key, params))
        if key is not None:
            if len(key) > 255:
                return _json(
                    400,
                    StripeError(
                        400, f"Idempotency-Key must be at most 255 characters (got {len(key)})", param="Idempotency-Key"
                    ).body(),
                )
            self._idempotency.ttl = self.idempotency_ttl
            saved = self._idempotency.get(key)
            if saved is not None:
                endpoint, saved_params = saved.fingerprint
                if endpoint != (req.method, path):
                    err = StripeError(
                        400,
                        f"Keys for idempotent requests can only be used for the same endpoint they were first used for "
                        f"('{endpoint[0]} {endpoint[1]}' vs '{req.method} {path}'). Try using a key "
                        f"other than '{key}' if you meant to execute a different request.",
                        type_="idempotency_error",
                    )
                    return _json(400, err.body())
                if saved_params != params:
                    err = StripeError(
                        400,
                        "Keys for idempotent requests can only be used with the same parameters they were first used "
                        f"with. Try using a key other than '{key}' if you meant to execute a different request.",
                        type_="idempotency_error",
                    )
                    return _json(400, err.body())
                return saved.response(**{"Idempotent-Replayed": "true"})
        if fault is not None and fault.kind == "500_saved":
            err = StripeError(500, "An unknown error occurred", type_="api_error")
            resp = _json(500, err.body(), {"Stripe-Should-Retry": "false"})
        else:
            try:
                status, obj = self._route(req, path, params)
                resp = _json(status, obj)
            except StripeError as exc:
                resp = _json(exc.status, exc.body())
        resp.headers["Stripe-Version"] = req.headers.get("stripe-version", "2023-08-16")
        if key is not None and resp.status not in (400, 429):
            self._idempotency.save(key, resp, fingerprint=((req.method, path), params))
        return resp

    # ------------------------------------------------------------------ routing
    def _route(self, req: Request, path: str, params: dict) -> tuple[int, Any]:
        parts = [unquote(p) for p in path.split("/")[2:]]  # after "/v1"
        m = req.method
        head = parts[0] if parts else ""
        if head == "balance" and len(parts) == 1 and m == "GET":
            return 200, {
                "object": "balance",
                "livemode": self.livemode,
                "available": [{"amount": 0, "currency": self.default_currency, "source_types": {"card": 0}}],
                "pending": [{"amount": 0, "currency": self.default_currency, "source_types": {"card": 0}}],
            }
        if head == "customers":
            if len(parts) == 1 and m == "POST":
                return 200, self._public(self._create_customer(params))
            if len(parts) == 1 and m == "GET":
                rows = list(self._customers.values())
                if "email" in params:
                    rows = [c for c in rows if c.get("email") == params["email"]]
                return 200, self._list(rows, params, "/v1/customers", self._public)
            if parts[1:] == ["search"] and m == "GET":
                return 200, self._search(
                    self._customers.values(), params, "/v1/customers/search", self._public, ("email", "name", "phone")
                )
            if len(parts) == 2 and m == "GET":
                cust = self._customers.get(parts[1])
                if cust is None:
                    raise _missing("customer", parts[1], "")
                return 200, self._public(cust)
        if head == "tax_rates":
            if len(parts) == 1 and m == "POST":
                return 200, self._public(self._create_tax_rate(params))
            if len(parts) == 1 and m == "GET":
                rows = list(self._tax_rates.values())
                for flag in ("active", "inclusive"):
                    if flag in params:
                        wanted = _bool(params[flag], flag)
                        rows = [t for t in rows if t[flag] == wanted]
                return 200, self._list(rows, params, "/v1/tax_rates", self._public)
        if head == "invoiceitems":
            if len(parts) == 1 and m == "POST":
                return 200, self._render_item(self._create_item(params))
            if len(parts) == 1 and m == "GET":
                rows = list(self._items.values())
                if "invoice" in params:
                    rows = [i for i in rows if i["invoice"] == params["invoice"]]
                if "customer" in params:
                    rows = [i for i in rows if i["customer"] == params["customer"]]
                if "pending" in params:
                    pending = _bool(params["pending"], "pending")
                    rows = [i for i in rows if (i["invoice"] is None) == pending]
                return 200, self._list(rows, params, "/v1/invoiceitems", self._render_item)
        if head == "invoices":
            if len(parts) == 1 and m == "POST":
                return 200, self._render_invoice(self._create_invoice(params))
            if len(parts) == 1 and m == "GET":
                return 200, self._list_invoices(params)
            if parts[1:] == ["search"] and m == "GET":
                return 200, self._search(
                    self._invoices.values(),
                    params,
                    "/v1/invoices/search",
                    self._render_invoice,
                    ("customer", "status", "number", "currency"),
                )
            if len(parts) >= 2:
                inv = self._invoices.get(parts[1])
                if inv is None:
                    raise _missing("invoice", parts[1], "")
                if len(parts) == 2 and m == "GET":
                    return 200, self._render_invoice(inv)
                if len(parts) == 2 and m == "POST":
                    return 200, self._render_invoice(self._update_invoice(inv, params))
                if len(parts) == 2 and m == "DELETE":
                    return 200, self._delete_invoice(inv)
                if parts[2:] == ["finalize"] and m == "POST":
                    return 200, self._render_invoice(self._finalize(inv, params))
                if parts[2:] == ["send"] and m == "POST":
                    return 200, self._render_invoice(self._send(inv))
                if parts[2:] == ["void"] and m == "POST":
                    return 200, self._render_invoice(self._void(inv))
                if parts[2:] == ["pay"] and m == "POST":
                    return 200, self._render_invoice(self._pay(inv, params))
        if head == "credit_notes":
            if len(parts) == 1 and m == "POST":
                return 200, self._public(self._create_credit_note(params))
            if len(parts) == 1 and m == "GET":
                rows = list(self._credit_notes.values())
                for name in ("invoice", "customer"):
                    if name in params:
                        rows = [n for n in rows if n[name] == params[name]]
                return 200, self._list(rows, params, "/v1/credit_notes", self._public)
            if len(parts) == 2 and m == "GET":
                note = self._credit_notes.get(parts[1])
                if note is None:
                    raise _missing("credit_note", parts[1], "")
                return 200, self._public(note)
        raise StripeError(
            404,
            f"Unrecognized request URL ({m}: {path}). Please see https://stripe.com/docs or we can help at "
            "https://support.stripe.com/.",
        )

    # ------------------------------------------------------------------ lists and search
    def _touch(self, obj: dict) -> None:
        obj["_written"] = time.monotonic()

    def _next_seq(self) -> int:
        self._seq += 1
        return self._seq

    def _list(self, rows: list[dict], params: dict, url: str, render: Callable[[dict], dict]) -> dict:
        limit = _int(params.get("limit", "10"), "limit", minimum=1)
        if limit > 100:
            raise StripeError(
                400, f"This value must be less than or equal to 100 (it currently is '{limit}')", param="limit"
            )
        rows = sorted(rows, key=lambda r: -r["_seq"])  # newest first
        if "starting_after" in params:
            ids = [r["id"] for r in rows]
            if params["starting_after"] not in ids:
                raise _missing("object", params["starting_after"], "starting_after")
            rows = rows[ids.index(params["starting_after"]) + 1 :]
        elif "ending_before" in params:
            ids = [r["id"] for r in rows]
            if params["ending_before"] not in ids:
                raise _missing("object", params["ending_before"], "ending_before")
            rows = rows[: ids.index(params["ending_before"])][-limit:]
        page = rows[:limit]
        return {"object": "list", "data": [render(r) for r in page], "has_more": len(rows) > limit, "url": url}

    def _list_invoices(self, params: dict) -> dict:
        if "customer" in params and params["customer"] not in self._customers:
            raise _missing("customer", params["customer"], "customer")
        rows = list(self._invoices.values())
        for name in ("customer", "status", "collection_method"):
            if name in params:
                rows = [i for i in rows if i[name] == params[name]]
        created = params.get("created")
        if isinstance(created, dict):
            ops = {
                "gt": lambda a, b: a > b,
                "gte": lambda a, b: a >= b,
                "lt": lambda a, b: a < b,
                "lte": lambda a, b: a <= b,
            }
            for op, raw in created.items():
                if op not in ops:
                    raise StripeError(400, f"Received unknown parameter: created[{op}]", param=f"created[{op}]")
                bound = _int(raw, f"created[{op}]")
                rows = [i for i in rows if ops[op](i["created"], bound)]
        elif created is not None:
            rows = [i for i in rows if i["created"] == _int(created, "created")]
        return self._list(rows, params, "/v1/invoices", self._render_invoice)

    def _search(
        self, rows: Any, params: dict, url: str, render: Callable[[dict], dict], fields: tuple[str, ...]
    ) -> dict:
        query = params.get("query")
        if not isinstance(query, str) or not query.strip():
            raise StripeError(400, "Missing required param: query.", code="parameter_missing", param="query")
        clauses, joiner = self._parse_query(query, fields)
        limit = _int(params.get("limit", "10"), "limit", minimum=1)
        if limit > 100:
            raise StripeError(400, "This value must be less than or equal to 100", param="limit")
        now = time.monotonic()
        visible = [r for r in rows if now - r["_written"] >= self.search_delay]

        def matches(obj: dict) -> bool:
            results = []
            for kind, name, value in clauses:
                actual = (obj.get("metadata") or {}).get(name) if kind == "metadata" else obj.get(name)
                results.append(actual is not None and str(actual) == value)
            return all(results) if joiner == "AND" else any(results)

        hits = sorted((r for r in visible if matches(r)), key=lambda r: -r["_seq"])
        try:
            offset = int(params.get("page") or 0)
        except ValueError:
            raise StripeError(400, "Invalid page token", param="page") from None
        page = hits[offset : offset + limit]
        more = len(hits) > offset + limit
        return {
            "object": "search_result",
            "data": [render(r) for r in page],
            "has_more": more,
            "next_page": str(offset + limit) if more else None,
            "url": url,
        }

    @staticmethod
    def _parse_query(query: str, fields: tuple[str, ...]) -> tuple[list[tuple[str, str, str]], str]:
        clauses: list[tuple[str, str, str]] = []
        joiners: set[str] = set()
        pos = 0
        while True:
            m = _CLAUSE.match(query, pos)
            if not m:
                raise StripeError(
                    400,
                    f"Invalid query: could not parse the search query at position {pos}: {query[pos : pos + 30]!r}",
                    param="query",
                )
            if m.group("field"):
                if m.group("field") not in fields:
                    raise StripeError(
                        400,
                        f"Invalid query: field '{m.group('field')}' is not supported here (supported: "
                        f"{', '.join(fields)}, metadata)",
                        param="query",
                    )
                clauses.append(("field", m.group("field"), _unescape(m.group("value"))))
            else:
                clauses.append(("metadata", _unescape(m.group("mkey")), _unescape(m.group("value"))))
            pos = m.end()
            if pos >= len(query):
                break
            j = re.match(r"(AND|OR)\s+", query[pos:])
            if not j:
                raise StripeError(400, f"Invalid query: expected AND or OR at position {pos}", param="query")
            joiners.add(j.group(1))
            pos += j.end()
        if len(joiners) > 1:
            raise StripeError(400, "Invalid query: AND and OR cannot be combined in one query", param="query")
        return clauses, (joiners.pop() if joiners else "AND")

    # ------------------------------------------------------------------ customers / tax rates
    @staticmethod
    def _public(obj: dict) -> dict:
        return {k: copy.deepcopy(v) for k, v in obj.items() if not k.startswith("_")}

    def _create_customer(self, params: dict, customer_id: str | None = None) -> dict:
        known = {"name", "email", "description", "metadata", "invoice_prefix", "balance", "phone", "expand"}
        for key in params:
            if key not in known:
                raise StripeError(400, f"Received unknown parameter: {key}", param=key)
        name = params.get("name")
        email = params.get("email")
        prefix = params.get("invoice_prefix") or "".join(secrets.choice("ABCDEF0123456789") for _ in range(8))
        if not re.fullmatch(r"[A-Z0-9]{3,12}", prefix):
            raise StripeError(400, "Invoice prefix must be 3-12 uppercase letters or numbers", param="invoice_prefix")
        cust: dict[str, Any] = {
            "id": customer_id or _new_id("cus_", 14),
            "object": "customer",
            "address": None,
            "balance": _int(params.get("balance", 0), "balance"),
            "created": int(time.time()),
            "currency": None,
            "description": params.get("description"),
            "email": email if email else None,
            "invoice_prefix": prefix,
            "livemode": self.livemode,
            "metadata": _metadata(params.get("metadata") or {}),
            "name": _str(name, "name", 256) if name is not None else None,
            "phone": params.get("phone"),
            "tax_exempt": "none",
            "_seq": self._next_seq(),
        }
        self._touch(cust)
        self._customers[cust["id"]] = cust
        self._number_seq[cust["id"]] = 0
        return cust

    def _create_tax_rate(self, params: dict) -> dict:
        for required in ("display_name", "inclusive", "percentage"):
            if required not in params:
                raise StripeError(400, f"Missing required param: {required}.", code="parameter_missing", param=required)
        try:
            pct = Decimal(str(params["percentage"]))
        except InvalidOperation:
            raise StripeError(400, f"Invalid decimal: {params['percentage']}", param="percentage") from None
        if not pct.is_finite() or pct < 0 or pct > 100:
            raise StripeError(400, "Tax rate percentage must be between 0 and 100", param="percentage")
        if pct != pct.quantize(Decimal("0.0001")):
            raise StripeError(400, "Tax rate percentage can have at most 4 decimal places", param="percentage")
        rate: dict[str, Any] = {
            "id": _new_id("txr_"),
            "object": "tax_rate",
            "active": _bool(params.get("active", "true"), "active"),
            "country": params.get("country"),
            "created": int(time.time()),
            "description": params.get("description"),
            "display_name": _str(params["display_name"], "display_name", 50),
            "effective_percentage": pct.normalize(),
            "inclusive": _bool(params["inclusive"], "inclusive"),
            "jurisdiction": params.get("jurisdiction"),
            "livemode": self.livemode,
            "metadata": _metadata(params.get("metadata") or {}),
            "percentage": pct.normalize(),
            "state": params.get("state"),
            "tax_type": params.get("tax_type"),
            "_seq": self._next_seq(),
        }
        self._touch(rate)
        self._tax_rates[rate["id"]] = rate
        return rate

    # ------------------------------------------------------------------ invoice items
    def _new_item(
        self,
        customer: str,
        invoice: dict | None,
        amount: int,
        currency: str,
        description: str | None,
        rates: list[str],
        metadata: dict,
        unit_amount: int | None,
        unit_amount_decimal: str | None,
        quantity: int,
    ) -> dict:
        item: dict[str, Any] = {
            "id": _new_id("ii_"),
            "object": "invoiceitem",
            "amount": amount,
            "currency": currency,
            "customer": customer,
            "date": int(time.time()),
            "description": description,
            "discountable": True,
            "discounts": [],
            "invoice": invoice["id"] if invoice else None,
            "livemode": self.livemode,
            "metadata": metadata,
            "period": {"start": int(time.time()), "end": int(time.time())},
            "price": None,
            "proration": False,
            "quantity": quantity,
            "subscription": None,
            "tax_rates": list(rates),
            "test_clock": None,
            "unit_amount": unit_amount,
            "unit_amount_decimal": unit_amount_decimal,
            "_seq": self._next_seq(),
        }
        self._touch(item)
        self._items[item["id"]] = item
        if invoice is not None:
            invoice["_items"].append(item["id"])
            self._touch(invoice)
        return item

    def _customer_param(self, params: dict) -> dict:
        """The customer the required ``customer`` parameter names."""
        if "customer" not in params:
            raise StripeError(400, "Missing required param: customer.", code="parameter_missing", param="customer")
        customer = self._customers.get(params["customer"])
        if customer is None:
            raise _missing("customer", params["customer"], "customer")
        return customer

    def _create_item(self, params: dict) -> dict:
        customer = self._customer_param(params)
        for unsupported in ("price", "price_data", "subscription", "discounts", "tax_code", "tax_behavior"):
            if unsupported in params:
                raise StripeError(
                    400, f"The emulator does not support {unsupported} on invoice items", param=unsupported
                )
        invoice = None
        if params.get("invoice"):
            invoice = self._invoices.get(params["invoice"])
            if invoice is None:
                raise _missing("invoice", params["invoice"], "invoice")
            if invoice["customer"] != customer["id"]:
                raise StripeError(
                    400,
                    f"The invoice {invoice['id']} belongs to a different customer than {customer['id']}.",
                    param="invoice",
                )
            if invoice["status"] != "draft":
                raise StripeError(
                    400,
                    f"You can only add invoice items to draft invoices; invoice {invoice['id']} is "
                    f"{invoice['status']}.",
                    code="invoice_not_editable",
                    param="invoice",
                )
            if len(invoice["_items"]) >= MAX_INVOICE_ITEMS:
                raise StripeError(
                    400, f"An invoice cannot have more than {MAX_INVOICE_ITEMS} invoice items.", param="invoice"
                )
        given = [p for p in ("amount", "unit_amount", "unit_amount_decimal") if p in params]
        if not given:
            raise StripeError(
                400,
                "You must specify either `amount`, `price`, `price_data`, `unit_amount`, or `unit_amount_decimal`.",
                code="parameter_missing",
                param="amount",
            )
        if len(given) > 1:
            raise StripeError(400, f"You may only specify one of these parameters: {', '.join(given)}.", param=given[1])
        if "amount" in params and "quantity" in params:
            raise StripeError(400, "You may only specify one of these parameters: amount, quantity.", param="quantity")
        currency = params.get("currency")
        if not currency:
            raise StripeError(400, "Missing required param: currency.", code="parameter_missing", param="currency")
        if not re.fullmatch(r"[a-z]{3}", currency):
            raise StripeError(
                400, f"Invalid currency: {currency}. Stripe currencies are three lower-case letters.", param="currency"
            )
        if invoice is not None and currency != invoice["currency"]:
            raise StripeError(
                400,
                f"The currency of the invoice item ({currency}) must match the currency of the invoice "
                f"({invoice['currency']}).",
                param="currency",
            )
        quantity = _int(params.get("quantity", 1), "quantity", minimum=0)
        unit_amount = unit_dec = None
        if "amount" in params:
            amount = _int(params["amount"], "amount")
        elif "unit_amount" in params:
            unit_amount = _int(params["unit_amount"], "unit_amount")
            unit_dec = str(unit_amount)
            amount = unit_amount * quantity
        else:
            try:
                dec = Decimal(str(params["unit_amount_decimal"]))
            except InvalidOperation:
                raise StripeError(
                    400, f"Invalid decimal: {params['unit_amount_decimal']}", param="unit_amount_decimal"
                ) from None
            exponent = dec.as_tuple().exponent
            if not isinstance(exponent, int) or -exponent > 12:  # not finite, or more than 12 decimals
                raise StripeError(
                    400, "unit_amount_decimal can have at most 12 decimal places", param="unit_amount_decimal"
                )
            unit_dec = params["unit_amount_decimal"]
            amount = _round(dec * quantity)
            unit_amount = int(dec) if dec == dec.to_integral_value() else None
        if abs(amount) > MAX_AMOUNT_MINOR:
            raise StripeError(
                400,
                f"Invalid integer: amount must be no more than {MAX_AMOUNT_MINOR}",
                code="amount_too_large",
                param="amount",
            )
        if currency.upper() in THREE_DECIMAL and amount % 10:
            raise StripeError(
                400, f"Amounts in {currency} must be a multiple of 10 (the last digit must be 0).", param="amount"
            )
        rates = params.get("tax_rates") or []
        if rates == "":
            rates = []
        if not isinstance(rates, list):
            raise StripeError(400, "Invalid array", param="tax_rates")
        if len(rates) > 10:
            raise StripeError(400, "You can add up to 10 tax rates per invoice item.", param="tax_rates")
        for i, rid in enumerate(rates):
            rate = self._tax_rates.get(rid)
            if rate is None:
                raise _missing("tax_rate", rid, f"tax_rates[{i}]")
            if not rate["active"]:
                raise StripeError(400, f"Tax rate {rid} is archived and cannot be applied.", param=f"tax_rates[{i}]")
        description = params.get("description")
        if description is not None:
            _str(description, "description")
        return self._new_item(
            customer["id"],
            invoice,
            amount,
            currency,
            description,
            rates,
            _metadata(params.get("metadata") or {}),
            unit_amount,
            unit_dec,
            quantity,
        )

    def _render_item(self, item: dict) -> dict:
        out = self._public(item)
        out["tax_rates"] = [self._public(self._tax_rates[r]) for r in item["tax_rates"]]
        return out

    # ------------------------------------------------------------------ invoices
    def _create_invoice(self, params: dict) -> dict:
        customer = self._customer_param(params)
        for unsupported in (
            "subscription",
            "from_invoice",
            "discounts",
            "automatic_tax",
            "transfer_data",
            "on_behalf_of",
            "shipping_cost",
            "application_fee_amount",
        ):
            if unsupported in params:
                raise StripeError(400, f"The emulator does not support {unsupported}", param=unsupported)
        method = params.get("collection_method", "charge_automatically")
        if method not in ("charge_automatically", "send_invoice"):
            raise StripeError(400, f"Invalid collection_method: {method}", param="collection_method")
        days = params.get("days_until_due")
        due_date = params.get("due_date")
        if method == "send_invoice" and days is None and due_date is None:
            raise StripeError(
                400,
                "Invoices with `collection_method=send_invoice` must have either `days_until_due` or `due_date` set.",
                param="days_until_due",
            )
        if method == "charge_automatically" and (days is not None or due_date is not None):
            raise StripeError(
                400,
                "`days_until_due` and `due_date` can only be set when `collection_method=send_invoice`.",
                param="days_until_due" if days is not None else "due_date",
            )
        currency = params.get("currency") or customer.get("currency") or self.default_currency
        if not re.fullmatch(r"[a-z]{3}", currency):
            raise StripeError(400, f"Invalid currency: {currency}", param="currency")
        behavior = params.get("pending_invoice_items_behavior", "exclude")
        if behavior not in ("exclude", "include", "include_and_require"):
            raise StripeError(
                400, f"Invalid pending_invoice_items_behavior: {behavior}", param="pending_invoice_items_behavior"
            )
        custom_fields = params.get("custom_fields") or []
        if custom_fields == "":
            custom_fields = []
        if len(custom_fields) > 4:
            raise StripeError(400, "You can have at most 4 custom fields", param="custom_fields")
        now = int(time.time())
        inv = {
            "id": _new_id("in_"),
            "object": "invoice",
            "account_country": "PT",
            "account_name": ACCOUNT_NAME,
            "amount_paid": 0,
            "attempt_count": 0,
            "attempted": False,
            "auto_advance": _bool(params.get("auto_advance", "false"), "auto_advance"),
            "billing_reason": "manual",
            "collection_method": method,
            "created": now,
            "currency": currency,
            "custom_fields": custom_fields or None,
            "customer": customer["id"],
            "customer_email": customer.get("email"),
            "customer_name": customer.get("name"),
            "default_tax_rates": [],
            "description": params.get("description"),
            "discount": None,
            "discounts": [],
            "due_date": _int(due_date, "due_date") if due_date is not None else None,
            "effective_at": _int(params["effective_at"], "effective_at") if "effective_at" in params else None,
            "ending_balance": None,
            "footer": params.get("footer"),
            "hosted_invoice_url": None,
            "invoice_pdf": None,
            "livemode": self.livemode,
            "metadata": _metadata(params.get("metadata") or {}),
            "number": None,
            "paid": False,
            "paid_out_of_band": False,
            "period_end": now,
            "period_start": now,
            "status": "draft",
            "status_transitions": {
                "finalized_at": None,
                "marked_uncollectible_at": None,
                "paid_at": None,
                "voided_at": None,
            },
            "subscription": None,
            "test_clock": None,
            "webhooks_delivered_at": None,
            "_days_until_due": _int(days, "days_until_due", minimum=0) if days is not None else None,
            "_items": [],
            "_seq": self._next_seq(),
            "_frozen": None,
        }
        if behavior != "exclude":
            pending = sorted(
                (
                    i
                    for i in self._items.values()
                    if i["customer"] == customer["id"] and i["invoice"] is None and i["currency"] == currency
                ),
                key=lambda i: i["_seq"],
            )
            if behavior == "include_and_require" and not pending:
                raise StripeError(
                    400, "Nothing to invoice for customer", code="invoice_no_customer_line_items", param="customer"
                )
            for item in pending:
                item["invoice"] = inv["id"]
                inv["_items"].append(item["id"])
        self._touch(inv)
        self._invoices[inv["id"]] = inv
        return inv

    def _update_invoice(self, inv: dict, params: dict) -> dict:
        for key in params:
            if key == "metadata":
                continue
            if inv["status"] != "draft":
                raise StripeError(
                    400,
                    f"Finalized invoices can't be updated in this way: {key} can only be changed on drafts",
                    code="invoice_not_editable",
                    param=key,
                )
            if key not in ("description", "footer", "custom_fields", "auto_advance", "days_until_due", "expand"):
                raise StripeError(400, f"The emulator does not support updating {key}", param=key)
        if "metadata" in params:
            inv["metadata"] = _metadata(params["metadata"], inv["metadata"])
        if "description" in params:
            inv["description"] = params["description"]
        if "auto_advance" in params:
            inv["auto_advance"] = _bool(params["auto_advance"], "auto_advance")
        self._touch(inv)
        return inv

    def _delete_invoice(self, inv: dict) -> dict:
        if inv["status"] != "draft":
            raise StripeError(400, "You can only delete draft invoices.", code="invoice_not_editable")
        for item_id in inv["_items"]:
            self._items.pop(item_id, None)
        del self._invoices[inv["id"]]
        return {"id": inv["id"], "object": "invoice", "deleted": True}

    def _finalize(self, inv: dict, params: dict) -> dict:
        if inv["status"] != "draft":
            raise StripeError(
                400,
                "This invoice is already finalized, you can't re-finalize a non-draft invoice.",
                code="invoice_not_editable",
            )
        if "auto_advance" in params:
            inv["auto_advance"] = _bool(params["auto_advance"], "auto_advance")
        totals = self._totals(inv)
        now = int(time.time())
        customer = self._customers[inv["customer"]]
        self._number_seq[customer["id"]] = self._number_seq.get(customer["id"], 0) + 1
        inv["number"] = f"{customer['invoice_prefix']}-{self._number_seq[customer['id']]:04d}"
        inv["status"] = "open"
        inv["status_transitions"]["finalized_at"] = now
        inv["effective_at"] = inv["effective_at"] or now
        if inv["collection_method"] == "send_invoice" and inv["due_date"] is None:
            inv["due_date"] = now + 86400 * int(inv["_days_until_due"] or 0)
        inv["hosted_invoice_url"] = f"{self.url}/i/{inv['id']}"
        inv["invoice_pdf"] = f"{self.url}/i/{inv['id']}/pdf"
        inv["_frozen"] = {"starting_balance": customer["balance"], "amount_due": totals["amount_due"]}
        inv["ending_balance"] = min(
            0, totals["total"] + customer["balance"]
        )  # a credit left over stays on the customer
        customer["balance"] = inv["ending_balance"]
        if totals["amount_due"] == 0:
            inv["status"] = "paid"
            inv["paid"] = True
            inv["status_transitions"]["paid_at"] = now
        self._touch(inv)
        return inv

    def _send(self, inv: dict) -> dict:
        if inv["collection_method"] != "send_invoice":
            raise StripeError(400, "You can only manually send an invoice if its collection method is 'send_invoice'.")
        if inv["status"] != "open":
            raise StripeError(
                400, f"You can only send open invoices; this invoice is {inv['status']}.", code="invoice_not_editable"
            )
        customer = self._customers[inv["customer"]]
        if not customer.get("email"):
            raise StripeError(
                400,
                f"Customer {customer['id']} has no email address, so the invoice cannot be sent.",
                code="email_invalid",
                param="customer",
            )
        self.emails.append(
            {
                "invoice": inv["id"],
                "number": inv["number"],
                "to": customer["email"],
                "amount_due": self._totals(inv)["amount_due"],
                "currency": inv["currency"],
            }
        )
        self._touch(inv)
        return inv

    def _void(self, inv: dict) -> dict:
        """``POST /v1/invoices/{id}/void``: only ``open`` or ``uncollectible`` invoices
        (https://docs.stripe.com/invoicing/integration/workflow-transitions); a draft or a paid one gets
        Stripe's 400 "You can only pass in open invoices. This invoice isn't open." (as observed in
        https://dev.classmethod.jp/articles/stripe-void-invoice-with-any-status). The customer balance
        the invoice consumed at finalisation goes back to the customer."""
        if inv["status"] not in ("open", "uncollectible") or inv.get("_amount_paid", 0):
            raise StripeError(400, "You can only pass in open invoices. This invoice isn't open.")
        customer = self._customers[inv["customer"]]
        customer["balance"] += inv["_frozen"]["starting_balance"] - inv["ending_balance"]
        inv["status"] = "void"
        inv["status_transitions"]["voided_at"] = int(time.time())
        self._touch(inv)
        self._event("invoice.voided", self._render_invoice(inv))
        return inv

    def _pay(self, inv: dict, params: dict) -> dict:
        """``POST /v1/invoices/{id}/pay``: the emulator records out-of-band payments only (``paid_out_of_band``)."""
        for key in params:
            if key not in ("paid_out_of_band", "expand"):
                raise StripeError(400, f"The emulator does not support {key} when paying an invoice", param=key)
        if not _bool(params.get("paid_out_of_band", "false"), "paid_out_of_band"):
            raise StripeError(
                400, "The emulator has no payment methods: pay with paid_out_of_band=true", param="paid_out_of_band"
            )
        if inv["status"] == "paid":
            raise StripeError(400, "Invoice is already paid", code="invoice_already_paid")
        if inv["status"] not in ("open", "uncollectible"):
            raise StripeError(
                400,
                f"You can only pay an open or uncollectible invoice; this invoice is {inv['status']}.",
                code="invoice_not_editable",
            )
        inv["_amount_paid"] = inv.get("_amount_paid", 0) + self._render_invoice(inv)["amount_remaining"]
        inv["paid_out_of_band"] = True
        self._settle(inv)
        return inv

    def _settle(self, inv: dict) -> None:
        inv["status"], inv["paid"] = "paid", True
        inv["status_transitions"]["paid_at"] = int(time.time())
        self._touch(inv)
        self._event("invoice.paid", self._render_invoice(inv))

    def _create_credit_note(self, params: dict) -> dict:
        """``POST /v1/credit_notes`` (spec ``PostCreditNotes``) with ``amount`` (the emulator takes no ``lines``).

        The part up to the invoice's ``amount_remaining`` reduces its ``amount_due`` (pre-payment; an open
        invoice left with nothing due is paid); the rest (post-payment) must be split exactly into
        ``credit_amount`` (to the customer's balance) and ``out_of_band_amount``. At most the invoice's
        total minus what earlier credit notes credited.
        """
        for unsupported in ("lines", "shipping_cost", "refund", "refund_amount"):
            if unsupported in params:
                raise StripeError(
                    400, f"The emulator does not support {unsupported} on credit notes", param=unsupported
                )
        ident = params.get("invoice")
        if not ident:
            raise StripeError(400, "Missing required param: invoice.", code="parameter_missing", param="invoice")
        inv = self._invoices.get(ident)
        if inv is None:
            raise _missing("invoice", ident, "invoice")
        if inv["status"] not in ("open", "paid", "uncollectible"):
            raise StripeError(
                400,
                f"Credit notes can only be issued for finalized invoices that are not void; invoice {ident} is "
                f"{inv['status']}.",
                code="invoice_not_editable",
                param="invoice",
            )
        if "amount" not in params:
            raise StripeError(
                400,
                "One of amount, lines, or shipping_cost must be provided.",
                code="parameter_missing",
                param="amount",
            )
        amount = _int(params["amount"], "amount", minimum=1)
        rendered = self._render_invoice(inv)
        total = rendered["total"]
        creditable = total - inv.get("_pre_credit", 0) - inv.get("_post_credit", 0)
        if amount > creditable:
            raise StripeError(
                400,
                f"The credit note amount ({amount}) exceeds what is left to credit on invoice {ident} ({creditable}).",
                param="amount",
            )
        pre = min(amount, rendered["amount_remaining"]) if inv["status"] != "paid" else 0
        post = amount - pre
        credit = _int(params.get("credit_amount", 0), "credit_amount", minimum=0)
        out_of_band = _int(params.get("out_of_band_amount", 0), "out_of_band_amount", minimum=0)
        if credit + out_of_band != post:
            raise StripeError(
                400,
                f"The sum of credit_amount ({credit}), refund_amount (0) and out_of_band_amount ({out_of_band}) must "
                f"equal the credit note's post-payment amount ({post}).",
                param="credit_amount",
            )
        customer = self._customers[inv["customer"]]
        inv["_pre_credit"] = inv.get("_pre_credit", 0) + pre
        inv["_post_credit"] = inv.get("_post_credit", 0) + post
        if pre and inv["status"] != "paid" and self._render_invoice(inv)["amount_remaining"] == 0:
            self._settle(inv)
        customer["balance"] -= credit
        tax = _round(Decimal(rendered["tax"] or 0) * amount / total) if total else 0
        excl_tax = _round(Decimal(total - rendered["subtotal"]) * amount / total) if total else 0
        now = int(time.time())
        count = sum(1 for n in self._credit_notes.values() if n["invoice"] == ident) + 1
        number = f"{inv['number']}-CN-{count:02d}"
        note_id = _new_id("cn_")
        note: dict[str, Any] = {
            "id": note_id,
            "object": "credit_note",
            "amount": amount,
            "amount_shipping": 0,
            "created": now,
            "currency": inv["currency"],
            "customer": inv["customer"],
            "customer_balance_transaction": _new_id("cbtxn_") if credit else None,
            "discount_amount": 0,
            "discount_amounts": [],
            "effective_at": _int(params["effective_at"], "effective_at") if "effective_at" in params else now,
            "invoice": ident,
            "lines": {
                "object": "list",
                "data": [
                    {
                        "id": _new_id("cnli_"),
                        "object": "credit_note_line_item",
                        "amount": amount - excl_tax,
                        "amount_excluding_tax": amount - tax,
                        "description": "Credit",
                        "discount_amount": 0,
                        "discount_amounts": [],
                        "invoice_line_item": None,
                        "livemode": self.livemode,
                        "quantity": 1,
                        "tax_amounts": [],
                        "tax_rates": [],
                        "type": "custom_line_item",
                        "unit_amount": amount - excl_tax,
                        "unit_amount_decimal": str(amount - excl_tax),
                        "unit_amount_excluding_tax": str(amount - tax),
                    }
                ],
                "has_more": False,
                "url": f"/v1/credit_notes/{note_id}/lines",
            },
            "livemode": self.livemode,
            "memo": params.get("memo"),
            "metadata": _metadata(params.get("metadata") or {}),
            "number": number,
            "out_of_band_amount": out_of_band or None,
            "pdf": f"{self.url}/cn/{note_id}/pdf",
            "reason": params.get("reason"),
            "refund": None,
            "shipping_cost": None,
            "status": "issued",
            "subtotal": amount - excl_tax,
            "subtotal_excluding_tax": amount - tax,
            "tax_amounts": [],
            "total": amount,
            "total_excluding_tax": amount - tax,
            "type": "pre_payment" if pre else "post_payment",
            "voided_at": None,
            "_seq": self._next_seq(),
        }
        self._touch(note)
        self._credit_notes[note_id] = note
        self._touch(inv)
        return note

    def _line(self, item: dict) -> tuple[dict, list[tuple[str, bool, int]]]:
        taxes = []
        exclusive = inclusive = 0
        for rid in item["tax_rates"]:
            rate = self._tax_rates[rid]
            pct = rate["percentage"]
            base = Decimal(item["amount"]) * pct
            if rate["inclusive"]:
                tax = _round(base / (Decimal(100) + pct))
                inclusive += tax
            else:
                tax = _round(base / Decimal(100))
                exclusive += tax
            taxes.append((rid, rate["inclusive"], tax))
        line = {
            "id": "il_" + item["id"][3:],
            "object": "line_item",
            "amount": item["amount"],
            "amount_excluding_tax": item["amount"] - inclusive,
            "currency": item["currency"],
            "description": item["description"],
            "discount_amounts": [],
            "discountable": True,
            "discounts": [],
            "invoice_item": item["id"],
            "livemode": self.livemode,
            "metadata": copy.deepcopy(item["metadata"]),
            "period": copy.deepcopy(item["period"]),
            "price": None,
            "proration": False,
            "proration_details": {"credited_items": None},
            "quantity": item["quantity"],
            "subscription": None,
            "tax_amounts": [
                {
                    "amount": tax,
                    "inclusive": incl,
                    "tax_rate": rid,
                    "taxability_reason": None,
                    "taxable_amount": item["amount"] - inclusive,
                }
                for rid, incl, tax in taxes
            ],
            "tax_rates": [self._public(self._tax_rates[r]) for r in item["tax_rates"]],
            "type": "invoiceitem",
            "unit_amount_excluding_tax": str(Decimal(item["amount"] - inclusive) / item["quantity"])
            if item["quantity"]
            else "0",
        }
        return line, taxes

    def _totals(self, inv: dict) -> dict:
        lines: list[dict] = []
        per_rate: dict[tuple[str, bool], int] = {}
        subtotal = tax = exclusive = inclusive = 0
        for item_id in inv["_items"]:
            line, taxes = self._line(self._items[item_id])
            lines.append(line)
            subtotal += line["amount"]
            for rid, incl, amount in taxes:
                tax += amount
                if incl:
                    inclusive += amount
                else:
                    exclusive += amount
                per_rate[(rid, incl)] = per_rate.get((rid, incl), 0) + amount
        total = subtotal + exclusive
        if inv["_frozen"] is not None:
            starting = inv["_frozen"]["starting_balance"]
            amount_due = inv["_frozen"]["amount_due"] - inv.get("_pre_credit", 0)
        else:
            starting = self._customers[inv["customer"]]["balance"]
            amount_due = max(0, total + starting)
        return {
            "lines": lines,
            "subtotal": subtotal,
            "tax": tax,
            "total": total,
            "excl": subtotal - inclusive,
            "starting_balance": starting,
            "amount_due": amount_due,
            "total_tax_amounts": [
                {"amount": a, "inclusive": i, "tax_rate": r, "taxability_reason": None, "taxable_amount": None}
                for (r, i), a in per_rate.items()
            ],
        }

    def _render_invoice(self, inv: dict, all_lines: bool = False) -> dict:
        t = self._totals(inv)
        out = self._public(inv)
        paid = inv["status"] == "paid"
        amount_paid = inv.get("_amount_paid", 0)
        out.update(
            {
                "subtotal": t["subtotal"],
                "subtotal_excluding_tax": t["excl"],
                "tax": t["tax"] if inv["_items"] else None,
                "total": t["total"],
                "total_excluding_tax": t["excl"],
                "total_tax_amounts": t["total_tax_amounts"],
                "total_discount_amounts": [],
                "starting_balance": t["starting_balance"],
                "amount_due": t["amount_due"],
                "amount_paid": amount_paid,
                "amount_remaining": 0 if paid else t["amount_due"] - amount_paid,
                "pre_payment_credit_notes_amount": inv.get("_pre_credit", 0),
                "post_payment_credit_notes_amount": inv.get("_post_credit", 0),
                "lines": {
                    "object": "list",
                    "data": t["lines"] if all_lines else t["lines"][:10],
                    "has_more": False if all_lines else len(t["lines"]) > 10,
                    "total_count": len(t["lines"]),
                    "url": f"/v1/invoices/{inv['id']}/lines",
                },
            }
        )
        return out

    # ------------------------------------------------------------------ control API
    def _admin_routes(self) -> dict[tuple[str, str], AdminRoute]:
        return {
            **super()._admin_routes(),
            ("GET", "/_emulator/invoices"): lambda _req: _json(200, self.invoices()),
            ("GET", "/_emulator/customers"): lambda _req: _json(200, self.customers()),
            ("GET", "/_emulator/tax_rates"): lambda _req: _json(200, self.tax_rates()),
            ("GET", "/_emulator/invoiceitems"): lambda _req: _json(200, self.invoice_items()),
            ("GET", "/_emulator/emails"): lambda _req: self._emails(),
            ("GET", "/_emulator/credit_notes"): lambda _req: _json(200, self.credit_notes()),
            ("POST", "/_emulator/payments"): self._admin_payment,
            ("POST", "/_emulator/partial-payments"): lambda req: self.admin_action(
                req,
                lambda doc: self.mark_partially_paid(str(doc["invoice"]), int(doc["amount"])),
                refused="payment refused",
            ),
            ("POST", "/_emulator/webhooks"): lambda req: self.admin_action(
                req, self._admin_webhooks, refused="bad webhook settings"
            ),
            ("GET", "/_emulator/webhooks"): lambda _req: _json(
                200, {"deliveries": [list(d) for d in self.webhooks.deliveries], "sent": len(self.webhooks.sent)}
            ),
            ("POST", "/_emulator/webhooks/redeliver"): lambda req: self.admin_action(
                req, lambda doc: {"redelivered": self.webhooks.redeliver(int(doc.get("index", -1)))}, refused="nothing"
            ),
            ("GET", "/_emulator/balance"): lambda req: _json(
                200, {"balance": self.balance_minor(req.query.get("customer") or None)}
            ),
            ("POST", "/_emulator/expire-tokens"): lambda _req: _json(
                200, {"ok": True, "note": "Stripe uses static API keys; nothing to expire"}
            ),
        }

    def _admin_payment(self, req: Request) -> Response:
        """``POST /_emulator/payments`` ``{"invoice": "in_...", "amount": 1234 (optional, minor units)}``."""
        try:
            doc = json.loads(req.body or b"{}")
            amount = doc.get("amount")
            inv = self.mark_paid(str(doc["invoice"]), None if amount is None else int(amount))
        except (ValueError, KeyError, TypeError) as exc:
            return _json(400, {"error": f"payment refused: {exc}"})
        return _json(200, inv)

    def _admin_webhooks(self, doc: dict[str, Any]) -> dict[str, Any]:
        """``POST /_emulator/webhooks`` ``{"url", "secret"}`` (both optional): where webhooks go, what signs them."""
        if doc.get("secret"):
            self.webhook_secret = str(doc["secret"])
        return self.webhooks.configure(doc)

    def _emails(self) -> Response:
        with self._lock:
            return _json(200, list(self.emails))


def serve(host: str = "127.0.0.1", port: int = 0, *, spec_path: str | None = None, **kwargs: Any) -> None:
    """Run an emulator in the foreground until Ctrl-C, printing its URL and the demo API key."""
    if spec_path:
        from connectors.stripe.spec import make_request_validator

        kwargs["request_validator"] = make_request_validator(spec_path)
    emulator = StripeEmulator(host=host, port=port, **kwargs).start()
    serve_until_interrupted(
        emulator,
        [
            f"Stripe emulator listening on {emulator.url}",
            f"  api_url    : {emulator.url}",
            f"  secret key : {next(iter(emulator.api_keys))}   (export STRIPE_SECRET_KEY=...)",
        ],
    )


__all__ = ["DEFAULT_API_KEY", "DEFAULT_WEBHOOK_SECRET", "FAULT_KINDS", "StripeEmulator", "StripeError", "serve"]
