"""The conformance kit against the Stripe connector and its emulator."""

from connectors.stripe.testing import StripeHarness
from connectors.testing import make_conformance_tests

TestStripeConformance = make_conformance_tests(StripeHarness)
