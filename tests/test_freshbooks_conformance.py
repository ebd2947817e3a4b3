"""The FreshBooks connector against its emulator through the conformance kit (connectors.testing)."""

from connectors.freshbooks.testing import FreshBooksHarness
from connectors.testing import make_conformance_tests

TestFreshBooksConformance = make_conformance_tests(FreshBooksHarness)
