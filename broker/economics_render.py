"""The economic report's formats: ``table`` (rich), ``csv``, ``json`` and ``html``.

* ``json``: everything (:func:`to_json`); money, hours and percentages as decimal strings
  (``"1234.50"``), minutes as exact decimal strings or integers, ``null`` for a percentage without base.
* ``csv``: the grouped rows and the total (:func:`to_csv`, one header line, a ``row`` column saying
  ``group`` or ``total``); the allowance and contract sections are in the other formats.
* ``table``: the three sections as rich tables (:func:`print_table`).
* ``html``: one self-contained page (:func:`to_html`: no script, no stylesheet or font to fetch, no
  URL) with the tables and two charts drawn by matplotlib as inline SVG (text drawn as paths, ids
  prefixed per chart): monthly revenue (invoices and contract fees) against cost per client, and the
  corrective allowance used against the allowance sold per contract and month. matplotlib is the
  optional extra ``report``; without it :func:`to_html` raises :class:`PlottingUnavailableError`. The
  charts convert amounts to floats for drawing only: every figure printed comes from the decimals.
"""

from __future__ import annotations

import csv
import html
import io
import json
import re
from collections.abc import Mapping
from decimal import Decimal
from typing import TYPE_CHECKING, Any

from rich.console import Console
from rich.table import Table

from broker.economics import AllowanceRow, ContractRow, EconomicReport, Row, hours, months_between

if TYPE_CHECKING:
    from matplotlib.figure import Figure

__all__ = [
    "INSTALL_HINT",
    "PlottingUnavailableError",
    "print_table",
    "require_plotting",
    "to_csv",
    "to_html",
    "to_json",
]

INSTALL_HINT = "pip install 'maintenance-billing-broker[report]'"

#: What the ``date`` of a document is, as the outputs state it.
DATE_BASIS = "issue_date (the event's local date in the tenant's time zone)"
FEE_BASIS = "monthly_fee prorated by day per calendar month, rounded half-up per contract and month"


class PlottingUnavailableError(RuntimeError):
    """matplotlib is not installed: the message says how to install it."""


def require_plotting() -> None:
    """Raise :class:`PlottingUnavailableError` (naming :data:`INSTALL_HINT`) unless matplotlib can be imported."""
    try:
        import matplotlib as mpl  # noqa: F401
    except ImportError:
        raise PlottingUnavailableError(
            f"the html format draws its charts with matplotlib, which is not installed: {INSTALL_HINT}"
        ) from None


# --------------------------------------------------------------------------- shared
def _text(value: Decimal | None) -> str | None:
    return None if value is None else format(value, "f")


def _group_title(by: str) -> str:
    return {"client": "Client", "contract": "Contract", "site": "Site", "technician": "Technician", "month": "Month"}[
        by
    ]


def row_dict(row: Row) -> dict[str, Any]:
    """A :class:`~broker.economics.Row` as JSON-ready values (decimal strings)."""
    return {
        "key": row.key,
        "label": row.label,
        "documents": row.documents,
        "invoices": row.invoices,
        "worked_hours": _text(row.worked_hours),
        "billed_hours": _text(row.billed_hours),
        "covered_hours": _text(row.covered_hours),
        "worked_minutes": _text(row.worked_minutes),
        "billed_minutes": row.billed_minutes,
        "covered_minutes": row.covered_minutes,
        "revenue": _text(row.revenue),
        "fee_revenue": _text(row.fee_revenue),
        "cost": _text(row.cost),
        "margin": _text(row.margin),
        "margin_percent": _text(row.margin_percent),
        "visits": row.visits,
        "assets": row.assets,
    }


def allowance_dict(row: AllowanceRow) -> dict[str, Any]:
    """An :class:`~broker.economics.AllowanceRow` as JSON-ready values."""
    return {
        "client_id": row.client_id,
        "contract_id": row.contract_id,
        "month": row.month,
        "sold_hours": _text(hours(row.sold_minutes)),
        "used_hours": _text(hours(row.used_minutes)),
        "beyond_hours": _text(hours(row.beyond_minutes)),
        "sold_minutes": row.sold_minutes,
        "used_minutes": row.used_minutes,
        "beyond_minutes": row.beyond_minutes,
        "used_percent": _text(row.used_percent),
        "documents": row.documents,
    }


