"""RFC 9457 problem documents, the one error shape of every HTTP service of the broker (``broker ingest``,
``broker payments``, ``broker console``).

Raise :class:`Problem`; the service's exception handler answers :meth:`Problem.response`.
"""

from __future__ import annotations

from typing import Any

from fastapi.responses import JSONResponse

__all__ = ["PROBLEM_MEDIA_TYPE", "PROBLEM_TYPE", "Problem"]

#: The ``type`` URI of a problem is this prefix and its ``slug``.
PROBLEM_TYPE = "https://github.com/maintenance-billing-broker/problems/"
PROBLEM_MEDIA_TYPE = "application/problem+json"


class Problem(Exception):  # noqa: N818 - an HTTP problem document, not only an error
    """An RFC 9457 problem: ``status`` (HTTP), a short ``slug`` (the ``type`` URI's last part), a human
    ``title`` and the ``detail`` naming what was wrong; ``extra``: extension members of the document
    (e.g. ``parameter`` and ``value``); ``headers``: of the answer (e.g. ``Retry-After``); ``result``:
    the metrics label a service counts it under (not in the document)."""

    def __init__(
        self,
        status: int,
        slug: str,
        title: str,
        detail: str,
        *,
        result: str = "",
        headers: dict[str, str] | None = None,
        **extra: Any,
    ) -> None:
        super().__init__(detail)
        self.status, self.slug, self.title, self.detail, self.result = status, slug, title, detail, result
        self.headers = headers or {}
        self.extra = extra

    def response(self) -> JSONResponse:
        """The problem document (``application/problem+json``)."""
        body = {
            "type": PROBLEM_TYPE + self.slug,
            "title": self.title,
            "status": self.status,
            "detail": self.detail,
            **self.extra,
        }
        return JSONResponse(body, status_code=self.status, headers=self.headers, media_type=PROBLEM_MEDIA_TYPE)
