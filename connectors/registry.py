"""Connector discovery through the ``broker.connectors`` entry-point group.

Built-in connectors are registered in ``pyproject.toml`` exactly like third-party plugins::

    [project.entry-points."broker.connectors"]
    xero = "connectors.xero:XeroConnector"
"""

from __future__ import annotations

from dataclasses import dataclass
from importlib.metadata import entry_points

from connectors.base import Connector

GROUP = "broker.connectors"


@dataclass
class ConnectorEntry:
    """A discovered connector: ``cls`` is None and ``error`` says why when the import failed."""

    name: str
    target: str
    package: str | None
    cls: type[Connector] | None
    error: str | None


def discover() -> dict[str, ConnectorEntry]:
    """All connectors of the ``broker.connectors`` group, keyed by name; import errors are kept, not raised."""
    found: dict[str, ConnectorEntry] = {}
    for ep in entry_points(group=GROUP):
        package = ep.dist.name if ep.dist is not None else None
        try:
            cls = ep.load()
            found[ep.name] = ConnectorEntry(ep.name, ep.value, package, cls, None)
        except Exception as exc:  # a broken plugin must not break the others
            found[ep.name] = ConnectorEntry(ep.name, ep.value, package, None, f"{type(exc).__name__}: {exc}")
    return found


def load(name: str) -> type[Connector]:
    """The connector class registered as ``name``.

    Raises ``LookupError`` naming the connector when it is not installed or failed to import.
    """
    entry = discover().get(name)
    if entry is None:
        raise LookupError(f"billing system {name!r}: no connector installed under entry-point group {GROUP!r}")
    if entry.cls is None:
        raise LookupError(f"billing system {name!r}: connector {entry.target} failed to import: {entry.error}")
    return entry.cls
