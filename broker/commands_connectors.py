"""``broker connectors ...``: list the installed connector plugins, check a tenant's connection,
run the OAuth2 authorization, print a connector's settings JSON Schema.

Exit status: 0 success; 1 a check or authorization failed; 2 bad configuration or usage.
"""

from __future__ import annotations

import asyncio
import json
import sys
from pathlib import Path
from typing import TYPE_CHECKING

import click
from rich.console import Console
from rich.table import Table

if TYPE_CHECKING:
    from broker.config import BrokerConfig
    from connectors.sdk.interface import Capabilities, Connector
    from connectors.sdk.oauth2 import OAuth2Config, TokenStore

console = Console(width=None if sys.stdout.isatty() else 160)
err_console = Console(stderr=True)


def _load_config(path: str) -> BrokerConfig:
    from broker.config import ConfigError, load_config

    try:
        return load_config(path)
    except ConfigError as exc:
        err_console.print(f"[bold red]configuration error:[/] {exc}", highlight=False)
        sys.exit(2)


def _capabilities_text(caps: Capabilities) -> str:
    parts = [f"idempotency: {caps.idempotency}", f"batch: {caps.batch_size}"]
    if caps.amendments:
        parts.append("amendments")
    if caps.drafts:
        parts.append("drafts")
    if caps.oauth2:
        parts.append("oauth2")
    limits = [
        f"{v}{unit}"
        for v, unit in (
            (caps.rate_limit_per_minute, "/min"),
            (caps.max_concurrency, " concurrent"),
            (caps.daily_limit, "/day"),
        )
        if v
    ]
    if limits:
        parts.append("limits: " + ", ".join(limits))
    return "; ".join(parts)


@click.group("connectors")
def connectors() -> None:
    """Billing-system connector plugins (entry-point group broker.connectors)."""


# --------------------------------------------------------------------------- list
@connectors.command("list")
@click.option("--format", "fmt", type=click.Choice(["table", "json"]), default="table", show_default=True)
def list_connectors(fmt: str) -> None:
    """List installed connectors: name, version, capabilities, source package, import errors.

    A plugin that fails to import is listed with the reason; tenants that use it cannot start.
    """
    from connectors.registry import discover

    entries = sorted(discover().values(), key=lambda e: e.name)
    if fmt == "json":
        out = [
            {
                "name": e.name,
                "target": e.target,
                "ok": e.ok,
                "error": e.error,
                "version": e.version,
                "package": e.package,
                "package_version": e.package_version,
                "capabilities": e.cls.capabilities.as_dict() if e.cls is not None else None,
            }
            for e in entries
        ]
        click.echo(json.dumps(out, indent=2))
        return
    table = Table(title="billing-system connectors", show_lines=False)
    for col in ("name", "version", "capabilities", "package", "status"):
        table.add_column(col, overflow="fold")
    for e in entries:
        package = f"{e.package} {e.package_version}" if e.package else "(registered in-process)"
        if e.cls is not None:
            table.add_row(e.name, e.version or "?", _capabilities_text(e.cls.capabilities), package, "[green]ok[/]")
        else:
            table.add_row(e.name, "-", "-", package, f"[red]import error:[/] {e.error}")
    console.print(table)
    broken = [e.name for e in entries if not e.ok]
    if broken:
        err_console.print(
            f"[yellow]{len(broken)} connector(s) failed to import: {', '.join(broken)}[/] "
            "(tenants using them cannot start)",
            highlight=False,
        )


# --------------------------------------------------------------------------- check
def _classify(exc: BaseException) -> str:
    from broker.config import ConfigError as BrokerConfigError
    from connectors.sdk.errors import (
        AuthError,
        ConfigError,
        MissingScopeError,
        PermanentError,
        RateLimitedError,
        ReauthRequiredError,
        RetryableError,
        UnknownAccountError,
    )

    for cls, label in (
        (ReauthRequiredError, "needs_reauth"),
        (MissingScopeError, "missing scope"),
        (AuthError, "bad credentials"),
        (UnknownAccountError, "unknown organisation"),
        (ConfigError, "configuration"),
        (BrokerConfigError, "configuration"),
        (RateLimitedError, "rate limited"),
        (RetryableError, "unreachable"),
        (PermanentError, "rejected"),
    ):
        if isinstance(exc, cls):
            return label
    return "error"


