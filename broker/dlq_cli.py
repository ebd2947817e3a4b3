"""``broker dlq``: inspect and replay dead-lettered records (``billing.dlq``).

::

    broker dlq list   [--tenant T] [--connector C] [--error-class E] [--stage S] [--since T] [--until T]
    broker dlq show   ID                      # ID = topic:partition:offset of the DLQ record
    broker dlq replay [filters] [--dry-run] [--limit N] [--group G]

All use ``KAFKA_BOOTSTRAP_SERVERS`` (or ``--bootstrap-servers``). Times are ISO 8601 (``2026-03-01``,
``2026-03-01T12:00:00+00:00``) or relative (``30m``, ``2h``, ``7d`` ago). Exit status: 0 success,
1 ``show`` of a missing record or a replay that failed, 2 bad usage.
"""

from __future__ import annotations

import json
import re
import sys
from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from typing import Any, TypeVar

import click
from rich.console import Console
from rich.panel import Panel
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn
from rich.table import Table

from broker.cli_common import bootstrap_option
from broker.dlq import DlqFilter, fetch_dead_letter, parse_record_id, read_dlq, replay, replay_group
from broker.kafka import exits_when_kafka_is_unreachable
from broker.settings import TOPIC_DLQ, Settings

console = Console(width=None if sys.stdout.isatty() else 160)
err_console = Console(stderr=True)

_RELATIVE = re.compile(r"^(\d+(?:\.\d+)?)\s*([smhd])$")
_CommandT = TypeVar("_CommandT", bound=Callable[..., Any])


def parse_when(text: str | None) -> datetime | None:
    """ISO 8601 (naive = UTC) or ``<n>s|m|h|d`` meaning that long ago; ``click.BadParameter`` otherwise."""
    if text is None:
        return None
    m = _RELATIVE.match(text.strip())
    if m:
        unit = {"s": "seconds", "m": "minutes", "h": "hours", "d": "days"}[m.group(2)]
        return datetime.now(UTC) - timedelta(**{unit: float(m.group(1))})
    try:
        value = datetime.fromisoformat(text.strip().replace("Z", "+00:00"))
    except ValueError:
        raise click.BadParameter(
            f"{text!r} is neither ISO 8601 (2026-03-01T12:00:00+00:00) nor relative (30m, 2h, 7d)"
        ) from None
    return value if value.tzinfo else value.replace(tzinfo=UTC)


def _filters(func: _CommandT) -> _CommandT:
    """Add the ``--bootstrap-servers`` option and the filter options (``--tenant`` ... ``--until``)."""
    options = [
        bootstrap_option("Kafka cluster (or $KAFKA_BOOTSTRAP_SERVERS)."),
        click.option("--tenant", default=None, help="Only this tenant (dlq.tenant)."),
        click.option("--connector", default=None, help="Only this billing system (dlq.connector), e.g. xero."),
        click.option("--error-class", default=None, help="Only this error class (dlq.error.class), e.g. permanent."),
        click.option(
            "--stage", type=click.Choice(["decode", "enrich", "deliver"]), default=None, help="Only this stage."
        ),
        click.option("--since", default=None, help="Dead-lettered at or after (ISO 8601, or 30m / 2h / 7d ago)."),
        click.option("--until", default=None, help="Dead-lettered at or before (ISO 8601, or 30m / 2h / 7d ago)."),
    ]
    for option in reversed(options):
        func = option(func)
    return func


def _make_filter(
    *,
    tenant: str | None,
    connector: str | None,
    error_class: str | None,
    stage: str | None,
    since: str | None,
    until: str | None,
) -> DlqFilter:
    return DlqFilter(
        tenant=tenant,
        connector=connector,
        error_class=error_class,
        stage=stage,
        since=parse_when(since),
        until=parse_when(until),
    )


@click.group()
def dlq() -> None:
    """Dead-lettered records: list, show, replay."""


@dlq.command("list")
@_filters
@click.option("--format", "fmt", type=click.Choice(["table", "json"]), default="table", show_default=True)
@exits_when_kafka_is_unreachable
def dlq_list(
    *,
    bootstrap_servers: str,
    tenant: str | None,
    connector: str | None,
    error_class: str | None,
    stage: str | None,
    since: str | None,
    until: str | None,
    fmt: str,
) -> None:
    """List dead-lettered records (oldest first) with their failure context."""
    flt = _make_filter(
        tenant=tenant, connector=connector, error_class=error_class, stage=stage, since=since, until=until
    )
    records = read_dlq(bootstrap_servers, flt)
    records.sort(key=lambda r: (r.timestamp_ms, r.partition, r.offset))
    if fmt == "json":
        click.echo(
            json.dumps(
                [
                    {
                        "id": r.id,
                        "dead_lettered_at": r.dead_lettered_at.isoformat(),
                        "stage": r.stage,
                        "error_class": r.error_class,
                        "tenant": r.tenant,
                        "connector": r.connector,
                        "original": r.original,
                        "replay_count": r.replay_count,
                        "message": r.message,
                        "target": r.target_topic,
                    }
                    for r in records
                ],
                indent=2,
            )
        )
        return
    table = Table(title=f"{TOPIC_DLQ}: {len(records)} record(s)" + (f" ({flt.describe()})" if flt.describe() else ""))
    for col, kw in (
        ("ID", {"no_wrap": True}),
        ("Dead-lettered (UTC)", {"no_wrap": True}),
        ("Stage", {}),
        ("Error class", {}),
        ("Tenant", {}),
        ("Connector", {}),
        ("Replays", {"justify": "right"}),
        ("Original record", {"no_wrap": True}),
        ("Message", {"overflow": "fold", "ratio": 1}),
    ):
        table.add_column(col, **kw)
    for r in records:
        table.add_row(
            r.id,
            r.dead_lettered_at.strftime("%Y-%m-%d %H:%M:%S"),
            r.stage,
            r.error_class,
            r.tenant,
            r.connector,
            str(r.replay_count),
            r.original,
            r.message[:300],
        )
    console.print(table)


