"""The standard conformance test class, generated for any connector + emulator harness.

Usage (a connector's whole test file)::

    from connectors.testing import make_conformance_tests
    from connectors.xero.testing import XeroHarness

    TestXeroConformance = make_conformance_tests(XeroHarness)

Each scenario of :data:`SCENARIOS` is one test method ``test_<scenario>`` (``test_hostile`` is
parametrised over the hostile cases). Skipping one requires ``harness.skip[scenario] = "reason"``;
scenarios that do not apply to the declared capabilities (token refresh without OAuth2, batch
splitting with ``batch_size == 1``...) are skipped by the kit with the reason stated.

Scenarios that exercise the retry policy go through :class:`broker.delivery.Deliverer` (the
connector is registered in-process under ``conformance-<name>``); the others call the connector
directly. Each test gets fresh environment variables (``harness.env()``), a private token store
and an emulator reset; the harness starts once per class.
"""

from __future__ import annotations

import asyncio
import functools
import json
import logging
import os
import re
import stat
import subprocess
import sys
import time
import traceback
import uuid
from collections.abc import Callable, Coroutine, Iterator
from dataclasses import dataclass
from decimal import Decimal
from pathlib import Path
from typing import TYPE_CHECKING, Any, ClassVar, Concatenate, ParamSpec, TypeVar

import pytest
from pydantic import BaseModel

from connectors import registry
from connectors.sdk.errors import (
    AuthError,
    ConfigError,
    ConnectorError,
    DuplicateError,
    NumberConflictError,
    PermanentError,
    RateLimitedError,
    RetryableError,
    UncertainOutcomeError,
    UnknownAccountError,
)
from connectors.sdk.interface import BatchItem, Capabilities, Connector, DeliveryResult, settings_json_schema
from connectors.sdk.invoice import ExternalInvoice, Invoice, InvoiceLine
from connectors.sdk.lifecycle import Retirement, check_ours, marker
from connectors.sdk.oauth2 import FileTokenStore, MemoryTokenStore, TokenStore
from connectors.sdk.settings import secret_env_fields
from connectors.testing.harness import HOSTILE_CASES, ConnectorHarness, HeldInvoice
from connectors.testing.invoices import (
    NON_ASCII_DESCRIPTION,
    NON_ASCII_NAME,
    long_description,
    make_invoice,
    make_line,
    many_lines,
    mixed_rate_lines,
    negative_line,
    standard_lines,
    zero_line,
)

if TYPE_CHECKING:
    from broker.delivery import Deliverer

_P = ParamSpec("_P")
_T = TypeVar("_T")
_Conformance = TypeVar("_Conformance", bound="ConnectorConformance")

#: Scenario name -> what it checks. ``harness.skip`` keys must be among these.
SCENARIOS: dict[str, str] = {
    "metadata": "name, version, capabilities and Settings follow the conventions; the entry point loads this class",
    "settings_schema": "the settings JSON Schema exports; secrets are *_env names or SecretStr, never values",
    "bad_settings": "unknown, missing and out-of-range settings are ConfigError naming the field",
    "missing_secret": "a missing secret environment variable is a ConfigError naming the variable",
    "check": "check() passes against the emulator with good settings",
    "check_bad_credentials": "check() with a wrong secret is an AuthError that does not show the secret",
    "check_unknown_account": "check() naming an unreachable organisation/company is an UnknownAccountError",
    "happy_path": (
        "invoices are created with the billing system's totals equal to ours to the cent; find() returns them"
    ),
    "find_absent": "find() of an unknown number returns None",
    "idempotency": "the same invoice delivered twice (and by a restarted connector) gives one invoice",
    "idempotency_after_key_expiry": "after the native idempotency window, a repeat still gives one invoice",
    "rate_limit": "429 with Retry-After is a RateLimitedError and the retry policy waits that long",
    "server_error": "5xx is retryable, nothing is stored, and the retry policy then succeeds",
    "timeout_after_commit": (
        "a response lost after the server created the invoice is uncertain and reconciled by lookup"
    ),
    "validation": "a validation error is a PermanentError, never retried",
    "batch": "deliver_many gives one result per invoice with partial failure",
    "batch_split": "deliver_many sends more than batch_size invoices in several calls",
    "token_refresh": "an expired access token is refreshed exactly once for concurrent calls and connectors",
    "token_refresh_processes": "two processes sharing the token store refresh exactly once",
    "secrets": "secrets never appear in exceptions, reprs, logs or DLQ headers",
    "hostile": "hostile content is delivered with exact totals or rejected permanently",
    "contacts": "a client without contact mapping is found, created when allowed, else a PermanentError naming it",
    "ownership": "find() reads back our ownership marker and the system's own total",
    "number_conflict": (
        "a foreign document under our number is never adopted: NumberConflictError naming both totals, "
        "dead-lettered by the retry policy, nothing created or changed"
    ),
    "legal_notes": "the invoice's legal notes appear in the text the system prints on the document",
    "amend": (
        "a new revision replaces the delivered invoice: the customer's balance equals the new total to the cent; "
        "repeating the amendment changes nothing"
    ),
    "amend_resumed": (
        "an amendment interrupted between its steps (old retired and new not created, or the reverse) "
        "completes exactly once when repeated"
    ),
    "cancel": "cancelling a delivered invoice leaves a balance of 0.00; cancelling again changes nothing",
    "amend_paid": "a revision of a paid invoice goes through a credit note: balance = new total - amount paid",
    "cancel_paid": "cancelling a paid invoice issues a credit note for its total: balance = -amount paid",
    "draft": (
        "an invoice posted as a draft (Invoice.draft) is held as the system's draft with our number and total, "
        "owes nothing, is not created twice, and is deleted when cancelled or amended (one live document)"
    ),
}

#: The lifecycle scenarios (issue "invoice lifecycle"): need ``capabilities.amendments`` and the harness's
#: ``mark_paid`` / ``balance`` / ``credit_notes`` hooks.
LIFECYCLE_SCENARIOS = ("amend", "amend_resumed", "cancel", "amend_paid", "cancel_paid")

ODD_NUMBER = "CF-Ç/1,a b-R1"

#: ``HeldInvoice.status`` words (lower-cased) of a document taken out of the books: the kit's ``draft``
#: scenario counts a document with one of them as no longer live (Xero keeps a deleted invoice as ``DELETED``).
RETIRED_STATUSES = frozenset({"deleted", "voided", "void", "cancelled", "canceled"})


class KitSetupError(Exception):
    """The harness is not usable by the kit (bad ``skip`` entry, missing ``connector_cls``...)."""


def validate_harness(harness_cls: type[ConnectorHarness]) -> None:
    """Raise :class:`KitSetupError` for an unknown scenario or an empty reason in ``skip``, a bad
    ``hostile`` entry or a missing ``connector_cls``."""
    if not isinstance(harness_cls, type) or not issubclass(harness_cls, ConnectorHarness):
        raise KitSetupError(f"{harness_cls!r} is not a connectors.testing.ConnectorHarness subclass")
    cls = getattr(harness_cls, "connector_cls", None)
    if not (isinstance(cls, type) and issubclass(cls, Connector)):
        raise KitSetupError(f"{harness_cls.__name__}.connector_cls must be a Connector subclass (got {cls!r})")
    for scenario, reason in dict(harness_cls.skip).items():
        if scenario not in SCENARIOS:
            raise KitSetupError(
                f"{harness_cls.__name__}.skip: unknown scenario {scenario!r}; known: {', '.join(SCENARIOS)}"
            )
        if not isinstance(reason, str) or not reason.strip():
            raise KitSetupError(
                f"{harness_cls.__name__}.skip[{scenario!r}]: skipping a scenario requires a stated reason"
            )
    for case, expectation in dict(harness_cls.hostile).items():
        if case not in HOSTILE_CASES:
            raise KitSetupError(
                f"{harness_cls.__name__}.hostile: unknown case {case!r}; known: {', '.join(HOSTILE_CASES)}"
            )
        if expectation not in ("deliver", "reject", "either"):
            raise KitSetupError(f"{harness_cls.__name__}.hostile[{case!r}] must be 'deliver', 'reject' or 'either'")


