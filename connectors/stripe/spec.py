"""Request validation of the Stripe emulator against the official ``spec3.yaml`` (on the sandbox kit).

Stripe request bodies and queries are ``application/x-www-form-urlencoded`` with bracket notation: they are
decoded with :func:`connectors.stripe.mapper.decode_form` (a query from the raw query the emulator passes in
the ``x-raw-query`` header), their strings coerced to the declared types (``anyOf`` alternatives in order, as
Stripe does with e.g. ``metadata`` = object or ``""``) and validated against the operations the connector
uses. The spec's request schemas carry ``additionalProperties: false`` and undeclared query parameters are
refused, so an unknown parameter is an error worded as Stripe words it (``Received unknown parameter: ...``;
``SpecValidationError.param`` names it). ``Idempotency-Key`` longer than 255 characters is an error too.
"""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path
from typing import Any
from urllib.parse import parse_qsl

from connectors.sandbox.spec import (
    FORM,
    Problem,
    SpecRequestValidator,
    SpecValidationError,
    header_max_length,
    load_openapi,
)
from connectors.stripe.mapper import decode_form

OPERATIONS = (
    "PostInvoices",
    "GetInvoices",
    "GetInvoicesSearch",
    "GetInvoicesInvoice",
    "PostInvoicesInvoice",
    "PostInvoicesInvoiceFinalize",
    "PostInvoicesInvoiceSend",
    "PostInvoicesInvoiceVoid",
    "PostInvoicesInvoicePay",
    "DeleteInvoicesInvoice",
    "PostCreditNotes",
    "GetCreditNotes",
    "GetCreditNotesId",
    "PostInvoiceitems",
    "GetInvoiceitems",
    "PostCustomers",
    "GetCustomers",
    "GetCustomersSearch",
    "GetCustomersCustomer",
    "PostTaxRates",
    "GetTaxRates",
    "GetBalance",
)


def _query(query: Mapping[str, Any], headers: Mapping[str, str]) -> Mapping[str, Any]:
    raw = headers.get("x-raw-query")
    return dict(query) if raw is None else decode_form(parse_qsl(raw, keep_blank_values=True))


def _describe(problem: Problem) -> str:
    if problem.where not in ("body", "query") or not problem.path:
        return str(problem)
    if problem.keyword == "additionalProperties":
        return f"Received unknown parameter: {problem.param}"
    if problem.keyword == "required":
        return f"Missing required param: {problem.param}."
    return f"Invalid {problem.param}: {problem.message}"


def make_request_validator(spec_path: str | Path) -> SpecRequestValidator:
    """The emulator's ``request_validator``: raises :class:`SpecValidationError` listing the first problems."""
    return SpecRequestValidator(
        load_openapi(spec_path),
        operations=OPERATIONS,
        strict_query=True,
        decoders={FORM: decode_form},
        decode_query=_query,
        checks=(header_max_length("Idempotency-Key", 255),),
        describe=_describe,
    )


def validate_form(
    spec_path: str | Path, method: str, template: str, params: dict[str, Any] | list[tuple[str, str]]
) -> list[str]:
    """Problems of one request body (nested params or form pairs) for ``method template``; empty when valid."""
    decoded = decode_form(params) if isinstance(params, list) else params
    return [_describe(p) for p in make_request_validator(spec_path).body_problems(method, template, decoded, FORM)]


__all__ = ["OPERATIONS", "SpecValidationError", "make_request_validator", "validate_form"]
