"""``broker status-view``: materialise the outcome topics into the status database until stopped.

::

    broker status-view [--db URL] [--bootstrap-servers H:P]

``--db`` (or ``BROKER_STATUS_DB``) is a SQLAlchemy URL, by default ``sqlite:///<BROKER_DATA_DIR>/status.db``.
Exit status: 0 stopped by SIGTERM or SIGINT, 2 bad settings or an unusable database, 1 any other failure.
``docs/status-view.md`` has the details.
"""

from __future__ import annotations

import signal
import threading
from types import FrameType

import click
from rich.console import Console

from broker.cli_common import bootstrap_option
from broker.kafka import exits_when_kafka_is_unreachable
from broker.settings import Settings

err_console = Console(stderr=True)


def _fail(what: str, exc: Exception) -> SystemExit:
    err_console.print(f"[bold red]{what}:[/] {exc}", highlight=False)
    return SystemExit(2)


@click.command("status-view")
@click.option(
    "--db",
    "db_url",
    envvar="BROKER_STATUS_DB",
    default=None,
    help="SQLAlchemy URL of the status database (or $BROKER_STATUS_DB): sqlite:///PATH or "
    "postgresql://USER:PASSWORD@HOST/DB. Default: sqlite:///$BROKER_DATA_DIR/status.db.",
)
@bootstrap_option("Kafka cluster (or $KAFKA_BOOTSTRAP_SERVERS).")
@exits_when_kafka_is_unreachable
def status_view(db_url: str | None, bootstrap_servers: str) -> None:
    """Materialise billing.invoices, billing.deliveries, billing.payments and billing.dlq into the
    status database until SIGTERM or Ctrl-C.

    Each batch of records is written with the partitions' next offsets in one transaction, so a
    restart resumes exactly where the database is: no row lost, none doubled. Migrates the database
    to the newest schema first (SQLite: nothing to set up).
    """
    from sqlalchemy.exc import SQLAlchemyError

    from broker.kafka_security import KafkaSecurity
    from broker.logs import configure as configure_logging
    from broker.statusdb.service import STATUS_TOPICS, StatusView
    from broker.statusdb.store import DatabaseError, default_url, migrate, open_database, shown_url

    try:
        settings = Settings.from_env()
        KafkaSecurity.from_env()
    except ValueError as exc:
        raise _fail("settings error", exc) from None
    configure_logging(settings.log_level, settings.log_format)
    url = db_url or default_url(settings.data_dir)
    try:
        engine = open_database(url)
    except DatabaseError as exc:
        raise _fail("status database", exc) from None
    try:
        revision = migrate(engine)
    except SQLAlchemyError as exc:
        first = str(exc).splitlines()[0][:300]
        raise _fail("status database", ValueError(f"{shown_url(engine)}: cannot open or migrate it: {first}")) from None

    stop = threading.Event()

    def _stop(_signum: int, _frame: FrameType | None) -> None:
        stop.set()

    signal.signal(signal.SIGTERM, _stop)
    signal.signal(signal.SIGINT, _stop)
    view = StatusView(engine, bootstrap_servers)
    out = err_console if settings.log_format == "json" else Console(soft_wrap=True)
    out.print(
        f"status view: {', '.join(STATUS_TOPICS)} on {bootstrap_servers} -> {shown_url(engine)} (schema {revision})",
        highlight=False,
    )
    try:
        view.run(stop)
    finally:
        engine.dispose()
    out.print(f"status view stopped: {view.written} records written in {view.batches} batches", highlight=False)
