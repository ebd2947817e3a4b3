"""Maintenance platforms' webhooks into canonical events (``POST /webhooks/{platform}/{tenant}``).

One module per platform, each an :class:`~broker.platforms.base.Adapter` (signature, trigger,
hydration, mapping; its docstring names its sources and assumptions); :mod:`broker.platforms.client`
reads the platforms' APIs; :mod:`broker.platforms.emulator` serves the sample data of every
platform's API for tests and the demo (not used in production).
"""

from __future__ import annotations

import importlib

from broker.config import PLATFORMS
from broker.platforms.base import Adapter

__all__ = ["PLATFORMS", "adapter"]

_CLASSES = {
    "maintainx": "MaintainX",
    "atlas": "Atlas",
    "erpnext": "ERPNext",
    "odoo": "Odoo",
    "limble": "Limble",
    "infraspeak": "Infraspeak",
}


def adapter(platform: str) -> Adapter:
    """The adapter of ``platform`` (one of :data:`PLATFORMS`); raises KeyError for another name."""
    if platform not in PLATFORMS:
        raise KeyError(platform)
    module = importlib.import_module(f"broker.platforms.{platform}")
    return getattr(module, _CLASSES[platform])()  # type: ignore[no-any-return]
