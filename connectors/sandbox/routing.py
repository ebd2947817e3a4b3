"""A routing table: (method, path pattern) -> handler; ``{name}`` segments become keyword arguments."""

from __future__ import annotations

import re
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from connectors.sandbox.http import Request, Response

Handler = Callable[..., Response]


def compile_template(template: str, *, ignore_case: bool = False) -> re.Pattern[str]:
    """``/invoices/{id}/send`` -> a regex with one named group per ``{name}`` (a single path segment)."""
    pattern = re.sub(r"\\\{(\w+)\\\}", r"(?P<\1>[^/]+)", re.escape(template))
    return re.compile(f"^{pattern}/?$", re.IGNORECASE if ignore_case else 0)


@dataclass(frozen=True)
class Route:
    method: str
    pattern: re.Pattern[str]
    handler: Handler
    name: str


class Router:
    """Routes tried in the order they were added; literal templates should come before ``{name}`` ones."""

    def __init__(self, *, ignore_case: bool = False) -> None:
        self.ignore_case = ignore_case
        self.routes: list[Route] = []

    def add(self, method: str, template: str, handler: Handler, name: str = "") -> None:
        self.routes.append(
            Route(method.upper(), compile_template(template, ignore_case=self.ignore_case), handler, name or template)
        )

    def match(self, method: str, path: str) -> tuple[Route, dict[str, str]] | None:
        """The route of ``method path`` and its path arguments, or ``None``."""
        for route in self.routes:
            if route.method == method.upper():
                m = route.pattern.match(path)
                if m is not None:
                    return route, m.groupdict()
        return None

    def allowed(self, path: str) -> list[str]:
        """Methods some route serves at ``path`` (for 405 answers)."""
        return [r.method for r in self.routes if r.pattern.match(path)]

    def dispatch(self, req: Request, path: str | None = None, *args: Any) -> Response | None:
        """Call the matching handler with ``req``, ``args`` and the path arguments; ``None`` when nothing matches."""
        found = self.match(req.method, req.path if path is None else path)
        if found is None:
            return None
        route, params = found
        return route.handler(req, *args, **params)
