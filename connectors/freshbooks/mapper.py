"""Pure mapping between :class:`connectors.sdk.invoice.Invoice` and FreshBooks Accounting API JSON.

Nothing here does I/O. :func:`invoice_to_freshbooks` builds the body of
``POST /accounting/account/{accountId}/invoices/invoices`` — ``{"invoice": {...}}`` with
``customerid``, ``create_date``, ``due_offset_days``, ``invoice_number``, ``po_number``, ``notes``,
``currency_code`` and ``lines`` (``name``, ``description``, ``qty``, ``unit_cost {amount, code}``,
``taxName1``/``taxAmount1``) — field reference: the community spec ``tests/specs/freshbooks/openapi.yaml``
(``InvoiceCreate``/``InvoiceLinesWritable``) and the official SDK examples
(``freshbooks-python-sdk/examples/create_invoice_extended.py``). :func:`invoice_from_freshbooks`
reads an invoice of a response.

**Marker and legal notes.** FreshBooks invoices have no private memo: their free-text fields are
``notes`` ("Notes listed on invoice"), ``terms`` ("Terms listed on invoice") and ``po_number`` (a short
reference), all printed and all returned on reads (spec ``Invoice``). The ownership marker
(:func:`connectors.sdk.lifecycle.marker`, ``broker:<invoice key>``) therefore goes on the **last line of
``notes``**, after the invoice's legal notes (one per line): ``notes`` is long free text FreshBooks keeps
as sent; ``po_number`` keeps the human reference it carries today and ``terms`` stay the account's
payment terms. :func:`printed_notes` builds it, :func:`invoice_from_freshbooks` reads the marker back.

**Lifecycle** (:func:`credit_note_to_freshbooks`): a paid or partly paid invoice is credited in full by a
credit note (``POST .../credit_notes/credit_notes``, https://www.freshbooks.com/api/credits) copying its
lines exactly as FreshBooks holds them, numbered ``<number>-CN``.

How FreshBooks computes an invoice, and what the mapper does so it equals ours to the cent:

* line ``amount`` = ``qty × unit_cost`` rounded half-up to the cent, where ``unit_cost.amount``
  is a money string "to two decimal places" (the spec): a unit cost with more decimals does not
  survive; line tax = ``amount × taxAmount1 / 100`` (+ ``taxAmount2``) rounded per line; invoice
  ``amount`` = Σ line amounts + Σ line taxes. That is our own rule (tax per line, rounded half-up,
  totals as sums), *provided every line amount equals our net*.
* :func:`line_layout` guarantees that: our ``qty`` × ``unit_price`` when they multiply to the net
  with a 2-decimal unit price; else our ``qty`` with ``unit_cost = net / qty`` when a 2-decimal unit
  cost multiplies back exactly; else ``qty 1 × net`` (discounted lines, quantities with more than
  :data:`QTY_MAX_DP` decimals such as ``0.8333`` h). The description keeps the real quantity.
  Tax-inclusive invoices are sent with their net amounts (FreshBooks lines are tax-exclusive).
* ``taxAmount1`` is the rate as a percentage string with at most 3 decimals (spec); a 0 % line
  carries no tax fields.

Field limits (characters, checked before sending -> :class:`~connectors.sdk.errors.PermanentError`
naming the field): FreshBooks documents none in the material available, so :data:`FIELD_LIMITS`
holds conservative assumptions that the emulator enforces too.

Money goes out as strings (``{"amount": "136.50", "code": "EUR"}``), quantities as exact JSON numbers.
"""

from __future__ import annotations

from collections.abc import Mapping
from decimal import Decimal
from typing import Any

from connectors.freshbooks.settings import FreshBooksSettings
from connectors.sdk.errors import PermanentError
from connectors.sdk.invoice import ExternalInvoice, Invoice, InvoiceLine
from connectors.sdk.lifecycle import credit_note_number, marker, read_marker
from connectors.sdk.money import NetLayout as LineLayout
from connectors.sdk.money import (
    amount_or_none,
    decimal_places,
    dumps,
    loads,
    lookup_rate,
    minor_units,
    net_layout,
    round_money,
)
from connectors.sdk.money import rate_key as rate_text

