"""Connector discovery through the ``broker.connectors`` entry-point group.

Built-in connectors are registered in ``pyproject.toml`` exactly like third-party plugins::

    [project.entry-points."broker.connectors"]
    xero = "connectors.xero:XeroConnector"

A plugin that fails to import (missing dependency, syntax error, wrong target) does not break
the others: :func:`discover` keeps it with its error, ``broker connectors list`` shows the reason
and :func:`load` (used by the worker for each tenant) raises ``LookupError`` naming it.

Lazy and metadata-first: :func:`available` reads only the installed distributions' metadata (no
import), and :func:`load` imports only the connector it is asked for, so a worker whose tenants
all use Xero imports the Xero connector and no other. :func:`discover` imports every connector
(for listings and the conformance kit).

:func:`register` adds a class in-process (tests, the conformance kit, notebooks); it wins over an
entry point of the same name until :func:`unregister`.

Entry points are read once per process (reading them scans every installed distribution's
metadata: milliseconds, which a worker would otherwise pay per tenant at start-up and on each
tenant's first invoice): :func:`entry_points_of_group` keeps them, read again only when ``sys.path``
changes (a test putting a plugin's directory on it) or after :func:`refresh` (a plugin installed
with pip into a directory already on ``sys.path`` while this process runs).
"""

from __future__ import annotations

import functools
import importlib
import sys
import threading
from dataclasses import dataclass
from importlib.metadata import EntryPoint, entry_points

from connectors.sdk.interface import Connector
from connectors.sdk.payments import PaymentSource

GROUP = "broker.connectors"

_overrides: dict[str, type[Connector]] = {}
_lock = threading.Lock()


@dataclass
class ConnectorEntry:
    """A discovered connector: ``cls`` is None and ``error`` says why when the import failed.

    ``package`` / ``package_version``: the distribution that registered it (``None`` for
    :func:`register`-ed classes).
    """

    name: str
    target: str
    package: str | None
    cls: type[Connector] | None
    error: str | None
    package_version: str | None = None

    @property
    def ok(self) -> bool:
        return self.cls is not None

    @property
    def version(self) -> str | None:
        return getattr(self.cls, "version", None) if self.cls is not None else None


def _check_class(name: str, cls: object) -> str | None:
    """Why ``cls`` is not a usable connector class (``None`` when it is)."""
    if not isinstance(cls, type) or not issubclass(cls, Connector):
        return f"TypeError: {cls!r} is not a connectors.sdk.interface.Connector subclass"
    missing = [attr for attr in ("name", "Settings") if not hasattr(cls, attr)]
    if missing:
        return f"TypeError: {cls.__name__} does not set {', '.join(missing)}"
    if cls.name != name:
        return f"ValueError: entry point {name!r} loads {cls.__name__} whose name is {cls.name!r}"
    return None


@functools.lru_cache(maxsize=1)
def _read_group(path: tuple[str, ...]) -> tuple[EntryPoint, ...]:
    """The group's entry points as installed on ``path`` (``sys.path`` as a tuple: the cache key)."""
    del path  # importlib.metadata reads sys.path itself
    return tuple(entry_points(group=GROUP))


def entry_points_of_group() -> tuple[EntryPoint, ...]:
    """Every entry point of the ``broker.connectors`` group, in importlib's order, importing nothing.

    Read from the installed distributions' metadata on the first call and kept; read again when
    ``sys.path`` differs from the last call's, or after :func:`refresh`.
    """
    return _read_group(tuple(sys.path))


def refresh() -> None:
    """Forget the entry points read so far (and importlib's directory caches): the next lookup reads
    the installed distributions again. For a process that installs a plugin while it runs (``pip
    install`` into a directory already on ``sys.path``)."""
    importlib.invalidate_caches()
    _read_group.cache_clear()


def available() -> dict[str, str]:
    """Installed connectors, name -> entry-point target (``"connectors.xero:XeroConnector"``), importing nothing.

    :func:`register`-ed classes are included; an entry point of the same name is shadowed by them.
    """
    found = {ep.name: ep.value for ep in entry_points_of_group()}
    with _lock:
        found.update({name: f"{cls.__module__}:{cls.__qualname__}" for name, cls in _overrides.items()})
    return found


def _entry(ep: EntryPoint, *, with_package: bool = True) -> ConnectorEntry:
    """Import one entry point; an import failure is kept as the entry's ``error``, not raised.

    ``with_package=False`` leaves ``package``/``package_version`` ``None`` (reading them parses the
    distribution's metadata file: about a millisecond, which :func:`load` does not need).
    """
    dist = getattr(ep, "dist", None) if with_package else None
    package = dist.name if dist is not None else None
    package_version = dist.version if dist is not None else None
    try:
        cls = ep.load()
    except BaseException as exc:  # a broken plugin must not break the others (even SystemExit)
        if isinstance(exc, KeyboardInterrupt):
            raise
        return ConnectorEntry(ep.name, ep.value, package, None, f"{type(exc).__name__}: {exc}", package_version)
    problem = _check_class(ep.name, cls)
    return ConnectorEntry(ep.name, ep.value, package, None if problem else cls, problem, package_version)


def discover() -> dict[str, ConnectorEntry]:
    """All connectors of the ``broker.connectors`` group, keyed by name, each imported; import errors are kept."""
    found = {ep.name: _entry(ep) for ep in entry_points_of_group()}
    with _lock:
        for name, cls in _overrides.items():
            found[name] = ConnectorEntry(name, f"{cls.__module__}:{cls.__qualname__}", None, cls, None, None)
    return found


def load(name: str) -> type[Connector]:
    """The connector class registered as ``name``, importing that connector only.

    Raises ``LookupError`` naming the connector when it is not installed or failed to import.
    """
    with _lock:
        if name in _overrides:
            return _overrides[name]
    match = next((ep for ep in entry_points_of_group() if ep.name == name), None)
    if match is None:
        raise LookupError(f"billing system {name!r}: no connector installed under entry-point group {GROUP!r}")
    entry = _entry(match, with_package=False)
    if entry.cls is None:
        raise LookupError(f"billing system {name!r}: connector {entry.target} failed to import: {entry.error}")
    return entry.cls


def register(cls: type[Connector], name: str | None = None) -> None:
    """Make ``cls`` loadable as ``name`` (default ``cls.name``) in this process."""
    name = name or cls.name
    with _lock:
        _overrides[name] = cls


def unregister(name: str) -> None:
    """Undo :func:`register` (no error when absent)."""
    with _lock:
        _overrides.pop(name, None)


def payment_source_class(connector: type[Connector]) -> type[PaymentSource] | None:
    """The payment source shipped beside ``connector`` (``broker payments``, ``docs/payments.md``): the
    ``PAYMENT_SOURCE`` class of the module ``payments`` in the connector's package (for
    ``connectors.xero.connector.XeroConnector``: ``connectors.xero.payments.PAYMENT_SOURCE``), imported
    on demand; ``None`` when the package has no such module or it names no source. An error while
    importing a module that exists is raised as it is."""
    package = connector.__module__.rpartition(".")[0]
    name = f"{package}.payments" if package else "payments"
    try:
        module = importlib.import_module(name)
    except ModuleNotFoundError as exc:
        if exc.name == name:
            return None
        raise
    source = getattr(module, "PAYMENT_SOURCE", None)
    return source if isinstance(source, type) and issubclass(source, PaymentSource) else None


__all__ = [
    "GROUP",
    "ConnectorEntry",
    "available",
    "discover",
    "entry_points_of_group",
    "load",
    "payment_source_class",
    "refresh",
    "register",
    "unregister",
]
