"""The economic report (``broker report economics``): what the priced work earned and cost, per client,
contract, site, technician or month, how much of the contracts' allowances was used, and what each
contract's monthly fee should be. Pure: no I/O, no clock; the command reads ``billing.invoices``
(:mod:`broker.economics_source`) and renders the result (:mod:`broker.economics_render`).

Two steps:

1. :func:`select_documents` turns the records of ``billing.invoices``, in topic order, into the
   documents the report counts: one per order (``order_key`` = ``tenant:doc:id``), its latest
   revision. The same invoice version recorded again (a redelivery, a replay, a correction with
   other content) counts once, with its last content (``corrections: amend``, what the billing
   system then holds) or its first (``corrections: reject``: later content is dead-lettered); a
   record the deliver stage marked as a correction (``corrects`` set, key ``…:c<n>``) stands for
   the version it corrects. A document cancelled at or after its latest revision
   (:class:`~connectors.sdk.invoice.DocumentChange` ``cancel``) is billed nothing and is left out;
   a reopen changes nothing (the billed invoice stays until a later revision replaces it).
2. :func:`economic_report` adds them up for one tenant, a date range and a grouping.

**Which date counts.** A document belongs to the range when its date is in ``[date_from, date_to]``
(both inclusive): an invoice's ``issue_date`` (the event time's local date in the tenant's time
zone), for a not-billable record the same local date of its ``event_time``. The allowance month of
a document (``allowance.month``) is the month of that same date.

**Figures** (:class:`Row`), all :class:`~decimal.Decimal` money in the tenant's ``currency``:

* hours from the labour and travel lines (``worked_minutes``, ``billed_minutes``): *worked* = the
  time worked (after breaks, before increments and minimums); *billed* = the billed minutes of
  lines not covered by a contract; *covered* = the billed minutes of lines covered by a contract
  (``covered_by``). Time that is cost only (unbilled travel, work inside a quote) is not on any
  line: it is in the cost but not in the hours. Hours are minutes / 60 rounded half-up to 2 decimals
  (the exact minutes are kept too);
* ``revenue``: the invoices' ``net_total`` (net of tax; not-billable records add 0), so the total
  equals the sum of the invoices in the range to the cent; ``fee_revenue``: the contracts' monthly
  fees (configuration ``contracts[].monthly_fee``; per-document invoices do not bill them) for the
  days of the range the contract is valid, **prorated by day per calendar month**: ``round(fee ×
  days / days in the month)`` half-up to the minor unit per contract and month (a whole month is the
  whole fee). A contract's month already billed on an invoice of the range (a periodic invoice's
  subscription line: ``kind`` ``subscription``, ``source`` ``contract:<id>:<YYYY-MM>``) is in that
  invoice's revenue and is not added again as a fee;
* ``cost``: the documents' ``cost_total`` (cost-only items included);
* ``margin = revenue + fee_revenue − cost``; ``margin_percent = margin / (revenue + fee_revenue) ×
  100`` rounded half-up to 2 decimals (``None`` when there is no revenue);
* ``visits``: distinct (document, ``visit_id``) of its labour, travel and call-out lines;
  ``assets``: distinct ``asset_ids`` of its documents.

What a grouping cannot attribute goes to a row with key :data:`UNATTRIBUTED` (``*``), so the rows
always add up to the total: by technician, the document amounts not on a technician's lines
(parts, expenses, call-outs, cost-only items) and every contract fee; by site, the fee of a contract
for several or all sites. A document without a contract (by contract) or without a known site (by
site, records from before not-billable records named it) is in the row with key ``""``. Visits and
assets are distinct per row: by technician, a visit of two technicians counts in both rows and once
in the total.
"""

from __future__ import annotations

import calendar
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass, field
from datetime import date, timedelta
from decimal import ROUND_CEILING, ROUND_HALF_UP, Decimal
from typing import Literal

from broker.config import Client, Contract, Tenant
from connectors.sdk.invoice import DocumentChange, Invoice, InvoiceLine, NotBillable
from connectors.sdk.money import quantum, round_money

__all__ = [
    "GROUPINGS",
    "UNATTRIBUTED",
    "AllowanceRow",
    "ContractRow",
    "Document",
    "EconomicReport",
    "MonthlyClient",
    "Row",
    "Selection",
    "document_date",
    "economic_report",
    "hourly_list_rate",
    "months_between",
    "select_documents",
]