#: Assumed limits in characters (FreshBooks publishes none in the available material; see module docstring).
FIELD_LIMITS: dict[str, int] = {
    "invoice_number": 100,
    "po_number": 255,
    "notes": 4000,
    "line.name": 255,
    "line.description": 4000,
    "taxName": 50,
}
#: Most decimals of a quantity the mapper sends as is (FreshBooks' precision is undocumented).
QTY_MAX_DP = 2
#: ``taxAmount1`` is "in percentage, up to 3 decimal places" (spec ``InvoiceLinesWritable``).
TAX_PERCENT_MAX_DP = 3

#: Default line ``name`` per line kind (``settings.line_names`` overrides).
DEFAULT_LINE_NAMES: dict[str, str] = {
    "labour": "Labour",
    "travel": "Travel",
    "call_out": "Call-out fee",
    "part": "Parts",
    "expense": "Expenses",
    "quote": "Quoted work",
    "discount": "Discount",
}

__all__ = [
    "CREDIT_LINE_FIELDS",
    "DEFAULT_LINE_NAMES",
    "FIELD_LIMITS",
    "QTY_MAX_DP",
    "LineLayout",
    "account_ids",
    "active_invoice",
    "check_limits",
    "client_id_where",
    "client_to_freshbooks",
    "credit_note_to_freshbooks",
    "customer_id_of",
    "describe_errors",
    "dumps",
    "errors_of",
    "invoice_from_freshbooks",
    "invoice_to_freshbooks",
    "is_duplicate_number",
    "line_layout",
    "line_name",
    "loads",
    "money",
    "money_amount",
    "paid_amount",
    "printed_notes",
    "rate_text",
    "tax_name",
]


def money(amount: Decimal, currency: str) -> dict[str, str]:
    """A FreshBooks money object: ``{"amount": "136.50", "code": "EUR"}`` (string at the currency's minor unit)."""
    q = round_money(amount, currency)
    return {"amount": format(q, "f"), "code": currency}


# --------------------------------------------------------------------------- names and limits
def line_name(line: InvoiceLine, settings: FreshBooksSettings) -> str:
    """The line ``name``: ``settings.line_names[kind]``, else :data:`DEFAULT_LINE_NAMES`, else the kind."""
    return (settings.line_names or {}).get(line.kind) or DEFAULT_LINE_NAMES.get(line.kind, line.kind)


def tax_name(rate: Decimal, settings: FreshBooksSettings) -> str:
    """``taxName1`` for ``rate``: ``settings.tax_names["23"]`` or ``settings.default_tax_name``."""
    name = lookup_rate(settings.tax_names, rate)
    return settings.default_tax_name if name is None else name


def _too_long(field: str, value: str | None, key: str) -> str | None:
    limit = FIELD_LIMITS[key]
    if value is not None and len(value) > limit:
        return f"{field} is {len(value)} characters, FreshBooks allows {limit}"
    return None


