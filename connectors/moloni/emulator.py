"""A loopback emulator of the Moloni (Portugal) REST API v1, the parts the connector uses.

Behaviour follows the public documentation (https://moloni.pt/dev/, https://moloni.pt/dev/autenticacao)
and the official WooCommerce plugin (``moloni-pt/woocommerce``: ``src/Curl.php``,
``src/Controllers/Documents.php``, ``OrderProduct.php``, ``src/Error.php``); where neither says,
the choice is stated here and kept conservative.

* ``GET``/``POST /v1/grant/`` — ``grant_type=password`` (``client_id``, ``client_secret``,
  ``username``, ``password``), ``refresh_token`` and ``authorization_code``, parameters in the query
  string (as the plugin sends them) or the form body. Access tokens live ``access_token_ttl``
  (3,600 s: the plugin refreshes after 3,000 s). Each refresh returns a **new refresh token** (the
  plugin stores the ``refresh_token`` of every refresh answer, ``src/Model.php``); the presented one
  stays usable for ``refresh_grace_seconds`` (30 min) — Moloni documents neither rotation nor a
  grace, so this is the assumption a single-flight token store must cope with. Refresh tokens expire
  after ``refresh_token_ttl`` (14 days, the usual OAuth2 server default; not documented).
  Errors: 400 ``{"error": "invalid_client"|"invalid_grant"|"unsupported_grant_type", "error_description"}``.
* Every API call is ``POST /v1/<resource>/<action>/?access_token=…`` with a form-encoded body
  (PHP bracket notation). A missing, unknown or expired token -> 401
  ``{"error": "invalid_token", "error_description": …}``.
* ``companies/getAll``, ``customers/getOne``, ``customers/getByVat|getByEmail|getByName|getByNumber``
  (substring match, like a search), ``customers/insert`` (required fields of the insert page, NIF
  check digit and postal code for Portugal, unique ``number`` ≤ 20), ``taxes/getAll``, ``invoices/insert``,
  ``invoices/getAll`` (filters ``your_reference``, ``our_reference``, ``number``, ``customer_id``,
  ``document_set_id``, ``status``; ``qty`` default and max 50, ``offset``), ``invoices/getOne``,
  ``invoices/update`` (``status=1`` closes the draft, numbers it in its series and sends
  ``send_email[]``; a closed invoice cannot be updated or deleted — insert/update pages),
  ``invoices/delete``.
* ``creditNotes/insert|getAll|getOne|update|delete`` (https://moloni.pt/dev/documents/credit-notes):
  the invoice fields without ``expiration_date``, plus ``associated_documents`` (required, see
  :meth:`MoloniEmulator._associations`); closing a credit note (insert or update with ``status=1``)
  numbers it in its own counter of the series and reconciles each associated invoice with its value
  ("os documentos associados ... serão conciliados com os valores definidos", insert page). Closed
  credit notes cannot be updated or deleted either.
* Documents carry ``reconciled_value``, ``associated_documents`` and ``reverse_associated_documents``
  (the receipts and credit notes reconciled against them), field names as Moloni's document objects
  have them. ``getAll`` rows leave out ``products`` and ``notes`` (only ``getOne`` returns the
  detailed document), so a connector must read a document to see its notes.
* ``invoices/getModifiedSince`` / ``creditNotes/getModifiedSince`` (``lastmodified``, ``qty`` ≤ 50, ``offset``):
  the documents whose ``lastmodified`` is at or after ``lastmodified`` (``YYYY-MM-DDTHH:MM:SS+0000``, as the
  documents carry it), oldest change first. Moloni publishes ``getModifiedSince`` / ``countModifiedSince``
  per document family (e.g. ``migratedBalancesInvoiceReceipts/getModifiedSince``,
  https://moloni.pt/changelog/api/versao-1-26/novos-endpoints-para-faturas-recibo-saldos-migrados); the
  invoices page itself was not retrieved, so its parameter format is this emulator's assumption. A receipt
  or credit note reconciled against an invoice updates the invoice's ``lastmodified``: that is how
  ``broker payments`` sees a payment by polling (Moloni has no webhooks).
* Receipts are not emulated as an API: :meth:`MoloniEmulator.mark_paid` records one (the admin
  "payment" action). :meth:`MoloniEmulator.balance`: closed invoices' ``net_value`` less
  ``reconciled_value``, less the unreconciled part of closed credit notes.
  :meth:`MoloniEmulator.plant_foreign`: a closed invoice without notes under a given reference.
* Validation errors: a JSON **array** of ``{"code": "<n> <field>", "field", "description"}``
  ("devolvido via JSON o objeto com os erros indexado pela ordem dos campos"), with HTTP 200 —
  the plugin detects failures by the body, not the status (``Curl::simple``); nothing is stored.
  ``exemption_reason`` is required on a line without a non-zero VAT tax; ``product_id``,
  ``tax_id``, ``customer_id``, ``document_set_id`` must exist; ``discount`` 0–100; ``qty`` > 0;
  ``price`` ≥ 0; text fields within :data:`connectors.moloni.mapper.LIMITS`.
* Totals by the company's *método de cálculo* (``rounding_method``): ``"line"`` rounds each line
  (net and VAT to cents) and sums; ``"document"`` keeps every value unrounded and rounds the
  document totals (https://www.moloni.pt/suporte/como-funciona-o-metodo-de-calculo-nos-valores-dos-documentos).
  ``net_value`` is the amount payable (the plugin compares it with the order total before closing).
* No idempotency key (none documented). Rate limit: undocumented; the plugin retries a 429 up to 5
  times 2 s apart. ``rate_limit_per_minute`` (default off) answers 429 over a sliding minute, with
  ``Retry-After`` unless ``send_retry_after=False``.

Test hooks: :meth:`MoloniEmulator.inject_fault` (``"503"``, ``"500"``, ``"reset"``,
``"timeout_after_commit"``, ``"drop_after_commit"``, for API calls), :meth:`expire_access_tokens`,
``on_step(method, obj)`` (called after each accepted write is stored and before its answer is
written: crash tests kill a worker there), ``calls``, ``emails``, ``server_errors``, and the control API::

    GET  /_emulator/invoices   -> [document, ...] (with "company_id")
    GET  /_emulator/credit-notes -> [credit note, ...] (with "company_id")
    GET  /_emulator/balance?company_id=5&customer_id=201 -> {"balance": <amount>}
    POST /_emulator/payments   {"document_id": 1001, "value": "100.00"} (value optional: all that is due)
    POST /_emulator/foreign    {"your_reference": "CF-1-R1", "total": "999.00", "customer_id": 201}
    GET  /_emulator/emails     -> [{"document_id", "email", "name", "msg"}, ...]
    GET  /_emulator/stats      -> {"calls", "call_count", "count_429", "invoice_count", "grant_count", ...}
    POST /_emulator/faults     {"kind": "503", "times": 2, "only": "invoices/insert", "retry_after": 1}
    POST /_emulator/reset
    POST /_emulator/expire-tokens
"""

