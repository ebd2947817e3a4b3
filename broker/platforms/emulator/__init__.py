"""One loopback emulator of the maintenance platforms' APIs, for tests and the demo (never imported
by the intake): each platform's API under ``/<platform>/...`` (``PlatformEmulator.base_url``), with
its authentication, its published rate limit (429 with ``Retry-After``), its error shapes and the
sandbox kit's injectable faults (``POST /_emulator/faults``). The data is the sample scenario of
``broker/platforms/samples/`` (a chiller repair on 2025-03-15, a preventive visit, a quotation);
tests add their own records with :meth:`PlatformEmulator.put`.

Each platform's part is a :class:`PlatformApi` in ``broker/platforms/emulator/<platform>.py``, which
also builds that platform's signed webhook (``webhook(...)``), as the platform sends it.
"""

from __future__ import annotations

import copy
import importlib
import json
import pkgutil
from collections.abc import Mapping
from pathlib import Path
from typing import Any, ClassVar

from connectors.sandbox import Emulator, Request, Response, Router, Window, json_response

__all__ = ["SAMPLES", "PlatformApi", "PlatformEmulator", "sample", "sample_bytes"]

#: The sample data shipped with the broker (JSON files per platform).
SAMPLES = Path(__file__).resolve().parent.parent / "samples"
#: The platforms with an API to emulate (a module each in this package; Odoo's webhook is complete).
PLATFORM_APIS = tuple(
    sorted(m.name for m in pkgutil.iter_modules([str(Path(__file__).resolve().parent)]) if not m.ispkg)
)


def sample_bytes(platform: str, name: str) -> bytes:
    """The exact bytes of sample ``<platform>/<name>`` (webhook bodies are signed over them)."""
    return (SAMPLES / platform / name).read_bytes()


def sample(platform: str, name: str) -> Any:
    """Sample ``<platform>/<name>`` decoded (fractions as :class:`~decimal.Decimal`)."""
    from decimal import Decimal

    return json.loads(sample_bytes(platform, name), parse_float=Decimal)


class PlatformApi:
    """One platform's API in the emulator: ``name`` (the path prefix), ``root`` (the API root under
    it, e.g. ``/v1``), ``per_minute`` (its published limit), the credentials it accepts, and its
    ``records`` (collections of JSON objects, by name, each a dict by id)."""

    name: ClassVar[str]
    root: ClassVar[str] = ""
    per_minute: ClassVar[int | None] = None

    def __init__(self, token: str, username: str | None = None):
        self.token = token
        self.username = username
        self.records: dict[str, dict[str, Any]] = {}
        self.router = Router()
        self.window = Window(self.per_minute)
        self.load_samples()
        self.add_routes(self.router)

    def load_samples(self) -> None:
        """Fill :attr:`records` with the sample scenario."""

    def add_routes(self, router: Router) -> None:
        """Add the API's routes (paths under :attr:`root`); handlers take ``(req, **path args)``."""

    def authorized(self, req: Request) -> bool:
        """Whether the request carries the API's credentials (default: ``Authorization: Bearer``)."""
        return req.headers.get("authorization") == f"Bearer {self.token}"

    def unauthorized(self) -> Response:
        """The platform's answer to missing or bad credentials."""
        return json_response(401, {"error": "Unauthorized"})

    def not_found(self, what: str) -> Response:
        """The platform's answer to an unknown id."""
        return json_response(404, {"error": f"{what} not found"})

    def throttled(self, retry_after: int) -> Response:
        """The platform's 429."""
        return json_response(429, {"error": "Too Many Requests"}, {"Retry-After": str(retry_after)})

    def put(self, collection: str, key: str, record: Any) -> None:
        """Store ``record`` (a deep copy) as ``collection[key]``."""
        self.records.setdefault(collection, {})[key] = copy.deepcopy(record)

    def get(self, collection: str, key: str) -> Any:
        """``collection[key]`` or None."""
        return self.records.get(collection, {}).get(key)


class PlatformEmulator(Emulator):
    """The platforms' APIs on one loopback port (``port=0``: a free one). ``credentials``: per
    platform, ``{"token": ..., "username": ...}`` the API accepts (defaults: ``<platform>-token``)."""

    name = "platform-emulator"
    server_version = "PlatformEmulator/1.0"

    def __init__(
        self, host: str = "127.0.0.1", port: int = 0, *, credentials: Mapping[str, Mapping[str, str]] | None = None
    ):
        self._init_sandbox(host, port)
        self.credentials = {p: dict((credentials or {}).get(p, {})) for p in PLATFORM_APIS}
        self._init_state()

    def _init_state(self) -> None:
        self._init_records()
        self.apis: dict[str, PlatformApi] = {}
        for platform in PLATFORM_APIS:
            module = importlib.import_module(f"broker.platforms.emulator.{platform}")
            given = self.credentials[platform]
            self.apis[platform] = module.API(given.get("token", f"{platform}-token"), given.get("username"))

    def base_url(self, platform: str) -> str:
        """The API root of ``platform`` as its client is configured (``webhooks.<p>.api.base_url``)."""
        return f"{self.url}/{platform}{self.apis[platform].root}"

    def api(self, platform: str) -> PlatformApi:
        """The emulated API of ``platform`` (its records, limit and credentials)."""
        return self.apis[platform]

    def put(self, platform: str, collection: str, key: str, record: Any) -> None:
        """Store a record in ``platform``'s API (thread-safe)."""
        with self._lock:
            self.apis[platform].put(collection, key, record)

    def requests(self, platform: str) -> list[str]:
        """``"GET /path"`` of every API call ``platform`` answered, in order."""
        with self._lock:
            return [f"{m} {p}" for m, p, _ in self.calls if p.startswith(f"/{platform}/")]

    def _handle(self, req: Request) -> Response:
        admin = self._admin_routes().get((req.method, req.path.lower()))
        if admin is not None:
            return admin(req)
        platform, _, rest = req.path.lstrip("/").partition("/")
        api = self.apis.get(platform)
        if api is None or not ("/" + rest).startswith(api.root):
            return json_response(404, {"error": f"no such API: {req.path}"})
        path = ("/" + rest)[len(api.root) :] or "/"
        with self._lock:
            retry = self._throttle(api.window, api.per_minute)
            if retry is not None:
                return api.throttled(retry)
            fault = self._take_fault(req.method, req.path)
        answer = self._fault_answer(fault)
        if answer is not None:
            return answer
        if not api.authorized(req):
            return api.unauthorized()
        self._delay()
        with self._lock:
            found = api.router.dispatch(req, path)
        if found is None:
            return api.not_found(path)
        return self._answer_processed(found, fault)
