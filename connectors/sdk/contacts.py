"""Contact / customer mapping: which billing-system contact an invoice is addressed to.

Order (issue 5, "Contact/customer mapping"):

1. the tenant configuration maps our client id to the billing system's id
   (``clients.<id>.contact_id``, carried on the invoice as ``contact_id``) — used as is;
2. otherwise the connector looks the contact up by **tax number**, then **e-mail**, then **name**
   (exact, case-insensitive for e-mail and name);
3. otherwise, when the tenant allows it (a connector setting such as ``create_contacts: true``),
   the contact is created;
4. otherwise :class:`~connectors.sdk.errors.PermanentError` naming the client (so the invoice is
   dead-lettered with a message telling the operator which mapping to add).

A connector implements :class:`ContactDirectory` (two small calls against its API) and keeps one
:class:`ContactResolver` per tenant; results are cached for the connector's lifetime.
"""

from __future__ import annotations

import asyncio
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any, Literal, Protocol

from connectors.sdk.errors import PermanentError
from connectors.sdk.invoice import Invoice

LookupField = Literal["tax_number", "email", "name"]
LOOKUP_ORDER: tuple[LookupField, ...] = ("tax_number", "email", "name")


@dataclass(frozen=True)
class ContactQuery:
    """What we know about the client of an invoice."""

    client_id: str
    name: str
    email: str | None = None
    tax_number: str | None = None
    contact_id: str | None = None

    @classmethod
    def from_invoice(cls, invoice: Invoice, client: Any | None = None) -> ContactQuery:
        """From the invoice, completed by the tenant's client entry (``broker.config.Client``) when known."""
        return cls(
            client_id=invoice.client_id,
            name=(getattr(client, "name", None) or invoice.client_name),
            email=getattr(client, "email", None),
            tax_number=getattr(client, "tax_number", None),
            contact_id=invoice.contact_id or getattr(client, "contact_id", None),
        )

    def lookups(self) -> list[tuple[LookupField, str]]:
        values = {"tax_number": self.tax_number, "email": self.email, "name": self.name}
        return [(f, str(values[f]).strip()) for f in LOOKUP_ORDER if values[f] and str(values[f]).strip()]


class ContactDirectory(Protocol):
    """Implemented by a connector: find and create contacts in its billing system."""

    async def find_contact(self, field: LookupField, value: str) -> str | None:
        """The id of the contact whose ``field`` equals ``value`` exactly (``None`` when absent)."""

    async def create_contact(self, query: ContactQuery) -> str:
        """Create the contact (name, e-mail, tax number) and return its id."""


def same_value(field: LookupField, a: str | None, b: str | None) -> bool:
    """Exact comparison used on lookup results: case-insensitive for e-mail and name, spaces ignored for tax numbers."""
    if a is None or b is None:
        return False
    if field == "tax_number":
        return a.replace(" ", "").upper() == b.replace(" ", "").upper()
    return a.strip().casefold() == b.strip().casefold()


class ContactResolver:
    """Resolves the contact id of invoices for one tenant (see the module docstring).

    ``allow_create``: step 3 is allowed. ``native_name_match``: the billing system itself matches or
    creates a contact by name when the invoice carries only a name (Xero): when creation is allowed
    and we know nothing but the name, :meth:`resolve` returns ``None`` and the connector sends the
    name (no extra API calls). ``clients``: the tenant's ``clients`` mapping (our id -> object with
    ``name``, ``email``, ``tax_number``, ``contact_id``), optional.
    """

    def __init__(
        self,
        directory: ContactDirectory,
        *,
        allow_create: bool,
        native_name_match: bool = False,
        clients: Mapping[str, Any] | None = None,
        setting_name: str = "create_contacts",
    ):
        self.directory = directory
        self.allow_create = allow_create
        self.native_name_match = native_name_match
        self.clients = dict(clients or {})
        self.setting_name = setting_name
        self._cache: dict[str, str] = {}
        self._locks: dict[str, asyncio.Lock] = {}

    def query(self, invoice: Invoice) -> ContactQuery:
        return ContactQuery.from_invoice(invoice, self.clients.get(invoice.client_id))

    async def resolve(self, invoice: Invoice) -> str | None:
        """The contact id for ``invoice`` (``None``: send the name, see ``native_name_match``).

        Raises :class:`PermanentError` naming the client when there is no contact and creation is
        not allowed; the directory's own :class:`~connectors.sdk.errors.ConnectorError` propagate.
        """
        query = self.query(invoice)
        if query.contact_id:
            return query.contact_id
        if query.client_id in self._cache:
            return self._cache[query.client_id]
        if self.native_name_match and self.allow_create and not (query.email or query.tax_number):
            return None
        lock = self._locks.setdefault(query.client_id, asyncio.Lock())
        async with lock:  # one lookup/creation per client even with concurrent invoices
            if query.client_id in self._cache:
                return self._cache[query.client_id]
            contact_id = None
            for field, value in query.lookups():
                contact_id = await self.directory.find_contact(field, value)
                if contact_id:
                    break
            if not contact_id:
                if not self.allow_create:
                    raise PermanentError(
                        f"client {query.client_id} ({query.name}) has no contact in the billing system: no contact_id "
                        f"mapping (clients.{query.client_id}.contact_id) and none found by "
                        f"{', '.join(f for f, _ in query.lookups()) or 'any field'}; add the mapping or allow "
                        f"creation (billing.settings.{self.setting_name}: true)"
                    )
                contact_id = await self.directory.create_contact(query)
            self._cache[query.client_id] = contact_id
            return contact_id


__all__ = ["LOOKUP_ORDER", "ContactDirectory", "ContactQuery", "ContactResolver", "same_value"]
