"""ERPNext's REST API in the platform emulator: ``GET /api/resource/{doctype}/{name}`` (answer
``{"data": {...}}``); ``Authorization: token <api key>:<api secret>`` (the API key defaults to
``erpnext-key``); errors as Frappe answers them (``{"exc_type", "exception"}``; a plain-text 429
with ``Retry-After``); 300 requests a minute (the adapter's assumption). :func:`webhook` builds the
body and ``X-Frappe-Webhook-Signature`` a Frappe ``Webhook`` sends on a document event."""

from __future__ import annotations

import json
from typing import Any
from urllib.parse import unquote

from broker.platforms.emulator import PlatformApi, sample
from broker.platforms.erpnext import REQUESTS_PER_MINUTE, SIGNATURE_HEADER, signature_header
from connectors.sandbox import Request, Response, Router, json_response

__all__ = ["API", "webhook"]

#: The API key of the emulated site (the token is the API secret).
DEFAULT_API_KEY = "erpnext-key"


class API(PlatformApi):
    """A Frappe site: documents by doctype and name (the sample Timesheet TS-2025-00088;
    :meth:`PlatformApi.put` adds more, collection = the doctype, key = the name)."""

    name = "erpnext"
    root = ""
    per_minute = REQUESTS_PER_MINUTE

    def __init__(self, token: str, username: str | None = None):
        super().__init__(token, username or DEFAULT_API_KEY)

    def load_samples(self) -> None:
        timesheet = sample("erpnext", "timesheet_TS-2025-00088.json")["data"]
        self.put("Timesheet", timesheet["name"], timesheet)

    def add_routes(self, router: Router) -> None:
        router.add("GET", "/api/resource/{doctype}/{docname}", self._document)

    def authorized(self, req: Request) -> bool:
        return req.headers.get("authorization") == f"token {self.username}:{self.token}"

    def unauthorized(self) -> Response:
        return json_response(
            401, {"exc_type": "AuthenticationError", "exception": "frappe.exceptions.AuthenticationError"}
        )

    def not_found(self, what: str) -> Response:
        return json_response(
            404,
            {"exc_type": "DoesNotExistError", "exception": f"frappe.exceptions.DoesNotExistError: {what} not found"},
        )

    def throttled(self, retry_after: int) -> Response:
        return Response(
            429, b"Too Many Requests", {"Content-Type": "text/html; charset=utf-8", "Retry-After": str(retry_after)}
        )

    def _document(self, _req: Request, doctype: str, docname: str) -> Response:
        doctype, docname = unquote(doctype), unquote(docname)
        found = self.get(doctype, docname)
        if found is None:
            return self.not_found(f"{doctype} {docname}")
        return json_response(200, {"data": found})


def webhook(secret: bytes, data: dict[str, Any]) -> tuple[dict[str, str], bytes]:
    """The headers and body a Frappe ``Webhook`` with *Enable Security* sends with ``data`` (the
    selected fields): ``json.dumps`` with its default separators, no ``Content-Type``."""
    body = json.dumps(data).encode()
    return {SIGNATURE_HEADER: signature_header(secret, body)}, body
