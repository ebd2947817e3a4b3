"""Validate requests to the Stripe emulator against the official OpenAPI spec (``spec3.yaml``).

Stripe request bodies are ``application/x-www-form-urlencoded`` with bracket notation, so a body is
first decoded (:func:`connectors.stripe.mapper.decode_form`) into nested dicts/lists of strings,
then coerced to the types the spec declares (``integer``, ``number``, ``boolean``; ``anyOf``
alternatives tried in order, as Stripe does with e.g. ``metadata`` = object or ``""``), then
validated with OpenAPI 3.0 semantics (``openapi_schema_validator.OAS30WriteValidator``). The
request schemas in the spec carry ``additionalProperties: false``, so an unknown parameter is an
error, exactly like Stripe's ``Received unknown parameter: ...``. Query parameters of the ``GET``
operations the connector uses are checked the same way against the operation's ``parameters``.

The 4 MB spec takes seconds to parse: the schemas of :data:`VALIDATED_OPERATIONS` are extracted once
and cached per process (``functools.lru_cache``) and on disk (a small JSON next to the system's
temporary files, keyed by the spec's SHA-256), so later processes start in milliseconds.
"""

from __future__ import annotations

import functools
import hashlib
import json
import os
import re
import tempfile
from collections.abc import Callable
from decimal import Decimal, InvalidOperation
from pathlib import Path
from typing import Any
from urllib.parse import parse_qsl

from jsonschema import FormatChecker

from connectors.stripe.mapper import decode_form

try:
    from openapi_schema_validator import OAS30WriteValidator
except ImportError:  # pragma: no cover
    from jsonschema import Draft4Validator as OAS30WriteValidator  # type: ignore[assignment]

RequestValidator = Callable[[str, str, dict, dict, bytes], None]

#: (method, path template) of every operation the connector and emulator use -> spec operationId.
VALIDATED_OPERATIONS: dict[tuple[str, str], str] = {
    ("POST", "/v1/invoices"): "PostInvoices",
    ("GET", "/v1/invoices"): "GetInvoices",
    ("GET", "/v1/invoices/search"): "GetInvoicesSearch",
    ("GET", "/v1/invoices/{invoice}"): "GetInvoicesInvoice",
    ("POST", "/v1/invoices/{invoice}"): "PostInvoicesInvoice",
    ("POST", "/v1/invoices/{invoice}/finalize"): "PostInvoicesInvoiceFinalize",
    ("POST", "/v1/invoices/{invoice}/send"): "PostInvoicesInvoiceSend",
    ("POST", "/v1/invoiceitems"): "PostInvoiceitems",
    ("GET", "/v1/invoiceitems"): "GetInvoiceitems",
    ("POST", "/v1/customers"): "PostCustomers",
    ("GET", "/v1/customers"): "GetCustomers",
    ("GET", "/v1/customers/search"): "GetCustomersSearch",
    ("GET", "/v1/customers/{customer}"): "GetCustomersCustomer",
    ("POST", "/v1/tax_rates"): "PostTaxRates",
    ("GET", "/v1/tax_rates"): "GetTaxRates",
    ("GET", "/v1/balance"): "GetBalance",
}
_CACHE_VERSION = 1


class SpecValidationError(ValueError):
    """A request does not conform to the Stripe OpenAPI spec; ``param`` names the first bad parameter."""

    def __init__(self, message: str, param: str | None = None):
        super().__init__(message)
        self.param = param


def _template_regex(template: str) -> re.Pattern[str]:
    return re.compile("^" + re.sub(r"\\\{[^/]+?\\\}", r"[^/]+", re.escape(template)) + "$")


_TEMPLATES = [(method, template, _template_regex(template)) for method, template in VALIDATED_OPERATIONS]


def match_operation(method: str, path: str) -> tuple[str, str] | None:
    """``(method, template)`` of the validated operation ``path`` belongs to, or ``None``.

    Literal paths win over templated ones (``/v1/invoices/search`` is not ``/v1/invoices/{invoice}``).
    """
    method = method.upper()
    path = path.rstrip("/") or "/"
    if (method, path) in VALIDATED_OPERATIONS:
        return method, path
    for m, template, rx in _TEMPLATES:
        if m == method and rx.match(path):
            return m, template
    return None


