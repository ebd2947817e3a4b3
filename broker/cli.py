"""The ``broker`` command line (click). Every command is documented in README.md.

Exit status: 0 success, 1 failure (e.g. stale schemas, demo mismatch), 2 bad configuration or usage.
"""

from __future__ import annotations

import json
import sys
from pathlib import Path
from typing import TYPE_CHECKING

import click

from broker import __version__
from broker.cli_common import (
    bootstrap_option,
    check_kafka_security,
    config_option,
    console,
    err_console,
    fail_config,
    load,
    process_settings,
    say,
    serve_asgi,
)
from broker.config import BrokerConfig, ConfigError
from broker.kafka import exits_when_kafka_is_unreachable
from broker.logs import configure as configure_logging
from broker.settings import TOPIC_EVENTS, Settings, unknown_variables

if TYPE_CHECKING:
    import faust

    from broker.faust_compat import BrokerWorker


def _check_tenant_secrets(config: BrokerConfig, tenant_id: str) -> None:
    """Resolve every ``*_env`` secret named in the tenant's billing settings; raises ConfigError naming
    the variable."""
    from broker.config import resolve_secret

    for key, value in config.tenants[tenant_id].billing.settings.items():
        if key.endswith("_env") and isinstance(value, str):
            resolve_secret(value, field=f"tenants.{tenant_id}.billing.settings.{key}")


def tenant_problems(config: BrokerConfig) -> dict[str, str]:
    """``{tenant id: why it cannot run}`` for every tenant whose connector cannot be built (unknown
    billing system, invalid settings) or whose secrets are not set; empty when all can."""
    from broker.delivery import build_connector

    problems = {}
    for tenant_id in config.tenants:
        try:
            build_connector(config, tenant_id)
            _check_tenant_secrets(config, tenant_id)
        except ConfigError as exc:
            problems[tenant_id] = " ".join(str(exc).split())
    return problems


@click.group(context_settings={"help_option_names": ["-h", "--help"]})
@click.version_option(__version__, prog_name="broker")
def main() -> None:
    """maintenance-billing-broker: maintenance events in, invoices out."""
    for warning in unknown_variables():
        err_console.print(f"[yellow]warning: {warning}[/]", highlight=False)


# --------------------------------------------------------------------------- run
@main.command()
@config_option()
@click.option(
    "--strict/--no-strict",
    envvar="BROKER_STRICT_CONFIG",
    default=False,
    help="Refuse to start when any tenant cannot run (else: the others run, /readyz names it).",
)
def run(config_path: str, strict: bool) -> None:
    """Run the worker (enrich + deliver agents) until Ctrl-C.

    Uses the Kafka cluster in $KAFKA_BOOTSTRAP_SERVERS; without it, starts an embedded in-memory
    Tansu broker on a free loopback port and prints its address. A tenant whose connector or
    secrets are missing does not stop the others: its invoices are dead-lettered (replay them once
    it is fixed) and /readyz names it; --strict (or BROKER_STRICT_CONFIG=true) refuses to start.
    """
    settings = process_settings()
    check_kafka_security()
    config = load(config_path)
    broken = tenant_problems(config)
    if broken and (strict or len(broken) == len(config.tenants)):
        first = sorted(broken)[0]
        fail_config(
            ConfigError(
                f"tenant {first}: {broken[first]}" + (f" (and {len(broken) - 1} more)" if len(broken) > 1 else "")
            )
        )
    for tenant_id, why in sorted(broken.items()):
        err_console.print(f"[yellow]tenant {tenant_id} cannot run: {why}; the other tenants run[/]", highlight=False)
    configure_logging(settings.log_level, settings.log_format)

    from broker.embedded import kafka_bootstrap

    if not settings.bootstrap_servers:  # embedded Tansu: one record per batch (see BROKER_PRODUCER_MAX_BATCH_SIZE)
        import dataclasses

        settings = dataclasses.replace(settings, producer_max_batch_size=1)
    with kafka_bootstrap(
        settings.bootstrap_servers, echo=lambda m: say(settings).print(f"[yellow]{m}[/]")
    ) as bootstrap:
        run_worker(settings, config, bootstrap, broken=broken)


