"""A tenant's ``webhooks`` configuration: platforms checked at load, secrets read from the environment
when ``broker ingest`` starts (:func:`broker.intake.webhook_routes_of`)."""

from __future__ import annotations

import pytest
import yaml

from broker.config import ConfigError, load_config
from broker.intake import webhook_routes_of
from tests.conftest import EXAMPLES


def _write(tmp_path, webhooks):
    raw = yaml.safe_load((EXAMPLES / "config.yaml").read_text())
    raw["tenants"]["acme-fm"]["webhooks"] = webhooks
    path = tmp_path / "config.yaml"
    path.write_text(yaml.safe_dump(raw))
    return path


def test_webhook_routes_read_their_secrets_and_api_credentials(tmp_path, monkeypatch):
    path = _write(
        tmp_path,
        {
            "maintainx": {
                "secret_env": "MX_SECRET",
                "api": {"base_url": "https://api.getmaintainx.com/v1", "token_env": "MX_TOKEN"},
                "clients": {"CLI-HAD": "CLI-HAL"},
            },
            "odoo": {"secret_env": "ODOO_SECRET", "default_site": "LIS-HAL-ROOF"},
        },
    )
    monkeypatch.setenv("MX_SECRET", "whsec")
    monkeypatch.delenv("MX_TOKEN", raising=False)
    monkeypatch.setenv("ODOO_SECRET", "url-secret")
    with pytest.raises(ConfigError, match="MX_TOKEN"):
        webhook_routes_of(load_config(path))
    monkeypatch.setenv("MX_TOKEN", "api-token")
    routes = webhook_routes_of(load_config(path))
    assert sorted(routes) == [("maintainx", "acme-fm"), ("odoo", "acme-fm")]
    maintainx, odoo = routes[("maintainx", "acme-fm")], routes[("odoo", "acme-fm")]
    assert (maintainx.secret, maintainx.api_url, maintainx.api_headers, maintainx.per_minute) == (
        b"whsec",
        "https://api.getmaintainx.com/v1",
        {"Authorization": "Bearer api-token"},
        100,
    )
    assert (maintainx.context.tenant, maintainx.context.timezone, maintainx.context.client("CLI-HAD")) == (
        "acme-fm",
        "Europe/Lisbon",
        "CLI-HAL",
    )
    assert (odoo.secret, odoo.api_url, odoo.context.site(None, "x")) == (b"url-secret", None, "LIS-HAL-ROOF")


@pytest.mark.parametrize(
    ("webhooks", "message"),
    [
        ({"upkeep": {"secret_env": "X"}}, "platform 'upkeep' is not one the intake knows"),
        ({"maintainx": {"secret_env": "X"}}, "maintainx: webhooks from maintainx are thin; give 'api'"),
        ({"odoo": {"secret_env": "X", "api": {"base_url": "ftp://x", "token_env": "Y"}}}, "base_url"),
    ],
)
def test_bad_webhook_settings_are_refused_at_load(tmp_path, webhooks, message):
    with pytest.raises(ConfigError, match=message):
        load_config(_write(tmp_path, webhooks))