def _extract(spec: dict) -> dict[str, Any]:
    ops: dict[str, Any] = {}
    for (method, template), op_id in VALIDATED_OPERATIONS.items():
        op = spec["paths"][template][method.lower()]
        if op.get("operationId") != op_id:
            raise ValueError(f"spec: {method} {template} is {op.get('operationId')!r}, expected {op_id!r}")
        body = (
            ((op.get("requestBody") or {}).get("content") or {}).get("application/x-www-form-urlencoded") or {}
        ).get("schema")
        query = {
            p["name"]: {"required": bool(p.get("required")), "schema": p.get("schema", {})}
            for p in op.get("parameters", [])
            if p.get("in") == "query"
        }
        ops[f"{method} {template}"] = {"operationId": op_id, "body": body, "query": query}
    return {"version": _CACHE_VERSION, "info": spec.get("info", {}).get("version"), "ops": ops}


@functools.lru_cache(maxsize=4)
def load_operations(spec_path: str) -> dict[str, Any]:
    """The request schemas of :data:`VALIDATED_OPERATIONS` from ``spec_path`` (cached in memory and on disk)."""
    raw = Path(spec_path).read_bytes()
    digest = hashlib.sha256(raw).hexdigest()
    cache = Path(tempfile.gettempdir()) / f"broker-stripe-spec-{digest[:16]}-v{_CACHE_VERSION}.json"
    try:
        data = json.loads(cache.read_text(encoding="utf-8"))
        if data.get("version") == _CACHE_VERSION and set(data["ops"]) == {f"{m} {t}" for m, t in VALIDATED_OPERATIONS}:
            return data
    except (OSError, ValueError, KeyError):
        pass
    import yaml

    loader = getattr(yaml, "CSafeLoader", yaml.SafeLoader)
    data = _extract(yaml.load(raw, Loader=loader))
    try:  # atomic write; a failure to cache is not an error
        fd, tmp = tempfile.mkstemp(dir=cache.parent, prefix=cache.name, suffix=".tmp")
        with os.fdopen(fd, "w", encoding="utf-8") as fh:
            json.dump(data, fh)
        os.replace(tmp, cache)
    except OSError:
        pass
    return data


# --------------------------------------------------------------------------- coercion
_INT = re.compile(r"^-?\d+$")


def _types(schema: dict) -> list[str]:
    t = schema.get("type")
    return [t] if isinstance(t, str) else list(t or [])


def coerce(value: Any, schema: dict, validator_cls: Any = OAS30WriteValidator) -> Any:
    """Convert form strings in ``value`` to the types ``schema`` declares (see the module docstring)."""
    if not isinstance(schema, dict):
        return value
    for combinator in ("anyOf", "oneOf"):
        if combinator in schema:
            for alternative in schema[combinator]:
                candidate = coerce(value, alternative, validator_cls)
                if validator_cls(alternative).is_valid(candidate):
                    return candidate
            return value
    types = _types(schema)
    if isinstance(value, str):
        if "integer" in types and _INT.match(value):
            return int(value)
        if "number" in types:
            try:
                number = Decimal(value)
                if number.is_finite():
                    return number
            except InvalidOperation:
                pass
        if "boolean" in types and value in ("true", "false"):
            return value == "true"
        return value
    if isinstance(value, dict):
        if "array" in types and all(k.isdigit() for k in value):
            value = [value[k] for k in sorted(value, key=int)]
        else:
            props = schema.get("properties") or {}
            extra = schema.get("additionalProperties")
            out = {}
            for k, v in value.items():
                if k in props:
                    out[k] = coerce(v, props[k], validator_cls)
                elif isinstance(extra, dict):
                    out[k] = coerce(v, extra, validator_cls)
                else:
                    out[k] = v
            return out
    if isinstance(value, list):
        items = schema.get("items") or {}
        return [coerce(v, items, validator_cls) for v in value]
    return value


def _param_name(path: Any) -> str:
    parts = [str(p) for p in path]
    if not parts:
        return ""
    return parts[0] + "".join(f"[{p}]" for p in parts[1:])


