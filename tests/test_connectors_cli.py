"""``broker connectors check / authorize / schema`` against the Xero emulator."""

from __future__ import annotations

import json
import os
import stat
import subprocess
import sys
import threading
from pathlib import Path

import httpx
import pytest
import yaml
from click.testing import CliRunner

from broker.cli import main
from tests.conftest import DEMO_SECRETS, EXAMPLES

ROOT = Path(__file__).resolve().parent.parent
SCHEMA_DOC = ROOT / "docs" / "connectors" / "xero.settings.schema.json"


def config_for(tmp_path: Path, emu, **overrides) -> Path:
    raw = yaml.safe_load((EXAMPLES / "config.yaml").read_text(encoding="utf-8"))
    raw["tenants"] = {tid: t for tid, t in raw["tenants"].items() if t["billing"]["system"] == "xero"}  # emu is Xero
    for tenant in raw["tenants"].values():
        tenant["billing"]["settings"].update(
            {"api_url": emu.url, "identity_url": emu.url, "authorize_url": f"{emu.url}/identity/connect/authorize"}
        )
    raw["tenants"]["acme-fm"]["billing"]["settings"].update(overrides)
    path = tmp_path / "config.yaml"
    path.write_text(yaml.safe_dump(raw, sort_keys=False), encoding="utf-8")
    return path


def check(config: Path, *tenants: str, env: dict | None = None):
    args = ["connectors", "check", "--config", str(config)]
    for t in tenants:
        args += ["--tenant", t]
    return CliRunner().invoke(main, args, env={**DEMO_SECRETS, **(env or {})})


def test_check_ok_for_every_tenant(xero, tmp_path):
    result = check(config_for(tmp_path, xero))
    assert result.exit_code == 0, result.output
    assert "ok acme-fm (xero): credentials valid" in result.output and "ok nordic-hvac (xero)" in result.output


def test_check_reports_bad_credentials_without_the_secret(xero, tmp_path):
    result = check(config_for(tmp_path, xero), "acme-fm", env={"XERO_CLIENT_SECRET": "WRONG-secret-0987654321"})
    assert result.exit_code == 1
    out = " ".join(result.output.split())
    assert "bad credentials acme-fm (xero)" in out and "invalid_client" in out
    assert "WRONG-secret-0987654321" not in result.output


def test_check_reports_unknown_organisation(xero, tmp_path):
    result = check(config_for(tmp_path, xero, xero_tenant_id="99999999-0000-0000-0000-000000000009"), "acme-fm")
    assert result.exit_code == 1
    assert "unknown organisation acme-fm (xero): unknown organisation 99999999-0000-0000-0000-000000000009" in " ".join(
        result.output.split()
    )


def test_check_reports_missing_scope(xero, tmp_path):
    xero.scopes = "offline_access accounting.transactions"
    result = check(config_for(tmp_path, xero), "acme-fm")
    assert result.exit_code == 1
    out = " ".join(result.output.split())
    assert "missing scope acme-fm (xero): missing scope accounting.contacts" in out
    assert "broker connectors authorize xero --tenant acme-fm" in out


def test_check_reports_a_missing_secret_variable(xero, tmp_path):
    result = CliRunner().invoke(
        main,
        ["connectors", "check", "--config", str(config_for(tmp_path, xero)), "--tenant", "acme-fm"],
        env={"XERO_CLIENT_SECRET": None, "XERO_REFRESH_TOKEN": "demo-refresh-token"},
    )
    assert result.exit_code == 1
    assert "configuration acme-fm (xero)" in result.output and "XERO_CLIENT_SECRET" in result.output


def test_check_unknown_tenant_is_usage_error(xero, tmp_path):
    result = check(config_for(tmp_path, xero), "nobody")
    assert result.exit_code == 2 and "unknown tenant" in result.output


def authorize_via_cli(config: Path, token_dir: Path, tenant: str = "acme-fm") -> str:
    """``broker connectors authorize xero --tenant T`` in a subprocess whose 'browser' follows the printed URL
    (the emulator consents at once and redirects to the loopback server); returns its whole output."""
    env = {**os.environ, "XERO_CLIENT_SECRET": "demo-secret", "BROKER_TOKEN_DIR": str(token_dir)}
    env.pop("XERO_REFRESH_TOKEN", None)
    args = ["connectors", "authorize", "xero", "--tenant", tenant, "--config", str(config), "--no-browser"]
    proc = subprocess.Popen(
        [sys.executable, "-m", "broker", *args, "--timeout", "60"],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        env=env,
        cwd=ROOT,
    )
    try:
        url = None
        lines = []
        for line in proc.stdout:
            lines.append(line)
            if line.startswith("http"):
                url = line.strip()
                break
        assert url, "".join(lines) + proc.stderr.read()
        browser = threading.Thread(target=lambda: httpx.get(url, follow_redirects=True, timeout=10))
        browser.start()
        out, err = proc.communicate(timeout=60)
        browser.join(10)
    finally:
        if proc.poll() is None:
            proc.kill()
    assert proc.returncode == 0, out + err
    return "".join(lines) + out + err


