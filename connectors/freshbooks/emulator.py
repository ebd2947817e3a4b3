"""A loopback emulator of FreshBooks (OAuth2 token endpoint, identity, Accounting API subset).

Behaves like the real service where the broker depends on it. Sources: ``/work/shared/billing-apis.md``
§5, the official SDK (``freshbooks-python-sdk``: examples, ``making_calls`` guide, test fixtures),
FreshBooks support pages, and the community field reference ``tests/specs/freshbooks/openapi.yaml``.
Where FreshBooks documents nothing, the emulator picks the *harsher* plausible behaviour and says so.

* ``GET /oauth/authorize`` (auth.freshbooks.com) – consents at once and redirects (302) to a loopback
  ``redirect_uri`` with ``code``; ``grant_type=authorization_code`` exchanges it (single use).
  Tokens carry ``scopes`` (:data:`DEFAULT_SCOPES`); a call without the scope it needs
  (``user:invoices:write`` to create...) is refused 403 ``insufficient_scope``.
* ``POST /auth/oauth/token`` – ``grant_type=refresh_token`` with ``client_id``/``client_secret`` in the
  body (form or JSON, as the SDK posts them). Access tokens last ``access_token_ttl`` (12 h);
  refresh tokens are **single-use**: the rotated one is invalid at once (billing-apis.md §5), so
  two workers spending the same token lose one tenant's access — refreshes must be single-flight
  (``refresh_grace_seconds`` > 0 keeps a spent token usable that long, for test set-ups whose
  connectors do not share a token store).
  Errors (Doorkeeper): 401 ``invalid_client``, 400 ``invalid_grant`` / ``unsupported_grant_type``.
* ``GET /auth/api/v1/users/me`` – the identity with ``business_memberships[].business.account_id``.
* ``/accounting/account/{accountId}/invoices/invoices`` ``GET`` (list: ``search[invoice_number]``,
  ``search[invoiceids][]``, ``search[customerid]``, ``page``, ``per_page`` ≤ 100, ``include[]=lines``;
  unknown ``search[...]`` keys are ignored, as list filters usually are, so a misspelt filter
  returns everything) and ``POST`` (create, always a **draft**); ``GET``/``PUT .../invoices/{id}``
  (update: ``action_mark_as_sent``, ``action_email`` + ``email_recipients``, ``vis_state``).
  ``/accounting/account/{accountId}/users/clients`` ``GET`` (``search[email]``,
  ``search[organization_like]``) and ``POST``.
* Bearer token required: 401 ``{"error": "unauthenticated", ...}`` (SDK fixture). An account the
  token cannot reach: 403. Errors otherwise: ``{"response": {"errors": [{"errno", "field",
  "message", "object", "value"}]}}`` — 404 ``errno`` 1012 "Client not found." (SDK docs), 422 for
  validation (``errno`` values other than 1012 are the emulator's own: FreshBooks publishes no table).
* **Invoice numbers are unique in the account, including deleted invoices** (FreshBooks support:
  "you can not use the same invoice # more than once ... active, archived, and deleted"): 422 on
  ``invoice_number``. No idempotency key exists.
* Totals: line ``amount`` = ``qty × unit_cost`` rounded half-up to the cent; ``unit_cost.amount`` is
  kept to 2 decimals (more are rounded half-up — the spec says "to two decimal places"); tax per
  line = ``amount × taxAmountN / 100`` rounded half-up; invoice ``amount`` = Σ amounts + Σ taxes.
* Field limits (assumed, as in :data:`connectors.freshbooks.mapper.FIELD_LIMITS`) -> 422. ``notes`` and
  ``terms`` are kept and returned (both printed on the invoice).
* **Deleting** (https://www.freshbooks.com/api/invoices): ``PUT .../invoices/{id}`` with
  ``{"invoice": {"vis_state": 1}}``; the invoice stays (``GET`` by id still answers it, with ``vis_state``
  1), lists leave it out and its number stays taken. FreshBooks has no void. An invoice with a payment
  cannot be deleted (422 ``errno`` 2010: the emulator's harsher choice — FreshBooks' UI deletes the
  payments with it).
* **Payments** are recorded by the admin action :meth:`FreshBooksEmulator.pay` (as when the client pays):
  ``paid`` rises, ``outstanding`` falls, ``v3_status``/``payment_status`` become ``partial`` or ``paid``
  (status 8 / 4, per the invoice status table); never more than ``outstanding``.
* **Credit notes** (https://www.freshbooks.com/api/credits; scopes ``user:credit_notes:read``/``write``):
  ``/accounting/account/{accountId}/credit_notes/credit_notes`` ``GET`` (list: ``search[clientid]``,
  ``page``, ``per_page``, ``include[]=lines``; deleted ones left out), ``POST`` (``{"credit_note":
  {clientid, create_date, credit_number, credit_type, currency_code, language, notes, terms, lines}}``;
  lines computed like invoice lines; ``credit_number`` unique in the account, deleted ones included,
  like invoice numbers — an assumption: 422), ``GET``/``PUT .../{creditid}`` (``vis_state``). A credit note
  is never applied to an invoice by the emulator: its whole ``amount`` stays the client's credit.
* **Balance** (:meth:`FreshBooksEmulator.balance`): Σ ``outstanding`` of the active invoices that are not
  drafts (FreshBooks: drafts are not recognised by accounting reports until sent) − Σ ``amount`` of the
  active credit notes.
* No published rate limit: ``rate_limit_per_minute`` (default ``None`` = unlimited) emulates one,
  answering 429 with ``Retry-After``.

Test hooks: ``request_validator`` (:mod:`connectors.freshbooks.spec`), :meth:`FreshBooksEmulator.inject_fault`,
:meth:`FreshBooksEmulator.expire_access_tokens`, and the kit's control API (:mod:`connectors.sandbox.emulator`;
its ``stats`` add ``invoice_count``, ``refresh_token_uses`` and ``emails``) with two listings::

    GET  /_emulator/invoices     -> [invoice, ...] (every account, with "lines" and "account_id")
    GET  /_emulator/clients      -> [client, ...]
    GET  /_emulator/credit_notes -> [credit note, ...]
    POST /_emulator/payments     {"account_id", "invoiceid", "amount"?} -> the payment ("mark paid")
    POST /_emulator/plant        {"account_id", "invoice": {...}}      -> an invoice made outside the broker
    POST /_emulator/balance      {"account_id", "customerid"?}         -> {"balance": "12.30"}
    GET  /_emulator/webhooks     -> {"deliveries": [[event, status, attempt], ...], "sent": n}
    POST /_emulator/webhooks/redeliver {"index": -1}   (the same delivery again, as FreshBooks retries)

Webhooks (https://www.freshbooks.com/api/webhooks, ``shared/billing-apis.md`` § 5, the SDK's webhook guide):
``POST /events/account/{accountId}/events/callbacks`` ``{"callback": {"event", "uri"}}`` registers a callback
(``event``: ``payment.create`` or a whole noun, ``payment``) and POSTs ``name=callback.verify`` with the
``verifier`` (``webhook_verifier``; FreshBooks makes one per callback) to the URI; ``PUT …/callbacks/{id}``
``{"callback": {"verifier"}}`` verifies it (422 when it differs), ``{"callback": {"resend": true}}`` sends the
verification again; ``GET …/callbacks`` lists them; ``DELETE …/callbacks/{id}``. Only **verified** callbacks
receive events: a payment (:meth:`FreshBooksEmulator.pay`) is ``payment.create`` (``object_id`` = the
payment) and ``invoice.update`` (the invoice); deleting an invoice is ``invoice.delete``. Deliveries are
form-encoded (``name``, ``object_id``, ``account_id``, ``business_id``, ``identity_id``, ``user_id``) with
``X-FreshBooks-Hmac-SHA256`` = Base64(HMAC-SHA256(verifier, ``json.dumps`` of the fields)).
``GET /accounting/account/{accountId}/payments/payments/{id}`` answers a payment (``invoiceid``, ``amount``).
"""