async def _check_one(config: BrokerConfig, tenant_id: str) -> tuple[str, str, str]:
    from broker.delivery import build_connector

    system = config.tenant(tenant_id).billing.system
    try:
        connector = build_connector(config, tenant_id)
    except Exception as exc:  # noqa: BLE001 - report, do not crash, for every tenant
        return system, _classify(exc), str(exc)
    try:
        await connector.check()
    except Exception as exc:  # noqa: BLE001 - likewise: any failure of the check is reported
        verdict = _classify(exc)
        if verdict == "needs_reauth":
            return system, verdict, f"{exc}; run `broker connectors authorize {system} --tenant {tenant_id}`"
        return system, verdict, str(exc)
    finally:
        await connector.aclose()
    return system, "ok", ""


@connectors.command("check")
@click.option(
    "--config",
    "config_path",
    envvar="BROKER_CONFIG",
    required=True,
    type=click.Path(dir_okay=False),
    help="Tenant configuration YAML (or $BROKER_CONFIG).",
)
@click.option("--tenant", "tenants", multiple=True, help="Tenant to check (repeatable; default: every tenant).")
def check(config_path: str, tenants: tuple[str, ...]) -> None:
    """Call each tenant's billing system with its credentials and say what is wrong.

    Reports needs_reauth (the billing system refused the OAuth2 refresh token: run `broker
    connectors authorize`), bad credentials, missing scope, unknown organisation, configuration
    (bad settings, missing secret variable) or unreachable; exit status 1 when any tenant is not ok.
    Rotated OAuth2 refresh tokens are saved in the token store the worker uses.
    """
    config = _load_config(config_path)
    chosen = list(tenants) or list(config.tenants)
    unknown = [t for t in chosen if t not in config.tenants]
    if unknown:
        err_console.print(
            f"[bold red]unknown tenant(s):[/] {', '.join(unknown)}; configured: {', '.join(sorted(config.tenants))}",
            highlight=False,
        )
        sys.exit(2)

    async def run_all() -> list[tuple[str, str, str, str]]:
        return [(t, *(await _check_one(config, t))) for t in chosen]

    failed = 0
    for tenant_id, system, verdict, message in asyncio.run(run_all()):
        if verdict == "ok":
            console.print(f"[green]ok[/] {tenant_id} ({system}): credentials valid, account reachable", highlight=False)
        else:
            failed += 1
            console.print(f"[bold red]{verdict}[/] {tenant_id} ({system}): {message}", highlight=False)
    sys.exit(1 if failed else 0)


# --------------------------------------------------------------------------- authorize
@connectors.command("authorize")
@click.argument("system")
@click.option("--tenant", required=True, help="Tenant whose billing system to authorise.")
@click.option(
    "--config",
    "config_path",
    envvar="BROKER_CONFIG",
    required=True,
    type=click.Path(dir_okay=False),
    help="Tenant configuration YAML (or $BROKER_CONFIG).",
)
@click.option(
    "--port",
    default=0,
    show_default=True,
    type=int,
    help="Loopback port of the redirect (0 = any free port; use the port registered with the provider).",
)
@click.option("--no-browser", is_flag=True, help="Only print the authorization URL.")
@click.option("--timeout", default=300.0, show_default=True, help="Seconds to wait for the redirect.")
def authorize(*, system: str, tenant: str, config_path: str, port: int, no_browser: bool, timeout: float) -> None:
    """Run the OAuth2 authorization-code flow for SYSTEM with a loopback redirect.

    Opens (or prints) the provider's consent page; after you approve, the redirect to
    http://127.0.0.1:PORT/callback is caught, the code is exchanged (PKCE) and the tokens are saved
    in the token store (a 0600 file; see BROKER_TOKEN_DIR) under the tenant's connection, which
    every tenant sharing it uses too (Xero: one connection, many organisations). Running workers
    pick the new tokens up from the store: invoices parked as needs_reauth resume. Tokens are
    never printed.
    """
    from connectors.sdk.errors import ConnectorError
    from connectors.sdk.oauth2 import authorization_code_flow

    config = _load_config(config_path)
    try:
        _, oauth, store = oauth_connection(config, tenant, system)
    except NotAuthorisableError as exc:
        err_console.print(f"[bold red]{exc.headline}[/]{exc.rest}", highlight=False)
        sys.exit(2)

    def show(url: str) -> None:
        console.print("Open this URL to authorise the connection (waiting for the redirect):", highlight=False)
        click.echo(url)
        sys.stdout.flush()

    try:
        result = asyncio.run(
            authorization_code_flow(
                oauth, store, port=port, timeout=timeout, show_url=show, open_browser=not no_browser
            )
        )
    except (ConnectorError, TimeoutError, OSError) as exc:
        err_console.print(f"[bold red]authorization failed:[/] {exc}", highlight=False)
        sys.exit(1)
    scopes = result.tokens.scope or "(not reported)"
    sharing = connection_tenants(config, system, oauth.store_key)
    console.print(
        f"[green]authorised[/] {system} for tenant {tenant}: tokens stored in {result.store_location}; "
        f"scopes: {scopes}; connection used by tenant(s) {', '.join(sharing or [tenant])}",
        highlight=False,
    )


