"""The Moloni connector against its emulator through the conformance kit (connectors.testing)."""

from connectors.moloni.testing import MoloniHarness
from connectors.testing import make_conformance_tests

TestMoloniConformance = make_conformance_tests(MoloniHarness)
