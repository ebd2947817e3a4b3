"""Re-authorise a tenant's billing-system connection from the console (OAuth2 authorization-code flow).

For a tenant whose billing system uses OAuth2 (its connector's ``oauth2_config()``), an operator who may see
the tenant starts the flow on the tenant's page (``POST /tenants/{tenant}/reauthorise``, a 303 to the billing
system's consent page) or with ``POST /api/tenants/{tenant}/reauthorise`` (the consent page's URL). The
billing system sends the browser back to ``GET /oauth/callback?code&state``: the console checks the state,
exchanges the code and stores the tokens where the worker reads them — the same code as ``broker connectors
authorize`` (:func:`broker.commands_connectors.oauth_connection`,
:func:`connectors.sdk.oauth2.complete_authorization`).

``state`` is signed (HMAC-SHA256 under a per-process key), names the operator, the tenant and its expiry
(:data:`STATE_LIFETIME`), and is single-use: the PKCE verifier and the redirect URI wait in this process's
memory under the state's nonce until the callback takes them. A flow started from the browser's session is
bound to that session; one started by a script (HTTP Basic or a bearer token) to the operator. The redirect
URI is ``$BROKER_CONSOLE_URL/oauth/callback`` (else the request's own base URL); it must be registered with
the billing system's app. Every start, success and refusal is audited (action ``reauthorise``); neither the
code nor a token is ever written, logged or shown.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import json
import secrets
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import quote, urlencode, urlsplit

from fastapi import APIRouter, Request
from fastapi.responses import HTMLResponse, JSONResponse, RedirectResponse, Response
from sqlalchemy import Engine

from broker.commands_connectors import NotAuthorisableError, connection_tenants, oauth_connection
from broker.config import BrokerConfig
from broker.console import audit, pages
from broker.console.auth import Operator
from broker.console.web import COOKIE, ApiOperator, PageOperator, Problem
from connectors.sdk.errors import ConnectorError
from connectors.sdk.oauth2 import OAuth2Config, TokenStore, authorization_request, complete_authorization

__all__ = ["CALLBACK", "STATE_LIFETIME", "Reauthoriser", "oauth_router"]

#: The path of the redirect URI the billing system sends the browser back to.
CALLBACK = "/oauth/callback"
#: Seconds a started authorisation waits for its callback.
STATE_LIFETIME = 600
#: Started authorisations kept at most (the oldest are dropped beyond).
MAX_PENDING = 1000


def _b64(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode("ascii")


def _digest(text: str) -> str:
    return hashlib.sha256(text.encode()).hexdigest()[:32]


@dataclass
class _Pending:
    """A started authorisation, waiting for its callback."""

    operator: str
    tenant: str
    system: str
    session: str | None
    oauth: OAuth2Config
    store: TokenStore
    verifier: str | None
    redirect_uri: str
    expires: float = 0.0


@dataclass
class Reauthoriser:
    """What re-authorising needs: the tenants' ``config`` (``broker console --config``), the console's public
    URL ``console_url`` (``$BROKER_CONSOLE_URL``; ``None``: each request's base URL) and the started
    authorisations (module docstring)."""

    config: BrokerConfig
    console_url: str | None = None
    lifetime: int = STATE_LIFETIME
    clock: Callable[[], float] = time.time
    _key: bytes = field(default_factory=lambda: secrets.token_bytes(32), repr=False)
    _pending: dict[str, _Pending] = field(default_factory=dict, repr=False)

    def redirect_uri(self, request: Request) -> str:
        """``{console URL}/oauth/callback``."""
        base = self.console_url or str(request.base_url)
        return base.rstrip("/") + CALLBACK

    def _sign(self, payload: str) -> str:
        return _b64(hmac.new(self._key, payload.encode("ascii"), hashlib.sha256).digest())

    def issue(self, pending: _Pending) -> tuple[str, int]:
        """A new signed state for ``pending`` and its expiry (unix seconds)."""
        now = self.clock()
        for old in [n for n, p in self._pending.items() if p.expires <= now]:
            del self._pending[old]
        while len(self._pending) >= MAX_PENDING:
            del self._pending[next(iter(self._pending))]
        nonce, expires = secrets.token_urlsafe(24), int(now) + self.lifetime
        claims = {"n": nonce, "o": pending.operator, "t": pending.tenant, "e": expires}
        payload = _b64(json.dumps(claims, separators=(",", ":")).encode())
        pending.expires = expires
        self._pending[nonce] = pending
        return f"{payload}.{self._sign(payload)}", expires

    def claims(self, state: str) -> dict[str, Any] | None:
        """The claims of a state this process signed, or ``None`` (forged or malformed)."""
        payload, dot, signature = state.partition(".")
        if not dot or not hmac.compare_digest(signature.encode(), self._sign(payload).encode()):
            return None
        try:
            claims = json.loads(base64.urlsafe_b64decode(payload + "=" * (-len(payload) % 4)))
        except ValueError:
            return None
        return claims if isinstance(claims, dict) else None

    def take(self, nonce: str) -> _Pending | None:
        """The started authorisation of ``nonce``, removed (single use); ``None`` when used or unknown."""
        return self._pending.pop(nonce, None)


def _session_of(request: Request) -> str | None:
    """A digest of the browser session the request came with (``None`` for scripts)."""
    cookie = request.cookies.get(COOKIE)
    return _digest(cookie) if cookie and "authorization" not in request.headers else None


def _wants_html(request: Request) -> bool:
    return "text/html" in request.headers.get("accept", "")


def _not_configured() -> Problem:
    return Problem(
        404,
        "not-found",
        "Not found",
        "re-authorising needs the tenants' configuration: start the console with --config (or BROKER_CONFIG)",
    )


def oauth_router(engine: Engine, reauthoriser: Reauthoriser | None) -> APIRouter:
    """The routes of re-authorising (module docstring) on ``engine``'s audit log; without ``reauthoriser``
    (no ``--config``) they answer 404."""
    router = APIRouter()

    def done(request: Request, operator: str, tenant: str | None, outcome: str, detail: str) -> None:
        remote = request.client.host if request.client else None
        audit.record(
            engine,
            operator=operator,
            action="reauthorise",
            outcome=outcome,
            target=tenant,
            tenant=tenant,
            detail=detail,
            remote=remote,
        )

    def answer(request: Request, operator: Operator, problem: Problem) -> Response:
        if not _wants_html(request):
            return problem.response()
        return _html(pages.error_page(operator, problem.title, problem.detail), problem.status)

    def connection(operator: Operator, tenant: str) -> tuple[Reauthoriser, OAuth2Config, TokenStore, str]:
        if not operator.may_see(tenant) or (reauthoriser is not None and tenant not in reauthoriser.config.tenants):
            raise Problem(404, "not-found", "Not found", f"no tenant {tenant!r} (or not one of your tenants')")
        if reauthoriser is None:
            raise _not_configured()
        try:
            _, oauth, store = oauth_connection(reauthoriser.config, tenant)
        except NotAuthorisableError as exc:
            raise Problem(409, "not-authorisable", "Cannot re-authorise", str(exc)) from None
        return reauthoriser, oauth, store, reauthoriser.config.tenant(tenant).billing.system

    def start(request: Request, operator: Operator, tenant: str) -> tuple[str, str, int]:
        """``(authorize URL, redirect URI, expiry)`` of a new authorisation of ``tenant``'s connection."""
        try:
            found, oauth, store, system = connection(operator, tenant)
        except Problem as problem:
            if problem.status == 409 or (reauthoriser is None and operator.may_see(tenant)):
                done(request, operator.name, tenant, "refused", problem.detail)
            raise
        redirect_uri = found.redirect_uri(request)
        pending = _Pending(operator.name, tenant, system, _session_of(request), oauth, store, None, redirect_uri)
        state, expires = found.issue(pending)
        url, pending.verifier = authorization_request(oauth, redirect_uri, state)
        done(request, operator.name, tenant, "started", f"sent to {_origin(url)}; redirect URI {redirect_uri}")
        return url, redirect_uri, expires

    @router.post(
        "/api/tenants/{tenant}/reauthorise",
        tags=["api"],
        summary="Start re-authorising a tenant's billing-system connection (OAuth2): the consent page's URL",
        responses={
            404: {"description": "No such tenant (or not one of yours), or the console runs without --config"},
            409: {"description": "The tenant's billing system does not use OAuth2, or its settings are bad"},
        },
    )
    def api_reauthorise(request: Request, operator: ApiOperator, tenant: str) -> dict[str, Any]:
        url, redirect_uri, expires = start(request, operator, tenant)
        return {"tenant": tenant, "authorize_url": url, "redirect_uri": redirect_uri, "expires_at": expires}

    @router.get("/tenants/{tenant}", tags=["pages"], summary="A tenant's connection", response_class=HTMLResponse)
    def tenant_page(request: Request, operator: PageOperator, tenant: str, notice: str | None = None) -> Response:
        try:
            _, oauth, store, system = connection(operator, tenant)
        except Problem as problem:
            if problem.status != 409 or reauthoriser is None:
                return answer(request, operator, problem)
            system = reauthoriser.config.tenant(tenant).billing.system
            plain = {"tenant": tenant, "billing_system": system, "state": problem.detail}
            return _html(pages.tenant_connection(operator, plain, notice))
        stored = store.load(oauth.store_key)
        state = (
            "no tokens stored yet"
            if stored is None
            else "needs re-authorisation: the billing system refused its refresh token"
            if stored.refused and not stored.access_valid()
            else "authorised"
        )
        info: dict[str, Any] = {
            "tenant": tenant,
            "billing_system": system,
            "state": state,
            "stored_in": store.describe(oauth.store_key),
            "shared_with": connection_tenants(reauthoriser.config, system, oauth.store_key) if reauthoriser else [],
            "reauthorise": True,
        }
        return _html(pages.tenant_connection(operator, info, notice), extra_form_action=_origin(oauth.authorize_url))

    @router.post("/tenants/{tenant}/reauthorise", tags=["pages"], summary="Re-authorise from the tenant's page")
    def reauthorise_form(request: Request, operator: PageOperator, tenant: str) -> Response:
        try:
            url, _, _ = start(request, operator, tenant)
        except Problem as problem:
            return answer(request, operator, problem)
        return RedirectResponse(url, status_code=303)

    @router.get(
        CALLBACK,
        tags=["pages"],
        summary="Where the billing system sends the browser back (code and state, or error)",
        responses={
            400: {"description": "Denied, or a forged, expired or used state"},
            502: {"description": "Token exchange refused"},
        },
    )
    async def callback(request: Request, operator: PageOperator) -> Response:
        params = dict(request.query_params)
        if reauthoriser is None:
            return answer(request, operator, _not_configured())
        claims = reauthoriser.claims(params.get("state", ""))
        tenant = str(claims.get("t")) if claims else None

        def refused(status: int, slug: str, title: str, why: str, outcome: str = "refused") -> Response:
            done(request, operator.name, tenant, outcome, why)
            return answer(request, operator, Problem(status, slug, title, why + "; nothing was stored"))

        if claims is None:
            return refused(400, "bad-state", "Bad state", "the state is forged or malformed")
        pending = reauthoriser.take(str(claims.get("n")))
        if claims.get("o") != operator.name:
            return refused(400, "bad-state", "Bad state", f"the state was issued to operator {claims.get('o')}")
        if pending is None:
            return refused(400, "bad-state", "Bad state", "the state was already used, or this console restarted")
        if not isinstance(claims.get("e"), int) or claims["e"] <= reauthoriser.clock():
            return refused(400, "bad-state", "Bad state", "the state expired: start again from the tenant's page")
        if pending.session is not None and pending.session != _session_of(request):
            return refused(400, "bad-state", "Bad state", "the state belongs to another session of this operator")
        if not operator.may_see(pending.tenant):
            return answer(request, operator, Problem(404, "not-found", "Not found", f"no tenant {tenant!r}"))
        if params.get("error"):
            why = f"denied at {pending.system}: {params['error']} {params.get('error_description', '')}".strip()
            return refused(400, "authorization-denied", "Authorization denied", why)
        try:
            result = await complete_authorization(
                pending.oauth,
                pending.store,
                params,
                state=params["state"],
                verifier=pending.verifier,
                redirect_uri=pending.redirect_uri,
            )
        except ConnectorError as exc:
            why = f"token exchange refused: {exc}"
            return refused(502, "token-exchange-refused", "Token exchange refused", why, "failed")
        shared = connection_tenants(reauthoriser.config, pending.system, pending.oauth.store_key) or [pending.tenant]
        scopes = result.tokens.scope or "(not reported)"
        done(
            request,
            operator.name,
            pending.tenant,
            "ok",
            f"tokens stored in {result.store_location}; scopes: {scopes}; connection used by {', '.join(shared)}",
        )
        body = {
            "tenant": pending.tenant,
            "billing_system": pending.system,
            "stored_in": result.store_location,
            "scopes": scopes,
            "shared_with": shared,
        }
        if not _wants_html(request):
            return JSONResponse(body)
        notice = f"Re-authorised {pending.system} for {pending.tenant}: new tokens stored; parked invoices resume."
        back = f"/tenants/{quote(pending.tenant, safe='')}?{urlencode({'notice': notice})}"
        return RedirectResponse(back, status_code=303)

    return router


def _origin(url: str) -> str:
    parts = urlsplit(url)
    return f"{parts.scheme}://{parts.netloc}"


def _html(text: str, status_code: int = 200, *, extra_form_action: str | None = None) -> HTMLResponse:
    """A page with the console's headers; ``extra_form_action``: an origin a form may also lead to (the
    billing system's consent page, reached by a redirect from the Re-authorise form)."""
    csp = pages.CSP
    if extra_form_action:
        csp = csp.replace("form-action 'self'", f"form-action 'self' {extra_form_action}")
    headers = {"Content-Security-Policy": csp, "X-Frame-Options": "DENY", "Cache-Control": "no-store"}
    return HTMLResponse(text, status_code=status_code, headers=headers)
