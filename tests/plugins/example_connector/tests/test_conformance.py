"""The example connector against its emulator through the broker's conformance kit."""

from broker_connector_example.testing import LedgerlyHarness

from connectors.testing import make_conformance_tests

TestLedgerlyConformance = make_conformance_tests(LedgerlyHarness)