def contract_dict(row: ContractRow) -> dict[str, Any]:
    """A :class:`~broker.economics.ContractRow` as JSON-ready values."""
    return {
        "client_id": row.client_id,
        "contract_id": row.contract_id,
        "months": _text(row.months.quantize(Decimal("0.0001"))),
        "monthly_fee": _text(row.monthly_fee),
        "fee_revenue": _text(row.fee_revenue),
        "revenue": _text(row.revenue),
        "cost": _text(row.cost),
        "margin": _text(row.margin),
        "margin_percent": _text(row.margin_percent),
        "documents": row.documents,
        "covered_hours": _text(row.covered_hours),
        "covered_minutes": row.covered_minutes,
        "effective_hourly_rate": _text(row.effective_hourly_rate),
        "list_hourly_rate": _text(row.list_hourly_rate),
        "list_rate_source": row.list_rate_source,
        "effective_vs_list_percent": _text(row.effective_vs_list_percent),
        "target_margin_percent": _text(row.target_margin_percent),
        "recommended_monthly_fee": _text(row.recommended_monthly_fee),
    }


# --------------------------------------------------------------------------- json and csv
def to_json(report: EconomicReport, source: Mapping[str, Any] | None = None) -> str:
    """The whole report as indented JSON (module docstring); ``source``: what was read (counts), added
    as ``source``."""
    doc: dict[str, Any] = {
        "report": "economics",
        "tenant": report.tenant,
        "currency": report.currency,
        "from": report.date_from.isoformat(),
        "to": report.date_to.isoformat(),
        "by": report.by,
        "date_basis": DATE_BASIS,
        "fee_basis": FEE_BASIS,
        "target_margin_percent": _text(report.target_margin_percent),
        "out_of_range": report.out_of_range,
        "rows": [row_dict(row) for row in report.rows],
        "total": row_dict(report.total),
        "allowances": [allowance_dict(row) for row in report.allowances],
        "contracts": [contract_dict(row) for row in report.contracts],
        "monthly": [
            {
                "client_id": m.client_id,
                "month": m.month,
                "revenue": _text(m.revenue),
                "fee_revenue": _text(m.fee_revenue),
                "cost": _text(m.cost),
            }
            for m in report.monthly
        ],
    }
    if source is not None:
        doc["source"] = dict(source)
    return json.dumps(doc, indent=2, ensure_ascii=False) + "\n"


CSV_COLUMNS = (
    "row",
    "by",
    "key",
    "label",
    "documents",
    "invoices",
    "worked_hours",
    "billed_hours",
    "covered_hours",
    "revenue",
    "fee_revenue",
    "cost",
    "margin",
    "margin_percent",
    "visits",
    "assets",
    "currency",
)


def to_csv(report: EconomicReport) -> str:
    """The grouped rows then the total as CSV (:data:`CSV_COLUMNS`; decimals as text, an empty
    ``margin_percent`` without revenue; lines end with CRLF, as the csv module writes them)."""
    out = io.StringIO()
    writer = csv.writer(out)
    writer.writerow(CSV_COLUMNS)
    for kind, row in [*(("group", r) for r in report.rows), ("total", report.total)]:
        values = row_dict(row)
        values.update(row=kind, by=report.by, currency=report.currency)
        writer.writerow(["" if values[c] is None else values[c] for c in CSV_COLUMNS])
    return out.getvalue()


# --------------------------------------------------------------------------- table
def _money(value: Decimal | None) -> str:
    """``value`` with thousands separators and its own decimals (amounts are at the currency's minor unit)."""
    return "—" if value is None else f"{value:,}"


def _pct(value: Decimal | None) -> str:
    return "—" if value is None else f"{value} %"


def _main_rows(report: EconomicReport) -> list[list[str]]:
    return [
        [
            row.label,
            str(row.documents),
            str(row.worked_hours),
            str(row.billed_hours),
            str(row.covered_hours),
            _money(row.revenue),
            _money(row.fee_revenue),
            _money(row.cost),
            _money(row.margin),
            _pct(row.margin_percent),
            str(row.visits),
            str(row.assets),
        ]
        for row in [*report.rows, report.total]
    ]


MAIN_HEADERS = (
    "Documents",
    "Worked h",
    "Billed h",
    "Covered h",
    "Revenue",
    "Fees",
    "Cost",
    "Margin",
    "Margin %",
    "Visits",
    "Assets",
)
ALLOWANCE_HEADERS = ("Client", "Contract", "Month", "Sold h", "Used h", "Used %", "Billed beyond h")
CONTRACT_HEADERS = (
    "Client",
    "Contract",
    "Months",
    "Monthly fee",
    "Fees",
    "Invoiced",
    "Cost",
    "Margin %",
    "Covered h",
    "Per covered h",
    "Rate card h",
    "Fee to reach target",
)


