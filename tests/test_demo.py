"""``broker demo`` end to end (real Tansu, real worker, every emulator) and its sandbox registry."""

from __future__ import annotations

import os
import re
import subprocess
import sys
import time

import pytest
import yaml

from broker.sandboxes import SANDBOXES, start_sandbox
from connectors import registry
from tests.conftest import EXAMPLES, ROOT

SYSTEMS = ("xero", "stripe", "quickbooks", "invoicexpress", "moloni")


def test_every_non_xero_tenant_of_the_example_has_a_sandbox_its_connector_accepts():
    """The settings a sandbox merges into each tenant validate with the connector, customer creation is
    on, and every secret variable they name is provided (under the name the config file uses)."""
    raw = yaml.safe_load((EXAMPLES / "config.yaml").read_text(encoding="utf-8"))
    others = {tid: t for tid, t in raw["tenants"].items() if t["billing"]["system"] != "xero"}
    assert {t["billing"]["system"] for t in others.values()} == set(SYSTEMS) - {"xero"} <= set(SANDBOXES)
    for tid, tenant in others.items():
        configured = tenant["billing"]["settings"]
        sandbox = start_sandbox(tenant["billing"]["system"], configured)
        try:
            merged = {**configured, **sandbox.settings}
            settings = registry.load(tenant["billing"]["system"]).Settings.model_validate(merged)
            assert any(
                getattr(settings, key, False) for key in ("create_customers", "create_contacts", "create_clients")
            ), tid
            for key, name in merged.items():
                if key.endswith("_env"):
                    assert name == configured.get(key, name), (tid, key)  # the config's variable names are kept
                    assert sandbox.env.get(name), (tid, key, name)
            assert sandbox.invoices() == []
            assert sandbox.problems() == []
        finally:
            sandbox.stop()


NO_DEV_EXTRAS = """
import sys
class Blocker:  # the dev extras (pytest, jsonschema, openapi-core, hypothesis) are not installed
    def find_spec(self, name, path=None, target=None):
        if name.split(".")[0] in {"pytest", "_pytest", "jsonschema", "openapi_core", "openapi_schema_validator",
                                  "openapi_spec_validator", "hypothesis"}:
            raise ModuleNotFoundError(f"No module named {name!r}", name=name)
sys.meta_path.insert(0, Blocker())
import broker.demo
from broker.sandboxes import SANDBOXES, start_sandbox
for system in sorted(SANDBOXES):
    sandbox = start_sandbox(system)
    try:
        print(system, len(sandbox.invoices()), sandbox.notes)
    finally:
        sandbox.stop()
"""


def test_sandboxes_start_without_the_dev_extras():
    """``make demo`` installs the runtime only: the harnesses must start their emulators without pytest
    and without the spec validators' libraries (the demo then says validation is off)."""
    proc = subprocess.run(
        [sys.executable, "-c", NO_DEV_EXTRAS], cwd=ROOT, capture_output=True, check=False, text=True, timeout=120
    )
    assert proc.returncode == 0, proc.stderr[-4000:]
    lines = dict(line.split(" ", 1) for line in proc.stdout.splitlines())
    assert set(lines) == set(SANDBOXES)
    assert all(rest.startswith("0 ") for rest in lines.values()), lines
    assert "jsonschema is not installed" in lines["stripe"]


def test_unknown_system_has_no_sandbox():
    with pytest.raises(LookupError, match="no-such-system"):
        start_sandbox("no-such-system")


@pytest.mark.integration
@pytest.mark.timeout(420)
def test_broker_demo_delivers_to_five_billing_systems_once():
    env = {k: v for k, v in os.environ.items() if k != "KAFKA_BOOTSTRAP_SERVERS"}  # the demo's own embedded Tansu
    started = time.monotonic()
    proc = subprocess.run(
        [sys.executable, "-m", "broker", "demo"],
        cwd=ROOT,
        env=env,
        capture_output=True,
        check=False,
        text=True,
        timeout=400,
    )
    elapsed = time.monotonic() - started
    out = proc.stdout + proc.stderr
    assert proc.returncode == 0, out[-6000:]
    for system in SYSTEMS:
        # the per-system summary after the first pass ...
        summary = re.search(rf"^\s*{system}: (\d+) invoices, totals equal ours to the cent", out, re.M)
        assert summary and int(summary.group(1)) >= 3, (system, out[-6000:])
        # ... and the count before/after the second publish
        again = re.search(rf"^\s*{system}: invoices held before (\d+), after (\d+): no second invoice", out, re.M)
        assert again and again.group(1) == again.group(2), (system, out[-6000:])
    assert "second pass: {'already_delivered': " in out and "'created'" not in out.split("second pass:")[1]
    assert "TOTAL MISMATCH" not in out and "MISSING" not in out and "NEW INVOICES" not in out
    assert "demo OK" in out
    assert elapsed < 120, f"the demo took {elapsed:.0f} s"