#: The groupings of :func:`economic_report` (``--by``).
GROUPINGS = ("client", "contract", "site", "technician", "month")
Grouping = Literal["client", "contract", "site", "technician", "month"]
#: Key of the row holding what a grouping cannot attribute to one of its groups.
UNATTRIBUTED = "*"
#: A document the report counts.
Document = Invoice | NotBillable
#: A record of ``billing.invoices``.
Priced = Invoice | NotBillable | DocumentChange

_ZERO = Decimal(0)
_HUNDRED = Decimal(100)
_CENT = Decimal("0.01")
_SIXTY = Decimal(60)
_HOUR_KINDS = ("labour", "travel")
_VISIT_KINDS = ("labour", "travel", "call_out")


# --------------------------------------------------------------------------- 1. which documents count
@dataclass(frozen=True)
class Selection:
    """What :func:`select_documents` kept: ``documents`` (one per order, its latest revision, in the
    order their orders first appeared) and counts of the rest: ``read`` records given, of
    ``other_tenants``, ``replaced`` (earlier revisions, and other records of a kept invoice version),
    ``cancelled`` (order keys whose latest revision was cancelled), ``changes`` (reopen and cancel
    records)."""

    documents: list[Document]
    read: int = 0
    other_tenants: int = 0
    replaced: int = 0
    cancelled: list[str] = field(default_factory=list)
    changes: int = 0


def revision_of(document: Document) -> int:
    """The revision of ``document``: an invoice's ``revision``; a not-billable record's from its
    ``invoice_key`` (``<order key>:r<revision>``). Raises ``ValueError`` naming a key of another shape."""
    if isinstance(document, Invoice):
        return document.revision
    prefix = document.order_key + ":r"
    tail = document.invoice_key[len(prefix) :] if document.invoice_key.startswith(prefix) else ""
    if not tail.isdigit():
        raise ValueError(f"invoice key {document.invoice_key!r} is not {document.order_key}:r<revision>")
    return int(tail)


def select_documents(
    records: Iterable[Priced], tenant_id: str, *, corrections: Literal["amend", "reject"] = "amend"
) -> Selection:
    """The documents of ``tenant_id`` the report counts, from ``records`` in topic order (each
    partition in offset order: all records of one order are on one partition). ``corrections`` is the
    tenant's setting: which of several records of one invoice version counts (module docstring).
    Raises ``ValueError`` for a not-billable record whose invoice key names no revision."""
    kept: dict[str, tuple[int, Document]] = {}
    cancelled_upto: dict[str, int] = {}
    read = other = replaced = changes = 0
    for record in records:
        read += 1
        if record.tenant != tenant_id:
            other += 1
            continue
        if isinstance(record, DocumentChange):
            changes += 1
            if record.action == "cancel":
                cancelled_upto[record.order_key] = max(record.revision, cancelled_upto.get(record.order_key, 0))
            continue
        revision = revision_of(record)
        held = kept.get(record.order_key)
        if held is None:
            kept[record.order_key] = (revision, record)
            continue
        replaced += 1
        if revision > held[0] or (revision == held[0] and corrections == "amend"):
            kept[record.order_key] = (revision, record)
    documents: list[Document] = []
    cancelled: list[str] = []
    for order_key, (revision, document) in kept.items():
        if revision <= cancelled_upto.get(order_key, 0):
            cancelled.append(order_key)
        else:
            documents.append(document)
    return Selection(documents, read, other, replaced, cancelled, changes)


