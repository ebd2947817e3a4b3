"""Moloni (Portugal, AT-certified) connector plugin and its loopback emulator.

* :class:`MoloniConnector` – the connector (``connectors.moloni.connector``), built on
  :class:`connectors.sdk.http.HttpConnector`.
* :class:`MoloniSettings` – its settings model (``connectors.moloni.settings``).
* :mod:`connectors.moloni.mapper` – Invoice -> ``invoices/insert`` fields (pure), PHP-style form encoding,
  Moloni's two rounding methods.
* :mod:`connectors.moloni.emulator` – ``MoloniEmulator``, a local HTTP server behaving like Moloni.
"""

from connectors.moloni.connector import MoloniConnector
from connectors.moloni.settings import MoloniSettings

__all__ = ["MoloniConnector", "MoloniSettings"]