def _describe(error: Any) -> tuple[str, str]:
    param = _param_name(error.absolute_path)
    if error.validator == "additionalProperties" and isinstance(error.instance, dict):
        allowed = set(error.schema.get("properties") or {})
        unknown = sorted(k for k in error.instance if k not in allowed)
        if unknown:
            name = _param_name(list(error.absolute_path) + [unknown[0]])
            return name, f"Received unknown parameter: {name}"
    if error.validator == "required":
        missing = error.message.split("'")[1] if "'" in error.message else error.message
        return _param_name(
            list(error.absolute_path) + [missing]
        ), f"Missing required param: {_param_name(list(error.absolute_path) + [missing])}."
    message = error.message if len(error.message) <= 200 else error.message[:197] + "..."
    return param, f"Invalid {param or 'request'}: {message}"


@functools.lru_cache(maxsize=64)
def _validator(schema_json: str) -> Any:
    return OAS30WriteValidator(json.loads(schema_json), format_checker=FormatChecker())


def validate_params(operation: dict[str, Any], params: dict[str, Any], *, query: bool) -> list[tuple[str, str]]:
    """Problems ``[(param, message)]`` of decoded ``params`` for ``operation`` (body or query)."""
    if query:
        spec = operation["query"]
        schema = {
            "type": "object",
            "additionalProperties": False,
            "properties": {name: p["schema"] for name, p in spec.items()},
            "required": sorted(name for name, p in spec.items() if p["required"]),
        }
    else:
        schema = operation["body"] or {"type": "object", "additionalProperties": False, "properties": {}}
    validator = _validator(json.dumps(schema, sort_keys=True))
    document = coerce(params, schema)
    problems = []
    for error in sorted(validator.iter_errors(document), key=lambda e: [str(p) for p in e.absolute_path]):
        problems.append(_describe(error))
    return problems


def make_request_validator(spec_path: str | Path) -> RequestValidator:
    """``validate(method, path, query, headers, body)`` raising :class:`SpecValidationError`.

    ``query`` is ignored in favour of re-decoding the raw query when ``headers`` carries the
    emulator's ``x-raw-query`` (bracket notation needs the raw pairs); bodies must be
    ``application/x-www-form-urlencoded``. Operations not in :data:`VALIDATED_OPERATIONS` pass.
    ``Idempotency-Key`` longer than 255 characters is an error too.
    """
    data = load_operations(str(Path(spec_path).resolve()))

    def validate(method: str, path: str, query: dict, headers: dict, body: bytes) -> None:
        matched = match_operation(method, path)
        if matched is None:
            return
        operation = data["ops"][f"{matched[0]} {matched[1]}"]
        lower = {str(k).lower(): v for k, v in (headers or {}).items()}
        problems: list[tuple[str, str]] = []
        key = lower.get("idempotency-key")
        if key is not None and len(key) > 255:
            problems.append(("Idempotency-Key", f"Idempotency-Key is {len(key)} characters, 255 max"))
        raw_query = lower.get("x-raw-query")
        try:
            q = (
                decode_form(parse_qsl(raw_query, keep_blank_values=True))
                if raw_query is not None
                else dict(query or {})
            )
        except ValueError as exc:
            problems.append(("query", str(exc)))
            q = {}
        problems.extend(validate_params(operation, q, query=True))
        if matched[0] == "POST":
            content_type = str(lower.get("content-type", ""))
            if body and "application/x-www-form-urlencoded" not in content_type:
                problems.append(
                    ("Content-Type", f"Content-Type {content_type!r}: Stripe expects application/x-www-form-urlencoded")
                )
            else:
                try:
                    params = decode_form(body or b"")
                except (ValueError, UnicodeDecodeError) as exc:
                    problems.append(("body", f"Invalid form body: {exc}"))
                else:
                    problems.extend(validate_params(operation, params, query=False))
        if problems:
            shown = "; ".join(m for _, m in problems[:5])
            more = f" (+{len(problems) - 5} more)" if len(problems) > 5 else ""
            raise SpecValidationError(
                f"{method.upper()} {path} ({operation['operationId']}): {shown}{more}", param=problems[0][0]
            )

    return validate


def validate_form(
    spec_path: str | Path, method: str, template: str, params: dict[str, Any] | list[tuple[str, str]]
) -> list[str]:
    """Problems of one request body (nested params or form pairs) for ``method template``; empty when valid."""
    data = load_operations(str(Path(spec_path).resolve()))
    operation = data["ops"][f"{method.upper()} {template}"]
    decoded = decode_form(params) if isinstance(params, list) else params
    return [m for _, m in validate_params(operation, decoded, query=False)]
