"""A loopback emulator of the InvoiceXpress API v2 (Portugal), the parts the connector uses.

Sources: https://invoicexpress.com/api-v2/invoices/create, …/change-state, …/invoices/send-by-email,
…/documentation/authentication, …/documentation/error-codes-responses,
https://developers.invoicexpress.com/docs/versions/2.0.0 (rate limit), https://docs.invoicexpress.com/taxes,
and, as secondary sources, the community Go client ``voluzi/go-invoicexpress`` (response and error
shapes, pagination block). Where none says, the choice is stated here.

* Accounts are virtual hosts in reality (``https://{account}.app.invoicexpress.com``); here the
  account is the **first path segment** (``http://127.0.0.1:PORT/{account}/invoices.json``), so the
  connector's ``api_url`` template ``…/{account}`` reaches the same paths. An unknown account -> 404.
* Auth: ``api_key`` query parameter, per account; missing or wrong -> 401 ``{"errors": [{"error": …}]}``.
* Limit: ``rate_limit_per_minute`` (100, per account, sliding minute) then 429 with ``Retry-After``.
* ``POST /invoices.json`` creates a **draft** (201 ``{"invoice": {...}}``). Validation failures ->
  422 ``{"errors": [{"error": "…"}, …]}`` and nothing stored: date/due date ``dd/mm/yyyy``, client
  name, items, item name, ``unit_price`` a number, "Quantity must be a number greater than 0",
  discount 0–100, ``tax_exemption`` required (and an ``M``-code) when an item's tax is 0 %,
  SAF-T-sized field limits, a known ``sequence_id``. Clients are matched by ``code`` then ``name``
  and created when unknown; items are matched by name and **updated** with the values sent; an
  unknown tax name silently becomes the account's default tax (as documented).
* ``GET /clients/find-by-code.json?client_code=…`` / ``find-by-name.json?client_name=…`` -> 200
  ``{"client": {...}}`` or 404 (exact match).
* ``GET /invoices/{id}.json``; ``GET /invoices.json`` with ``text`` (case-insensitive substring of
  reference, observations, client name or number — the exact official filter semantics were not
  retrieved), ``status[]``, ``date[from]`` / ``date[to]`` (the document date, ``dd/mm/yyyy``, inclusive; the
  filter names of third-party clients, not an official page), ``page``, ``per_page`` (default 10, max 100)
  and a ``pagination`` block.
* ``PUT /invoices/{id}/change-state.json`` ``{"invoice": {"state": …}}``: draft -> ``finalized``
  (status ``final``, numbered in its sequence, ATCUD), draft -> ``deleted`` (gone from listings),
  final -> ``canceled`` (needs ``message``), final -> ``settled``, settled -> ``unsettled``; any other
  transition (e.g. finalising a final invoice) -> 422.
* ``POST /credit_notes.json`` (root ``"invoice"``, as documented for every document type) creates a
  draft credit note: the invoice rules plus ``owner_invoice_id`` (required: a final or settled invoice
  of the same client, the note's total at most what is left to credit on it);
  ``GET /credit_notes/{id}.json`` / ``GET /credit_notes.json`` (``credit_note`` / ``credit_notes``
  keys, as go-invoicexpress decodes them); ``PUT /credit_notes/{id}/change-state.json``: draft ->
  ``finalized`` / ``deleted``, final -> ``canceled``. An invoice with receipts or final credit notes
  cannot be canceled; a settled one cannot change (422, "Invoice has been settled so can't be
  changed anymore", error-codes page).
* ``GET /invoices/{id}/related-documents.json`` -> ``{"documents": [...]}``: its credit notes and receipts.
* Payments: :meth:`InvoiceXpressEmulator.mark_paid` (admin) records a receipt; paid in full, the
  invoice becomes ``settled``. :meth:`InvoiceXpressEmulator.balance`: final invoices' total less
  receipts, less final credit notes. :meth:`InvoiceXpressEmulator.plant_foreign`: a final invoice
  without observations under a given reference.
* ``PUT /invoices/{id}/email-document.json`` ``{"message": {"client": {"email", "save"}, "subject", "body"}}``:
  only for final/settled documents; recorded in ``emails``.
* Totals (``rounding_method``): per item ``subtotal`` = round(qty × price), ``discount_amount`` =
  round(subtotal × discount %), VAT per item rounded (``"line"``) or on the document sum per rate
  set (``"document"``). InvoiceXpress does not document it; both are modelled.
* No idempotency key (none documented).

Test hooks: :meth:`InvoiceXpressEmulator.inject_fault` (``"503"``, ``"500"``, ``"reset"``,
``"429"``, ``"timeout_after_commit"``, ``"drop_after_commit"``; ``only=`` an operation: ``create``,
``get``, ``list``, ``change_state``, ``email``, ``sequences``, ``clients``, ``related``,
``credit_note_create``, ``credit_note_get``, ``credit_note_list``, ``credit_note_change_state``), ``on_step(operation,
invoice)`` (called after each successful write is stored and before its answer is written: crash
tests kill a worker there), ``calls``, ``emails``, ``server_errors``, and the control API::

    GET  /_emulator/invoices   -> [invoice, ...] (with "account")
    GET  /_emulator/credit-notes -> [credit note, ...] (with "account")
    GET  /_emulator/balance?account=acme-demo -> {"balance": <amount>}
    POST /_emulator/payments   {"invoice_id": 9001, "amount": "100.00"} (amount optional: all that is due)
    POST /_emulator/foreign    {"reference": "CF-1-R1", "total": "999.00", "client": {"name", "code"}}
    GET  /_emulator/emails     -> [{"invoice_id", "email", "subject", "body"}, ...]
    GET  /_emulator/stats
    POST /_emulator/faults     {"kind": "503", "times": 2, "only": "create"}
    POST /_emulator/reset
"""

