"""A loopback emulator of QuickBooks Online (Intuit OAuth2 token endpoint + Accounting API v3 subset).

Behaves like the real service where the broker depends on it. Sources: ``/work/shared/billing-apis.md``
§3 and the pages it cites (Intuit "Top QuickBooks Online API errors", limits-and-throttles, batch,
``requestid`` blog, OAuth FAQ), the community field reference ``tests/specs/quickbooks/openapi.yaml``,
and public integration reports where Intuit's docs are silent (noted below as *observed*).

* ``GET /connect/oauth2`` (appcenter.intuit.com) – consents at once and redirects (302) to a loopback
  ``redirect_uri`` with ``code``, ``state`` and ``realmId``; the token endpoint's
  ``grant_type=authorization_code`` exchanges the code (single use, same ``redirect_uri``).
* ``POST /oauth2/v1/tokens/bearer`` – refresh-token grant, HTTP Basic ``client_id:client_secret``.
  Access tokens last ``access_token_ttl`` (3600 s); every refresh returns a new refresh token and the
  previous one stays usable ``refresh_grace_seconds`` (Intuit: "always store the latest").
  Errors: 401 ``invalid_client``, 400 ``invalid_grant`` / ``unsupported_grant_type``.
* Under ``/v3/company/{realmId}/`` (Bearer token required: 401 ``AuthenticationFault`` code 3200;
  a realm the token cannot reach: 403 ``AuthorizationFault`` code 3100):
  ``GET companyinfo/{realmId}``, ``POST invoice``, ``POST invoice?operation=void``, ``GET invoice/{id}``,
  ``POST invoice/{id}/send``, ``POST creditmemo``, ``GET creditmemo/{id}``, ``GET payment/{id}``,
  ``GET query?query=...`` (``Invoice``, ``CreditMemo``, ``Payment``, ``Customer``), ``POST batch``,
  ``POST customer``, ``GET customer/{id}``.
* **Void** (``POST invoice?operation=void`` with ``{"Id", "SyncToken"}``; Intuit blog "Voiding Invoice
  Objects", https://blogs.intuit.com/2016/04/06/voiding-invoice-objects): the invoice stays, its line
  amounts, quantities, tax, ``TotalAmt`` and ``Balance`` become 0 and ``Voided`` is prepended to
  ``PrivateNote`` (``Voided - <note>``: the separator is not documented). A stale ``SyncToken`` is
  Fault 5010 "Stale Object Error"; an invoice with a linked ``Payment`` is refused (Fault 6000: the
  emulator's harsher choice — QBO's UI asks to unlink the payment first); voiding a voided invoice
  changes nothing. Other ``operation`` values and updates (``Id``/``SyncToken`` without ``operation``)
  are not emulated (Fault 6000).
* **Credit memos** (``POST creditmemo``, entity ``CreditMemo``,
  https://developer.intuit.com/app/developer/qbo/docs/api/accounting/all-entities/creditmemo): validated
  and computed like invoices (lines, tax lines, limits), ``DocNumber`` unique among credit memos (6140);
  stored with ``TotalAmt``, ``Balance`` and ``RemainingCredit`` (= ``TotalAmt``: the emulator never
  applies a credit to an invoice by itself).
* **Payments** are ``Payment`` entities (``Line[].LinkedTxn`` -> the invoice, ``TxnType: Invoice``); the
  invoice's ``Balance`` drops by the amount and its ``LinkedTxn`` lists the payment (``TxnType:
  Payment``). They are recorded by the admin action :meth:`QuickBooksEmulator.pay` (as when the
  customer pays): partial or full, never more than the balance.
* **Customer balance** (:meth:`QuickBooksEmulator.balance`): Σ ``Balance`` of the invoices (voided ones
  are 0) − Σ ``RemainingCredit`` of the credit memos.
* Errors are Intuit ``Fault`` bodies ``{"Fault": {"Error": [{"Message", "Detail", "code", "element"}],
  "type": "ValidationFault"}, "time": ...}`` (HTTP 400): 2010 unsupported property, 2020 required
  parameter missing, 2050 string length (``DocNumber`` ≤ 21, ``Description``/``PrivateNote`` ≤ 4000,
  ``CustomerMemo`` ≤ 1000), 2500 invalid reference (customer/item/tax code), 6070 "Amount is not
  equal to UnitPrice * Qty" (*observed*: compared after rounding half-up to the cent), 6140
  "Duplicate Document Number Error" (*observed*: the code QBO returns; Intuit's blog table lists
  6210), 6000 business validation, 610 object not found, 4000 query parse error.
* ``DocNumber`` unique per company for invoices unless ``?include=allowduplicatedocnum``.
* ``requestid`` query parameter (≤ 50 characters, ≤ 36 on ``/batch``): per company, a repeat
  returns the original response without re-executing (Intuit does not compare bodies; the
  retention window is undocumented: ``requestid_ttl`` seconds, ``None`` = forever).
* Tax (global/non-US edition): every line needs a ``TaxCodeRef``; QBO computes tax **per tax rate
  on the sum of the line amounts at that rate**, rounded half-up to the cent; a supplied
  ``TxnTaxDetail.TaxLine`` overrides the computed amount of its ``TaxRateRef``. ``TotalTax`` = Σ
  tax lines, ``TotalAmt`` = Σ line ``Amount`` + ``TotalTax`` (a sent ``TotalAmt`` is ignored).
* Batch: ``{"BatchItemRequest": [{"bId", "operation": "create", "Invoice": {...}} | {"bId", "Query"}]}``,
  at most ``batch_max_items`` (30) items, per-item ``BatchItemResponse`` with ``bId`` and either the
  entity, a ``QueryResponse`` or a ``Fault``; always HTTP 200 when the envelope is valid.
* Limits per realm: ``rate_limit_per_minute`` (500) sliding window, ``max_concurrency`` (10) in
  flight, ``batch_limit_per_minute`` (40) batch calls, optionally ``per_second_limit`` (QBO: 10/s per
  realm and app; off by default); over a limit -> 429 ``ThrottlingFault`` code 3001 with
  ``Retry-After`` (seconds).

Test hooks: ``request_validator`` (see :mod:`connectors.quickbooks.spec`),
:meth:`QuickBooksEmulator.inject_fault`, :meth:`QuickBooksEmulator.expire_access_tokens`, and the
kit's control API (:mod:`connectors.sandbox.emulator`; its ``stats`` add ``invoice_count``,
``refresh_token_uses``, ``request_ids`` and ``emails``) with two listings::

    GET  /_emulator/invoices     -> [invoice, ...] (every realm, each with "RealmId")
    GET  /_emulator/customers    -> [customer, ...]
    GET  /_emulator/creditmemos  -> [credit memo, ...]
    GET  /_emulator/payments     -> [payment, ...]
    POST /_emulator/payments     {"RealmId", "InvoiceId", "Amount"?}  -> the Payment ("mark paid")
    POST /_emulator/plant        {"RealmId", "Invoice": {...}, "TxnType"?} -> a transaction made outside the broker
    POST /_emulator/balance      {"RealmId", "CustomerId"?}           -> {"Balance": "12.30"}
    POST /_emulator/webhooks     {"url", "verifier"}   (where change notifications go, the verifier token)
    GET  /_emulator/webhooks     -> {"deliveries": [[event, status, attempt], ...], "sent": n}
    POST /_emulator/webhooks/redeliver {"index": -1}   (the same body and signature again, as Intuit retries)

Webhooks (change notifications; ``shared/billing-apis.md`` § 3, Intuit's "managing webhooks notifications"
page): with a ``webhook_url``, a payment (:meth:`QuickBooksEmulator.pay`) POSTs ``{"eventNotifications":
[{"realmId", "dataChangeEvent": {"entities": [{"name": "Payment", "id", "operation": "Create",
"lastUpdated"}]}}]}`` and a void the same with ``{"name": "Invoice", "operation": "Void"}``: ids only (the
receiver reads the entities), legacy payload shape, sent at once (production aggregates 1-5 minutes).
``intuit-signature`` = Base64 of HMAC-SHA256(the app's verifier token, raw body).
"""

from __future__ import annotations

import base64
import copy
import hashlib
import hmac
import math
import re
import sys
import time
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass
from datetime import UTC, date, datetime, timedelta, timezone
from decimal import Decimal
from typing import Any, ClassVar
from urllib.parse import unquote

