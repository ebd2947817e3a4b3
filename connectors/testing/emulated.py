"""Harness parts shared by connectors whose emulator is built on the sandbox kit (:mod:`connectors.sandbox`).

* :class:`EmulatorHarness` — the emulator's lifecycle (``start`` with the request validator of the
  system's spec when its file is there, ``emu``/``emulator``, ``stop``, ``reset``), the server-error
  hook and the health check every such emulator supports;
* :class:`OAuthEmulatorHarness` — what the OAuth 2.0 emulators with a ``fault_retry_after``
  (Xero, QuickBooks, FreshBooks) share besides: the app's generated secrets and the variables that
  hold them, the options every such emulator is built with, the rate-limit, timeout-after-commit and
  token hooks, the issued tokens.

A harness built on them still writes ``new_emulator()`` (its emulator's arguments) or ``start()``,
``settings()``, ``invoices()`` and its data hooks. The kit depends on the emulator's shape only (the
protocols below), not on the sandbox kit.
"""

from __future__ import annotations

import importlib
import secrets
from collections.abc import Callable, Mapping
from contextlib import AbstractContextManager
from pathlib import Path
from typing import Any, ClassVar, Generic, Protocol, Self, TypedDict, TypeVar

from connectors.testing.harness import ConnectorHarness

#: An emulator's ``request_validator``: ``(method, path, query, headers, body)``, raising when the request does
#: not conform to the system's spec (the sandbox kit's ``RequestValidator``).
RequestValidator = Callable[[str, str, dict[str, Any], dict[str, Any], bytes], Any]


class SandboxEmulator(Protocol):
    """What :class:`EmulatorHarness` uses of an emulator (the sandbox kit's ``Emulator`` has all of it)."""

    validation_failures: list[str]
    server_errors: list[str]

    def start(self) -> Self: ...

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


class OAuthEmulatorOptions(TypedDict):
    """The arguments :meth:`OAuthEmulatorHarness.emulator_options` gives every OAuth emulator."""

    client_secret: str
    refresh_token: str
    hang_seconds: float
    request_validator: RequestValidator | None


E = TypeVar("E", bound=SandboxEmulator)
OE = TypeVar("OE", bound=OAuthSandboxEmulator)


class EmulatorHarness(ConnectorHarness, Generic[E]):
    """A :class:`ConnectorHarness` whose ``start()`` sets ``self.emu`` to the started emulator.

    The default :meth:`start` starts the emulator :meth:`new_emulator` builds; a harness whose system
    has a spec names the module with its ``make_request_validator(spec_path)`` in ``spec_module``
    (``"connectors.xero.spec"``) and the file in :meth:`spec_file`, and passes :meth:`request_validator`
    to its emulator. ``invalid_requests`` starts the message :meth:`assert_healthy` fails with when the
    emulator found requests outside the system's spec (``"requests not conforming to the Xero OpenAPI spec"``).
    """

    #: The emulator, once :meth:`start` has started it (``None`` before).
    emu: E | None = None
    invalid_requests: ClassVar[str] = "requests not conforming to the spec"
    #: The module whose ``make_request_validator(spec_path)`` builds the emulator's request validator
    #: (``None``: requests are not validated).
    spec_module: ClassVar[str | None] = None

    def spec_file(self) -> Path | None:
        """The spec the emulator validates requests against when the file is there (``None``: none).

        Called at every :meth:`start` (``broker demo`` swaps the harness module's ``SPEC`` to start without
        validation when the ``sandbox`` extra is missing)."""
        return None

    def request_validator(self) -> RequestValidator | None:
        """The emulator's request validator: ``spec_module``'s ``make_request_validator`` on :meth:`spec_file`;
        ``None`` when there is no spec or its file is not there. The module is imported only then: without the
        ``sandbox`` extra (its libraries) that raises ``ModuleNotFoundError``."""
        spec = self.spec_file()
        if self.spec_module is None or spec is None or not spec.exists():
            return None
        make: Callable[[Path], RequestValidator] = importlib.import_module(self.spec_module).make_request_validator
        return make(spec)

    def new_emulator(self) -> E:
        """The system's emulator, not started yet (with :meth:`request_validator` when it has a spec)."""
        raise NotImplementedError

    def start(self) -> None:
        """Start the emulator :meth:`new_emulator` builds, on a free loopback port."""
        self.emu = self.new_emulator().start()

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
    which :meth:`emulator_options` passes to the emulator; ``client_secret_env`` and ``refresh_token_env`` name
    the variables :meth:`env` puts them in, and :meth:`oauth_settings` names them to the connector.
    """

    secret_prefix: ClassVar[str]
    client_secret_env: ClassVar[str]
    refresh_token_env: ClassVar[str]
    #: How long the emulator holds the answer of a timed-out call (longer than ``fast_timeout``).
    hang_seconds: ClassVar[float] = 2.0

    def __init__(self) -> None:
        self.client_secret = f"conf-{self.secret_prefix}-secret-" + secrets.token_hex(8)
        self.refresh_token = f"conf-{self.secret_prefix}-refresh-" + secrets.token_hex(8)

    def emulator_options(self) -> OAuthEmulatorOptions:
        """What :meth:`new_emulator` passes to every OAuth emulator besides its system's arguments: the generated
        client secret and first refresh token, ``hang_seconds`` and the :meth:`request_validator`."""
        return {
            "client_secret": self.client_secret,
            "refresh_token": self.refresh_token,
            "hang_seconds": self.hang_seconds,
            "request_validator": self.request_validator(),
        }

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


__all__ = [
    "EmulatorHarness",
    "OAuthEmulatorHarness",
    "OAuthEmulatorOptions",
    "OAuthSandboxEmulator",
    "RequestValidator",
    "SandboxEmulator",
]