def check_limits(invoice: Invoice, settings: FreshBooksSettings) -> None:
    """Raise :class:`PermanentError` naming every field over its limit (characters) or otherwise unsendable."""
    problems = [
        _too_long("invoice_number (FreshBooks invoice_number)", invoice.invoice_number, "invoice_number"),
        _too_long("reference (FreshBooks po_number)", invoice.reference, "po_number"),
        _too_long("legal_notes and marker (FreshBooks notes)", printed_notes(invoice), "notes"),
    ]
    for index, line in enumerate(invoice.lines):
        problems.append(
            _too_long(f"lines[{index}].description (FreshBooks line description)", line.description, "line.description")
        )
        problems.append(
            _too_long(
                f"lines[{index}] name (billing.settings.line_names.{line.kind})", line_name(line, settings), "line.name"
            )
        )
        if line.tax_rate != 0:
            problems.append(
                _too_long(
                    f"lines[{index}] tax name (billing.settings.tax_names)",
                    tax_name(line.tax_rate, settings),
                    "taxName",
                )
            )
            if decimal_places(line.tax_rate) > TAX_PERCENT_MAX_DP:
                problems.append(
                    f"lines[{index}].tax_rate {line.tax_rate} has more than {TAX_PERCENT_MAX_DP} decimals"
                    " (FreshBooks taxAmount1)"
                )
    if invoice.due_date < invoice.issue_date:
        problems.append(
            f"due_date {invoice.due_date} is before issue_date {invoice.issue_date}"
            " (FreshBooks due_offset_days must be ≥ 0)"
        )
    found = [p for p in problems if p]
    if found:
        raise PermanentError(f"invoice {invoice.invoice_number}: " + "; ".join(found))


def printed_notes(invoice: Invoice) -> str:
    """``notes`` (printed): each legal note on a line of its own, then the ownership marker ``broker:<invoice key>``."""
    return "\n".join([*invoice.legal_notes, marker(invoice.invoice_key)])


# --------------------------------------------------------------------------- lines
def line_layout(line: InvoiceLine, invoice: Invoice) -> LineLayout:
    """``qty`` and unit price (sent as ``unit_cost``) of the FreshBooks line for ``line``; ``amount`` is ``line.net``.

    A quantity of more than :data:`QTY_MAX_DP` decimals is sent as ``1 × net``; otherwise our
    quantity and a unit price of the currency's decimals that multiply back to the net (see the
    module docstring and :func:`connectors.sdk.money.net_layout`).
    """
    currency, net = invoice.currency, line.net
    if decimal_places(line.quantity) > QTY_MAX_DP:
        return LineLayout(Decimal(1), net, net, False)
    keep = (
        not invoice.tax_inclusive
        and line.discount_percent == 0
        and decimal_places(line.unit_price) <= minor_units(currency)
    )
    return net_layout(net, line.quantity, line.unit_price, currency, keep=keep, max_places=minor_units(currency))


def line_to_freshbooks(line: InvoiceLine, invoice: Invoice, settings: FreshBooksSettings) -> dict[str, Any]:
    """One line: ``type`` 0, ``name``, ``description``, ``qty``, ``unit_cost``, and ``taxName1``/``taxAmount1``
    when taxed."""
    layout = line_layout(line, invoice)
    out: dict[str, Any] = {
        "type": 0,
        "name": line_name(line, settings),
        "description": line.description,
        "qty": layout.qty,
        "unit_cost": money(layout.unit_price, invoice.currency),
    }
    if line.tax_rate != 0:
        out["taxName1"] = tax_name(line.tax_rate, settings)
        out["taxAmount1"] = rate_text(line.tax_rate)
    return out


# --------------------------------------------------------------------------- Invoice -> FreshBooks
def customer_id_of(invoice: Invoice, customer_id: str | None = None) -> int:
    """The FreshBooks client id (an integer ``userid``) of the invoice.

    Raises :class:`PermanentError` when it is absent or not numeric.
    """
    value = customer_id or invoice.contact_id
    if not value:
        raise PermanentError(
            f"invoice {invoice.invoice_number}: client {invoice.client_id} ({invoice.client_name}) has no FreshBooks "
            f"client id (clients.{invoice.client_id}.contact_id)"
        )
    text = str(value).strip()
    if not text.isdigit():
        raise PermanentError(
            f"invoice {invoice.invoice_number}: clients.{invoice.client_id}.contact_id {text!r} is not a FreshBooks"
            " client id (a number)"
        )
    return int(text)


