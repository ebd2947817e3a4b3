"""InvoiceXpress (Portugal, AT-certified) connector plugin and its loopback emulator.

* :class:`InvoiceXpressConnector` / :class:`InvoiceXpressSettings` – the connector (``connectors.invoicexpress.connector``).
* :mod:`connectors.invoicexpress.mapper` – Invoice -> ``POST /invoices.json`` body (pure), line layout, totals.
* :mod:`connectors.invoicexpress.emulator` – ``InvoiceXpressEmulator``, a local HTTP server behaving like InvoiceXpress.
"""

from connectors.invoicexpress.connector import InvoiceXpressConnector, InvoiceXpressSettings

__all__ = ["InvoiceXpressConnector", "InvoiceXpressSettings"]
