"""FreshBooks Accounting API connector and its loopback emulator.

* :class:`FreshBooksConnector` – the connector (``connectors.freshbooks.connector``); :class:`FreshBooksSettings` –
  its settings (``connectors.freshbooks.settings``).
* :mod:`connectors.freshbooks.mapper` – Invoice -> FreshBooks JSON (pure): line layout, tax per line, field limits.
* :mod:`connectors.freshbooks.emulator` – ``FreshBooksEmulator``, a local HTTP server behaving like FreshBooks.
* :mod:`connectors.freshbooks.spec` – request validation against the (community) field reference.
"""

from connectors.freshbooks.connector import FreshBooksConnector
from connectors.freshbooks.settings import FreshBooksSettings

__all__ = ["FreshBooksConnector", "FreshBooksSettings"]