from connectors.sandbox.emulator import AdminRoute, Emulator, RequestValidator, serve_until_interrupted, stored_objects
from connectors.sandbox.faults import FAULT_KINDS, Fault, FaultQueue
from connectors.sandbox.http import Request, Response, html_response, json_response, loads_decimal
from connectors.sandbox.idempotency import ReplayCache
from connectors.sandbox.limits import Concurrency, Window
from connectors.sandbox.oauth import INVALID_VERIFIER, TokenHolder, Tokens, bearer, consent, token_grant
from connectors.sandbox.values import cents as _q2
from connectors.sandbox.values import decimal_or_none
from connectors.sandbox.webhooks import WebhookSender

DEFAULT_REALM_ID = "9341452000000001"
#: The demo app's webhook verifier token (Intuit shows it on the app's Webhooks page).
DEFAULT_VERIFIER_TOKEN = "demo-qbo-verifier-token"

#: Seed data of every company (override with the constructor arguments).
DEFAULT_CUSTOMERS: dict[str, dict[str, Any]] = {
    "58": {"DisplayName": "Hotel Atlântico Lisboa, S.A.", "PrimaryEmailAddr": "contas@hotel-atlantico.example"},
    "59": {"DisplayName": "Clínica do Parque, Lda."},
}
DEFAULT_ITEMS: dict[str, str] = {
    "1": "Services",
    "2": "Labour",
    "3": "Parts",
    "4": "Travel",
    "5": "Call-out",
    "6": "Expenses",
}
#: TaxRate Id -> (name, percent)
DEFAULT_TAX_RATES: dict[str, tuple[str, Decimal]] = {
    "5": ("IVA 23%", Decimal("23")),
    "6": ("IVA 13%", Decimal("13")),
    "7": ("IVA 6%", Decimal("6")),
    "8": ("Isento", Decimal("0")),
}
#: TaxCode Id -> (name, [TaxRate Id, ...]) (sales rates)
DEFAULT_TAX_CODES: dict[str, tuple[str, list[str]]] = {
    "3": ("IVA 23%", ["5"]),
    "4": ("IVA 13%", ["6"]),
    "5": ("IVA 6%", ["7"]),
    "6": ("Isento", ["8"]),
}
#: Connector ``tax_codes`` setting matching the seed data.
DEMO_TAX_CODES: dict[str, dict[str, str]] = {
    "23": {"tax_code_id": "3", "tax_rate_id": "5"},
    "13": {"tax_code_id": "4", "tax_rate_id": "6"},
    "6": {"tax_code_id": "5", "tax_rate_id": "7"},
    "0": {"tax_code_id": "6", "tax_rate_id": "8"},
}

_INVOICE_FIELDS = frozenset(
    {
        "Id",
        "SyncToken",
        "DocNumber",
        "TxnDate",
        "DueDate",
        "CustomerRef",
        "CurrencyRef",
        "ExchangeRate",
        "Line",
        "TxnTaxDetail",
        "GlobalTaxCalculation",
        "PrivateNote",
        "CustomerMemo",
        "BillEmail",
        "BillEmailCc",
        "BillEmailBcc",
        "EmailStatus",
        "PrintStatus",
        "SalesTermRef",
        "ClassRef",
        "DepartmentRef",
        "BillAddr",
        "ShipAddr",
        "ShipFromAddr",
        "ShipDate",
        "TrackingNum",
        "ShipMethodRef",
        "LinkedTxn",
        "DepositToAccountRef",
        "AllowOnlineACHPayment",
        "AllowOnlineCreditCardPayment",
        "TransactionLocationType",
        "MetaData",
        "Deposit",
        "CustomField",
        "ApplyTaxAfterDiscount",
        "FreeFormAddress",
        "TxnSource",
        "TotalAmt",
        "Balance",
        "HomeBalance",
        "HomeTotalAmt",
        "DeliveryInfo",
        "InvoiceLink",
        "RecurDataRef",
        "TaxExemptionRef",
        "domain",
        "sparse",
    }
)
#: ``CreditMemo`` fields (Intuit's CreditMemo entity reference): the invoice's but those of due dates, deposits,
#: shipping, online payment and payment links, plus the credit left to apply.
_CREDIT_MEMO_FIELDS = (
    _INVOICE_FIELDS
    - {
        "DueDate",
        "BillEmailCc",
        "BillEmailBcc",
        "ShipFromAddr",
        "ShipDate",
        "TrackingNum",
        "ShipMethodRef",
        "LinkedTxn",
        "DepositToAccountRef",
        "AllowOnlineACHPayment",
        "AllowOnlineCreditCardPayment",
        "Deposit",
        "FreeFormAddress",
        "HomeBalance",
        "DeliveryInfo",
        "InvoiceLink",
        "RecurDataRef",
    }
) | {"RemainingCredit", "InvoiceRef", "ProjectRef"}
_LINE_FIELDS = frozenset({"Id", "LineNum", "Description", "Amount", "DetailType", "SalesItemLineDetail", "LinkedTxn"})
_SALES_DETAIL_FIELDS = frozenset(
    {
        "ItemRef",
        "Qty",
        "UnitPrice",
        "TaxCodeRef",
        "ClassRef",
        "ServiceDate",
        "ItemAccountRef",
        "TaxInclusiveAmt",
        "DiscountRate",
        "DiscountAmt",
        "MarkupInfo",
    }
)


def _qbo_time(now: datetime | None = None) -> str:
    """Intuit's ``time`` stamp: ISO 8601 in Pacific time with milliseconds (``2026-03-02T02:00:00.000-08:00``)."""
    pacific = timezone(timedelta(hours=-8))
    now = (now or datetime.now(UTC)).astimezone(pacific)
    return now.strftime("%Y-%m-%dT%H:%M:%S.") + f"{now.microsecond // 1000:03d}-08:00"


class QboError(Exception):
    """One Intuit ``Error`` element; raised while validating, answered as a ``Fault``."""

    def __init__(self, code: str, message: str, detail: str, element: str = "", *, fault_type: str = "ValidationFault"):
        super().__init__(detail)
        self.code, self.message, self.detail, self.element, self.fault_type = code, message, detail, element, fault_type

    def error(self) -> dict[str, str]:
        return {"Message": self.message, "Detail": self.detail, "code": self.code, "element": self.element}


def _fault_body(errors: list[QboError], fault_type: str = "ValidationFault") -> dict[str, Any]:
    return {"Fault": {"Error": [e.error() for e in errors], "type": fault_type}, "time": _qbo_time()}


def _fault_response(status: int, errors: list[QboError], headers: dict[str, str] | None = None) -> Response:
    return json_response(status, _fault_body(errors, errors[0].fault_type if errors else "ValidationFault"), headers)


def _required(name: str) -> QboError:
    return QboError(
        "2020",
        "Required param missing, need to supply the required value for the API",
        f"Required parameter {name} is missing in the request",
        name,
    )


def _too_long(element: str, value: str, limit: int) -> QboError:
    return QboError(
        "2050",
        "String length is either shorter or longer than supported by specification",
        f"String length specified does not match the supported length. Min:0 Max:{limit} supplied length:{len(value)}",
        element,
    )


def _unsupported(name: str) -> QboError:
    return QboError(
        "2010",
        "Request has invalid or unsupported property",
        f'Property Name:Unrecognized field "{name}" specified is unsupported or invalid',
        name,
    )


def _business(detail: str, element: str = "") -> QboError:
    return QboError(
        "6000",
        "A business validation error has occurred while processing your request",
        f"Business Validation Error: {detail}",
        element,
    )


def _invalid_ref(kind: str, value: Any, element: str) -> QboError:
    return QboError(
        "2500", "Invalid Reference Id", f"Invalid Reference Id : {kind} elements id {value} not found", element
    )


def _not_found(kind: str, ident: str) -> QboError:
    return QboError(
        "610",
        "Object Not Found",
        "Object Not Found : Something you're trying to use has been made inactive. "
        f"Check the fields with accounts. ({kind} {ident})",
    )


@dataclass
class _Realm:
    customers: dict[str, dict[str, Any]]
    items: dict[str, str]
    tax_rates: dict[str, tuple[str, Decimal]]
    tax_codes: dict[str, tuple[str, list[str]]]
    invoices: dict[str, dict[str, Any]]
    credit_memos: dict[str, dict[str, Any]]
    payments: dict[str, dict[str, Any]]
    next_id: int
    request_ids: ReplayCache
    minute: Window
    second: Window
    batch_minute: Window
    inflight: Concurrency


