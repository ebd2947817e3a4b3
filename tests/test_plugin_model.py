"""The plugin model end to end: a third-party connector package installed with pip is discovered
through its entry point, listed by ``broker connectors list`` and passes the conformance kit; a
plugin that fails to import is listed with the reason and the worker refuses its tenants."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import textwrap
from importlib.metadata import PackageNotFoundError, version
from pathlib import Path

import pytest
import yaml

ROOT = Path(__file__).resolve().parent.parent
EXAMPLE = ROOT / "tests" / "plugins" / "example_connector"
EXAMPLES_CONFIG = ROOT / "broker" / "examples" / "config.yaml"


def _example_installed() -> bool:
    try:
        installed = version("broker-connector-example")
    except PackageNotFoundError:
        return False
    wanted = next(
        line.split('"')[1]
        for line in (EXAMPLE / "pyproject.toml").read_text().splitlines()
        if line.startswith("version")
    )
    return installed == wanted


@pytest.fixture(scope="module")
def example_plugin() -> Path:
    """The example package installed in this interpreter's environment (``make dev`` does it; else pip here)."""
    if not _example_installed():
        proc = subprocess.run(
            [sys.executable, "-m", "pip", "install", "--quiet", "--no-deps", "-e", str(EXAMPLE)],
            capture_output=True,
            check=False,
            text=True,
            timeout=300,
        )
        assert proc.returncode == 0, proc.stdout + proc.stderr
    return EXAMPLE


def broker(*args: str, env: dict | None = None, timeout: float = 120) -> subprocess.CompletedProcess:
    return subprocess.run(
        [sys.executable, "-m", "broker", *args],
        capture_output=True,
        check=False,
        text=True,
        timeout=timeout,
        env={**os.environ, **(env or {})},
        cwd=ROOT,
    )


def make_broken_plugin(tmp_path: Path) -> Path:
    """A distribution on PYTHONPATH whose connector module fails to import (a missing dependency)."""
    site = tmp_path / "site"
    dist = site / "broker_connector_broken-1.0.dist-info"
    dist.mkdir(parents=True)
    (dist / "METADATA").write_text("Metadata-Version: 2.1\nName: broker-connector-broken\nVersion: 1.0\n")
    (dist / "entry_points.txt").write_text("[broker.connectors]\nbroken = broker_connector_broken:BrokenConnector\n")
    (site / "broker_connector_broken.py").write_text("import ledgerly_sdk_that_is_not_installed  # noqa\n")
    return site


def test_example_plugin_is_discovered_by_connectors_list(example_plugin):
    proc = broker("connectors", "list", "--format", "json")
    assert proc.returncode == 0, proc.stderr
    entries = {e["name"]: e for e in json.loads(proc.stdout)}
    example = entries["example"]
    assert example["ok"] is True and example["error"] is None
    assert example["package"] == "broker-connector-example" and example["package_version"] == "0.3.0"
    assert example["version"] == "0.3.0" and example["target"] == "broker_connector_example:LedgerlyConnector"
    assert example["capabilities"]["native_idempotency"] is True and example["capabilities"]["batch_size"] == 1
    assert entries["xero"]["ok"] and entries["xero"]["package"] == "maintenance-billing-broker"
    assert entries["xero"]["capabilities"]["batch_size"] == 50 and entries["xero"]["capabilities"]["oauth2"] is True

    table = broker("connectors", "list")
    assert table.returncode == 0
    assert "example" in table.stdout and "broker-connector-example 0.3.0" in table.stdout


def test_example_plugin_passes_the_conformance_kit(example_plugin):
    """The plugin's own test file (one call to the kit) run from its directory, as its author would."""
    proc = subprocess.run(
        [sys.executable, "-m", "pytest", "-q", "-rs", "-p", "no:cacheprovider"],
        cwd=example_plugin,
        capture_output=True,
        check=False,
        text=True,
        timeout=600,
        env={**os.environ, "PYTHONDONTWRITEBYTECODE": "1"},
    )
    tail = proc.stdout[-3000:]
    assert proc.returncode == 0, tail + proc.stderr[-2000:]
    assert " failed" not in tail and " passed" in tail
    # the scenarios that do not apply to an API-key connector are skipped with the kit's stated reason
    assert "capabilities.oauth2 is False: no token to refresh" in tail


def test_broken_plugin_is_listed_with_its_import_error(tmp_path):
    site = make_broken_plugin(tmp_path)
    proc = broker("connectors", "list", "--format", "json", env={"PYTHONPATH": str(site)})
    assert proc.returncode == 0, proc.stderr
    entries = {e["name"]: e for e in json.loads(proc.stdout)}
    broken = entries["broken"]
    assert broken["ok"] is False and broken["package"] == "broker-connector-broken"
    assert "ModuleNotFoundError" in broken["error"] and "ledgerly_sdk_that_is_not_installed" in broken["error"]
    assert entries["xero"]["ok"] is True  # one broken plugin does not hide the others

    table = broker("connectors", "list", env={"PYTHONPATH": str(site)})
    assert "import error" in table.stdout and "broken" in table.stderr