def run_worker(
    settings: Settings, config: BrokerConfig, bootstrap: str, *, broken: dict[str, str] | None = None
) -> None:
    """Create the topics, start /metrics and run the Faust worker (:func:`build_worker`) in this process
    until stopped."""
    from broker.app import create_app
    from broker.health import Health, KafkaProbe, PortInUse, serve
    from broker.kafka import ensure_topics
    from broker.lag import LagSampler

    ensure_topics(bootstrap, settings.topic_partitions, settings.all_topics)  # incl. the retry topics
    health = Health(KafkaProbe(bootstrap), tenants=len(config.tenants) - len(broken or {}), broken=broken)
    try:
        serve(settings.metrics_host, settings.metrics_port, health)
    except PortInUse as exc:
        err_console.print(f"[red]cannot serve /metrics, /healthz and /readyz: {exc}[/]")
        raise SystemExit(2) from None
    app = create_app(settings, config, bootstrap, health=health)
    LagSampler(bootstrap, settings.app_id).start()
    base = f"http://{settings.metrics_host}:{settings.metrics_port}"
    say(settings).print(
        f"worker {settings.app_id}: Kafka {bootstrap}, metrics {base}/metrics, health {base}/healthz {base}/readyz",
        highlight=False,
    )
    build_worker(app, settings).execute_from_commandline()


def build_worker(app: faust.App, settings: Settings) -> BrokerWorker:
    """The Faust worker (not started) that ``broker run`` runs ``app`` in: logging as
    :func:`broker.logs.logging_config` of ``settings.log_level`` / ``settings.log_format``
    (``BROKER_LOG_LEVEL``, ``BROKER_LOG_FORMAT``), the root logger kept at that level once the worker
    sets up logging (no progress spinner: :class:`broker.faust_compat.BrokerWorker`), stdout and
    stderr not redirected to the log."""
    from broker.faust_compat import BrokerWorker
    from broker.logs import logging_config

    return BrokerWorker(
        app,
        loglevel=settings.log_level,
        logging_config=logging_config(settings.log_level, settings.log_format),
        quiet=True,
        redirect_stdouts=False,
    )


# --------------------------------------------------------------------------- ingest
@main.command()
@config_option("Tenant configuration YAML (or $BROKER_CONFIG); its tenants' `intake` lists the senders.")
@click.option("--host", default=None, help="Listen address (or $BROKER_INTAKE_HOST; default 127.0.0.1).")
@click.option("--port", type=int, default=None, help="Listen port (or $BROKER_INTAKE_PORT; default 8088).")
def ingest(config_path: str, host: str | None, port: int | None) -> None:
    """Run the HTTP intake (POST /events: CloudEvents; POST /webhooks/{platform}/{tenant}) until Ctrl-C.

    Publishes to maintenance.events on the Kafka cluster in $KAFKA_BOOTSTRAP_SERVERS; without it,
    starts an embedded in-memory Tansu broker and prints its address. docs/intake.md has the details.
    """
    import dataclasses

    from broker.embedded import kafka_bootstrap
    from broker.intake import KafkaPublisher, create_intake_app, credentials_of, webhook_routes_of
    from broker.kafka import ensure_topics
    from broker.logs import logging_config

    settings = process_settings()
    check_kafka_security()
    config = load(config_path)
    try:
        credentials = credentials_of(config)
        webhooks = webhook_routes_of(config)
    except ConfigError as exc:
        fail_config(exc)
    if not credentials and not webhooks:
        say(settings).print(
            "[yellow]no tenant lists an intake sender (`intake:`) or platform (`webhooks:`): "
            "every request will be refused[/]"
        )
    intake = dataclasses.replace(
        settings.intake, host=host or settings.intake.host, port=port if port is not None else settings.intake.port
    )
    configure_logging(settings.log_level, settings.log_format)
    with kafka_bootstrap(
        settings.bootstrap_servers, echo=lambda m: say(settings).print(f"[yellow]{m}[/]")
    ) as bootstrap:
        ensure_topics(bootstrap, settings.topic_partitions, [TOPIC_EVENTS])
        external = settings.bootstrap_servers is not None  # the embedded Tansu: batches of 1, no idempotence
        publisher = KafkaPublisher(
            bootstrap,
            timeout=intake.publish_timeout,
            max_batch_size=settings.producer_max_batch_size if external else 1,
            idempotent=external and settings.producer_idempotence,
            linger_ms=settings.producer_linger_ms,
        )
        app = create_intake_app(intake, publisher, credentials=credentials, webhooks=webhooks)
        base = f"http://{intake.host}:{intake.port}"
        say(settings).print(f"intake: {base}/events -> {TOPIC_EVENTS} on {bootstrap}", highlight=False)
        for platform, tenant in sorted(webhooks):
            say(settings).print(f"  webhooks: {base}/webhooks/{platform}/{tenant}", highlight=False)
        # no access log: an Odoo webhook URL carries its secret in the query (docs/intake.md)
        serve_asgi(
            app,
            host=intake.host,
            port=intake.port,
            log_level=settings.log_level.lower(),
            log_config=logging_config(settings.log_level, settings.log_format),
            access_log=False,
        )


