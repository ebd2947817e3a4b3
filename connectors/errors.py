"""Deprecated location: the error taxonomy and status table now live in :mod:`connectors.sdk.errors`."""

from connectors.sdk.errors import *  # noqa: F403