# --------------------------------------------------------------------------- 2. the report
@dataclass(frozen=True)
class Row:
    """One row of the report: a group (``key``, shown as ``label``) or the total.

    Minutes are exact (``worked_minutes`` a Decimal of 2 decimals, ``billed_minutes`` and
    ``covered_minutes`` whole minutes); hours are minutes / 60 rounded half-up to 2 decimals. Money in
    the tenant's currency: ``revenue`` (invoices, net of tax), ``fee_revenue`` (contract fees),
    ``cost``, ``margin`` = revenue + fee_revenue − cost; ``margin_percent`` = margin / (revenue +
    fee_revenue) × 100 half-up to 2 decimals, ``None`` without revenue. ``documents``: documents
    counted (invoices and not-billable records), ``invoices``: of which invoices; ``visits``: distinct
    (document, visit); ``assets``: distinct asset ids."""

    key: str
    label: str
    documents: int
    invoices: int
    worked_minutes: Decimal
    billed_minutes: int
    covered_minutes: int
    revenue: Decimal
    fee_revenue: Decimal
    cost: Decimal
    visits: int
    assets: int

    @property
    def worked_hours(self) -> Decimal:
        """``worked_minutes`` / 60, half-up to 2 decimals."""
        return hours(self.worked_minutes)

    @property
    def billed_hours(self) -> Decimal:
        """``billed_minutes`` / 60, half-up to 2 decimals."""
        return hours(self.billed_minutes)

    @property
    def covered_hours(self) -> Decimal:
        """``covered_minutes`` / 60, half-up to 2 decimals."""
        return hours(self.covered_minutes)

    @property
    def margin(self) -> Decimal:
        """``revenue + fee_revenue − cost``."""
        return self.revenue + self.fee_revenue - self.cost

    @property
    def margin_percent(self) -> Decimal | None:
        """``margin / (revenue + fee_revenue) × 100``, half-up to 2 decimals; ``None`` without revenue."""
        return percent(self.margin, self.revenue + self.fee_revenue)


@dataclass(frozen=True)
class AllowanceRow:
    """A contract's corrective-hours allowance in one calendar month (``YYYY-MM``): ``sold_minutes``
    (``covers.corrective_hours_per_month`` × 60, the whole month's even when the range cuts it),
    ``used_minutes`` (Σ ``allowance.consumed_minutes`` of the month's documents in the range),
    ``beyond_minutes`` (corrective minutes billed because the allowance was used up: Σ ``needed −
    consumed``), ``used_percent`` (used / sold × 100 half-up to 2 decimals, ``None`` when nothing
    is sold) and ``documents`` (documents that consumed or needed some of it)."""

    client_id: str
    contract_id: str
    month: str
    sold_minutes: int
    used_minutes: int
    beyond_minutes: int
    documents: int

    @property
    def used_percent(self) -> Decimal | None:
        """``used / sold × 100`` half-up to 2 decimals (``None`` when nothing is sold)."""
        return percent(Decimal(self.used_minutes), Decimal(self.sold_minutes))


@dataclass(frozen=True)
class ContractRow:
    """A contract over the range, and the recommendation for its fee.

    * ``months``: the months of the range the contract is valid, by day (``days / days in the
      month`` summed per calendar month, exact); ``monthly_fee`` (configuration, ``None``: no fee),
      ``fee_revenue`` (prorated, :func:`economic_report`);
    * ``revenue``: net of the invoices the contract applied to (its "other revenue"; subscription
      lines, the contract's fee billed on a periodic invoice, count in ``fee_revenue`` instead),
      ``cost`` their cost (covered work included), ``covered_minutes`` the billed minutes of lines it
      covered;
    * ``effective_hourly_rate`` = fee_revenue / covered hours, half-up to the minor unit (``None``
      without fee or covered time), against ``list_hourly_rate`` (the rate card's for the client,
      :func:`hourly_list_rate`, named by ``list_rate_source``): ``effective_vs_list_percent`` =
      effective / list × 100 half-up to 2 decimals;
    * ``recommended_monthly_fee``: the fee per month that gives a margin of
      ``target_margin_percent`` on the contract's revenue (fee + invoices) given its cost: ``(cost /
      (1 − target / 100) − revenue) / months``, rounded **up** to the minor unit (so it reaches the
      target), at least 0 (0: the invoices alone reach it); ``None`` when the contract is valid no
      day of the range.
    """

    client_id: str
    contract_id: str
    months: Decimal
    monthly_fee: Decimal | None
    fee_revenue: Decimal
    revenue: Decimal
    cost: Decimal
    covered_minutes: int
    documents: int
    list_hourly_rate: Decimal
    list_rate_source: str
    target_margin_percent: Decimal
    effective_hourly_rate: Decimal | None
    recommended_monthly_fee: Decimal | None

    @property
    def covered_hours(self) -> Decimal:
        """``covered_minutes`` / 60, half-up to 2 decimals."""
        return hours(self.covered_minutes)

    @property
    def margin(self) -> Decimal:
        """``fee_revenue + revenue − cost``."""
        return self.fee_revenue + self.revenue - self.cost

    @property
    def margin_percent(self) -> Decimal | None:
        """``margin / (fee_revenue + revenue) × 100`` half-up to 2 decimals (``None`` without revenue)."""
        return percent(self.margin, self.fee_revenue + self.revenue)

    @property
    def effective_vs_list_percent(self) -> Decimal | None:
        """``effective_hourly_rate / list_hourly_rate × 100`` half-up to 2 decimals."""
        if self.effective_hourly_rate is None:
            return None
        return percent(self.effective_hourly_rate, self.list_hourly_rate)


