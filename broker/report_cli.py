"""``broker report``: reports from the priced documents on ``billing.invoices``.

::

    broker report economics --config PATH --tenant T --from YYYY-MM-DD --to YYYY-MM-DD
                            [--by client|contract|site|technician|month] [--format table|csv|json|html]
                            [--output FILE] [--bootstrap-servers H:P] [--topic billing.invoices]

Reads the topic to its current end (:mod:`broker.economics_source`), keeps the tenant's latest
revision per document (:func:`broker.economics.select_documents`), adds up the documents dated in the
range (:func:`broker.economics.economic_report`) and writes the format asked
(:mod:`broker.economics_render`) to ``--output`` or stdout. Exit status: 0 done; 2 bad usage or
configuration, Kafka unreachable (``cannot reach Kafka at <address>``), the topic missing, a document
the report cannot add (an invoice in another currency than the tenant's), or the ``html`` format
without matplotlib (``pip install 'maintenance-billing-broker[report]'``).
"""

from __future__ import annotations

import sys
from datetime import datetime
from pathlib import Path
from typing import TYPE_CHECKING, Any, NoReturn

import click
from rich.console import Console
from rich.markup import escape

from broker.cli_common import bootstrap_option
from broker.config import ConfigError, load_config
from broker.economics import GROUPINGS, economic_report, select_documents
from broker.kafka import exits_when_kafka_is_unreachable
from broker.settings import TOPIC_INVOICES

if TYPE_CHECKING:
    from broker.economics import EconomicReport

__all__ = ["report"]

err_console = Console(stderr=True)
FORMATS = ("table", "csv", "json", "html")


def _fail(title: str, message: object) -> NoReturn:
    err_console.print(f"[bold red]{title}:[/] {escape(str(message))}", highlight=False)
    raise SystemExit(2)


@click.group()
def report() -> None:
    """Reports from the priced documents on billing.invoices."""


@report.command("economics")
@click.option(
    "--config",
    "config_path",
    envvar="BROKER_CONFIG",
    required=True,
    type=click.Path(dir_okay=False),
    help="Tenant configuration YAML (or $BROKER_CONFIG): clients, contracts and their fees, rate card.",
)
@click.option("--tenant", "tenant_id", required=True, help="The tenant (maintenance company) to report on.")
@click.option(
    "--from",
    "date_from",
    required=True,
    type=click.DateTime(formats=["%Y-%m-%d"]),
    metavar="YYYY-MM-DD",
    help="First day, by the invoice's issue date in the tenant's time zone.",
)
@click.option(
    "--to",
    "date_to",
    required=True,
    type=click.DateTime(formats=["%Y-%m-%d"]),
    metavar="YYYY-MM-DD",
    help="Last day, inclusive.",
)
@click.option(
    "--by",
    type=click.Choice(GROUPINGS),
    default="client",
    show_default=True,
    help="One row per client, contract, site, technician or month.",
)
@click.option("--format", "fmt", type=click.Choice(FORMATS), default="table", show_default=True)
@click.option(
    "--output",
    type=click.Path(dir_okay=False, writable=True),
    default=None,
    help="Write the report to this file instead of stdout.",
)
@bootstrap_option("Kafka cluster (or $KAFKA_BOOTSTRAP_SERVERS); TLS/SASL from the KAFKA_* variables.")
@click.option("--topic", default=TOPIC_INVOICES, show_default=True, help="Where the priced documents are.")
@exits_when_kafka_is_unreachable
def economics(
    *,
    config_path: str,
    tenant_id: str,
    date_from: datetime,
    date_to: datetime,
    by: str,
    fmt: str,
    output: str | None,
    bootstrap_servers: str,
    topic: str,
) -> None:
    """Hours, revenue, cost and margin per client, contract, site, technician or month; the contracts'
    allowance used against sold, and the monthly fee that reaches the tenant's target margin
    (docs/economics.md)."""
    from broker.economics_render import PlottingUnavailableError, require_plotting, to_csv, to_html, to_json
    from broker.economics_source import ReadStats, TopicNotFoundError, read_priced
    from broker.kafka_security import KafkaSecurity

    first, last = date_from.date(), date_to.date()
    if first > last:
        raise click.BadParameter(f"--from {first} is after --to {last}", param_hint="--from/--to")
    try:
        config = load_config(config_path)
    except ConfigError as exc:
        _fail("configuration error", exc)
    if tenant_id not in config.tenants:
        _fail("configuration error", f"unknown tenant {tenant_id!r}; configured: {', '.join(sorted(config.tenants))}")
    tenant = config.tenants[tenant_id]
    if fmt == "html":
        try:
            require_plotting()
        except PlottingUnavailableError as exc:
            _fail("error", exc)
    try:
        KafkaSecurity.from_env()
    except ValueError as exc:
        _fail("Kafka security settings", exc)

    stats = ReadStats()
    try:
        selection = select_documents(
            read_priced(bootstrap_servers, tenant_id, topic=topic, stats=stats),
            tenant_id,
            corrections=tenant.corrections,
        )
        result = economic_report(selection.documents, tenant_id, tenant, first, last, by)
    except (TopicNotFoundError, ValueError) as exc:  # no topic; a document the report cannot add (currency, key)
        _fail("error", exc)
    if stats.undecodable:
        err_console.print(
            f"[yellow]warning: {len(stats.undecodable)} record(s) of tenant {tenant_id} on {topic} are not priced "
            f"documents and were left out (first: {escape(stats.undecodable[0])})[/]",
            highlight=False,
        )
    source: dict[str, Any] = {
        "topic": topic,
        "records_read": stats.records,
        "tenant_records": selection.read,
        "documents": len(selection.documents),
        "in_range": result.total.documents,
        "replaced_revisions": selection.replaced,
        "cancelled": len(selection.cancelled),
        "unreadable": len(stats.undecodable),
    }
    if fmt == "table":
        _write_table(result, source, output)
    else:
        text = to_csv(result) if fmt == "csv" else to_json(result, source) if fmt == "json" else to_html(result, source)
        if output is None:
            click.echo(text, nl=False)
        else:
            Path(output).write_text(text, encoding="utf-8", newline="")
    if output is not None:
        err_console.print(
            f"economic report of {escape(tenant_id)} ({first} to {last}, by {by}, {result.total.documents} documents) "
            f"written to {escape(output)}",
            highlight=False,
        )


def _write_table(result: EconomicReport, source: dict[str, Any], output: str | None) -> None:
    from broker.economics_render import print_table

    if output is None:
        print_table(result, Console(width=None if sys.stdout.isatty() else 180), source)
        return
    with Path(output).open("w", encoding="utf-8") as handle:
        print_table(result, Console(file=handle, width=180, color_system=None), source)