def invoice_to_freshbooks(
    invoice: Invoice, settings: FreshBooksSettings, *, customer_id: str | None = None
) -> dict[str, Any]:
    """Body of ``POST .../invoices/invoices``: ``{"invoice": {...}}`` (see the module docstring).

    Always created as a draft (FreshBooks' behaviour); the connector marks it sent or e-mails it in
    a second, separately retry-safe step. Raises :class:`PermanentError` for a field over its limit,
    a missing/non-numeric client id, a due date before the issue date or an empty invoice.
    """
    check_limits(invoice, settings)
    if not invoice.lines:
        raise PermanentError(f"invoice {invoice.invoice_number}: FreshBooks needs at least one line")
    body: dict[str, Any] = {
        "customerid": customer_id_of(invoice, customer_id),
        "create_date": invoice.issue_date.isoformat(),
        "due_offset_days": (invoice.due_date - invoice.issue_date).days,
        "invoice_number": invoice.invoice_number,
        "po_number": invoice.reference,
        "notes": printed_notes(invoice),
        "currency_code": invoice.currency,
        "lines": [line_to_freshbooks(line, invoice, settings) for line in invoice.lines],
    }
    if settings.language:
        body["language"] = settings.language
    return {"invoice": body}


# --------------------------------------------------------------------------- FreshBooks -> ours
def money_amount(value: Any) -> Decimal | None:
    """The amount of a money object ``{"amount": "209.41", "code": "EUR"}`` (or a bare number) as Decimal."""
    return amount_or_none(value.get("amount") if isinstance(value, Mapping) else value)


def paid_amount(entity: Mapping[str, Any]) -> Decimal:
    """What was received on a FreshBooks invoice: its ``paid.amount`` (0 when absent)."""
    return money_amount(entity.get("paid")) or Decimal("0")


def invoice_from_freshbooks(entity: Mapping[str, Any]) -> ExternalInvoice:
    """:class:`ExternalInvoice` from a FreshBooks invoice: ``invoiceid`` (or ``id``), ``invoice_number``,
    ``amount.amount`` as Decimal, status = ``v3_status`` (``draft``, ``sent``, ``viewed``, ``paid``,
    ``partial``...), the marker on the last line of ``notes`` and :func:`paid_amount`.
    Raises ``KeyError`` when neither id is present."""
    ident = entity.get("invoiceid", entity.get("id"))
    if ident is None:
        raise KeyError("invoiceid")
    notes = entity.get("notes")
    return ExternalInvoice(
        external_id=str(ident),
        number=str(entity.get("invoice_number") or ""),
        total=money_amount(entity.get("amount")),
        status=entity.get("v3_status") or entity.get("display_status"),
        marker=read_marker(notes if isinstance(notes, str) else None),
        paid=paid_amount(entity),
    )


#: Writable fields of a credit note line (https://www.freshbooks.com/api/credits, "Credit Lines").
CREDIT_LINE_FIELDS = ("name", "description", "qty", "unit_cost", "taxName1", "taxAmount1", "taxName2", "taxAmount2")


def credit_note_to_freshbooks(entity: Mapping[str, Any], *, issued: str, reason: str) -> dict[str, Any]:
    """Body of ``POST .../credit_notes/credit_notes`` crediting FreshBooks invoice ``entity`` (read with its
    ``lines``) in full: ``{"credit_note": {...}}`` with ``clientid`` (the invoice's ``customerid``),
    ``create_date`` ``issued`` (``YYYY-MM-DD``), ``credit_number`` ``<invoice number>-CN``,
    ``credit_type`` ``goodwill`` (FreshBooks' kind of credit note; ``prepayment`` is money received in
    advance), ``currency_code``, ``language``, ``notes`` (printed: ``Credit note for invoice <n>: <reason>``
    then the invoice's marker line) and the invoice's lines copied field by field
    (:data:`CREDIT_LINE_FIELDS`, empty tax fields left out), so FreshBooks computes the same amount.
    """
    number = str(entity.get("invoice_number") or "")
    notes = entity.get("notes")
    key = read_marker(notes if isinstance(notes, str) else None)
    lines = [
        {k: line[k] for k in CREDIT_LINE_FIELDS if line.get(k) not in (None, "")}
        for line in entity.get("lines") or []
        if isinstance(line, Mapping)
    ]
    body: dict[str, Any] = {
        "clientid": entity.get("customerid"),
        "create_date": issued,
        "credit_number": credit_note_number(number),
        "credit_type": "goodwill",
        "currency_code": entity.get("currency_code"),
        "notes": f"Credit note for invoice {number}: {reason}\n{marker(key or number)}",
        "lines": lines,
    }
    if entity.get("language"):
        body["language"] = entity["language"]
    return {"credit_note": body}


