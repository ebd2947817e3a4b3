"""``broker demo`` end to end (real Tansu, real worker, every emulator, the operator console) and its
sandbox registry."""

from __future__ import annotations

import re
import signal
import subprocess
import sys
import time
from decimal import Decimal

import pytest
import yaml

from broker.sandboxes import SANDBOXES, start_sandbox
from connectors import registry
from tests.conftest import EXAMPLES, ROOT
from tests.demo_support import get, start_demo_keep_running, stop_demo

SYSTEMS = ("xero", "stripe", "quickbooks", "invoicexpress", "moloni")
#: The lifecycle lines of ``broker demo`` after "replaced" / "cancelled": how the old document was retired,
#: its number and REAL status in the emulator, the new one's (NUMBER: the replaced one's number before -R1).
LIFECYCLE_REPLACED = {
    "xero": r"\(voided\): ([A-Z]+-WO-\d+A)-R1 VOIDED -> \2-R2 AUTHORISED",
    "stripe": r"\(voided\): ([A-Z]+-WO-\d+A)-R1 void -> \2-R2 open",
    "moloni": r"\(credited\): ([A-Z]+-WO-\d+A)-R1 closed -> \2-R2 closed, credit note \2-R1-CN closed",
}
LIFECYCLE_CANCELLED = {
    "xero": r"\(voided\): NUMBER-R1 VOIDED",
    "stripe": r"\(voided\): NUMBER-R1 void",
    "moloni": r"\(credited\): NUMBER-R1 closed, credit note NUMBER-R1-CN closed",
}


def test_every_non_xero_tenant_of_the_example_has_a_sandbox_its_connector_accepts() -> None:
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


def test_sandboxes_start_without_the_dev_extras() -> None:
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


def test_unknown_system_has_no_sandbox() -> None:
    with pytest.raises(LookupError, match="no-such-system"):
        start_sandbox("no-such-system")


@pytest.mark.integration
@pytest.mark.timeout(420)
def test_broker_demo_delivers_to_five_billing_systems_once() -> None:
    """The whole demo with ``--keep-running``: its report, then the operator console it leaves up."""
    started = time.monotonic()
    proc, out = start_demo_keep_running()
    try:
        elapsed = time.monotonic() - started
        _check_report(out)
        assert elapsed < 120, f"the demo took {elapsed:.0f} s"
        _check_console(out)
    finally:
        status = stop_demo(proc)
    assert status == 128 + signal.SIGTERM


def _check_console(out: str) -> None:
    """The console address and login the report prints answer; it lists exactly the invoices the demo
    delivered (and did not replace or cancel since) as delivered."""
    login = re.search(r"^Operator console: (http://127\.0\.0\.1:\d+/)  user demo, password (\S+)$", out, re.M)
    assert login, out[-3000:]
    url, password = login.groups()
    assert get(url + "login")[0] == 200
    assert get(url + "api/invoices")[0] == 401
    assert get(url + "api/invoices", "demo", password + "x")[0] == 401
    status, listed = get(url + "api/invoices?status=delivered&limit=1000", "demo", password)
    assert status == 200, listed
    delivered = re.search(r"^  the (\d+) delivered are the invoices this demo delivered", out, re.M)
    assert delivered, out[-3000:]
    assert listed["total"] == len(listed["items"]) == int(delivered.group(1)) >= 60
    assert {item["status"] for item in listed["items"]} == {"delivered"}
    numbers = {item["invoice_number"] for item in listed["items"]}
    assert all(number in out for number in numbers), sorted(n for n in numbers if n not in out)
    # the lifecycle's replacing documents are delivered, those they replaced or that were cancelled are not
    lifecycle = out.split("Lifecycle: replaced and cancelled documents", 1)[1]
    replacing = re.findall(r" -> (\S+-R2) ", lifecycle)
    retired = re.findall(r"\): (\S+-R1) ", lifecycle)
    assert len(replacing) == 3 and len(retired) == 6, lifecycle
    assert set(replacing) <= numbers and not set(retired) & numbers


