"""The sandbox kit: what every billing-system emulator shares, written once.

* :mod:`connectors.sandbox.http` – the loopback server (start/stop, request/response types, fault actions);
* :mod:`connectors.sandbox.emulator` – :class:`Emulator`, the base class (lifecycle, records, admin API,
  request validation hook);
* :mod:`connectors.sandbox.routing` – a routing table (method + path pattern -> handler);
* :mod:`connectors.sandbox.faults` – injectable faults (5xx, 429, reset, drop/hang after commit, delay);
* :mod:`connectors.sandbox.idempotency` – idempotency-key replay cache;
* :mod:`connectors.sandbox.limits` – rate-limit windows (calls per window, concurrency, daily);
* :mod:`connectors.sandbox.oauth` – OAuth2 tokens, rotating refresh tokens, authorization codes with PKCE;
* :mod:`connectors.sandbox.spec` – request validation against the official OpenAPI specs (needs the
  ``sandbox`` extra: PyYAML, jsonschema, openapi-core).

Emulators and this kit are test and demo tools: no production module imports them.
"""

from connectors.sandbox.emulator import AdminRoute, Emulator, RequestValidator, StepHook, serve_until_interrupted
from connectors.sandbox.faults import AFTER_COMMIT, FAULT_KINDS, Fault, FaultQueue, after_commit
from connectors.sandbox.http import JSON_UTF8, Request, Response, json_response, loads_decimal
from connectors.sandbox.idempotency import ReplayCache, Saved
from connectors.sandbox.limits import Concurrency, Window, day_window
from connectors.sandbox.oauth import TokenHolder, Tokens
from connectors.sandbox.routing import Router

__all__ = [
    "AFTER_COMMIT",
    "FAULT_KINDS",
    "JSON_UTF8",
    "AdminRoute",
    "Concurrency",
    "Emulator",
    "Fault",
    "FaultQueue",
    "ReplayCache",
    "Request",
    "RequestValidator",
    "Response",
    "Router",
    "Saved",
    "StepHook",
    "TokenHolder",
    "Tokens",
    "Window",
    "after_commit",
    "day_window",
    "json_response",
    "loads_decimal",
    "serve_until_interrupted",
]
