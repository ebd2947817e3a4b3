"""InvoiceXpress (Portugal, AT-certified) connector plugin and its loopback emulator.

* :class:`InvoiceXpressConnector` – the connector (``connectors.invoicexpress.connector``), built on
  :class:`connectors.sdk.http.HttpConnector`.
* :class:`InvoiceXpressSettings` – its settings model (``connectors.invoicexpress.settings``).
* :mod:`connectors.invoicexpress.mapper` – Invoice -> ``POST /invoices.json`` body (pure), line layout, totals.
* :mod:`connectors.invoicexpress.emulator` – ``InvoiceXpressEmulator``, a local HTTP server behaving like InvoiceXpress.
"""

from connectors.invoicexpress.connector import InvoiceXpressConnector
from connectors.invoicexpress.settings import InvoiceXpressSettings

__all__ = ["InvoiceXpressConnector", "InvoiceXpressSettings"]
