"""The Xero connector against its emulator through the conformance kit (connectors.testing)."""

from connectors.testing import make_conformance_tests
from connectors.xero.testing import XeroHarness

TestXeroConformance = make_conformance_tests(XeroHarness)
