"""Moloni (Portugal, AT-certified) connector plugin and its loopback emulator.

* :class:`MoloniConnector` / :class:`MoloniSettings` – the connector (``connectors.moloni.connector``).
* :mod:`connectors.moloni.mapper` – Invoice -> ``invoices/insert`` fields (pure), PHP-style form encoding,
  Moloni's two rounding methods.
* :mod:`connectors.moloni.emulator` – ``MoloniEmulator``, a local HTTP server behaving like Moloni.
"""

from connectors.moloni.connector import MoloniConnector, MoloniSettings

__all__ = ["MoloniConnector", "MoloniSettings"]
