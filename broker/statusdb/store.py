"""The status database: opening it, its migrations, and writing a batch of records with their offsets.

:func:`open_database` takes a SQLAlchemy URL (``sqlite:///path/status.db``, or
``postgresql+psycopg://user:password@host/db`` — a bare ``postgresql://`` means psycopg 3) and
:func:`migrate` brings its schema to the newest Alembic revision (``broker/statusdb/migrations``).

:func:`write_batch` writes the rows of a batch of consumed records (:mod:`broker.statusdb.mapping`)
and the next offset of every partition they came from **in one transaction**: after a crash at any
point, the database holds either the whole batch and its offsets or neither, so a restart that
seeks each partition to its stored offset (:func:`load_offsets`) neither skips nor repeats a record.
The offsets are also a guard against a second writer: a batch is written only if each partition's
stored offset is still the one this writer read (a compare-and-set), else :class:`OffsetConflictError`
and nothing is written. History rows are keyed by ``topic, partition, offset`` besides, so a record
written twice (which the offsets already prevent) could not double a row.
"""

from __future__ import annotations

import logging
from collections.abc import Iterable, Mapping, Sequence
from datetime import UTC, datetime
from importlib import resources
from pathlib import Path
from typing import Any

from sqlalchemy import Connection, Engine, Table, create_engine, event, select, update
from sqlalchemy.engine import make_url
from sqlalchemy.exc import ArgumentError, NoSuchModuleError, OperationalError, StatementError
from sqlalchemy.pool import ConnectionPoolEntry

from broker.statusdb.mapping import Consumed, InvoiceChange, Mapped, map_record, merge, text_of
from broker.statusdb.schema import (
    CONSUMER_OFFSETS,
    DEAD_LETTERS,
    INVOICE_EVENTS,
    INVOICES,
    PAYMENTS,
    UNREADABLE,
)

log = logging.getLogger("broker.statusdb")

__all__ = [
    "DIALECTS",
    "DatabaseError",
    "OffsetConflictError",
    "default_url",
    "load_offsets",
    "migrate",
    "open_database",
    "write_batch",
]

#: The databases the status view runs on (SQLAlchemy dialect names).
DIALECTS = ("sqlite", "postgresql")
#: Most keys in one ``IN (...)`` list (SQLite allows 32766 parameters, PostgreSQL 65535).
_CHUNK = 500


class DatabaseError(ValueError):
    """The status database URL is wrong, its driver is missing or it cannot be opened; the message says which."""


class OffsetConflictError(RuntimeError):
    """Another writer moved a partition's stored offset since this one read it (two status views on one
    database): the batch was not written."""


def default_url(data_dir: str | Path) -> str:
    """``sqlite:///<data_dir>/status.db``: the default database, a file in ``BROKER_DATA_DIR``."""
    return f"sqlite:///{Path(data_dir) / 'status.db'}"


def _sqlite_connect(dbapi_connection: Any, _record: ConnectionPoolEntry) -> None:
    """WAL (readers such as the console do not block the writer), a busy timeout; transactions begun
    by :func:`_sqlite_begin` only (Python's sqlite3 would run DDL outside any transaction, so a crash in a
    migration could leave half a schema)."""
    dbapi_connection.isolation_level = None
    cursor = dbapi_connection.cursor()
    try:
        cursor.execute("PRAGMA journal_mode=WAL")
        cursor.execute("PRAGMA busy_timeout=10000")
        cursor.execute("PRAGMA synchronous=NORMAL")  # with WAL: a crash loses no committed transaction
    finally:
        cursor.close()


def _sqlite_begin(connection: Connection) -> None:
    connection.exec_driver_sql("BEGIN")


