"""Deprecated location: the connector interface and errors now live in :mod:`connectors.sdk`.

Kept only while the tree moves over; import from ``connectors.sdk`` instead.
"""

from connectors.sdk.errors import *  # noqa: F403
from connectors.sdk.interface import *  # noqa: F403
from connectors.sdk.settings import *  # noqa: F403
