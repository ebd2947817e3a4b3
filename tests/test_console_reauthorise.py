"""Re-authorising a tenant's OAuth2 connection from the console (``broker.console.oauth``), against the Xero
emulator: its consent page approves at once and redirects to the console's callback, which the test follows
by hand (the console runs in a test client; its public URL is a loopback one, as the emulator requires)."""

from __future__ import annotations

import asyncio
import json
from urllib.parse import parse_qs, urlsplit

import httpx
import pytest
from fastapi.testclient import TestClient

from broker.config import load_config
from broker.console.app import create_console_app
from broker.console.auth import SessionSigner
from broker.console.oauth import Reauthoriser
from broker.delivery import build_connector
from tests.console_support import SECRET, TODAY, console_client, filled_database, operators
from tests.test_connectors_cli import config_for
from tests.test_console import ALICE, CAROL, audit_rows, problem

PUBLIC = "http://127.0.0.1:8090"
HTML = {"accept": "text/html"}
FORM = {"content-type": "application/x-www-form-urlencoded"}


@pytest.fixture
def setup(xero, tmp_path, monkeypatch):
    """``(client, engine, config, token_dir)``: a console with the Xero tenants' configuration, the token
    store in ``token_dir`` and no refresh token in the environment."""
    token_dir = tmp_path / "tokens"
    monkeypatch.setenv("XERO_CLIENT_SECRET", "demo-secret")
    monkeypatch.delenv("XERO_REFRESH_TOKEN", raising=False)
    monkeypatch.setenv("BROKER_TOKEN_DIR", str(token_dir))
    config = load_config(config_for(tmp_path, xero))
    engine = filled_database(tmp_path)
    app = create_console_app(
        engine,
        operators(),
        SessionSigner(SECRET),
        today=lambda: TODAY,
        reauthoriser=Reauthoriser(config, console_url=PUBLIC),
    )
    yield TestClient(app, follow_redirects=False), engine, config, token_dir
    engine.dispose()


def log_in(client: TestClient, name: str) -> None:
    response = client.post("/login", content=f"username={name}&password={name}-pw&next=/".encode(), headers=FORM)
    assert response.status_code == 303


def consent(client: TestClient, xero, tenant: str = "acme-fm") -> str:
    """Click Re-authorise on the tenant's page and consent at the emulator: the callback's path and query."""
    started = client.post(f"/tenants/{tenant}/reauthorise", headers=HTML)
    assert started.status_code == 303, started.text
    url = started.headers["location"]
    assert url.startswith(f"{xero.url}/identity/connect/authorize?")
    query = parse_qs(urlsplit(url).query)
    assert query["redirect_uri"] == [f"{PUBLIC}/oauth/callback"] and query["code_challenge_method"] == ["S256"]
    back = httpx.get(url, timeout=10).headers["location"]  # the emulator consents at once
    assert back.startswith(f"{PUBLIC}/oauth/callback?code=")
    return back[len(PUBLIC) :]


def test_an_operator_reauthorises_a_tenant_and_the_worker_uses_the_new_tokens(setup, xero):
    client, engine, config, token_dir = setup
    log_in(client, "bob")
    page = client.get("/tenants/acme-fm")
    assert page.status_code == 200 and 'id="reauthorise"' in page.text and "no tokens stored yet" in page.text
    assert f"form-action 'self' {xero.url}" in page.headers["content-security-policy"]
    callback = consent(client, xero)
    done = client.get(callback, headers=HTML)
    assert done.status_code == 303 and done.headers["location"].startswith("/tenants/acme-fm?notice=Re-authorised")
    shown = client.get(done.headers["location"])
    assert "Re-authorised xero for acme-fm" in shown.text and "authorised" in shown.text

    [token_file] = token_dir.glob("*.json")
    stored = json.loads(token_file.read_text())
    assert stored["refresh_token"] in xero._refresh_tokens
    assert [row for row in audit_rows(engine) if row[1] == "reauthorise"] == [
        ("bob", "reauthorise", "acme-fm", "acme-fm", "started"),
        ("bob", "reauthorise", "acme-fm", "acme-fm", "ok"),
    ]
    with engine.connect() as connection:
        details = " ".join(str(r[0]) for r in connection.exec_driver_sql("SELECT detail FROM audit_log"))
    code = parse_qs(urlsplit(callback).query)["code"][0]
    assert code not in details and stored["refresh_token"] not in details and stored["access_token"] not in details

    async def check_both() -> None:  # both tenants of the one Xero connection use the stored tokens
        for tenant in ("acme-fm", "nordic-hvac"):
            connector = build_connector(config, tenant)
            try:
                await connector.check()
            finally:
                await connector.aclose()

    asyncio.run(check_both())

    # the same callback again: the state was single-use
    again = problem(client.get(callback), 400)
    assert again["type"].endswith("/bad-state") and "already used" in again["detail"]
    assert audit_rows(engine)[-1] == ("bob", "reauthorise", "acme-fm", "acme-fm", "refused")


def test_forged_denied_foreign_and_refused_states(setup, xero):
    client, engine, _, _ = setup
    log_in(client, "bob")
    forged = problem(client.get("/oauth/callback?code=x&state=eyJuIjoiMSJ9.c2lnbmF0dXJl"), 400)
    assert "forged" in forged["detail"]
    assert audit_rows(engine)[-1] == ("bob", "reauthorise", None, None, "refused")
    assert "Bad state" in client.get("/oauth/callback?code=x&state=nope", headers=HTML).text  # a page for a browser

    # denied at the billing system
    callback = consent(client, xero)
    state = parse_qs(urlsplit(callback).query)["state"][0]
    denied = problem(client.get("/oauth/callback", params={"error": "access_denied", "state": state}), 400)
    assert denied["type"].endswith("/authorization-denied") and "access_denied" in denied["detail"]

    # a code the token endpoint refuses
    callback = consent(client, xero)
    state = parse_qs(urlsplit(callback).query)["state"][0]
    refused = problem(client.get("/oauth/callback", params={"code": "emu-code-bogus", "state": state}), 502)
    assert refused["type"].endswith("/token-exchange-refused") and "invalid_grant" in refused["detail"]
    assert [row[4] for row in audit_rows(engine) if row[1] == "reauthorise"][-4:] == [
        "started",
        "refused",
        "started",
        "failed",
    ]

    # alice starts by API (bound to her, not to a browser session): bob's session cannot finish it
    started = client.post("/api/tenants/acme-fm/reauthorise", auth=ALICE)
    assert started.status_code == 200 and started.json()["redirect_uri"] == f"{PUBLIC}/oauth/callback"
    back = httpx.get(started.json()["authorize_url"], timeout=10).headers["location"]
    foreign = problem(client.get(back[len(PUBLIC) :]), 400)
    assert "issued to operator alice" in foreign["detail"]


def test_other_tenants_and_a_console_without_configuration_are_404(setup):
    client, engine, _, _ = setup
    assert "no tenant 'acme-fm'" in problem(client.post("/api/tenants/acme-fm/reauthorise", auth=CAROL), 404)["detail"]
    log_in(client, "carol")
    assert client.get("/tenants/acme-fm", headers=HTML).status_code == 404
    assert client.post("/tenants/acme-fm/reauthorise", headers=HTML).status_code == 404
    plain = console_client(engine)
    assert "--config" in problem(plain.post("/api/tenants/acme-fm/reauthorise", auth=ALICE), 404)["detail"]
