"""Rendering of a priced event for ``broker invoice preview`` (JSON and a rich table)."""

from __future__ import annotations

from rich.console import Console
from rich.table import Table

from connectors.sdk.invoice import AllowanceUse, Invoice, InvoiceLine, NotBillable


def _line_json(ln: InvoiceLine) -> dict[str, str | None]:
    return {
        "kind": ln.kind,
        "description": ln.description,
        "quantity": str(ln.quantity),
        "unit": ln.unit,
        "unit_price": str(ln.unit_price),
        "discount_percent": str(ln.discount_percent),
        "net": str(ln.net),
        "tax_rate": str(ln.tax_rate),
        "tax": str(ln.tax),
        "total": str(ln.total),
        "source": ln.source,
        "rule": ln.rule,
        "cost": str(ln.cost),
        "covered_by": ln.covered_by,
    }


def _allowance_json(a: AllowanceUse | None) -> dict[str, str | int] | None:
    if a is None:
        return None
    return {
        "contract_id": a.contract_id,
        "month": a.month,
        "allowance_minutes": a.allowance_minutes,
        "used_before_minutes": a.used_before_minutes,
        "consumed_minutes": a.consumed_minutes,
        "remaining_minutes": a.remaining_minutes,
    }


def preview_json(priced: Invoice | NotBillable) -> dict[str, object]:
    """The preview document; amounts are decimal strings.

    Invoice shape: ``tenant``, ``invoice_key``, ``invoice_number``, ``client``, ``currency``,
    ``tax_inclusive``, ``lines`` (each ``kind``, ``description``, ``quantity``, ``unit``,
    ``unit_price``, ``discount_percent``, ``net``, ``tax_rate``, ``tax``, ``total``, ``source``,
    ``rule``, ``cost``, ``covered_by``), ``net_total``, ``tax_total``, ``total``, ``cost_total``,
    ``margin``, ``notes``, ``legal_notes``, ``contract_id``, ``allowance`` (minutes: ``month``,
    ``allowance_minutes``, ``used_before_minutes``, ``consumed_minutes``, ``remaining_minutes``,
    or ``null``). A not-billable result: ``tenant``, ``invoice_key``, ``status``, ``reason_code``,
    ``reason``, ``cost_total``, ``contract_id``, ``lines`` (covered lines), ``allowance``.
    """
    if isinstance(priced, NotBillable):
        return {
            "tenant": priced.tenant,
            "invoice_key": priced.invoice_key,
            "status": "not_billable",
            "reason_code": priced.reason_code,
            "reason": priced.reason,
            "cost_total": str(priced.cost_total),
            "contract_id": priced.contract_id,
            "lines": [_line_json(ln) for ln in priced.lines],
            "allowance": _allowance_json(priced.allowance),
        }
    return {
        "tenant": priced.tenant,
        "invoice_key": priced.invoice_key,
        "invoice_number": priced.invoice_number,
        "client": priced.client_name,
        "currency": priced.currency,
        "tax_inclusive": priced.tax_inclusive,
        "lines": [_line_json(ln) for ln in priced.lines],
        "net_total": str(priced.net_total),
        "tax_total": str(priced.tax_total),
        "total": str(priced.total),
        "cost_total": str(priced.cost_total),
        "margin": str(priced.margin),
        "notes": list(priced.notes),
        "legal_notes": list(priced.legal_notes),
        "contract_id": priced.contract_id,
        "allowance": _allowance_json(priced.allowance),
    }


def _lines_table(title: str, lines: list[InvoiceLine], inclusive: bool) -> Table:
    table = Table(title=title, show_lines=False)
    table.add_column("Line (source · rule)", ratio=1, overflow="fold")
    for col in (
        "Qty",
        "Unit price" + (" (gross)" if inclusive else ""),
        "Disc %",
        "Net",
        "VAT %",
        "VAT",
        "Total",
        "Cost",
    ):
        table.add_column(col, justify="right", no_wrap=True)
    for ln in lines:
        covered = f" [green](covered by {ln.covered_by})[/]" if ln.covered_by else ""
        table.add_row(
            f"{ln.description}{covered}\n[dim]{ln.source} · {ln.rule}[/]",
            f"{ln.quantity} {ln.unit}",
            str(ln.unit_price),
            str(ln.discount_percent) if ln.discount_percent else "",
            str(ln.net),
            str(ln.tax_rate),
            str(ln.tax),
            str(ln.total),
            str(ln.cost),
        )
    return table


def preview_table(priced: Invoice | NotBillable, console: Console) -> None:
    """Print the invoice as a table: one row per line with its source and rule, then totals, cost and margin.

    Also prints the contract allowance used (when any) and the legal notes; a not-billable result
    prints its reason and any covered lines.
    """
    if isinstance(priced, NotBillable):
        console.print(f"{priced.invoice_key}: [bold]not billable[/] ({priced.reason_code}) – {priced.reason}")
        if priced.lines:
            console.print(_lines_table("Covered lines", priced.lines, False))
        if priced.allowance is not None:
            _print_allowance(priced.allowance, console)
        console.print(f"cost {priced.cost_total}")
        return
    table = _lines_table(
        f"{priced.invoice_number} · {priced.client_name} · {priced.currency}", priced.lines, priced.tax_inclusive
    )
    table.add_section()
    table.add_row(
        "[bold]Totals[/]",
        "",
        "",
        "",
        f"[bold]{priced.net_total}[/]",
        "",
        f"[bold]{priced.tax_total}[/]",
        f"[bold]{priced.total}[/]",
        str(priced.cost_total),
    )
    console.print(table)
    if priced.allowance is not None:
        _print_allowance(priced.allowance, console)
    for note in priced.legal_notes:
        console.print(f"[bold]{note}[/]")
    console.print(
        f"cost {priced.cost_total} · margin {priced.margin} {priced.currency} (not sent to the billing system)"
    )


def _print_allowance(a: AllowanceUse, console: Console) -> None:
    console.print(
        f"contract {a.contract_id} allowance {a.month}: {a.allowance_minutes} min/month, "
        f"used before {a.used_before_minutes} min, covered here {a.consumed_minutes} min, "
        f"left {a.remaining_minutes} min"
    )
