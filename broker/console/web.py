"""What the console's modules share about the web: the session cookie, RFC 9457 problem documents, and
the FastAPI dependencies that name the operator of a request (:data:`ApiOperator`, :data:`PageOperator`).

Kept apart from :mod:`broker.console.app` so that route modules it includes (:mod:`broker.console.oauth`)
can use them without importing the app back.
"""

from __future__ import annotations

from typing import Annotated, Any

from fastapi import Depends, Request
from fastapi.responses import JSONResponse
from fastapi.security import APIKeyCookie, HTTPAuthorizationCredentials, HTTPBasic, HTTPBasicCredentials, HTTPBearer

from broker.console.auth import Operator

__all__ = [
    "COOKIE",
    "PROBLEM_MEDIA_TYPE",
    "PROBLEM_TYPE",
    "ApiOperator",
    "LoginRequiredError",
    "PageOperator",
    "Problem",
    "bad_parameter",
    "not_found",
    "remote",
]

#: The session cookie's name.
COOKIE = "broker_console_session"
PROBLEM_TYPE = "https://github.com/maintenance-billing-broker/problems/"
PROBLEM_MEDIA_TYPE = "application/problem+json"


class Problem(Exception):  # noqa: N818 - an HTTP problem document, not only an error
    """An RFC 9457 problem document: ``status``, ``slug`` (the last part of ``type``), ``title``,
    ``detail`` (naming what was wrong), extension members (e.g. ``parameter`` and ``value``)."""

    def __init__(
        self, status: int, slug: str, title: str, detail: str, *, headers: dict[str, str] | None = None, **extra: Any
    ) -> None:
        super().__init__(detail)
        self.status, self.slug, self.title, self.detail = status, slug, title, detail
        self.headers = headers or {}
        self.extra = extra

    def response(self) -> JSONResponse:
        """The ``application/problem+json`` answer."""
        body = {
            "type": PROBLEM_TYPE + self.slug,
            "title": self.title,
            "status": self.status,
            "detail": self.detail,
            **self.extra,
        }
        return JSONResponse(body, status_code=self.status, headers=self.headers, media_type=PROBLEM_MEDIA_TYPE)


def bad_parameter(name: str, value: object, why: str, *, where: str = "query") -> Problem:
    return Problem(
        400,
        "bad-parameter",
        "Bad request parameter",
        f"{where} parameter {name!r}: {value!r} {why}",
        parameter=name,
        value=value if isinstance(value, (str, int, float, bool)) or value is None else str(value),
    )


def not_found(what: str) -> Problem:
    return Problem(404, "not-found", "Not found", f"no {what} (or not one of your tenants')")


class LoginRequiredError(Exception):
    """Raised by a page's operator check without a session: the app redirects to ``/login``, then back to
    ``target``."""

    def __init__(self, target: str) -> None:
        super().__init__(target)
        self.target = target


def remote(request: Request) -> str | None:
    return request.client.host if request.client else None


_basic = HTTPBasic(auto_error=False, description="An operator's name and password")
_bearer = HTTPBearer(auto_error=False, description="A token from POST /api/sessions")
_cookie = APIKeyCookie(name=COOKIE, auto_error=False, description="The browser's session")


def _api_operator(
    request: Request,
    credentials: Annotated[HTTPBasicCredentials | None, Depends(_basic)],
    token: Annotated[HTTPAuthorizationCredentials | None, Depends(_bearer)],
    session: Annotated[str | None, Depends(_cookie)],
) -> Operator:
    """The operator of an API request (the app's own check, :func:`create_console_app`); a 401 problem without."""
    found: Operator = request.app.state.api_operator(request, credentials, token, session)
    return found


def _page_operator(request: Request, session: Annotated[str | None, Depends(_cookie)]) -> Operator:
    """The operator of a page's request (the session cookie); a redirect to ``/login`` without."""
    found: Operator = request.app.state.page_operator(request, session)
    return found


#: A route parameter: the operator making an API request / a page request.
ApiOperator = Annotated[Operator, Depends(_api_operator)]
PageOperator = Annotated[Operator, Depends(_page_operator)]
