"""connectors.sdk.contacts: mapping, lookup by tax number / e-mail / name, creation policy; applied to Xero."""

from __future__ import annotations

import asyncio
from decimal import Decimal

import pytest

from broker.config import Client
from connectors.sdk.contacts import ContactQuery, ContactResolver, same_value
from connectors.sdk.errors import PermanentError
from connectors.testing.invoices import make_invoice, standard_lines
from connectors.xero import XeroConnector
from connectors.xero.emulator import XeroEmulator

ORG = "00000000-0000-0000-0000-000000000001"


class FakeDirectory:
    def __init__(self, contacts: list[dict]):
        self.contacts = contacts
        self.calls: list[tuple] = []

    async def find_contact(self, field, value):
        self.calls.append(("find", field, value))
        for c in self.contacts:
            if same_value(field, c.get(field), value):
                return c["id"]
        return None

    async def create_contact(self, query: ContactQuery):
        self.calls.append(("create", query.client_id))
        self.contacts.append({"id": f"new-{query.client_id}", "name": query.name})
        return f"new-{query.client_id}"


def invoice(client_id="CLI-1", name="Hotel Atlântico", contact_id=None):
    return make_invoice("ACME-WO-1-R1", standard_lines(), client_id=client_id, client_name=name, contact_id=contact_id)


def resolve(resolver, inv):
    return asyncio.run(resolver.resolve(inv))


def test_mapping_wins_without_any_call():
    directory = FakeDirectory([])
    resolver = ContactResolver(directory, allow_create=False)
    assert resolve(resolver, invoice(contact_id="C-9")) == "C-9"
    mapped = ContactResolver(directory, allow_create=False, clients={"CLI-1": Client(name="X", contact_id="C-7")})
    assert resolve(mapped, invoice()) == "C-7"
    assert directory.calls == []


def test_lookup_order_tax_number_then_email_then_name_and_cache():
    directory = FakeDirectory(
        [
            {"id": "by-name", "name": "hotel atlântico"},
            {"id": "by-email", "email": "ACCOUNTS@hotel.example"},
            {"id": "by-tax", "tax_number": "PT 500100200"},
        ]
    )
    clients = {"CLI-1": Client(name="Hotel Atlântico", email="accounts@hotel.example", tax_number="PT500100200")}
    resolver = ContactResolver(directory, allow_create=False, clients=clients)
    assert resolve(resolver, invoice()) == "by-tax"
    assert resolve(resolver, invoice()) == "by-tax"  # cached
    assert directory.calls == [("find", "tax_number", "PT500100200")]

    only_email = ContactResolver(
        FakeDirectory([{"id": "by-email", "email": "accounts@hotel.example"}]), allow_create=False, clients=clients
    )
    assert resolve(only_email, invoice()) == "by-email"
    only_name = ContactResolver(FakeDirectory([{"id": "by-name", "name": "HOTEL ATLÂNTICO "}]), allow_create=False)
    assert resolve(only_name, invoice()) == "by-name"


def test_create_when_allowed_else_permanent_error_naming_the_client():
    directory = FakeDirectory([])
    with pytest.raises(PermanentError) as info:
        resolve(ContactResolver(directory, allow_create=False, setting_name="create_customers"), invoice())
    message = str(info.value)
    assert "client CLI-1 (Hotel Atlântico)" in message and "clients.CLI-1.contact_id" in message
    assert "create_customers: true" in message
    resolver = ContactResolver(directory, allow_create=True)
    assert resolve(resolver, invoice()) == "new-CLI-1"
    assert directory.calls[-1] == ("create", "CLI-1")


def test_concurrent_invoices_of_one_client_create_one_contact():
    directory = FakeDirectory([])
    resolver = ContactResolver(directory, allow_create=True)

    async def go():
        return await asyncio.gather(*(resolver.resolve(invoice()) for _ in range(5)))

    assert set(asyncio.run(go())) == {"new-CLI-1"}
    assert [c for c in directory.calls if c[0] == "create"] == [("create", "CLI-1")]


def test_native_name_match_sends_the_name_when_creation_is_allowed():
    directory = FakeDirectory([])
    resolver = ContactResolver(directory, allow_create=True, native_name_match=True)
    assert resolve(resolver, invoice()) is None and directory.calls == []


# --------------------------------------------------------------------------- Xero
@pytest.fixture
def emu(monkeypatch):
    monkeypatch.setenv("XERO_CLIENT_SECRET", "contacts-secret-1")
    monkeypatch.setenv("XERO_REFRESH_TOKEN", "contacts-refresh-1")
    e = XeroEmulator(
        client_secret="contacts-secret-1", refresh_token="contacts-refresh-1", tenant_ids=(ORG,), contacts={}
    ).start()
    yield e
    e.stop()


def xero(emu, **settings) -> XeroConnector:
    return XeroConnector(
        {
            "api_url": emu.url,
            "identity_url": emu.url,
            "xero_tenant_id": ORG,
            "client_id": emu.client_id,
            "client_secret_env": "XERO_CLIENT_SECRET",
            "refresh_token_env": "XERO_REFRESH_TOKEN",
            "tax_types": {"23": "OUTPUT2"},  # the emulator's 23 % TaxType: no rate has a default
            **settings,
        },
        tenant="acme",
    )


def deliver(connector, inv):
    async def go():
        try:
            return await connector.deliver(inv)
        finally:
            await connector.aclose()

    return asyncio.run(go())


def test_xero_finds_the_contact_by_tax_number_when_creation_is_off(emu):
    contact_id = emu.add_contact("Hotel Atlântico Lisboa, S.A.", ORG, TaxNumber="PT500100200")
    connector = xero(emu, create_contacts=False)
    connector.clients = {"CLI-1": Client(name="Hotel Atlântico (renamed)", tax_number="PT500100200")}
    deliver(connector, invoice(name="Hotel Atlântico (renamed)"))
    [stored] = emu.invoices(ORG)
    assert stored["Contact"]["ContactID"] == contact_id and stored["Total"] == Decimal("214.03")
    assert len(emu.contacts(ORG)) == 1


def test_xero_refuses_an_unknown_client_when_creation_is_off(emu):
    with pytest.raises(PermanentError, match="client CLI-1"):
        deliver(xero(emu, create_contacts=False), invoice(name="Nobody Ltd"))
    assert emu.invoices() == [] and emu.contacts() == []


def test_xero_creates_the_contact_with_email_and_tax_number_when_allowed(emu):
    connector = xero(emu)
    connector.clients = {"CLI-1": Client(name="Clínica do Parque", email="f@parque.example", tax_number="PT509999999")}
    deliver(connector, invoice(name="Clínica do Parque"))
    [contact] = emu.contacts(ORG)
    assert (contact["Name"], contact["EmailAddress"], contact["TaxNumber"]) == (
        "Clínica do Parque",
        "f@parque.example",
        "PT509999999",
    )
    assert emu.invoices(ORG)[0]["Contact"]["ContactID"] == contact["ContactID"]