def account_ids(identity: Any) -> list[str]:
    """The ``account_id`` of each ``business_memberships[].business`` of ``GET /auth/api/v1/users/me``."""
    memberships = identity.get("business_memberships") if isinstance(identity, dict) else None
    return [str((m.get("business") or {}).get("account_id")) for m in memberships or [] if isinstance(m, dict)]


def active_invoice(invoices: Any, invoice_number: str) -> dict[str, Any] | None:
    """The invoice with exactly ``invoice_number``, not deleted (``vis_state`` 0), among the ``invoices`` of a
    search (FreshBooks' filter is trusted for nothing); ``None`` when there is none."""
    for entity in invoices if isinstance(invoices, list) else []:
        if (
            isinstance(entity, dict)
            and str(entity.get("invoice_number", "")) == invoice_number
            and entity.get("vis_state", 0) == 0
            and entity.get("invoiceid", entity.get("id")) is not None
        ):
            return entity
    return None


# --------------------------------------------------------------------------- clients
def client_to_freshbooks(name: str, email: str | None, vat_number: str | None) -> dict[str, Any]:
    """Body of ``POST .../users/clients``: ``{"client": {"organization", ["email"], ["vat_number"]}}``."""
    client: dict[str, Any] = {"organization": name}
    if email:
        client["email"] = email
    if vat_number:
        client["vat_number"] = vat_number
    return {"client": client}


def client_id_where(clients: Any, column: str, value: str) -> str | None:
    """``userid`` (or ``id``) of the first client whose ``column`` equals ``value`` (case-insensitive, trimmed)."""
    for client in clients if isinstance(clients, list) else []:
        if isinstance(client, dict) and str(client.get(column) or "").strip().casefold() == value.strip().casefold():
            return str(client.get("userid", client.get("id")))
    return None


# --------------------------------------------------------------------------- FreshBooks errors
def errors_of(body: Any) -> list[dict[str, Any]]:
    """The ``response.errors`` of a FreshBooks error body: ``[{"errno", "field", "message", "object", "value"}]``."""
    if isinstance(body, dict):
        response = body.get("response")
        if isinstance(response, dict) and isinstance(response.get("errors"), list):
            return [e for e in response["errors"] if isinstance(e, dict)]
    return []


def describe_errors(body: Any) -> str | None:
    """``errno <n> <field>: <message>; ...`` of a FreshBooks error body, else its OAuth ``error_description`` /
    ``message`` / ``error``; ``None`` when it has none of these."""
    errors = errors_of(body)
    if errors:
        return "; ".join(f"errno {e.get('errno')} {e.get('field') or '-'}: {e.get('message')}" for e in errors)
    if isinstance(body, dict) and (body.get("error") or body.get("message")):
        return str(body.get("error_description") or body.get("message") or body.get("error"))
    return None


def is_duplicate_number(errors: list[dict[str, Any]]) -> bool:
    """True when the errors (:func:`errors_of`) say the ``invoice_number`` is already used."""
    for e in errors:
        message = str(e.get("message", "")).lower()
        if e.get("field") == "invoice_number" and any(
            w in message for w in ("exist", "unique", "already", "taken", "used")
        ):
            return True
    return False
