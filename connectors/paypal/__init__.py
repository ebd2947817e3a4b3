"""PayPal Invoicing v2 connector and its loopback emulator.

* :class:`PayPalConnector` – the connector (``connectors.paypal.connector``), built on the SDK's ``HttpConnector``.
* :class:`PayPalSettings` – its settings model (``connectors.paypal.settings``).
* :mod:`connectors.paypal.mapper` – Invoice -> PayPal ``invoice`` JSON and PayPal's answers -> ours (pure),
  PayPal's arithmetic.
* :mod:`connectors.paypal.emulator` – ``PayPalEmulator``, a local HTTP server behaving like PayPal.
* :mod:`connectors.paypal.spec` – request validation against the official ``invoicing_v2.json``.
"""

from connectors.paypal.connector import PayPalConnector
from connectors.paypal.settings import PayPalSettings

__all__ = ["PayPalConnector", "PayPalSettings"]