# --------------------------------------------------------------------------- publish
@main.command()
@click.argument("path", type=click.Path(exists=True, dir_okay=False))
@bootstrap_option("Kafka cluster (or $KAFKA_BOOTSTRAP_SERVERS); `broker run` prints the embedded one's.")
@click.option("--topic", default=TOPIC_EVENTS, show_default=True)
@exits_when_kafka_is_unreachable
def publish(path: str, bootstrap_servers: str, topic: str) -> None:
    """Publish events from PATH (NDJSON or a JSON array) with acks=all, keyed tenant:doc:id."""
    from rich.progress import Progress

    from broker.kafka import publish as send
    from broker.kafka import read_events_file

    try:
        records = read_events_file(path)
    except ValueError as exc:
        err_console.print(f"[bold red]cannot read events:[/] {exc}", highlight=False)
        raise SystemExit(2) from None
    with Progress(console=console, transient=False) as progress:
        task = progress.add_task(f"publishing to {topic}", total=len(records))
        sent = send(bootstrap_servers, topic, records, on_sent=lambda: progress.advance(task))
    console.print(f"published {sent} events to {topic} on {bootstrap_servers}")


# --------------------------------------------------------------------------- invoice preview
@main.group()
def invoice() -> None:
    """Inspect pricing without Kafka."""


@invoice.command("preview")
@click.option("--config", "config_path", envvar="BROKER_CONFIG", required=True, type=click.Path(dir_okay=False))
@click.argument("event_path", type=click.Path(exists=True, dir_okay=False))
@click.option("--format", "fmt", type=click.Choice(["json", "table"]), default="json", show_default=True)
@click.option(
    "--quote",
    "quote_path",
    type=click.Path(exists=True, dir_okay=False),
    default=None,
    help="The approved quote (CloudEvent JSON) a work order executes, when its lines are needed.",
)
@click.option(
    "--allowance-used",
    "allowance_used",
    type=click.IntRange(min=0),
    default=0,
    show_default=True,
    help="Minutes of the contract's corrective allowance other work orders used this month.",
)
def invoice_preview(config_path: str, event_path: str, fmt: str, quote_path: str | None, allowance_used: int) -> None:
    """Price EVENT_PATH (one CloudEvent as JSON) with the tenant's rate card and print the invoice.

    Every line shows its source and the rule that priced it; cost and margin are shown too.
    """
    from broker.events import EventDecodeError, parse_billable_event
    from broker.preview import preview_json, preview_table
    from broker.pricing import PricingError, price_event

    config = load(config_path)
    try:
        event = parse_billable_event(Path(event_path).read_bytes())
        tenant = config.tenant(event.tenant)
        quote = parse_billable_event(Path(quote_path).read_bytes()) if quote_path else None
        used = {"(other work orders this month)": allowance_used} if allowance_used else None
        priced = price_event(event, event.tenant, tenant, allowance_used=used, quote=quote)
    except (EventDecodeError, PricingError, KeyError) as exc:
        err_console.print(f"[bold red]cannot price {event_path}:[/] {exc}", highlight=False)
        sys.exit(1)
    if fmt == "json":
        click.echo(json.dumps(preview_json(priced), indent=2, ensure_ascii=False))
    else:
        preview_table(priced, console)


# --------------------------------------------------------------------------- schemas
@main.group()
def schemas() -> None:
    """JSON Schema contracts of the events and the invoice."""


@schemas.command("export")
@click.option("--check", is_flag=True, help="Do not write; exit 1 if the files in --dir are stale.")
@click.option("--dir", "directory", default="schemas", show_default=True, type=click.Path(file_okay=False))
def schemas_export(check: bool, directory: str) -> None:
    """Write schemas/*.schema.json from the pydantic models (or check they are up to date)."""
    from broker.schemas import export

    stale = export(Path(directory), check=check)
    if check:
        if stale:
            err_console.print(f"stale schemas (run `broker schemas export`): {', '.join(stale)}")
            sys.exit(1)
        console.print(f"schemas in {directory}/ are up to date")
    else:
        console.print(f"wrote {len(stale)} changed schema file(s) to {directory}/")


# --------------------------------------------------------------------------- sandbox
@main.group()
def sandbox() -> None:
    """Local emulators of billing systems (loopback HTTP servers)."""