def open_database(url: str) -> Engine:
    """An engine for ``url`` (the parent folder of a SQLite file is created).

    Raises :class:`DatabaseError` naming the URL (its password hidden) when it is not a URL, names
    another database than SQLite or PostgreSQL, or its driver is not installed (PostgreSQL:
    ``pip install 'maintenance-billing-broker[postgresql]'``)."""
    try:
        parsed = make_url(url)
    except ArgumentError:
        raise DatabaseError(f"{url!r} is not a database URL (e.g. sqlite:///status.db)") from None
    shown = parsed.render_as_string(hide_password=True)
    if parsed.get_backend_name() not in DIALECTS:
        raise DatabaseError(
            f"{shown}: the status view runs on {' or '.join(DIALECTS)}, not {parsed.get_backend_name()}"
        )
    if parsed.drivername == "postgresql":
        parsed = parsed.set(drivername="postgresql+psycopg")
    if parsed.get_backend_name() == "sqlite" and parsed.database not in (None, "", ":memory:"):
        Path(parsed.database or "").parent.mkdir(parents=True, exist_ok=True)
    try:
        engine = create_engine(parsed, pool_pre_ping=parsed.get_backend_name() == "postgresql")
    except (ModuleNotFoundError, NoSuchModuleError) as exc:
        hint = " (pip install 'maintenance-billing-broker[postgresql]')" if "postgres" in shown else ""
        raise DatabaseError(f"{shown}: database driver missing: {exc}{hint}") from None
    if engine.dialect.name == "sqlite":
        event.listen(engine, "connect", _sqlite_connect)
        event.listen(engine, "begin", _sqlite_begin)
    return engine


def shown_url(engine: Engine) -> str:
    """The engine's URL with the password hidden (for messages and logs)."""
    return engine.url.render_as_string(hide_password=True)


def migrate(engine: Engine) -> str:
    """Upgrade the database to the newest migration (``alembic upgrade head``); returns that revision."""
    from alembic import command
    from alembic.config import Config
    from alembic.script import ScriptDirectory

    config = Config()
    config.set_main_option("script_location", str(resources.files("broker.statusdb") / "migrations"))
    with engine.begin() as connection:
        config.attributes["connection"] = connection
        command.upgrade(config, "head")
    head = ScriptDirectory.from_config(config).get_current_head()
    return str(head)


def load_offsets(engine: Engine) -> dict[tuple[str, int], int]:
    """``{(topic, partition): next offset to read}`` as stored."""
    with engine.connect() as connection:
        rows = connection.execute(
            select(CONSUMER_OFFSETS.c.topic, CONSUMER_OFFSETS.c.partition, CONSUMER_OFFSETS.c.next_offset)
        )
        return {(topic, partition): int(offset) for topic, partition, offset in rows}


def _insert_ignoring_duplicates(connection: Connection, table: Table, rows: Sequence[Mapping[str, Any]]) -> None:
    """Insert ``rows``; a row whose primary key exists is left as it is (``ON CONFLICT DO NOTHING``)."""
    if not rows:
        return
    connection.execute(_dialect_insert(connection, table).on_conflict_do_nothing(), list(rows))


def _upsert(connection: Connection, table: Table, rows: Sequence[Mapping[str, Any]]) -> None:
    """Insert ``rows`` or, where the primary key exists, set every other column (``ON CONFLICT DO UPDATE``)."""
    if not rows:
        return
    stmt = _dialect_insert(connection, table)
    keys = [c.name for c in table.primary_key.columns]
    others = {c.name: stmt.excluded[c.name] for c in table.columns if c.name not in keys}
    connection.execute(stmt.on_conflict_do_update(index_elements=keys, set_=others), list(rows))


def _dialect_insert(connection: Connection, table: Table) -> Any:
    """The dialect's ``INSERT`` with ``ON CONFLICT`` (SQLite and PostgreSQL share the form)."""
    if connection.dialect.name == "postgresql":
        from sqlalchemy.dialects.postgresql import insert as pg_insert

        return pg_insert(table)
    if connection.dialect.name == "sqlite":
        from sqlalchemy.dialects.sqlite import insert as sqlite_insert

        return sqlite_insert(table)
    raise DatabaseError(f"the status view runs on {' or '.join(DIALECTS)}, not {connection.dialect.name}")


def _advance(
    connection: Connection, offsets: Mapping[tuple[str, int], int | None], ends: Mapping[tuple[str, int], int]
) -> None:
    """Set each partition's next offset to ``ends[tp]`` if it still is ``offsets[tp]`` (``None``: no row yet)."""
    now = datetime.now(UTC)
    table = CONSUMER_OFFSETS
    for (topic, partition), end in sorted(ends.items()):
        expected = offsets.get((topic, partition))
        if expected is None:
            statement = (
                _dialect_insert(connection, table)
                .values(topic=topic, partition=partition, next_offset=end, updated_at=now)
                .on_conflict_do_nothing()
            )
        else:
            statement = (
                update(table)
                .where(table.c.topic == topic, table.c.partition == partition, table.c.next_offset == expected)
                .values(next_offset=end, updated_at=now)
            )
        # RETURNING, not rowcount: psycopg does not report one for INSERT ... ON CONFLICT DO NOTHING
        if connection.execute(statement.returning(table.c.topic)).first() is None:
            raise OffsetConflictError(
                f"{topic}:{partition}: the stored offset is no longer {expected} (another status view writes "
                "to this database?); batch not written"
            )