from __future__ import annotations

import copy
import json
import math
import re
import secrets
from collections.abc import Mapping
from datetime import date
from decimal import Decimal
from typing import Any

from connectors.invoicexpress.mapper import LIMITS, q2
from connectors.sandbox.emulator import AdminRoute, Emulator, StepHook, serve_until_interrupted
from connectors.sandbox.faults import FAULT_KINDS, Fault
from connectors.sandbox.http import JSON_UTF8, Request, Response, json_response, loads_decimal
from connectors.sandbox.limits import Window
from connectors.sandbox.values import decimal_or_none as _dec
from connectors.sandbox.values import json_or_none

OPERATIONS = (
    "create",
    "get",
    "list",
    "change_state",
    "email",
    "sequences",
    "clients",
    "related",
    "credit_note_create",
    "credit_note_get",
    "credit_note_list",
    "credit_note_change_state",
)
#: Operations that change the account's state (reported to ``on_step``).
WRITE_OPERATIONS = ("create", "change_state", "email", "credit_note_create", "credit_note_change_state")
#: Document families: path segment -> (``type`` of the stored documents, singular key, list key).
FAMILIES = {
    "invoices": ("Invoice", "invoice", "invoices"),
    "credit_notes": ("CreditNote", "credit_note", "credit_notes"),
}
DEFAULT_ACCOUNT = "acme-demo"
DEFAULT_API_KEY = "demo-api-key"


def default_accounts() -> dict[str, dict[str, Any]]:
    """One demo account: mainland PT taxes (default IVA23), one sequence, one client."""
    return {
        DEFAULT_ACCOUNT: {
            "api_key": DEFAULT_API_KEY,
            "taxes": {"IVA23": Decimal("23"), "IVA13": Decimal("13"), "IVA6": Decimal("6"), "IVA0": Decimal("0")},
            "default_tax": "IVA23",
            "sequences": {"1115355": "2026"},
            "default_sequence": "1115355",
            "clients": [
                {
                    "name": "Hotel Atlântico Lisboa, S.A.",
                    "code": "CLI-HAL",
                    "email": "contas@hotel-atlantico.example",
                    "fiscal_id": "500000000",
                }
            ],
        }
    }


def _errors(status: int, messages: list[str], headers: dict[str, str] | None = None) -> Response:
    return json_response(status, {"errors": [{"error": m} for m in messages]}, headers)


def _ix_date(text: Any) -> date | None:
    m = re.fullmatch(r"(\d{2})/(\d{2})/(\d{4})", str(text or ""))
    if not m:
        return None
    try:
        return date(int(m.group(3)), int(m.group(2)), int(m.group(1)))
    except ValueError:
        return None