from __future__ import annotations

import base64
import copy
import hashlib
import hmac
import json
import math
import re
import sys
import time
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from datetime import UTC, date, datetime, timedelta
from decimal import Decimal
from typing import Any
from urllib.parse import parse_qs, unquote, urlencode

from connectors.freshbooks.mapper import FIELD_LIMITS
from connectors.sandbox.emulator import AdminRoute, Emulator, RequestValidator, serve_until_interrupted, stored_objects
from connectors.sandbox.faults import FAULT_KINDS, Fault, FaultQueue
from connectors.sandbox.http import Request, Response, html_response, json_response, loads_decimal
from connectors.sandbox.limits import Concurrency, Window
from connectors.sandbox.oauth import TokenHolder, Tokens, bearer, consent, form_of, secret_ok
from connectors.sandbox.values import cents as _q2
from connectors.sandbox.values import decimal_or_none
from connectors.sandbox.webhooks import WebhookSender

DEFAULT_ACCOUNT_ID = "ZkR9mQ"
DEFAULT_BUSINESS_ID = 4390001
#: The verifier the emulator gives every callback (FreshBooks makes a random one per callback).
DEFAULT_VERIFIER = "demo-freshbooks-verifier"
#: Scopes granted to new tokens (FreshBooks OAuth scopes used by the connector).
DEFAULT_SCOPES = (
    "user:profile:read",
    "user:invoices:read",
    "user:invoices:write",
    "user:clients:read",
    "user:clients:write",
    "user:credit_notes:read",
    "user:credit_notes:write",
    "user:payments:read",
)
#: Seed clients of every account: userid -> fields.
DEFAULT_CLIENTS: dict[int, dict[str, Any]] = {
    31007: {
        "organization": "Hotel Atlântico Lisboa, S.A.",
        "email": "contas@hotel-atlantico.example",
        "vat_number": "PT500100200",
    },
    31008: {"organization": "Clínica do Parque, Lda.", "email": None},
}

_CREATE_FIELDS = frozenset(
    {
        "customerid",
        "create_date",
        "due_offset_days",
        "invoice_number",
        "po_number",
        "currency_code",
        "language",
        "terms",
        "notes",
        "address",
        "street",
        "street2",
        "city",
        "province",
        "code",
        "country",
        "organization",
        "fname",
        "lname",
        "vat_name",
        "vat_number",
        "lines",
        "discount_value",
        "discount_description",
        "status",
        "ownerid",
        "estimateid",
        "template",
        "presentation",
        "deposit_percentage",
        "gmail",
        "show_attachments",
        "generation_date",
        "parent",
        "sentid",
        "display_status",
        "autobill_status",
        "payment_status",
        "last_order_status",
        "dispute_status",
        "deposit_status",
        "auto_bill",
        "v3_status",
        "deposit_amount",
        "vis_state",
        "attachments",
    }
)
_LINE_FIELDS = frozenset(
    {"type", "expenseid", "qty", "unit_cost", "description", "name", "taxName1", "taxAmount1", "taxName2", "taxAmount2"}
)
#: Writable credit note fields and credit line fields (https://www.freshbooks.com/api/credits).
_CREDIT_FIELDS = frozenset(
    {
        "credit_number",
        "currency_code",
        "create_date",
        "notes",
        "credit_type",
        "terms",
        "language",
        "lines",
        "clientid",
    }
)
_CREDIT_LINE_FIELDS = frozenset(
    {"name", "description", "qty", "unit_cost", "taxName1", "taxAmount1", "taxName2", "taxAmount2", "compounded_tax"}
)
_CREDIT_TYPES = ("goodwill", "prepayment")
_UPDATE_ACTIONS = frozenset(
    {
        "action_mark_as_sent",
        "action_email",
        "email_recipients",
        "email_include_pdf",
        "invoice_customized_email",
        "vis_state",
    }
)


def _money(amount: Decimal, code: str) -> dict[str, str]:
    return {"amount": format(_q2(amount), "f"), "code": code}


def _eastern_now() -> str:
    """FreshBooks accounting timestamps: zone-naive ``YYYY-MM-DD HH:MM:SS`` in US/Eastern (SDK docs)."""
    return (datetime.now(UTC) - timedelta(hours=5)).strftime("%Y-%m-%d %H:%M:%S")


class FbError(Exception):
    """One FreshBooks error element; answered as ``{"response": {"errors": [...]}}``."""

    def __init__(self, errno: int, field: str, message: str, value: Any = "", obj: str = "invoice", status: int = 422):
        super().__init__(message)
        self.errno, self.field, self.message, self.value, self.obj, self.status = (
            errno,
            field,
            message,
            value,
            obj,
            status,
        )

    def element(self) -> dict[str, Any]:
        value = self.value if isinstance(self.value, (str, int)) else json.dumps(self.value, default=str)
        return {"errno": self.errno, "field": self.field, "message": self.message, "object": self.obj, "value": value}


class _ValidationError(Exception):
    """Several errors of one request (answered as one ``{"response": {"errors": [...]}}``)."""

    def __init__(self, errors: list[FbError]):
        super().__init__("; ".join(e.message for e in errors))
        self.errors = errors


def _errors_response(errors: list[FbError]) -> Response:
    status = errors[0].status if errors else 422
    return json_response(status, {"response": {"errors": [e.element() for e in errors]}})


def _required(field: str) -> FbError:
    return FbError(2001, field, f"Field {field} is required.")


def _invalid(field: str, value: Any, why: str = "Invalid value.") -> FbError:
    return FbError(2002, field, why, value)


def _too_long(field: str, value: str, limit: int) -> FbError:
    return FbError(2003, field, f"{field} must be at most {limit} characters (got {len(value)}).", value[:40])


@dataclass
class _Account:
    clients: dict[int, dict[str, Any]]
    invoices: dict[int, dict[str, Any]]
    credit_notes: dict[int, dict[str, Any]]
    payments: dict[int, dict[str, Any]]
    next_invoice_id: int
    next_client_id: int
    next_credit_id: int
    next_payment_id: int
    minute: Window
    inflight: Concurrency


