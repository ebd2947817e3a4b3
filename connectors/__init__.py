"""Billing-system connectors (plugins) and their local emulators.

Each connector is a :class:`connectors.base.Connector` subclass registered under the entry-point
group ``broker.connectors`` (built-ins register the same way, see ``pyproject.toml``).
"""
