"""What the console's modules share about the web: the session cookie, RFC 9457 problem documents, and
the FastAPI dependencies that name the operator of a request (:data:`ApiOperator`, :data:`PageOperator`).

Kept apart from :mod:`broker.console.app` so that route modules it includes (:mod:`broker.console.oauth`)
can use them without importing the app back.
"""

from __future__ import annotations

from typing import Annotated

from fastapi import Depends, Request
from fastapi.security import APIKeyCookie, HTTPAuthorizationCredentials, HTTPBasic, HTTPBasicCredentials, HTTPBearer

from broker.console.auth import Operator
from broker.problems import Problem

__all__ = [
    "COOKIE",
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
