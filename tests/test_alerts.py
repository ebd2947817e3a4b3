"""Dashboards and alerts in the repo (``deploy/``): the alert rules pass ``promtool check rules`` and
their unit tests (``promtool test rules``); every PromQL expression of the Grafana dashboard parses
(checked by promtool as a recording rule); every metric the rules and the dashboard use is one the
broker exports; compose provisions the dashboard and loads the rules.

promtool comes with Debian's ``prometheus`` package (``.ci/run`` installs it). Without it the tests
fail in CI and are skipped elsewhere, saying what to install."""

from __future__ import annotations

import json
import os
import re
import shutil
import subprocess
from pathlib import Path

import pytest
import yaml
from prometheus_client import REGISTRY, generate_latest

from broker import intake, metrics  # noqa: F401 - register every metric the broker exports

ROOT = Path(__file__).resolve().parent.parent
DEPLOY = ROOT / "deploy"
DASHBOARD = DEPLOY / "grafana" / "dashboards" / "broker.json"
INSTALL = "promtool is missing: install Debian's prometheus package (apt-get install prometheus)"


def _promtool() -> str:
    found = shutil.which("promtool")
    if found is None:
        if os.environ.get("CI"):
            pytest.fail(INSTALL)
        pytest.skip(INSTALL)
    return found


def _run(*args: str, cwd: Path = DEPLOY) -> str:
    proc = subprocess.run([_promtool(), *args], cwd=cwd, capture_output=True, text=True, timeout=120, check=False)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    return proc.stdout


def _dashboard_exprs() -> list[str]:
    board = json.loads(DASHBOARD.read_text())
    return [target["expr"] for panel in board["panels"] for target in panel["targets"]]


def _rule_exprs() -> list[str]:
    rules = yaml.safe_load((DEPLOY / "alerts.yml").read_text())
    return [rule["expr"] for group in rules["groups"] for rule in group["rules"]]


def _exported() -> set[str]:
    page = generate_latest(REGISTRY).decode()
    names = set(re.findall(r"^# TYPE (\S+) ", page, re.MULTILINE))
    out = set(names)
    for name in names:  # the series a counter or histogram exposes
        out |= {f"{name}_total", f"{name}_bucket", f"{name}_count", f"{name}_sum"}
    return out


def test_the_alert_rules_are_valid_and_their_unit_tests_pass():
    assert "SUCCESS: 5 rules found" in _run("check", "rules", "alerts.yml")
    assert "SUCCESS" in _run("test", "rules", "alerts.test.yml")


def test_every_dashboard_expression_parses(tmp_path):
    rules = {
        "groups": [
            {
                "name": "dashboard",
                "rules": [{"record": f"dashboard:expr{i}", "expr": e} for i, e in enumerate(_dashboard_exprs())],
            }
        ]
    }
    path = tmp_path / "dashboard-rules.yml"
    path.write_text(yaml.safe_dump(rules))
    assert f"SUCCESS: {len(_dashboard_exprs())} rules found" in _run("check", "rules", str(path), cwd=tmp_path)


def test_every_metric_used_by_the_rules_and_the_dashboard_is_exported():
    used = {name for expr in _rule_exprs() + _dashboard_exprs() for name in re.findall(r"\bbroker_[a-z_]+", expr)}
    assert len(used) >= 12
    assert sorted(used - _exported()) == []


def test_the_dashboard_covers_what_operators_watch_and_compose_provisions_it():
    board = json.loads(DASHBOARD.read_text())
    titles = " ".join(panel["title"] for panel in board["panels"]).lower()
    for topic in ("delivered", "latency", "lag", "dead letters", "parked", "throttled", "errors by class"):
        assert topic in titles, topic
    assert len({panel["id"] for panel in board["panels"]}) == len(board["panels"])
    compose = yaml.safe_load((ROOT / "docker-compose.yml").read_text())
    grafana = compose["services"]["grafana"]["volumes"]
    assert "./deploy/grafana/dashboards:/var/lib/grafana/dashboards:ro" in grafana
    provider = yaml.safe_load((DEPLOY / "grafana" / "provisioning" / "dashboards" / "broker.yml").read_text())
    assert provider["providers"][0]["options"]["path"] == "/var/lib/grafana/dashboards"
    source = yaml.safe_load((DEPLOY / "grafana" / "provisioning" / "datasources" / "prometheus.yml").read_text())
    assert (
        source["datasources"][0]["uid"] == {t["datasource"]["uid"] for p in board["panels"] for t in p["targets"]}.pop()
    )
    prometheus = compose["services"]["prometheus"]["volumes"]
    assert "./deploy/alerts.yml:/etc/prometheus/alerts.yml:ro" in prometheus
    assert "/etc/prometheus/alerts.yml" in yaml.safe_load((DEPLOY / "prometheus.yml").read_text())["rule_files"]
