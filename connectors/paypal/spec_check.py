"""Validate requests to (and responses of) the PayPal emulator against the official ``invoicing_v2.json``.

:func:`make_request_validator` returns a callable with the emulator's ``request_validator`` signature
``(method, path, query, headers, body)`` raising :class:`SpecValidationError` when a request does not
match the spec (OpenAPI 3.0.3, API "Invoices" 2.3):

* bodies of ``invoices.create`` / ``invoices.update`` (schema ``invoice``), ``invoices.send`` and
  ``invoices.cancel`` (``notification``, optional body), ``invoices.search-invoices``
  (``search_data``), validated with OpenAPI 3.0 write semantics
  (``openapi_schema_validator.OAS30WriteValidator``: ``readOnly`` properties such as ``id``,
  ``status``, ``tax.amount`` or ``detail.metadata`` are rejected in requests, ``$ref`` resolved in the spec);
* ``strict_properties=True`` (default) also rejects property names the spec does not define, merging
  ``allOf`` branches (``invoice_detail`` = ``detail`` + number/date/terms) — PayPal ignores or rejects
  them, either way they are a bug on our side;
* query parameters ``page`` (1–1000), ``page_size`` (1–100), ``total_required`` (boolean), ``fields``
  (``all``/``none``) of the operations that declare them;
* the security scheme: ``Authorization: Bearer`` on every ``/v2/invoicing`` call, and on
  ``POST /v1/oauth2/token`` (the spec's ``clientCredentials`` ``tokenUrl``) HTTP Basic credentials and a
  form body with ``grant_type=client_credentials``;
* JSON ``Content-Type`` on bodies.

The spec declares no ``PayPal-Request-Id`` header for Invoicing; it is not checked either way.
"""

from __future__ import annotations

import functools
import json
import re
from collections.abc import Callable
from pathlib import Path
from typing import Any
from urllib.parse import parse_qs

from jsonschema import FormatChecker

try:
    from openapi_schema_validator import OAS30ReadValidator, OAS30WriteValidator
except ImportError:  # pragma: no cover - openapi-core brings it
    from jsonschema import Draft4Validator as OAS30ReadValidator  # type: ignore[assignment]
    from jsonschema import Draft4Validator as OAS30WriteValidator  # type: ignore[assignment]

RequestValidator = Callable[[str, str, dict, dict, bytes], None]

_ID = r"[^/]+"
#: (method, path regex) -> (operationId, request schema or None, body required, query parameter names)
OPERATIONS: list[tuple[str, re.Pattern[str], str, str | None, bool, tuple[str, ...]]] = [
    ("POST", re.compile(r"^/v2/invoicing/invoices$"), "invoices.create", "invoice", True, ()),
    (
        "GET",
        re.compile(r"^/v2/invoicing/invoices$"),
        "invoices.list",
        None,
        False,
        ("page", "page_size", "total_required", "fields"),
    ),
    ("GET", re.compile(rf"^/v2/invoicing/invoices/{_ID}$"), "invoices.get", None, False, ()),
    (
        "PUT",
        re.compile(rf"^/v2/invoicing/invoices/{_ID}$"),
        "invoices.update",
        "invoice",
        True,
        ("send_to_recipient", "send_to_invoicer"),
    ),
    ("DELETE", re.compile(rf"^/v2/invoicing/invoices/{_ID}$"), "invoices.delete", None, False, ()),
    ("POST", re.compile(rf"^/v2/invoicing/invoices/{_ID}/send$"), "invoices.send", "notification", False, ()),
    ("POST", re.compile(rf"^/v2/invoicing/invoices/{_ID}/cancel$"), "invoices.cancel", "notification", False, ()),
    (
        "POST",
        re.compile(r"^/v2/invoicing/search-invoices$"),
        "invoices.search-invoices",
        "search_data",
        False,
        ("page", "page_size", "total_required"),
    ),
    (
        "POST",
        re.compile(r"^/v2/invoicing/generate-next-invoice-number$"),
        "invoicing.generate-next-invoice-number",
        None,
        False,
        (),
    ),
]


