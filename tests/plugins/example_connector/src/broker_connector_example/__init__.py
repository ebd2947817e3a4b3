"""Example connector plugin: Ledgerly (fictional) for maintenance-billing-broker.

The entry point ``broker.connectors: example = "broker_connector_example:LedgerlyConnector"`` makes it
discoverable; nothing else in the broker needs to change.
"""

from broker_connector_example.connector import LedgerlyConnector
from broker_connector_example.settings import LedgerlySettings

__all__ = ["LedgerlyConnector", "LedgerlySettings"]
