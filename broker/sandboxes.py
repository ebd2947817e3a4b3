"""Billing-system sandboxes for ``broker demo``: each connector's emulator, started through its harness.

Every connector ships a conformance harness (``connectors/<system>/testing.py``, see
:class:`connectors.testing.ConnectorHarness`) that starts its emulator on a free loopback port and
knows the connector settings pointing at it, the secrets those settings name and how to read back
the invoices the emulator holds. :data:`SANDBOXES` maps a ``billing.system`` to that harness;
:func:`start_sandbox` starts one and returns a :class:`Sandbox`: the settings to merge into a
tenant's ``billing.settings`` (with customer creation enabled, so clients without ``contact_id``
are created by name), the secret environment variables and a reader of the held invoices.

Xero is not listed: the demo runs :class:`connectors.xero.emulator.XeroEmulator` itself (one
emulator for every Xero organisation of the config, as ``broker sandbox xero`` and compose do).
"""

from __future__ import annotations

import importlib
import sys
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from connectors.testing.harness import ConnectorHarness, HeldInvoice

#: billing system -> ``module:HarnessClass`` of its emulator harness.
SANDBOXES: dict[str, str] = {
    "stripe": "connectors.stripe.testing:StripeHarness",
    "quickbooks": "connectors.quickbooks.testing:QuickBooksHarness",
    "invoicexpress": "connectors.invoicexpress.testing:InvoiceXpressHarness",
    "moloni": "connectors.moloni.testing:MoloniHarness",
}


def harness_class(system: str) -> type[ConnectorHarness]:
    """The harness class of ``system``; ``LookupError`` when no sandbox is registered for it."""
    try:
        path = SANDBOXES[system]
    except KeyError:
        raise LookupError(
            f"no sandbox (emulator harness) for billing system {system!r}; known: {', '.join(sorted(SANDBOXES))}"
        ) from None
    module, _, name = path.partition(":")
    harness: type[ConnectorHarness] = getattr(importlib.import_module(module), name)  # SANDBOXES names harnesses
    return harness


@dataclass
class Sandbox:
    """A running emulator of one billing system.

    ``settings``: merge into the tenant's ``billing.settings`` (URLs, account ids, tax mappings,
    customer creation on, names of the secret variables); ``env``: those secret variables;
    ``notes``: what the demo should tell (e.g. spec validation off without the dev extras).
    """

    system: str
    harness: ConnectorHarness
    settings: dict[str, Any] = field(default_factory=dict)
    env: dict[str, str] = field(default_factory=dict)
    notes: list[str] = field(default_factory=list)

    @property
    def url(self) -> str:
        """The emulator's base URL (its ``api_url`` setting without an ``{account}`` placeholder)."""
        return str(self.settings.get("api_url", "")).replace("/{account}", "")

    def invoices(self) -> list[HeldInvoice]:
        """Every invoice the emulator holds (our invoice number in ``number``, its own ``total``)."""
        return self.harness.invoices()

    def problems(self) -> list[str]:
        """What the emulator saw wrong (spec-invalid requests, its own crashes); empty when healthy."""
        try:
            self.harness.assert_healthy()
        except AssertionError as exc:
            return [str(exc) or "emulator unhealthy"]
        return []

    def stop(self) -> None:
        """Stop the emulator."""
        self.harness.stop()


def start_sandbox(system: str, tenant_settings: Mapping[str, Any] | None = None) -> Sandbox:
    """Start ``system``'s emulator and return the :class:`Sandbox`.

    ``tenant_settings``: the tenant's configured ``billing.settings``; the secret variables it
    names (``*_env`` keys) are kept, and given the emulator's secrets, so the demo's environment
    uses the names the configuration file shows.
    """
    harness = harness_class(system)()
    notes = _start(harness)
    try:
        settings = {**harness.settings(), **harness.contact_creation_settings(True)}
        env = dict(harness.env())
        for key, name in list(settings.items()):
            wanted = (tenant_settings or {}).get(key)
            if (
                key.endswith("_env")
                and isinstance(name, str)
                and name in env
                and isinstance(wanted, str)
                and wanted
                and wanted != name
                and wanted not in env
            ):
                env[wanted] = env.pop(name)
                settings[key] = wanted
    except BaseException:
        harness.stop()
        raise
    return Sandbox(system=system, harness=harness, settings=settings, env=env, notes=notes)


def _start(harness: ConnectorHarness) -> list[str]:
    """Start the harness's emulator. Harnesses validate every request against the billing system's
    official spec when the repository has it (``SPEC``), with validators from the dev extras; without
    them (``make demo`` installs the runtime only) the emulator runs unvalidated, and a note says so."""
    try:
        harness.start()
        return []
    except ModuleNotFoundError as exc:
        module = sys.modules.get(type(harness).__module__)
        spec = getattr(module, "SPEC", None)
        if module is None or not isinstance(spec, Path) or not spec.exists():
            raise
        vars(module)["SPEC"] = spec.with_name(spec.name + ".not-loaded")  # the harness then starts unvalidated
        try:
            harness.start()
        finally:
            vars(module)["SPEC"] = spec
        missing = exc.name or str(exc)
        return [f"requests not validated against {spec.name} ({missing} is not installed: pip install -e '.[dev]')"]


__all__ = ["SANDBOXES", "Sandbox", "harness_class", "start_sandbox"]