class InvoiceXpressEmulator(Emulator):
    """Local InvoiceXpress on ``host:port`` (``port=0``: a free port); ``start()`` or ``with``.

    ``accounts``: ``{name: {"api_key", "taxes": {name: rate}, "default_tax", "sequences": {id: serie},
    "default_sequence", "clients": [...]}}`` (default :func:`default_accounts`).
    """

    name = "invoicexpress-emulator"
    server_version = "InvoiceXpressEmulator/1.0"
    http_methods = frozenset({"GET", "POST", "PUT", "DELETE", "HEAD"})

    def __init__(
        self,
        *,
        accounts: Mapping[str, Mapping[str, Any]] | None = None,
        rate_limit_per_minute: int = 100,
        rounding_method: str = "line",
        on_step: StepHook | None = None,
        host: str = "127.0.0.1",
        port: int = 0,
        hang_seconds: float = 30.0,
        response_delay: float = 0.0,
    ):
        if rounding_method not in ("line", "document"):
            raise ValueError("rounding_method must be 'line' or 'document'")
        self._init_sandbox(host, port, hang_seconds=hang_seconds, response_delay=response_delay)
        #: Test hook ``on_step(operation, invoice)``: called after a write (``create``,
        #: ``change_state``, ``email``) succeeded and was stored, before its answer is written (e.g. to
        #: kill a worker right there); ``invoice`` is a copy of the stored invoice (with ``account``
        #: and ``status``). Not called for refused requests. May be set after :meth:`start`.
        self.on_step = on_step
        self.seed_accounts = (
            copy.deepcopy({k: dict(v) for k, v in accounts.items()}) if accounts is not None else default_accounts()
        )
        self.rounding_method = rounding_method
        self.rate_limit_per_minute = rate_limit_per_minute
        self._init_state()

    def _init_state(self) -> None:
        self.accounts: dict[str, dict[str, Any]] = copy.deepcopy(self.seed_accounts)
        for account in self.accounts.values():
            account.setdefault("items", {})
            for i, client in enumerate(account.setdefault("clients", [])):
                client.setdefault("id", 5001 + i)
        self._invoices: dict[int, dict[str, Any]] = {}
        self._credit_notes: dict[int, dict[str, Any]] = {}  # same id space as invoices (document ids)
        self._receipts: dict[int, dict[str, Any]] = {}  # payments recorded by mark_paid()
        self._next_id = 9001
        self._next_client_id = 6001
        self._counters: dict[tuple[str, str, str], int] = {}  # (account, sequence, document type) -> last
        self._windows: dict[str, Window] = {}
        self._init_records()
        self.emails: list[dict[str, Any]] = []

    @property
    def api_url(self) -> str:
        """The ``api_url`` setting template for this emulator (``…/{account}``)."""
        return self.url + "/{account}"

    # ------------------------------------------------------------------ test helpers
    def invoices(self, account: str | None = None, *, include_deleted: bool = False) -> list[dict[str, Any]]:
        with self._lock:
            return [
                copy.deepcopy(d)
                for d in self._invoices.values()
                if (account is None or d["account"] == account) and (include_deleted or d["status"] != "deleted")
            ]

    def credit_notes(self, account: str | None = None, *, include_deleted: bool = False) -> list[dict[str, Any]]:
        """Deep copies of the stored credit notes (drafts too; deleted ones with ``include_deleted``)."""
        with self._lock:
            return [
                copy.deepcopy(d)
                for d in self._credit_notes.values()
                if (account is None or d["account"] == account) and (include_deleted or d["status"] != "deleted")
            ]

    def mark_paid(self, document_id: int, amount: Decimal | None = None) -> int:
        """Record a payment of ``amount`` (``None``: everything still due) on final invoice
        ``document_id``, as a receipt (what InvoiceXpress's partial payments create, listed in the
        invoice's related documents). Paid in full -> the invoice is ``settled``. Returns the
        receipt id; ``ValueError`` when the invoice is not final or the amount is not due."""
        with self._lock:
            doc = self._invoices.get(document_id)
            if doc is None or doc["status"] != "final":
                raise ValueError(f"document {document_id} is not a final invoice")
            due = doc["total"] - self._paid(document_id)
            value = due if amount is None else Decimal(amount)
            if not (0 < value <= due):
                raise ValueError(f"invoice {document_id}: {value} cannot be paid, {due} is due")
            receipt_id = self._next_id
            self._next_id += 1
            self._receipts[receipt_id] = {
                "id": receipt_id,
                "account": doc["account"],
                "type": "Receipt",
                "status": "final",
                "owner_invoice_id": document_id,
                "date": doc["date"],
                "total": value,
                "sequence_number": f"{receipt_id}/RC",
            }
            if value == due:
                doc["status"] = "settled"
            return receipt_id

    def _paid(self, document_id: int) -> Decimal:
        return sum(
            (r["total"] for r in self._receipts.values() if r["owner_invoice_id"] == document_id), Decimal("0.00")
        )

    def _credited(self, document_id: int, *, besides: int | None = None) -> Decimal:
        """Total of the final credit notes naming invoice ``document_id`` (``besides``: one left out)."""
        return sum(
            (
                n["total"]
                for n in self._credit_notes.values()
                if n["owner_invoice_id"] == document_id and n["status"] == "final" and n["id"] != besides
            ),
            Decimal("0.00"),
        )

    def balance(self, account: str = DEFAULT_ACCOUNT) -> Decimal:
        """What the account's clients owe: final invoices' total less their receipts (settled ones
        owe nothing), less the total of final credit notes. Drafts, deleted and canceled documents
        count zero."""
        with self._lock:
            due = sum(
                (
                    d["total"] - self._paid(d["id"])
                    for d in self._invoices.values()
                    if d["account"] == account and d["status"] == "final"
                ),
                Decimal("0.00"),
            )
            credit = sum(
                (n["total"] for n in self._credit_notes.values() if n["account"] == account and n["status"] == "final"),
                Decimal("0.00"),
            )
        return due - credit

    def plant_foreign(
        self, reference: str, total: Decimal, *, account: str = DEFAULT_ACCOUNT, client: Mapping[str, str] | None = None
    ) -> int:
        """A final invoice someone else made under ``reference``: one VAT-exempt item (``IVA0``,
        ``M07``) of ``total``, no observations (so no ownership marker). Returns its id."""
        today = date.today().strftime("%d/%m/%Y")
        body = {
            "invoice": {
                "date": today,
                "due_date": today,
                "reference": reference,
                "client": dict(client or {"name": "Foreign client", "code": "CLI-FOREIGN"}),
                "items": [{"name": "Serviços", "unit_price": str(total), "quantity": "1", "tax": {"name": "IVA0"}}],
                "tax_exemption": "M07",
            }
        }
        with self._lock:
            accounts = self.accounts[account]
            created = json_or_none(self._create(account, accounts, body, "invoices").body)
            if not isinstance(created, dict) or "invoice" not in created:
                raise ValueError(f"foreign invoice refused: {created}")
            document_id = int(created["invoice"]["id"])
            self._change_state(self._invoices[document_id], accounts, {"invoice": {"state": "finalized"}})
        return document_id

    def clients(self, account: str = DEFAULT_ACCOUNT) -> list[dict[str, Any]]:
        with self._lock:
            return list(copy.deepcopy(self.accounts[account]["clients"]))

    def items(self, account: str = DEFAULT_ACCOUNT) -> dict[str, dict[str, Any]]:
        with self._lock:
            return dict(copy.deepcopy(self.accounts[account]["items"]))

    def inject_fault(self, kind: str, times: int = 1, *, only: str | None = None, retry_after: int = 1) -> None:
        """The next ``times`` API calls (of operation ``only`` when given) fail with ``kind``.

        ``"503"``/``"500"``: that status, nothing processed; ``"429"``: rate limited with
        ``Retry-After: retry_after``; ``"reset"``: TCP reset before processing;
        ``"timeout_after_commit"``: processed, then no answer for ``hang_seconds``; ``"drop_after_commit"``:
        processed, then the connection closes without an answer.
        """
        self.faults.check(kind)
        if only is not None and only not in OPERATIONS:
            raise ValueError(f"unknown operation {only!r}; known: {', '.join(OPERATIONS)}")
        self._add_fault(Fault(kind, operation=only, retry_after=int(retry_after)), times)

    def _inject_from_admin(self, doc: dict[str, Any]) -> None:
        self.inject_fault(str(doc["kind"]), int(doc.get("times", 1)), only=doc.get("only"))

    def _pending_faults(self) -> list[Any]:
        return [[f.kind, f.operation, f.retry_after] for f in self.faults.entries()]

    def stats(self) -> dict[str, Any]:
        with self._lock:
            return {
                **super().stats(),
                "invoice_count": len(self.invoices()),
                "credit_note_count": len(self.credit_notes()),
                "emails": len(self.emails),
            }

    # ------------------------------------------------------------------ dispatch
    def _internal_error(self) -> Response:
        return _errors(500, ["emulator error"])

    def _handle(self, req: Request) -> Response:
        if req.path.startswith("/_emulator"):
            return self._admin(req)
        m = re.fullmatch(r"/([a-z0-9][a-z0-9-]*)(/.*)", req.path)
        if m is None or m.group(1) not in self.accounts:
            return _errors(404, ["Not found"])
        name, rest = m.group(1), m.group(2)
        account = self.accounts[name]
        key = req.query.get("api_key", "")
        if not key or not secrets.compare_digest(key, account["api_key"]):
            return _errors(401, ["Access denied: invalid API key"])
        operation = self._operation(req.method, rest)
        if operation is None:
            return _errors(404, ["Not found"])
        with self._lock:
            retry = self._throttle(self._windows.setdefault(name, Window(None)), self.rate_limit_per_minute)
            if retry is not None:
                return self._too_many(retry)
            fault = self._take_fault(operation=operation)
        refused = self._fault_answer(fault)
        if refused is not None:
            return refused
        self._delay()
        body: Any = None
        if req.method in ("POST", "PUT"):
            if "json" not in req.headers.get("content-type", ""):
                return _errors(415, ["Content-Type must be application/json"])
            try:
                body = json.loads(req.body or b"null")
            except ValueError:
                return _errors(400, ["Malformed JSON"])
        with self._lock:
            resp = self._route(name, account, operation, rest, req, body)
            stored = self._stored(operation, rest, resp) if self.on_step is not None else None
        return self._answer_processed(resp, fault, (operation, stored))

    def _fault_throttled(self, fault: Fault) -> Response:
        return self._too_many(1 if fault.retry_after is None else fault.retry_after)

    def _fault_status(self, status: int) -> Response:
        return _errors(status, ["Service Unavailable" if status == 503 else "Internal Server Error"])

    @staticmethod
    def _too_many(retry_after: int) -> Response:
        return _errors(429, ["Too many requests"], {"Retry-After": str(retry_after)})

    def _stored(self, operation: str, rest: str, resp: Response) -> dict[str, Any] | None:
        """For :attr:`on_step`: the invoice a successful write stored (``None`` for reads and refusals)."""
        if operation not in WRITE_OPERATIONS or not 200 <= resp.status < 300:
            return None
        found = re.search(r"/(?:invoices|credit_notes)/(\d+)", rest)
        document_id = int(found.group(1)) if found else self._created_id(resp)
        stored = self._invoices.get(document_id or -1) or self._credit_notes.get(document_id or -1)
        return copy.deepcopy(stored) or {"id": document_id}

    # ------------------------------------------------------------------ routing
    @staticmethod
    def _operation(method: str, rest: str) -> str | None:
        if rest == "/invoices.json":
            return {"POST": "create", "GET": "list"}.get(method)
        if re.fullmatch(r"/invoices/\d+\.json", rest):
            return "get" if method == "GET" else None
        if re.fullmatch(r"/invoices/\d+/change-state\.json", rest):
            return "change_state" if method == "PUT" else None
        if re.fullmatch(r"/invoices/\d+/related-documents\.json", rest):
            return "related" if method == "GET" else None
        if rest == "/credit_notes.json":
            return {"POST": "credit_note_create", "GET": "credit_note_list"}.get(method)
        if re.fullmatch(r"/credit_notes/\d+\.json", rest):
            return "credit_note_get" if method == "GET" else None
        if re.fullmatch(r"/credit_notes/\d+/change-state\.json", rest):
            return "credit_note_change_state" if method == "PUT" else None
        if re.fullmatch(r"/invoices/\d+/email-document\.json", rest):
            return "email" if method == "PUT" else None
        if rest == "/sequences.json":
            return "sequences" if method == "GET" else None
        if rest in ("/clients/find-by-code.json", "/clients/find-by-name.json"):
            return "clients" if method == "GET" else None
        return None

    @staticmethod
    def _created_id(resp: Response) -> int | None:
        answer = json_or_none(resp.body)
        doc = (answer.get("invoice") or answer.get("credit_note")) if isinstance(answer, dict) else None
        return int(doc["id"]) if isinstance(doc, dict) and str(doc.get("id", "")).isdigit() else None

    def _route(
        self, name: str, account: dict[str, Any], operation: str, rest: str, req: Request, body: Any
    ) -> Response:
        if operation == "sequences":
            return json_response(
                200,
                {
                    "sequences": [
                        {"id": int(sid), "serie": serie, "default_sequence": int(sid == account["default_sequence"])}
                        for sid, serie in account["sequences"].items()
                    ]
                },
            )
        if operation == "create":
            return self._create(name, account, body, "invoices")
        if operation == "credit_note_create":
            return self._create(name, account, body, "credit_notes")
        if operation == "clients":
            by_code = rest.endswith("find-by-code.json")
            wanted = req.query.get("client_code" if by_code else "client_name", "")
            match = next(
                (c for c in account["clients"] if wanted and c.get("code" if by_code else "name") == wanted), None
            )
            if match is None:
                return _errors(404, ["Client not found"])
            return json_response(
                200, {"client": {k: match.get(k, "") for k in ("id", "name", "code", "email", "fiscal_id")}}
            )
        if operation in ("list", "credit_note_list"):
            return self._list(name, req.query_lists, "invoices" if operation == "list" else "credit_notes")
        family = "credit_notes" if operation.startswith("credit_note") else "invoices"
        document_id = int(re.search(r"/(?:invoices|credit_notes)/(\d+)", rest).group(1))  # type: ignore[union-attr]
        doc = self._store(family).get(document_id)
        if doc is None or doc["account"] != name or doc["status"] == "deleted":
            return _errors(404, ["Document not found"])
        if operation in ("get", "credit_note_get"):
            return json_response(200, {FAMILIES[family][1]: self._render(doc)})
        if operation in ("change_state", "credit_note_change_state"):
            return self._change_state(doc, account, body)
        if operation == "related":
            return json_response(200, {"documents": self._related(document_id)})
        return self._email(doc, body)

    def _store(self, family: str) -> dict[int, dict[str, Any]]:
        return self._credit_notes if family == "credit_notes" else self._invoices

    def _related(self, document_id: int) -> list[dict[str, Any]]:
        """``GET /invoices/{id}/related-documents.json``: the credit notes naming the invoice
        (``owner_invoice_id``; drafts too, deleted ones not) and its receipts, oldest first
        (``{"documents": [...]}``; the endpoint is in go-invoicexpress ``RelatedDocuments``, the wrapper
        key is the emulator's choice)."""
        notes = [
            self._render(n)
            for n in self._credit_notes.values()
            if n["owner_invoice_id"] == document_id and n["status"] != "deleted"
        ]
        receipts = [
            {k: v for k, v in r.items() if k != "account"}
            for r in self._receipts.values()
            if r["owner_invoice_id"] == document_id
        ]
        return sorted([*notes, *receipts], key=lambda d: int(d["id"]))

    # ------------------------------------------------------------------ create
    def _client(self, account: dict[str, Any], raw: Mapping[str, Any]) -> dict[str, Any]:
        code = str(raw.get("code") or "").strip()
        name = str(raw.get("name") or "").strip()
        match = None
        if code:
            match = next((c for c in account["clients"] if c.get("code") == code), None)
        if match is None:
            match = next((c for c in account["clients"] if c["name"] == name), None)
        if match is None:
            match = {
                "id": self._next_client_id,
                "name": name,
                "code": code,
                "email": raw.get("email") or "",
                "fiscal_id": raw.get("fiscal_id") or "",
            }
            self._next_client_id += 1
            account["clients"].append(match)
        else:
            for key in ("email", "fiscal_id"):
                if raw.get(key):
                    match[key] = raw[key]
        return match

    def _create(self, name: str, account: dict[str, Any], body: Any, family: str) -> Response:
        """``POST /invoices.json`` or ``POST /credit_notes.json`` (``family``): a draft. The request root is
        ``"invoice"`` for both, as documented for every document type; a credit note also needs
        ``owner_invoice_id`` (:meth:`_owner_problems`)."""
        doc = body.get("invoice") if isinstance(body, dict) else None
        if not isinstance(doc, dict):
            return _errors(422, ["Invoice can't be blank"])
        problems: list[str] = []
        issued = _ix_date(doc.get("date"))
        if issued is None:
            problems.append("Date is invalid (dd/mm/yyyy)")
        due = _ix_date(doc.get("due_date"))
        if due is None:
            problems.append("Due date is invalid (dd/mm/yyyy)")
        elif issued is not None and due < issued:
            problems.append("Due date must be on or after the date")
        client = doc.get("client")
        if not isinstance(client, dict) or not str(client.get("name") or "").strip():
            problems.append("Client name can't be blank")
            client = {}
        for key, limit_key in (("reference", "reference"), ("observations", "observations")):
            value = doc.get(key)
            if isinstance(value, str) and len(value) > LIMITS[limit_key]:
                problems.append(f"{key.capitalize()} is too long (maximum is {LIMITS[limit_key]} characters)")
        for key in ("name", "code", "fiscal_id"):
            value = client.get(key)
            if isinstance(value, str) and len(value) > LIMITS[f"client.{key}"]:
                problems.append(f"Client {key} is too long (maximum is {LIMITS[f'client.{key}']} characters)")
        sequence_id = str(doc.get("sequence_id") or account["default_sequence"])
        if sequence_id not in account["sequences"]:
            problems.append("Sequence not found")
        raw_items = doc.get("items")
        if not isinstance(raw_items, list) or not raw_items:
            problems.append("Items can't be blank")
            raw_items = []
        items: list[dict[str, Any]] = []
        any_exempt = False
        for i, raw in enumerate(raw_items):
            where = f"Item {i + 1}"
            if not isinstance(raw, dict):
                problems.append(f"{where}: invalid item")
                continue
            item_name = str(raw.get("name") or "").strip()
            if not item_name:
                problems.append(f"{where}: Name can't be blank")
            description = str(raw.get("description") or "")
            if len(item_name) > LIMITS["items[].name"]:
                problems.append(f"{where}: Name is too long (maximum is {LIMITS['items[].name']} characters)")
            if len(description) > LIMITS["items[].description"]:
                problems.append(
                    f"{where}: Description is too long (maximum is {LIMITS['items[].description']} characters)"
                )
            price = _dec(raw.get("unit_price"))
            if price is None:
                problems.append(f"{where}: Unit price must be a number")
            qty = _dec(raw.get("quantity"))
            if qty is None or qty <= 0:
                problems.append(f"{where}: Quantity must be a number greater than 0")
            discount = _dec(raw.get("discount")) if raw.get("discount") not in (None, "") else Decimal(0)
            if discount is None or not (0 <= discount <= 100):
                problems.append(f"{where}: Discount must be between 0 and 100")
            tax_raw = raw.get("tax")
            if not isinstance(tax_raw, dict):
                tax_raw = {}
            tax_name = str(tax_raw.get("name") or account["default_tax"])
            if tax_name not in account["taxes"]:
                tax_name = account["default_tax"]  # documented: unknown names fall back to the default tax
            rate = account["taxes"][tax_name]
            if rate == 0:
                any_exempt = True
            if price is None or qty is None or qty <= 0 or discount is None:
                continue
            items.append(
                {
                    "name": item_name,
                    "description": description,
                    "unit_price": price,
                    "unit": raw.get("unit") or "",
                    "quantity": qty,
                    "discount": discount,
                    "tax": {"name": tax_name, "value": rate},
                }
            )
        exemption = str(doc.get("tax_exemption") or "").strip()
        if any_exempt and not exemption:
            problems.append("Tax exemption can't be blank when an item is exempt from VAT")
        elif exemption and not re.fullmatch(r"M\d{2}", exemption):
            problems.append("Tax exemption is not valid")
        if problems or issued is None or due is None:  # (None only with problems)
            return _errors(422, problems)
        self._compute(items)
        totals = self._totals(items)
        kind, key, _ = FAMILIES[family]
        owner = None
        if family == "credit_notes":
            owner_problems, owner = self._owner_problems(name, doc, client, totals["total"])
            if owner_problems:
                return _errors(422, owner_problems)
        for item in items:
            account["items"][item["name"]] = {
                "description": item["description"],
                "unit_price": item["unit_price"],
                "tax": item["tax"]["name"],
            }
        document_id = self._next_id
        self._next_id += 1
        holder = self._client(account, client)
        stored = {
            "id": document_id,
            "account": name,
            "status": "draft",
            "archived": False,
            "type": kind,
            "sequence_number": "draft",
            "inverted_sequence_number": "draft",
            "atcud": None,
            "sequence_id": sequence_id,
            "date": issued.strftime("%d/%m/%Y"),
            "due_date": due.strftime("%d/%m/%Y"),
            "reference": str(doc.get("reference") or ""),
            "observations": str(doc.get("observations") or ""),
            "retention": None,
            "tax_exemption": exemption or None,
            "currency": "Euro",
            "permalink": f"https://{name}.app.invoicexpress.com/documents/{document_id}",
            "client": holder,
            "items": items,
        }
        stored.update(totals)
        if owner is not None:
            stored["owner_invoice_id"] = owner
        self._store(family)[document_id] = stored
        return json_response(201, {key: self._render(stored)})

    def _owner_problems(
        self,
        name: str,
        doc: Mapping[str, Any],
        client: Mapping[str, Any],
        total: Decimal,
        *,
        besides: int | None = None,
    ) -> tuple[list[str], int | None]:
        """A credit note's ``owner_invoice_id``: required (the AT forbids correction documents without
        the document they correct), a final or settled invoice of the account, of the same client
        (by code, else name), and the note's total at most what that invoice still has to credit
        (its total less final credit notes already naming it). Emulator choices where the
        documentation says nothing more."""
        raw = doc.get("owner_invoice_id")
        if raw in (None, ""):
            return ["Owner invoice can't be blank"], None
        owner_id = int(raw) if str(raw).isdigit() else -1
        owner = self._invoices.get(owner_id)
        if owner is None or owner["account"] != name or owner["status"] not in ("final", "settled"):
            return ["Owner invoice must be a finalized invoice of this account"], None
        code, holder = str(client.get("code") or "").strip(), owner["client"]
        same = (code and code == holder.get("code")) or (not code and client.get("name") == holder["name"])
        if not same:
            return ["Client must be the client of the owner invoice"], None
        left = owner["total"] - self._credited(owner_id, besides=besides)
        if total > left:
            return [f"Total can't exceed what is left to credit on the owner invoice ({left})"], None
        return [], owner_id

    def _compute(self, items: list[dict[str, Any]]) -> None:
        for item in items:
            subtotal = q2(item["quantity"] * item["unit_price"])
            discount_amount = q2(subtotal * item["discount"] / Decimal(100))
            net = subtotal - discount_amount
            tax_amount = q2(net * item["tax"]["value"] / Decimal(100))
            item.update(
                subtotal=subtotal, discount_amount=discount_amount, tax_amount=tax_amount, total=net + tax_amount
            )

    def _totals(self, items: list[dict[str, Any]]) -> dict[str, Decimal]:
        total_sum = sum((i["subtotal"] for i in items), Decimal("0.00"))
        discount = sum((i["discount_amount"] for i in items), Decimal("0.00"))
        before = total_sum - discount
        if self.rounding_method == "line":
            taxes = sum((i["tax_amount"] for i in items), Decimal("0.00"))
        else:
            taxes = q2(
                sum(
                    ((i["subtotal"] - i["discount_amount"]) * i["tax"]["value"] / Decimal(100) for i in items),
                    Decimal(0),
                )
            )
        return {"sum": total_sum, "discount": discount, "before_taxes": before, "taxes": taxes, "total": before + taxes}

    @staticmethod
    def _render(doc: Mapping[str, Any]) -> dict[str, Any]:
        out = {k: copy.deepcopy(v) for k, v in doc.items() if k != "account"}
        client = out["client"]
        out["client"] = {
            "id": client["id"],
            "name": client["name"],
            "code": client.get("code", ""),
            "email": client.get("email", ""),
            "country": "Portugal",
        }
        return out

    # ------------------------------------------------------------------ list
    def _list(self, name: str, query: Mapping[str, list[str]], family: str) -> Response:
        docs = [d for d in self._store(family).values() if d["account"] == name and d["status"] != "deleted"]
        text = (query.get("text") or [""])[-1].strip().casefold()
        if text:
            docs = [
                d
                for d in docs
                if any(
                    text in str(v).casefold()
                    for v in (d["reference"], d["observations"], d["client"]["name"], d["sequence_number"])
                )
            ]
        statuses = query.get("status[]") or []
        if statuses:
            docs = [d for d in docs if d["status"] in statuses]
        first = _ix_date((query.get("date[from]") or [""])[-1]) or date.min
        last = _ix_date((query.get("date[to]") or [""])[-1]) or date.max
        docs = [d for d in docs if first <= (_ix_date(d["date"]) or date.min) <= last]
        docs.sort(key=lambda d: d["id"], reverse=True)
        try:
            page = max(1, int((query.get("page") or ["1"])[-1]))
            per_page = max(1, min(100, int((query.get("per_page") or ["10"])[-1])))
        except ValueError:
            return _errors(422, ["page and per_page must be integers"])
        total = len(docs)
        pages = max(1, math.ceil(total / per_page))
        window = docs[(page - 1) * per_page : page * per_page]
        return json_response(
            200,
            {
                FAMILIES[family][2]: [self._render(d) for d in window],
                "pagination": {
                    "total_entries": total,
                    "current_page": page,
                    "total_pages": pages,
                    "per_page": per_page,
                },
            },
        )

    # ------------------------------------------------------------------ state and e-mail
    def _change_state(self, doc: dict[str, Any], account: dict[str, Any], body: Any) -> Response:
        """``PUT /{invoices|credit_notes}/{id}/change-state.json`` ``{"invoice": {"state", "message"}}``
        (the ``invoice`` root for every document type, as documented). A credit note has no
        ``settled``/``unsettled``; finalising one checks its owner invoice again. An invoice with
        receipts or final credit notes cannot be ``canceled`` (annul those first); a settled one
        cannot change but back to ``unsettled``."""
        request = body.get("invoice") if isinstance(body, dict) else None
        if not isinstance(request, dict):
            request = {}
        state = str(request.get("state") or "")
        current = doc["status"]
        credit = doc["type"] == "CreditNote"
        transitions = {
            ("draft", "finalized"): "final",
            ("draft", "deleted"): "deleted",
            ("final", "canceled"): "canceled",
        }
        if not credit:
            transitions.update({("final", "settled"): "settled", ("settled", "unsettled"): "final"})
        target = transitions.get((current, state))
        if target is None:
            if current == "settled":
                return _errors(422, ["Invoice has been settled so can't be changed anymore"])
            return _errors(
                422,
                [f"Invalid state transition: the document is {current} and can't be changed to {state or '(none)'}"],
            )
        if state == "canceled" and not str(request.get("message") or "").strip():
            return _errors(422, ["Message can't be blank when canceling a document"])
        if state == "canceled" and not credit and (self._paid(doc["id"]) or self._credited(doc["id"])):
            return _errors(422, ["Invoice has receipts or credit notes so can't be canceled"])
        if state == "unsettled" and self._paid(doc["id"]):
            return _errors(422, ["Invoice has receipts so can't be unsettled"])
        if state == "finalized" and credit:
            problems, _ = self._owner_problems(doc["account"], doc, doc["client"], doc["total"], besides=doc["id"])
            if problems:
                return _errors(422, problems)
        if state == "finalized":
            key = (doc["account"], doc["sequence_id"], doc["type"])
            self._counters[key] = self._counters.get(key, 0) + 1
            number = self._counters[key]
            serie = account["sequences"][doc["sequence_id"]]
            doc["sequence_number"] = f"{number}/{serie}"
            doc["inverted_sequence_number"] = f"{serie}/{number}"
            doc["atcud"] = f"JFK{doc['sequence_id'][-5:]}-{number}"
            doc["saft_hash"] = secrets.token_hex(2).upper()
        doc["status"] = target
        return json_response(200, {"credit_note" if credit else "invoice": self._render(doc)})

    def _email(self, doc: dict[str, Any], body: Any) -> Response:
        message = body.get("message") if isinstance(body, dict) else None
        if not isinstance(message, dict):
            message = {}
        client = message.get("client")
        email = str(client.get("email") or "").strip() if isinstance(client, dict) else ""
        if doc["status"] not in ("final", "settled"):
            return _errors(422, ["Only finalized documents can be sent by email"])
        if not email or "@" not in email:
            return _errors(422, ["Email is invalid"])
        self.emails.append(
            {
                "invoice_id": doc["id"],
                "email": email,
                "subject": message.get("subject", ""),
                "body": message.get("body", ""),
            }
        )
        return Response(200, b"", {"Content-Type": JSON_UTF8})

    # ------------------------------------------------------------------ control API
    def _admin_routes(self) -> dict[tuple[str, str], AdminRoute]:
        routes = super()._admin_routes()
        del routes["POST", "/_emulator/expire-tokens"]  # no tokens: API keys
        routes["GET", "/_emulator/invoices"] = lambda _req: json_response(200, self._invoice_listing())
        routes["GET", "/_emulator/credit-notes"] = lambda _req: json_response(
            200, [dict(self._render(d), account=d["account"]) for d in self.credit_notes()]
        )
        routes["GET", "/_emulator/emails"] = lambda _req: json_response(200, self._emails())
        routes["GET", "/_emulator/balance"] = lambda req: json_response(
            200, {"balance": self.balance(req.query.get("account") or DEFAULT_ACCOUNT)}
        )
        routes["POST", "/_emulator/payments"] = lambda req: self.admin_action(
            req, self._admin_payment, refused="payment refused"
        )
        routes["POST", "/_emulator/foreign"] = lambda req: self.admin_action(
            req, self._admin_foreign, refused="foreign document refused"
        )
        return routes

    def _admin_payment(self, doc: dict[str, Any]) -> dict[str, Any]:
        """``{"invoice_id", "amount"?}`` -> :meth:`mark_paid` -> ``{"ok", "receipt_id"}``."""
        amount = doc.get("amount")
        receipt = self.mark_paid(int(doc["invoice_id"]), None if amount is None else Decimal(str(amount)))
        return {"ok": True, "receipt_id": receipt}

    def _admin_foreign(self, doc: dict[str, Any]) -> dict[str, Any]:
        """``{"reference", "total", "account"?, "client"?}`` -> :meth:`plant_foreign` -> ``{"ok", "id"}``."""
        document_id = self.plant_foreign(
            str(doc["reference"]),
            Decimal(str(doc["total"])),
            account=str(doc.get("account") or DEFAULT_ACCOUNT),
            client=doc.get("client"),
        )
        return {"ok": True, "id": document_id}

    def _invoice_listing(self) -> list[dict[str, Any]]:
        return [dict(self._render(d), account=d["account"]) for d in self.invoices()]

    def _emails(self) -> list[dict[str, Any]]:
        with self._lock:
            return copy.deepcopy(self.emails)

    def _admin_fault(self, req: Request) -> Response:
        resp = super()._admin_fault(req)
        if resp.status != 400:
            return resp
        return json_response(400, dict(loads_decimal(resp.body), operations=list(OPERATIONS)))


def serve(host: str = "127.0.0.1", port: int = 0, **kwargs: Any) -> None:
    """Run an emulator in the foreground until Ctrl-C, printing its URL and the demo credentials."""
    emulator = InvoiceXpressEmulator(host=host, port=port, **kwargs).start()
    lines = [f"InvoiceXpress emulator listening on {emulator.url}", f"  api_url      : {emulator.api_url}"]
    for name, account in emulator.accounts.items():
        lines.append(f"  account_name : {name}   (export INVOICEXPRESS_API_KEY={account['api_key']})")
    serve_until_interrupted(emulator, lines)


__all__ = [
    "DEFAULT_ACCOUNT",
    "DEFAULT_API_KEY",
    "FAULT_KINDS",
    "OPERATIONS",
    "InvoiceXpressEmulator",
    "default_accounts",
    "serve",
]