@dataclass(frozen=True)
class MonthlyClient:
    """One client's ``revenue`` (invoices), ``fee_revenue`` and ``cost`` in one month (``YYYY-MM``):
    the data of the HTML report's revenue-against-cost chart."""

    client_id: str
    month: str
    revenue: Decimal
    fee_revenue: Decimal
    cost: Decimal


@dataclass(frozen=True)
class EconomicReport:
    """What :func:`economic_report` returns: the ``rows`` of the grouping ``by`` (sorted by key,
    :data:`UNATTRIBUTED` last) and their ``total``, the ``allowances`` (by client, contract, month),
    the ``contracts`` (by client, contract) and ``monthly`` revenue and cost per client, for
    ``tenant`` from ``date_from`` to ``date_to`` (inclusive) in ``currency``. ``out_of_range``:
    documents given whose date is outside the range."""

    tenant: str
    currency: str
    date_from: date
    date_to: date
    by: str
    target_margin_percent: Decimal
    rows: list[Row]
    total: Row
    allowances: list[AllowanceRow]
    contracts: list[ContractRow]
    monthly: list[MonthlyClient]
    out_of_range: int


def hours(minutes: Decimal | int) -> Decimal:
    """``minutes / 60`` rounded half-up to 2 decimals."""
    return (Decimal(minutes) / _SIXTY).quantize(_CENT, rounding=ROUND_HALF_UP)


def percent(part: Decimal, whole: Decimal) -> Decimal | None:
    """``part / whole × 100`` rounded half-up to 2 decimals; ``None`` when ``whole`` is 0."""
    if whole == 0:
        return None
    return (part * _HUNDRED / whole).quantize(_CENT, rounding=ROUND_HALF_UP)


def document_date(document: Document, tenant: Tenant) -> date:
    """The date that places ``document`` in a range: an invoice's ``issue_date``; a not-billable
    record's ``event_time`` as a local date in the tenant's time zone (the rule of ``issue_date``)."""
    if isinstance(document, Invoice):
        return document.issue_date
    return document.event_time.astimezone(tenant.zone).date()


def months_between(date_from: date, date_to: date) -> list[str]:
    """The calendar months (``YYYY-MM``) from the month of ``date_from`` to that of ``date_to``."""
    out = []
    year, month = date_from.year, date_from.month
    while (year, month) <= (date_to.year, date_to.month):
        out.append(f"{year:04d}-{month:02d}")
        year, month = (year + 1, 1) if month == 12 else (year, month + 1)
    return out


def hourly_list_rate(tenant: Tenant, client_id: str) -> tuple[Decimal, str]:
    """The rate card's hourly rate for ``client_id`` and where it comes from, by the pricing rules'
    precedence for the rate card's ``default_skill`` (time bands and technicians' own rates aside):
    the client's ``skill_rates`` for that skill (``client_skill:<skill>``), else its ``hourly_rate``
    (``client``), else the skill's ``hourly_rate`` (``skill:<skill>``)."""
    card = tenant.rate_card
    skill = card.default_skill
    client: Client | None = tenant.clients.get(client_id)
    if client is not None and skill in client.skill_rates:
        return client.skill_rates[skill], f"client_skill:{skill}"
    if client is not None and client.hourly_rate is not None:
        return client.hourly_rate, "client"
    return card.skills[skill].hourly_rate, f"skill:{skill}"