def _allowance_rows(report: EconomicReport) -> list[list[str]]:
    return [
        [
            a.client_id,
            a.contract_id,
            a.month,
            str(hours(a.sold_minutes)),
            str(hours(a.used_minutes)),
            _pct(a.used_percent),
            str(hours(a.beyond_minutes)),
        ]
        for a in report.allowances
    ]


def _contract_rows(report: EconomicReport) -> list[list[str]]:
    return [
        [
            c.client_id,
            c.contract_id,
            str(c.months.quantize(Decimal("0.01"))),
            _money(c.monthly_fee),
            _money(c.fee_revenue),
            _money(c.revenue),
            _money(c.cost),
            _pct(c.margin_percent),
            str(c.covered_hours),
            _money(c.effective_hourly_rate),
            f"{_money(c.list_hourly_rate)} ({c.list_rate_source})",
            _money(c.recommended_monthly_fee),
        ]
        for c in report.contracts
    ]


def _heading(report: EconomicReport) -> str:
    return (
        f"Economic report — tenant {report.tenant}, {report.date_from} to {report.date_to} "
        f"(by {DATE_BASIS}), by {report.by}, amounts in {report.currency} net of tax"
    )


def print_table(report: EconomicReport, console: Console, source: Mapping[str, Any] | None = None) -> None:
    """Print the report's three sections as rich tables on ``console``."""
    console.print(_heading(report), highlight=False)
    if source:
        console.print(", ".join(f"{k.replace('_', ' ')}: {v}" for k, v in source.items()), highlight=False)
    main = Table(title=f"By {report.by}", show_footer=False)
    main.add_column(_group_title(report.by))
    for header in MAIN_HEADERS:
        main.add_column(header, justify="right")
    rows = _main_rows(report)
    for index, cells in enumerate(rows):
        main.add_row(*cells, end_section=index == len(rows) - 2, style="bold" if index == len(rows) - 1 else None)
    console.print(main)
    if report.allowances:
        table = Table(title="Corrective allowance: used against sold")
        for index, header in enumerate(ALLOWANCE_HEADERS):
            table.add_column(header, justify="right" if index > 2 else "left")
        for cells in _allowance_rows(report):
            table.add_row(*cells)
        console.print(table)
    if report.contracts:
        table = Table(title=f"Contracts: fee for a {report.target_margin_percent} % margin")
        for index, header in enumerate(CONTRACT_HEADERS):
            table.add_column(header, justify="right" if index > 1 else "left")
        for cells in _contract_rows(report):
            table.add_row(*cells)
        console.print(table)


# --------------------------------------------------------------------------- html
_CSS = """
body{font-family:system-ui,-apple-system,"Segoe UI",Roboto,sans-serif;margin:2rem;color:#1d2430;max-width:80rem}
h1{font-size:1.5rem;margin-bottom:.25rem}h2{font-size:1.15rem;margin-top:2rem}
p.meta{color:#5b6472;margin-top:0}
table{border-collapse:collapse;margin:.5rem 0 1rem;font-size:.875rem}
th,td{padding:.3rem .6rem;border-bottom:1px solid #d9dee5;text-align:right;white-space:nowrap}
th:first-child,td:first-child,td.text{text-align:left}
thead th{background:#eef1f5}tr.total td{font-weight:600;border-top:2px solid #1d2430}
figure{margin:1rem 0}figure svg{max-width:100%;height:auto}
figcaption{color:#5b6472;font-size:.85rem}
dl{font-size:.85rem;color:#3a4350}dt{font-weight:600;margin-top:.5rem}
"""


def _table_html(headers: list[str], rows: list[list[str]], *, total_last: bool = False, text_columns: int = 1) -> str:
    head = "".join(f"<th scope='col'>{html.escape(h)}</th>" for h in headers)
    body = []
    for index, cells in enumerate(rows):
        css = " class='total'" if total_last and index == len(rows) - 1 else ""
        tds = "".join(
            f"<td class='text'>{html.escape(c)}</td>" if i < text_columns else f"<td>{html.escape(c)}</td>"
            for i, c in enumerate(cells)
        )
        body.append(f"<tr{css}>{tds}</tr>")
    return f"<table><thead><tr>{head}</tr></thead><tbody>{''.join(body)}</tbody></table>"


_XML_PROLOGUE = re.compile(r"<\?xml[^>]*\?>\s*|<!DOCTYPE[^>]*>\s*|<metadata>.*?</metadata>\s*", re.DOTALL)
_ID_REFERENCES = re.compile(r'(\bid="|href="#|url\(#)([^")]+)')
_NAMESPACES = re.compile(r'\s+xmlns(?::xlink)?="[^"]*"')


