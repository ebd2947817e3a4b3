"""OAuth2 state of an emulated identity provider: client credentials, access tokens, rotating refresh
tokens with a grace period, and authorization codes with PKCE (S256).

Each emulator answers with its own system's bodies and statuses; this module only keeps the state and
decides (callers hold the emulator's lock where noted).
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import re
import secrets
import time
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import parse_qs, urlencode

from connectors.sandbox.http import Request, Response

LOOPBACK_REDIRECT = re.compile(r"^http://(127\.0\.0\.1|localhost|\[::1\])(:\d+)?/")
#: :func:`client_credentials` when the Basic header cannot be decoded
BAD_BASIC = ("", None)


def form_of(body: bytes) -> dict[str, str]:
    """A ``application/x-www-form-urlencoded`` body, last value of each name."""
    return {k: v[-1] for k, v in parse_qs(body.decode("utf-8", "replace"), keep_blank_values=True).items()}


def client_credentials(req: Request, form: dict[str, str]) -> tuple[str | None, str | None] | None:
    """``(client_id, client_secret)`` from HTTP Basic or the form; ``None`` when Basic is malformed."""
    client_id, client_secret = form.get("client_id"), form.get("client_secret")
    auth = req.headers.get("authorization", "")
    if auth.lower().startswith("basic "):
        try:
            client_id, _, client_secret = (
                base64.b64decode(auth[6:].strip(), validate=True).decode("utf-8").partition(":")
            )
        except (binascii.Error, UnicodeDecodeError):
            return None
    return client_id, client_secret


def secret_ok(expected_id: str, expected_secret: str, client_id: str | None, client_secret: str | None) -> bool:
    return (
        client_id == expected_id
        and client_secret is not None
        and secrets.compare_digest(client_secret, expected_secret)
    )


def bearer(req: Request) -> str:
    """The Bearer token of ``req`` (empty when there is none)."""
    auth = req.headers.get("authorization", "")
    return auth[7:].strip() if auth.lower().startswith("bearer ") else ""


def pkce_ok(verifier: str, challenge: str) -> bool:
    digest = base64.urlsafe_b64encode(hashlib.sha256(verifier.encode()).digest()).rstrip(b"=").decode()
    return secrets.compare_digest(digest, challenge)


def redirect_to(redirect_uri: str, **params: str) -> Response:
    """302 to ``redirect_uri`` with ``params`` added to its query."""
    sep = "&" if "?" in redirect_uri else "?"
    return Response(302, b"", {"Location": f"{redirect_uri}{sep}{urlencode(params)}"})


@dataclass
class Tokens:
    """Issued tokens; survives an emulator's ``reset_state()``."""

    initial_refresh_token: str
    access_token_ttl: float
    refresh_grace_seconds: float
    access_prefix: str = "emu-at-"
    access_bytes: int = 20
    refresh_prefix: str = "emu-rt-"
    refresh_bytes: int = 16
    code_prefix: str = "emu-code-"
    code_bytes: int = 12
    access: dict[str, float] = field(default_factory=dict)
    #: refresh token -> valid until (``None`` = until used)
    refresh: dict[str, float | None] = field(default_factory=dict)
    refresh_token_uses: list[str] = field(default_factory=list)
    codes: dict[str, dict[str, Any]] = field(default_factory=dict)

    def __post_init__(self) -> None:
        self.refresh.setdefault(self.initial_refresh_token, None)

    @property
    def current_refresh_token(self) -> str:
        """The newest refresh token issued (the initial one before any refresh)."""
        return next(reversed(self.refresh))

    def new_refresh(self) -> str:
        token = self.refresh_prefix + secrets.token_hex(self.refresh_bytes)
        self.refresh[token] = None
        return token

    def new_access(self, now: float | None = None) -> str:
        token = self.access_prefix + secrets.token_hex(self.access_bytes)
        self.access[token] = (time.monotonic() if now is None else now) + self.access_token_ttl
        return token

    def spend_refresh(self, presented: str, now: float | None = None) -> bool:
        """Check a presented refresh token (recorded in ``refresh_token_uses``); ``False`` = ``invalid_grant``.

        A token stays usable ``refresh_grace_seconds`` after its first use.
        """
        now = time.monotonic() if now is None else now
        self.refresh_token_uses.append(presented)
        if presented not in self.refresh:
            return False
        valid_until = self.refresh[presented]
        if valid_until is not None and now >= valid_until:
            return False
        self.refresh[presented] = now + self.refresh_grace_seconds if valid_until is None else valid_until
        return True

    def rotate(self, presented: str, now: float | None = None) -> tuple[str, str] | None:
        """Refresh-token grant: ``(access, new refresh)`` or ``None`` (``invalid_grant``)."""
        now = time.monotonic() if now is None else now
        if not self.spend_refresh(presented, now):
            return None
        new_refresh = self.new_refresh()
        return self.new_access(now), new_refresh

    def issue_code(self, redirect_uri: str, challenge: str | None, lifetime: float = 300) -> str:
        code = self.code_prefix + secrets.token_hex(self.code_bytes)
        self.codes[code] = {
            "redirect_uri": redirect_uri,
            "challenge": challenge,
            "expires": time.monotonic() + lifetime,
        }
        return code

    def redeem_code(self, form: dict[str, str]) -> str | None:
        """Authorization-code grant check: ``None`` when valid, else ``"code"`` (unknown, expired or another
        ``redirect_uri``) or ``"verifier"`` (PKCE mismatch). The code is single-use either way."""
        entry = self.codes.pop(form.get("code", ""), None)
        if entry is None or time.monotonic() > entry["expires"] or entry["redirect_uri"] != form.get("redirect_uri"):
            return "code"
        if entry["challenge"] and not pkce_ok(form.get("code_verifier", ""), entry["challenge"]):
            return "verifier"
        return None

    def expiry(self, token: str) -> float | None:
        """When ``token`` expires (monotonic seconds), ``None`` when it was never issued."""
        return self.access.get(token)

    def valid(self, token: str) -> bool:
        expires = self.access.get(token)
        return expires is not None and time.monotonic() < expires

    def expire_all(self) -> None:
        past = time.monotonic() - 1
        for token in self.access:
            self.access[token] = past


