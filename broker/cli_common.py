"""What the ``broker`` commands share: the consoles, settings and configuration loading that stop a
command with exit status 2 naming what is wrong, and the ``--bootstrap-servers`` option.

Kept apart from :mod:`broker.cli` so that command modules registered there (``broker payments``,
``broker console``, ``broker status-view`` …) can use them without importing the CLI back.
"""

from __future__ import annotations

import sys
from collections.abc import Callable
from typing import Any, NoReturn, TypeVar

import click
from rich.console import Console

from broker.config import BrokerConfig, ConfigError, load_config
from broker.settings import Settings

__all__ = [
    "bootstrap_option",
    "check_kafka_security",
    "config_option",
    "console",
    "err_console",
    "fail_config",
    "load",
    "process_settings",
    "say",
    "serve_asgi",
    "start_command",
]

F = TypeVar("F", bound=Callable[..., Any])
T = TypeVar("T")

console = Console(width=None if sys.stdout.isatty() else 140)
err_console = Console(stderr=True)


def say(settings: Settings) -> Console:
    """Where a long-running command prints its banner: stderr with ``BROKER_LOG_FORMAT=json``, so
    stdout holds only JSON log lines."""
    return err_console if settings.log_format == "json" else console


def fail_config(exc: Exception) -> NoReturn:
    """Print ``exc`` as a configuration error on stderr and exit with status 2."""
    err_console.print(f"[bold red]configuration error:[/] {exc}", markup=True, highlight=False)
    sys.exit(2)


def process_settings() -> Settings:
    """The process settings; a malformed ``BROKER_*`` value stops the command naming it (exit 2)."""
    try:
        return Settings.from_env()
    except ValueError as exc:
        err_console.print(f"[bold red]settings error:[/] {exc}", highlight=False)
        raise SystemExit(2) from None


def load(path: str) -> BrokerConfig:
    """The tenants' configuration at ``path``; a :class:`ConfigError` stops the command (exit 2)."""
    try:
        return load_config(path)
    except ConfigError as exc:
        fail_config(exc)


def start_command(config_path: str, read: Callable[[BrokerConfig], T]) -> tuple[Settings, T]:
    """What a long-running command reads first: the process settings (:func:`process_settings`), the Kafka
    TLS/SASL settings (:func:`check_kafka_security`), the configuration at ``config_path`` (:func:`load`) and
    what ``read`` takes of it (e.g. the tenants' routes or targets). Anything wrong stops the command with
    exit status 2 naming it, a :class:`ConfigError` raised by ``read`` included."""
    settings = process_settings()
    check_kafka_security()
    config = load(config_path)
    try:
        return settings, read(config)
    except ConfigError as exc:
        fail_config(exc)


def check_kafka_security() -> None:
    """Refuse to start, naming the variable, when the Kafka TLS/SASL settings are wrong (exit 2)."""
    from broker.kafka_security import KafkaSecurity

    try:
        KafkaSecurity.from_env()
    except ValueError as exc:
        err_console.print(f"[bold red]Kafka security settings:[/] {exc}", highlight=False)
        raise SystemExit(2) from None


def bootstrap_option(
    help: str = "Kafka cluster (or $KAFKA_BOOTSTRAP_SERVERS); TLS/SASL from the KAFKA_* variables.",  # noqa: A002 - click's name
    *,
    required: bool = True,
) -> Callable[[F], F]:
    """The ``--bootstrap-servers`` option (``$KAFKA_BOOTSTRAP_SERVERS``), required unless ``required=False``."""
    return click.option("--bootstrap-servers", envvar="KAFKA_BOOTSTRAP_SERVERS", required=required, help=help)


def config_option(
    help_text: str = "Tenant configuration YAML (or $BROKER_CONFIG).", *, exists: bool = False
) -> Callable[[F], F]:
    """The required ``--config PATH`` option (``config_path``, or ``$BROKER_CONFIG``); ``exists``: click
    refuses a path that is not an existing file (exit 2) before the command runs."""
    return click.option(
        "--config",
        "config_path",
        envvar="BROKER_CONFIG",
        required=True,
        type=click.Path(exists=exists, dir_okay=False),
        help=help_text,
    )


def serve_asgi(app: Any, **options: Any) -> None:
    """Run the ASGI ``app`` under uvicorn (``options``: :class:`uvicorn.Config`'s) until SIGINT or SIGTERM.

    uvicorn shuts down cleanly on either, then raises the signal again with the handler it found; with
    the default SIGTERM handler that would end the process on the spot, skipping the caller's clean-up
    (an embedded Kafka left running). Here SIGTERM then raises ``SystemExit(143)`` (128 + 15, the
    usual status of a process stopped by SIGTERM) so every ``with`` and ``finally`` of the caller runs.
    """
    import signal

    import uvicorn

    def stopped(signum: int, _frame: object) -> None:
        raise SystemExit(128 + signum)

    previous = signal.signal(signal.SIGTERM, stopped)
    try:
        uvicorn.Server(uvicorn.Config(app, **options)).run()
    finally:
        signal.signal(signal.SIGTERM, previous)
