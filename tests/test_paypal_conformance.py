"""The PayPal Invoicing v2 connector against its emulator through the conformance kit (connectors.testing)."""

from connectors.paypal.testing import PayPalHarness
from connectors.testing import make_conformance_tests

TestPayPalConformance = make_conformance_tests(PayPalHarness)