from __future__ import annotations

import copy
import math
import re
import time
from collections.abc import Mapping
from datetime import UTC, date, datetime
from decimal import Decimal
from typing import Any

from connectors.moloni.mapper import LIMITS, moloni_totals, parse_form, q2
from connectors.sandbox.emulator import AdminRoute, Emulator, StepHook, serve_until_interrupted
from connectors.sandbox.faults import FAULT_KINDS, Fault
from connectors.sandbox.http import Request, Response, json_response
from connectors.sandbox.limits import Window
from connectors.sandbox.oauth import ExpiringTokens, TokenHolder, secret_ok, token_setting
from connectors.sandbox.values import decimal_or_none as _dec
from connectors.sandbox.values import json_or_none

DEFAULT_COMPANY_ID = 5
#: ``document_type_id`` of the emulated document types (the emulator's own numbering: Moloni's
#: ``documentTypes`` ids were not retrieved; connectors must not depend on them).
INVOICE_TYPE_ID, CREDIT_NOTE_TYPE_ID, RECEIPT_TYPE_ID = 1, 3, 8
#: ``WWW-Authenticate`` of a refused access token
_INVALID_TOKEN = {"WWW-Authenticate": 'Bearer realm="Service", error="invalid_token"'}


def default_companies() -> dict[int, dict[str, Any]]:
    """One demo company: series, VAT taxes (mainland PT rates), products per line kind, one customer."""
    return {
        DEFAULT_COMPANY_ID: {
            "name": "Acme Manutenção, Lda.",
            "vat": "509999999",
            "currency": "EUR",
            "document_sets": {7: "2026"},
            "taxes": {
                1: {"name": "IVA Normal", "value": Decimal("23"), "saft_type": 1},
                2: {"name": "IVA Intermédio", "value": Decimal("13"), "saft_type": 1},
                3: {"name": "IVA Reduzido", "value": Decimal("6"), "saft_type": 1},
            },
            "products": {
                101: "Mão de obra",
                102: "Deslocação",
                103: "Taxa de deslocação",
                104: "Material",
                105: "Despesas",
                106: "Serviços orçamentados",
                107: "Desconto",
            },
            "customers": {
                201: {
                    "name": "Hotel Atlântico Lisboa, S.A.",
                    "vat": "500000000",
                    "number": "CLI-HAL",
                    "email": "contas@hotel-atlantico.example",
                },
                202: {
                    "name": "Clínica do Parque, Lda.",
                    "vat": "500000018",
                    "number": "CLI-CLP",
                    "email": "faturas@clinica-parque.example",
                },
            },
            "languages": {1: "Português", 2: "English"},
            "countries": {1: "Portugal", 2: "Espanha"},
            "maturity_dates": {11: "30 dias"},
            "payment_methods": {21: "Transferência bancária"},
        }
    }


def valid_pt_vat(vat: str) -> bool:
    """Portuguese NIF check digit (mod 11, weights 9..2; 10 -> 0)."""
    if not re.fullmatch(r"\d{9}", vat or ""):
        return False
    total = sum(int(d) * w for d, w in zip(vat[:8], range(9, 1, -1), strict=True))
    check = 11 - total % 11
    return (0 if check >= 10 else check) == int(vat[8])


def _now_text() -> str:
    return datetime.now(UTC).strftime("%Y-%m-%dT%H:%M:%S+0000")


class _Errors:
    """Collects Moloni validation errors (``{"code": "<n> <field>", "field", "description"}``)."""

    def __init__(self) -> None:
        self.items: list[dict[str, str]] = []

    def add(self, code: int, field_name: str, description: str) -> None:
        self.items.append({"code": f"{code} {field_name}", "field": field_name, "description": description})

    def __bool__(self) -> bool:
        return bool(self.items)


def _int(value: Any) -> int | None:
    try:
        return int(str(value).strip())
    except (TypeError, ValueError):
        return None


def _date(value: Any) -> date | None:
    try:
        return date.fromisoformat(str(value))
    except (TypeError, ValueError):
        return None


def _as_list(value: Any) -> list[Any]:
    if isinstance(value, list):
        return [v for v in value if v is not None]
    if isinstance(value, dict):  # a[5][x]=.. parsed with sparse numeric keys
        return [value[k] for k in sorted(value, key=lambda k: int(k) if str(k).isdigit() else 0)]
    return []