@dataclass
class _Acc:
    """Sums of one group while adding up."""

    documents: set[str] = field(default_factory=set)
    invoices: set[str] = field(default_factory=set)
    worked: Decimal = _ZERO
    billed: int = 0
    covered: int = 0
    revenue: Decimal = _ZERO
    fee: Decimal = _ZERO
    cost: Decimal = _ZERO
    visits: set[tuple[str, str]] = field(default_factory=set)
    assets: set[str] = field(default_factory=set)

    def count(self, document: Document) -> None:
        self.documents.add(document.order_key)
        if isinstance(document, Invoice):
            self.invoices.add(document.order_key)
        self.assets.update(document.asset_ids)

    def add_hours(self, line_minutes: Iterable[tuple[Decimal, int, bool]]) -> None:
        for worked, billed, covered in line_minutes:
            self.worked += worked
            if covered:
                self.covered += billed
            else:
                self.billed += billed

    def row(self, key: str, label: str, currency: str) -> Row:
        """The sums as a row, money at the currency's minor unit (sums of rounded amounts: exact)."""
        return Row(
            key=key,
            label=label,
            documents=len(self.documents),
            invoices=len(self.invoices),
            worked_minutes=self.worked.quantize(_CENT),
            billed_minutes=self.billed,
            covered_minutes=self.covered,
            revenue=round_money(self.revenue, currency),
            fee_revenue=round_money(self.fee, currency),
            cost=round_money(self.cost, currency),
            visits=len(self.visits),
            assets=len(self.assets),
        )


@dataclass(frozen=True)
class _FeeSlice:
    """A contract's fee for the days of one month in the range."""

    client_id: str
    contract: Contract
    month: str
    fraction: Decimal
    amount: Decimal


def _fee_slices(tenant: Tenant, date_from: date, date_to: date) -> Iterator[_FeeSlice]:
    """Every contract's valid days per calendar month of the range, with the prorated fee
    (``round(fee × days / days in the month)``, 0 without a fee)."""
    for client_id, client in tenant.clients.items():
        for contract in client.contracts:
            start = max(date_from, contract.valid_from)
            end = date_to if contract.valid_to is None else min(date_to, contract.valid_to)
            day = start
            while day <= end:
                length = calendar.monthrange(day.year, day.month)[1]
                month_end = day.replace(day=length)
                last = min(end, month_end)
                days = (last - day).days + 1
                fraction = Decimal(days) / Decimal(length)
                fee = contract.monthly_fee
                amount = _ZERO if fee is None else round_money(fee * days / length, tenant.currency)
                yield _FeeSlice(client_id, contract, f"{day.year:04d}-{day.month:02d}", fraction, amount)
                day = last + timedelta(days=1)


def _hour_lines(document: Document) -> Iterator[tuple[Decimal, int, bool]]:
    """``(worked minutes, billed minutes, covered?)`` of the labour and travel lines that carry minutes."""
    for line in document.lines:
        if line.kind in _HOUR_KINDS and line.billed_minutes is not None:
            yield line.worked_minutes or _ZERO, line.billed_minutes, line.covered_by is not None


def _visits(document: Document) -> set[tuple[str, str]]:
    return {
        (document.order_key, line.visit_id) for line in document.lines if line.kind in _VISIT_KINDS and line.visit_id
    }


def _revenue(document: Document) -> Decimal:
    return document.net_total if isinstance(document, Invoice) else _ZERO


def _site_of(document: Document) -> str:
    return document.site_id or ""