def test_worker_refuses_a_tenant_whose_connector_failed_to_import(tmp_path):
    site = make_broken_plugin(tmp_path)
    raw = yaml.safe_load(EXAMPLES_CONFIG.read_text(encoding="utf-8"))
    raw["tenants"]["nordic-hvac"]["billing"] = {"system": "broken", "settings": {}}
    config = tmp_path / "config.yaml"
    config.write_text(yaml.safe_dump(raw, sort_keys=False), encoding="utf-8")
    proc = broker(
        "run",
        "--config",
        str(config),
        timeout=60,
        env={
            "PYTHONPATH": str(site),
            "XERO_CLIENT_SECRET": "x",
            "XERO_REFRESH_TOKEN": "y",
            "KAFKA_BOOTSTRAP_SERVERS": "127.0.0.1:1",
            "BROKER_METRICS_PORT": "0",
        },
    )
    assert proc.returncode == 2, proc.stdout + proc.stderr
    message = " ".join((proc.stdout + proc.stderr).split())
    assert "tenants.nordic-hvac.billing.system" in message
    assert "broken" in message and "failed to import" in message and "ledgerly_sdk_that_is_not_installed" in message


def test_registry_keeps_going_after_a_broken_entry_point(tmp_path, monkeypatch):
    """In-process: discover() keeps the error, load() raises LookupError naming the connector."""
    from connectors import registry

    site = make_broken_plugin(tmp_path)
    monkeypatch.syspath_prepend(str(site))
    entries = registry.discover()
    assert entries["broken"].cls is None and "ModuleNotFoundError" in entries["broken"].error
    with pytest.raises(LookupError, match=r"'broken'.*failed to import"):
        registry.load("broken")
    with pytest.raises(LookupError, match="no connector installed"):
        registry.load("no-such-system")
    assert registry.load("xero").name == "xero"


def test_entry_point_must_load_a_connector_with_the_same_name(tmp_path, monkeypatch):
    from connectors import registry

    site = tmp_path / "site"
    dist = site / "broker_connector_wrong-1.0.dist-info"
    dist.mkdir(parents=True)
    (dist / "METADATA").write_text("Metadata-Version: 2.1\nName: broker-connector-wrong\nVersion: 1.0\n")
    (dist / "entry_points.txt").write_text(
        textwrap.dedent("""\
        [broker.connectors]
        notaconnector = broker_connector_wrong:NotAConnector
        misnamed = connectors.xero:XeroConnector
        """)
    )
    (site / "broker_connector_wrong.py").write_text("class NotAConnector:\n    pass\n")
    monkeypatch.syspath_prepend(str(site))
    entries = registry.discover()
    assert "not a connectors.sdk.interface.Connector subclass" in entries["notaconnector"].error
    assert "whose name is 'xero'" in entries["misnamed"].error


def test_registry_is_lazy_and_metadata_first():
    """``available`` imports no connector; ``load("xero")`` imports the Xero connector and no other."""
    script = textwrap.dedent("""\
        import json, sys
        from connectors import registry
        def packages():
            return sorted({m.split(".")[1] for m in sys.modules if m.startswith("connectors.")})
        names = sorted(registry.available())
        before = packages()
        registry.load("xero")
        print(json.dumps([names, before, packages()]))
        """)
    done = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, check=True)
    names, before, after = json.loads(done.stdout)
    assert {"xero", "quickbooks", "zoho", "freshbooks", "moloni", "invoicexpress", "stripe", "paypal"} <= set(names)
    assert before == ["registry", "sdk"]
    assert after == ["registry", "sdk", "xero"]


def test_entry_points_are_read_once_per_sys_path(tmp_path, monkeypatch):
    """Lookups do not rescan every installed distribution: the entry points are read once, again when
    ``sys.path`` changes (a plugin's directory put on it) and after ``registry.refresh()``."""
    from connectors import registry

    reads: list[dict] = []
    real = registry.entry_points
    monkeypatch.setattr(registry, "entry_points", lambda **kw: reads.append(kw) or real(**kw))
    registry.refresh()
    for _ in range(3):
        assert registry.load("xero").name == "xero" and "quickbooks" in registry.available()
    assert reads == [{"group": "broker.connectors"}]

    site = make_broken_plugin(tmp_path)
    monkeypatch.syspath_prepend(str(site))
    assert "broken" in registry.available() and len(reads) == 2

    # a distribution added to a directory already on sys.path: seen once refreshed
    dist = site / "broker_connector_late-1.0.dist-info"
    dist.mkdir()
    (dist / "METADATA").write_text("Metadata-Version: 2.1\nName: broker-connector-late\nVersion: 1.0\n")
    (dist / "entry_points.txt").write_text("[broker.connectors]\nlate = connectors.xero:XeroConnector\n")
    assert "late" not in registry.available() and len(reads) == 2
    registry.refresh()
    assert registry.available()["late"] == "connectors.xero:XeroConnector" and len(reads) == 3
    monkeypatch.undo()
    assert "broken" not in registry.available()
