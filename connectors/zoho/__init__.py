"""Zoho Invoice (API v3) connector and its loopback emulator.

* :class:`ZohoConnector` / :class:`ZohoSettings` – the connector (``connectors.zoho.connector``).
* :mod:`connectors.zoho.mapper` – Invoice -> ``POST /invoices`` JSON (pure), Zoho's tax rounding.
* :mod:`connectors.zoho.emulator` – ``ZohoEmulator``, accounts token endpoint + Invoice API on loopback.
* :mod:`connectors.zoho.testing` – the conformance-kit harness.
"""

from connectors.zoho.connector import DATA_CENTERS, ZohoConnector, ZohoSettings

__all__ = ["DATA_CENTERS", "ZohoConnector", "ZohoSettings"]