@dlq.command("show")
@click.argument("record_id")
@bootstrap_option("Kafka cluster (or $KAFKA_BOOTSTRAP_SERVERS).")
@exits_when_kafka_is_unreachable
def dlq_show(record_id: str, bootstrap_servers: str) -> None:
    """Show one dead-lettered record: its headers and the original event. RECORD_ID = topic:partition:offset."""
    try:
        parse_record_id(record_id)
    except ValueError as exc:
        raise click.BadParameter(str(exc), param_hint="RECORD_ID") from None
    record = fetch_dead_letter(bootstrap_servers, record_id)
    if record is None:
        err_console.print(f"[red]no record at {record_id}[/]")
        sys.exit(1)
    table = Table(title=f"{record.id} (dead-lettered {record.dead_lettered_at.isoformat()})", show_header=True)
    table.add_column("Header", no_wrap=True)
    table.add_column("Value", overflow="fold")
    for name in sorted(record.headers):
        table.add_row(name, record.headers[name])
    console.print(table)
    console.print(
        f"key: {record.key.decode('utf-8', 'replace') if record.key is not None else '(none)'}", highlight=False
    )
    console.print(f"replays to: {record.target_topic}", highlight=False)
    doc = record.original_json()
    body = json.dumps(doc, indent=2, ensure_ascii=False) if doc is not None else record.value.decode("utf-8", "replace")
    console.print(Panel(body, title="original record (unchanged)", expand=False), highlight=False)


@dlq.command("replay")
@_filters
@click.option("--dry-run", is_flag=True, help="Only show what would be replayed; publish and commit nothing.")
@click.option(
    "--limit",
    type=int,
    default=None,
    help="Refuse records already replayed this many times (default $BROKER_DLQ_REPLAY_LIMIT, 3).",
)
@click.option(
    "--group",
    default=None,
    help="Consumer group holding the replay progress (default: <app id>-dlq-replay[-<filter digest>]).",
)
@exits_when_kafka_is_unreachable
def dlq_replay(
    *,
    bootstrap_servers: str,
    tenant: str | None,
    connector: str | None,
    error_class: str | None,
    stage: str | None,
    since: str | None,
    until: str | None,
    dry_run: bool,
    limit: int | None,
    group: str | None,
) -> None:
    """Re-publish dead-lettered records to their stage's input topic (resumable, at most once each).

    decode/enrich records go to maintenance.events, deliver records to billing.invoices, with
    dlq.replay.count incremented. Records are sent in batches; progress is committed per batch in a
    consumer group (and the batch being sent noted in <group>-publishing), so running the same
    command again (or after an interruption) replays nothing twice.
    """
    try:
        settings = Settings.from_env()
    except ValueError as exc:
        raise click.UsageError(str(exc)) from None
    flt = _make_filter(
        tenant=tenant, connector=connector, error_class=error_class, stage=stage, since=since, until=until
    )
    typed = ",".join(
        f"{k}={v}"
        for k, v in (
            ("tenant", tenant),
            ("connector", connector),
            ("error_class", error_class),
            ("stage", stage),
            ("since", since),
            ("until", until),
        )
        if v
    )
    group = group or replay_group(settings.app_id, typed)
    limit = settings.delivery.dlq_replay_limit if limit is None else limit
    columns = (TextColumn("{task.description}"), BarColumn(), MofNCompleteColumn(), TimeElapsedColumn())
    with Progress(*columns, console=console, transient=False) as progress:
        task = progress.add_task(("checking" if dry_run else "replaying") + f" {TOPIC_DLQ}", total=None)
        report = replay(
            bootstrap_servers,
            flt,
            group=group,
            limit=limit,
            dry_run=dry_run,
            on_total=lambda n: progress.update(task, total=n),
            on_record=lambda _item: progress.advance(task),
        )
    table = Table(title=f"{'dry run: ' if dry_run else ''}replay of {TOPIC_DLQ} (group {report.group}, limit {limit})")
    for col in ("DLQ record", "Stage", "Error class", "Tenant", "Replays", "Action", "To", "Note"):
        table.add_column(col, overflow="fold")
    for item in report.items:
        r = item.record
        style = {"refused": "red", "replayed": "green", "resumed": "green", "would replay": "yellow"}.get(
            item.action, ""
        )
        table.add_row(
            r.id,
            r.stage,
            r.error_class,
            r.tenant,
            str(r.replay_count),
            f"[{style}]{item.action}[/]" if style else item.action,
            item.target,
            item.reason,
        )
    if report.items:
        console.print(table)
    done = report.count("replayed") + report.count("resumed")
    console.print(
        f"scanned {report.scanned} record(s): "
        + (f"{report.count('would replay')} would be replayed" if dry_run else f"{done} replayed")
        + f", {report.count('refused')} refused (replay limit {limit})",
        highlight=False,
    )


__all__ = ["dlq", "parse_when"]
