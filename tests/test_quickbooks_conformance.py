"""The QuickBooks Online connector against its emulator through the conformance kit (connectors.testing)."""

from connectors.quickbooks.testing import QuickBooksHarness
from connectors.testing import make_conformance_tests

TestQuickBooksConformance = make_conformance_tests(QuickBooksHarness)
