"""Request validation of the Xero emulator against the official ``xero_accounting.yaml`` (on the sandbox kit).

Checked: the creates and updates of invoices, contacts and credit notes — the body (``Invoices``, ``Contacts``,
``CreditNotes``; ``readOnly`` properties such as ``SubTotal``/``Total`` refused), the ``xero-tenant-id``
header, ``summarizeErrors``/``unitdp`` and, from the spec's prose, ``Idempotency-Key`` ≤ 128 characters. Paths
are case-insensitive and a body without ``Content-Type`` is read as JSON, as Xero does. ``strict_properties``
(default) refuses property names the spec does not define (Xero ignores them, which hides typos such as
``Taxamount``). Other requests pass unchecked.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from connectors.sandbox.spec import JSON, SpecRequestValidator, SpecValidationError, header_max_length, load_openapi

OPERATIONS = (
    "createInvoices",
    "updateOrCreateInvoices",
    "updateInvoice",
    "createContacts",
    "updateOrCreateContacts",
    "createCreditNotes",
    "updateOrCreateCreditNotes",
)


def make_request_validator(spec_path: str | Path, *, strict_properties: bool = True) -> SpecRequestValidator:
    """The emulator's ``request_validator``: raises :class:`SpecValidationError` listing the first problems."""
    return SpecRequestValidator(
        load_openapi(spec_path),
        operations=OPERATIONS,
        ignore_case=True,
        strict_properties=strict_properties,
        strict_query=True,
        default_media_type=JSON,
        checks=(header_max_length("Idempotency-Key", 128),),
    )


def validate_invoices_body(spec_path: str | Path, document: Any, *, strict_properties: bool = True) -> list[str]:
    """Problems of a parsed ``{"Invoices": [...]}`` document (empty list when valid)."""
    validator = make_request_validator(spec_path, strict_properties=strict_properties)
    return [str(p) for p in validator.schema_problems("Invoices", document)]


__all__ = ["OPERATIONS", "SpecValidationError", "make_request_validator", "validate_invoices_body"]