def _current_rows(connection: Connection, keys: Iterable[str]) -> dict[str, dict[str, Any]]:
    wanted = sorted(set(keys))
    found: dict[str, dict[str, Any]] = {}
    for start in range(0, len(wanted), _CHUNK):
        chunk = wanted[start : start + _CHUNK]
        for row in connection.execute(select(INVOICES).where(INVOICES.c.invoice_key.in_(chunk))).mappings():
            found[row["invoice_key"]] = dict(row)
    return found


def write_batch(
    engine: Engine, records: Sequence[Consumed], offsets: Mapping[tuple[str, int], int | None]
) -> dict[tuple[str, int], int]:
    """Write the rows of ``records`` and their partitions' next offsets in one transaction.

    ``offsets`` are the stored offsets this writer read (``None`` for a partition without one);
    returns the new ones (``{(topic, partition): last offset + 1}`` for every partition in
    ``records``). Raises :class:`OffsetConflictError` (nothing written) when a stored offset moved.

    When the database refuses a row (a value it cannot store, such as an integer beyond 64 bits),
    the batch is written again one record per transaction, and each record refused is kept in
    ``unreadable_records`` with the database's reason: one bad record never stops the view.
    ``OperationalError`` (the database down or locked) is raised, nothing written."""
    mapped = [map_record(rec) for rec in records]
    try:
        return _write(engine, records, mapped, offsets)
    except OperationalError:
        raise
    except (StatementError, OverflowError) as exc:
        if len(records) > 1:
            ends: dict[tuple[str, int], int] = {}
            current = dict(offsets)
            for rec in records:
                done = write_batch(engine, [rec], current)
                current.update(done)
                ends.update(done)
            return ends
        (rec,) = records
        reason = f"refused by the database: {type(exc).__name__}: {str(exc).splitlines()[0][:500]}"
        refused = Mapped(
            unreadable={**rec.where(), "record_key": text_of(rec.key, 1024), "error": reason, "at": rec.at}
        )
        return _write(engine, records, [refused], offsets)


def _write(
    engine: Engine,
    records: Sequence[Consumed],
    mapped: Sequence[Mapped],
    offsets: Mapping[tuple[str, int], int | None],
) -> dict[tuple[str, int], int]:
    """One transaction: the offsets of ``records`` advanced, the rows of ``mapped`` written."""
    ends: dict[tuple[str, int], int] = {}
    for rec in records:
        tp = (rec.topic, rec.partition)
        ends[tp] = max(ends.get(tp, 0), rec.offset + 1)
    if not ends:
        return {}
    changes: list[InvoiceChange] = [change for m in mapped for change in m.invoices]
    with engine.begin() as connection:
        _advance(connection, offsets, ends)  # first: takes the write lock (SQLite) and checks the offsets
        rows = _current_rows(connection, (c.invoice_key for c in changes))
        touched: dict[str, dict[str, Any]] = {}
        for change in changes:
            touched[change.invoice_key] = rows[change.invoice_key] = merge(rows.get(change.invoice_key), change)
        _upsert(connection, INVOICES, list(touched.values()))
        _insert_ignoring_duplicates(connection, INVOICE_EVENTS, [m.event for m in mapped if m.event is not None])
        _insert_ignoring_duplicates(connection, PAYMENTS, [m.payment for m in mapped if m.payment is not None])
        _insert_ignoring_duplicates(connection, DEAD_LETTERS, [m.dead_letter for m in mapped if m.dead_letter])
        _insert_ignoring_duplicates(connection, UNREADABLE, [m.unreadable for m in mapped if m.unreadable])
    for m in mapped:
        if m.unreadable is not None:
            log.warning(
                "status view: unreadable record %s:%s:%s: %s",
                m.unreadable["topic"],
                m.unreadable["partition"],
                m.unreadable["offset"],
                m.unreadable["error"][:300],
            )
    return ends