def economic_report(
    documents: Iterable[Document],
    tenant_id: str,
    tenant: Tenant,
    date_from: date,
    date_to: date,
    by: str = "client",
) -> EconomicReport:
    """The economic report of ``tenant_id`` (configuration ``tenant``) from ``date_from`` to ``date_to``
    (both inclusive, :func:`document_date`) grouped ``by`` one of :data:`GROUPINGS`, from
    ``documents`` (as :func:`select_documents` keeps them: one per order; documents outside the range
    are counted in ``out_of_range`` and left out). Figures and rounding: module docstring and
    :class:`Row`, :class:`AllowanceRow`, :class:`ContractRow`.

    Raises ``ValueError`` when ``date_from`` is after ``date_to``, ``by`` is not a grouping, a
    document is of another tenant, or an invoice is in another currency than the tenant's (naming
    the invoice key).
    """
    if date_from > date_to:
        raise ValueError(f"the range starts ({date_from}) after it ends ({date_to})")
    if by not in GROUPINGS:
        raise ValueError(f"cannot group by {by!r}: one of {', '.join(GROUPINGS)}")
    currency = tenant.currency
    in_range: list[Document] = []
    out_of_range = 0
    for document in documents:
        if document.tenant != tenant_id:
            raise ValueError(f"{document.invoice_key} is of tenant {document.tenant!r}, not {tenant_id!r}")
        if isinstance(document, Invoice) and document.currency != currency:
            raise ValueError(
                f"{document.invoice_key} is in {document.currency}, the tenant {tenant_id!r} bills in {currency}: "
                "the report adds one currency"
            )
        if date_from <= document_date(document, tenant) <= date_to:
            in_range.append(document)
        else:
            out_of_range += 1
    # a contract's month already billed by a subscription line in the range is revenue, not a configured fee
    invoiced = _invoiced_fees(in_range)
    all_slices = list(_fee_slices(tenant, date_from, date_to))
    slices = [s for s in all_slices if (s.client_id, s.contract.id, s.month) not in invoiced]

    groups: dict[str, _Acc] = {}
    labels: dict[str, str] = {}

    def acc(key: str, label: str) -> _Acc:
        if key not in groups:
            groups[key] = _Acc()
            labels[key] = label
        return groups[key]

    total = _Acc()
    for document in in_range:
        total.count(document)
        total.add_hours(_hour_lines(document))
        total.revenue += _revenue(document)
        total.cost += document.cost_total
        total.visits |= _visits(document)
        if by == "technician":
            _add_by_technician(document, tenant, acc)
            continue
        key, label = _group_of(document, by, tenant)
        group = acc(key, label)
        group.count(document)
        group.add_hours(_hour_lines(document))
        group.revenue += _revenue(document)
        group.cost += document.cost_total
        group.visits |= _visits(document)
    for piece in slices:
        if not piece.amount:
            continue
        total.fee += piece.amount
        key, label = _fee_group(piece, by, tenant)
        acc(key, label).fee += piece.amount

    order = sorted(groups, key=lambda key: (key == UNATTRIBUTED, key))
    rows = [groups[key].row(key, labels[key], currency) for key in order]
    return EconomicReport(
        tenant=tenant_id,
        currency=currency,
        date_from=date_from,
        date_to=date_to,
        by=by,
        target_margin_percent=tenant.economics.target_margin_percent,
        rows=rows,
        total=total.row("", "Total", currency),
        allowances=_allowances(in_range, tenant, date_from, date_to),
        contracts=_contracts(in_range, all_slices, slices, invoiced, tenant),
        monthly=_monthly(in_range, slices, tenant),
        out_of_range=out_of_range,
    )


def _client_label(tenant: Tenant, client_id: str) -> str:
    client = tenant.clients.get(client_id)
    return client.name if client is not None else client_id


def _group_of(document: Document, by: str, tenant: Tenant) -> tuple[str, str]:
    """``(key, label)`` of the group of ``document`` (every grouping but technician)."""
    if by == "client":
        return document.client_id, _client_label(tenant, document.client_id)
    if by == "contract":
        contract = document.contract_id
        return (contract, contract) if contract else ("", "(no contract)")
    if by == "site":
        site = _site_of(document)
        return (site, site) if site else ("", "(site not recorded)")
    month = document_date(document, tenant).strftime("%Y-%m")
    return month, month


def _fee_group(piece: _FeeSlice, by: str, tenant: Tenant) -> tuple[str, str]:
    """``(key, label)`` of the group a contract fee slice goes to."""
    if by == "client":
        return piece.client_id, _client_label(tenant, piece.client_id)
    if by == "contract":
        return piece.contract.id, piece.contract.id
    if by == "month":
        return piece.month, piece.month
    if by == "site" and len(piece.contract.sites) == 1:
        return piece.contract.sites[0], piece.contract.sites[0]
    what = "several or all sites" if by == "site" else "a technician"
    return UNATTRIBUTED, f"(not attributable to {what})"


def _technician_label(tenant: Tenant, technician_id: str) -> str:
    technician = tenant.rate_card.technicians.get(technician_id)
    return f"{technician_id} {technician.name}" if technician is not None and technician.name else technician_id