class SpecValidationError(ValueError):
    """A request does not conform to the PayPal Invoicing v2 spec; the message lists the first problems."""


@functools.lru_cache(maxsize=4)
def load_spec(spec_path: str) -> dict[str, Any]:
    """The parsed spec (cached per path)."""
    with open(spec_path, "rb") as fh:
        spec = json.load(fh)
    if "components" not in spec or "schemas" not in spec["components"]:
        raise ValueError(f"{spec_path}: not an OpenAPI document with components/schemas")
    return spec


def _resolve(root: dict, schema: Any) -> Any:
    seen = 0
    while isinstance(schema, dict) and "$ref" in schema and seen < 50:
        ref = schema["$ref"]
        if not ref.startswith("#/"):
            raise ValueError(f"external $ref {ref!r} not supported")
        node: Any = root
        for part in ref[2:].split("/"):
            node = node[part.replace("~1", "/").replace("~0", "~")]
        schema = node
        seen += 1
    return schema


def _properties(root: dict, schema: Any) -> dict[str, Any]:
    """Properties of ``schema`` including those of its ``allOf`` branches (recursively)."""
    schema = _resolve(root, schema)
    if not isinstance(schema, dict):
        return {}
    props = dict(schema.get("properties") or {})
    for branch in schema.get("allOf") or []:
        for name, sub in _properties(root, branch).items():
            props.setdefault(name, sub)
    return props


def _items_schema(root: dict, schema: Any) -> Any:
    schema = _resolve(root, schema)
    if not isinstance(schema, dict):
        return None
    if "items" in schema:
        return schema["items"]
    for branch in schema.get("allOf") or []:
        found = _items_schema(root, branch)
        if found is not None:
            return found
    return None


def unknown_properties(root: dict, schema: Any, instance: Any, path: str = "") -> list[str]:
    """JSON pointers of properties in ``instance`` that ``schema`` (with its ``allOf``) does not define."""
    problems: list[str] = []
    if isinstance(instance, dict):
        props = _properties(root, schema)
        if not props:
            return problems
        for key, value in instance.items():
            if key not in props:
                problems.append(f"{path}/{key}: property not defined by the spec")
            else:
                problems.extend(unknown_properties(root, props[key], value, f"{path}/{key}"))
    elif isinstance(instance, list):
        items = _items_schema(root, schema)
        if items is not None:
            for i, value in enumerate(instance):
                problems.extend(unknown_properties(root, items, value, f"{path}/{i}"))
    return problems


def _format_checker() -> FormatChecker:
    # PayPal's custom formats (ppaas_*) are not known to jsonschema and are ignored; their patterns
    # and lengths are in the schemas themselves. Only keep the standard checkers.
    return FormatChecker()


@functools.lru_cache(maxsize=16)
def _validator(spec_path: str, schema_name: str, mode: str) -> Any:
    spec = load_spec(spec_path)
    if schema_name not in spec["components"]["schemas"]:
        raise ValueError(f"{spec_path}: components/schemas/{schema_name} not found")
    root = {"components": spec["components"], "$ref": f"#/components/schemas/{schema_name}"}
    cls = OAS30WriteValidator if mode == "write" else OAS30ReadValidator
    return cls(root, format_checker=_format_checker())


def _describe(error: Any) -> str:
    where = "/" + "/".join(str(p) for p in error.absolute_path)
    message = error.message if len(error.message) <= 200 else error.message[:197] + "..."
    return f"{where}: {message}"


def validate_document(
    spec_path: str | Path, schema_name: str, document: Any, *, mode: str = "write", strict_properties: bool = True
) -> list[str]:
    """Problems of ``document`` against ``components/schemas/<schema_name>`` (empty list when valid).

    ``mode="write"`` for request bodies (readOnly rejected), ``"read"`` for responses (writeOnly rejected).
    """
    spec_path = str(Path(spec_path).resolve())
    validator = _validator(spec_path, schema_name, mode)
    problems = [
        _describe(e) for e in sorted(validator.iter_errors(document), key=lambda e: [str(p) for p in e.absolute_path])
    ]
    if strict_properties:
        spec = load_spec(spec_path)
        problems.extend(unknown_properties(spec, {"$ref": f"#/components/schemas/{schema_name}"}, document))
    return problems


