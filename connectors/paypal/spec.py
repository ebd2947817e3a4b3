"""Request validation of the PayPal emulator against the official ``invoicing_v2.json`` (on the sandbox kit).

Checked against the spec (OpenAPI 3.0.3, API "Invoices" 2.3), for the operations in :data:`OPERATIONS` (any
other ``/v2/invoicing`` call is refused): bodies with OpenAPI 3.0 write semantics (``readOnly`` properties
such as ``id``, ``status``, ``tax.amount`` or ``detail.metadata`` refused) and, with ``strict_properties``
(default), no property name the spec does not define (``allOf`` branches merged: ``invoice_detail`` =
``detail`` + number/date/terms); query parameters (``page``, ``page_size``, ``total_required``, ``fields``,
``send_to_*``; undeclared ones refused); the security scheme (``Authorization: Bearer``); the JSON
``Content-Type``. On ``POST /v1/oauth2/token`` (the ``clientCredentials`` ``tokenUrl``, outside the paths):
HTTP Basic credentials and a form with ``grant_type=client_credentials``.

The spec declares no ``PayPal-Request-Id`` header for Invoicing; it is not checked either way.
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any
from urllib.parse import parse_qs

from connectors.sandbox.spec import SpecRequest, SpecRequestValidator, SpecValidationError, load_document, load_openapi

OPERATIONS = (
    "invoices.create",
    "invoices.list",
    "invoices.get",
    "invoices.update",
    "invoices.delete",
    "invoices.send",
    "invoices.cancel",
    "invoices.payments",
    "invoices.search-invoices",
    "invoicing.generate-next-invoice-number",
)
TOKEN_URL = "/v1/oauth2/token"


def _token_request(request: SpecRequest) -> Iterator[str]:
    if request.path != TOKEN_URL:
        return
    if request.method != "POST":
        yield f"{request.method} {request.path}: the token URL takes POST"
    if not request.headers.get("authorization", "").lower().startswith("basic "):
        yield "header Authorization: client credentials must be sent with HTTP Basic"
    if "x-www-form-urlencoded" not in request.headers.get("content-type", ""):
        yield f"header Content-Type: {request.headers.get('content-type')!r}, the token request is a form"
    form = {k: v[-1] for k, v in parse_qs(request.body.decode("utf-8", "replace")).items()}
    if form.get("grant_type") != "client_credentials":
        yield f"form grant_type: {form.get('grant_type')!r}, the spec's flow is clientCredentials"


def load_spec(spec_path: str | Path) -> dict[str, Any]:
    """The parsed spec (cached per path; shared, do not modify)."""
    return load_document(spec_path)


def make_request_validator(spec_path: str | Path, *, strict_properties: bool = True) -> SpecRequestValidator:
    """The emulator's ``request_validator``: raises :class:`SpecValidationError` listing the first problems."""
    return SpecRequestValidator(
        load_openapi(spec_path),
        operations=OPERATIONS,
        scope="/v2/invoicing",
        strict_properties=strict_properties,
        strict_query=True,
        check_security=True,
        checks=(_token_request,),
        title="the PayPal Invoicing v2 spec",
    )


def validate_document(
    spec_path: str | Path, schema_name: str, document: Any, *, mode: str = "write", strict_properties: bool = True
) -> list[str]:
    """Problems of ``document`` against ``components/schemas/<schema_name>`` (empty list when valid).

    ``mode="write"`` for request bodies (readOnly refused), ``"read"`` for responses (writeOnly refused).
    """
    validator = make_request_validator(spec_path, strict_properties=strict_properties)
    return [str(p) for p in validator.schema_problems(schema_name, document, mode=mode)]


__all__ = ["OPERATIONS", "SpecValidationError", "load_spec", "make_request_validator", "validate_document"]
