"""Validate requests to the Xero emulator against the official OpenAPI spec (``xero_accounting.yaml``).

:func:`make_request_validator` returns a callable with the emulator's ``request_validator``
signature ``(method, path, query, headers, body)`` that raises :class:`SpecValidationError` when a
``PUT``/``POST`` to ``/api.xro/2.0/Invoices`` or ``/api.xro/2.0/Contacts`` does not match the
spec: body against ``components/schemas/Invoices`` / ``Contacts`` (OpenAPI 3.0 semantics via
``openapi_schema_validator.OAS30WriteValidator``: ``nullable`` honoured, ``readOnly`` properties such
as ``SubTotal``/``Total`` rejected in requests, ``$ref`` resolved inside the spec), the required
``xero-tenant-id`` header (spec parameter ``requiredHeader``), ``Idempotency-Key`` ≤128 characters
(parameter ``idempotencyKey``), ``summarizeErrors`` boolean and ``unitdp`` integer.

Bodies are parsed with ``parse_float=Decimal``; ``format: double`` accepts Decimal and int (JSON
numbers), never strings. Xero dates (``x-is-msdate``) are plain strings in the spec.

``strict_properties=True`` (default) additionally rejects property names the spec does not
define (real Xero silently ignores them, which hides typos such as ``Taxamount``).

The spec is parsed once per path and process (about a second for the 900 KB YAML) and cached.
"""

from __future__ import annotations

import copy
import functools
import json
import re
from collections.abc import Callable
from decimal import Decimal
from pathlib import Path
from typing import Any

import yaml
from jsonschema import FormatChecker

try:  # openapi-core depends on it; used for OpenAPI 3.0 keyword semantics
    from openapi_schema_validator import OAS30WriteValidator
    from openapi_schema_validator import oas30_format_checker as _oas30_formats
except ImportError:  # pragma: no cover - fallback keeps nullable unsupported but validation working
    from jsonschema import Draft4Validator as OAS30WriteValidator  # type: ignore[assignment]

    _oas30_formats = FormatChecker()

RequestValidator = Callable[[str, str, dict, dict, bytes], None]

#: (method, lower-cased path) -> schema name in components/schemas
VALIDATED_OPERATIONS: dict[tuple[str, str], str] = {
    ("PUT", "/api.xro/2.0/invoices"): "Invoices",  # createInvoices
    ("POST", "/api.xro/2.0/invoices"): "Invoices",  # updateOrCreateInvoices
    ("PUT", "/api.xro/2.0/contacts"): "Contacts",  # createContacts
    ("POST", "/api.xro/2.0/contacts"): "Contacts",  # updateOrCreateContacts
    ("PUT", "/api.xro/2.0/creditnotes"): "CreditNotes",  # createCreditNotes
    ("POST", "/api.xro/2.0/creditnotes"): "CreditNotes",  # updateOrCreateCreditNotes
}
#: (method, lower-cased path pattern) -> schema name, for operations on one resource
VALIDATED_PATTERNS: tuple[tuple[str, re.Pattern[str], str], ...] = (
    ("POST", re.compile(r"^/api\.xro/2\.0/invoices/[^/]+$"), "Invoices"),  # updateInvoice
)


def _schema_for(method: str, path: str) -> str | None:
    lower = path.rstrip("/").lower()
    name = VALIDATED_OPERATIONS.get((method.upper(), lower))
    if name is None:
        for m, pattern, schema in VALIDATED_PATTERNS:
            if m == method.upper() and pattern.match(lower):
                return schema
    return name


class SpecValidationError(ValueError):
    """A request does not conform to the Xero OpenAPI spec; the message lists the first problems."""


def _is_number(instance: object) -> bool:
    return not isinstance(instance, bool)  # type keyword already guarantees it is a number


def _format_checker() -> FormatChecker:
    checker = FormatChecker()
    checker.checkers = dict(getattr(_oas30_formats, "checkers", {}))
    # OpenAPI "double"/"float" formats: JSON numbers parsed as Decimal are fine (the default checker
    # insists on Python float, which we never use for money).
    checker.checks("double")(_is_number)
    checker.checks("float")(_is_number)
    return checker