def _check_report(out: str) -> None:
    """What the demo prints: every system's invoices, no duplicate, the lifecycle, the periodic invoice."""
    assert "demo OK" in out, out[-6000:]
    for system in SYSTEMS:
        # the per-system summary after the first pass ...
        summary = re.search(rf"^\s*{system}: (\d+) invoices, totals equal ours to the cent", out, re.M)
        assert summary and int(summary.group(1)) >= 3, (system, out[-6000:])
        # ... and the count before/after the second publish
        again = re.search(rf"^\s*{system}: invoices held before (\d+), after (\d+): no second invoice", out, re.M)
        assert again and again.group(1) == again.group(2), (system, out[-6000:])
    assert "second pass: {'already_delivered': " in out and "'created'" not in out.split("second pass:")[1]
    assert "TOTAL MISMATCH" not in out and "MISSING" not in out and "NEW INVOICES" not in out
    # the lifecycle: each replaced / cancelled document with the status its emulator really holds
    lifecycle = out.split("Lifecycle: replaced and cancelled documents", 1)[1]
    assert "expected" not in lifecycle and "SAME TOTAL" not in lifecycle and "CREDITS" not in lifecycle
    for system, replaced in LIFECYCLE_REPLACED.items():
        match = re.search(rf"^  {system}: WO (\S+) replaced {replaced}, billed (\d+\.\d\d)$", lifecycle, re.M)
        assert match and Decimal(match.group(3)) > 0, (system, lifecycle)
        cancelled = LIFECYCLE_CANCELLED[system].replace("NUMBER", match.group(2)[:-1] + "C")
        order = match.group(1)[:-1] + "C"
        assert re.search(rf"^  {system}: WO {order} cancelled {cancelled}, billed 0\.00$", lifecycle, re.M), (
            system,
            lifecycle,
        )
    # the monthly client's February on one invoice: call-outs covered by its contract; T31 hvac 42.00/h
    # 75 min = 1.25 h = 52.50 (tax 12.075 -> 12.08); MON-202 r2 replaced r1: T32 95 -> 105 min = 1.75 h
    # × 36.00 = 63.00 (tax 14.49); T31 130 -> 135 min = 2.25 h × 42.00 = 94.50 (tax 21.735 -> 21.74); fee
    # 120.00 (tax 27.60): net 330.00 + tax 75.91 = 405.91
    periodic = out.split("Periodic invoicing", 1)[1]
    assert (
        "acme-fm:per:CLI-MON-2026-02:r1 -> ACME-PE-CLI-MON-2026-02-R1 in xero; Xero holds total 405.91" in periodic
    ), periodic
    report = re.search(
        r"economic report of acme-fm for February and March 2026 .*? written to\s+(\S+\.(html|csv))", periodic, re.S
    )
    assert report, periodic


def test_lifecycle_fails_on_a_status_the_billing_system_does_not_hold() -> None:
    """``_print_lifecycle`` reads the statuses back from the billing system: a replaced Xero invoice still
    ``AUTHORISED`` (not voided) is printed with what was expected and fails the demo; the right ones pass."""
    from types import SimpleNamespace
    from typing import Any, cast

    from rich.console import Console

    from broker.demo import LifecycleCase, _print_lifecycle
    from connectors.testing.harness import HeldInvoice

    key = "acme-fm:wo:1101"
    tally = cast(
        Any,
        SimpleNamespace(
            outcomes=[
                {"invoice_key": f"{key}A:r1", "outcome": "created", "external_id": "old"},
                {"invoice_key": f"{key}A:r2", "outcome": "created", "external_id": "new", "amendment": "voided"}
                | {"billed_total": "20.00"},
                {"invoice_key": f"{key}C:r1", "outcome": "created", "external_id": "gone"},
                {"invoice_key": f"{key}C:r1", "outcome": "cancelled", "amendment": "voided", "billed_total": "0"},
            ],
            priced={
                f"{key}A:r1": {"invoice_number": "ACME-WO-1101A-R1", "total": "10.00"},
                f"{key}A:r2": {"invoice_number": "ACME-WO-1101A-R2", "total": "20.00"},
                f"{key}C:r1": {"invoice_number": "ACME-WO-1101C-R1", "total": "10.00"},
            },
        ),
    )
    case = LifecycleCase("xero", f"{key}A", f"{key}C")

    def run(old_status: str) -> tuple[bool, str]:
        held = [
            HeldInvoice("old", "ACME-WO-1101A-R1", Decimal("10.00"), status=old_status),
            HeldInvoice("new", "ACME-WO-1101A-R2", Decimal("20.00"), status="AUTHORISED"),
            HeldInvoice("gone", "ACME-WO-1101C-R1", Decimal("10.00"), status="VOIDED"),
        ]
        console = Console(record=True, width=200)
        ok = _print_lifecycle(console, tally, [case], {"xero": lambda: held}, {"xero": list})
        return ok, console.export_text()

    ok, text = run("VOIDED")
    assert ok, text
    assert (
        "xero: WO 1101A replaced (voided): ACME-WO-1101A-R1 VOIDED -> ACME-WO-1101A-R2 AUTHORISED, billed 20.00" in text
    )
    assert "xero: WO 1101C cancelled (voided): ACME-WO-1101C-R1 VOIDED, billed 0.00" in text
    ok, text = run("AUTHORISED")
    assert not ok
    assert "ACME-WO-1101A-R1 AUTHORISED (expected VOIDED) -> ACME-WO-1101A-R2 AUTHORISED" in text