class TokenHolder:
    """Mixin of emulators with OAuth2 :class:`Tokens` (``self.tokens``): the test-facing attributes."""

    tokens: Tokens
    _lock: Any

    @property
    def _access_tokens(self) -> dict[str, float]:
        return self.tokens.access

    @property
    def _refresh_tokens(self) -> dict[str, float | None]:
        return self.tokens.refresh

    @property
    def _auth_codes(self) -> dict[str, dict[str, Any]]:
        return self.tokens.codes

    @property
    def refresh_token_uses(self) -> list[str]:
        """Refresh tokens presented to the token endpoint, in order."""
        return self.tokens.refresh_token_uses

    @property
    def initial_refresh_token(self) -> str:
        return self.tokens.initial_refresh_token

    @property
    def access_token_ttl(self) -> float:
        return self.tokens.access_token_ttl

    @access_token_ttl.setter
    def access_token_ttl(self, value: float) -> None:
        self.tokens.access_token_ttl = value

    @property
    def refresh_grace_seconds(self) -> float:
        return self.tokens.refresh_grace_seconds

    @refresh_grace_seconds.setter
    def refresh_grace_seconds(self, value: float) -> None:
        self.tokens.refresh_grace_seconds = value

    @property
    def current_refresh_token(self) -> str:
        """The newest refresh token issued (the initial one before any refresh)."""
        with self._lock:
            return self.tokens.current_refresh_token

    def expire_access_tokens(self) -> None:
        """Expire every issued access token now (the next call gets the system's 401)."""
        with self._lock:
            self.tokens.expire_all()


#: :func:`token_grant` outcome of a PKCE ``code_verifier`` that does not match the challenge
INVALID_VERIFIER = "invalid_grant:verifier"


