"""Xero Accounting API 2.0 connector and its loopback emulator.

* :class:`XeroConnector` / :class:`XeroSettings` – the connector (``connectors.xero.connector``).
* :func:`idempotency_key` – the deterministic ``Idempotency-Key`` of an invoice operation.
* :mod:`connectors.xero.mapper` – Invoice -> Xero JSON (pure), exact-decimal JSON ``dumps``.
* :mod:`connectors.xero.emulator` – ``XeroEmulator``, a local HTTP server behaving like Xero.
* :mod:`connectors.xero.spec_check` – request validation against the official OpenAPI spec.
"""

from connectors.xero.connector import XeroConnector, XeroSettings, idempotency_key

__all__ = ["XeroConnector", "XeroSettings", "idempotency_key"]