class MoloniEmulator(TokenHolder, Emulator):
    """Local Moloni on ``host:port`` (``port=0``: a free port). Start with :meth:`start` or ``with``.

    ``companies``: ``{company_id: {"name", "vat", "currency", "document_sets": {id: name},
    "taxes": {id: {"name", "value", "saft_type"}}, "products": {id: name}, "customers": {id: {"name",
    "vat", "email"}}}}`` (default :func:`default_companies`). ``rounding_method``: the companies'
    *método de cálculo* (``"line"`` or ``"document"``).
    """

    name = "moloni-emulator"
    server_version = "MoloniEmulator/1.0"
    http_methods = frozenset({"GET", "POST", "PUT", "DELETE", "HEAD"})
    tokens: ExpiringTokens
    refresh_token_ttl: float = token_setting("refresh_token_ttl", "Refresh tokens live this long (seconds).")

    def __init__(
        self,
        *,
        companies: Mapping[int, Mapping[str, Any]] | None = None,
        rounding_method: str = "line",
        client_id: str = "demo-client",
        client_secret: str = "demo-secret",
        username: str = "demo@acme.example",
        password: str = "demo-password",
        refresh_token: str = "demo-refresh-token",
        rate_limit_per_minute: int | None = None,
        send_retry_after: bool = True,
        access_token_ttl: float = 3600,
        refresh_token_ttl: float = 14 * 86400,
        refresh_grace_seconds: float = 1800,
        host: str = "127.0.0.1",
        port: int = 0,
        hang_seconds: float = 30.0,
        response_delay: float = 0.0,
        on_step: StepHook | None = None,
    ):
        if rounding_method not in ("line", "document"):
            raise ValueError("rounding_method must be 'line' or 'document'")
        self._init_sandbox(host, port, hang_seconds=hang_seconds, response_delay=response_delay)
        #: Test hook ``on_step(method, obj)``: called after a write (``customers/insert``,
        #: ``invoices/insert``, ``invoices/update``, ``invoices/delete``) was accepted and stored, before
        #: its answer is written (e.g. to kill a worker right there); ``obj`` is a copy of the stored
        #: document or customer (with ``document_id`` / ``customer_id``; ``{"document_id"}`` once
        #: deleted). Not called for refused requests (Moloni's error arrays). May be set after :meth:`start`.
        self.on_step = on_step
        self.client_id, self.client_secret = client_id, client_secret
        self.username, self.password = username, password
        self.seed_companies = (
            copy.deepcopy({k: dict(v) for k, v in companies.items()}) if companies is not None else default_companies()
        )
        self.rounding_method = rounding_method
        self.rate_limit_per_minute = rate_limit_per_minute
        self.send_retry_after = send_retry_after
        # auth state survives reset_state(); refresh tokens rotate, the presented one lives on for the grace
        self.tokens = ExpiringTokens(
            refresh_token,
            access_token_ttl,
            refresh_grace_seconds,
            access_prefix="mol-at-",
            access_bytes=20,
            refresh_prefix="mol-rt-",
            refresh_bytes=20,
            refresh_token_ttl=refresh_token_ttl,
        )
        self.grant_requests: list[str] = []  # grant types requested, in order
        self.grants_served = 0  # successful grants (token refreshes)
        self.issued_tokens: list[str] = []  # every access/refresh token issued (for leak checks)
        self._init_state()

    def _init_state(self) -> None:
        self.companies: dict[int, dict[str, Any]] = copy.deepcopy(self.seed_companies)
        self._documents: dict[int, dict[str, Any]] = {}  # invoices: document_id -> document (with company_id)
        self._credit_notes: dict[int, dict[str, Any]] = {}  # credit notes, same shape (document ids are shared)
        self._receipts: dict[int, dict[str, Any]] = {}  # receipts recorded by mark_paid()
        self._next_document_id = 1001
        self._series_counters: dict[tuple[int, int, int], int] = {}  # (company, series, document type) -> last
        self._window = Window(self.rate_limit_per_minute)
        self._init_records()
        self.emails: list[dict[str, Any]] = []

    # ------------------------------------------------------------------ test helpers
    def invoices(self, company_id: int | None = None) -> list[dict[str, Any]]:
        """Deep copies of the stored invoices (drafts and closed), oldest first."""
        with self._lock:
            return [
                copy.deepcopy(d)
                for d in self._documents.values()
                if company_id is None or d["company_id"] == company_id
            ]

    def credit_notes(self, company_id: int | None = None) -> list[dict[str, Any]]:
        """Deep copies of the stored credit notes (drafts and closed), oldest first."""
        with self._lock:
            return [
                copy.deepcopy(d)
                for d in self._credit_notes.values()
                if company_id is None or d["company_id"] == company_id
            ]

    def mark_paid(self, document_id: int, value: Decimal | None = None) -> int:
        """Record a receipt of ``value`` (``None``: all that is still due) against closed invoice
        ``document_id``, as Moloni's ``receipts/insert`` with ``associated_documents`` does: the
        invoice's ``reconciled_value`` grows by ``value`` and the receipt appears in its
        ``reverse_associated_documents``. Returns the receipt's id. ``ValueError``: not a closed
        invoice, nothing due, or more than is due."""
        with self._lock:
            invoice = self._documents.get(document_id)
            if invoice is None or invoice["status"] != 1:
                raise ValueError(f"document {document_id} is not a closed invoice")
            due = invoice["net_value"] - invoice["reconciled_value"]
            amount = due if value is None else Decimal(value)
            if not (0 < amount <= due):
                raise ValueError(f"invoice {document_id}: {amount} cannot be paid, {due} is due")
            receipt_id = self._new_id()
            receipt = {
                "document_id": receipt_id,
                "company_id": invoice["company_id"],
                "document_type_id": RECEIPT_TYPE_ID,
                "document_type": {"document_type_id": RECEIPT_TYPE_ID, "saft_code": "RC"},
                "customer_id": invoice["customer_id"],
                "status": 1,
                "date": invoice["date"],
                "net_value": amount,
                "associated_documents": [{"associated_id": document_id, "value": amount}],
            }
            self._receipts[receipt_id] = receipt
            self._reconcile(invoice, receipt, amount, amount)
            return receipt_id

    def balance(self, company_id: int = DEFAULT_COMPANY_ID, customer_id: int | None = None) -> Decimal:
        """What the company's customers (or one) owe: closed invoices' ``net_value`` less their
        ``reconciled_value`` (receipts and credit notes reconciled against them), less the part of
        closed credit notes not reconciled against any invoice (credit owed to the customer). Drafts
        and deleted documents count zero."""
        total = Decimal("0.00")
        with self._lock:
            for store, sign in ((self._documents, 1), (self._credit_notes, -1)):
                for doc in store.values():
                    if doc["company_id"] != company_id or doc["status"] != 1:
                        continue
                    if customer_id is not None and doc["customer_id"] != customer_id:
                        continue
                    total += sign * (doc["net_value"] - doc["reconciled_value"])
        return total

    def plant_foreign(
        self, your_reference: str, total: Decimal, *, company_id: int = DEFAULT_COMPANY_ID, customer_id: int = 201
    ) -> int:
        """A closed invoice someone else made under ``your_reference``: one VAT-exempt line (M07) of
        ``total``, no notes (so no ownership marker). Returns its ``document_id``."""
        form = {
            "company_id": str(company_id),
            "date": date.today().isoformat(),
            "expiration_date": date.today().isoformat(),
            "document_set_id": str(next(iter(self.companies[company_id]["document_sets"]))),
            "customer_id": str(customer_id),
            "your_reference": your_reference,
            "status": "1",
            "products": [
                {"product_id": "101", "name": "Serviços", "qty": "1", "price": str(total), "exemption_reason": "M07"}
            ],
        }
        with self._lock:
            answer = json_or_none(self._insert(company_id, self.companies[company_id], form, self._documents).body)
        if not isinstance(answer, dict) or not answer.get("document_id"):
            raise ValueError(f"foreign invoice refused: {answer}")
        return int(answer["document_id"])

    def add_customer(
        self, name: str, *, company_id: int = DEFAULT_COMPANY_ID, vat: str = "999999990", email: str = ""
    ) -> int:
        """Create a customer directly and return its ``customer_id``."""
        with self._lock:
            customers = self.companies[company_id]["customers"]
            new_id = max(customers, default=200) + 1
            customers[new_id] = {"name": name, "vat": vat, "number": f"C{new_id}", "email": email}
            return int(new_id)

    def inject_fault(self, kind: str, times: int = 1, *, only: str | None = None, retry_after: int = 1) -> None:
        """Make the next ``times`` API calls (not grants) — of method ``only`` (``"invoices/update"``) when
        given — fail with ``kind``.

        ``"503"``/``"500"``: that status, nothing processed; ``"429"``: rate limited with
        ``Retry-After: retry_after``; ``"reset"``: TCP reset before processing;
        ``"timeout_after_commit"``: processed (stored), then no answer for ``hang_seconds``;
        ``"drop_after_commit"``: processed, then the connection is closed without an answer.
        """
        operation = only.lower().strip("/") if only else None
        self._add_fault(Fault(kind, operation=operation, retry_after=int(retry_after)), times)

    def _inject_from_admin(self, doc: dict[str, Any]) -> None:
        retry_after = int(doc.get("retry_after", 1))
        self.inject_fault(str(doc["kind"]), int(doc.get("times", 1)), only=doc.get("only"), retry_after=retry_after)

    def _pending_faults(self) -> list[Any]:
        return [[f.kind, f.operation, f.retry_after] for f in self.faults.entries()]

    def stats(self) -> dict[str, Any]:
        with self._lock:
            return {
                **super().stats(),
                "invoice_count": len(self._documents),
                "credit_note_count": len(self._credit_notes),
                "receipt_count": len(self._receipts),
                "grant_count": len(self.grant_requests),
                "emails": len(self.emails),
                "grants_served": self.grants_served,
            }

    # ------------------------------------------------------------------ dispatch
    def _internal_error(self) -> Response:
        return json_response(500, {"error": "server_error", "error_description": "emulator error"})

    def _handle(self, req: Request) -> Response:
        path = req.path.rstrip("/").lower() or "/"
        if path.startswith("/_emulator"):
            return self._admin(req, path)
        if re.fullmatch(r"/v[12]/grant", path):
            return self._grant(req)
        m = re.fullmatch(r"/(v1|v2)/([a-z]+)/([a-z]+)", path, flags=re.IGNORECASE)
        if m is None:
            return json_response(404, {"error": "not_found", "error_description": f"no endpoint at {req.path}"})
        resource, action = m.group(2).lower(), m.group(3).lower()
        denied = self._authenticate(req)
        if denied is not None:
            return denied
        with self._lock:
            limited = self._admit()
            if limited is not None:
                return limited
            fault = self._take_fault(operation=f"{resource}/{action}")
        refused = self._fault_answer(fault)
        if refused is not None:
            return refused
        self._delay()
        if req.method != "POST":
            return json_response(
                405,
                {"error": "method_not_allowed", "error_description": "API methods are called with POST"},
                {"Allow": "POST"},
            )
        form = parse_form(req.body) if req.body else {}
        with self._lock:
            resp = self._api(resource, action, form)
            stored = self._stored(resource, action, resp) if self.on_step is not None else None
        return self._answer_processed(resp, fault, (f"{resource}/{action}", stored))

    def _fault_throttled(self, fault: Fault) -> Response:
        return self._too_many(1 if fault.retry_after is None else fault.retry_after)

    def _fault_status(self, status: int) -> Response:
        description = "Service Unavailable" if status == 503 else "Internal Server Error"
        return json_response(status, {"error": "server_error", "error_description": description})

    def _too_many(self, retry_after: int) -> Response:
        """Moloni's 429 (``Retry-After`` unless ``send_retry_after`` is off)."""
        headers = {"Retry-After": str(retry_after)} if self.send_retry_after else {}
        return json_response(429, {"error": "too_many_requests", "error_description": "Too many requests"}, headers)

    def _stored(self, resource: str, action: str, resp: Response) -> dict[str, Any] | None:
        """For :attr:`on_step`: what an accepted write stored (``None`` for reads and refusals)."""
        if action not in ("insert", "update", "delete") or resp.status != 200:
            return None
        answer = json_or_none(resp.body)
        if not isinstance(answer, dict) or not answer.get("valid"):
            return None
        if resource == "customers":
            for company in self.companies.values():
                customer = company["customers"].get(_int(answer.get("customer_id")) or -1)
                if customer is not None:
                    return {"customer_id": answer["customer_id"], **copy.deepcopy(customer)}
            return dict(answer)
        store = self._credit_notes if resource == "creditnotes" else self._documents
        document = store.get(_int(answer.get("document_id")) or -1)
        return copy.deepcopy(document) if document is not None else dict(answer)

    # ------------------------------------------------------------------ auth
    def _grant(self, req: Request) -> Response:
        params = dict(req.query)
        if req.body:
            params.update({k: v for k, v in parse_form(req.body).items() if isinstance(v, str)})
        grant_type = params.get("grant_type", "")
        with self._lock:
            self.grant_requests.append(grant_type)
        if not secret_ok(self.client_id, self.client_secret, params.get("client_id"), params.get("client_secret", "")):
            return json_response(
                400, {"error": "invalid_client", "error_description": "The client credentials are invalid"}
            )
        now = time.monotonic()
        with self._lock:
            refused = self._grant_refusal(grant_type, params, now)
            if refused is not None:
                return json_response(400, {"error": refused[0], "error_description": refused[1]})
            access = self.tokens.new_access(now)
            refresh = self.tokens.new_refresh(now)
            self.grants_served += 1
            self.issued_tokens += [access, refresh]
        return json_response(
            200,
            {
                "access_token": access,
                "expires_in": math.ceil(self.access_token_ttl),
                "token_type": "bearer",
                "scope": None,
                "refresh_token": refresh,
            },
            {"Cache-Control": "no-store"},
        )

    def _grant_refusal(self, grant_type: str, params: dict[str, str], now: float) -> tuple[str, str] | None:
        """``(error, error_description)`` of a refused grant (the client is authenticated); ``None``: grant it."""
        if grant_type == "password":
            if not secret_ok(self.username, self.password, params.get("username"), params.get("password", "")):
                return "invalid_grant", "Invalid username and password combination"
            return None
        if grant_type == "refresh_token":
            # rotated: the presented token stays usable for the grace period only
            refusal = self.tokens.refresh_refusal(params.get("refresh_token", ""), now)
            if refusal is not None:
                return "invalid_grant", "Invalid refresh token" if refusal == "unknown" else "Refresh token has expired"
            return None
        if grant_type == "authorization_code":
            if params.get("code") != "demo-authorization-code":
                return "invalid_grant", "Authorization code doesn't exist or is invalid for the client"
            return None
        return "unsupported_grant_type", f'Grant type "{grant_type}" not supported'

    def _authenticate(self, req: Request) -> Response | None:
        token = req.query.get("access_token", "")
        with self._lock:
            expires = self.tokens.expiry(token)
        if not token or expires is None:
            description = "The access token provided is invalid"
        elif time.monotonic() >= expires:
            description = "The access token provided has expired"
        else:
            return None
        return json_response(401, {"error": "invalid_token", "error_description": description}, _INVALID_TOKEN)

    def _admit(self) -> Response | None:
        """The optional calls-per-minute limit (``rate_limit_per_minute``; undocumented by Moloni)."""
        if not self.rate_limit_per_minute:
            return None
        retry = self._throttle(self._window, self.rate_limit_per_minute)
        return None if retry is None else self._too_many(retry)

    # ------------------------------------------------------------------ API
    def _company(self, form: Mapping[str, Any], errors: _Errors) -> tuple[int, dict[str, Any]] | None:
        company_id = _int(form.get("company_id"))
        if company_id is None:
            errors.add(1, "company_id", "Field 'company_id' is required")
            return None
        company = self.companies.get(company_id)
        if company is None:
            errors.add(2, "company_id", "Field 'company_id' must be valid")
            return None
        return company_id, company

    def _api(self, resource: str, action: str, form: dict[str, Any]) -> Response:
        route = (resource, action)
        if route == ("companies", "getall"):
            return json_response(
                200,
                [
                    {
                        "company_id": cid,
                        "name": c["name"],
                        "vat": c["vat"],
                        "currency": {"iso4217": c.get("currency", "EUR")},
                    }
                    for cid, c in self.companies.items()
                ],
            )
        errors = _Errors()
        found = self._company(form, errors)
        if found is None:
            return json_response(200, errors.items)
        company_id, company = found
        if route == ("customers", "getone"):
            customer = company["customers"].get(_int(form.get("customer_id")) or -1)
            if customer is None:
                return json_response(200, [])
            return json_response(200, {"customer_id": _int(form["customer_id"]), **customer})
        if route == ("customers", "insert"):
            return self._insert_customer(company, form)
        if resource == "customers" and action in ("getbyvat", "getbyemail", "getbyname", "getbynumber"):
            key = {"getbyvat": "vat", "getbyemail": "email", "getbyname": "name", "getbynumber": "number"}[action]
            wanted = str(form.get(key) or "").strip().casefold()
            rows = [
                {"customer_id": cid, **c}
                for cid, c in company["customers"].items()
                if wanted and wanted in str(c.get(key) or "").casefold()
            ]
            return json_response(200, rows[:50])
        if route == ("taxes", "getall"):
            return json_response(
                200,
                [
                    {"tax_id": tid, "name": t["name"], "value": t["value"], "saft_type": t["saft_type"]}
                    for tid, t in company["taxes"].items()
                ],
            )
        stores = {"invoices": self._documents, "creditnotes": self._credit_notes}
        store = stores.get(resource)
        if store is None or action not in ("insert", "getall", "getmodifiedsince", "getone", "update", "delete"):
            return json_response(
                404, {"error": "not_found", "error_description": f"no emulated method {resource}/{action}"}
            )
        if action == "insert":
            return self._insert(company_id, company, form, store)
        if action == "getall":
            return self._get_all(company_id, form, store)
        if action == "getmodifiedsince":
            return self._modified_since(company_id, form, store)
        if action == "getone":
            return self._get_one(company_id, form, store)
        if action == "update":
            return self._update(company_id, company, form, store)
        return self._delete(company_id, form, store)

    def _build(
        self,
        company_id: int,
        company: dict[str, Any],
        form: Mapping[str, Any],
        errors: _Errors,
        *,
        credit: bool = False,
    ) -> tuple[dict[str, Any], int] | None:
        """Validate an insert (or a full update) and return the document (not stored). ``credit``: a
        credit note (no ``expiration_date``; ``associated_documents`` required, see :meth:`_associations`)."""
        issued = _date(form.get("date"))
        if issued is None:
            errors.add(1 if not form.get("date") else 2, "date", "Field 'date' must be a valid date (YYYY-MM-DD)")
        due = _date(form.get("expiration_date"))
        if credit and not form.get("expiration_date"):
            due = issued  # credit notes have no due date (insert page: no expiration_date field)
        elif due is None:
            errors.add(
                1 if not form.get("expiration_date") else 2,
                "expiration_date",
                "Field 'expiration_date' must be a valid date (YYYY-MM-DD)",
            )
        elif issued is not None and due < issued:
            errors.add(2, "expiration_date", "Field 'expiration_date' must be equal or after 'date'")
        set_id = _int(form.get("document_set_id"))
        if set_id is None or set_id not in company["document_sets"]:
            errors.add(2, "document_set_id", "Field 'document_set_id' must be valid")
        customer_id = _int(form.get("customer_id"))
        if customer_id is None or customer_id not in company["customers"]:
            errors.add(2, "customer_id", "Field 'customer_id' must be valid")
        for name in ("your_reference", "our_reference", "notes"):
            value = form.get(name)
            if isinstance(value, str) and len(value) > LIMITS[name]:
                errors.add(2, name, f"Field '{name}' must have at most {LIMITS[name]} characters")
        for name in ("financial_discount",):
            value = _dec(form.get(name)) if form.get(name) not in (None, "") else Decimal(0)
            if value is None or not (0 <= value <= 100):
                errors.add(2, name, f"Field '{name}' must be a percentage between 0 and 100")
        status = _int(form.get("status", "0"))
        if status not in (0, 1):
            errors.add(2, "status", "Field 'status' must be 0 or 1")
        raw_products = _as_list(form.get("products"))
        if not raw_products:
            errors.add(1, "products", "Field 'products' is required")
        products: list[dict[str, Any]] = []
        rows: list[tuple[Decimal, Decimal, Decimal, Decimal]] = []
        for i, raw in enumerate(raw_products):
            if not isinstance(raw, dict):
                errors.add(2, f"products[{i}]", "Invalid product")
                continue
            pid = _int(raw.get("product_id"))
            if pid is None or pid not in company["products"]:
                errors.add(2, f"products[{i}][product_id]", "Field 'product_id' must be valid")
            name = raw.get("name") or (company["products"].get(pid) if pid else None) or ""
            if len(name) > LIMITS["products[].name"]:
                errors.add(
                    2, f"products[{i}][name]", f"Field 'name' must have at most {LIMITS['products[].name']} characters"
                )
            summary = raw.get("summary") or ""
            if len(summary) > LIMITS["products[].summary"]:
                errors.add(
                    2,
                    f"products[{i}][summary]",
                    f"Field 'summary' must have at most {LIMITS['products[].summary']} characters",
                )
            qty = _dec(raw.get("qty"))
            if qty is None or qty <= 0:
                errors.add(2, f"products[{i}][qty]", "Field 'qty' must be numeric, greater than 0")
            price = _dec(raw.get("price"))
            if price is None or price < 0:
                errors.add(2, f"products[{i}][price]", "Field 'price' must be numeric, equal or greater than 0")
            discount = _dec(raw.get("discount")) if raw.get("discount") not in (None, "") else Decimal(0)
            if discount is None or not (0 <= discount <= 100):
                errors.add(2, f"products[{i}][discount]", "Field 'discount' must be a percentage between 0 and 100")
            taxes_out = []
            vat_rate = Decimal(0)
            has_vat = False
            for j, tax in enumerate(_as_list(raw.get("taxes"))):
                tid = _int(tax.get("tax_id")) if isinstance(tax, dict) else None
                known = company["taxes"].get(tid) if tid is not None else None
                if known is None:
                    errors.add(2, f"products[{i}][taxes][{j}][tax_id]", "Field 'tax_id' must be valid")
                    continue
                taxes_out.append(
                    {
                        "tax_id": tid,
                        "name": known["name"],
                        "value": known["value"],
                        "order": _int(tax.get("order")) or 0,
                        "cumulative": _int(tax.get("cumulative")) or 0,
                    }
                )
                vat_rate += known["value"]
                if known["saft_type"] == 1 and known["value"] > 0:
                    has_vat = True
            exemption = (raw.get("exemption_reason") or "").strip()
            if not has_vat and not exemption:
                errors.add(1, f"products[{i}][exemption_reason]", "Field 'exemption_reason' is required")
            elif exemption and not re.fullmatch(r"M\d{2}", exemption):
                errors.add(2, f"products[{i}][exemption_reason]", "Field 'exemption_reason' must be valid")
            if qty is None or price is None or discount is None:
                continue
            rows.append((qty, price, discount, vat_rate))
            products.append(
                {
                    "product_id": pid,
                    "name": name,
                    "summary": summary,
                    "qty": qty,
                    "price": price,
                    "discount": discount,
                    "order": _int(raw.get("order")) if raw.get("order") not in (None, "") else i,
                    "exemption_reason": exemption,
                    "taxes": taxes_out,
                }
            )
        if errors or issued is None or due is None or status is None:  # (None only with errors)
            return None
        totals = moloni_totals(rows, self.rounding_method)
        associations = self._associations(company_id, customer_id, form, totals.net_value, errors) if credit else []
        if errors:
            return None
        for product, (qty, price, discount, _rate) in zip(products, rows, strict=True):
            net = qty * price * (Decimal(100) - discount) / Decimal(100)
            if self.rounding_method == "line":
                net = q2(net)
            for tax in product["taxes"]:
                value = net * tax["value"] / Decimal(100)
                tax["incidence_value"] = q2(net)
                tax["total_value"] = q2(value) if self.rounding_method == "line" else value.quantize(Decimal("0.0001"))
        customer = company["customers"][customer_id]
        type_id, saft = (CREDIT_NOTE_TYPE_ID, "NC") if credit else (INVOICE_TYPE_ID, "FT")
        return {
            "company_id": company_id,
            "document_type_id": type_id,
            "document_type": {"document_type_id": type_id, "saft_code": saft},
            "document_set_id": set_id,
            "document_set_name": company["document_sets"][set_id],
            "number": 0,
            "status": 0,
            "date": issued.isoformat(),
            "expiration_date": due.isoformat(),
            "customer_id": customer_id,
            "entity_name": customer["name"],
            "entity_vat": customer["vat"],
            "your_reference": form.get("your_reference") or "",
            "our_reference": form.get("our_reference") or "",
            "notes": form.get("notes") or "",
            "gross_value": totals.gross_value,
            "comercial_discount_value": totals.comercial_discount_value,
            "financial_discount_value": Decimal("0.00"),
            "taxes_value": totals.taxes_value,
            "deduction_value": Decimal("0.00"),
            "net_value": totals.net_value,
            "reconciled_value": Decimal("0.00"),
            "associated_documents": associations,
            "reverse_associated_documents": [],
            "rounding_method": self.rounding_method,
            "products": products,
            "lastmodified": _now_text(),
        }, status

    def _new_id(self) -> int:
        document_id = self._next_document_id
        self._next_document_id += 1
        return document_id

    def _insert(
        self, company_id: int, company: dict[str, Any], form: dict[str, Any], store: dict[int, dict[str, Any]]
    ) -> Response:
        """``invoices/insert`` or ``creditNotes/insert`` (``store``); ``status=1`` closes at once."""
        errors = _Errors()
        built = self._build(company_id, company, form, errors, credit=store is self._credit_notes)
        if built is None:
            return json_response(200, errors.items)
        document, status = built
        document_id = self._new_id()
        document["document_id"] = document_id
        store[document_id] = document
        if status == 1:
            self._close(document, [])
        return json_response(200, {"valid": 1, "document_id": document_id})

    def _associations(
        self, company_id: int, customer_id: int | None, form: Mapping[str, Any], net_value: Decimal, errors: _Errors
    ) -> list[dict[str, Any]]:
        """A credit note's ``associated_documents`` (``[{associated_id, value}]``), validated.

        Required since 12 May 2020 (Moloni changelog, API versão 1.24: the AT forbids correction
        documents without associated documents; the ``rappel`` exception is not emulated). Each
        ``associated_id`` must be a **closed invoice** of the same company and customer ("têm de
        pertencer a documentos cujo tipo possa ser associado com notas de crédito", insert page);
        ``value`` > 0 and at most what the invoice still has to credit (its ``net_value`` less the
        values of closed credit notes already associated with it); the values together at most the
        note's own ``net_value``. Emulator choices where Moloni's page says nothing more."""
        rows = _as_list(form.get("associated_documents"))
        if not rows:
            errors.add(1, "associated_documents", "Field 'associated_documents' is required")
            return []
        out: list[dict[str, Any]] = []
        for i, raw in enumerate(rows):
            where = f"associated_documents[{i}]"
            target = self._documents.get(_int(raw.get("associated_id")) or -1) if isinstance(raw, dict) else None
            if target is None or target["company_id"] != company_id or target["status"] != 1:
                errors.add(2, f"{where}[associated_id]", "Field 'associated_id' must be a closed invoice")
                continue
            if customer_id is not None and target["customer_id"] != customer_id:
                errors.add(2, f"{where}[associated_id]", "Field 'associated_id' must belong to the same customer")
                continue
            value = _dec(raw.get("value"))
            credited = sum(
                (
                    a["value"]
                    for note in self._credit_notes.values()
                    if note["status"] == 1
                    for a in note["associated_documents"]
                    if a["associated_id"] == target["document_id"]
                ),
                Decimal("0.00"),
            )
            left = target["net_value"] - credited
            if value is None or not (0 < value <= left):
                errors.add(2, f"{where}[value]", f"Field 'value' must be greater than 0 and at most {left}")
                continue
            out.append({"associated_id": target["document_id"], "value": value})
        if sum((a["value"] for a in out), Decimal(0)) > net_value:
            errors.add(2, "associated_documents", "The associated values exceed the document's total")
        return out

    def _reconcile(self, invoice: dict[str, Any], other: dict[str, Any], value: Decimal, applied: Decimal) -> None:
        """``other`` (a receipt or a credit note) names ``invoice`` for ``value``, of which ``applied``
        settles what was still due on it."""
        invoice["reconciled_value"] += applied
        invoice["lastmodified"] = _now_text()
        other["reconciled_value"] = other.get("reconciled_value", Decimal("0.00")) + applied
        summary = {
            k: other.get(k)
            for k in ("document_id", "document_type_id", "number", "date", "your_reference", "net_value", "status")
        }
        invoice["reverse_associated_documents"].append(
            {"document_id": other["document_id"], "value": value, "reverse_associated_document": summary}
        )

    def _close(self, document: dict[str, Any], send_email: list[Any]) -> None:
        """Number ``document`` in its series (per document type) and close it; a credit note is
        reconciled with its associated invoices (what is still due on each, up to its value)."""
        key = (document["company_id"], document["document_set_id"], document["document_type_id"])
        self._series_counters[key] = self._series_counters.get(key, 0) + 1
        document["number"] = self._series_counters[key]
        document["status"] = 1
        document["lastmodified"] = _now_text()
        for link in document.get("associated_documents") or []:
            invoice = self._documents[link["associated_id"]]
            due = invoice["net_value"] - invoice["reconciled_value"]
            self._reconcile(invoice, document, link["value"], min(link["value"], due))
        for item in send_email:
            if isinstance(item, dict) and item.get("email"):
                self.emails.append(
                    {
                        "document_id": document["document_id"],
                        "email": item["email"],
                        "name": item.get("name", ""),
                        "msg": item.get("msg", ""),
                    }
                )

    def _insert_customer(self, company: dict[str, Any], form: Mapping[str, Any]) -> Response:
        """``customers/insert`` (https://moloni.pt/dev/entities/customers/insert): required vat, number (≤20),
        name, language_id, address, city, country_id, maturity_date_id, payment_method_id; a Portuguese
        customer (country_id 1) needs a valid NIF and, when given, a ``NNNN-NNN`` postal code."""
        errors = _Errors()
        for name in ("vat", "number", "name", "address", "city"):
            if not str(form.get(name) or "").strip():
                errors.add(1, name, f"Field '{name}' is required")
        for name, table in (
            ("language_id", "languages"),
            ("country_id", "countries"),
            ("maturity_date_id", "maturity_dates"),
            ("payment_method_id", "payment_methods"),
        ):
            if _int(form.get(name)) not in company.get(table, {}):
                errors.add(2, name, f"Field '{name}' must be valid")
        number = str(form.get("number") or "")
        if len(number) > 20:
            errors.add(2, "number", "Field 'number' must have at most 20 characters")
        elif number and any(c.get("number") == number for c in company["customers"].values()):
            errors.add(2, "number", "Field 'number' already exists")
        if _int(form.get("country_id")) == 1:
            if form.get("vat") and not valid_pt_vat(str(form["vat"])):
                errors.add(2, "vat", "Field 'vat' must be a valid Portuguese VAT number")
            zip_code = str(form.get("zip_code") or "")
            if zip_code and not re.fullmatch(r"\d{4}-\d{3}", zip_code):
                errors.add(2, "zip_code", "Field 'zip_code' must be valid (NNNN-NNN)")
        if errors:
            return json_response(200, errors.items)
        customer_id = max(company["customers"], default=200) + 1
        company["customers"][customer_id] = {
            k: str(form.get(k) or "") for k in ("name", "vat", "number", "email", "address", "zip_code", "city")
        }
        return json_response(200, {"valid": 1, "customer_id": customer_id})

    @staticmethod
    def _summary(doc: dict[str, Any]) -> dict[str, Any]:
        """A ``getAll`` row: the document without ``products`` and without ``notes`` (only ``getOne``
        returns the detailed document, ``notes`` included)."""
        hidden = ("products", "company_id", "rounding_method", "notes")
        return {k: copy.deepcopy(v) for k, v in doc.items() if k not in hidden}

    def _get_all(self, company_id: int, form: Mapping[str, Any], store: dict[int, dict[str, Any]]) -> Response:
        docs = [d for d in store.values() if d["company_id"] == company_id]
        for name in ("your_reference", "our_reference"):
            if form.get(name) not in (None, ""):
                docs = [d for d in docs if d[name] == form[name]]
        for name in ("number", "customer_id", "document_set_id", "status"):
            if form.get(name) not in (None, ""):
                wanted = _int(form[name])
                docs = [d for d in docs if d[name] == wanted]
        docs.sort(key=lambda d: d["document_id"], reverse=True)
        qty = _int(form.get("qty")) or 50
        qty = max(1, min(50, qty))
        offset = max(0, _int(form.get("offset")) or 0)
        return json_response(200, [self._summary(d) for d in docs[offset : offset + qty]])

    def _modified_since(self, company_id: int, form: Mapping[str, Any], store: dict[int, dict[str, Any]]) -> Response:
        """``<documents>/getModifiedSince``: rows (as ``getAll`` gives them) changed at or after ``lastmodified``,
        oldest change first, ``qty`` (≤ 50) from ``offset``. A missing ``lastmodified`` is Moloni's error array."""
        since = str(form.get("lastmodified") or "")
        if not since:
            return json_response(200, [{"code": "1 lastmodified", "field": "lastmodified", "description": "required"}])
        docs = [d for d in store.values() if d["company_id"] == company_id and d["lastmodified"] >= since]
        docs.sort(key=lambda d: (d["lastmodified"], d["document_id"]))
        qty = max(1, min(50, _int(form.get("qty")) or 50))
        offset = max(0, _int(form.get("offset")) or 0)
        return json_response(200, [self._summary(d) for d in docs[offset : offset + qty]])

    @staticmethod
    def _find_one(company_id: int, form: Mapping[str, Any], store: dict[int, dict[str, Any]]) -> dict[str, Any] | None:
        document_id = _int(form.get("document_id"))
        if document_id is not None:
            doc = store.get(document_id)
            return doc if doc is not None and doc["company_id"] == company_id else None
        docs = [d for d in store.values() if d["company_id"] == company_id]
        filtered = False
        for name in ("your_reference", "our_reference"):
            if form.get(name) not in (None, ""):
                docs, filtered = [d for d in docs if d[name] == form[name]], True
        if form.get("number") not in (None, ""):
            docs, filtered = [d for d in docs if d["number"] == _int(form["number"])], True
        return docs[0] if filtered and docs else None

    def _get_one(self, company_id: int, form: Mapping[str, Any], store: dict[int, dict[str, Any]]) -> Response:
        doc = self._find_one(company_id, form, store)
        if doc is None:
            return json_response(200, [])
        return json_response(
            200, {k: copy.deepcopy(v) for k, v in doc.items() if k not in ("company_id", "rounding_method")}
        )

    def _update(
        self, company_id: int, company: dict[str, Any], form: dict[str, Any], store: dict[int, dict[str, Any]]
    ) -> Response:
        errors = _Errors()
        document_id = _int(form.get("document_id"))
        doc = store.get(document_id) if document_id is not None else None
        if doc is None or doc["company_id"] != company_id:
            errors.add(2, "document_id", "Field 'document_id' must be valid")
            return json_response(200, errors.items)
        if doc["status"] == 1:
            errors.add(2, "document_id", "Document is closed and can't be updated")
            return json_response(200, errors.items)
        status = _int(form.get("status")) if form.get("status") not in (None, "") else 0
        if status not in (0, 1):
            errors.add(2, "status", "Field 'status' must be 0 or 1")
            return json_response(200, errors.items)
        content_fields = {k for k in form if k not in ("company_id", "document_id", "status", "send_email")}
        credit = store is self._credit_notes
        if content_fields or credit:  # a credit note's associations are checked again when it closes
            merged = {**self._as_form(doc), **form}
            built = self._build(company_id, company, merged, errors, credit=credit)
            if built is None:
                return json_response(200, errors.items)
            new_doc, _ = built
            new_doc["document_id"] = document_id
            doc.clear()
            doc.update(new_doc)
        if status == 1:
            self._close(doc, _as_list(form.get("send_email")))
        return json_response(200, {"valid": 1, "document_id": document_id})

    @staticmethod
    def _as_form(doc: dict[str, Any]) -> dict[str, Any]:
        """A stored document back in insert-form shape (strings), for partial updates."""
        form: dict[str, Any] = {
            k: str(doc[k])
            for k in (
                "company_id",
                "date",
                "expiration_date",
                "document_set_id",
                "customer_id",
                "your_reference",
                "our_reference",
                "notes",
            )
        }
        form["products"] = [
            {
                "product_id": str(p["product_id"]),
                "name": p["name"],
                "summary": p["summary"],
                "qty": str(p["qty"]),
                "price": str(p["price"]),
                "discount": str(p["discount"]),
                "order": str(p["order"]),
                "exemption_reason": p["exemption_reason"],
                "taxes": [
                    {
                        "tax_id": str(t["tax_id"]),
                        "value": str(t["value"]),
                        "order": str(t["order"]),
                        "cumulative": str(t["cumulative"]),
                    }
                    for t in p["taxes"]
                ],
            }
            for p in doc["products"]
        ]
        form["associated_documents"] = [
            {"associated_id": str(a["associated_id"]), "value": str(a["value"])} for a in doc["associated_documents"]
        ]
        return form

    @staticmethod
    def _delete(company_id: int, form: Mapping[str, Any], store: dict[int, dict[str, Any]]) -> Response:
        errors = _Errors()
        document_id = _int(form.get("document_id"))
        doc = store.get(document_id) if document_id is not None else None
        if document_id is None or doc is None or doc["company_id"] != company_id:
            errors.add(2, "document_id", "Field 'document_id' must be valid")
            return json_response(200, errors.items)
        if doc["status"] == 1:
            errors.add(2, "document_id", "Document is closed and can't be deleted")
            return json_response(200, errors.items)
        del store[document_id]
        return json_response(200, {"valid": 1})

    # ------------------------------------------------------------------ control API
    def _admin_routes(self) -> dict[tuple[str, str], AdminRoute]:
        routes = super()._admin_routes()
        routes["GET", "/_emulator/invoices"] = lambda _req: json_response(200, self.invoices())
        routes["GET", "/_emulator/credit-notes"] = lambda _req: json_response(200, self.credit_notes())
        routes["GET", "/_emulator/emails"] = lambda _req: json_response(200, self._emails())
        routes["GET", "/_emulator/balance"] = self._admin_balance
        routes["POST", "/_emulator/payments"] = lambda req: self.admin_action(
            req, self._admin_payment, refused="payment refused"
        )
        routes["POST", "/_emulator/foreign"] = lambda req: self.admin_action(
            req, self._admin_foreign, refused="foreign document refused"
        )
        return routes

    def _admin_balance(self, req: Request) -> Response:
        company_id = _int(req.query.get("company_id")) or DEFAULT_COMPANY_ID
        customer_id = _int(req.query.get("customer_id")) if req.query.get("customer_id") else None
        return json_response(200, {"balance": self.balance(company_id, customer_id)})

    def _admin_payment(self, doc: dict[str, Any]) -> dict[str, Any]:
        """``{"document_id", "value"?}`` -> :meth:`mark_paid` -> ``{"ok", "receipt_id"}``."""
        value = doc.get("value")
        receipt = self.mark_paid(int(doc["document_id"]), None if value is None else Decimal(str(value)))
        return {"ok": True, "receipt_id": receipt}

    def _admin_foreign(self, doc: dict[str, Any]) -> dict[str, Any]:
        """``{"your_reference", "total", "customer_id"?, "company_id"?}`` -> :meth:`plant_foreign` ->
        ``{"ok", "document_id"}``."""
        document_id = self.plant_foreign(
            str(doc["your_reference"]),
            Decimal(str(doc["total"])),
            company_id=int(doc.get("company_id", DEFAULT_COMPANY_ID)),
            customer_id=int(doc.get("customer_id", 201)),
        )
        return {"ok": True, "document_id": document_id}

    def _emails(self) -> list[dict[str, Any]]:
        with self._lock:
            return copy.deepcopy(self.emails)


def serve(host: str = "127.0.0.1", port: int = 0, **kwargs: Any) -> None:
    """Run an emulator in the foreground until Ctrl-C, printing its URL and the demo credentials."""
    emulator = MoloniEmulator(host=host, port=port, **kwargs).start()
    lines = [f"Moloni emulator listening on {emulator.url}", f"  api_url        : {emulator.url}"]
    lines.append(f"  client_id      : {emulator.client_id}   (export MOLONI_CLIENT_SECRET={emulator.client_secret})")
    lines.append(f"  refresh token  : export MOLONI_REFRESH_TOKEN={emulator.initial_refresh_token}")
    lines.append(f"  company_id     : {', '.join(str(c) for c in emulator.companies)}")
    serve_until_interrupted(emulator, lines)


__all__ = ["DEFAULT_COMPANY_ID", "FAULT_KINDS", "MoloniEmulator", "default_companies", "serve"]