class QuickBooksEmulator(TokenHolder, Emulator):
    """Local QuickBooks Online on ``host:port`` (``port=0`` picks a free port); ``start()`` or ``with``.

    Public attributes for tests: ``calls`` (``(method, path, status)``; 0 = closed without a
    response), ``count_429``, ``validation_failures``, ``server_errors`` (tracebacks of emulator bugs,
    answered 500), ``refresh_token_uses``, ``request_ids_seen`` (``(realm, requestid, replayed)``),
    ``emails`` (``(realm, invoice Id, address)`` of every ``/send``), ``minor_versions`` seen.
    """

    name = "quickbooks-emulator"

    def __init__(
        self,
        *,
        host: str = "127.0.0.1",
        port: int = 0,
        client_id: str = "demo-client",
        client_secret: str = "demo-secret",
        refresh_token: str = "demo-refresh-token",
        realm_ids: Iterable[str] = (DEFAULT_REALM_ID,),
        rate_limit_per_minute: int = 500,
        per_second_limit: int | None = None,
        max_concurrency: int = 10,
        batch_limit_per_minute: int = 40,
        batch_max_items: int = 30,
        access_token_ttl: float = 3600,
        refresh_grace_seconds: float = 86400,
        requestid_ttl: float | None = None,
        request_validator: RequestValidator | None = None,
        customers: Mapping[str, Mapping[str, Any]] | None = None,
        items: Mapping[str, str] | None = None,
        tax_rates: Mapping[str, tuple[str, Decimal]] | None = None,
        tax_codes: Mapping[str, tuple[str, list[str]]] | None = None,
        home_currency: str = "EUR",
        multicurrency: bool = False,
        hang_seconds: float = 30.0,
        response_delay: float = 0.0,
        webhook_url: str | None = None,
        webhook_verifier: str = DEFAULT_VERIFIER_TOKEN,
    ):
        self._init_sandbox(
            host, port, hang_seconds=hang_seconds, response_delay=response_delay, request_validator=request_validator
        )
        #: Change notifications (module docstring): ``webhooks.url`` is where they go, ``webhook_verifier`` signs them.
        self.webhooks = WebhookSender(webhook_url)
        self.webhook_verifier = webhook_verifier
        self.client_id, self.client_secret = client_id, client_secret
        self.realm_ids = tuple(str(r) for r in realm_ids)
        self.rate_limit_per_minute = rate_limit_per_minute
        self.per_second_limit = per_second_limit
        self.max_concurrency = max_concurrency
        self.batch_limit_per_minute = batch_limit_per_minute
        self.batch_max_items = batch_max_items
        self.requestid_ttl = requestid_ttl
        self.seed_customers = {
            str(k): dict(v) for k, v in (customers if customers is not None else DEFAULT_CUSTOMERS).items()
        }
        self.seed_items = dict(items if items is not None else DEFAULT_ITEMS)
        self.seed_tax_rates = {k: (n, Decimal(p)) for k, (n, p) in (tax_rates or DEFAULT_TAX_RATES).items()}
        self.seed_tax_codes = {k: (n, list(r)) for k, (n, r) in (tax_codes or DEFAULT_TAX_CODES).items()}
        self.home_currency = home_currency
        self.multicurrency = multicurrency
        #: ``Retry-After`` (seconds) of an injected ``"429"`` fault.
        self.fault_retry_after: int = 60
        self.tokens = Tokens(
            refresh_token,
            access_token_ttl,
            refresh_grace_seconds,
            access_prefix="eyJ.emu.",
            access_bytes=24,
            refresh_prefix="AB11",
            refresh_bytes=20,
            code_prefix="AB11emu",
        )
        self._init_state()

    # ------------------------------------------------------------------ lifecycle
    def _new_fault_queue(self) -> FaultQueue:
        return FaultQueue(self.fault_kinds, in_order=True, after_commit_on_writes=True)

    def _init_state(self) -> None:
        self._realms: dict[str, _Realm] = {}
        for realm in self.realm_ids:
            customers = {}
            for cid, c in self.seed_customers.items():
                customers[cid] = self._customer_entity(cid, c)
            self._realms[realm] = _Realm(
                customers=customers,
                items=dict(self.seed_items),
                tax_rates=dict(self.seed_tax_rates),
                tax_codes={k: (n, list(r)) for k, (n, r) in self.seed_tax_codes.items()},
                invoices={},
                credit_memos={},
                payments={},
                next_id=130,
                request_ids=ReplayCache(self.requestid_ttl),
                minute=Window(self.rate_limit_per_minute, 60.0),
                second=Window(self.per_second_limit, 1.0),
                batch_minute=Window(self.batch_limit_per_minute, 60.0),
                inflight=Concurrency(self.max_concurrency),
            )
        self._init_records()
        self.request_ids_seen: list[tuple[str, str, bool]] = []
        self.emails: list[tuple[str, str, str]] = []
        self.minor_versions: list[str] = []

    @property
    def token_url(self) -> str:
        """The connector's ``token_url``."""
        return f"{self.url}/oauth2/v1/tokens/bearer"

    # ------------------------------------------------------------------ test helpers
    def invoices(self, realm_id: str | None = None) -> list[dict[str, Any]]:
        """Deep copies of the stored invoices (QBO JSON shape, Decimal amounts)."""
        with self._lock:
            return stored_objects(self._realms, "invoices", realm_id)

    def customers(self, realm_id: str | None = None) -> list[dict[str, Any]]:
        with self._lock:
            return stored_objects(self._realms, "customers", realm_id)

    def credit_memos(self, realm_id: str | None = None) -> list[dict[str, Any]]:
        """Deep copies of the stored credit memos."""
        with self._lock:
            return stored_objects(self._realms, "credit_memos", realm_id)

    def pay(self, realm_id: str, invoice_id: str, amount: Decimal | None = None) -> dict[str, Any]:
        """Record a ``Payment`` of ``amount`` (``None``: the whole ``Balance``) on invoice ``invoice_id``, as
        QBO does when the customer pays: ``Balance`` drops, both sides list the other in ``LinkedTxn``.
        Raises ``KeyError`` (unknown realm or invoice) or ``ValueError`` (voided invoice, amount not in
        ``(0, Balance]``)."""
        with self._lock:
            realm = self._realms[realm_id]
            invoice = realm.invoices.get(invoice_id)
            if invoice is None:
                raise KeyError(f"no invoice {invoice_id} in realm {realm_id}")
            balance = Decimal(invoice["Balance"])
            paid = balance if amount is None else _q2(Decimal(amount))
            if str(invoice.get("PrivateNote", "")).startswith("Voided") and invoice["TotalAmt"] == 0:
                raise ValueError(f"invoice {invoice_id} is voided")
            if paid <= 0 or paid > balance:
                raise ValueError(f"payment {paid} must be more than 0 and at most the balance {balance}")
            payment_id = str(realm.next_id)
            realm.next_id += 1
            now = _qbo_time()
            payment = {
                "Id": payment_id,
                "SyncToken": "0",
                "domain": "QBO",
                "sparse": False,
                "TxnDate": date.today().isoformat(),
                "CustomerRef": copy.deepcopy(invoice["CustomerRef"]),
                "CurrencyRef": copy.deepcopy(invoice["CurrencyRef"]),
                "TotalAmt": paid,
                "UnappliedAmt": Decimal("0"),
                "Line": [{"Amount": paid, "LinkedTxn": [{"TxnId": invoice_id, "TxnType": "Invoice"}]}],
                "MetaData": {"CreateTime": now, "LastUpdatedTime": now},
            }
            realm.payments[payment_id] = payment
            invoice["Balance"] = invoice["HomeBalance"] = balance - paid
            invoice.setdefault("LinkedTxn", []).append({"TxnId": payment_id, "TxnType": "Payment"})
            self._touch(invoice)
            self._notify(realm_id, "Payment", payment_id, "Create")
            return copy.deepcopy(payment)

    def webhook_signature(self, body: bytes, verifier: str | None = None) -> str:
        """``intuit-signature`` of ``body``: Base64 of HMAC-SHA256(``verifier`` (default the app's token), raw body)."""
        digest = hmac.new((verifier or self.webhook_verifier).encode(), body, hashlib.sha256).digest()
        return base64.b64encode(digest).decode()

    def _notify(self, realm_id: str, name: str, ident: str, operation: str) -> None:
        """Queue the change notification of entity ``name`` ``ident`` (caller holds the lock; sent after it)."""
        entity = {"name": name, "id": ident, "operation": operation, "lastUpdated": _qbo_time()}
        payload = {"eventNotifications": [{"realmId": realm_id, "dataChangeEvent": {"entities": [entity]}}]}
        self.webhooks.send(
            f"{name}.{operation}", payload, lambda body, _t: {"intuit-signature": self.webhook_signature(body)}
        )

    def balance(self, realm_id: str, customer_id: str | None = None) -> Decimal:
        """What the customers (or ``customer_id``) owe: Σ ``Balance`` of the invoices (voided ones are 0)
        − Σ ``RemainingCredit`` of the credit memos."""
        with self._lock:
            realm = self._realms[realm_id]

            def mine(entity: dict[str, Any]) -> bool:
                return customer_id is None or entity["CustomerRef"]["value"] == customer_id

            due = sum((Decimal(i["Balance"]) for i in realm.invoices.values() if mine(i)), Decimal("0"))
            credit = sum((Decimal(c["RemainingCredit"]) for c in realm.credit_memos.values() if mine(c)), Decimal("0"))
            return _q2(due - credit)

    def plant_invoice(self, realm_id: str, doc: dict[str, Any], txn_type: str = "Invoice") -> dict[str, Any]:
        """Store an invoice (or, ``txn_type="CreditMemo"``, a credit memo) made outside the broker (the QBO UI,
        another app): ``doc`` as a create body, checked like one (``ValueError`` naming the faults). Returns
        the stored entity."""
        with self._lock:
            try:
                return self._create_invoice(self._realms[realm_id], doc, allow_duplicate=False, txn_type=txn_type)
            except _ValidationError as exc:
                raise ValueError(str(exc)) from None

    @staticmethod
    def _touch(entity: dict[str, Any]) -> None:
        entity["SyncToken"] = str(int(entity["SyncToken"]) + 1)
        entity["MetaData"]["LastUpdatedTime"] = _qbo_time()

    def inject_fault(self, kind: str, times: int = 1) -> None:
        """Make the next ``times`` company API calls fail with ``kind``.

        ``"503"``/``"500"`` answer that status without processing; ``"429"`` a throttling fault;
        ``"reset"`` resets the TCP connection before processing; ``"timeout_after_commit"`` processes
        (stores) the request, then keeps the socket open ``hang_seconds`` and closes it unanswered;
        ``"drop_after_commit"`` processes, then closes the connection unanswered. The two after-commit
        kinds wait for the next write (``POST``): reads before it pass untouched.
        """
        self._add_fault(Fault(kind), times)

    def stats(self) -> dict[str, Any]:
        with self._lock:
            return {
                **super().stats(),
                "invoice_count": sum(len(r.invoices) for r in self._realms.values()),
                "refresh_token_uses": len(self.refresh_token_uses),
                "request_ids": [list(x) for x in self.request_ids_seen],
                "emails": [list(x) for x in self.emails],
            }

    # ------------------------------------------------------------------ dispatch
    def _handle(self, req: Request) -> Response:
        path = req.path
        lower = path.rstrip("/").lower() or "/"
        if lower.startswith("/_emulator"):
            return self._admin(req, lower)
        message = self._invalid(req)
        if message is not None:  # the request does not conform to the field reference
            return _fault_response(400, [QboError("2010", "Request has invalid or unsupported property", message)])
        if lower == "/connect/oauth2":
            return self._authorize(req)
        if lower == "/oauth2/v1/tokens/bearer":
            if req.method != "POST":
                return json_response(405, {"error": "method_not_allowed"}, {"Allow": "POST"})
            return self._token(req)
        m = re.fullmatch(r"/v3/company/([^/]+)/(.+)", path.rstrip("/"))
        if m:
            return self._company(req, unquote(m.group(1)), m.group(2))
        return json_response(404, {"error": f"no emulated resource at {path}"})

    # ------------------------------------------------------------------ OAuth2
    def _token(self, req: Request) -> Response:
        """Client authentication (HTTP Basic or the form), then the refresh-token grant (rotating) or the
        authorization-code grant (single-use code, same ``redirect_uri``, PKCE verifier when a challenge was
        sent)."""
        with self._lock:
            outcome = token_grant(self.tokens, req, self.client_id, self.client_secret)
        if outcome == "invalid_client":
            return json_response(401, {"error": "invalid_client"})
        if isinstance(outcome, str):
            return json_response(400, {"error": "invalid_grant" if outcome == INVALID_VERIFIER else outcome})
        return self._issued(*outcome)

    def _issued(self, access: str, new_refresh: str) -> Response:
        return json_response(
            200,
            {
                "token_type": "bearer",
                "expires_in": math.ceil(self.access_token_ttl),
                "refresh_token": new_refresh,
                "x_refresh_token_expires_in": 8726400,
                "access_token": access,
            },
            {"Cache-Control": "no-store"},
        )

    def _authorize(self, req: Request) -> Response:
        """``GET /connect/oauth2`` (appcenter.intuit.com): the user consents at once; 302 to the loopback
        ``redirect_uri`` with ``code``, ``state`` and ``realmId`` (the first company)."""
        with self._lock:
            answer = consent(self.tokens, req.query, self.client_id, realmId=self.realm_ids[0])
        return json_response(400, {"error": answer}) if isinstance(answer, str) else answer

    def _authenticate(self, req: Request) -> Response | None:
        with self._lock:
            expires = self.tokens.expiry(bearer(req))
        if expires is None or time.monotonic() >= expires:
            detail = "Token expired" if expires is not None else "Token invalid"
            fault = QboError(
                "3200",
                "message=AuthenticationFailed; errorCode=003200; statusCode=401",
                detail,
                fault_type="AuthenticationFault",
            )
            return _fault_response(401, [fault], {"WWW-Authenticate": 'Bearer realm="Intuit", error="invalid_token"'})
        return None

    # ------------------------------------------------------------------ company gate
    def _admit(self, realm: _Realm, batch: bool) -> Response | None:
        """Count the call against the realm's limits or return the 429. Caller holds the lock."""
        now = time.monotonic()
        realm.minute.limit, realm.second.limit = self.rate_limit_per_minute, self.per_second_limit
        realm.batch_minute.limit, realm.inflight.limit = self.batch_limit_per_minute, self.max_concurrency
        for window in (realm.minute, realm.second, realm.batch_minute):
            window.prune(now)
        problem, retry = None, 0.0
        if realm.minute.full(now):
            problem, retry = "minute", realm.minute.retry_after(now)
        elif realm.second.full(now):
            problem, retry = "second", realm.second.retry_after(now)
        elif batch and realm.batch_minute.full(now):
            problem, retry = "batch", realm.batch_minute.retry_after(now)
        elif realm.inflight.full():
            problem, retry = "concurrent", 1.0
        if problem is not None:
            self.count_429 += 1
            return self._throttled(problem, retry)
        realm.minute.add(now)
        realm.second.add(now)
        if batch:
            realm.batch_minute.add(now)
        realm.inflight.enter()
        return None

    @staticmethod
    def _throttled(problem: str, retry: float) -> Response:
        fault = QboError(
            "3001",
            "message=ThrottleExceeded; errorCode=003001; statusCode=429",
            f"The request limit was reached ({problem}).",
            fault_type="ThrottlingFault",
        )
        return _fault_response(429, [fault], {"Retry-After": str(max(1, math.ceil(retry)))})

    def _company(self, req: Request, realm_id: str, resource: str) -> Response:
        denied = self._authenticate(req)
        if denied is not None:
            return denied
        realm = self._realms.get(realm_id)
        if realm is None:
            fault = QboError(
                "3100",
                "message=ApplicationAuthorizationFailed; errorCode=003100; statusCode=403",
                "",
                fault_type="AuthorizationFault",
            )
            return _fault_response(403, [fault])
        if "minorversion" in req.query:
            with self._lock:
                self.minor_versions.append(req.query["minorversion"])
        is_batch = resource.lower() == "batch"
        return self._gate(
            req,
            lambda: self._admit(realm, is_batch),
            realm.inflight,
            lambda: self._with_request_id(req, realm_id, realm, resource, is_batch),
        )

    def _fault_status(self, status: int) -> Response:
        if status == 503:
            return html_response(503, "Service Unavailable")
        fault = QboError(
            "10000",
            "An application error has occurred while processing your request",
            "System Failure Error: An unexpected error occurred",
            fault_type="SystemFault",
        )
        return _fault_response(500, [fault])

    def _fault_throttled(self, fault: Fault) -> Response:  # noqa: ARG002 - the kit's signature
        return self._throttled("injected", float(self.fault_retry_after))

    def _with_request_id(self, req: Request, realm_id: str, realm: _Realm, resource: str, is_batch: bool) -> Response:
        """``requestid`` replay around :meth:`_route` (caller holds the lock)."""
        rid = req.query.get("requestid")
        if req.method != "POST" or not rid:
            return self._route(req, realm_id, realm, resource)
        limit = 36 if is_batch else 50
        if len(rid) > limit:
            return _fault_response(400, [_too_long("requestid", rid, limit)])
        now = time.monotonic()
        realm.request_ids.ttl = self.requestid_ttl
        cached = realm.request_ids.get(rid, now)
        if cached is not None:
            self.request_ids_seen.append((realm_id, rid, True))
            return cached.response()
        self.request_ids_seen.append((realm_id, rid, False))
        resp = self._route(req, realm_id, realm, resource)
        if resp.status < 500:
            realm.request_ids.save(rid, resp, now=now)
        return resp

    def _route(self, req: Request, realm_id: str, realm: _Realm, resource: str) -> Response:
        parts = [unquote(p) for p in resource.split("/")]
        name = parts[0].lower()
        try:
            if name == "companyinfo" and len(parts) == 2 and req.method == "GET":
                return self._company_info(realm_id, parts[1])
            if name == "invoice" and len(parts) == 1 and req.method == "POST":
                doc = self._parse(req)
                operation = req.query.get("operation")
                if operation is not None and operation.lower() != "void":
                    raise _business(f"operation={operation} is not emulated (void only)", "operation")
                if operation is not None:
                    voided = self._void(realm, doc)
                    self._notify(realm_id, "Invoice", str(voided["Id"]), "Void")
                    return json_response(200, {"Invoice": voided, "time": _qbo_time()})
                entity = self._create_invoice(realm, doc, allow_duplicate=self._allow_dup(req))
                return json_response(200, {"Invoice": entity, "time": _qbo_time()})
            if name == "creditmemo" and len(parts) == 1 and req.method == "POST":
                if "operation" in req.query:
                    raise _business("operations on credit memos are not emulated", "operation")
                entity = self._create_invoice(realm, self._parse(req), allow_duplicate=False, txn_type="CreditMemo")
                return json_response(200, {"CreditMemo": entity, "time": _qbo_time()})
            if name in ("creditmemo", "payment") and len(parts) == 2 and req.method == "GET":
                kind, store = (
                    ("CreditMemo", realm.credit_memos) if name == "creditmemo" else ("Payment", realm.payments)
                )
                if parts[1] not in store:
                    raise _not_found(kind, parts[1])
                return json_response(200, {kind: copy.deepcopy(store[parts[1]]), "time": _qbo_time()})
            if name == "invoice" and len(parts) == 2 and req.method == "GET":
                return json_response(
                    200, {"Invoice": copy.deepcopy(self._invoice(realm, parts[1])), "time": _qbo_time()}
                )
            if name == "invoice" and len(parts) == 3 and parts[2].lower() == "send" and req.method == "POST":
                entity = self._send(realm_id, realm, parts[1], req.query.get("sendTo"))
                return json_response(200, {"Invoice": entity, "time": _qbo_time()})
            if name == "query" and len(parts) == 1 and req.method in ("GET", "POST"):
                text = req.query.get("query")
                if text is None and req.method == "POST":
                    text = req.body.decode("utf-8", "replace")
                if not text:
                    raise _required("query")
                return json_response(200, {"QueryResponse": self._query(realm, text), "time": _qbo_time()})
            if name == "batch" and len(parts) == 1 and req.method == "POST":
                return self._batch(realm, self._parse(req), self._allow_dup(req))
            if name == "customer" and len(parts) == 1 and req.method == "POST":
                return json_response(
                    200, {"Customer": self._create_customer(realm, self._parse(req)), "time": _qbo_time()}
                )
            if name == "customer" and len(parts) == 2 and req.method == "GET":
                customer = realm.customers.get(parts[1])
                if customer is None:
                    raise _not_found("Customer", parts[1])
                return json_response(200, {"Customer": copy.deepcopy(customer), "time": _qbo_time()})
        except QboError as fault:
            return _fault_response(400, [fault])
        except _ValidationError as faults:
            return _fault_response(400, faults.errors)
        return json_response(404, {"error": f"{req.method} /v3/company/{realm_id}/{resource} is not emulated"})

    @staticmethod
    def _allow_dup(req: Request) -> bool:
        return "allowduplicatedocnum" in req.query.get("include", "").lower()

    @staticmethod
    def _parse(req: Request) -> Any:
        try:
            return loads_decimal(req.body or b"")
        except ValueError as exc:
            raise QboError(
                "2010",
                "Request has invalid or unsupported property",
                f"Property Name:Failed to parse json object ; nested exception is {exc}",
            ) from None

    def _company_info(self, realm_id: str, ident: str) -> Response:
        if ident != realm_id:
            raise _not_found("CompanyInfo", ident)
        return json_response(
            200,
            {
                "CompanyInfo": {
                    "Id": "1",
                    "SyncToken": "4",
                    "CompanyName": f"Emulated Company {realm_id}",
                    "LegalName": "Emulated Company, Lda.",
                    "Country": "PT",
                    "SupportedLanguages": "en",
                    "DefaultTimeZone": "Europe/Lisbon",
                    "NameValue": [
                        {"Name": "HomeCurrency", "Value": self.home_currency},
                        {"Name": "MultiCurrencyEnabled", "Value": str(self.multicurrency).lower()},
                    ],
                    "domain": "QBO",
                    "sparse": False,
                },
                "time": _qbo_time(),
            },
        )

    # ------------------------------------------------------------------ entities
    def _customer_entity(self, cid: str, seed: Mapping[str, Any]) -> dict[str, Any]:
        entity: dict[str, Any] = {
            "Id": cid,
            "SyncToken": "0",
            "DisplayName": str(seed["DisplayName"]),
            "Active": True,
            "CurrencyRef": {"value": self.home_currency},
            "domain": "QBO",
            "sparse": False,
        }
        if seed.get("PrimaryEmailAddr"):
            email = seed["PrimaryEmailAddr"]
            entity["PrimaryEmailAddr"] = {"Address": email["Address"] if isinstance(email, Mapping) else str(email)}
        if seed.get("PrimaryTaxIdentifier"):
            entity["PrimaryTaxIdentifier"] = str(seed["PrimaryTaxIdentifier"])
        return entity

    def _create_customer(self, realm: _Realm, doc: Any) -> dict[str, Any]:
        if not isinstance(doc, dict):
            raise _required("Customer")
        name = str(doc.get("DisplayName") or "").strip()
        if not name:
            raise _required("DisplayName")
        if any(c["DisplayName"].casefold() == name.casefold() for c in realm.customers.values()):
            raise QboError(
                "6240",
                "Duplicate Name Exists Error",
                "The name supplied already exists. : Another customer is already using this name. "
                "Please use a different name.",
                "DisplayName",
            )
        cid = str(realm.next_id)
        realm.next_id += 1
        realm.customers[cid] = self._customer_entity(cid, doc)
        return copy.deepcopy(realm.customers[cid])

    def _invoice(self, realm: _Realm, ident: str) -> dict[str, Any]:
        invoice = realm.invoices.get(ident)
        if invoice is None:
            raise _not_found("Invoice", ident)
        return invoice

    @staticmethod
    def _decimal(value: Any, element: str, errors: list[QboError]) -> Decimal | None:
        if value is None:
            return None
        if isinstance(value, bool) or not isinstance(value, (int, Decimal, str)):
            errors.append(
                QboError(
                    "2010",
                    "Request has invalid or unsupported property",
                    f"Property Name:Can not construct instance of java.math.BigDecimal from {value!r}",
                    element,
                )
            )
            return None
        result = decimal_or_none(value)
        if result is None:
            errors.append(
                QboError(
                    "2010",
                    "Request has invalid or unsupported property",
                    f"Property Name:Can not construct instance of java.math.BigDecimal from String value '{value}'",
                    element,
                )
            )
            return None
        return result

    @staticmethod
    def _ref(value: Any) -> str | None:
        if isinstance(value, Mapping) and value.get("value") not in (None, ""):
            return str(value["value"])
        return None

    def _create_invoice(
        self, realm: _Realm, doc: Any, *, allow_duplicate: bool, txn_type: str = "Invoice"
    ) -> dict[str, Any]:
        """Validate, compute and store one invoice or (``txn_type="CreditMemo"``) credit memo (raises
        :class:`_ValidationError` with every problem found)."""
        entity, commit = self._build_invoice(realm, doc, allow_duplicate=allow_duplicate, taken=None, txn_type=txn_type)
        commit()
        return copy.deepcopy(entity)

    def _build_invoice(
        self, realm: _Realm, doc: Any, *, allow_duplicate: bool, taken: set[str] | None, txn_type: str = "Invoice"
    ) -> tuple[dict[str, Any], Callable[[], None]]:
        if not isinstance(doc, dict):
            raise _ValidationError([_required(txn_type)])
        fields, store = (
            (_INVOICE_FIELDS, realm.invoices) if txn_type == "Invoice" else (_CREDIT_MEMO_FIELDS, realm.credit_memos)
        )
        errors: list[QboError] = [_unsupported(key) for key in doc if key not in fields]
        if doc.get("Id") or doc.get("SyncToken"):
            errors.append(_business("updates (Id/SyncToken) are not emulated; only create is", "Id"))
        customer_id = self._ref(doc.get("CustomerRef"))
        customer = None
        if customer_id is None:
            errors.append(_required("CustomerRef"))
        else:
            customer = realm.customers.get(customer_id)
            if customer is None:
                errors.append(_invalid_ref("Names", customer_id, "CustomerRef"))
        currency = self._ref(doc.get("CurrencyRef")) or self.home_currency
        if currency != self.home_currency and not self.multicurrency:
            errors.append(
                _business(f"Multicurrency is not enabled: this company only uses {self.home_currency}", "CurrencyRef")
            )
        number = doc.get("DocNumber")
        if number is not None and not isinstance(number, str):
            errors.append(_unsupported("DocNumber"))
            number = None
        if isinstance(number, str) and len(number) > 21:
            errors.append(_too_long("DocNumber", number, 21))
        note = doc.get("PrivateNote")
        if isinstance(note, str) and len(note) > 4000:
            errors.append(_too_long("PrivateNote", note, 4000))
        memo = doc.get("CustomerMemo")
        memo_text = memo.get("value") if isinstance(memo, Mapping) else None
        if isinstance(memo_text, str) and len(memo_text) > 1000:
            errors.append(_too_long("CustomerMemo", memo_text, 1000))
        calc = doc.get("GlobalTaxCalculation") or "TaxExcluded"
        if calc not in ("TaxExcluded", "TaxInclusive", "NotApplicable"):
            errors.append(
                QboError("2170", "Invalid Enumeration", f"Invalid Enumeration : {calc}", "GlobalTaxCalculation")
            )
        if calc == "TaxInclusive":
            errors.append(
                _business("TaxInclusive is not emulated (send net amounts with TaxExcluded)", "GlobalTaxCalculation")
            )
        dates: dict[str, date | None] = {}
        for field_name in ("TxnDate", "DueDate"):
            raw = doc.get(field_name)
            if raw is None:
                dates[field_name] = None
                continue
            try:
                dates[field_name] = date.fromisoformat(str(raw)[:10].replace("/", "-"))
            except ValueError:
                errors.append(
                    QboError(
                        "2010",
                        "Request has invalid or unsupported property",
                        f"Property Name:Can not parse date {raw!r}",
                        field_name,
                    )
                )
                dates[field_name] = None

        raw_lines = doc.get("Line")
        if not isinstance(raw_lines, list) or not raw_lines:
            errors.append(_required("Line"))
            raw_lines = []
        lines_out: list[dict[str, Any]] = []
        base_by_rate: dict[str, Decimal] = {}
        subtotal = Decimal("0")
        for index, raw in enumerate(raw_lines):
            where = f"Line[{index}]"
            if not isinstance(raw, dict):
                errors.append(_unsupported(where))
                continue
            errors.extend(_unsupported(f"{where}.{key}") for key in raw if key not in _LINE_FIELDS)
            if raw.get("DetailType") != "SalesItemLineDetail":
                errors.append(
                    _business(
                        f"{where}.DetailType {raw.get('DetailType')!r} is not emulated (SalesItemLineDetail only)",
                        "DetailType",
                    )
                )
                continue
            detail = raw.get("SalesItemLineDetail")
            if not isinstance(detail, dict):
                errors.append(_required(f"{where}.SalesItemLineDetail"))
                continue
            errors.extend(
                _unsupported(f"{where}.SalesItemLineDetail.{key}") for key in detail if key not in _SALES_DETAIL_FIELDS
            )
            description = raw.get("Description")
            if isinstance(description, str) and len(description) > 4000:
                errors.append(_too_long(f"{where}.Description", description, 4000))
            amount = self._decimal(raw.get("Amount"), f"{where}.Amount", errors)
            qty = self._decimal(detail.get("Qty"), f"{where}.Qty", errors)
            price = self._decimal(detail.get("UnitPrice"), f"{where}.UnitPrice", errors)
            if amount is None:
                if raw.get("Amount") is None:
                    errors.append(_required(f"{where}.Amount"))
                continue
            if qty is not None and price is not None and _q2(qty * price) != _q2(amount):
                errors.append(
                    QboError(
                        "6070",
                        "Amount is not equal to UnitPrice * Qty",
                        f"Amount is not equal to UnitPrice * Qty. Supplied value:{amount}",
                        f"{where}.Amount",
                    )
                )
                continue
            item_id = self._ref(detail.get("ItemRef"))
            if item_id is None:
                errors.append(_required(f"{where}.SalesItemLineDetail.ItemRef"))
                continue
            if item_id not in realm.items:
                errors.append(_invalid_ref("Item", item_id, f"{where}.SalesItemLineDetail.ItemRef"))
                continue
            code_id = self._ref(detail.get("TaxCodeRef"))
            if code_id is None:
                errors.append(
                    _business(
                        "Make sure all your transactions have a VAT rate before you save.",
                        f"{where}.SalesItemLineDetail.TaxCodeRef",
                    )
                )
                continue
            if code_id not in realm.tax_codes:
                errors.append(_invalid_ref("TaxCode", code_id, f"{where}.SalesItemLineDetail.TaxCodeRef"))
                continue
            amount = _q2(amount)
            for rate_id in realm.tax_codes[code_id][1]:
                base_by_rate[rate_id] = base_by_rate.get(rate_id, Decimal("0")) + amount
            subtotal += amount
            out_detail: dict[str, Any] = {
                "ItemRef": {"value": item_id, "name": realm.items[item_id]},
                "TaxCodeRef": {"value": code_id},
            }
            if qty is not None:
                out_detail["Qty"] = qty
            if price is not None:
                out_detail["UnitPrice"] = price
            lines_out.append(
                {
                    "Id": str(len(lines_out) + 1),
                    "LineNum": len(lines_out) + 1,
                    "Description": description or "",
                    "Amount": amount,
                    "DetailType": "SalesItemLineDetail",
                    "SalesItemLineDetail": out_detail,
                }
            )

        # tax: per rate on the sum of the lines, unless a TaxLine supplies the amount
        tax_by_rate = {rid: _q2(base * realm.tax_rates[rid][1] / Decimal(100)) for rid, base in base_by_rate.items()}
        supplied = doc.get("TxnTaxDetail")
        if supplied is not None:
            tax_lines = supplied.get("TaxLine") if isinstance(supplied, dict) else None
            for t_index, tl in enumerate(tax_lines or []):
                detail = tl.get("TaxLineDetail") if isinstance(tl, dict) else None
                line_rate_id = self._ref(detail.get("TaxRateRef")) if isinstance(detail, dict) else None
                where = f"TxnTaxDetail.TaxLine[{t_index}]"
                if line_rate_id is None:
                    errors.append(_required(f"{where}.TaxLineDetail.TaxRateRef"))
                    continue
                if line_rate_id not in realm.tax_rates:
                    errors.append(_invalid_ref("TaxRate", line_rate_id, f"{where}.TaxLineDetail.TaxRateRef"))
                    continue
                if line_rate_id not in base_by_rate:
                    errors.append(
                        _business(f"tax rate {line_rate_id} is not used by any line of this transaction", where)
                    )
                    continue
                amount = self._decimal(tl.get("Amount"), f"{where}.Amount", errors)
                if amount is not None:
                    tax_by_rate[line_rate_id] = _q2(amount)
        total_tax = sum(tax_by_rate.values(), Decimal("0"))
        total = _q2(subtotal + total_tax)
        if not errors and total < 0:
            errors.append(_business("The transaction total cannot be negative.", "TotalAmt"))

        taken_numbers = (
            taken
            if taken is not None
            else {str(i.get("DocNumber", "")).casefold() for i in store.values() if i.get("DocNumber")}
        )
        if isinstance(number, str) and number and not allow_duplicate and number.casefold() in taken_numbers:
            holder = next(
                (i for i in store.values() if str(i.get("DocNumber", "")).casefold() == number.casefold()),
                None,
            )
            txn = f" with TxnId={holder['Id']}" if holder else ""
            errors.append(
                QboError(
                    "6140",
                    "Duplicate Document Number Error",
                    "Duplicate Document Number Error : You must specify a different number. This number has already "
                    f"been used. DocNumber={number} is assigned to TxnType={txn_type}{txn}",
                    "DocNumber",
                )
            )
        if errors:
            raise _ValidationError(errors)

        invoice_id = str(realm.next_id)
        realm.next_id += 1
        now = _qbo_time()
        txn_date = dates["TxnDate"] or date.today()
        entity: dict[str, Any] = {
            "Id": invoice_id,
            "SyncToken": "0",
            "domain": "QBO",
            "sparse": False,
            "DocNumber": number or invoice_id,
            "TxnDate": txn_date.isoformat(),
            "DueDate": (dates["DueDate"] or txn_date).isoformat(),
            "CurrencyRef": {"value": currency},
            "CustomerRef": {"value": customer_id, "name": customer["DisplayName"] if customer else ""},
            "GlobalTaxCalculation": calc,
            "Line": [
                *lines_out,
                {"Amount": _q2(subtotal), "DetailType": "SubTotalLineDetail", "SubTotalLineDetail": {}},
            ],
            "TxnTaxDetail": {
                "TotalTax": total_tax,
                "TaxLine": [
                    {
                        "Amount": amount,
                        "DetailType": "TaxLineDetail",
                        "TaxLineDetail": {
                            "TaxRateRef": {"value": rid, "name": realm.tax_rates[rid][0]},
                            "PercentBased": True,
                            "TaxPercent": realm.tax_rates[rid][1],
                            "NetAmountTaxable": _q2(base_by_rate[rid]),
                        },
                    }
                    for rid, amount in tax_by_rate.items()
                ],
            },
            "TotalAmt": total,
            "Balance": total,
            "HomeBalance": total,
            "EmailStatus": doc.get("EmailStatus") or "NotSet",
            "PrintStatus": doc.get("PrintStatus") or "NotSet",
            "MetaData": {"CreateTime": now, "LastUpdatedTime": now},
        }
        for key in ("PrivateNote", "CustomerMemo", "BillEmail"):
            if doc.get(key) is not None:
                entity[key] = copy.deepcopy(doc[key])
        if "BillEmail" not in entity and customer and customer.get("PrimaryEmailAddr"):
            entity["BillEmail"] = copy.deepcopy(customer["PrimaryEmailAddr"])
        if entity["EmailStatus"] == "NeedToSend" and not entity.get("BillEmail"):
            raise _ValidationError([_business("BillEmail is required when EmailStatus is NeedToSend", "BillEmail")])
        if txn_type == "CreditMemo":
            entity.pop("DueDate")
            entity.pop("HomeBalance")
            entity["RemainingCredit"] = total

        def commit() -> None:
            store[invoice_id] = entity

        return entity, commit

    def _void(self, realm: _Realm, doc: Any) -> dict[str, Any]:
        """``POST invoice?operation=void`` with ``{"Id", "SyncToken"}`` (see the module docstring)."""
        if not isinstance(doc, dict):
            raise _required("Invoice")
        unknown = [key for key in doc if key not in ("Id", "SyncToken", "sparse")]
        if unknown:
            raise _unsupported(unknown[0])
        for key in ("Id", "SyncToken"):
            if not isinstance(doc.get(key), str) or not doc[key]:
                raise _required(key)
        invoice = self._invoice(realm, doc["Id"])
        if doc["SyncToken"] != invoice["SyncToken"]:
            raise QboError(
                "5010",
                "Stale Object Error",
                f"Stale Object Error : You and another user were working on the same thing. Object Id: {doc['Id']}, "
                f"SyncToken {doc['SyncToken']}, the current one is {invoice['SyncToken']}",
                "SyncToken",
            )
        note = str(invoice.get("PrivateNote") or "")
        if note.startswith("Voided") and invoice["TotalAmt"] == 0:
            return copy.deepcopy(invoice)
        if any(link.get("TxnType") == "Payment" for link in invoice.get("LinkedTxn") or []):
            raise _business(
                "This transaction is linked to a payment and cannot be voided: unlink or delete the payment first",
                "LinkedTxn",
            )
        for line in invoice["Line"]:
            line["Amount"] = Decimal("0")
            detail = line.get("SalesItemLineDetail")
            if isinstance(detail, dict):
                detail.pop("Qty", None)
                detail.pop("UnitPrice", None)
        invoice["TxnTaxDetail"] = {"TotalTax": Decimal("0")}
        invoice["TotalAmt"] = invoice["Balance"] = invoice["HomeBalance"] = Decimal("0")
        invoice["PrivateNote"] = f"Voided - {note}" if note else "Voided"
        self._touch(invoice)
        return copy.deepcopy(invoice)

    def _send(self, realm_id: str, realm: _Realm, ident: str, send_to: str | None) -> dict[str, Any]:
        invoice = self._invoice(realm, ident)
        address = send_to or (invoice.get("BillEmail") or {}).get("Address")
        if not address or "@" not in address:
            raise _business(
                "An email address is required to send this invoice (BillEmail is empty and no sendTo was given).",
                "BillEmail",
            )
        if send_to:
            invoice["BillEmail"] = {"Address": send_to}
        invoice["EmailStatus"] = "EmailSent"
        invoice["DeliveryInfo"] = {"DeliveryType": "Email", "DeliveryTime": _qbo_time()}
        self._touch(invoice)
        self.emails.append((realm_id, ident, address))
        return copy.deepcopy(invoice)

    # ------------------------------------------------------------------ query language (subset)
    _QUERY = re.compile(
        r"^\s*select\s+(?P<what>\*|count\(\*\))\s+from\s+(?P<entity>\w+)"
        r"(?:\s+where\s+(?P<where>.+?))?"
        r"(?:\s+orderby\s+(?P<order>\w+)(?:\s+(?P<dir>asc|desc))?)?"
        r"(?:\s+startposition\s+(?P<start>\d+))?"
        r"(?:\s+maxresults\s+(?P<max>\d+))?\s*$",
        re.IGNORECASE | re.DOTALL,
    )
    _FIELDS: ClassVar[dict[str, dict[str, str]]] = {
        "invoice": {
            "id": "Id",
            "docnumber": "DocNumber",
            "txndate": "TxnDate",
            "customerref": "CustomerRef",
            "emailstatus": "EmailStatus",
        },
        "customer": {
            "id": "Id",
            "displayname": "DisplayName",
            "primaryemailaddr": "PrimaryEmailAddr",
            "active": "Active",
        },
        "creditmemo": {"id": "Id", "docnumber": "DocNumber", "txndate": "TxnDate", "customerref": "CustomerRef"},
        "payment": {"id": "Id", "txndate": "TxnDate", "customerref": "CustomerRef"},
    }
    #: Query entity -> (realm store, response key).
    _STORES: ClassVar[dict[str, tuple[str, str]]] = {
        "invoice": ("invoices", "Invoice"),
        "customer": ("customers", "Customer"),
        "creditmemo": ("credit_memos", "CreditMemo"),
        "payment": ("payments", "Payment"),
    }

    @staticmethod
    def _parse_error(text: str, why: str) -> QboError:
        return QboError("4000", "Error parsing query", f"QueryParserError: {why} (query: {text[:200]})")

    @classmethod
    def _literals(cls, text: str, source: str) -> list[str]:
        """Values of ``'a'`` or ``('a', 'b')``; ``\\'`` escapes a quote inside a value."""
        text = text.strip()
        values: list[str] = []
        inner = text[1:-1].strip() if text.startswith("(") and text.endswith(")") else text
        pos = 0
        while pos < len(inner):
            while pos < len(inner) and inner[pos] in " ,":
                pos += 1
            if pos >= len(inner):
                break
            if inner[pos] != "'":
                raise cls._parse_error(source, f'Encountered "{inner[pos : pos + 10]}", expected a quoted value')
            pos += 1
            buf = []
            while pos < len(inner) and inner[pos] != "'":
                if inner[pos] == "\\" and pos + 1 < len(inner):
                    pos += 1
                buf.append(inner[pos])
                pos += 1
            if pos >= len(inner):
                raise cls._parse_error(source, "unterminated string literal")
            pos += 1
            values.append("".join(buf))
        return values

    @classmethod
    def _conditions(cls, where: str, source: str) -> list[tuple[str, str, list[str]]]:
        conditions = []
        # split on AND outside quotes
        parts, buf, quoted, i = [], [], False, 0
        while i < len(where):
            ch = where[i]
            if ch == "\\" and quoted and i + 1 < len(where):
                buf.append(where[i : i + 2])
                i += 2
                continue
            if ch == "'":
                quoted = not quoted
            if not quoted and where[i : i + 5].lower() == " and ":
                parts.append("".join(buf))
                buf = []
                i += 5
                continue
            buf.append(ch)
            i += 1
        parts.append("".join(buf))
        for part in parts:
            m = re.match(r"^\s*(\w+)\s*(=|in|like)\s*(.+?)\s*$", part, re.IGNORECASE | re.DOTALL)
            if not m:
                raise cls._parse_error(source, f'Encountered "{part.strip()[:30]}"')
            conditions.append((m.group(1), m.group(2).lower(), cls._literals(m.group(3), source)))
        return conditions

    def _query(self, realm: _Realm, text: str) -> dict[str, Any]:
        m = self._QUERY.match(text)
        if not m:
            raise self._parse_error(text, "Encountered an unsupported statement")
        entity = m.group("entity").lower()
        if entity not in self._FIELDS:
            raise self._parse_error(text, f"entity {m.group('entity')} is not emulated")
        store, key = self._STORES[entity]
        rows = list(getattr(realm, store).values())
        if m.group("where"):
            for field_name, op, values in self._conditions(m.group("where"), text):
                attr = self._FIELDS[entity].get(field_name.lower())
                if attr is None:
                    raise QboError(
                        "4001", "Invalid query", f"QueryValidationError: property '{field_name}' is not queryable"
                    )

                def value_of(row: dict[str, Any], attr: str = attr) -> str:
                    v = row.get(attr)
                    if isinstance(v, dict):
                        v = v.get("value", v.get("Address"))
                    return "" if v is None else (str(v).lower() if isinstance(v, bool) else str(v))

                if op == "=":
                    if len(values) != 1:
                        raise self._parse_error(text, "= takes one value")
                    rows = [r for r in rows if value_of(r) == values[0]]
                elif op == "in":
                    rows = [r for r in rows if value_of(r) in values]
                else:
                    pattern = "^" + ".*".join(re.escape(p) for p in values[0].split("%")) + "$"
                    rows = [r for r in rows if re.match(pattern, value_of(r), re.DOTALL)]
        if m.group("what").lower() == "count(*)":
            return {"totalCount": len(rows)}
        start = max(1, int(m.group("start") or 1))
        maximum = min(1000, int(m.group("max") or 100))
        page = rows[start - 1 : start - 1 + maximum]
        if not page:
            return {}
        return {key: copy.deepcopy(page), "startPosition": start, "maxResults": len(page)}

    # ------------------------------------------------------------------ batch
    def _batch(self, realm: _Realm, doc: Any, allow_duplicate: bool) -> Response:
        items = doc.get("BatchItemRequest") if isinstance(doc, dict) else None
        if not isinstance(items, list) or not items:
            raise _required("BatchItemRequest")
        if len(items) > self.batch_max_items:
            raise QboError(
                "2010",
                "Request has invalid or unsupported property",
                f"The batch has {len(items)} items; the maximum is {self.batch_max_items}",
                "BatchItemRequest",
            )
        seen: set[str] = set()
        for item in items:
            bid = item.get("bId") if isinstance(item, dict) else None
            if not isinstance(bid, str) or not bid:
                raise _required("BatchItemRequest.bId")
            if bid in seen:
                raise QboError("2010", "Request has invalid or unsupported property", f"Duplicate bId {bid}", "bId")
            seen.add(bid)
        out = []
        for item in items:
            bid = item["bId"]
            try:
                if "Query" in item:
                    out.append({"bId": bid, "QueryResponse": self._query(realm, str(item["Query"]))})
                elif str(item.get("operation", "")).lower() == "create" and "Invoice" in item:
                    out.append(
                        {
                            "bId": bid,
                            "Invoice": self._create_invoice(realm, item["Invoice"], allow_duplicate=allow_duplicate),
                        }
                    )
                elif str(item.get("operation", "")).lower() == "create" and "Customer" in item:
                    out.append({"bId": bid, "Customer": self._create_customer(realm, item["Customer"])})
                else:
                    raise _business(
                        "only create Invoice/Customer and Query batch items are emulated", "BatchItemRequest"
                    )
            except QboError as fault:
                out.append({"bId": bid, "Fault": {"Error": [fault.error()], "type": fault.fault_type}})
            except _ValidationError as faults:
                out.append(
                    {"bId": bid, "Fault": {"Error": [e.error() for e in faults.errors], "type": "ValidationFault"}}
                )
        return json_response(200, {"BatchItemResponse": out, "time": _qbo_time()})

    # ------------------------------------------------------------------ control API
    def _admin_routes(self) -> dict[tuple[str, str], AdminRoute]:
        return {
            **super()._admin_routes(),
            ("GET", "/_emulator/invoices"): lambda _req: self._admin_listing(self._realms, "invoices", "RealmId"),
            ("GET", "/_emulator/customers"): lambda _req: self._admin_listing(self._realms, "customers", "RealmId"),
            ("GET", "/_emulator/creditmemos"): lambda _req: self._admin_listing(
                self._realms, "credit_memos", "RealmId"
            ),
            ("GET", "/_emulator/payments"): lambda _req: self._admin_listing(self._realms, "payments", "RealmId"),
            ("POST", "/_emulator/payments"): lambda req: self.admin_action(req, self._admin_pay),
            **self.webhooks.admin_routes(self, "verifier", lambda value: setattr(self, "webhook_verifier", value)),
            ("POST", "/_emulator/plant"): lambda req: self.admin_action(
                req,
                lambda doc: self.plant_invoice(str(doc["RealmId"]), doc["Invoice"], str(doc.get("TxnType", "Invoice"))),
            ),
            ("POST", "/_emulator/balance"): lambda req: self.admin_action(
                req,
                lambda doc: {
                    "Balance": str(self.balance(str(doc["RealmId"]), doc.get("CustomerId"))),
                },
            ),
        }

    def _admin_pay(self, doc: dict[str, Any]) -> dict[str, Any]:
        amount = doc.get("Amount")
        return self.pay(str(doc["RealmId"]), str(doc["InvoiceId"]), None if amount is None else Decimal(str(amount)))