def _add_by_technician(document: Document, tenant: Tenant, acc: Callable[[str, str], _Acc]) -> None:
    """Adds ``document`` line by line: each technician's labour and travel lines to their row, the
    rest of its revenue and cost to the :data:`UNATTRIBUTED` row."""
    revenue_left, cost_left = _revenue(document), document.cost_total
    for line in document.lines:
        if line.technician_id is None:
            continue
        group = acc(line.technician_id, _technician_label(tenant, line.technician_id))
        group.count(document)
        if line.kind in _HOUR_KINDS and line.billed_minutes is not None:
            group.add_hours([(line.worked_minutes or _ZERO, line.billed_minutes, line.covered_by is not None)])
        group.revenue += line.net
        group.cost += line.cost
        revenue_left -= line.net
        cost_left -= line.cost
        if line.kind in _VISIT_KINDS and line.visit_id:
            group.visits.add((document.order_key, line.visit_id))
    untagged = [
        (line.worked_minutes or _ZERO, line.billed_minutes, line.covered_by is not None)
        for line in document.lines
        if line.technician_id is None and line.kind in _HOUR_KINDS and line.billed_minutes is not None
    ]
    if revenue_left or cost_left or untagged:
        rest = acc(UNATTRIBUTED, "(not attributable to a technician)")
        rest.documents.add(document.order_key)
        if isinstance(document, Invoice):
            rest.invoices.add(document.order_key)
        rest.add_hours(untagged)
        rest.revenue += revenue_left
        rest.cost += cost_left


def _allowances(documents: list[Document], tenant: Tenant, date_from: date, date_to: date) -> list[AllowanceRow]:
    """One row per contract with a corrective allowance and month of the range it is valid in, and
    per (contract, month) some document consumed even if the configuration no longer sells it."""
    sold: dict[tuple[str, str, str], int] = {}
    months = months_between(date_from, date_to)
    for client_id, client in tenant.clients.items():
        for contract in client.contracts:
            if contract.covers.corrective_minutes <= 0:
                continue
            for month in months:
                first = date.fromisoformat(month + "-01")
                last = first.replace(day=calendar.monthrange(first.year, first.month)[1])
                valid_to = contract.valid_to or date.max
                if contract.valid_from <= last and valid_to >= first:
                    sold[(client_id, contract.id, month)] = contract.covers.corrective_minutes
    used: dict[tuple[str, str, str], list[int]] = {}
    for document in documents:
        use = document.allowance
        if use is None:
            continue
        key = (document.client_id, use.contract_id, use.month)
        sums = used.setdefault(key, [0, 0, 0])
        sums[0] += use.consumed_minutes
        sums[1] += max(0, use.needed_minutes - use.consumed_minutes)
        sums[2] += 1
        sold.setdefault(key, use.allowance_minutes)
    return [
        AllowanceRow(client_id, contract_id, month, minutes, *used.get((client_id, contract_id, month), [0, 0, 0]))
        for (client_id, contract_id, month), minutes in sorted(sold.items())
    ]


def _subscription(line: InvoiceLine) -> tuple[str, str] | None:
    """``(contract id, YYYY-MM)`` of a subscription line (a contract's monthly fee on a periodic invoice,
    source ``contract:<id>:<YYYY-MM>``), else ``None``."""
    if str(line.kind) != "subscription":
        return None
    kind, _, rest = line.source.partition(":")
    contract_id, _, month = rest.rpartition(":")
    return (contract_id, month) if kind == "contract" and contract_id and len(month) == 7 else None


def _invoiced_fees(documents: list[Document]) -> dict[tuple[str, str, str], Decimal]:
    """``{(client, contract, YYYY-MM): net}`` of the subscription lines of ``documents``: contract fees
    already on an invoice (periodic invoicing), which the configured fees must not count again."""
    out: dict[tuple[str, str, str], Decimal] = {}
    for document in documents:
        for line in document.lines:
            found = _subscription(line)
            if found is not None:
                key = (document.client_id, *found)
                out[key] = out.get(key, _ZERO) + line.net
    return out