class NotAuthorisableError(ValueError):
    """Why a tenant's connection cannot be authorised: :attr:`headline` (``unknown tenant 'x'``,
    ``configuration error:`` …) and :attr:`rest` (the details, when any)."""

    def __init__(self, headline: str, rest: str = "") -> None:
        super().__init__(headline + rest)
        self.headline, self.rest = headline, rest


def oauth_connection(
    config: BrokerConfig, tenant: str, system: str | None = None
) -> tuple[Connector, OAuth2Config, TokenStore]:
    """The connector of ``tenant`` (billing in ``system``, when given), its OAuth2 configuration and the token
    store the worker uses for it (the connector's, else :func:`connectors.sdk.oauth2.default_token_store`).

    Raises :class:`NotAuthorisableError` for an unknown tenant, another billing system, bad settings or a
    missing secret, or a billing system that does not use OAuth2."""
    from broker.config import ConfigError as BrokerConfigError
    from broker.delivery import build_connector
    from connectors.sdk.errors import ConnectorError
    from connectors.sdk.oauth2 import default_token_store

    if tenant not in config.tenants:
        raise NotAuthorisableError(f"unknown tenant {tenant!r}", f"; configured: {', '.join(sorted(config.tenants))}")
    configured = config.tenant(tenant).billing.system
    if system is not None and configured != system:
        raise NotAuthorisableError(f"tenant {tenant} bills in {configured!r}, not {system!r}")
    try:
        connector = build_connector(config, tenant)
        oauth = connector.oauth2_config()
    except (BrokerConfigError, ConnectorError) as exc:
        raise NotAuthorisableError("configuration error:", f" {exc}") from None
    if oauth is None:
        raise NotAuthorisableError(
            f"{configured} does not use OAuth2", ": nothing to authorise (its settings name the secrets)"
        )
    store = connector.token_store if connector.token_store is not None else default_token_store()
    return connector, oauth, store


def connection_tenants(config: BrokerConfig, system: str, store_key: str) -> list[str]:
    """The configured tenants of ``system`` whose tokens are stored under ``store_key`` (one OAuth2 connection)."""
    from broker.delivery import build_connector

    found = []
    for tenant_id, tenant in sorted(config.tenants.items()):
        if tenant.billing.system != system:
            continue
        try:
            oauth = build_connector(config, tenant_id).oauth2_config()
        except Exception:  # noqa: BLE001 - informative only: a tenant that cannot be built is not listed
            continue
        if oauth is not None and oauth.store_key == store_key:
            found.append(tenant_id)
    return found


# --------------------------------------------------------------------------- schema
@connectors.command("schema")
@click.argument("name")
@click.option("--output", type=click.Path(dir_okay=False), default=None, help="Write to this file instead of stdout.")
@click.option("--check", "check_only", is_flag=True, help="With --output: exit 1 when the file is stale.")
def schema(name: str, output: str | None, check_only: bool) -> None:
    """Print the JSON Schema of connector NAME's settings (``billing.settings``), for docs."""
    from connectors.registry import load
    from connectors.sdk.interface import settings_json_schema

    try:
        cls = load(name)
    except LookupError as exc:
        err_console.print(f"[bold red]{exc}[/]", highlight=False)
        sys.exit(2)
    text = json.dumps(settings_json_schema(cls), indent=2, sort_keys=True) + "\n"
    if output is None:
        click.echo(text, nl=False)
        return
    path = Path(output)
    if check_only:
        if not path.exists() or path.read_text(encoding="utf-8") != text:
            err_console.print(f"stale: {path} (run `broker connectors schema {name} --output {path}`)")
            sys.exit(1)
        return
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(text, encoding="utf-8")
    console.print(f"wrote {path}")