@sandbox.command("xero")
@click.option("--host", default="127.0.0.1", show_default=True)
@click.option("--port", default=8765, show_default=True, type=int)
@click.option(
    "--tenant-id",
    "tenant_ids",
    multiple=True,
    default=("00000000-0000-0000-0000-000000000001", "00000000-0000-0000-0000-000000000002"),
    show_default=True,
    help="Xero organisation ids to accept (repeatable).",
)
@click.option("--rate-limit", default=60, show_default=True, type=int, help="Calls per minute per organisation.")
def sandbox_xero(host: str, port: int, tenant_ids: tuple[str, ...], rate_limit: int) -> None:
    """Run the Xero Accounting API emulator in the foreground until Ctrl-C."""
    import errno

    from connectors.xero.emulator import serve

    try:
        serve(host, port, tenant_ids=tenant_ids, rate_limit_per_minute=rate_limit)
    except OSError as exc:
        if exc.errno != errno.EADDRINUSE:
            raise
        err_console.print(f"[bold red]{host}:{port} is in use:[/] choose another with --port", highlight=False)
        raise SystemExit(2) from None


# --------------------------------------------------------------------------- config check
@main.group("config")
def config_group() -> None:
    """Check a tenant configuration."""


@config_group.command("check")
@config_option()
def config_check(config_path: str) -> None:
    """Validate a configuration as `broker run` and `broker ingest` would, without Kafka.

    The file (unknown keys get the closest known name), every tenant's billing system, its
    settings, tax codes and invoice-number length, the secrets its billing system, intake senders
    and platform webhooks name. Exit 0 when every tenant can run, 1 when one cannot (each named with
    the reason), 2 when the file itself is invalid.
    """
    from rich.table import Table

    from broker.intake import credentials_of, webhook_routes_of

    config = load(config_path)  # exit 2 with the field paths
    problems = tenant_problems(config)
    for tenant_id in config.tenants:
        if tenant_id in problems:
            continue
        single = config.model_copy(update={"tenants": {tenant_id: config.tenants[tenant_id]}})
        try:
            credentials_of(single)
            webhook_routes_of(single)
        except ConfigError as exc:
            problems[tenant_id] = " ".join(str(exc).split())
    table = Table(title=f"{config_path}: {len(config.tenants)} tenant(s)")
    for column in ("Tenant", "Billing system", "Status"):
        table.add_column(column)
    for tenant_id, tenant in config.tenants.items():
        status = f"[red]{problems[tenant_id]}[/]" if tenant_id in problems else "[green]ok[/]"
        table.add_row(tenant_id, tenant.billing.system, status)
    console.print(table)
    sys.exit(1 if problems else 0)


# --------------------------------------------------------------------------- demo
@main.command()
@click.option(
    "--events",
    "events_path",
    type=click.Path(exists=True, dir_okay=False),
    default=None,
    help="Events to publish (default: the bundled examples).",
)
@click.option(
    "--config",
    "config_path",
    type=click.Path(exists=True, dir_okay=False),
    default=None,
    help="Tenant configuration (default: the bundled example).",
)
@click.option("--timeout", default=180.0, show_default=True, help="Seconds to wait for the pipeline.")
@click.option(
    "--keep-running",
    is_flag=True,
    help="Also start the operator console (its address and a demo login are printed) and leave everything "
    "running until Ctrl-C.",
)
def demo(events_path: str | None, config_path: str | None, timeout: float, keep_running: bool) -> None:
    """Run the whole pipeline on bundled example data against the Xero emulator."""
    from broker.demo import run_demo

    sys.exit(
        run_demo(
            events_path=events_path,
            config_path=config_path,
            timeout=timeout,
            keep_running=keep_running,
            console=console,
        )
    )


from broker.commands_connectors import connectors as _connectors_group  # noqa: E402 - the `connectors` command group

main.add_command(_connectors_group)
from broker.dlq_cli import dlq as _dlq_group  # noqa: E402 - the `dlq` command group (list, show, replay)

main.add_command(_dlq_group)
from broker.report_cli import report as _report_group  # noqa: E402 - the `report` command group (economics)

main.add_command(_report_group)
from broker.status_cli import status_view as _status_view  # noqa: E402 - `status-view` (the status database)

main.add_command(_status_view)
from broker.console.cli import console as _console  # noqa: E402 - `console` (the operator console)

main.add_command(_console)
from broker.payments_cli import payments as _payments  # noqa: E402 - `payments` (billing.payments, docs/payments.md)

main.add_command(_payments)
from broker.callbacks_cli import callbacks as _callbacks  # noqa: E402 - `callbacks` (payments to the platforms)

main.add_command(_callbacks)

if __name__ == "__main__":  # pragma: no cover
    main()
