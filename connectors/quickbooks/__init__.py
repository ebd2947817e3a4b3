"""QuickBooks Online Accounting API v3 connector and its loopback emulator.

* :class:`QuickBooksConnector` / :class:`QuickBooksSettings` – the connector (``connectors.quickbooks.connector``).
* :func:`request_id` – the deterministic ``requestid`` of one step (``create``, ``send``) of an invoice.
* :mod:`connectors.quickbooks.mapper` – Invoice -> QBO JSON (pure): line layout, explicit tax lines, field limits.
* :mod:`connectors.quickbooks.emulator` – ``QuickBooksEmulator``, a local HTTP server behaving like QBO.
* :mod:`connectors.quickbooks.spec_check` – request validation against the (community) field reference.
"""

from connectors.quickbooks.connector import QboTaxCode, QuickBooksConnector, QuickBooksSettings, request_id

__all__ = ["QboTaxCode", "QuickBooksConnector", "QuickBooksSettings", "request_id"]