def _check_query(name: str, value: str) -> str | None:
    if name == "page":
        return (
            None if value.isdigit() and 1 <= int(value) <= 1000 else f"query page: {value!r} must be an integer 1–1000"
        )
    if name == "page_size":
        return (
            None
            if value.isdigit() and 1 <= int(value) <= 100
            else f"query page_size: {value!r} must be an integer 1–100"
        )
    if name in ("total_required", "send_to_recipient", "send_to_invoicer"):
        return None if value.lower() in ("true", "false") else f"query {name}: {value!r} is not a boolean"
    if name == "fields":
        return None if value.lower() in ("all", "none") else f"query fields: {value!r} must be all or none"
    return None


def make_request_validator(spec_path: str | Path, *, strict_properties: bool = True) -> RequestValidator:
    """Build (once) and return ``validate(method, path, query, headers, body) -> None``.

    ``query`` maps names to string values, ``headers`` has any-case names, ``body`` is the raw body.
    Paths outside the spec (``/_emulator/...``) pass unchecked; an unknown ``/v2/invoicing`` operation
    is an error. Raises :class:`SpecValidationError` (a ``ValueError``) describing up to 5 problems.
    """
    spec_path = str(Path(spec_path).resolve())
    load_spec(spec_path)

    def validate(method: str, path: str, query: dict, headers: dict, body: bytes) -> None:
        method = method.upper()
        path = path.rstrip("/") or "/"
        lower = {str(k).lower(): str(v) for k, v in (headers or {}).items()}
        problems: list[str] = []
        if path == "/v1/oauth2/token":
            if method != "POST":
                problems.append(f"{method} {path}: the token URL takes POST")
            if not lower.get("authorization", "").lower().startswith("basic "):
                problems.append("header Authorization: client credentials must be sent with HTTP Basic")
            if "x-www-form-urlencoded" not in lower.get("content-type", ""):
                problems.append(f"header Content-Type: {lower.get('content-type')!r}, the token request is a form")
            form = {k: v[-1] for k, v in parse_qs((body or b"").decode("utf-8", "replace")).items()}
            if form.get("grant_type") != "client_credentials":
                problems.append(f"form grant_type: {form.get('grant_type')!r}, the spec's flow is clientCredentials")
        elif path.startswith("/v2/invoicing"):
            operation = next((op for op in OPERATIONS if op[0] == method and op[1].match(path)), None)
            if operation is None:
                problems.append(f"{method} {path}: no such operation in the spec")
            else:
                _, _, op_id, schema_name, body_required, query_names = operation
                if not lower.get("authorization", "").startswith("Bearer "):
                    problems.append("header Authorization: Bearer token required (security scheme Oauth2)")
                for name, value in (query or {}).items():
                    if name not in query_names:
                        problems.append(f"query {name}: not a parameter of {op_id}")
                    else:
                        problem = _check_query(name, str(value))
                        if problem:
                            problems.append(problem)
                if schema_name is None:
                    if body:
                        problems.append(f"<body>: {op_id} takes no request body")
                elif not body:
                    if body_required:
                        problems.append(f"<body>: {op_id} requires a {schema_name} body")
                else:
                    content_type = lower.get("content-type", "")
                    if "application/json" not in content_type:
                        problems.append(
                            f"header Content-Type: {content_type!r}, the spec's request media type is application/json"
                        )
                    try:
                        document = json.loads(body)
                    except ValueError as exc:
                        problems.append(f"<body>: not JSON ({exc})")
                    else:
                        problems.extend(
                            validate_document(spec_path, schema_name, document, strict_properties=strict_properties)
                        )
        if problems:
            shown = problems[:5]
            more = f" (+{len(problems) - 5} more)" if len(problems) > 5 else ""
            raise SpecValidationError(
                f"{method} {path} does not match the PayPal Invoicing v2 spec: " + "; ".join(shown) + more
            )

    return validate


__all__ = ["SpecValidationError", "load_spec", "make_request_validator", "unknown_properties", "validate_document"]
