"""The conformance kit against the Zoho Invoice connector and its emulator."""

from connectors.testing import make_conformance_tests
from connectors.zoho.testing import ZohoHarness

TestZohoConformance = make_conformance_tests(ZohoHarness)