def test_authorize_runs_the_code_flow_and_stores_the_tokens(xero, tmp_path):
    """The CLI prints the URL, the 'browser' follows it, the loopback redirect lands, tokens are saved 0600
    under the tenant's connection (shared by both example Xero tenants); afterwards the connectors of both
    tenants work from the stored token without XERO_REFRESH_TOKEN in the environment."""
    config = config_for(tmp_path, xero)
    token_dir = tmp_path / "tokens"
    output = authorize_via_cli(config, token_dir)
    text = " ".join(output.split())
    assert "authorised xero for tenant acme-fm: tokens stored in" in text
    assert "connection used by tenant(s) acme-fm, nordic-hvac" in text
    [token_file] = list(token_dir.glob("*.json"))
    assert token_file.name.startswith("xero-XERO_REFRESH_TOKEN-")  # per connection, not per tenant
    assert stat.S_IMODE(token_file.stat().st_mode) == 0o600
    stored = json.loads(token_file.read_text())
    assert stored["refresh_token"] in xero._refresh_tokens and stored["refresh_token"] not in output
    assert stored["access_token"] not in output

    # the worker's connectors now use the stored token; no refresh token in the environment
    result = CliRunner().invoke(
        main,
        ["connectors", "check", "--config", str(config)],
        env={"XERO_CLIENT_SECRET": "demo-secret", "XERO_REFRESH_TOKEN": None, "BROKER_TOKEN_DIR": str(token_dir)},
    )
    assert result.exit_code == 0, result.output
    assert "ok acme-fm (xero)" in result.output and "ok nordic-hvac (xero)" in result.output


def test_check_reports_needs_reauth_after_a_revoked_connection_until_authorize(xero, tmp_path):
    """The user disconnected the app: both tenants of the connection report needs_reauth (exit 1) for one
    refused token call in all; `authorize` for one of them stores new tokens and both check ok again."""
    config = config_for(tmp_path, xero)
    token_dir = tmp_path / "tokens"
    env = {"BROKER_TOKEN_DIR": str(token_dir)}
    assert check(config, env=env).exit_code == 0
    xero.revoke_connection()
    uses = len(xero.refresh_token_uses)
    result = check(config, env=env)
    assert result.exit_code == 1
    out = " ".join(result.output.split())
    assert "needs_reauth acme-fm (xero): Xero token refresh refused (HTTP 400 invalid_grant)" in out
    assert "run `broker connectors authorize xero --tenant acme-fm`" in out
    assert (
        "needs_reauth nordic-hvac (xero)" in out
        and "run `broker connectors authorize xero --tenant nordic-hvac`" in out
    )
    assert len(xero.refresh_token_uses) == uses + 1  # nordic-hvac's check did not ask the identity provider again
    assert check(config, env=env).exit_code == 1 and len(xero.refresh_token_uses) == uses + 1

    authorize_via_cli(config, token_dir, tenant="nordic-hvac")
    result = check(config, env=env)
    assert result.exit_code == 0, result.output
    assert "ok acme-fm (xero)" in result.output and "ok nordic-hvac (xero)" in result.output
    assert len(xero.refresh_token_uses) == uses + 1  # the new access token needed no refresh


def test_authorize_refuses_a_system_the_tenant_does_not_use(xero, tmp_path):
    result = CliRunner().invoke(
        main,
        ["connectors", "authorize", "quickbooks", "--tenant", "acme-fm", "--config", str(config_for(tmp_path, xero))],
        env=DEMO_SECRETS,
    )
    assert result.exit_code == 2 and "bills in 'xero', not 'quickbooks'" in " ".join(result.output.split())


def test_settings_schema_doc_is_current():
    result = CliRunner().invoke(main, ["connectors", "schema", "xero", "--output", str(SCHEMA_DOC), "--check"])
    assert result.exit_code == 0, (
        f"{result.output} (regenerate: broker connectors schema xero --output {SCHEMA_DOC.relative_to(ROOT)})"
    )
    schema = json.loads(SCHEMA_DOC.read_text())
    assert schema["properties"]["client_secret_env"]["x-secret-env"] is True
    assert schema["x-connector"]["name"] == "xero" and schema["x-connector"]["capabilities"]["batch_size"] == 50
    assert set(schema["required"]) == {"xero_tenant_id", "client_id", "client_secret_env", "refresh_token_env"}


def test_schema_of_unknown_connector():
    result = CliRunner().invoke(main, ["connectors", "schema", "nope"])
    assert result.exit_code == 2 and "no connector installed" in result.output


@pytest.mark.parametrize(
    "args",
    [
        ["connectors", "--help"],
        ["connectors", "list", "--help"],
        ["connectors", "check", "--help"],
        ["connectors", "authorize", "--help"],
        ["connectors", "schema", "--help"],
    ],
)
def test_help(args):
    result = CliRunner().invoke(main, args)
    assert result.exit_code == 0 and "Usage" in result.output
