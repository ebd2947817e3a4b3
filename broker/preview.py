"""Rendering of a priced event for ``broker invoice preview`` (JSON and a rich table)."""

from __future__ import annotations

from rich.console import Console
from rich.table import Table

from broker.invoice import Invoice, NotBillable


def preview_json(priced: Invoice | NotBillable) -> dict:
    """The preview document; amounts are decimal strings.

    Invoice shape: ``tenant``, ``invoice_key``, ``invoice_number``, ``currency``, ``lines`` (each
    ``description``, ``quantity``, ``unit``, ``unit_price``, ``net``, ``tax_rate``, ``tax``, ``total``,
    ``source``, ``rule``, ``cost``), ``net_total``, ``tax_total``, ``total``, ``cost_total``, ``margin``,
    ``notes``. A not-billable result: ``tenant``, ``invoice_key``, ``status``, ``reason``.
    """
    if isinstance(priced, NotBillable):
        return {"tenant": priced.tenant, "invoice_key": priced.invoice_key, "status": "not_billable",
                "reason": priced.reason, "cost_total": str(priced.cost_total)}
    return {
        "tenant": priced.tenant,
        "invoice_key": priced.invoice_key,
        "invoice_number": priced.invoice_number,
        "client": priced.client_name,
        "currency": priced.currency,
        "lines": [
            {
                "description": ln.description, "quantity": str(ln.quantity), "unit": ln.unit,
                "unit_price": str(ln.unit_price), "net": str(ln.net), "tax_rate": str(ln.tax_rate),
                "tax": str(ln.tax), "total": str(ln.total), "source": ln.source, "rule": ln.rule,
                "cost": str(ln.cost),
            }
            for ln in priced.lines
        ],
        "net_total": str(priced.net_total),
        "tax_total": str(priced.tax_total),
        "total": str(priced.total),
        "cost_total": str(priced.cost_total),
        "margin": str(priced.margin),
        "notes": list(priced.notes),
    }


def preview_table(priced: Invoice | NotBillable, console: Console) -> None:
    """Print the invoice as a table: one row per line with its source and rule, then totals, cost and margin."""
    if isinstance(priced, NotBillable):
        console.print(f"{priced.invoice_key}: [bold]not billable[/] – {priced.reason}")
        return
    table = Table(title=f"{priced.invoice_number} · {priced.client_name} · {priced.currency}", show_lines=False)
    table.add_column("Line (source · rule)", ratio=1, overflow="fold")
    for col in ("Qty", "Unit price", "Net", "VAT %", "VAT", "Total", "Cost"):
        table.add_column(col, justify="right", no_wrap=True)
    for ln in priced.lines:
        table.add_row(f"{ln.description}\n[dim]{ln.source} · {ln.rule}[/]", f"{ln.quantity} {ln.unit}",
                      str(ln.unit_price), str(ln.net), str(ln.tax_rate), str(ln.tax), str(ln.total), str(ln.cost))
    table.add_section()
    table.add_row("[bold]Totals[/]", "", "", f"[bold]{priced.net_total}[/]", "", f"[bold]{priced.tax_total}[/]",
                  f"[bold]{priced.total}[/]", str(priced.cost_total))
    console.print(table)
    console.print(f"cost {priced.cost_total} · margin {priced.margin} {priced.currency} (not sent to the billing system)")
