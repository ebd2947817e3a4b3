"""The conformance kit itself: its hand-checked invoices, its harness validation, and that it fails
connectors that break the contract (a kit that passes everything proves nothing)."""

from __future__ import annotations

import os
import subprocess
import sys
import textwrap
import xml.etree.ElementTree as ET
from collections.abc import Mapping
from decimal import Decimal
from pathlib import Path
from typing import ClassVar

import pytest

from connectors.testing import SCENARIOS, ConnectorHarness, KitSetupError, make_conformance_tests
from connectors.testing.invoices import (
    long_description,
    make_invoice,
    many_lines,
    mixed_rate_lines,
    negative_line,
    standard_lines,
    zero_line,
)
from connectors.xero.testing import XeroHarness


@pytest.mark.parametrize(
    ("lines", "net", "tax", "total"),
    [
        (standard_lines(), "174.00", "40.03", "214.03"),
        (mixed_rate_lines(), "75.47", "14.48", "89.95"),
        (many_lines(500), "512.50", "60.00", "572.50"),
        (zero_line(), "60.00", "13.80", "73.80"),
        (negative_line(), "90.00", "20.70", "110.70"),
    ],
)
def test_kit_invoices_have_the_hand_checked_totals(lines, net, tax, total):
    inv = make_invoice("CF-X-1-R1", lines)
    assert (inv.net_total, inv.tax_total, inv.total) == (Decimal(net), Decimal(tax), Decimal(total))
    assert sum(ln.tax for ln in inv.lines) == inv.tax_total  # per-line rounding, then the sum


def test_kit_long_description_and_numbers():
    assert len(long_description(4000)) == 4000 and not long_description(4000).isascii()
    assert len(many_lines(500)) == 500


def test_generated_class():
    cls = make_conformance_tests(XeroHarness)
    assert cls.__name__ == "TestXeroConnectorConformance" and cls.__test__ is True and cls.harness_class is XeroHarness
    assert cls.__module__ == __name__
    assert {name[5:] for name in dir(cls) if name.startswith("test_")} == set(SCENARIOS)


def test_skipping_requires_a_reason_and_a_known_scenario():
    class NoReason(XeroHarness):
        skip: ClassVar[Mapping[str, str]] = {"batch": "  "}

    class Typo(XeroHarness):
        skip: ClassVar[Mapping[str, str]] = {"batches": "no batch endpoint"}

    class BadHostile(XeroHarness):
        hostile: ClassVar[Mapping[str, str]] = {"many_lines": "maybe"}  # not a HostileExpectation: the point

    class NoConnector(ConnectorHarness):
        pass

    with pytest.raises(KitSetupError, match="requires a stated reason"):
        make_conformance_tests(NoReason)
    with pytest.raises(KitSetupError, match="unknown scenario 'batches'"):
        make_conformance_tests(Typo)
    with pytest.raises(KitSetupError, match="'deliver', 'reject' or 'either'"):
        make_conformance_tests(BadHostile)
    with pytest.raises(KitSetupError, match="connector_cls"):
        make_conformance_tests(NoConnector)


BROKEN = '''
from decimal import Decimal
from connectors.sdk.http import Auth
from connectors.sdk.oauth2 import refresh_grant
from connectors.sdk.errors import PermanentError, RetryableError
from connectors.testing import make_conformance_tests
from connectors.xero import XeroConnector
from connectors.xero.testing import XeroHarness
import os


class LeakyXero(XeroConnector):
    """Puts the client secret in its validation errors."""
    async def deliver(self, invoice):
        try:
            return await super().deliver(invoice)
        except PermanentError as exc:
            raise PermanentError(f"{exc} (client secret {os.environ['XERO_CLIENT_SECRET']})") from None


class PermanentOn5xx(XeroConnector):
    """Classifies a 503 as permanent."""
    async def deliver(self, invoice):
        try:
            return await super().deliver(invoice)
        except RetryableError as exc:
            raise PermanentError(str(exc), http_status=exc.http_status) from None


class OwnRefresh(Auth):
    """Bearer tokens the connector refreshes by itself on every 401: no lock, no token store."""
    def __init__(self, connector):
        self.connector, self.access, self.refresh = connector, None, None

    async def apply(self, headers, params):
        if self.access is None:
            await self.renew(None)
        headers["Authorization"] = f"Bearer {self.access.get_secret_value()}"
        return self.access

    async def renew(self, used):
        c = self.connector
        tokens = await refresh_grant(c.http(), c.token_url, client_id=c.settings.client_id,
                                     client_secret=c.secret("client_secret_env"),
                                     refresh_token=self.refresh or c.secret("refresh_token_env"))
        self.access, self.refresh = tokens.access_token, tokens.refresh_token
        return True


class NoSingleFlight(XeroConnector):
    """Refreshes on every 401 by itself, without the shared token manager."""
    def make_auth(self):
        return OwnRefresh(self)


class WrongTotals(XeroConnector):
    """Sends one cent more tax per line than we computed."""
    async def deliver(self, invoice):
        lines = [ln.model_copy(update={"tax": ln.tax + Decimal("0.01")}) for ln in invoice.lines]
        return await super().deliver(invoice.model_copy(update={"lines": lines}))


def harness(cls):
    return type(f"{cls.__name__}Harness", (XeroHarness,), {"connector_cls": cls})


TestLeaky = make_conformance_tests(harness(LeakyXero), name="TestLeaky")
TestPermanentOn5xx = make_conformance_tests(harness(PermanentOn5xx), name="TestPermanentOn5xx")
TestNoSingleFlight = make_conformance_tests(harness(NoSingleFlight), name="TestNoSingleFlight")
TestWrongTotals = make_conformance_tests(harness(WrongTotals), name="TestWrongTotals")
'''