@functools.lru_cache(maxsize=4)
def _load_components(spec_path: str) -> dict[str, Any]:
    with open(spec_path, "rb") as fh:
        loader = getattr(yaml, "CSafeLoader", yaml.SafeLoader)
        spec = yaml.load(fh, Loader=loader)
    try:
        return spec["components"]
    except (TypeError, KeyError):
        raise ValueError(f"{spec_path}: not an OpenAPI document with components") from None


def _forbid_unknown_properties(node: Any) -> None:
    if isinstance(node, dict):
        if isinstance(node.get("properties"), dict) and "additionalProperties" not in node:
            node["additionalProperties"] = False
        for value in node.values():
            _forbid_unknown_properties(value)
    elif isinstance(node, list):
        for value in node:
            _forbid_unknown_properties(value)


@functools.lru_cache(maxsize=8)
def _schema_validators(spec_path: str, strict_properties: bool) -> dict[str, Any]:
    components = _load_components(spec_path)
    if strict_properties:
        components = copy.deepcopy(components)
        _forbid_unknown_properties(components.get("schemas", {}))
    checker = _format_checker()
    validators = {}
    for name in sorted(set(VALIDATED_OPERATIONS.values()) | {schema for _, _, schema in VALIDATED_PATTERNS}):
        if name not in components.get("schemas", {}):
            raise ValueError(f"{spec_path}: components/schemas/{name} not found")
        root = {"components": components, "$ref": f"#/components/schemas/{name}"}
        validators[name] = OAS30WriteValidator(root, format_checker=checker)
    return validators


def _describe(error: Any) -> str:
    where = "/".join(str(p) for p in error.absolute_path) or "<body>"
    message = error.message if len(error.message) <= 200 else error.message[:197] + "..."
    return f"{where}: {message}"


def make_request_validator(spec_path: str | Path, *, strict_properties: bool = True) -> RequestValidator:
    """Build (once) and return ``validate(method, path, query, headers, body) -> None``.

    ``query`` maps parameter names to string values, ``headers`` has lower-case names, ``body`` is
    the raw request body. Requests other than the ones in :data:`VALIDATED_OPERATIONS` pass
    unchecked. Raises :class:`SpecValidationError` (a ``ValueError``) describing up to 5 problems.
    """
    spec_path = str(Path(spec_path).resolve())
    validators = _schema_validators(spec_path, strict_properties)

    def validate(method: str, path: str, query: dict, headers: dict, body: bytes) -> None:
        schema_name = _schema_for(method, path)
        if schema_name is None:
            return
        lower = {str(k).lower(): v for k, v in (headers or {}).items()}
        problems: list[str] = []
        if not lower.get("xero-tenant-id"):
            problems.append("header xero-tenant-id: required (parameter requiredHeader)")
        key = lower.get("idempotency-key")
        if key is not None and len(key) > 128:
            problems.append(f"header Idempotency-Key: {len(key)} characters, 128 max (parameter idempotencyKey)")
        for name, value in (query or {}).items():
            if name.lower() == "summarizeerrors" and str(value).lower() not in ("true", "false"):
                problems.append(f"query summarizeErrors: {value!r} is not a boolean")
            if name.lower() == "unitdp" and not str(value).lstrip("-").isdigit():
                problems.append(f"query unitdp: {value!r} is not an integer")
        content_type = str(lower.get("content-type", "application/json"))
        if "json" not in content_type:
            problems.append(f"header Content-Type: {content_type!r}, only application/json is validated")
        else:
            try:
                document = json.loads(body or b"", parse_float=Decimal)
            except ValueError as exc:
                problems.append(f"<body>: not JSON ({exc})")
            else:
                errors = sorted(
                    validators[schema_name].iter_errors(document), key=lambda e: [str(p) for p in e.absolute_path]
                )
                problems.extend(_describe(e) for e in errors)
        if problems:
            shown = problems[:5]
            more = f" (+{len(problems) - 5} more)" if len(problems) > 5 else ""
            raise SpecValidationError(
                f"{method.upper()} {path} does not match components/schemas/{schema_name}: " + "; ".join(shown) + more
            )

    return validate


def validate_invoices_body(spec_path: str | Path, document: Any, *, strict_properties: bool = True) -> list[str]:
    """Problems of an already-parsed ``{"Invoices": [...]}`` document (empty list when valid)."""
    validator = _schema_validators(str(Path(spec_path).resolve()), strict_properties)["Invoices"]
    return [_describe(e) for e in validator.iter_errors(document)]
