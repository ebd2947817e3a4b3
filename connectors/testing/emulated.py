"""Harness parts shared by connectors whose emulator is built on the sandbox kit (:mod:`connectors.sandbox`).

* :class:`EmulatorHarness` — the emulator's lifecycle (``emu``/``emulator``, ``stop``, ``reset``),
  the server-error hook and the health check every such emulator supports;
* :class:`OAuthEmulatorHarness` — what the OAuth 2.0 emulators with a ``fault_retry_after``
  (Xero, QuickBooks, FreshBooks) share besides: the app's generated secrets and the variables that
  hold them, the rate-limit, timeout-after-commit and token hooks, the issued tokens.

A harness built on them still writes ``start()`` (its emulator's arguments), ``settings()``,
``invoices()`` and its data hooks. The kit depends on the emulator's shape only (the protocols
below), not on the sandbox kit.
"""

from __future__ import annotations

import secrets
from collections.abc import Mapping
from contextlib import AbstractContextManager
from typing import Any, ClassVar, Generic, Protocol, TypeVar

from connectors.testing.harness import ConnectorHarness


class SandboxEmulator(Protocol):
    """What :class:`EmulatorHarness` uses of an emulator (the sandbox kit's ``Emulator`` has all of it)."""

    validation_failures: list[str]
    server_errors: list[str]

    def stop(self) -> None: ...

    def reset_state(self) -> None: ...

    def inject_fault(self, kind: str, times: int = 1) -> None: ...


class OAuthSandboxEmulator(SandboxEmulator, Protocol):
    """What :class:`OAuthEmulatorHarness` uses besides: the sandbox kit's ``TokenHolder`` and ``fault_retry_after``
    (the ``Retry-After`` seconds of an injected 429)."""

    fault_retry_after: int

    @property
    def client_id(self) -> str: ...

    @property
    def refresh_token_uses(self) -> list[str]: ...

    @property
    def _lock(self) -> AbstractContextManager[Any]: ...

    @property
    def _access_tokens(self) -> Mapping[str, object]: ...

    @property
    def _refresh_tokens(self) -> Mapping[str, object]: ...

    def expire_access_tokens(self) -> None: ...


E = TypeVar("E", bound=SandboxEmulator)
OE = TypeVar("OE", bound=OAuthSandboxEmulator)


class EmulatorHarness(ConnectorHarness, Generic[E]):
    """A :class:`ConnectorHarness` whose ``start()`` sets ``self.emu`` to the started emulator.

    ``invalid_requests`` starts the message :meth:`assert_healthy` fails with when the emulator
    found requests outside the system's spec (``"requests not conforming to the Xero OpenAPI spec"``).
    """

    #: The emulator, once :meth:`start` has started it (``None`` before).
    emu: E | None = None
    invalid_requests: ClassVar[str] = "requests not conforming to the spec"

    @property
    def emulator(self) -> E:
        """The running emulator; ``AssertionError`` before :meth:`start`."""
        assert self.emu is not None, f"{type(self).__name__}.start() was not called"
        return self.emu

    def stop(self) -> None:
        """Stop the emulator, if one was started."""
        if self.emu is not None:
            self.emu.stop()

    def reset(self) -> None:
        """The emulator's ``reset_state()``: stored objects, windows, faults and records forgotten."""
        self.emulator.reset_state()

    def inject_server_error(self, status: int = 503, times: int = 1) -> None:
        """The next ``times`` API calls answered ``status`` (the emulator's fault kind ``str(status)``)."""
        self.emulator.inject_fault(str(status), times)

    def assert_healthy(self) -> None:
        """Fail on requests the emulator found invalid (the first 3) or on its own errors (the first)."""
        failures, errors = list(self.emulator.validation_failures), list(self.emulator.server_errors)
        assert not failures, f"{self.invalid_requests}: {failures[:3]}"
        assert not errors, f"emulator errors: {errors[:1]}"


class OAuthEmulatorHarness(EmulatorHarness[OE]):
    """An :class:`EmulatorHarness` for an OAuth 2.0 emulator (refresh-token grant) with ``fault_retry_after``.

    Each instance generates the app's client secret and first refresh token (``client_secret``,
    ``refresh_token``: ``"conf-<secret_prefix>-secret-<16 hex digits>"`` and ``...-refresh-...``),
    which ``start()`` passes to the emulator; ``client_secret_env`` and ``refresh_token_env`` name
    the variables :meth:`env` puts them in, and :meth:`oauth_settings` names them to the connector.
    """

    secret_prefix: ClassVar[str]
    client_secret_env: ClassVar[str]
    refresh_token_env: ClassVar[str]

    def __init__(self) -> None:
        self.client_secret = f"conf-{self.secret_prefix}-secret-" + secrets.token_hex(8)
        self.refresh_token = f"conf-{self.secret_prefix}-refresh-" + secrets.token_hex(8)

    def oauth_settings(self) -> dict[str, Any]:
        """The emulator's ``client_id`` and the names of the two secret variables (part of :meth:`settings`)."""
        return {
            "client_id": self.emulator.client_id,
            "client_secret_env": self.client_secret_env,
            "refresh_token_env": self.refresh_token_env,
        }

    def env(self) -> dict[str, str]:
        """The client secret and the first refresh token, under the variables the settings name."""
        return {self.client_secret_env: self.client_secret, self.refresh_token_env: self.refresh_token}

    def reset(self) -> None:
        """:meth:`EmulatorHarness.reset`, and an injected 429 says ``Retry-After: 1`` again."""
        super().reset()
        self.emulator.fault_retry_after = 1

    def inject_rate_limit(self, retry_after: int = 1) -> None:
        """The next API call answered 429 with ``Retry-After: retry_after``."""
        self.emulator.fault_retry_after = retry_after
        self.emulator.inject_fault("429")

    def inject_timeout_after_commit(self) -> None:
        """The next write stored, its answer held open past the connector's timeout."""
        self.emulator.inject_fault("timeout_after_commit")

    def expire_tokens(self) -> None:
        """Every access token issued so far expires now."""
        self.emulator.expire_access_tokens()

    def refresh_count(self) -> int:
        """Refresh tokens presented to the token endpoint so far."""
        return len(self.emulator.refresh_token_uses)

    def issued_secrets(self) -> list[str]:
        """Every access and refresh token the emulator issued (none may leak)."""
        emulator = self.emulator
        with emulator._lock:
            return [*emulator._access_tokens, *emulator._refresh_tokens]


__all__ = ["EmulatorHarness", "OAuthEmulatorHarness", "OAuthSandboxEmulator", "SandboxEmulator"]
