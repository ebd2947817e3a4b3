"""The console's audit log: every login and action, with who, what, on what, when and the outcome.

Rows go to the table ``audit_log`` of the status database (:data:`broker.statusdb.schema.AUDIT_LOG`,
migration ``0002``), each in its own transaction, before the answer is sent. ``action`` is one of
:data:`ACTIONS`; ``outcome`` ``ok``, ``refused`` (bad credentials, a tenant the operator may not see,
a replay refused) , ``failed`` (Kafka unavailable …) or ``not_implemented``. ``detail`` is a short
text that never holds a password, token or secret.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, fields
from datetime import UTC, datetime
from typing import Any

from sqlalchemy import ColumnElement, Engine, func, insert, or_, select

from broker.statusdb.schema import AUDIT_LOG

__all__ = ["ACTIONS", "AuditEntry", "count_audit", "first_success", "list_audit", "record"]

#: What the audit log records.
ACTIONS = (
    "login",
    "logout",
    "replay_dead_letter",
    "approve",
    "reject",
    "retry_now",
    "reauthorise",
)


@dataclass(frozen=True)
class AuditEntry:
    """One ``audit_log`` row: ``id`` (increasing), ``at`` (aware UTC), ``operator`` (the name given,
    also for a failed login), ``action`` (:data:`ACTIONS`), ``target`` (a document, dead letter or
    tenant, or ``None``), ``tenant`` (of the target, when known), ``outcome``, ``detail``, ``remote``
    (the client's address)."""

    id: int
    at: datetime
    operator: str
    action: str
    target: str | None
    tenant: str | None
    outcome: str
    detail: str | None
    remote: str | None


def record(
    engine: Engine,
    *,
    operator: str,
    action: str,
    outcome: str,
    target: str | None = None,
    tenant: str | None = None,
    detail: str | None = None,
    remote: str | None = None,
    at: datetime | None = None,
) -> None:
    """Write one audit row (committed when this returns). Raises ``ValueError`` for an action not in
    :data:`ACTIONS`; the database's errors propagate (an action is not answered as done unaudited)."""
    if action not in ACTIONS:
        raise ValueError(f"action {action!r} is not one of {', '.join(ACTIONS)}")
    row = {
        "at": at or datetime.now(UTC),
        "operator": operator[:200],
        "action": action,
        "target": target,
        "tenant": tenant,
        "outcome": outcome,
        "detail": None if detail is None else detail[:2000],
        "remote": remote,
    }
    with engine.begin() as connection:
        connection.execute(insert(AUDIT_LOG).values(**row))


def _entry(row: Mapping[Any, Any]) -> AuditEntry:
    return AuditEntry(**{f.name: row[f.name] for f in fields(AuditEntry)})


def first_success(engine: Engine, action: str, target: str) -> AuditEntry | None:
    """The earliest row of ``action`` on ``target`` whose outcome is ``ok`` (e.g. a dead letter already
    replayed), or ``None``."""
    c = AUDIT_LOG.c
    query = select(AUDIT_LOG).where(c.action == action, c.target == target, c.outcome == "ok").order_by(c.id)
    with engine.connect() as connection:
        row = connection.execute(query.limit(1)).mappings().first()
    return None if row is None else _entry(row)


def _visible(operator: str, tenants: frozenset[str] | None) -> list[ColumnElement[bool]]:
    """Rows an operator may read: every row when ``tenants`` is ``None``, else rows of those tenants and
    the operator's own."""
    if tenants is None:
        return []
    c = AUDIT_LOG.c
    return [or_(c.tenant.in_(sorted(tenants)), c.operator == operator)]


def list_audit(
    engine: Engine,
    *,
    operator: str,
    tenants: frozenset[str] | None,
    limit: int = 100,
    offset: int = 0,
    action: str | None = None,
    who: str | None = None,
) -> list[AuditEntry]:
    """The audit rows ``operator`` may read (``tenants`` ``None``: all; else those tenants' rows and their
    own), newest first, optionally of one ``action`` or one operator ``who``; ``limit`` rows from ``offset``."""
    c = AUDIT_LOG.c
    query = select(AUDIT_LOG).where(*_visible(operator, tenants))
    if action is not None:
        query = query.where(c.action == action)
    if who is not None:
        query = query.where(c.operator == who)
    query = query.order_by(c.id.desc()).limit(limit).offset(offset)
    with engine.connect() as connection:
        return [_entry(row) for row in connection.execute(query).mappings()]


def count_audit(engine: Engine, *, operator: str, tenants: frozenset[str] | None) -> int:
    """How many audit rows ``operator`` may read (as :func:`list_audit`, without filters)."""
    query = select(func.count()).select_from(AUDIT_LOG).where(*_visible(operator, tenants))
    with engine.connect() as connection:
        return int(connection.execute(query).scalar_one())
