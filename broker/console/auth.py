"""Who may use the operator console: operators, their password hashes, their tenants, and sessions.

**Operators** come from a YAML or JSON document (``broker console --operators FILE``, or the
document itself in ``BROKER_CONSOLE_OPERATORS``)::

    operators:
      alice:
        password_hash: "scrypt$16384$8$1$<salt>$<hash>"   # broker console hash-password
        tenants: ["*"]                                     # every tenant
      bob:
        password_hash: "scrypt$16384$8$1$..."
        tenants: [acme-fm, nordic-hvac]

**Password hashes** are scrypt (:func:`hashlib.scrypt`, RFC 7914) in the form
``scrypt$N$r$p$<salt>$<hash>``: the cost ``N`` (a power of two), block size ``r`` and parallelism ``p``
as decimal integers, the salt (16 bytes) and the derived key (32 bytes) in unpadded URL-safe base64.
:func:`hash_password` makes one (``N=2**14, r=8, p=1``: about 16 MiB and 50 ms per check);
:func:`verify_password` checks in constant time. A plain password is never accepted in the file.

**Sessions** are signed tokens (:class:`SessionSigner`): ``<payload>.<signature>``, the payload the
unpadded URL-safe base64 of ``{"sub": operator, "exp": unix seconds, "pwd": fingerprint}`` and the
signature its HMAC-SHA256 under the console's secret (``BROKER_CONSOLE_SECRET``; a random one per
process when unset, so sessions end with the process). The fingerprint is of the password hash, so a
changed password ends the operator's sessions. The browser holds it in an ``HttpOnly``,
``SameSite=Lax`` cookie; scripts send it as ``Authorization: Bearer <token>`` or use HTTP Basic.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import json
import os
import secrets
import time
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import yaml

__all__ = [
    "ALL_TENANTS",
    "OPERATORS_ENV",
    "SECRET_ENV",
    "Operator",
    "OperatorsError",
    "SessionSigner",
    "hash_password",
    "load_operators",
    "parse_operators",
    "verify_password",
]

#: The environment variable holding the operators document itself (YAML or JSON).
OPERATORS_ENV = "BROKER_CONSOLE_OPERATORS"
#: The environment variable holding the secret that signs session tokens (at least 32 characters).
SECRET_ENV = "BROKER_CONSOLE_SECRET"
#: ``tenants`` entry meaning every tenant.
ALL_TENANTS = "*"

_SCHEME = "scrypt"
_SALT_BYTES = 16
_KEY_BYTES = 32
_DEFAULT_N, _DEFAULT_R, _DEFAULT_P = 2**14, 8, 1


class OperatorsError(ValueError):
    """The operators document is unreadable or invalid; the message names the operator and field."""


def _b64(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode("ascii")


def _unb64(text: str) -> bytes:
    return base64.urlsafe_b64decode(text + "=" * (-len(text) % 4))


def _scrypt(password: str, salt: bytes, n: int, r: int, p: int) -> bytes:
    return hashlib.scrypt(
        password.encode("utf-8"), salt=salt, n=n, r=r, p=p, dklen=_KEY_BYTES, maxmem=256 * n * r * p + 2**20
    )


def hash_password(password: str, *, n: int = _DEFAULT_N, r: int = _DEFAULT_R, p: int = _DEFAULT_P) -> str:
    """``scrypt$N$r$p$<salt>$<hash>`` of ``password`` with a fresh random salt (module docstring).

    Raises ``ValueError`` for an empty password or an ``n`` that is not a power of two above 1."""
    if not password:
        raise ValueError("the password is empty")
    if n < 2 or n & (n - 1):
        raise ValueError(f"n={n} is not a power of two above 1")
    salt = secrets.token_bytes(_SALT_BYTES)
    return f"{_SCHEME}${n}${r}${p}${_b64(salt)}${_b64(_scrypt(password, salt, n, r, p))}"


def _parse_hash(encoded: str) -> tuple[int, int, int, bytes, bytes]:
    """The parts of an ``scrypt$N$r$p$salt$hash`` string; ``ValueError`` saying what is wrong (never the hash)."""
    parts = encoded.split("$")
    if len(parts) != 6 or parts[0] != _SCHEME:
        raise ValueError("is not of the form scrypt$N$r$p$salt$hash (make one with `broker console hash-password`)")
    try:
        n, r, p = (int(x) for x in parts[1:4])
        salt, key = _unb64(parts[4]), _unb64(parts[5])
    except ValueError:
        raise ValueError("has a cost, salt or hash that cannot be read") from None
    if n < 2 or n & (n - 1) or not 1 <= r <= 64 or not 1 <= p <= 16 or n * r > 2**24:
        raise ValueError(f"has unusable scrypt parameters N={n} r={r} p={p}")
    if len(salt) < 8 or len(key) < 16:
        raise ValueError("has a salt or hash that is too short")
    return n, r, p, salt, key


def verify_password(password: str, encoded: str) -> bool:
    """Whether ``password`` matches ``encoded`` (``scrypt$...``), compared in constant time; ``False`` for
    a malformed ``encoded``."""
    try:
        n, r, p, salt, key = _parse_hash(encoded)
    except ValueError:
        return False
    return hmac.compare_digest(_scrypt(password, salt, n, r, p), key)


@dataclass(frozen=True)
class Operator:
    """An operator: ``name``, ``password_hash`` (``scrypt$...``, never shown) and the ``tenants`` they may
    see (``frozenset({"*"})``: every tenant)."""

    name: str
    password_hash: str
    tenants: frozenset[str]

    @property
    def all_tenants(self) -> bool:
        """Whether the operator sees every tenant."""
        return ALL_TENANTS in self.tenants

    def may_see(self, tenant: str | None) -> bool:
        """Whether the operator may see rows of ``tenant`` (``None``: only operators of every tenant)."""
        return self.all_tenants or (tenant is not None and tenant in self.tenants)

    def visible(self) -> frozenset[str] | None:
        """The tenants to restrict queries to (``None``: no restriction)."""
        return None if self.all_tenants else self.tenants

    def fingerprint(self) -> str:
        """A short digest of the password hash: tokens carry it, so a new password ends old sessions."""
        return hashlib.sha256(self.password_hash.encode()).hexdigest()[:16]

    def __repr__(self) -> str:  # never the hash
        return f"Operator(name={self.name!r}, tenants={sorted(self.tenants)!r})"


def parse_operators(text: str, *, where: str) -> dict[str, Operator]:
    """``{name: Operator}`` from a YAML or JSON operators document (module docstring).

    Raises :class:`OperatorsError` naming ``where`` (a file or variable), the operator and the field
    when the document is not YAML, has no operator, or an operator lacks a valid ``password_hash`` or
    a non-empty ``tenants`` list of strings."""
    try:
        raw: Any = yaml.safe_load(text)
    except yaml.YAMLError as exc:
        raise OperatorsError(f"{where}: not YAML or JSON: {str(exc).splitlines()[0]}") from None
    if isinstance(raw, Mapping) and "operators" in raw:
        raw = raw["operators"]
    if not isinstance(raw, Mapping) or not raw:
        raise OperatorsError(f"{where}: expected `operators:` mapping each operator's name to its settings")
    out: dict[str, Operator] = {}
    for name, entry in raw.items():
        field = f"{where}: operators.{name}"
        if not isinstance(name, str) or not name or ":" in name:
            raise OperatorsError(f"{field}: an operator's name is a non-empty string without ':'")
        if not isinstance(entry, Mapping):
            raise OperatorsError(f"{field}: expected a mapping with password_hash and tenants")
        unknown = sorted(set(entry) - {"password_hash", "tenants"})
        if unknown:
            raise OperatorsError(f"{field}: unknown field(s) {', '.join(map(str, unknown))}")
        encoded = entry.get("password_hash")
        if not isinstance(encoded, str):
            raise OperatorsError(f"{field}.password_hash: missing (make one with `broker console hash-password`)")
        try:
            _parse_hash(encoded)
        except ValueError as exc:
            raise OperatorsError(f"{field}.password_hash: {exc}") from None
        tenants = entry.get("tenants")
        if not isinstance(tenants, list) or not tenants or not all(isinstance(t, str) and t for t in tenants):
            raise OperatorsError(f'{field}.tenants: expected a non-empty list of tenant ids, or ["*"] for all')
        out[name] = Operator(name, encoded, frozenset(tenants))
    return out


def load_operators(path: str | Path | None, environ: Mapping[str, str] | None = None) -> dict[str, Operator]:
    """The operators of file ``path``, else of ``$BROKER_CONSOLE_OPERATORS`` (the document itself).

    Raises :class:`OperatorsError` when neither is given, the file cannot be read, or the document is
    invalid (:func:`parse_operators`)."""
    env = os.environ if environ is None else environ
    if path is not None:
        try:
            text = Path(path).read_text(encoding="utf-8")
        except OSError as exc:
            raise OperatorsError(f"{path}: cannot read it: {exc.strerror or exc}") from None
        return parse_operators(text, where=str(path))
    document = env.get(OPERATORS_ENV)
    if not document:
        raise OperatorsError(f"no operators: give --operators FILE or set {OPERATORS_ENV} (docs/console.md)")
    return parse_operators(document, where=f"${OPERATORS_ENV}")


class SessionSigner:
    """Signs and checks session tokens (module docstring) under ``secret``; tokens live ``lifetime`` seconds."""

    def __init__(self, secret: bytes, *, lifetime: int = 8 * 3600, clock: Any = time.time) -> None:
        if len(secret) < 32:
            raise ValueError(f"the session secret ({SECRET_ENV}) must be at least 32 bytes, not {len(secret)}")
        self._secret = secret
        self.lifetime = lifetime
        self._clock = clock

    @classmethod
    def from_env(cls, environ: Mapping[str, str] | None = None) -> SessionSigner:
        """With ``$BROKER_CONSOLE_SECRET`` (``ValueError`` when shorter than 32), else a random secret."""
        env = os.environ if environ is None else environ
        given = env.get(SECRET_ENV)
        return cls(given.encode() if given else secrets.token_bytes(32))

    def _sign(self, payload: str) -> str:
        return _b64(hmac.new(self._secret, payload.encode("ascii"), hashlib.sha256).digest())

    def issue(self, operator: Operator) -> tuple[str, int]:
        """A token for ``operator`` and its expiry (unix seconds)."""
        expires = int(self._clock()) + self.lifetime
        body = json.dumps({"sub": operator.name, "exp": expires, "pwd": operator.fingerprint()}, separators=(",", ":"))
        payload = _b64(body.encode())
        return f"{payload}.{self._sign(payload)}", expires

    def check(self, token: str, operators: Mapping[str, Operator]) -> Operator | None:
        """The operator ``token`` was issued to, or ``None`` when it is forged, expired, of an operator no
        longer configured or of an older password."""
        payload, dot, signature = token.partition(".")
        if not dot or not hmac.compare_digest(signature.encode(), self._sign(payload).encode()):
            return None
        try:
            claims = json.loads(_unb64(payload))
        except ValueError:
            return None
        if not isinstance(claims, dict) or not isinstance(claims.get("exp"), int) or claims["exp"] <= self._clock():
            return None
        operator = operators.get(str(claims.get("sub")))
        if operator is None or not hmac.compare_digest(str(claims.get("pwd")), operator.fingerprint()):
            return None
        return operator
