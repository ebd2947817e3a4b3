"""CLI behaviour without Kafka: schemas, preview, configuration errors, secrets."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
from pathlib import Path

import pytest
import yaml
from click.testing import CliRunner

from broker.cli import main
from tests.conftest import EXAMPLES, ROOT


def _event(event_id: str, tmp_path: Path) -> Path:
    for line in (EXAMPLES / "events.ndjson").read_text(encoding="utf-8").splitlines():
        if json.loads(line)["id"] == event_id:
            path = tmp_path / "event.json"
            path.write_text(line, encoding="utf-8")
            return path
    raise AssertionError(event_id)


def test_schemas_are_up_to_date():
    # Runs the real command, as CI would after a model change.
    proc = subprocess.run(
        [sys.executable, "-m", "broker", "schemas", "export", "--check"],
        cwd=ROOT,
        capture_output=True,
        check=False,
        text=True,
    )
    assert proc.returncode == 0, proc.stderr + proc.stdout


def test_schemas_check_fails_when_stale(tmp_path):
    runner = CliRunner()
    assert runner.invoke(main, ["schemas", "export", "--dir", str(tmp_path)]).exit_code == 0
    assert runner.invoke(main, ["schemas", "export", "--check", "--dir", str(tmp_path)]).exit_code == 0
    (tmp_path / "invoice.schema.json").write_text("{}\n")
    result = runner.invoke(main, ["schemas", "export", "--check", "--dir", str(tmp_path)])
    assert result.exit_code == 1 and "invoice.schema.json" in result.output


def test_preview_json_of_an_example_event(tmp_path):
    result = CliRunner().invoke(
        main,
        [
            "invoice",
            "preview",
            "--config",
            str(EXAMPLES / "config.yaml"),
            str(_event("maintainx:wo:1001:r1", tmp_path)),
        ],
    )
    assert result.exit_code == 0, result.output
    doc = json.loads(result.output)
    assert (doc["tenant"], doc["invoice_key"], doc["currency"]) == ("acme-fm", "acme-fm:wo:1001:r1", "EUR")
    # Hand-computed (see tests/test_pricing.py::test_demo_wo_1001_two_technicians_by_hand):
    # 45.00 + 94.50 + 36.00 + 10.00 + 46.20 + 72.00 + 6.50 = 310.20; VAT 71.36; total 381.56
    assert [ln["net"] for ln in doc["lines"]] == ["45.00", "94.50", "36.00", "10.00", "46.20", "72.00", "6.50"]
    assert (doc["net_total"], doc["tax_total"], doc["total"]) == ("310.20", "71.36", "381.56")
    assert (doc["cost_total"], doc["margin"]) == ("191.80", "118.40")  # cost on worked time
    first = doc["lines"][1]
    assert set(first) >= {"description", "quantity", "unit_price", "net", "tax_rate", "tax", "total", "source", "rule"}
    assert (first["quantity"], first["unit_price"], first["tax"], first["total"]) == (
        "2.25",
        "42.00",
        "21.74",
        "116.24",
    )
    assert first["source"] == "time_entry:TE-1001-1"


def test_preview_quote_with_its_own_tax_rate(tmp_path):
    result = CliRunner().invoke(
        main,
        [
            "invoice",
            "preview",
            "--config",
            str(EXAMPLES / "config.yaml"),
            str(_event("erpnext:qt:Q-2026-012:r1", tmp_path)),
        ],
    )
    doc = json.loads(result.output)
    assert (doc["net_total"], doc["tax_total"], doc["total"]) == ("1455.00", "330.40", "1785.40")


def test_preview_table_shows_source_rule_cost_and_margin(tmp_path):
    result = CliRunner().invoke(
        main,
        [
            "invoice",
            "preview",
            "--config",
            str(EXAMPLES / "config.yaml"),
            str(_event("maintainx:wo:1001:r1", tmp_path)),
            "--format",
            "table",
        ],
    )
    assert result.exit_code == 0
    assert "ACME-WO-1001-R1" in result.output and "381.56" in result.output
    assert "time_entry:TE-1001-1" in result.output and "rate:technician:T32" in result.output
    assert "margin 118.40 EUR" in result.output


def test_preview_of_invalid_event_names_the_field(tmp_path):
    result = CliRunner().invoke(
        main,
        [
            "invoice",
            "preview",
            "--config",
            str(EXAMPLES / "config.yaml"),
            str(_event("maintainx:wo:1042:r1", tmp_path)),
        ],
    )
    assert result.exit_code == 1
    assert "data.parts.0.quantity" in result.output


def _bad_config(tmp_path: Path, mutate) -> Path:
    raw = yaml.safe_load((EXAMPLES / "config.yaml").read_text(encoding="utf-8"))
    mutate(raw)
    path = tmp_path / "bad.yaml"
    path.write_text(yaml.safe_dump(raw))
    return path


def test_config_error_exits_2_naming_path_and_value(tmp_path):
    def negative_rate(raw):
        raw["tenants"]["acme-fm"]["rate_card"]["skills"]["hvac"]["hourly_rate"] = "-5"

    path = _bad_config(tmp_path, negative_rate)
    proc = subprocess.run(
        [sys.executable, "-m", "broker", "run", "--config", str(path)],
        cwd=ROOT,
        capture_output=True,
        check=False,
        text=True,
        timeout=60,
    )
    assert proc.returncode == 2
    assert "tenants.acme-fm.rate_card.skills.hvac.hourly_rate" in proc.stderr and "'-5'" in proc.stderr


def test_bad_connector_setting_exits_2(tmp_path):
    def bad_status(raw):
        raw["tenants"]["nordic-hvac"]["billing"]["settings"]["invoice_status"] = "PAID"

    result = CliRunner().invoke(main, ["run", "--strict", "--config", str(_bad_config(tmp_path, bad_status))])
    assert result.exit_code == 2
    assert "tenants.nordic-hvac.billing.settings.invoice_status" in result.output


def test_missing_secret_names_the_variable(tmp_path):
    env = {k: v for k, v in os.environ.items() if k not in ("XERO_CLIENT_SECRET", "XERO_REFRESH_TOKEN")}
    proc = subprocess.run(
        [sys.executable, "-m", "broker", "run", "--config", str(EXAMPLES / "config.yaml")],
        cwd=ROOT,
        capture_output=True,
        check=False,
        text=True,
        timeout=60,
        env=env,
    )
    assert proc.returncode == 2
    assert "XERO_CLIENT_SECRET" in proc.stderr and "tenants.acme-fm.billing.settings.client_secret_env" in proc.stderr


def test_secret_values_are_never_printed(tmp_path):
    def bad_rate(raw):
        raw["tenants"]["acme-fm"]["rate_card"]["minimum_billable_minutes"] = -1

    env = {**os.environ, "XERO_CLIENT_SECRET": "s3cr3t-value-123", "XERO_REFRESH_TOKEN": "rt-value-456"}
    proc = subprocess.run(
        [sys.executable, "-m", "broker", "run", "--config", str(_bad_config(tmp_path, bad_rate))],
        cwd=ROOT,
        capture_output=True,
        check=False,
        text=True,
        timeout=60,
        env=env,
    )
    assert proc.returncode == 2
    assert "s3cr3t-value-123" not in proc.stderr + proc.stdout and "rt-value-456" not in proc.stderr + proc.stdout


def test_publish_requires_a_cluster(tmp_path):
    env = {k: v for k, v in os.environ.items() if k != "KAFKA_BOOTSTRAP_SERVERS"}
    result = CliRunner(env=env).invoke(
        main, ["publish", str(EXAMPLES / "events.ndjson")], env={"KAFKA_BOOTSTRAP_SERVERS": None}
    )
    assert result.exit_code == 2 and "bootstrap-servers" in result.output


@pytest.mark.parametrize("command", [["publish", str(EXAMPLES / "events.ndjson")], ["dlq", "list"]])
def test_unreachable_kafka_is_reported_within_the_connect_timeout(command):
    from broker.embedded import free_port

    address = f"127.0.0.1:{free_port()}"  # nothing listens there
    env = {**os.environ, "KAFKA_CONNECT_TIMEOUT": "1"}
    started = time.monotonic()
    proc = subprocess.run(
        [sys.executable, "-m", "broker", *command, "--bootstrap-servers", address],
        cwd=ROOT,
        capture_output=True,
        check=False,
        text=True,
        timeout=60,
        env=env,
    )
    assert proc.returncode == 2, proc.stderr[-2000:]
    assert f"error: cannot reach Kafka at {address} within 1 s (KAFKA_CONNECT_TIMEOUT)" in proc.stderr
    assert "Traceback" not in proc.stderr
    assert time.monotonic() - started < 20


def test_config_check_names_each_tenant_that_cannot_run_and_suggests_known_keys(tmp_path):
    env = {"XERO_CLIENT_SECRET": "x", "XERO_REFRESH_TOKEN": "y", "STRIPE_SECRET_KEY": "s"}
    for name in ("QBO_CLIENT_SECRET", "QBO_REFRESH_TOKEN", "INVOICEXPRESS_API_KEY", "MOLONI_CLIENT_SECRET"):
        env[name] = "v"
    env["MOLONI_REFRESH_TOKEN"] = "v"
    runner = CliRunner()
    good = runner.invoke(main, ["config", "check", "--config", str(EXAMPLES / "config.yaml")], env=env)
    rows = " ".join(good.output.replace("│", " ").split())
    assert good.exit_code == 0, rows
    for tenant, system in (("acme-fm", "xero"), ("liffey-fs", "stripe"), ("sotavento-tec", "moloni")):
        assert f"{tenant} {system} ok" in rows
    missing = runner.invoke(
        main, ["config", "check", "--config", str(EXAMPLES / "config.yaml")], env={**env, "STRIPE_SECRET_KEY": ""}
    )
    text = " ".join(missing.output.replace("│", " ").split())
    assert missing.exit_code == 1
    assert "liffey-fs stripe missing secret: environment variable STRIPE_SECRET_KEY" in text

    def typo(raw):
        raw["tenants"]["acme-fm"]["rate_card"]["minimum_billable_minute"] = raw["tenants"]["acme-fm"]["rate_card"].pop(
            "minimum_billable_minutes"
        )

    bad = runner.invoke(main, ["config", "check", "--config", str(_bad_config(tmp_path, typo))], env=env)
    assert bad.exit_code == 2
    assert (
        "tenants.acme-fm.rate_card.minimum_billable_minute: unknown field; did you mean minimum_billable_minutes?"
        in " ".join(bad.output.split())
    )


def test_a_malformed_events_file_or_setting_is_named_without_a_traceback(tmp_path):
    bad = tmp_path / "events.json"
    bad.write_text('[{"a": 1},\n{"b": 2')
    runner = CliRunner()
    result = runner.invoke(main, ["publish", str(bad), "--bootstrap-servers", "127.0.0.1:1"])
    assert result.exit_code == 2
    assert f"cannot read events: {bad}: not a JSON array of events: Expecting ',' delimiter at line 2 column 8" in (
        " ".join(result.output.split())
    )
    result = runner.invoke(
        main, ["run", "--config", str(EXAMPLES / "config.yaml")], env={"BROKER_METRICS_PORT": "nine-one-oh-eight"}
    )
    assert result.exit_code == 2
    assert "settings error: environment variable BROKER_METRICS_PORT='nine-one-oh-eight' is not an integer" in (
        " ".join(result.output.split())
    )


def test_a_sandbox_port_in_use_is_a_clear_error():
    import socket

    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        result = CliRunner().invoke(main, ["sandbox", "xero", "--port", str(port)])
    assert result.exit_code == 2
    assert f"127.0.0.1:{port} is in use: choose another with --port" in " ".join(result.output.split())


def test_config_yaml_is_read_by_the_c_loader_with_the_same_data_and_errors(tmp_path):
    """``load_yaml`` (libyaml when PyYAML has it): the same data as ``yaml.safe_load``; malformed YAML
    is refused with the pure loader's message (line, column and the offending line)."""
    from broker.config import YAML_LOADER, ConfigError, load_config, load_yaml

    assert YAML_LOADER is getattr(yaml, "CSafeLoader", yaml.SafeLoader)
    text = (EXAMPLES / "config.yaml").read_text(encoding="utf-8")
    assert load_yaml(text) == yaml.safe_load(text)
    bad = "tenants:\n  acme-fm:\n    name: ACME\n   currency: [EUR, GBP\n"
    with pytest.raises(yaml.YAMLError) as pure:
        yaml.safe_load(bad)
    with pytest.raises(yaml.YAMLError) as ours:
        load_yaml(bad)
    assert str(ours.value) == str(pure.value)
    path = tmp_path / "config.yaml"
    path.write_text(bad, encoding="utf-8")
    with pytest.raises(ConfigError) as refused:
        load_config(path)
    assert str(refused.value) == (
        f"{path}: not valid YAML: while parsing a block mapping\n"
        '  in "<unicode string>", line 2, column 3:\n'
        "      acme-fm:\n"
        "      ^\n"
        "expected <block end>, but found '<block mapping start>'\n"
        '  in "<unicode string>", line 4, column 4:\n'
        "       currency: [EUR, GBP\n"
        "       ^"
    )