def scenario(
    name: str,
) -> Callable[[Callable[Concatenate[_Conformance, _P], _T]], Callable[Concatenate[_Conformance, _P], _T]]:
    """Mark a test method as scenario ``name``: skipped with the harness's reason when listed in ``skip``."""
    if name not in SCENARIOS:
        raise KitSetupError(f"unknown scenario {name!r}")

    def decorate(fn: Callable[Concatenate[_Conformance, _P], _T]) -> Callable[Concatenate[_Conformance, _P], _T]:
        @functools.wraps(fn)
        def wrapper(self: _Conformance, /, *args: _P.args, **kwargs: _P.kwargs) -> _T:
            reason = dict(self.harness_class.skip).get(name)
            if reason:
                pytest.skip(f"{self.harness_class.__name__} skips {name!r}: {reason}")
            return fn(self, *args, **kwargs)

        # the plugin selects scenario tests by this marker attribute; functions accept arbitrary attributes
        wrapper._conformance_scenario = name  # type: ignore[attr-defined]
        return wrapper

    return decorate


def _mutate(value: str) -> str:
    """A wrong credential of the same length and prefix as ``value``."""
    keep = max(1, len(value) // 2)
    filler = "x" if not value[keep:].startswith("x") else "y"
    return value[:keep] + filler * max(4, len(value) - keep)


def _texts_of(exc: BaseException) -> list[str]:
    texts = [str(exc), repr(exc), "".join(traceback.format_exception(exc)), repr(vars(exc))]
    for linked in (exc.__cause__, exc.__context__):
        if linked is not None:
            texts += [str(linked), repr(linked)]
    return texts


@dataclass
class PolicyOutcome:
    """What the deliver stage's policy made of one invoice: a result, or the error it dead-letters."""

    result: DeliveryResult | None
    attempts: int
    error: BaseException | None

    def ok(self) -> DeliveryResult:
        assert self.result is not None, f"the retry policy gave up: {type(self.error).__name__}: {self.error}"
        return self.result


class Kit:
    """Per-test helper handed to the scenarios: connectors, invoices, the emulator's view, the retry policy."""

    def __init__(self, harness: ConnectorHarness, tmp_path: Path, monkeypatch: pytest.MonkeyPatch):
        self.h = harness
        self.cls: type[Connector] = harness.connector_cls
        self.tmp = tmp_path
        self.mp = monkeypatch
        self._connectors: list[Connector] = []
        self._deliverers: list[Deliverer] = []
        self._n = 0
        self.alias = f"conformance-{self.cls.name}"

    # ------------------------------------------------------------------ harness hooks
    def hook(self, scenario_name: str, method: Callable[_P, _T], *args: _P.args, **kwargs: _P.kwargs) -> _T:
        """Call ``method`` (a harness hook, e.g. ``kit.h.expire_tokens``); an unimplemented hook fails
        the test telling how to skip it."""
        try:
            return method(*args, **kwargs)
        except NotImplementedError:
            pytest.fail(
                f"{type(self.h).__name__}.{method.__name__}() is not implemented; implement it or declare "
                f"skip = {{{scenario_name!r}: '<reason>'}} on the harness",
                pytrace=False,
            )

    @staticmethod
    def optional(method: Callable[_P, _T], *args: _P.args, **kwargs: _P.kwargs) -> _T | None:
        """Call an optional harness hook; ``None`` when not implemented."""
        try:
            return method(*args, **kwargs)
        except NotImplementedError:
            return None

    # ------------------------------------------------------------------ connectors
    def settings(self, **overrides: Any) -> dict[str, Any]:
        return {**self.h.settings(), **overrides}

    def connector(self, *, token_store: TokenStore | None = None, **overrides: Any) -> Connector:
        """A new connector on the harness settings (+ ``overrides``) with its own in-memory token store."""
        connector = self.cls(
            self.settings(**overrides),
            tenant=self.h.tenant,
            token_store=token_store if token_store is not None else MemoryTokenStore(),
        )
        self._connectors.append(connector)
        return connector

    def deliverer(self, **overrides: Any) -> Deliverer:
        """A :class:`broker.delivery.Deliverer` whose tenant uses this connector (registered in-process)."""
        from broker.config import parse_config
        from broker.delivery import Deliverer

        registry.register(self.cls, self.alias)
        raw = {
            "tenants": {
                self.h.tenant: {
                    "name": "Conformance tenant",
                    "currency": self.h.currency,
                    "vat_percent": str(self.h.tax_rate),
                    "invoice_prefix": "CF",
                    "billing": {"system": self.alias, "settings": self.settings(**overrides)},
                    "rate_card": {"skills": {"general": {"hourly_rate": "40"}}, "default_skill": "general"},
                }
            }
        }
        deliverer = Deliverer(parse_config(raw, source="<conformance>"), max_retry_seconds=30)
        self._deliverers.append(deliverer)
        return deliverer

    # ------------------------------------------------------------------ invoices
    def number(self, tag: str) -> str:
        """A fresh invoice number of at most 21 characters (QuickBooks' DocNumber limit)."""
        self._n += 1
        return f"CF-{tag[:8].upper()}-{self._n}-R1"

    def invoice(
        self, tag: str = "STD", lines: list[InvoiceLine] | None = None, *, number: str | None = None, **kwargs: Any
    ) -> Invoice:
        contact_id, client_name = self.h.contact()
        kwargs.setdefault("contact_id", contact_id)
        kwargs.setdefault("client_name", client_name)
        return make_invoice(
            number or self.number(tag),
            lines if lines is not None else standard_lines(self.h.tax_rate),
            tenant=self.h.tenant,
            currency=self.h.currency,
            billing_system=self.cls.name,
            **kwargs,
        )

    def held(self) -> list[HeldInvoice]:
        return list(self.h.invoices())

    def held_for(self, number: str) -> list[HeldInvoice]:
        return [h for h in self.held() if h.number == number]

    def assert_held_once(self, invoice: Invoice, external_id: str | None = None) -> HeldInvoice:
        found = self.held_for(invoice.invoice_number)
        assert len(found) == 1, (
            f"{invoice.invoice_number}: the billing system holds {len(found)} invoices, expected exactly 1"
        )
        held = found[0]
        assert isinstance(held.total, Decimal), f"HeldInvoice.total must be a Decimal, got {type(held.total).__name__}"
        assert held.total == invoice.total, (
            f"{invoice.invoice_number}: billing system total {held.total} != ours {invoice.total} "
            f"(net {invoice.net_total}, tax {invoice.tax_total})"
        )
        if external_id is not None:
            assert held.external_id == external_id, (
                f"{invoice.invoice_number}: held id {held.external_id} != returned {external_id}"
            )
        if held.currency is not None:
            assert held.currency.upper() == invoice.currency
        if held.line_count is not None:
            assert held.line_count == len(invoice.lines), f"{held.line_count} lines held, {len(invoice.lines)} sent"
        return held

    def next_revision(self, invoice: Invoice, lines: list[InvoiceLine] | None = None) -> Invoice:
        """Revision ``invoice.revision + 1`` of ``invoice``'s document, with ``lines`` (default: the
        standard lines with one more hour of labour, so the total differs) and number ``...-R<n+1>``."""
        rev = invoice.revision + 1
        base = invoice.invoice_number.rsplit("-R", 1)[0]
        if lines is None:
            lines = [*standard_lines(self.h.tax_rate), make_line("Extra labour", "1", "42.00", self.h.tax_rate)]
        return self.invoice(number=f"{base}-R{rev}", lines=lines, document_id=invoice.document_id, revision=rev)

    def balance(self, scenario_name: str) -> Decimal:
        value = self.hook(scenario_name, self.h.balance)
        assert isinstance(value, Decimal), f"{type(self.h).__name__}.balance() must return a Decimal, got {value!r}"
        return value

    def credit_notes(self, scenario_name: str) -> list[HeldInvoice]:
        return list(self.hook(scenario_name, self.h.credit_notes))

    @staticmethod
    def previous(result: DeliveryResult) -> ExternalInvoice:
        """The delivered document as the deliver stage passes it to ``amend`` / ``cancel`` (id and number)."""
        return ExternalInvoice(result.external_id, result.external_number)

    def assert_not_held(self, invoice: Invoice) -> None:
        assert self.held_for(invoice.invoice_number) == [], (
            f"{invoice.invoice_number} must not exist in the billing system"
        )

    async def through_policy(self, deliverer: Deliverer, invoice: Invoice) -> PolicyOutcome:
        """Deliver ``invoice`` with the deliver stage's retry policy (:meth:`broker.delivery.Deliverer.process`
        on an in-memory ledger). A parked outcome fails the test: the kit's faults are short."""
        from broker import delivery

        ledger = delivery.InvoiceLedger(delivery.DictLedgerStore())
        outcome = await deliverer.process(invoice, ledger, delivery.RecordMeta("billing.invoices", 0, 0))
        if isinstance(outcome, delivery.Delivered):
            return PolicyOutcome(outcome.result, outcome.attempts, None)
        if isinstance(outcome, delivery.Dead):
            return PolicyOutcome(None, outcome.attempts, outcome.error)
        pytest.fail(f"{invoice.invoice_number}: the retry policy did not finish in line: {outcome!r}", pytrace=False)

    async def deliver(self, connector: Connector, invoice: Invoice) -> DeliveryResult:
        """``connector.deliver(invoice)``; a :class:`DuplicateError` is resolved as the deliver stage does
        (its ``existing`` invoice, else :meth:`Connector.find`) into ``created=False``."""
        try:
            return await connector.deliver(invoice)
        except DuplicateError as exc:
            existing = exc.existing or await connector.find(invoice.invoice_number)
            assert existing is not None, f"DuplicateError for {invoice.invoice_number} but find() does not return it"
            return DeliveryResult(
                invoice.invoice_key,
                existing.external_id,
                existing.number,
                created=False,
                details={"duplicate_error": True},
            )

    # ------------------------------------------------------------------ running
    def run(self, coro: Coroutine[Any, Any, _T]) -> _T:
        """Run ``coro`` in a new event loop, then close every connector and deliverer it made."""

        async def main() -> _T:
            try:
                return await coro
            finally:
                for deliverer in self._deliverers:
                    await deliverer.aclose()
                for connector in self._connectors:
                    await connector.aclose()
                self._deliverers.clear()
                self._connectors.clear()

        return asyncio.run(main())

    def close(self) -> None:
        registry.unregister(self.alias)


class ConnectorConformance:
    """Base of the generated test classes; set ``harness_class`` (use :func:`make_conformance_tests`)."""

    __test__ = False
    harness_class: ClassVar[type[ConnectorHarness]]

    # ------------------------------------------------------------------ fixtures
    @pytest.fixture(scope="class")
    @classmethod
    def conformance_harness(cls) -> Iterator[ConnectorHarness]:
        harness = cls.harness_class()
        harness.start()
        try:
            yield harness
        finally:
            harness.stop()

    @pytest.fixture
    def kit(
        self, conformance_harness: ConnectorHarness, monkeypatch: pytest.MonkeyPatch, tmp_path: Path
    ) -> Iterator[Kit]:
        conformance_harness.reset()
        for name, value in conformance_harness.env().items():
            monkeypatch.setenv(name, value)
        monkeypatch.setenv("BROKER_TOKEN_DIR", str(tmp_path / "tokens"))
        kit = Kit(conformance_harness, tmp_path, monkeypatch)
        try:
            yield kit
        finally:
            kit.close()
        conformance_harness.assert_healthy()

    # ------------------------------------------------------------------ declaration
    @scenario("metadata")
    def test_metadata(self, kit: Kit) -> None:
        cls = kit.cls
        name_message = f"{cls.__name__}.name must be a lower-case identifier, got {getattr(cls, 'name', None)!r}"
        assert isinstance(getattr(cls, "name", None), str), name_message
        assert re.fullmatch(r"[a-z][a-z0-9_-]{0,39}", cls.name), name_message
        assert isinstance(cls.version, str), "version must be a non-empty string"
        assert cls.version, "version must be a non-empty string"
        caps = cls.capabilities
        assert isinstance(caps, Capabilities), "capabilities must be a connectors.sdk.Capabilities"
        assert caps.batch_size >= 1
        assert caps.native_idempotency or caps.lookup_by_reference, (
            "a connector needs an idempotency mechanism: a native key or a lookup by our reference"
        )
        if caps.batch_size > 1:
            assert cls.deliver_many is not Connector.deliver_many, "batch_size > 1 requires deliver_many()"
        if caps.amendments:
            assert cls.retire is not Connector.retire, "capabilities.amendments requires retire()"
        if caps.oauth2:
            assert cls.oauth2_config is not Connector.oauth2_config, "capabilities.oauth2 requires oauth2_config()"
        settings_cls = cls.Settings
        assert isinstance(settings_cls, type)
        assert issubclass(settings_cls, BaseModel)
        assert settings_cls.model_config.get("extra") == "forbid", "Settings must refuse unknown keys (extra='forbid')"
        assert "timeout_seconds" in settings_cls.model_fields, (
            "Settings needs timeout_seconds (subclass ConnectorSettings)"
        )
        entry = registry.discover().get(cls.name)
        if entry is not None and entry.package is not None:
            assert entry.error is None, f"entry point {cls.name!r} fails to load: {entry.error}"
            assert entry.cls is cls, (
                f"entry point {cls.name!r} loads {entry.target}, not {cls.__module__}:{cls.__qualname__}"
            )

    @scenario("settings_schema")
    def test_settings_schema(self, kit: Kit) -> None:
        schema = settings_json_schema(kit.cls)
        text = json.dumps(schema)
        props = schema.get("properties", {})
        assert set(props) == set(kit.cls.Settings.model_fields), "every settings field is in the schema"
        for name in secret_env_fields(kit.cls.Settings):
            assert props[name].get("x-secret-env") is True
        settings = kit.h.settings()
        env = kit.h.env()
        for value in env.values():
            assert value not in text, "a secret value appears in the settings schema"
            assert value not in json.dumps(settings, default=str), (
                "harness.settings() must name secrets, not contain them"
            )
        for name in secret_env_fields(kit.cls.Settings):
            var = settings.get(name, kit.cls.Settings.model_fields[name].default)
            if isinstance(var, str) and var:
                assert var in env, f"settings.{name} names {var}, which harness.env() does not provide"
        model = kit.cls.Settings.model_validate(settings)
        for value in env.values():
            assert value not in repr(model)
            assert value not in str(model)

    @scenario("bad_settings")
    def test_bad_settings(self, kit: Kit) -> None:
        base = kit.settings()
        with pytest.raises(ConfigError) as info:
            kit.connector(no_such_setting_xyz=1)
        assert "no_such_setting_xyz" in str(info.value)
        for name, field in kit.cls.Settings.model_fields.items():
            if field.is_required():
                raw = {k: v for k, v in base.items() if k != name}
                with pytest.raises(ConfigError) as info:
                    kit.cls(raw, tenant=kit.h.tenant, token_store=MemoryTokenStore())
                assert name in str(info.value), f"the error for a missing {name!r} must name it: {info.value}"
        with pytest.raises(ConfigError) as info:
            kit.connector(timeout_seconds=-1)
        assert "timeout_seconds" in str(info.value)

    @scenario("missing_secret")
    def test_missing_secret(self, kit: Kit) -> None:
        settings = kit.settings()
        checked = 0
        for name in secret_env_fields(kit.cls.Settings):
            var = settings.get(name, kit.cls.Settings.model_fields[name].default)
            if not isinstance(var, str) or not var:
                continue
            with kit.mp.context() as mp:
                mp.delenv(var, raising=False)
                connector = kit.connector()
                with pytest.raises(ConfigError) as info:
                    kit.run(connector.check())
                assert not isinstance(info.value, AuthError)
                assert var in str(info.value), f"the error for a missing {var} must name the variable: {info.value}"
            checked += 1
        if not checked:
            pytest.skip("the settings name no secret environment variable (*_env)")

    # ------------------------------------------------------------------ check
    @scenario("check")
    def test_check(self, kit: Kit) -> None:
        kit.run(kit.connector().check())

    @scenario("check_bad_credentials")
    def test_check_bad_credentials(self, kit: Kit) -> None:
        for var, value in kit.h.env().items():
            wrong = _mutate(value)
            with kit.mp.context() as mp:
                mp.setenv(var, wrong)
                connector = kit.connector()
                with pytest.raises(AuthError) as info:
                    kit.run(connector.check())
            for text in _texts_of(info.value):
                assert wrong not in text, f"the AuthError for a wrong {var} shows the secret"
                assert value not in text, f"the AuthError for a wrong {var} shows the secret"

    @scenario("check_unknown_account")
    def test_check_unknown_account(self, kit: Kit) -> None:
        overrides = kit.hook("check_unknown_account", kit.h.unknown_account_settings)
        with pytest.raises(UnknownAccountError):
            kit.run(kit.connector(**overrides).check())

    # ------------------------------------------------------------------ delivery
    @scenario("happy_path")
    def test_happy_path(self, kit: Kit) -> None:
        invoices = [
            kit.invoice("HAPPY", standard_lines(kit.h.tax_rate)),
            kit.invoice("MIXED", mixed_rate_lines(kit.h.tax_rate)),
        ]

        async def go() -> list[tuple[DeliveryResult, ExternalInvoice | None]]:
            connector = kit.connector()
            results = [await connector.deliver(inv) for inv in invoices]
            found = [await connector.find(inv.invoice_number) for inv in invoices]
            return list(zip(results, found, strict=True))

        for inv, (result, found) in zip(invoices, kit.run(go()), strict=True):
            assert result.invoice_key == inv.invoice_key
            assert result.external_id
            assert result.created is True
            kit.assert_held_once(inv, result.external_id)
            assert found is not None, f"find({inv.invoice_number!r}) did not find the invoice just created"
            assert found.external_id == result.external_id
            if found.total is not None:
                assert Decimal(found.total) == inv.total
        assert len(kit.held()) == len(invoices)

    @scenario("find_absent")
    def test_find_absent(self, kit: Kit) -> None:
        assert kit.run(kit.connector().find("CF-ABSENT-404-R1")) is None

    @scenario("idempotency")
    def test_idempotency(self, kit: Kit) -> None:
        invoice = kit.invoice("IDEM")

        async def go() -> tuple[DeliveryResult, DeliveryResult, DeliveryResult]:
            first = await kit.deliver(kit.connector(), invoice)
            connector = kit.connector()
            second = await kit.deliver(connector, invoice)
            third = await kit.deliver(connector, invoice)
            return first, second, third

        first, second, third = kit.run(go())
        assert first.created is True
        assert second.external_id == first.external_id
        assert third.external_id == first.external_id
        kit.assert_held_once(invoice, first.external_id)

    @scenario("idempotency_after_key_expiry")
    def test_idempotency_after_key_expiry(self, kit: Kit) -> None:
        if not kit.cls.capabilities.native_idempotency:
            pytest.skip("capabilities.native_idempotency is False: no native key window to outlive")
        invoice = kit.invoice("IDEMX")

        async def go() -> tuple[DeliveryResult, DeliveryResult]:
            connector = kit.connector()
            first = await kit.deliver(connector, invoice)
            kit.hook("idempotency_after_key_expiry", kit.h.expire_idempotency_keys)
            return first, await kit.deliver(connector, invoice)

        first, second = kit.run(go())
        assert second.external_id == first.external_id
        assert second.created is False, "a repeat found by the uniqueness check / lookup must report created=False"
        kit.assert_held_once(invoice, first.external_id)

    # ------------------------------------------------------------------ faults and the retry policy
    @scenario("rate_limit")
    def test_rate_limit(self, kit: Kit) -> None:
        direct, via_policy = kit.invoice("RATE"), kit.invoice("RATEP")

        async def go() -> tuple[RateLimitedError, DeliveryResult, float]:
            connector = kit.connector()
            await connector.check()  # authenticate first: the injected 429 hits an API call
            kit.hook("rate_limit", kit.h.inject_rate_limit, 1)
            with pytest.raises(RateLimitedError) as info:
                await connector.deliver(direct)
            kit.hook("rate_limit", kit.h.inject_rate_limit, 1)
            deliverer = kit.deliverer()
            started = time.monotonic()
            result = (await kit.through_policy(deliverer, via_policy)).ok()
            return info.value, result, time.monotonic() - started

        exc, result, elapsed = kit.run(go())
        assert isinstance(exc, RetryableError)
        assert exc.http_status == 429
        assert 1 <= exc.retry_after <= 3600, f"retry_after must come from Retry-After (1 s), got {exc.retry_after}"
        kit.assert_not_held(direct)
        kit.assert_held_once(via_policy, result.external_id)
        assert elapsed >= 0.9, f"the retry policy did not honour Retry-After: 1 s (retried after {elapsed:.2f} s)"

    @scenario("server_error")
    def test_server_error(self, kit: Kit) -> None:
        direct, via_policy = kit.invoice("5XX"), kit.invoice("5XXP")

        async def go() -> tuple[list[tuple[int, RetryableError]], PolicyOutcome]:
            connector = kit.connector()
            await connector.check()
            errors: list[tuple[int, RetryableError]] = []
            for status in (503, 500):
                kit.hook("server_error", kit.h.inject_server_error, status, 1)
                with pytest.raises(RetryableError) as info:
                    await connector.deliver(direct)
                errors.append((status, info.value))
            kit.hook("server_error", kit.h.inject_server_error, 503, 1)
            outcome = await kit.through_policy(kit.deliverer(), via_policy)
            return errors, outcome

        errors, result = kit.run(go())
        for status, exc in errors:
            assert not isinstance(exc, PermanentError), f"{status}: {type(exc).__name__} {exc}"
            assert exc.http_status == status, f"{status}: {type(exc).__name__} {exc}"
        kit.assert_not_held(direct)
        assert result.attempts >= 2, f"expected a retry after the 503, got {result.attempts} attempt(s)"
        kit.assert_held_once(via_policy, result.ok().external_id)

    @scenario("timeout_after_commit")
    def test_timeout_after_commit(self, kit: Kit) -> None:
        direct, via_policy = kit.invoice("TIMEO"), kit.invoice("TIMEOP")
        fast = kit.h.fast_timeout

        async def go() -> tuple[list[HeldInvoice], ExternalInvoice | None, DeliveryResult, PolicyOutcome]:
            connector = kit.connector(timeout_seconds=fast)
            await connector.check()
            kit.hook("timeout_after_commit", kit.h.inject_timeout_after_commit)
            with pytest.raises(UncertainOutcomeError):
                await connector.deliver(direct)
            held = kit.held_for(direct.invoice_number)
            found = await connector.find(direct.invoice_number)
            again = await kit.deliver(connector, direct)
            kit.hook("timeout_after_commit", kit.h.inject_timeout_after_commit)
            outcome = await kit.through_policy(kit.deliverer(timeout_seconds=fast), via_policy)
            return held, found, again, outcome

        held, found, again, result = kit.run(go())
        assert len(held) == 1, "the emulator must have created the invoice before the response was lost"
        assert found is not None, "find() must reconcile the uncertain create"
        assert found.external_id == held[0].external_id, "find() must reconcile the uncertain create"
        assert again.external_id == held[0].external_id
        kit.assert_held_once(direct, held[0].external_id)
        kit.assert_held_once(via_policy, result.ok().external_id)

    @scenario("validation")
    def test_validation(self, kit: Kit) -> None:
        bad = kit.hook("validation", kit.h.invalid_invoice, kit.invoice("BAD"))
        good = kit.invoice("GOOD")

        async def go() -> tuple[PermanentError, PolicyOutcome, DeliveryResult]:
            with pytest.raises(PermanentError) as direct:
                await kit.connector().deliver(bad)
            deliverer = kit.deliverer()
            rejected = await kit.through_policy(deliverer, bad)
            return direct.value, rejected, (await kit.through_policy(deliverer, good)).ok()

        exc, rejected, result = kit.run(go())
        assert isinstance(rejected.error, PermanentError), f"the policy must dead-letter it: {rejected}"
        attempts = rejected.attempts
        assert not isinstance(exc, RetryableError)
        assert str(exc).strip(), "a permanent error must say what the billing system rejected"
        assert exc.http_status is None or 400 <= exc.http_status < 500, f"a permanent error with {exc.http_status}"
        assert attempts == 1, f"a permanent error must not be retried ({attempts} attempts)"
        kit.assert_not_held(bad)
        kit.assert_held_once(good, result.external_id)

    @scenario("batch")
    def test_batch(self, kit: Kit) -> None:
        a, b, d = kit.invoice("BATCHA"), kit.invoice("BATCHB", mixed_rate_lines(kit.h.tax_rate)), kit.invoice("BATCHD")
        bad = kit.hook("batch", kit.h.invalid_invoice, kit.invoice("BATCHC"))

        async def go() -> tuple[DeliveryResult, list[BatchItem]]:
            connector = kit.connector()
            first = await connector.deliver(a)
            return first, await connector.deliver_many([b, bad, a, d])

        first, items = kit.run(go())
        assert isinstance(items, list)
        assert len(items) == 4
        assert all(isinstance(i, BatchItem) for i in items)
        assert [i.invoice_key for i in items] == [b.invoice_key, bad.invoice_key, a.invoice_key, d.invoice_key]
        made_b, again, made_d = items[0].result, items[2], items[3].result
        assert made_b is not None, [i.error for i in items]
        assert made_d is not None, [i.error for i in items]
        assert isinstance(items[1].error, PermanentError), f"the invalid invoice's item: {items[1]}"
        existing: str | None = None
        if again.result is not None:
            existing = again.result.external_id
        elif isinstance(again.error, DuplicateError) and again.error.existing is not None:
            existing = again.error.existing.external_id
        assert existing == first.external_id, (
            f"an invoice already created, sent again in a batch, must resolve to its id: {again}"
        )
        kit.assert_held_once(a, first.external_id)
        kit.assert_held_once(b, made_b.external_id)
        kit.assert_held_once(d, made_d.external_id)
        kit.assert_not_held(bad)

    @scenario("batch_split")
    def test_batch_split(self, kit: Kit) -> None:
        size = kit.cls.capabilities.batch_size
        if size <= 1:
            pytest.skip("capabilities.batch_size is 1: deliver_many loops over deliver()")
        invoices = [
            kit.invoice("SPLIT", [make_line(f"Visit {n}", "1", f"{10 + n}.00", kit.h.tax_rate)])
            for n in range(size + 1)
        ]
        items = kit.run(kit.connector().deliver_many(invoices))
        failed = [i.error for i in items if not i.ok]
        assert len(items) == len(invoices), failed[:3]
        assert not failed, failed[:3]
        results = [i.result for i in items if i.result is not None]
        assert len({r.external_id for r in results}) == len(invoices)
        for inv, result in zip(invoices, results, strict=True):
            kit.assert_held_once(inv, result.external_id)

    # ------------------------------------------------------------------ auth
    @scenario("token_refresh")
    def test_token_refresh(self, kit: Kit) -> None:
        if not kit.cls.capabilities.oauth2:
            pytest.skip("capabilities.oauth2 is False: no token to refresh")
        first, *burst = [kit.invoice("TOK") for _ in range(5)]
        x, y, z = kit.invoice("TOKS"), kit.invoice("TOKS"), kit.invoice("TOKS")
        store_dir = kit.tmp / "shared-tokens"

        async def go() -> tuple[int, int]:
            connector = kit.connector()
            await connector.deliver(first)
            before = kit.hook("token_refresh", kit.h.refresh_count)
            kit.hook("token_refresh", kit.h.expire_tokens)
            await asyncio.gather(*(connector.deliver(inv) for inv in burst))
            coroutines = kit.hook("token_refresh", kit.h.refresh_count) - before
            # two connectors (two workers) sharing one file token store
            store = FileTokenStore(store_dir)
            c1, c2 = kit.connector(token_store=store), kit.connector(token_store=store)
            await c1.deliver(x)
            before = kit.hook("token_refresh", kit.h.refresh_count)
            kit.hook("token_refresh", kit.h.expire_tokens)
            await asyncio.gather(c1.deliver(y), c2.deliver(z))
            return coroutines, kit.hook("token_refresh", kit.h.refresh_count) - before

        coroutines, connectors = kit.run(go())
        assert coroutines == 1, (
            f"{len(burst)} concurrent calls with an expired token made {coroutines} refreshes, expected 1"
        )
        assert connectors == 1, f"two connectors sharing a token store made {connectors} refreshes, expected 1"
        for inv in [first, *burst, x, y, z]:
            kit.assert_held_once(inv)
        files = list(store_dir.glob("*.json"))
        assert files, "the file token store wrote no token file"
        for path in files:
            assert stat.S_IMODE(path.stat().st_mode) == 0o600, f"{path} must be 0600"

    @scenario("token_refresh_processes")
    def test_token_refresh_processes(self, kit: Kit) -> None:
        if not kit.cls.capabilities.oauth2:
            pytest.skip("capabilities.oauth2 is False: no token to refresh")
        store_dir = kit.tmp / "process-tokens"
        seed, p1, p2 = kit.invoice("PROC"), kit.invoice("PROC"), kit.invoice("PROC")
        kit.run(kit.connector(token_store=FileTokenStore(store_dir)).deliver(seed))
        before = kit.hook("token_refresh_processes", kit.h.refresh_count)
        kit.hook("token_refresh_processes", kit.h.expire_tokens)
        procs = [
            subprocess.Popen(
                [sys.executable, "-c", _WORKER_SCRIPT],
                stdin=subprocess.PIPE,
                stdout=subprocess.PIPE,
                stderr=subprocess.PIPE,
                env=dict(os.environ),
                text=True,
            )
            for _ in (p1, p2)
        ]
        outputs: list[tuple[int, str]] = []
        for proc, inv in zip(procs, (p1, p2), strict=True):
            spec = {
                "cls": f"{kit.cls.__module__}:{kit.cls.__qualname__}",
                "settings": kit.settings(),
                "tenant": kit.h.tenant,
                "store": str(store_dir),
                "invoice": inv.model_dump_json(),
            }
            assert proc.stdin is not None  # opened with stdin=PIPE
            proc.stdin.write(json.dumps(spec, default=str))
            proc.stdin.close()
        for proc in procs:
            assert proc.stdout is not None  # opened with stdout=PIPE and stderr=PIPE
            assert proc.stderr is not None
            proc.stdout.read()
            err = proc.stderr.read()
            proc.wait(timeout=60)
            outputs.append((proc.returncode, err))
        for code, err in outputs:
            assert code == 0, f"worker process failed: {err[-2000:]}"
        refreshes = kit.hook("token_refresh_processes", kit.h.refresh_count) - before
        assert refreshes == 1, f"two processes sharing the token store made {refreshes} refreshes, expected 1"
        for inv in (seed, p1, p2):
            kit.assert_held_once(inv)

    # ------------------------------------------------------------------ secrets
    @scenario("secrets")
    def test_secrets(self, kit: Kit, caplog: pytest.LogCaptureFixture) -> None:
        from broker.dlq import dlq_headers

        caplog.set_level(logging.DEBUG)
        env = kit.h.env()
        secret_values = [v for v in env.values() if len(v) >= 6]
        texts: dict[str, str] = {}
        caught: list[tuple[str, BaseException]] = []

        async def capture(label: str, coro: Coroutine[Any, Any, _T]) -> _T | None:
            try:
                return await coro
            except ConnectorError as exc:
                caught.append((label, exc))
                return None

        async def go() -> None:
            connector = kit.connector()
            result = await connector.deliver(kit.invoice("SECRET"))
            texts["DeliveryResult"] = repr(result)
            texts["repr(connector)"] = repr(connector) + str(connector)
            texts["vars(connector)"] = repr(vars(connector))
            texts["repr(settings)"] = repr(connector.settings)
            try:
                bad = kit.h.invalid_invoice(kit.invoice("SECBAD"))
            except NotImplementedError:
                bad = None
            if bad is not None:
                await capture("validation", connector.deliver(bad))
            try:
                kit.h.inject_server_error(503, 1)
                await capture("server_error", connector.deliver(kit.invoice("SEC5XX")))
            except NotImplementedError:
                pass
            try:
                kit.h.inject_timeout_after_commit()
                slow = kit.connector(timeout_seconds=kit.h.fast_timeout)
                await capture("timeout", slow.deliver(kit.invoice("SECTIME")))
            except NotImplementedError:
                pass
            texts["vars(connector) after"] = repr(vars(connector))

        kit.run(go())
        for var, value in env.items():
            wrong = _mutate(value)
            secret_values.append(wrong)
            with kit.mp.context() as mp:
                mp.setenv(var, wrong)
                kit.run(capture(f"wrong {var}", kit.connector().check()))
        secret_values += [s for s in kit.optional(kit.h.issued_secrets) or [] if len(s) >= 6]
        assert caught, "no error was produced to inspect"
        for label, exc in caught:
            for n, text in enumerate(_texts_of(exc)):
                texts[f"{label} exception text #{n}"] = text
            headers = dlq_headers(
                topic="billing.invoices",
                partition=0,
                offset=0,
                stage="deliver",
                error_class=getattr(exc, "error_class", "internal"),
                exc=exc,
                tenant=kit.h.tenant,
                connector=kit.cls.name,
                http_status=getattr(exc, "http_status", None),
                attempts=1,
            )
            texts[f"{label} DLQ headers"] = repr(headers)
        texts["logs"] = caplog.text
        leaks = [
            f"secret #{i} ({len(s)} chars) in {where}"
            for i, s in enumerate(secret_values)
            for where, text in texts.items()
            if s in text
        ]
        assert not leaks, "secrets leaked: " + "; ".join(leaks[:10])

    # ------------------------------------------------------------------ hostile content
    @pytest.mark.parametrize("case", HOSTILE_CASES)
    @scenario("hostile")
    def test_hostile(self, kit: Kit, case: str) -> None:
        rate = kit.h.tax_rate
        expectation = dict(kit.h.hostile).get(case, "either")
        kwargs: dict[str, Any] = {}
        if case == "long_description":
            lines = [make_line(long_description(4000), "1", "10.00", rate), *standard_lines(rate)]
        elif case == "non_ascii":
            lines = [
                make_line(NON_ASCII_DESCRIPTION, "1.25", "40.00", rate),
                make_line('Peça nº 7 — ½" válvula', "2", "3.10", rate, kind="part"),
            ]
            kwargs["client_name"] = NON_ASCII_NAME
        elif case == "many_lines":
            lines = many_lines(500, rate)
        elif case == "zero_amount_line":
            lines = zero_line(rate)
        elif case == "negative_line":
            lines = negative_line(rate)
        else:
            lines = standard_lines(rate)
            kwargs["number"] = ODD_NUMBER
            kwargs["document_id"] = "Ç/1,a b"
        invoice = kit.invoice(case[:8], lines, **kwargs)

        async def go() -> PermanentError | tuple[DeliveryResult, DeliveryResult | None]:
            connector = kit.connector()
            try:
                result = await connector.deliver(invoice)
            except PermanentError as exc:
                return exc
            except ConnectorError as exc:
                pytest.fail(
                    f"{case}: {type(exc).__name__} is not an outcome for hostile content "
                    f"(deliver it or raise PermanentError): {exc}",
                    pytrace=False,
                )
            except Exception as exc:  # noqa: BLE001 - the point is to catch connector bugs
                pytest.fail(
                    f"{case}: the connector raised {type(exc).__name__}, not a ConnectorError: {exc}\n"
                    + "".join(traceback.format_exception(exc))[-3000:],
                    pytrace=False,
                )
            again = await kit.deliver(connector, invoice) if case == "odd_number" else None
            return result, again

        outcome = kit.run(go())
        if isinstance(outcome, PermanentError):
            assert expectation in ("reject", "either"), f"{case}: expected the invoice to be delivered, got {outcome}"
            assert str(outcome).strip()
            kit.assert_not_held(invoice)
        else:
            result, again = outcome
            assert expectation in ("deliver", "either"), f"{case}: expected a PermanentError, the invoice was created"
            kit.assert_held_once(invoice, result.external_id)
            if again is not None:
                assert again.external_id == result.external_id

    # ------------------------------------------------------------------ contacts
    @scenario("contacts")
    def test_contacts(self, kit: Kit) -> None:
        forbid = kit.hook("contacts", kit.h.contact_creation_settings, False)
        allow = kit.hook("contacts", kit.h.contact_creation_settings, True)
        known_id, known_name = kit.h.contact()
        unique = uuid.uuid4().hex[:8]
        unknown = kit.invoice(
            "CONTU", contact_id=None, client_name=f"Unmapped Client {unique}", client_id=f"CLI-NEW-{unique}"
        )
        known = kit.invoice("CONTK", contact_id=None, client_name=known_name)

        async def go() -> tuple[PermanentError, DeliveryResult, DeliveryResult]:
            strict = kit.connector(**forbid)
            with pytest.raises(PermanentError) as info:
                await strict.deliver(unknown)
            found = await strict.deliver(known)
            created = await kit.connector(**allow).deliver(unknown)
            return info.value, found, created

        exc, found, created = kit.run(go())
        assert unknown.client_id in str(exc), f"the error must name the client {unknown.client_id}: {exc}"
        held_known = kit.assert_held_once(known, found.external_id)
        if known_id is not None and held_known.contact is not None:
            assert held_known.contact == known_id, "an existing contact found by name must be used, not a new one"
        kit.assert_held_once(unknown, created.external_id)

    # ------------------------------------------------------------------ ownership
    @scenario("ownership")
    def test_ownership(self, kit: Kit) -> None:
        invoice = kit.invoice("OWN")

        async def go() -> tuple[DeliveryResult, ExternalInvoice | None]:
            connector = kit.connector()
            result = await connector.deliver(invoice)
            return result, await connector.find(invoice.invoice_number)

        result, found = kit.run(go())
        assert found is not None, f"find({invoice.invoice_number!r}) did not find the invoice just created"
        assert found.external_id == result.external_id
        assert found.marker == invoice.invoice_key, (
            f"find() must read back our marker {marker(invoice.invoice_key)!r} (got marker {found.marker!r}): "
            "write it at create time where the system keeps it (connectors.sdk.lifecycle)"
        )
        assert found.total is not None, "find() must return the system's total"
        assert Decimal(found.total) == invoice.total, f"find() total {found.total} != ours {invoice.total}"
        check_ours(invoice, found)

    @scenario("number_conflict")
    def test_number_conflict(self, kit: Kit) -> None:
        invoice = kit.invoice("FOREIGN")
        foreign_total = Decimal("999.00")
        foreign_id = kit.hook("number_conflict", kit.h.plant_foreign, invoice, foreign_total)
        before = {(h.external_id, h.total) for h in kit.held()}

        async def go() -> tuple[NumberConflictError, PolicyOutcome]:
            with pytest.raises(NumberConflictError) as info:
                await kit.connector().deliver(invoice)
            return info.value, await kit.through_policy(kit.deliverer(), invoice)

        direct, outcome = kit.run(go())
        for exc in (direct, outcome.error):
            assert isinstance(exc, NumberConflictError), f"expected NumberConflictError, got {exc!r}"
            text = str(exc)
            assert "999.00" in text, f"the error must name the foreign total: {text}"
            assert str(invoice.total) in text, f"the error must name our total: {text}"
            assert exc.error_class == "number_conflict"
        assert outcome.result is None, "a foreign document must never be recorded as delivered"
        after = {(h.external_id, h.total) for h in kit.held()}
        assert after == before, f"nothing may be created or changed: before {sorted(before)}, after {sorted(after)}"
        assert (foreign_id, foreign_total) in after

    @scenario("legal_notes")
    def test_legal_notes(self, kit: Kit) -> None:
        notes = [
            "Reverse charge: VAT to be accounted for by the recipient (Art. 196 Directive 2006/112/EC)",
            "Isento de IVA nos termos do artigo 9.º do CIVA",
        ]
        invoice = kit.invoice("LEGAL", legal_notes=notes)
        result = kit.run(kit.connector().deliver(invoice))
        held = kit.assert_held_once(invoice, result.external_id)
        assert held.printed is not None, (
            f"{type(kit.h).__name__}.invoices() must fill HeldInvoice.printed with the document's printed text"
        )
        for note in notes:
            assert note in held.printed, f"legal note {note!r} is not on the document; printed text: {held.printed!r}"

    # ------------------------------------------------------------------ lifecycle
    def _lifecycle(self, kit: Kit, name: str) -> None:
        if not kit.cls.capabilities.amendments:
            pytest.fail(
                f"{kit.cls.__name__} declares amendments=False: implement retire() or skip {name!r} with a reason",
                pytrace=False,
            )

    @scenario("amend")
    def test_amend(self, kit: Kit) -> None:
        self._lifecycle(kit, "amend")
        rev1 = kit.invoice("AMEND")
        rev2 = kit.next_revision(rev1)
        assert rev2.total != rev1.total

        async def go() -> tuple[DeliveryResult, DeliveryResult, DeliveryResult]:
            connector = kit.connector()
            first = await connector.deliver(rev1)
            amended = await connector.amend(rev2, kit.previous(first))
            again = await kit.connector().amend(rev2, kit.previous(first))
            return first, amended, again

        first, amended, again = kit.run(go())
        assert amended.details.get("amendment") in ("deleted", "voided", "credited"), amended.details
        assert again.external_id == amended.external_id
        kit.assert_held_once(rev2, amended.external_id)
        assert kit.balance("amend") == rev2.total, f"balance must be revision 2's total {rev2.total}"
        notes = kit.credit_notes("amend")
        assert len(notes) == (1 if amended.details["amendment"] == "credited" else 0), notes
        assert first.external_id != amended.external_id or amended.details["amendment"] == "none"

    @scenario("amend_resumed")
    def test_amend_resumed(self, kit: Kit) -> None:
        self._lifecycle(kit, "amend_resumed")
        a1 = kit.invoice("RESUMEA")
        a2 = kit.next_revision(a1)
        b1 = kit.invoice("RESUMEB")
        b2 = kit.next_revision(b1)

        async def go() -> tuple[Retirement, DeliveryResult, DeliveryResult]:
            connector = kit.connector()
            first_a = await connector.deliver(a1)
            # killed after retiring revision 1, before creating revision 2
            retired = await connector.retire(
                kit.previous(first_a), key=a2.invoice_key, reason="resumed", issued=a2.issue_date
            )
            resumed_a = await kit.connector().amend(a2, kit.previous(first_a))
            first_b = await connector.deliver(b1)
            # the reverse: revision 2 created, revision 1 not yet retired
            await connector.deliver(b2)
            resumed_b = await kit.connector().amend(b2, kit.previous(first_b))
            return retired, resumed_a, resumed_b

        retired, resumed_a, resumed_b = kit.run(go())
        assert retired.action in ("deleted", "voided", "credited"), retired
        assert resumed_a.details.get("amendment") == "none", f"revision 1 was already retired: {resumed_a.details}"
        assert resumed_b.details.get("amendment") in ("deleted", "voided", "credited"), resumed_b.details
        kit.assert_held_once(a2, resumed_a.external_id)
        kit.assert_held_once(b2, resumed_b.external_id)
        assert kit.balance("amend_resumed") == a2.total + b2.total
        credited = [retired.action, resumed_b.details["amendment"]].count("credited")
        assert len(kit.credit_notes("amend_resumed")) == credited

    @scenario("cancel")
    def test_cancel(self, kit: Kit) -> None:
        self._lifecycle(kit, "cancel")
        invoice = kit.invoice("CANCEL")

        async def go() -> tuple[Retirement, Retirement]:
            connector = kit.connector()
            first = await connector.deliver(invoice)
            key = f"{invoice.order_key}:cancel"
            cancelled = await connector.cancel(
                kit.previous(first), key=key, reason="cancelled", issued=invoice.issue_date
            )
            again = await kit.connector().cancel(
                kit.previous(first), key=key, reason="cancelled", issued=invoice.issue_date
            )
            return cancelled, again

        cancelled, again = kit.run(go())
        assert cancelled.action in ("deleted", "voided", "credited"), cancelled
        assert again.action == "none", f"cancelling again must change nothing: {again}"
        assert kit.balance("cancel") == Decimal("0.00")
        assert len(kit.credit_notes("cancel")) == (1 if cancelled.action == "credited" else 0)

    @scenario("amend_paid")
    def test_amend_paid(self, kit: Kit) -> None:
        self._lifecycle(kit, "amend_paid")
        rev1 = kit.invoice("PAIDAM")
        rev2 = kit.next_revision(rev1)
        first = kit.run(kit.connector().deliver(rev1))
        kit.hook("amend_paid", kit.h.mark_paid, first.external_id)

        async def go() -> tuple[DeliveryResult, DeliveryResult]:
            amended = await kit.connector().amend(rev2, kit.previous(first))
            again = await kit.connector().amend(rev2, kit.previous(first))
            return amended, again

        amended, again = kit.run(go())
        assert amended.details.get("amendment") == "credited", f"a paid invoice must be credited: {amended.details}"
        assert Decimal(str(amended.details.get("previous_paid"))) == rev1.total
        assert again.external_id == amended.external_id
        kit.assert_held_once(rev2, amended.external_id)
        notes = kit.credit_notes("amend_paid")
        assert [n.total for n in notes] == [rev1.total], f"one credit note of {rev1.total} expected: {notes}"
        assert kit.balance("amend_paid") == rev2.total - rev1.total

    @scenario("cancel_paid")
    def test_cancel_paid(self, kit: Kit) -> None:
        self._lifecycle(kit, "cancel_paid")
        invoice = kit.invoice("PAIDCX")
        first = kit.run(kit.connector().deliver(invoice))
        kit.hook("cancel_paid", kit.h.mark_paid, first.external_id)
        key = f"{invoice.order_key}:cancel"
        cancelled = kit.run(
            kit.connector().cancel(kit.previous(first), key=key, reason="cancelled", issued=invoice.issue_date)
        )
        again = kit.run(
            kit.connector().cancel(kit.previous(first), key=key, reason="cancelled", issued=invoice.issue_date)
        )
        assert cancelled.action == "credited", cancelled
        assert cancelled.paid == invoice.total
        assert again.action == "none", f"cancelling again must change nothing: {again}"
        assert [n.total for n in kit.credit_notes("cancel_paid")] == [invoice.total]
        assert kit.balance("cancel_paid") == -invoice.total

    # ------------------------------------------------------------------ drafts
    @scenario("draft")
    def test_draft(self, kit: Kit) -> None:
        """``Invoice.draft`` posts the system's draft once; a draft owes nothing, takes no payment where the
        system refuses one, and is deleted when cancelled or amended (``docs/connectors.md``, "Drafts")."""
        if not kit.cls.capabilities.drafts:
            pytest.skip(f"{kit.cls.__name__} declares drafts=False: the billing system has no draft invoices")
        self._lifecycle(kit, "draft")
        posted = kit.invoice("DRAFT").model_copy(update={"draft": True})
        dropped = kit.invoice("DRAFTCX").model_copy(update={"draft": True})
        rev1 = kit.invoice("DRAFTAM").model_copy(update={"draft": True})
        rev2 = kit.next_revision(rev1).model_copy(update={"draft": True})
        key = f"{dropped.order_key}:cancel"

        async def go() -> tuple[list[DeliveryResult], list[Retirement], list[DeliveryResult]]:
            connector = kit.connector()
            first = await connector.deliver(posted)
            again = await kit.connector().deliver(posted)
            to_drop = await connector.deliver(dropped)
            prev = kit.previous(to_drop)
            cancels = [
                await connector.cancel(prev, key=key, reason="cancelled", issued=dropped.issue_date),
                await kit.connector().cancel(prev, key=key, reason="cancelled", issued=dropped.issue_date),
            ]
            old = kit.previous(await connector.deliver(rev1))
            amends = [await connector.amend(rev2, old), await kit.connector().amend(rev2, old)]
            return [first, again], cancels, amends

        (first, again), (cancelled, cancelled_again), (amended, amended_again) = kit.run(go())
        held = kit.assert_held_once(posted, first.external_id)
        assert again.external_id == first.external_id, f"a repeat created {again.external_id}: {again}"
        assert (held.status or "").lower() == "draft", (
            f"{posted.invoice_number} is held as {held.status!r}, not a draft"
        )
        assert cancelled.action == "deleted", f"a draft is deleted when cancelled (not voided or credited): {cancelled}"
        assert cancelled_again.action == "none", f"cancelling again must change nothing: {cancelled_again}"
        assert amended.details.get("amendment") == "deleted", f"an amended draft is deleted: {amended.details}"
        assert amended_again.external_id == amended.external_id
        held2 = kit.assert_held_once(rev2, amended.external_id)
        assert (held2.status or "").lower() == "draft", f"{rev2.invoice_number} is held as {held2.status!r}"
        for gone in (dropped, rev1):
            live = [h for h in kit.held_for(gone.invoice_number) if (h.status or "").lower() not in RETIRED_STATUSES]
            assert live == [], f"{gone.invoice_number} must no longer be live: {live}"
        assert kit.credit_notes("draft") == [], "no credit note retires a draft"
        assert kit.balance("draft") == Decimal("0.00"), "drafts owe nothing"
        if kit.h.draft_payments_refused:
            try:  # ConnectorHarness.mark_paid raises ValueError with the system's refusal, worded its own way
                kit.hook("draft", kit.h.mark_paid, first.external_id)
            except ValueError:
                pass
            else:
                pytest.fail(
                    f"a payment on draft {first.external_id} was recorded; the system refuses it", pytrace=False
                )
            assert (kit.assert_held_once(posted).status or "").lower() == "draft"
            assert kit.balance("draft") == Decimal("0.00"), "a refused payment changed the balance"


_WORKER_SCRIPT = """
import asyncio, importlib, json, sys
from connectors.sdk.invoice import Invoice
from connectors.sdk.oauth2 import FileTokenStore
spec = json.loads(sys.stdin.read())
module, _, qualname = spec["cls"].partition(":")
cls = importlib.import_module(module)
for part in qualname.split("."):
    cls = getattr(cls, part)
async def main():
    connector = cls(spec["settings"], tenant=spec["tenant"], token_store=FileTokenStore(spec["store"]))
    try:
        result = await connector.deliver(Invoice.model_validate_json(spec["invoice"]))
        print(result.external_id)
    finally:
        await connector.aclose()
asyncio.run(main())
"""


def make_conformance_tests(
    harness_cls: type[ConnectorHarness], *, name: str | None = None
) -> type[ConnectorConformance]:
    """The pytest test class for ``harness_cls`` (assign it to a ``Test*`` name in a test module).

    Raises :class:`KitSetupError` at import time when the harness declaration is invalid (a skip
    without a reason, an unknown scenario...), so the mistake cannot go unnoticed.
    """
    validate_harness(harness_cls)
    cls_name = name or f"Test{harness_cls.connector_cls.__name__}Conformance"
    caller = sys._getframe(1).f_globals.get("__name__", ConnectorConformance.__module__)
    return type(
        cls_name, (ConnectorConformance,), {"__test__": True, "harness_class": harness_cls, "__module__": caller}
    )


__all__ = [
    "HOSTILE_CASES",
    "SCENARIOS",
    "ConnectorConformance",
    "Kit",
    "KitSetupError",
    "make_conformance_tests",
    "scenario",
    "validate_harness",
]
