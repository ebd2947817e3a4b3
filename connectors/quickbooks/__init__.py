"""QuickBooks Online Accounting API v3 connector and its loopback emulator.

* :class:`QuickBooksConnector` – the connector (``connectors.quickbooks.connector``), built on
  :class:`connectors.sdk.http.HttpConnector`.
* :class:`QuickBooksSettings` / :class:`QboTaxCode` – its settings model (``connectors.quickbooks.settings``).
* :func:`request_id` – the deterministic ``requestid`` of one step (``create``, ``send``) of an invoice.
* :mod:`connectors.quickbooks.mapper` – Invoice -> QBO JSON (pure): line layout, explicit tax lines, field limits,
  ``requestid`` derivation, Intuit ``Fault`` reading.
* :mod:`connectors.quickbooks.emulator` – ``QuickBooksEmulator``, a local HTTP server behaving like QBO.
* :mod:`connectors.quickbooks.spec` – request validation against the (community) field reference.
"""

from connectors.quickbooks.connector import QuickBooksConnector
from connectors.quickbooks.mapper import request_id
from connectors.quickbooks.settings import QboTaxCode, QuickBooksSettings

__all__ = ["QboTaxCode", "QuickBooksConnector", "QuickBooksSettings", "request_id"]
