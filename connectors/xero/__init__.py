"""Xero Accounting API 2.0 connector and its loopback emulator.

* :class:`XeroConnector` – the connector (``connectors.xero.connector``), built on
  :class:`connectors.sdk.http.HttpConnector`.
* :class:`XeroSettings` – its settings model (``connectors.xero.settings``).
* :func:`idempotency_key` – the deterministic ``Idempotency-Key`` of an invoice operation.
* :mod:`connectors.xero.mapper` – Invoice -> Xero JSON and back, credit notes, validation errors (pure).
* :mod:`connectors.xero.emulator` – ``XeroEmulator``, a local HTTP server behaving like Xero.
* :mod:`connectors.xero.spec` – request validation against the official OpenAPI spec.
"""

from connectors.xero.connector import XeroConnector, idempotency_key
from connectors.xero.settings import XeroSettings

__all__ = ["XeroConnector", "XeroSettings", "idempotency_key"]
