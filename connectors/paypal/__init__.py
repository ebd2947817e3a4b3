"""PayPal Invoicing v2 connector and its loopback emulator.

* :class:`PayPalConnector` / :class:`PayPalSettings` – the connector (``connectors.paypal.connector``).
* :mod:`connectors.paypal.mapper` – Invoice -> PayPal ``invoice`` JSON (pure), PayPal's arithmetic.
* :mod:`connectors.paypal.emulator` – ``PayPalEmulator``, a local HTTP server behaving like PayPal.
* :mod:`connectors.paypal.spec_check` – request validation against the official ``invoicing_v2.json``.
"""

from connectors.paypal.connector import PayPalConnector, PayPalSettings

__all__ = ["PayPalConnector", "PayPalSettings"]
