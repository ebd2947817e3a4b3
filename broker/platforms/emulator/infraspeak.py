"""Infraspeak's API in the platform emulator: ``GET /v3/failures/{id}`` and
``GET /v3/works/scheduled/{id}`` as JSON:API documents (``data``, ``included``) honouring
``expanded``; bearer token; 60 requests a minute; errors ``{"errors": [{"status", "title",
"detail"}]}``. :func:`webhook` builds the request Infraspeak sends to a third-party receiver."""

from __future__ import annotations

import copy
import json
from typing import Any
from urllib.parse import unquote

from broker.platforms.emulator import PlatformApi, sample
from broker.platforms.infraspeak import REQUESTS_PER_MINUTE
from connectors.sandbox import Request, Response, Router, json_response

__all__ = ["API", "EXPANSIONS", "webhook"]

#: The relations ``expanded`` may name, and the types of the ``included`` items each brings.
EXPANSIONS: dict[str, frozenset[str]] = {
    "events": frozenset({"event_registry"}),
    "stock": frozenset({"stock"}),
    "stock.material": frozenset({"stock", "material"}),
    "location": frozenset({"location"}),
    "client": frozenset({"client"}),
    "work": frozenset({"work"}),
}


def _error(status: int, title: str, detail: str, headers: dict[str, str] | None = None) -> Response:
    return json_response(status, {"errors": [{"status": str(status), "title": title, "detail": detail}]}, headers)


class API(PlatformApi):
    """Infraspeak ``/v3``: the sample failure 700123 and scheduled work 9875096, stored whole (the
    JSON:API document with every relation included) in ``failures`` and ``scheduled_works``, keyed
    by id; tests add more with :meth:`PlatformApi.put`. The answer keeps only the ``included``
    items of the relations ``expanded`` names. ``targets``: the path and decoded query of every
    record request answered, in order."""

    name = "infraspeak"
    root = "/v3"
    per_minute = REQUESTS_PER_MINUTE

    def __init__(self, token: str, username: str | None = None):
        self.targets: list[str] = []
        super().__init__(token, username)

    def load_samples(self) -> None:
        for collection, name in (
            ("failures", "failure_700123_expanded.json"),
            ("scheduled_works", "scheduled_work_9875096.json"),
        ):
            document = sample("infraspeak", name)
            self.put(collection, str(document["data"]["id"]), document)

    def add_routes(self, router: Router) -> None:
        router.add("GET", "/failures/{record_id}", self._failure)
        router.add("GET", "/works/scheduled/{record_id}", self._scheduled_work)

    def unauthorized(self) -> Response:
        return _error(401, "Unauthenticated", "a valid personal access token is required (Authorization: Bearer)")

    def not_found(self, what: str) -> Response:
        return _error(404, "Not Found", f"{what} was not found")

    def throttled(self, retry_after: int) -> Response:
        return _error(
            429, "Too Many Requests", "rate limit of 60 requests per minute", {"Retry-After": str(retry_after)}
        )

    def _failure(self, req: Request, record_id: str) -> Response:
        return self._document(req, "failures", record_id, "failure")

    def _scheduled_work(self, req: Request, record_id: str) -> Response:
        return self._document(req, "scheduled_works", record_id, "scheduled work")

    def _document(self, req: Request, collection: str, record_id: str, what: str) -> Response:
        self.targets.append(req.path + (f"?{unquote(req.raw_query)}" if req.raw_query else ""))
        found = self.get(collection, record_id)
        if found is None:
            return self.not_found(f"{what} {record_id}")
        names = [name for name in req.query.get("expanded", "").split(",") if name]
        unknown = sorted(set(names) - set(EXPANSIONS))
        if unknown:
            return _error(400, "Bad Request", f"unknown relation(s) in expanded: {', '.join(unknown)}")
        kinds = {kind for name in names for kind in EXPANSIONS[name]}
        document: dict[str, Any] = copy.deepcopy(found)
        document["included"] = [item for item in document.get("included", []) if item.get("type") in kinds]
        return json_response(200, document)


def webhook(token: str, kind: str, record_id: int | str) -> tuple[dict[str, str], bytes]:
    """The headers and body Infraspeak sends when record ``record_id`` of ``kind`` (``failures``,
    ``scheduled_works``) completes, to a subscription configured with bearer ``token``."""
    body = json.dumps({"data": {"id": str(record_id), "type": kind}}, separators=(",", ":")).encode()
    return {"content-type": "application/json", "authorization": f"Bearer {token}"}, body
