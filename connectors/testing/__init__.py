"""Conformance kit for billing-system connectors (a pytest plugin, see ``docs/connectors.md``).

A plugin author writes a :class:`ConnectorHarness` for their connector and emulator, and their
whole conformance test file is::

    from connectors.testing import make_conformance_tests
    from my_plugin.testing import MyHarness

    TestMyConformance = make_conformance_tests(MyHarness)

The scenarios are listed in :data:`SCENARIOS`; ``MyHarness.skip = {"batch": "reason"}`` skips one
with a stated reason. The pytest plugin (:mod:`connectors.testing.plugin`, registered through the
``pytest11`` entry point) adds the ``conformance`` marker, ``--conformance-scenario`` selection and
an isolated token store per test.
"""

from typing import TYPE_CHECKING, Any

from connectors.testing.harness import HOSTILE_CASES, ConnectorHarness, HeldInvoice, HostileExpectation
from connectors.testing.invoices import make_invoice, make_line

if TYPE_CHECKING:  # type checkers see the lazy names with their real types
    from connectors.testing.suite import (
        SCENARIOS,
        ConnectorConformance,
        Kit,
        KitSetupError,
        make_conformance_tests,
        validate_harness,
    )

#: Names of :mod:`connectors.testing.suite`, imported on first use: the suite needs pytest (a dev
#: extra), the harnesses do not — ``broker demo`` starts the emulators through them without pytest.
_SUITE_NAMES = frozenset(
    {
        "SCENARIOS",
        "ConnectorConformance",
        "Kit",
        "KitSetupError",
        "make_conformance_tests",
        "validate_harness",
    }
)


def __getattr__(name: str) -> Any:
    if name in _SUITE_NAMES:
        from connectors.testing import suite

        return getattr(suite, name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


__all__ = [
    "HOSTILE_CASES",
    "SCENARIOS",
    "ConnectorConformance",
    "ConnectorHarness",
    "HeldInvoice",
    "HostileExpectation",
    "Kit",
    "KitSetupError",
    "make_conformance_tests",
    "make_invoice",
    "make_line",
    "validate_harness",
]