def _contracts(
    documents: list[Document],
    all_slices: list[_FeeSlice],
    slices: list[_FeeSlice],
    invoiced: dict[tuple[str, str, str], Decimal],
    tenant: Tenant,
) -> list[ContractRow]:
    """One row per contract valid some day of the range, or that some document of the range names.
    ``all_slices``: every contract's days per month of the range (its months); ``slices``: those whose fee
    is not on an invoice of the range; ``invoiced``: the fees that are (:func:`_invoiced_fees`), which count
    as the contract's fee revenue, not as its other revenue."""
    target = tenant.economics.target_margin_percent
    currency = tenant.currency
    months: dict[tuple[str, str], Decimal] = {}
    fees: dict[tuple[str, str], Decimal] = {}
    configured: dict[tuple[str, str], Contract] = {}
    for piece in all_slices:
        key = (piece.client_id, piece.contract.id)
        configured[key] = piece.contract
        months[key] = months.get(key, _ZERO) + piece.fraction
    for piece in slices:
        key = (piece.client_id, piece.contract.id)
        fees[key] = fees.get(key, _ZERO) + piece.amount
    for (client_id, contract_id, _month), amount in invoiced.items():
        fees[(client_id, contract_id)] = fees.get((client_id, contract_id), _ZERO) + amount
    revenue: dict[tuple[str, str], Decimal] = {}
    cost: dict[tuple[str, str], Decimal] = {}
    covered: dict[tuple[str, str], int] = {}
    count: dict[tuple[str, str], int] = {}
    for document in documents:
        for line in document.lines:
            if line.covered_by and line.kind in _HOUR_KINDS and line.billed_minutes is not None:
                key = (document.client_id, line.covered_by)
                covered[key] = covered.get(key, 0) + line.billed_minutes
        if document.contract_id is None:
            continue
        key = (document.client_id, document.contract_id)
        fee_lines = sum((line.net for line in document.lines if _subscription(line) is not None), _ZERO)
        revenue[key] = revenue.get(key, _ZERO) + _revenue(document) - fee_lines
        cost[key] = cost.get(key, _ZERO) + document.cost_total
        count[key] = count.get(key, 0) + 1
    out = []
    for key in sorted(set(months) | set(count) | set(covered) | set(fees)):
        client_id, contract_id = key
        contract = configured.get(key) or _configured_contract(tenant, client_id, contract_id)
        fee = contract.monthly_fee if contract is not None else None
        span = months.get(key, _ZERO)
        fee_revenue = fees.get(key, _ZERO)
        other = revenue.get(key, _ZERO)
        spent = cost.get(key, _ZERO)
        minutes = covered.get(key, 0)
        list_rate, source = hourly_list_rate(tenant, client_id)
        effective = None
        if fee is not None and minutes:
            effective = round_money(fee_revenue * _SIXTY / minutes, currency)
        recommended = None
        if span:
            needed = spent * _HUNDRED / (_HUNDRED - target) - other
            per_month = (needed / span).quantize(quantum(currency), rounding=ROUND_CEILING)
            recommended = max(_ZERO.quantize(quantum(currency)), per_month)
        out.append(
            ContractRow(
                client_id=client_id,
                contract_id=contract_id,
                months=span,
                monthly_fee=fee,
                fee_revenue=round_money(fee_revenue, currency),
                revenue=round_money(other, currency),
                cost=round_money(spent, currency),
                covered_minutes=minutes,
                documents=count.get(key, 0),
                list_hourly_rate=list_rate,
                list_rate_source=source,
                target_margin_percent=target,
                effective_hourly_rate=effective,
                recommended_monthly_fee=recommended,
            )
        )
    return out


def _configured_contract(tenant: Tenant, client_id: str, contract_id: str) -> Contract | None:
    client = tenant.clients.get(client_id)
    return next((c for c in client.contracts if c.id == contract_id), None) if client is not None else None


def _monthly(documents: list[Document], slices: list[_FeeSlice], tenant: Tenant) -> list[MonthlyClient]:
    """Revenue, fee revenue and cost per client and month (every month of a client that has any)."""
    sums: dict[tuple[str, str], list[Decimal]] = {}
    for document in documents:
        key = (document.client_id, document_date(document, tenant).strftime("%Y-%m"))
        values = sums.setdefault(key, [_ZERO, _ZERO, _ZERO])
        values[0] += _revenue(document)
        values[2] += document.cost_total
    for piece in slices:
        if piece.amount:
            sums.setdefault((piece.client_id, piece.month), [_ZERO, _ZERO, _ZERO])[1] += piece.amount
    return [
        MonthlyClient(client, month, *(round_money(v, tenant.currency) for v in values))
        for (client, month), values in sorted(sums.items())
    ]
