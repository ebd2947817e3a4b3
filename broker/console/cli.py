"""``broker console``: serve the operator console; ``broker console hash-password``: make a password hash.

::

    broker console [--db URL] [--host H] [--port P] [--operators FILE] [--bootstrap-servers H:P]
                   [--config FILE] [--url URL]
    broker console hash-password            # asks twice, prints scrypt$N$r$p$salt$hash

Exit status: 0 stopped by Ctrl-C or SIGTERM, 2 bad settings (operators, database, secret). ``docs/console.md``.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

import click

from broker.cli_common import bootstrap_option, err_console, say, serve_asgi

if TYPE_CHECKING:
    from broker.console.oauth import Reauthoriser


def _fail(what: str, exc: Exception) -> SystemExit:
    err_console.print(f"[bold red]{what}:[/] {exc}", highlight=False)
    return SystemExit(2)


@click.group("console", invoke_without_command=True)
@click.option(
    "--db",
    "db_url",
    envvar="BROKER_STATUS_DB",
    default=None,
    help="SQLAlchemy URL of the status database (or $BROKER_STATUS_DB). Default: sqlite:///$BROKER_DATA_DIR/status.db.",
)
@click.option("--host", envvar="BROKER_CONSOLE_HOST", default="127.0.0.1", show_default=True, help="Listen address.")
@click.option("--port", envvar="BROKER_CONSOLE_PORT", type=int, default=8090, show_default=True, help="Listen port.")
@click.option(
    "--operators",
    "operators_path",
    envvar="BROKER_CONSOLE_OPERATORS_FILE",
    type=click.Path(dir_okay=False),
    default=None,
    help="Operators YAML/JSON (or $BROKER_CONSOLE_OPERATORS_FILE; or the document in $BROKER_CONSOLE_OPERATORS).",
)
@bootstrap_option(
    "Kafka cluster for replays (or $KAFKA_BOOTSTRAP_SERVERS); without it, replays answer 503.", required=False
)
@click.option(
    "--config",
    "config_path",
    envvar="BROKER_CONFIG",
    type=click.Path(dir_okay=False),
    default=None,
    help="Tenant configuration YAML (or $BROKER_CONFIG): enables Re-authorise for OAuth2 billing systems.",
)
@click.option(
    "--url",
    "public_url",
    envvar="BROKER_CONSOLE_URL",
    default=None,
    help="The console's public URL (or $BROKER_CONSOLE_URL); the OAuth2 redirect URI is URL/oauth/callback.",
)
@click.pass_context
def console(
    ctx: click.Context,
    db_url: str | None,
    host: str,
    port: int,
    operators_path: str | None,
    bootstrap_servers: str | None,
    config_path: str | None,
    public_url: str | None,
) -> None:
    """Serve the operator console (web page and REST API over the status database) until Ctrl-C.

    Every page and API call needs an operator; every login and action is written to the audit log
    (table audit_log). Migrates the status database to the newest schema first.
    """
    if ctx.invoked_subcommand is not None:
        return
    from sqlalchemy.exc import SQLAlchemyError

    from broker.console.app import create_console_app
    from broker.console.auth import OperatorsError, SessionSigner, load_operators
    from broker.logs import configure as configure_logging
    from broker.logs import logging_config
    from broker.settings import Settings
    from broker.statusdb.store import DatabaseError, default_url, migrate, open_database, shown_url

    try:
        settings = Settings.from_env()
        operators = load_operators(operators_path)
        signer = SessionSigner.from_env()
        reauthoriser = _reauthoriser(config_path, public_url)
    except (OperatorsError, ValueError) as exc:
        raise _fail("settings error", exc) from None
    try:
        engine = open_database(db_url or default_url(settings.data_dir))
        migrate(engine)
    except DatabaseError as exc:
        raise _fail("status database", exc) from None
    except SQLAlchemyError as exc:
        raise _fail("status database", ValueError(str(exc).splitlines()[0][:300])) from None
    configure_logging(settings.log_level, settings.log_format)
    app = create_console_app(
        engine,
        operators,
        signer,
        bootstrap=bootstrap_servers,
        replay_limit=settings.delivery.dlq_replay_limit,
        reauthoriser=reauthoriser,
    )
    say(settings).print(
        f"operator console: http://{host}:{port}/ on {shown_url(engine)}, {len(operators)} operator(s)"
        + ("" if bootstrap_servers else "; no Kafka: replays answer 503")
        + ("" if reauthoriser else "; no --config: no Re-authorise"),
        highlight=False,
        soft_wrap=True,
    )
    try:
        logs = logging_config(settings.log_level, settings.log_format)
        serve_asgi(app, host=host, port=port, log_config=logs)
    finally:
        engine.dispose()


def _reauthoriser(config_path: str | None, public_url: str | None) -> Reauthoriser | None:
    """What re-authorising needs, with ``--config`` (``ValueError`` naming what is wrong); ``None`` without."""
    if config_path is None:
        return None
    from broker.config import ConfigError, load_config
    from broker.console.oauth import Reauthoriser

    if public_url is not None and not public_url.startswith(("https://", "http://")):
        raise ValueError(f"--url / BROKER_CONSOLE_URL {public_url!r} is not an http(s) URL")
    try:
        return Reauthoriser(load_config(config_path), console_url=public_url)
    except ConfigError as exc:
        raise ValueError(f"{config_path}: {exc}") from None


@console.command("hash-password")
@click.password_option("--password", prompt="Password", help="The password (asked twice when not given).")
def hash_password_command(password: str) -> None:
    """Print the scrypt hash of a password for an operator's `password_hash` (operators file)."""
    from broker.console.auth import hash_password

    try:
        click.echo(hash_password(password))
    except ValueError as exc:
        raise _fail("cannot hash", exc) from None
