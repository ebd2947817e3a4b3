"""FreshBooks Accounting API connector and its loopback emulator.

* :class:`FreshBooksConnector` / :class:`FreshBooksSettings` – the connector (``connectors.freshbooks.connector``).
* :mod:`connectors.freshbooks.mapper` – Invoice -> FreshBooks JSON (pure): line layout, tax per line, field limits.
* :mod:`connectors.freshbooks.emulator` – ``FreshBooksEmulator``, a local HTTP server behaving like FreshBooks.
* :mod:`connectors.freshbooks.spec_check` – request validation against the (community) field reference.
"""

from connectors.freshbooks.connector import FreshBooksConnector, FreshBooksSettings

__all__ = ["FreshBooksConnector", "FreshBooksSettings"]
