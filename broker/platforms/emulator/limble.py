"""Limble's API v2 in the platform emulator: ``GET /v2/tasks?tasks=<ids>``, ``GET /v2/tasks/labor?tasks=<ids>``,
``GET /v2/tasks/labor/categories``, ``GET /v2/tasks/{id}/parts`` and ``GET /v2/tasks/{id}/invoices``;
HTTP Basic ``client_id:client_secret``; 360 GET requests a minute, its 429 with
``X-RateLimit-Minute-TTL`` (no ``Retry-After``); errors ``{"error": ...}`` (Limble documents the
status codes, not the error body: an assumption). :func:`webhook` builds the signed task webhook as
Limble sends it (the body unsigned)."""

from __future__ import annotations

import base64
import json
import secrets
from collections.abc import Callable

from broker.platforms.emulator import PlatformApi, sample
from broker.platforms.limble import REQUESTS_PER_MINUTE, signature
from connectors.sandbox import Request, Response, Router, json_response

__all__ = ["API", "DEFAULT_CLIENT_ID", "webhook"]

#: The client id the emulator accepts unless the emulator's credentials name another.
DEFAULT_CLIENT_ID = "limble-client-id"


class API(PlatformApi):
    """Limble ``/v2``: the sample task 8203 with its labour, parts and invoices.
    :meth:`PlatformApi.put` adds more: ``tasks`` keyed by task id, and ``labor``, ``parts``,
    ``invoices`` keyed by task id, each a list."""

    name = "limble"
    root = "/v2"
    per_minute = REQUESTS_PER_MINUTE

    def __init__(self, token: str, username: str | None = None):
        super().__init__(token, username or DEFAULT_CLIENT_ID)

    def load_samples(self) -> None:
        for task in sample("limble", "tasks_8203.json"):
            self.put("tasks", str(task["taskID"]), task)
        self.put("labor", "8203", sample("limble", "tasks_labor_8203.json"))
        self.put("parts", "8203", sample("limble", "tasks_8203_parts.json"))
        self.put("invoices", "8203", sample("limble", "tasks_invoices_8203.json"))
        self.put("labor-categories", "all", sample("limble", "tasks_labor_categories.json"))

    def add_routes(self, router: Router) -> None:
        router.add("GET", "/tasks/labor/categories", self._categories)
        router.add("GET", "/tasks/labor", self._labor)
        router.add("GET", "/tasks/{task_id}/parts", self._per_task("parts"))
        router.add("GET", "/tasks/{task_id}/invoices", self._per_task("invoices"))
        router.add("GET", "/tasks", self._tasks)

    def authorized(self, req: Request) -> bool:
        expected = base64.b64encode(f"{self.username}:{self.token}".encode()).decode()
        return req.headers.get("authorization") == f"Basic {expected}"

    def unauthorized(self) -> Response:
        return json_response(401, {"error": "Unauthorized: invalid client id or secret"})

    def not_found(self, what: str) -> Response:
        return json_response(404, {"error": f"Resource not found: {what}"})

    def throttled(self, retry_after: int) -> Response:
        return json_response(
            429,
            {"error": "Too Many Requests"},
            {"X-RateLimit-Minute-Limit": str(self.per_minute), "X-RateLimit-Minute-TTL": str(retry_after)},
        )

    @staticmethod
    def _ids(req: Request) -> list[str] | None:
        """The ``tasks`` filter (comma-separated ids), or None when it is not digits."""
        given = [part.strip() for value in req.query_lists.get("tasks", []) for part in value.split(",")]
        return given if all(part.isdigit() for part in given) else None

    def _tasks(self, req: Request) -> Response:
        ids = self._ids(req)
        if ids is None:
            return json_response(400, {"error": "tasks: expected comma-separated task ids"})
        wanted = ids or sorted(self.records.get("tasks", {}))
        return json_response(200, [task for key in wanted if (task := self.get("tasks", key)) is not None])

    def _labor(self, req: Request) -> Response:
        ids = self._ids(req)
        if ids is None:
            return json_response(400, {"error": "tasks: expected comma-separated task ids"})
        wanted = ids or sorted(self.records.get("labor", {}))
        return json_response(200, [entry for key in wanted for entry in self.get("labor", key) or []])

    def _categories(self, _req: Request) -> Response:
        return json_response(200, self.get("labor-categories", "all") or [])

    def _per_task(self, collection: str) -> Callable[..., Response]:
        def handler(_req: Request, task_id: str) -> Response:
            if self.get("tasks", task_id) is None:
                return self.not_found(f"task {task_id}")
            return json_response(200, self.get(collection, task_id) or [])

        return handler


def webhook(
    api_key: bytes,
    task_id: int | str,
    *,
    timestamp: int,
    token: str | None = None,
    status: str = "COMPLETE",
    category: str = "task",
    user: str = "tech01@example.com",
) -> tuple[dict[str, str], bytes]:
    """The headers and body Limble sends about task ``task_id`` (``status``, ``category``), signed
    at ``timestamp`` with ``token`` (default: a random one) under the account's oldest ``api_key``."""
    body = json.dumps(
        {"taskID": task_id, "status": status, "category": category, "user": user}, separators=(",", ":")
    ).encode()
    token = token or secrets.token_urlsafe(15)
    headers = {
        "content-type": "application/json",
        "timestamp": str(timestamp),
        "token": token,
        "signature": signature(api_key, str(timestamp), token),
    }
    return headers, body