def token_grant(
    tokens: Tokens, req: Request, client_id: str, client_secret: str, form: dict[str, str] | None = None
) -> tuple[str, str] | str:
    """The usual token endpoint: client authentication (HTTP Basic or form fields), then the
    ``refresh_token`` grant (rotating, :meth:`Tokens.rotate`) or the ``authorization_code`` grant
    (:meth:`Tokens.redeem_code`). Caller holds the emulator's lock.

    Returns ``(access token, refresh token)`` or the OAuth error for the emulator to answer in its
    system's way: ``"invalid_client"``, ``"unsupported_grant_type"``, ``"invalid_grant"`` or
    :data:`INVALID_VERIFIER` (an ``invalid_grant`` because of PKCE). ``form`` defaults to the
    urlencoded body.
    """
    form = form_of(req.body) if form is None else form
    credentials = client_credentials(req, form)
    if credentials is None or not secret_ok(client_id, client_secret, *credentials):
        return "invalid_client"
    grant_type = form.get("grant_type")
    if grant_type == "authorization_code":
        problem = tokens.redeem_code(form)
        if problem is not None:
            return INVALID_VERIFIER if problem == "verifier" else "invalid_grant"
        new_refresh = tokens.new_refresh()
        return tokens.new_access(), new_refresh
    if grant_type != "refresh_token":
        return "unsupported_grant_type"
    issued = tokens.rotate(form.get("refresh_token", ""))
    return "invalid_grant" if issued is None else issued


def authorization_refusal(query: dict[str, str], client_id: str) -> str | None:
    """Why the consent page refuses an authorization request (``response_type=code``): ``"invalid_client"``
    (another ``client_id``) or ``"invalid_request"`` (another ``response_type``, or a ``redirect_uri`` off
    loopback); ``None``: the user consents at once (issue a code with :meth:`Tokens.issue_code`)."""
    if query.get("client_id") != client_id:
        return "invalid_client"
    if query.get("response_type") != "code" or not LOOPBACK_REDIRECT.match(query.get("redirect_uri", "")):
        return "invalid_request"
    return None


def consent(tokens: Tokens, query: dict[str, str], client_id: str, **params: str) -> Response | str:
    """The consent page of an authorization request: the user consents at once, a code is issued (with the
    request's PKCE ``code_challenge``) and the answer is a 302 to the loopback ``redirect_uri`` with ``code``,
    ``state`` and ``params``; or the refusal of :func:`authorization_refusal`, for the emulator to answer in
    its system's way. Caller holds the emulator's lock."""
    refusal = authorization_refusal(query, client_id)
    if refusal is not None:
        return refusal
    redirect = query["redirect_uri"]
    code = tokens.issue_code(redirect, query.get("code_challenge"))
    return redirect_to(redirect, code=code, state=query.get("state", ""), **params)


@dataclass
class ExpiringTokens(Tokens):
    """:class:`Tokens` whose refresh tokens also expire, ``refresh_token_ttl`` seconds after they were issued;
    a spent one stays usable ``refresh_grace_seconds`` at most (never past its expiry)."""

    refresh_token_ttl: float = 14 * 86400.0

    def __post_init__(self) -> None:
        self.refresh.setdefault(self.initial_refresh_token, time.monotonic() + self.refresh_token_ttl)

    def new_refresh(self, now: float | None = None) -> str:
        token = self.refresh_prefix + secrets.token_hex(self.refresh_bytes)
        self.refresh[token] = (time.monotonic() if now is None else now) + self.refresh_token_ttl
        return token

    def refresh_refusal(self, presented: str, now: float | None = None) -> str | None:
        """Spend a presented refresh token (recorded in ``refresh_token_uses``): ``None`` when it is good
        (from now on it lives ``refresh_grace_seconds`` at most), else ``"unknown"`` or ``"expired"``."""
        now = time.monotonic() if now is None else now
        self.refresh_token_uses.append(presented)
        if presented not in self.refresh:
            return "unknown"
        valid_until = self.refresh[presented]
        if valid_until is not None and now >= valid_until:
            return "expired"
        grace_end = now + self.refresh_grace_seconds
        self.refresh[presented] = grace_end if valid_until is None else min(valid_until, grace_end)
        return None

    def spend_refresh(self, presented: str, now: float | None = None) -> bool:
        return self.refresh_refusal(presented, now) is None


def token_setting(name: str, doc: str | None = None) -> Any:
    """A read-write property onto ``self.tokens.<name>`` (a :class:`TokenHolder`'s token setting that tests
    may change at run time, e.g. ``refresh_token_ttl = token_setting("refresh_token_ttl")``)."""

    def get(self: TokenHolder) -> Any:
        return getattr(self.tokens, name)

    def put(self: TokenHolder, value: Any) -> None:
        setattr(self.tokens, name, value)

    return property(get, put, doc=doc)
