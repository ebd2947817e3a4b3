"""Zoho Invoice (API v3) connector and its loopback emulator.

* :class:`ZohoConnector` – the connector (``connectors.zoho.connector``); :class:`ZohoSettings` – its settings
  (``connectors.zoho.settings``).
* :mod:`connectors.zoho.mapper` – Invoice -> ``POST /invoices`` JSON (pure), Zoho's tax rounding.
* :mod:`connectors.zoho.emulator` – ``ZohoEmulator``, accounts token endpoint + Invoice API on loopback.
* :mod:`connectors.zoho.testing` – the conformance-kit harness.
"""

from connectors.zoho.connector import ZohoConnector
from connectors.zoho.settings import DATA_CENTERS, ZohoSettings

__all__ = ["DATA_CENTERS", "ZohoConnector", "ZohoSettings"]