class FreshBooksEmulator(TokenHolder, Emulator):
    """Local FreshBooks on ``host:port`` (``port=0`` picks a free port); ``start()`` or ``with``.

    Public attributes for tests: ``calls`` (``(method, path, status)``; 0 = closed unanswered),
    ``count_429``, ``validation_failures``, ``server_errors``, ``refresh_token_uses`` (refresh tokens
    presented, in order), ``emails`` (``(account, invoiceid, [recipients])``).
    """

    name = "freshbooks-emulator"

    def __init__(
        self,
        *,
        host: str = "127.0.0.1",
        port: int = 0,
        client_id: str = "demo-client",
        client_secret: str = "demo-secret",
        refresh_token: str = "demo-refresh-token",
        account_ids: Iterable[str] = (DEFAULT_ACCOUNT_ID,),
        rate_limit_per_minute: int | None = None,
        max_concurrency: int | None = None,
        access_token_ttl: float = 43200,
        refresh_grace_seconds: float = 0.0,
        scopes: Iterable[str] = DEFAULT_SCOPES,
        request_validator: RequestValidator | None = None,
        clients: Mapping[int, Mapping[str, Any]] | None = None,
        hang_seconds: float = 30.0,
        response_delay: float = 0.0,
        webhook_verifier: str = DEFAULT_VERIFIER,
    ):
        self._init_sandbox(
            host, port, hang_seconds=hang_seconds, response_delay=response_delay, request_validator=request_validator
        )
        self.client_id, self.client_secret = client_id, client_secret
        self.account_ids = tuple(account_ids)
        #: Webhook deliveries (module docstring); each callback has its own URI, so no default URL.
        self.webhooks = WebhookSender()
        self.webhook_verifier = webhook_verifier
        #: callback id -> {"callbackid", "account_id", "event", "uri", "verified", "verifier"} (kept over resets)
        self.callbacks: dict[int, dict[str, Any]] = {}
        self.rate_limit_per_minute = rate_limit_per_minute
        self.max_concurrency = max_concurrency
        self.scopes = " ".join(scopes)
        self.seed_clients = {int(k): dict(v) for k, v in (clients if clients is not None else DEFAULT_CLIENTS).items()}
        #: ``Retry-After`` (seconds) of an injected ``"429"`` fault.
        self.fault_retry_after: int = 60
        # opaque 64-hex tokens; a spent refresh token dies at once (or after refresh_grace_seconds)
        self.tokens = Tokens(
            refresh_token,
            access_token_ttl,
            refresh_grace_seconds,
            access_prefix="",
            access_bytes=32,
            refresh_prefix="",
            refresh_bytes=32,
            code_prefix="",
            code_bytes=16,
        )
        self._token_scopes: dict[str, frozenset[str]] = {}
        self._init_state()

    # ------------------------------------------------------------------ lifecycle
    def _init_state(self) -> None:
        self._accounts: dict[str, _Account] = {}
        for index, acct in enumerate(self.account_ids):
            clients = {cid: self._client_entity(acct, cid, seed) for cid, seed in self.seed_clients.items()}
            self._accounts[acct] = _Account(
                clients=clients,
                invoices={},
                credit_notes={},
                payments={},
                next_invoice_id=880001 + index * 100000,
                next_client_id=40001,
                next_credit_id=30901 + index * 100000,
                next_payment_id=70001 + index * 100000,
                minute=Window(self.rate_limit_per_minute, 60.0),
                inflight=Concurrency(self.max_concurrency),
            )
        self._init_records()
        self.emails: list[tuple[str, int, list[str]]] = []

    def _new_fault_queue(self) -> FaultQueue:
        return FaultQueue(self.fault_kinds, in_order=True, after_commit_on_writes=True)

    # ------------------------------------------------------------------ test helpers
    def invoices(self, account_id: str | None = None, *, include_deleted: bool = True) -> list[dict[str, Any]]:
        """Deep copies of the stored invoices, each with its ``lines``."""
        with self._lock:
            stored = stored_objects(self._accounts, "invoices", account_id)
        return [inv for inv in stored if include_deleted or inv["vis_state"] == 0]

    def clients(self, account_id: str | None = None) -> list[dict[str, Any]]:
        with self._lock:
            return stored_objects(self._accounts, "clients", account_id)

    def credit_notes(self, account_id: str | None = None, *, include_deleted: bool = True) -> list[dict[str, Any]]:
        """Deep copies of the stored credit notes, each with its ``lines``."""
        with self._lock:
            stored = stored_objects(self._accounts, "credit_notes", account_id)
        return [note for note in stored if include_deleted or note["vis_state"] == 0]

    def payments(self, account_id: str | None = None) -> list[dict[str, Any]]:
        """Deep copies of the recorded payments."""
        with self._lock:
            return stored_objects(self._accounts, "payments", account_id)

    def _account(self, account_id: str) -> _Account:
        account = self._accounts.get(account_id)
        if account is None:
            raise KeyError(f"no account {account_id}")
        return account

    def pay(self, account_id: str, invoice_id: int | str, amount: Decimal | None = None) -> dict[str, Any]:
        """Record a payment of ``amount`` (``None``: all that is outstanding) on invoice ``invoice_id``, as when
        the client pays (see the module docstring). ``KeyError``: unknown account or invoice; ``ValueError``:
        a deleted invoice or an amount not in ``(0, outstanding]``."""
        with self._lock:
            account = self._account(account_id)
            invoice = account.invoices.get(int(invoice_id))
            if invoice is None:
                raise KeyError(f"no invoice {invoice_id} in account {account_id}")
            if invoice["vis_state"] == 1:
                raise ValueError(f"invoice {invoice_id} is deleted")
            code = invoice["currency_code"]
            outstanding = Decimal(invoice["outstanding"]["amount"])
            paid = outstanding if amount is None else _q2(Decimal(amount))
            if paid <= 0 or paid > outstanding:
                raise ValueError(f"payment {paid} must be more than 0 and at most the outstanding {outstanding}")
            payment_id = account.next_payment_id
            account.next_payment_id += 1
            payment = {
                "id": payment_id,
                "logid": payment_id,
                "invoiceid": invoice["invoiceid"],
                "clientid": invoice["customerid"],
                "amount": _money(paid, code),
                "date": date.today().isoformat(),
                "type": "Check",
                "vis_state": 0,
                "updated": _eastern_now(),
            }
            account.payments[payment_id] = payment
            total_paid = Decimal(invoice["paid"]["amount"]) + paid
            left = Decimal(invoice["amount"]["amount"]) - total_paid
            invoice["paid"], invoice["outstanding"] = _money(total_paid, code), _money(left, code)
            if left == 0:
                invoice.update(status=4, v3_status="paid", payment_status="paid", date_paid=payment["date"])
            else:
                invoice.update(status=8, v3_status="partial", payment_status="partial")
            invoice["updated"] = _eastern_now()
            self._deliver(account_id, "payment.create", payment_id)
            self._deliver(account_id, "invoice.update", invoice["invoiceid"])
            return copy.deepcopy(payment)

    # ------------------------------------------------------------------ webhooks
    def webhook_signature(self, fields: Mapping[str, Any], verifier: str | None = None) -> str:
        """``X-FreshBooks-Hmac-SHA256`` of a delivery's ``fields``: Base64 of HMAC-SHA256(``verifier`` (default
        :attr:`webhook_verifier`), ``json.dumps`` of the fields with string values)."""
        message = json.dumps({k: str(v) for k, v in fields.items()}).encode()
        digest = hmac.new((verifier or self.webhook_verifier).encode(), message, hashlib.sha256).digest()
        return base64.b64encode(digest).decode()

    def _post_form(self, account_id: str, name: str, object_id: Any, uri: str, key: str, **extra: str) -> None:
        """Queue one form-encoded delivery (caller holds the lock; sent once it is released)."""
        fields = {
            "name": name,
            "object_id": str(object_id),
            **extra,
            "account_id": account_id,
            "business_id": str(DEFAULT_BUSINESS_ID + self.account_ids.index(account_id)),
            "identity_id": "12345",
            "user_id": "1",
        }
        headers = {
            "X-FreshBooks-Hmac-SHA256": self.webhook_signature(fields, key),
            "Content-Type": "application/x-www-form-urlencoded",
        }
        self.webhooks.send(name, urlencode(fields).encode(), lambda _body, _t: headers, url=uri)

    def _deliver(self, account_id: str, name: str, object_id: Any) -> None:
        """``name`` about ``object_id`` to every verified callback of ``account_id`` that wants it."""
        for callback in self.callbacks.values():
            wanted = callback["event"] in (name, name.split(".", 1)[0])
            if callback["account_id"] == account_id and callback["verified"] and wanted:
                self._post_form(account_id, name, object_id, callback["uri"], callback["verifier"])

    def _callbacks(self, req: Request, account_id: str, ident: str | None) -> Response:
        """``/events/account/{accountId}/events/callbacks[/{id}]`` (module docstring; caller holds no lock)."""
        denied = self._authenticate(req)
        if denied is not None:
            return denied
        with self._lock:
            try:
                if account_id not in self._accounts:
                    raise FbError(1003, "accountid", "Unknown account.", account_id, "account", 403)
                if ident is None and req.method == "GET":
                    mine = [self._callback_view(c) for c in self.callbacks.values() if c["account_id"] == account_id]
                    return json_response(200, {"response": {"result": {"callbacks": mine}}})
                if ident is None and req.method == "POST":
                    body = self._body(req, "callback")
                    if not body.get("event") or not str(body.get("uri", "")).startswith("http"):
                        raise FbError(2001, "callback", "event and uri are required.", status=422)
                    callback_id = 2001 + len(self.callbacks)
                    created: dict[str, Any] = {
                        "callbackid": callback_id,
                        "account_id": account_id,
                        "event": str(body["event"]),
                        "uri": str(body["uri"]),
                        "verified": False,
                        "verifier": self.webhook_verifier,
                    }
                    self.callbacks[callback_id] = created
                    self._send_verifier(created)
                    return json_response(200, {"response": {"result": {"callback": self._callback_view(created)}}})
                callback = self.callbacks.get(int(ident)) if ident and ident.isdigit() else None
                if callback is None or callback["account_id"] != account_id:
                    raise FbError(1012, "callbackid", "Callback not found.", ident, "callback", 404)
                if req.method == "DELETE":
                    del self.callbacks[callback["callbackid"]]
                    return Response(204)
                if req.method == "PUT":
                    body = self._body(req, "callback")
                    if body.get("resend"):
                        self._send_verifier(callback)
                    elif str(body.get("verifier", "")) == callback["verifier"]:
                        callback["verified"] = True
                    else:
                        raise FbError(2001, "verifier", "The verifier does not match.", status=422)
                return json_response(200, {"response": {"result": {"callback": self._callback_view(callback)}}})
            except FbError as err:
                return _errors_response([err])

    def _send_verifier(self, callback: dict[str, Any]) -> None:
        self._post_form(
            callback["account_id"],
            "callback.verify",
            callback["callbackid"],
            callback["uri"],
            callback["verifier"],
            verifier=callback["verifier"],
        )

    @staticmethod
    def _callback_view(callback: Mapping[str, Any]) -> dict[str, Any]:
        return {k: callback[k] for k in ("callbackid", "event", "uri", "verified")}

    def balance(self, account_id: str, customer_id: int | None = None) -> Decimal:
        """What the clients (or ``customer_id``) owe: Σ ``outstanding`` of active, non-draft invoices − Σ
        ``amount`` of active credit notes (see the module docstring)."""
        with self._lock:
            account = self._account(account_id)
            due = sum(
                (
                    Decimal(i["outstanding"]["amount"])
                    for i in account.invoices.values()
                    if i["vis_state"] != 1 and i["v3_status"] != "draft"
                    if customer_id is None or i["customerid"] == customer_id
                ),
                Decimal("0"),
            )
            credit = sum(
                (
                    Decimal(c["amount"]["amount"])
                    for c in account.credit_notes.values()
                    if c["vis_state"] != 1
                    if customer_id is None or c["clientid"] == customer_id
                ),
                Decimal("0"),
            )
            return _q2(due - credit)

    def plant_invoice(self, account_id: str, doc: dict[str, Any], *, sent: bool = True) -> dict[str, Any]:
        """Store an invoice made outside the broker (FreshBooks' UI, another app): ``doc`` as a create body,
        checked like one (``ValueError`` naming the errors), marked sent unless ``sent`` is false."""
        with self._lock:
            try:
                invoice = self._create_invoice(account_id, self._account(account_id), doc)
            except _ValidationError as exc:
                raise ValueError(str(exc)) from None
            if sent:
                self._mark_sent(invoice)
            return copy.deepcopy(invoice)

    def inject_fault(self, kind: str, times: int = 1) -> None:
        """Make the next ``times`` accounting calls fail with ``kind`` (see :data:`FAULT_KINDS`).

        ``"503"``/``"500"`` answer that status without processing; ``"429"`` answers 429 with
        ``Retry-After: fault_retry_after``; ``"reset"`` resets the TCP connection before processing;
        ``"timeout_after_commit"`` processes (stores) the request, then holds the socket
        ``hang_seconds`` and closes it unanswered; ``"drop_after_commit"`` processes, then closes
        unanswered. The after-commit kinds wait for the next write (``POST``/``PUT``), so the lookup the
        connector makes before creating does not consume them.
        """
        self._add_fault(Fault(kind), times)

    def stats(self) -> dict[str, Any]:
        with self._lock:
            return {
                **super().stats(),
                "invoice_count": sum(len(a.invoices) for a in self._accounts.values()),
                "refresh_token_uses": len(self.refresh_token_uses),
                "emails": [[a, i, r] for a, i, r in self.emails],
            }

    # ------------------------------------------------------------------ dispatch
    def _handle(self, req: Request) -> Response:
        path = req.path.rstrip("/") or "/"
        if path.lower().startswith("/_emulator"):
            return self._admin(req, path.lower())
        message = self._invalid(req)
        if message is not None:
            return _errors_response([FbError(2002, "<body>", message, status=400)])
        if path == "/oauth/authorize" and req.method == "GET":
            return self._authorize(req)
        if path == "/auth/oauth/token":
            if req.method != "POST":
                return json_response(405, {"error": "method_not_allowed"})
            return self._token(req)
        if path == "/auth/api/v1/users/me" and req.method == "GET":
            denied = self._authenticate(req, "user:profile:read")
            return denied if denied is not None else self._me()
        m = re.fullmatch(r"/accounting/account/([^/]+)/(.+)", path)
        if m:
            return self._accounting(req, unquote(m.group(1)), m.group(2))
        m = re.fullmatch(r"/events/account/([^/]+)/events/callbacks(?:/([^/]+))?", path)
        if m:
            return self._callbacks(req, unquote(m.group(1)), m.group(2))
        return json_response(404, {"error": f"no emulated resource at {req.path}"})

    # ------------------------------------------------------------------ OAuth2
    def _token(self, req: Request) -> Response:
        content_type = req.headers.get("content-type", "")
        if "json" in content_type:
            try:
                form = {k: str(v) for k, v in json.loads(req.body or b"{}").items()}
            except (ValueError, AttributeError):
                return json_response(400, {"error": "invalid_request"})
        else:
            form = form_of(req.body)
        if not secret_ok(self.client_id, self.client_secret, form.get("client_id"), form.get("client_secret")):
            return json_response(
                401,
                {
                    "error": "invalid_client",
                    "error_description": (
                        "Client authentication failed due to unknown client, no client authentication included, "
                        "or unsupported authentication method."
                    ),
                },
            )
        if form.get("grant_type") == "authorization_code":
            return self._code_grant(form)
        if form.get("grant_type") != "refresh_token":
            return json_response(400, {"error": "unsupported_grant_type"})
        with self._lock:
            if not self.tokens.spend_refresh(form.get("refresh_token", "")):
                return json_response(
                    400,
                    {
                        "error": "invalid_grant",
                        "error_description": (
                            "The provided authorization grant is invalid, expired, revoked, does not match the "
                            "redirection URI used in the authorization request, or was issued to another client."
                        ),
                    },
                )
            # single use: the presented token dies now (or after refresh_grace_seconds, when configured)
            new_refresh = self.tokens.new_refresh()
        return self._issue(new_refresh)

    def _issue(self, refresh: str) -> Response:
        with self._lock:
            access = self.tokens.new_access()
            self._token_scopes[access] = frozenset(self.scopes.split())
        return json_response(
            200,
            {
                "access_token": access,
                "token_type": "Bearer",
                "expires_in": math.ceil(self.access_token_ttl),
                "refresh_token": refresh,
                "scope": self.scopes,
                "created_at": int(time.time()),
            },
            {"Cache-Control": "no-store"},
        )

    def _authorize(self, req: Request) -> Response:
        """``GET /oauth/authorize`` (auth.freshbooks.com): the user consents at once; 302 to the loopback
        ``redirect_uri`` with ``code`` and ``state``."""
        with self._lock:
            answer = consent(self.tokens, req.query, self.client_id)
        return json_response(400, {"error": answer}) if isinstance(answer, str) else answer

    def _code_grant(self, form: dict[str, str]) -> Response:
        """``grant_type=authorization_code``: single-use code, same ``redirect_uri``, PKCE verifier when a
        challenge was sent."""
        with self._lock:
            if self.tokens.redeem_code(form) is not None:
                return json_response(400, {"error": "invalid_grant"})
            new_refresh = self.tokens.new_refresh()
        return self._issue(new_refresh)

    def _authenticate(self, req: Request, scope: str | None = None) -> Response | None:
        token = bearer(req)
        with self._lock:
            expires = self.tokens.expiry(token)
            granted = self._token_scopes.get(token, frozenset())
        if expires is None or time.monotonic() >= expires:
            return json_response(
                401,
                {"error": "unauthenticated", "error_description": "This action requires authentication to continue."},
                {"WWW-Authenticate": 'Bearer realm="Doorkeeper", error="invalid_token"'},
            )
        if scope is not None and scope not in granted:
            return json_response(
                403,
                {"error": "insufficient_scope", "error_description": f"The access token lacks the scope {scope}."},
                {"WWW-Authenticate": f'Bearer realm="Doorkeeper", error="insufficient_scope", scope="{scope}"'},
            )
        return None

    @staticmethod
    def _scope_for(method: str, resource: str) -> str | None:
        prefixes = {
            "invoices/": "invoices",
            "users/clients": "clients",
            "credit_notes/": "credit_notes",
            "payments/": "payments",
        }
        kind = next((k for prefix, k in prefixes.items() if resource.startswith(prefix)), None)
        if kind is None:
            return None
        return f"user:{kind}:{'read' if method in ('GET', 'HEAD') else 'write'}"

    def _me(self) -> Response:
        memberships = [
            {
                "id": 140130 + i,
                "role": "owner",
                "unacknowledged_change": False,
                "business": {
                    "id": DEFAULT_BUSINESS_ID + i,
                    "business_uuid": f"emu-business-{i}",
                    "name": f"Emulated Business {i + 1}",
                    "account_id": acct,
                    "date_format": "dd/mm/yyyy",
                },
            }
            for i, acct in enumerate(self.account_ids)
        ]
        return json_response(
            200,
            {
                "response": {
                    "id": 12345,
                    "identity_id": 12345,
                    "first_name": "Emu",
                    "last_name": "Lator",
                    "email": "owner@example.invalid",
                    "business_memberships": memberships,
                    "roles": [
                        {"id": 61270 + i, "role": "admin", "accountid": acct} for i, acct in enumerate(self.account_ids)
                    ],
                }
            },
        )

    # ------------------------------------------------------------------ accounting gate
    def _admit(self, account: _Account) -> Response | None:
        now = time.monotonic()
        account.minute.limit, account.inflight.limit = self.rate_limit_per_minute, self.max_concurrency
        problem, retry = None, 0.0
        if account.minute.full(now):
            problem, retry = "minute", account.minute.retry_after(now)
        elif account.inflight.full():
            problem, retry = "concurrent", 1.0
        if problem is not None:
            self.count_429 += 1
            return self._throttled(retry)
        account.minute.add(now)
        account.inflight.enter()
        return None

    @staticmethod
    def _throttled(retry: float) -> Response:
        return json_response(
            429,
            {
                "response": {
                    "errors": [{"errno": 429, "field": "", "message": "Too Many Requests", "object": "", "value": ""}]
                }
            },
            {"Retry-After": str(max(1, math.ceil(retry)))},
        )

    def _accounting(self, req: Request, account_id: str, resource: str) -> Response:
        denied = self._authenticate(req, self._scope_for(req.method, resource))
        if denied is not None:
            return denied
        account = self._accounts.get(account_id)
        if account is None:
            return _errors_response(
                [
                    FbError(
                        1003,
                        "accountid",
                        "The server could not verify that you are authorized to access the URL requested.",
                        account_id,
                        "account",
                        403,
                    )
                ]
            )
        return self._gate(
            req,
            lambda: self._admit(account),
            account.inflight,
            lambda: self._answer(req, account_id, account, resource),
        )

    def _fault_status(self, status: int) -> Response:
        if status == 503:
            return html_response(503, "Service Temporarily Unavailable")
        return json_response(
            500,
            {
                "response": {
                    "errors": [
                        {"errno": 500, "field": "", "message": "Internal Server Error", "object": "", "value": ""}
                    ]
                }
            },
        )

    def _fault_throttled(self, fault: Fault) -> Response:  # noqa: ARG002 - the kit's signature
        return self._throttled(float(self.fault_retry_after))

    def _answer(self, req: Request, account_id: str, account: _Account, resource: str) -> Response:
        """:meth:`_route`, FreshBooks' errors answered (caller holds the lock)."""
        try:
            return self._route(req, account_id, account, resource)
        except FbError as err:
            return _errors_response([err])
        except _ValidationError as errs:
            return _errors_response(errs.errors)

    def _route(self, req: Request, account_id: str, account: _Account, resource: str) -> Response:
        parts = [unquote(p) for p in resource.split("/")]
        includes_lines = "lines" in self._multi(req, "include[]")
        if parts[:2] == ["invoices", "invoices"]:
            if len(parts) == 2 and req.method == "GET":
                return self._list_invoices(req, account, includes_lines)
            if len(parts) == 2 and req.method == "POST":
                entity = self._create_invoice(account_id, account, self._body(req, "invoice"))
                return self._result("invoice", self._render(entity, includes_lines))
            if len(parts) == 3:
                invoice = self._invoice(account, parts[2])
                if req.method == "GET":
                    return self._result("invoice", self._render(invoice, includes_lines))
                if req.method == "PUT":
                    self._update_invoice(account_id, account, invoice, self._body(req, "invoice"))
                    return self._result("invoice", self._render(invoice, includes_lines))
        if parts[:2] == ["credit_notes", "credit_notes"]:
            return self._route_credit_notes(req, account_id, account, parts[2:], includes_lines)
        if parts[:2] == ["payments", "payments"] and len(parts) == 3 and req.method == "GET":
            payment = account.payments.get(int(parts[2])) if parts[2].isdigit() else None
            if payment is None:
                raise FbError(1012, "paymentid", "Payment not found.", parts[2], "payment", 404)
            return self._result("payment", copy.deepcopy(payment))
        if parts[:2] == ["users", "clients"]:
            if len(parts) == 2 and req.method == "GET":
                return self._list_clients(req, account)
            if len(parts) == 2 and req.method == "POST":
                return self._result("client", self._create_client(account_id, account, self._body(req, "client")))
            if len(parts) == 3 and req.method == "GET":
                client = account.clients.get(int(parts[2])) if parts[2].isdigit() else None
                if client is None:
                    raise FbError(1012, "userid", "Client not found.", parts[2], "client", 404)
                return self._result("client", copy.deepcopy(client))
        return json_response(
            404,
            {
                "response": {
                    "errors": [{"errno": 1001, "field": "", "message": "Not Found", "object": "", "value": resource}]
                }
            },
        )

    def _route_credit_notes(
        self, req: Request, account_id: str, account: _Account, rest: list[str], include_lines: bool
    ) -> Response:
        if not rest and req.method == "GET":
            rows = [c for c in account.credit_notes.values() if c["vis_state"] == 0]
            client = req.query.get("search[clientid]")
            if client is not None:
                rows = [c for c in rows if str(c["clientid"]) == client]
            rows.sort(key=lambda c: -c["creditid"])
            return self._page(req, "credit_notes", [self._render(c, include_lines) for c in rows])
        if not rest and req.method == "POST":
            note = self._create_credit_note(account_id, account, self._body(req, "credit_note"))
            return self._result("credit_note", self._render(note, include_lines))
        if len(rest) == 1:
            held = account.credit_notes.get(int(rest[0])) if rest[0].isdigit() else None
            if held is None:
                raise FbError(1012, "creditid", "Credit note not found.", rest[0], "credit_note", 404)
            note = held
            if req.method == "PUT":
                doc = self._body(req, "credit_note")
                if set(doc) - {"vis_state"} or doc.get("vis_state") not in (0, 1, 2):
                    raise _invalid("credit_note", sorted(doc), "Only vis_state updates of credit notes are emulated.")
                note["vis_state"] = int(doc["vis_state"])
                note["updated"] = _eastern_now()
            if req.method in ("GET", "PUT"):
                return self._result("credit_note", self._render(note, include_lines))
        return json_response(
            404,
            {"response": {"errors": [{"errno": 1001, "field": "", "message": "Not Found", "object": "", "value": ""}]}},
        )

    def _create_credit_note(self, account_id: str, account: _Account, doc: dict[str, Any]) -> dict[str, Any]:
        errors: list[FbError] = [
            FbError(2002, key, f"Unknown field {key}.", key, "credit_note") for key in doc if key not in _CREDIT_FIELDS
        ]
        client_raw = str(doc.get("clientid"))
        client = account.clients.get(int(client_raw)) if client_raw.isdigit() else None
        if client is None or client["vis_state"] != 0:
            errors.append(FbError(1012, "clientid", "Client not found.", client_raw, "client", 422))
        create_date = date.today()
        if doc.get("create_date"):
            try:
                create_date = date.fromisoformat(str(doc["create_date"]))
            except ValueError:
                errors.append(_invalid("create_date", doc["create_date"], "create_date must be YYYY-MM-DD."))
        if doc.get("credit_type", "goodwill") not in _CREDIT_TYPES:
            errors.append(
                _invalid("credit_type", doc.get("credit_type"), "credit_type must be goodwill or prepayment.")
            )
        currency = doc.get("currency_code") or (client or {}).get("currency_code") or "EUR"
        if not (isinstance(currency, str) and re.fullmatch(r"[A-Z]{3}", currency)):
            errors.append(_invalid("currency_code", currency))
        number = doc.get("credit_number")
        if number is not None and not isinstance(number, str):
            errors.append(_invalid("credit_number", number))
            number = None
        if number and any(c["credit_number"] == number for c in account.credit_notes.values()):
            errors.append(FbError(2004, "credit_number", "Credit number already exists.", number, "credit_note"))
        self._check_texts(doc, errors)
        raw_lines = doc["lines"] if isinstance(doc.get("lines"), list) else []
        lines_out, subtotal, tax_total = self._lines(raw_lines, str(currency), errors, _CREDIT_LINE_FIELDS)
        if not lines_out and not errors:
            errors.append(_required("lines"))
        if errors:
            raise _ValidationError(errors)
        assert client is not None  # a missing client added an error above
        credit_id = account.next_credit_id
        account.next_credit_id += 1
        note = {
            "creditid": credit_id,
            "id": credit_id,
            "accounting_systemid": account_id,
            "clientid": client["userid"],
            "credit_number": number or f"{len(account.credit_notes) + 1:07d}",
            "credit_type": doc.get("credit_type") or "goodwill",
            "create_date": create_date.isoformat(),
            "currency_code": currency,
            "language": doc.get("language") or "en",
            "notes": doc.get("notes") or "",
            "terms": doc.get("terms") or "",
            "amount": _money(subtotal + tax_total, str(currency)),
            "organization": client["organization"],
            "current_organization": client["organization"],
            "display_status": "created",
            "status": "created",
            "vis_state": 0,
            "updated": _eastern_now(),
            "lines": lines_out,
        }
        account.credit_notes[credit_id] = note
        return note

    @staticmethod
    def _check_texts(doc: dict[str, Any], errors: list[FbError]) -> None:
        """The printed free texts: strings, ``notes`` within the assumed limit."""
        for name in ("notes", "terms"):
            value = doc.get(name)
            if value is not None and not isinstance(value, str):
                errors.append(_invalid(name, value))
        notes = doc.get("notes")
        if isinstance(notes, str) and len(notes) > FIELD_LIMITS["notes"]:
            errors.append(_too_long("notes", notes, FIELD_LIMITS["notes"]))

    @staticmethod
    def _result(name: str, entity: dict[str, Any]) -> Response:
        return json_response(200, {"response": {"result": {name: entity}}})

    @staticmethod
    def _multi(req: Request, key: str) -> list[str]:
        return parse_qs(req.raw_target.partition("?")[2], keep_blank_values=True).get(key, [])

    @staticmethod
    def _body(req: Request, name: str) -> dict[str, Any]:
        try:
            doc = loads_decimal(req.body or b"")
        except ValueError as exc:
            raise FbError(2002, "<body>", f"Malformed JSON: {exc}", status=400) from None
        body = doc.get(name) if isinstance(doc, dict) else None
        if not isinstance(body, dict):
            raise FbError(2001, name, f"Body must be an object with a {name} object.", status=400)
        return body

    # ------------------------------------------------------------------ clients
    def _client_entity(self, account_id: str, cid: int, seed: Mapping[str, Any]) -> dict[str, Any]:
        return {
            "id": cid,
            "userid": cid,
            "accounting_systemid": account_id,
            "organization": seed.get("organization") or "",
            "fname": seed.get("fname") or "",
            "lname": seed.get("lname") or "",
            "email": seed.get("email") or "",
            "vat_number": seed.get("vat_number") or "",
            "vat_name": seed.get("vat_name") or "",
            "currency_code": seed.get("currency_code") or "EUR",
            "vis_state": 0,
            "updated": _eastern_now(),
        }

    def _create_client(self, account_id: str, account: _Account, doc: dict[str, Any]) -> dict[str, Any]:
        if not any(doc.get(k) for k in ("organization", "fname", "lname", "email")):
            raise _required("organization")
        cid = account.next_client_id
        account.next_client_id += 1
        account.clients[cid] = self._client_entity(account_id, cid, doc)
        return copy.deepcopy(account.clients[cid])

    def _list_clients(self, req: Request, account: _Account) -> Response:
        rows = [c for c in account.clients.values() if c["vis_state"] == 0]
        email = req.query.get("search[email]")
        if email is not None:
            rows = [c for c in rows if c["email"].casefold() == email.casefold()]
        like = req.query.get("search[organization_like]")
        if like is not None:
            rows = [c for c in rows if like.casefold() in c["organization"].casefold()]
        return self._page(req, "clients", [copy.deepcopy(c) for c in rows])

    # ------------------------------------------------------------------ invoices
    def _invoice(self, account: _Account, ident: str) -> dict[str, Any]:
        invoice = account.invoices.get(int(ident)) if ident.isdigit() else None
        if invoice is None:
            raise FbError(1012, "invoiceid", "Invoice not found.", ident, "invoice", 404)
        return invoice

    @staticmethod
    def _render(invoice: dict[str, Any], include_lines: bool) -> dict[str, Any]:
        out = copy.deepcopy(invoice)
        if not include_lines:
            out.pop("lines", None)
        return out

    def _page(self, req: Request, name: str, rows: list[dict[str, Any]]) -> Response:
        try:
            page = max(1, int(req.query.get("page", "1") or 1))
            per_page = max(1, min(100, int(req.query.get("per_page", "30") or 30)))
        except ValueError:
            raise FbError(2002, "page", "page must be a number", req.query.get("page"), "", 400) from None
        total = len(rows)
        pages = math.ceil(total / per_page) if total else 0
        chunk = rows[(page - 1) * per_page : page * per_page]
        return json_response(
            200,
            {"response": {"result": {name: chunk, "page": page, "pages": pages, "per_page": per_page, "total": total}}},
        )

    def _list_invoices(self, req: Request, account: _Account, include_lines: bool) -> Response:
        rows = [i for i in account.invoices.values() if i["vis_state"] == 0]
        number = req.query.get("search[invoice_number]")
        if number is not None:
            rows = [i for i in rows if i["invoice_number"] == number]
        ids = self._multi(req, "search[invoiceids][]")
        if ids:
            rows = [i for i in rows if str(i["invoiceid"]) in ids]
        customer = req.query.get("search[customerid]")
        if customer is not None:
            rows = [i for i in rows if str(i["customerid"]) == customer]
        rows.sort(key=lambda i: -i["invoiceid"])  # newest first
        return self._page(req, "invoices", [self._render(i, include_lines) for i in rows])

    @staticmethod
    def _number(value: Any, field: str, errors: list[FbError]) -> Decimal | None:
        result = decimal_or_none(value)
        if result is None:
            errors.append(_invalid(field, value))
        return result

    def _create_invoice(self, account_id: str, account: _Account, doc: dict[str, Any]) -> dict[str, Any]:
        errors: list[FbError] = [
            FbError(2002, key, f"Unknown field {key}.", key) for key in doc if key not in _CREATE_FIELDS
        ]
        customer_raw = doc.get("customerid")
        customer_id: int | None = None
        client = None
        if customer_raw in (None, ""):
            errors.append(_required("customerid"))
        elif not str(customer_raw).isdigit():
            errors.append(_invalid("customerid", customer_raw))
        else:
            customer_id = int(customer_raw)
            client = account.clients.get(customer_id)
            if client is None or client["vis_state"] != 0:
                errors.append(FbError(1012, "customerid", "Client not found.", str(customer_raw), "client", 422))
        create_date: date | None = None
        if not doc.get("create_date"):
            errors.append(_required("create_date"))
        else:
            try:
                create_date = date.fromisoformat(str(doc["create_date"]))
            except ValueError:
                errors.append(_invalid("create_date", doc["create_date"], "create_date must be YYYY-MM-DD."))
        offset = doc.get("due_offset_days", 0)
        if isinstance(offset, bool) or not isinstance(offset, int) or offset < 0:
            errors.append(_invalid("due_offset_days", offset, "due_offset_days must be a non-negative integer."))
            offset = 0
        currency = doc.get("currency_code") or (client or {}).get("currency_code") or "EUR"
        if not (isinstance(currency, str) and re.fullmatch(r"[A-Z]{3}", currency)):
            errors.append(_invalid("currency_code", currency))
        if doc.get("discount_value") not in (None, "", "0", 0, Decimal(0)):
            errors.append(_invalid("discount_value", doc.get("discount_value"), "discount_value is not emulated."))
        number = doc.get("invoice_number")
        if number is not None and not isinstance(number, str):
            errors.append(_invalid("invoice_number", number))
            number = None
        for field_name, key in (("invoice_number", "invoice_number"), ("po_number", "po_number")):
            value = doc.get(field_name)
            if isinstance(value, str) and len(value) > FIELD_LIMITS[key]:
                errors.append(_too_long(field_name, value, FIELD_LIMITS[key]))
        if number and any(i["invoice_number"] == number for i in account.invoices.values()):
            errors.append(FbError(2004, "invoice_number", "Invoice number already exists.", number))

        raw_lines = doc.get("lines")
        if raw_lines is None:
            raw_lines = []
        if not isinstance(raw_lines, list):
            errors.append(_invalid("lines", "<not a list>"))
            raw_lines = []
        lines_out, subtotal, tax_total = self._lines(raw_lines, currency, errors, _LINE_FIELDS)
        self._check_texts(doc, errors)
        if errors:
            raise _ValidationError(errors)
        # a missing or invalid customerid / create_date added an error above
        assert customer_id is not None
        assert create_date is not None

        invoice_id = account.next_invoice_id
        account.next_invoice_id += 1
        if not number:
            number = f"{len(account.invoices) + 1:07d}"
        total = subtotal + tax_total
        due = create_date + timedelta(days=offset)
        entity = {
            "invoiceid": invoice_id,
            "id": invoice_id,
            "accountid": account_id,
            "accounting_systemid": account_id,
            "customerid": customer_id,
            "invoice_number": number,
            "po_number": doc.get("po_number") or "",
            "notes": doc.get("notes") or "",
            "terms": doc.get("terms") or "",
            "create_date": create_date.isoformat(),
            "due_offset_days": offset,
            "due_date": due.isoformat(),
            "currency_code": currency,
            "language": doc.get("language") or "en",
            "status": 1,
            "v3_status": "draft",
            "display_status": "draft",
            "payment_status": "unpaid",
            "amount": _money(total, currency),
            "outstanding": _money(total, currency),
            "paid": _money(Decimal(0), currency),
            "discount_value": "0",
            "discount_total": _money(Decimal(0), currency),
            "organization": (client or {}).get("organization", ""),
            "current_organization": (client or {}).get("organization", ""),
            "vis_state": 0,
            "created_at": _eastern_now(),
            "updated": _eastern_now(),
            "lines": lines_out,
        }
        account.invoices[invoice_id] = entity
        return entity

    def _lines(
        self, raw_lines: list[Any], currency: str, errors: list[FbError], fields: frozenset[str]
    ) -> tuple[list[dict[str, Any]], Decimal, Decimal]:
        """Lines as FreshBooks stores them, their Σ amounts and Σ taxes (problems appended to ``errors``)."""
        lines_out: list[dict[str, Any]] = []
        subtotal = tax_total = Decimal("0")
        for index, raw in enumerate(raw_lines):
            where = f"lines[{index}]"
            if not isinstance(raw, dict):
                errors.append(_invalid(where, raw))
                continue
            errors.extend(
                FbError(2002, f"{where}.{key}", f"Unknown field {key}.", key, "line")
                for key in raw
                if key not in fields
            )
            if raw.get("type", 0) not in (0, "0"):
                errors.append(_invalid(f"{where}.type", raw.get("type"), "Only normal lines (type 0) are emulated."))
            for key, limit_key in (("name", "line.name"), ("description", "line.description")):
                value = raw.get(key)
                if isinstance(value, str) and len(value) > FIELD_LIMITS[limit_key]:
                    errors.append(_too_long(f"{where}.{key}", value, FIELD_LIMITS[limit_key]))
            qty = self._number(raw.get("qty", 1), f"{where}.qty", errors)
            unit = raw.get("unit_cost")
            cost = self._number(
                unit.get("amount") if isinstance(unit, dict) else None, f"{where}.unit_cost.amount", errors
            )
            if isinstance(unit, dict) and unit.get("code") not in (None, currency):
                errors.append(
                    _invalid(
                        f"{where}.unit_cost.code",
                        unit.get("code"),
                        f"unit_cost.code must be the invoice currency {currency}.",
                    )
                )
            taxes = []
            for n in ("1", "2"):
                percent_raw = raw.get(f"taxAmount{n}")
                name = raw.get(f"taxName{n}")
                if percent_raw in (None, ""):
                    continue
                percent = self._number(percent_raw, f"{where}.taxAmount{n}", errors)
                if percent is None:
                    continue
                exponent = percent.as_tuple().exponent  # an int: _number only returns finite values
                if percent < 0 or percent > 100 or not isinstance(exponent, int) or -exponent > 3:
                    errors.append(
                        _invalid(
                            f"{where}.taxAmount{n}", percent_raw, "Tax must be a percentage with at most 3 decimals."
                        )
                    )
                    continue
                if isinstance(name, str) and len(name) > FIELD_LIMITS["taxName"]:
                    errors.append(_too_long(f"{where}.taxName{n}", name, FIELD_LIMITS["taxName"]))
                taxes.append((str(name or ""), percent))
            if qty is None or cost is None:
                continue
            cost = _q2(cost)  # unit_cost is "to two decimal places"
            amount = _q2(qty * cost)
            line_tax = sum((_q2(amount * p / Decimal(100)) for _, p in taxes), Decimal("0"))
            subtotal += amount
            tax_total += line_tax
            line: dict[str, Any] = {
                "lineid": index + 1,
                "type": 0,
                "name": raw.get("name") or "",
                "description": raw.get("description") or "",
                "qty": qty,
                "unit_cost": _money(cost, currency),
                "amount": _money(amount, currency),
                "updated": _eastern_now(),
            }
            for slot, (name, percent) in enumerate(taxes, start=1):
                line[f"taxName{slot}"] = name
                line[f"taxAmount{slot}"] = format(percent.normalize(), "f") if percent else "0"
            lines_out.append(line)
        return lines_out, subtotal, tax_total

    def _update_invoice(self, account_id: str, account: _Account, invoice: dict[str, Any], doc: dict[str, Any]) -> None:
        unknown = [k for k in doc if k not in _UPDATE_ACTIONS]
        if unknown:
            raise _ValidationError([FbError(2002, k, f"Updating {k} is not emulated.", k) for k in unknown])
        if "vis_state" in doc:
            if doc["vis_state"] not in (0, 1, 2):
                raise _invalid("vis_state", doc["vis_state"])
            if doc["vis_state"] == 1 and Decimal(invoice["paid"]["amount"]) > 0:
                raise FbError(
                    2010, "vis_state", "An invoice with payments cannot be deleted: delete its payments first.", 1
                )
            invoice["vis_state"] = int(doc["vis_state"])
            if invoice["vis_state"] == 1:
                self._deliver(account_id, "invoice.delete", invoice["invoiceid"])
        if doc.get("action_email"):
            recipients = doc.get("email_recipients")
            if recipients is None:
                client = account.clients.get(invoice["customerid"]) or {}
                recipients = [client["email"]] if client.get("email") else []
            if (
                not isinstance(recipients, list)
                or not recipients
                or not all(isinstance(r, str) and "@" in r for r in recipients)
            ):
                raise FbError(
                    2001, "email_recipients", "An email address is required to send this invoice.", recipients or ""
                )
            self.emails.append((account_id, invoice["invoiceid"], list(recipients)))
            self._mark_sent(invoice)
        elif doc.get("action_mark_as_sent"):
            self._mark_sent(invoice)
        invoice["updated"] = _eastern_now()

    @staticmethod
    def _mark_sent(invoice: dict[str, Any]) -> None:
        if invoice["status"] == 1:
            invoice.update(status=2, v3_status="sent", display_status="sent")

    # ------------------------------------------------------------------ control API
    def _admin_routes(self) -> dict[tuple[str, str], AdminRoute]:
        return {
            **super()._admin_routes(),
            ("GET", "/_emulator/invoices"): lambda _req: self._admin_listing(self._accounts, "invoices", "account_id"),
            ("GET", "/_emulator/clients"): lambda _req: self._admin_listing(self._accounts, "clients", "account_id"),
            ("GET", "/_emulator/credit_notes"): lambda _req: self._admin_listing(
                self._accounts, "credit_notes", "account_id"
            ),
            ("POST", "/_emulator/payments"): lambda req: self.admin_action(
                req, lambda doc: self.pay(str(doc["account_id"]), doc["invoiceid"], _amount_or_all(doc.get("amount")))
            ),
            ("POST", "/_emulator/plant"): lambda req: self.admin_action(
                req, lambda doc: self.plant_invoice(str(doc["account_id"]), doc["invoice"])
            ),
            ("POST", "/_emulator/balance"): lambda req: self.admin_action(
                req, lambda doc: {"balance": str(self.balance(str(doc["account_id"]), doc.get("customerid")))}
            ),
            **self.webhooks.admin_routes(self, "verifier", lambda value: setattr(self, "webhook_verifier", value)),
        }