class _ValidationError(Exception):
    """Several validation errors of one request (answered as one ``Fault`` with every ``Error``)."""

    def __init__(self, errors: list[QboError]):
        super().__init__("; ".join(e.detail for e in errors))
        self.errors = errors


def serve(host: str = "127.0.0.1", port: int = 0, **kwargs: Any) -> None:
    """Run an emulator in the foreground until Ctrl-C, printing its URLs and the demo credentials."""
    emulator = QuickBooksEmulator(host=host, port=port, **kwargs).start()
    serve_until_interrupted(
        emulator,
        [
            f"QuickBooks Online emulator listening on {emulator.url}",
            f"  api_url   : {emulator.url}",
            f"  token_url : {emulator.token_url}",
            f"  realm_id  : {', '.join(emulator.realm_ids)}",
            (
                f"  client_id : {emulator.client_id}  (QBO_CLIENT_SECRET={emulator.client_secret},"
                f" QBO_REFRESH_TOKEN={emulator.initial_refresh_token})"
            ),
        ],
    )


__all__ = [
    "DEFAULT_CUSTOMERS",
    "DEFAULT_ITEMS",
    "DEFAULT_REALM_ID",
    "DEFAULT_TAX_CODES",
    "DEFAULT_TAX_RATES",
    "DEFAULT_VERIFIER_TOKEN",
    "DEMO_TAX_CODES",
    "FAULT_KINDS",
    "QboError",
    "QuickBooksEmulator",
    "serve",
]


if __name__ == "__main__":  # python -m connectors.quickbooks.emulator [PORT]
    serve(port=int(sys.argv[1]) if len(sys.argv) > 1 else 8766)
