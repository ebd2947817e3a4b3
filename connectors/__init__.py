"""Billing-system connectors (plugins) and their local emulators.

Each connector is a :class:`connectors.sdk.interface.Connector` subclass (most build on
:class:`connectors.sdk.http.HttpConnector`) registered under the entry-point
group ``broker.connectors`` (built-ins register the same way, see ``pyproject.toml``).
"""