def _amount_or_all(value: Any) -> Decimal | None:
    return None if value is None else Decimal(str(value))


def serve(host: str = "127.0.0.1", port: int = 0, **kwargs: Any) -> None:
    """Run an emulator in the foreground until Ctrl-C, printing its URL and the demo credentials."""
    emulator = FreshBooksEmulator(host=host, port=port, **kwargs).start()
    serve_until_interrupted(
        emulator,
        [
            f"FreshBooks emulator listening on {emulator.url}",
            f"  api_url    : {emulator.url}",
            f"  account_id : {', '.join(emulator.account_ids)}",
            (
                f"  client_id  : {emulator.client_id}  (FRESHBOOKS_CLIENT_SECRET={emulator.client_secret}, "
                f"FRESHBOOKS_REFRESH_TOKEN={emulator.initial_refresh_token})"
            ),
        ],
    )


__all__ = [
    "DEFAULT_ACCOUNT_ID",
    "DEFAULT_CLIENTS",
    "DEFAULT_VERIFIER",
    "FAULT_KINDS",
    "FbError",
    "FreshBooksEmulator",
    "serve",
]


if __name__ == "__main__":  # python -m connectors.freshbooks.emulator [PORT]
    serve(port=int(sys.argv[1]) if len(sys.argv) > 1 else 8767)
