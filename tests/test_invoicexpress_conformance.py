"""The InvoiceXpress connector against its emulator through the conformance kit (connectors.testing)."""

from connectors.invoicexpress.testing import InvoiceXpressHarness
from connectors.testing import make_conformance_tests

TestInvoiceXpressConformance = make_conformance_tests(InvoiceXpressHarness)