def test_the_kit_fails_connectors_that_break_the_contract(tmp_path):
    (tmp_path / "test_broken.py").write_text(textwrap.dedent(BROKEN))
    report = tmp_path / "report.xml"
    selection = (
        "(TestLeaky and (test_secrets or test_happy_path)) or (TestPermanentOn5xx and test_server_error) "
        "or (TestNoSingleFlight and test_token_refresh and not processes) or (TestWrongTotals and test_happy_path)"
    )
    proc = subprocess.run(
        [
            sys.executable,
            "-m",
            "pytest",
            "-q",
            "-p",
            "no:cacheprovider",
            "-k",
            selection,
            f"--junitxml={report}",
            "test_broken.py",
        ],
        cwd=tmp_path,
        capture_output=True,
        check=False,
        text=True,
        timeout=300,
        env={**os.environ, "PYTHONPATH": str(Path(__file__).resolve().parent.parent)},
    )
    assert report.exists(), proc.stdout[-3000:] + proc.stderr[-3000:]
    outcomes = {}
    for case in ET.parse(report).iter("testcase"):
        failure = case.find("failure")
        outcomes[f"{case.get('classname').split('.')[-1]}::{case.get('name')}"] = (
            "failed" if failure is not None else "passed",
            (failure.get("message") or "") if failure is not None else "",
        )
    assert outcomes["TestLeaky::test_happy_path"][0] == "passed"  # the leak is only in errors
    assert outcomes["TestLeaky::test_secrets"][0] == "failed"
    assert "secrets leaked" in outcomes["TestLeaky::test_secrets"][1]
    assert outcomes["TestPermanentOn5xx::test_server_error"][0] == "failed"
    assert outcomes["TestNoSingleFlight::test_token_refresh"][0] == "failed"
    assert "refreshes, expected 1" in outcomes["TestNoSingleFlight::test_token_refresh"][1]
    assert outcomes["TestWrongTotals::test_happy_path"][0] == "failed"
    assert "billing system total" in outcomes["TestWrongTotals::test_happy_path"][1]
    # no secret in the kit's own failure report either
    assert "conf-xero-secret-" not in outcomes["TestLeaky::test_secrets"][1]


def test_scenario_selection_option(tmp_path):
    (tmp_path / "test_xero_kit.py").write_text(
        "from connectors.testing import make_conformance_tests\n"
        "from connectors.xero.testing import XeroHarness\n"
        "TestX = make_conformance_tests(XeroHarness)\n"
    )
    proc = subprocess.run(
        [
            sys.executable,
            "-m",
            "pytest",
            "-q",
            "-p",
            "no:cacheprovider",
            "--conformance-scenario",
            "find_absent",
            "--conformance-scenario",
            "check",
            "-m",
            "conformance",
            "test_xero_kit.py",
        ],
        cwd=tmp_path,
        capture_output=True,
        check=False,
        text=True,
        timeout=300,
    )
    assert proc.returncode == 0, proc.stdout[-2000:]
    assert "2 passed" in proc.stdout and "deselected" in proc.stdout
    bad = subprocess.run(
        [
            sys.executable,
            "-m",
            "pytest",
            "-q",
            "-p",
            "no:cacheprovider",
            "--conformance-scenario",
            "nope",
            "test_xero_kit.py",
        ],
        cwd=tmp_path,
        capture_output=True,
        check=False,
        text=True,
        timeout=300,
    )
    assert bad.returncode != 0 and "unknown nope" in bad.stdout + bad.stderr


def test_plugin_isolates_the_token_store():
    from connectors.testing import plugin

    if plugin._PRESET_TOKEN_DIR:
        pytest.skip("BROKER_TOKEN_DIR was set before pytest started: the plugin keeps it")
    token_dir = os.environ.get("BROKER_TOKEN_DIR", "")
    assert token_dir and "broker-tokens" in token_dir  # set by connectors.testing.plugin for every test