def _inline_svg(figure: Figure, prefix: str, label: str) -> str:
    """``figure`` as an SVG element to inline in a page: no XML prologue, DOCTYPE or metadata, every id
    (and reference to it) prefixed with ``prefix`` so two charts' glyph and clip-path ids cannot collide,
    ``role="img"`` with ``label`` as its accessible name."""
    import matplotlib as mpl

    buffer = io.StringIO()
    with mpl.rc_context({"svg.hashsalt": "economic-report", "svg.fonttype": "path"}):
        figure.savefig(buffer, format="svg", metadata={"Date": None})
    svg = _XML_PROLOGUE.sub("", buffer.getvalue())
    svg = _ID_REFERENCES.sub(lambda m: f"{m.group(1)}{prefix}-{m.group(2)}", svg)
    svg = _NAMESPACES.sub("", svg)  # the HTML parser puts <svg> and xlink:href in their namespaces itself
    return svg.replace("<svg ", f'<svg role="img" aria-label="{html.escape(label)}" ', 1).strip()


_REVENUE, _FEES, _COST, _SOLD = "#2f6db5", "#8fb7e8", "#d0623c", "#1d2430"


def _revenue_chart(report: EconomicReport) -> Figure | None:
    """Monthly revenue (invoices, with the contract fees stacked on them) against cost, one panel per client."""
    from matplotlib.figure import Figure

    clients = sorted({m.client_id for m in report.monthly})
    if not clients:
        return None
    months = months_between(report.date_from, report.date_to)
    columns = min(3, len(clients))
    rows = -(-len(clients) // columns)
    figure = Figure(figsize=(3.6 * columns, 2.7 * rows + 0.6), layout="constrained")
    axes = figure.subplots(rows, columns, squeeze=False, sharey=True)
    by_key = {(m.client_id, m.month): m for m in report.monthly}
    positions = list(range(len(months)))
    width = 0.38
    for index, client in enumerate(clients):
        ax = axes[index // columns][index % columns]
        revenue = [float(by_key[(client, m)].revenue) if (client, m) in by_key else 0.0 for m in months]
        fees = [float(by_key[(client, m)].fee_revenue) if (client, m) in by_key else 0.0 for m in months]
        cost = [float(by_key[(client, m)].cost) if (client, m) in by_key else 0.0 for m in months]
        left = [p - width / 2 for p in positions]
        ax.bar(left, revenue, width, color=_REVENUE, label="Invoiced revenue")
        ax.bar(left, fees, width, bottom=revenue, color=_FEES, label="Contract fees")
        ax.bar([p + width / 2 for p in positions], cost, width, color=_COST, label="Cost")
        ax.set_title(client, fontsize=10)
        ax.set_xticks(positions, months, fontsize=8, rotation=45 if len(months) > 4 else 0)
        ax.tick_params(axis="y", labelsize=8)
        ax.grid(axis="y", alpha=0.3)
        ax.set_axisbelow(True)
    for index in range(len(clients), rows * columns):
        axes[index // columns][index % columns].set_visible(False)
    axes[0][0].set_ylabel(report.currency, fontsize=8)
    figure.legend(
        *axes[0][0].get_legend_handles_labels(), loc="outside upper center", ncols=3, fontsize=8, frameon=False
    )
    return figure


def _allowance_chart(report: EconomicReport) -> Figure | None:
    """Corrective hours used per contract and month, against the hours sold (one panel per contract)."""
    from matplotlib.figure import Figure

    contracts = sorted({(a.client_id, a.contract_id) for a in report.allowances})
    if not contracts:
        return None
    months = months_between(report.date_from, report.date_to)
    columns = min(3, len(contracts))
    rows = -(-len(contracts) // columns)
    figure = Figure(figsize=(3.6 * columns, 2.7 * rows + 0.6), layout="constrained")
    axes = figure.subplots(rows, columns, squeeze=False, sharey=True)
    by_key = {(a.client_id, a.contract_id, a.month): a for a in report.allowances}
    positions = list(range(len(months)))
    for index, (client, contract) in enumerate(contracts):
        ax = axes[index // columns][index % columns]
        found = [by_key.get((client, contract, m)) for m in months]
        used = [float(hours(a.used_minutes)) if a else 0.0 for a in found]
        beyond = [float(hours(a.beyond_minutes)) if a else 0.0 for a in found]
        sold = [float(hours(a.sold_minutes)) if a else 0.0 for a in found]
        ax.bar(positions, used, 0.6, color=_REVENUE, label="Used")
        ax.bar(positions, beyond, 0.6, bottom=used, color=_COST, alpha=0.7, label="Billed beyond")
        ax.hlines(sold, [p - 0.4 for p in positions], [p + 0.4 for p in positions], colors=_SOLD, label="Sold")
        ax.set_title(f"{contract} ({client})", fontsize=10)
        ax.set_xticks(positions, months, fontsize=8, rotation=45 if len(months) > 4 else 0)
        ax.tick_params(axis="y", labelsize=8)
        ax.grid(axis="y", alpha=0.3)
        ax.set_axisbelow(True)
    for index in range(len(contracts), rows * columns):
        axes[index // columns][index % columns].set_visible(False)
    axes[0][0].set_ylabel("hours", fontsize=8)
    figure.legend(
        *axes[0][0].get_legend_handles_labels(), loc="outside upper center", ncols=3, fontsize=8, frameon=False
    )
    return figure


def _figure_html(figure: Figure | None, prefix: str, label: str, caption: str) -> str:
    if figure is None:
        return f"<p>{html.escape(label)}: nothing to chart in this range.</p>"
    svg = _inline_svg(figure, prefix, label)
    return f"<figure id='{prefix}'>{svg}<figcaption>{html.escape(caption)}</figcaption></figure>"


def to_html(report: EconomicReport, source: Mapping[str, Any] | None = None) -> str:
    """The report as one self-contained HTML page (module docstring). Raises :class:`PlottingUnavailableError`
    without matplotlib."""
    require_plotting()
    esc = html.escape
    title = f"Economic report: {report.tenant}, {report.date_from} to {report.date_to}"
    parts = [
        "<!DOCTYPE html>",
        "<html lang='en'><head><meta charset='utf-8'>",
        "<meta name='viewport' content='width=device-width, initial-scale=1'>",
        f"<title>{esc(title)}</title><style>{_CSS}</style></head><body>",
        f"<h1>{esc(title)}</h1>",
        (
            f"<p class='meta'>By {esc(report.by)}; documents dated by {esc(DATE_BASIS)}; amounts in "
            f"{esc(report.currency)}, net of tax; contract fees: {esc(FEE_BASIS)}."
        ),
    ]
    if source:
        parts.append(" Read: " + esc(", ".join(f"{k.replace('_', ' ')} {v}" for k, v in source.items())) + ".")
    parts.append("</p>")
    parts.append(f"<h2>By {esc(report.by)}</h2>")
    parts.append(_table_html([_group_title(report.by), *MAIN_HEADERS], _main_rows(report), total_last=True))
    parts.append("<h2>Monthly revenue against cost per client</h2>")
    parts.append(
        _figure_html(
            _revenue_chart(report),
            "chart-revenue",
            "Monthly revenue against cost per client",
            "Bars per month: invoiced revenue with the contract fees on top, and our cost.",
        )
    )
    parts.append("<h2>Corrective allowance per contract</h2>")
    parts.append(
        _figure_html(
            _allowance_chart(report),
            "chart-allowance",
            "Allowance usage per contract",
            "Corrective hours covered by the allowance per month, the hours billed beyond it, and the hours sold "
            "(line).",
        )
    )
    if report.allowances:
        parts.append(_table_html(list(ALLOWANCE_HEADERS), _allowance_rows(report), text_columns=3))
    parts.append(f"<h2>Contracts: the monthly fee for a {esc(str(report.target_margin_percent))} % margin</h2>")
    if report.contracts:
        parts.append(_table_html(list(CONTRACT_HEADERS), _contract_rows(report), text_columns=2))
    else:
        parts.append("<p>No contract is valid in this range.</p>")
    parts.append(
        "<dl><dt>Revenue</dt><dd>Net total of the invoices dated in the range (equals their sum to the cent); "
        "contract fees are a column of their own, from the configuration.</dd>"
        "<dt>Margin</dt><dd>Revenue + fees − cost; margin % = margin / (revenue + fees) × 100, half-up to 2 "
        "decimals.</dd>"
        "<dt>Per covered hour</dt><dd>The contract's fees in the range / the hours its covered lines billed, "
        "against the rate card's hourly rate for the client.</dd>"
        "<dt>Fee to reach target</dt><dd>(cost / (1 − target margin) − invoiced) / months, rounded up to the "
        "cent.</dd></dl>"
    )
    parts.append("</body></html>\n")
    return "".join(parts)
