"""Tenant configuration: a YAML file validated by pydantic.

Shape (see ``broker/examples/config.yaml`` for a complete file)::

    tenants:
      <tenant id>:                  # the CloudEvent ``tenant`` attribute
        name: str
        currency: ISO 4217 code     # EUR, GBP, JPY ...
        timezone: IANA zone         # Europe/Lisbon
        vat_percent: decimal str    # "23"
        invoice_prefix: str         # our deterministic invoice numbers start with it
        payment_terms_days: int
        billing: {system: xero, settings: {...connector settings...}}
        clients: {<client id>: {...}}   # see Client: rates, discount, tax treatment, contracts
        rate_card: {...}            # see RateCard: skills, technicians, time bands, parts, travel
        holidays: [YYYY-MM-DD, ...] # public holidays (the "holiday" time band), local dates; or the official
                                    # calendar of a country / region (the `holidays` package), adjusted:
                                    # {country: PT, subdivision: "11", add: [...], remove: [...]} (HolidayCalendar)
        tax: {...}                  # see TaxSettings: VAT per line type, tax-inclusive prices
        quotes: {...}               # see QuoteBilling: invoice at approval/completion, deposit
        ignored_event_types: [type, ...]  # platform events acknowledged, never billed (default: work order
                                    # created / assigned / started); other unknown types are dead-lettered
        corrections: amend | reject # a delivered invoice arriving with other content (docs/delivery.md §7b)
        intake: [{name, token_env | hmac_secret_env}, ...]  # senders of POST /events (docs/intake.md)
        callbacks: {url, secret_env, events, ...}  # payments told to the platform (Callbacks; docs/payments.md)

The pricing rules these settings drive are described in ``docs/pricing.md``.

Secrets are never written in the file: settings name the environment variable that holds them
(``client_secret_env: XERO_CLIENT_SECRET``); :func:`resolve_secret` reads it and raises
:class:`ConfigError` naming the variable when it is missing.

Every validation error names the field path and the bad value, e.g.
``tenants.acme.rate_card.skills.hvac.hourly_rate: Input should be greater than or equal to 0 (got '-5')``.

After the model, :func:`parse_config` checks each tenant against its billing system
(:func:`billing_problems`): the connector loads and its settings validate, every VAT rate the
tenant's lines can carry (:meth:`Tenant.vat_rates`) maps to a code of that system
(:meth:`Connector.required_tax_mapping <connectors.sdk.interface.Connector.required_tax_mapping>`),
and every invoice number fits the system (:attr:`Tenant.invoice_number_max`).
"""

from __future__ import annotations

import os
import re
from datetime import date
from decimal import Decimal
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Any, Literal, get_args
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

import yaml
from pydantic import (
    BaseModel,
    ConfigDict,
    Field,
    PrivateAttr,
    ValidationError,
    ValidationInfo,
    field_validator,
    model_validator,
)

from broker.calendars import HolidayDates, check_country, check_subdivision, official_calendar
from broker.events import EVENT_TYPES
from broker.texts import check_language, check_templates
from connectors.sdk.errors import ConfigError
from connectors.sdk.money import rate_key
from connectors.sdk.settings import format_validation_error, resolve_secret
from connectors.sdk.tax import VatRate

if TYPE_CHECKING:
    from connectors.sdk.interface import Connector

Money = Annotated[Decimal, Field(ge=0)]
Percent = Annotated[Decimal, Field(ge=0, le=1000)]
DiscountPercent = Annotated[Decimal, Field(ge=0, le=100)]
Weekday = Literal["MON", "TUE", "WED", "THU", "FRI", "SAT", "SUN"]
#: Line types whose VAT rate can be set separately (``tax.rates``).
TaxLineType = Literal["labour", "travel", "mileage", "call_out", "part", "expense", "quote", "subscription"]
TravelBilling = Literal["time", "mileage", "both"]
DEFAULT_REVERSE_CHARGE_NOTE = (
    "Reverse charge: VAT to be accounted for by the recipient (Article 196 of Council Directive 2006/112/EC)."
)
_HHMM = re.compile(r"^([01][0-9]|2[0-3]):([0-5][0-9])$")
#: A CloudEvent type a tenant may ignore: dotted lower-case words (``maintenance.work_order.created``).
EventTypeName = Annotated[str, Field(min_length=3, max_length=128, pattern=r"^[a-z][a-z0-9_]*(\.[a-z][a-z0-9_]*)+$")]
#: Platform events that carry nothing billable: acknowledged and counted, never dead-lettered.
DEFAULT_IGNORED_EVENT_TYPES = (
    "maintenance.work_order.created",
    "maintenance.work_order.assigned",
    "maintenance.work_order.started",
)


class _Model(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class SkillRate(_Model):
    """Hourly sell rate and our hourly cost for one skill, in the tenant currency."""

    hourly_rate: Money
    cost_rate: Money = Decimal("0")


class Technician(_Model):
    """A technician (keyed by the platform's technician id): skill and optional personal rates."""

    name: str | None = None
    skill: str
    hourly_rate: Money | None = None
    cost_rate: Money | None = None


def _parse_hhmm(value: Any, *, allow_24: bool) -> str:
    if not isinstance(value, str):
        # YAML 1.1 reads an unquoted 20:00 as the base-60 integer 1200: refuse instead of guessing.
        raise ValueError("time must be a quoted 'HH:MM' string (an unquoted 20:00 is read by YAML as a number)")
    if allow_24 and value == "24:00":
        return value
    if not _HHMM.match(value):
        raise ValueError(
            f"invalid time {value!r}: expected 'HH:MM' from 00:00 to 23:59" + (" (or 24:00)" if allow_24 else "")
        )
    return value


def hhmm_minutes(value: str) -> int:
    """``"HH:MM"`` -> minutes after midnight (``"24:00"`` -> 1440)."""
    hours, minutes = value.split(":")
    return int(hours) * 60 + int(minutes)


class TimeBand(_Model):
    """A labour time band: when all its conditions hold, labour is billed at ``factor`` × the rate.

    Conditions (at least one; all given ones must hold), evaluated on the tenant's local wall
    clock (DST-correct): ``days`` (weekdays), ``start``/``end`` (a daily window, ``"HH:MM"``;
    ``end`` before ``start`` wraps past midnight, e.g. ``20:00``-``07:00``), ``holiday`` (the
    tenant's ``holidays``), ``overtime_after_hours`` (time a technician worked that local day,
    within the event, beyond N hours). Bands are listed in priority order: the **first** band
    that matches a moment wins; factors never stack. ``call_out_fee`` is the call-out amount
    when a visit starts in this band (overtime bands never decide the call-out).
    """

    name: Annotated[str, Field(pattern=r"^[A-Za-z0-9][A-Za-z0-9_ -]{0,39}$")]
    factor: Annotated[Decimal, Field(gt=0, le=10)]
    days: list[Weekday] | None = None
    start: str | None = Field(default=None, description="Daily window start, local 'HH:MM'.")
    end: str | None = Field(
        default=None, description="Daily window end, local 'HH:MM' (exclusive; '24:00' = midnight)."
    )
    holiday: bool = False
    overtime_after_hours: Annotated[Decimal, Field(gt=0, le=24)] | None = None
    call_out_fee: Money | None = None

    @field_validator("start", mode="before")
    @classmethod
    def _start_time(cls, value: Any) -> Any:
        return None if value is None else _parse_hhmm(value, allow_24=False)

    @field_validator("end", mode="before")
    @classmethod
    def _end_time(cls, value: Any) -> Any:
        return None if value is None else _parse_hhmm(value, allow_24=True)

    @field_validator("days")
    @classmethod
    def _days_not_empty(cls, value: list[str] | None) -> list[str] | None:
        if value is not None and not value:
            raise ValueError("days must name at least one weekday (omit it for every day)")
        return value

    @model_validator(mode="after")
    def _conditions(self) -> TimeBand:
        if (self.start is None) != (self.end is None):
            raise ValueError(f"band {self.name!r}: give both start and end, or neither")
        if (
            self.start is not None
            and self.end is not None
            and hhmm_minutes(self.start) == hhmm_minutes(self.end) % 1440
        ):
            raise ValueError(
                f"band {self.name!r}: start and end are the same time ({self.start}); omit both for all day"
            )
        if self.days is None and self.start is None and not self.holiday and self.overtime_after_hours is None:
            raise ValueError(f"band {self.name!r} has no condition (days, start/end, holiday or overtime_after_hours)")
        return self


class CatalogueItem(_Model):
    """A part in the tenant's catalogue (keyed by SKU): sell price and/or cost, and category."""

    unit_price: Money | None = Field(default=None, description="Catalogue sell price per unit.")
    unit_cost: Money | None = Field(default=None, description="Our purchase cost per unit.")
    category: str | None = None

    @model_validator(mode="after")
    def _price_or_cost(self) -> CatalogueItem:
        if self.unit_price is None and self.unit_cost is None:
            raise ValueError("catalogue item needs unit_price or unit_cost")
        return self


class RateCard(_Model):
    """How labour, parts and expenses are priced (full rules: ``docs/pricing.md``).

    * Labour: per technician per visit (``rounding_per: visit``) or per time entry
      (``rounding_per: entry``), worked minutes are rounded **up** to ``billing_increment_minutes``
      (an exact multiple stays as is); each technician's visit is then raised to
      ``minimum_billable_minutes``. Rate, most specific first: client+skill, client, technician,
      skill. ``time_bands`` multiply the rate (first matching band wins).
    * Travel: ``travel_billing: time`` bills travel time at ``travel_hourly_rate`` (unset: cost
      only); ``mileage`` bills ``distance_km`` × ``mileage_rate_per_km`` instead; ``both`` bills
      the time and the kilometres, each on its own line (overridable per client).
    * Cost: ``cost_basis: worked`` (default) costs labour and travel at the cost rate × the time
      actually worked (after unpaid breaks, before increments and minimums: rounding and minimums
      are revenue, not cost); ``billed`` costs the billed minutes instead.
    * Call-out fee: once per corrective visit (``call_out_per``), not for preventive work; a
      visit starting in a time band costs the band's ``call_out_fee``, else
      ``call_out_fee_out_of_hours``, else ``call_out_fee``.
    * Parts: the event's catalogue ``unit_price``, else the tenant ``catalogue`` price, else
      ``unit_cost × (1 + markup/100)`` with the markup of the part's category
      (``parts_markup_by_category``) or ``parts_markup_percent``; unit price rounded half-up.
    * Expenses: billable ones at cost plus ``expenses_handling_percent``.
    """

    billing_increment_minutes: Annotated[int, Field(ge=1, le=240)] = 15
    minimum_billable_minutes: Annotated[int, Field(ge=0, le=1440)] = 60
    rounding_per: Literal["visit", "entry"] = "visit"
    skills: dict[str, SkillRate]
    default_skill: str
    technicians: dict[str, Technician] = Field(default_factory=dict)
    time_bands: list[TimeBand] = Field(default_factory=list)
    travel_billing: TravelBilling = "time"
    travel_hourly_rate: Money | None = None
    mileage_rate_per_km: Money | None = None
    mileage_cost_per_km: Money | None = None
    call_out_fee: Money | None = None
    call_out_fee_out_of_hours: Money | None = None
    call_out_per: Literal["visit", "work_order"] = "visit"
    parts_markup_percent: Percent = Decimal("0")
    parts_markup_by_category: dict[str, Percent] = Field(default_factory=dict)
    catalogue: dict[str, CatalogueItem] = Field(default_factory=dict)
    expenses_handling_percent: Percent = Decimal("0")
    cost_basis: Literal["worked", "billed"] = "worked"

    @model_validator(mode="after")
    def _skills_exist(self) -> RateCard:
        if self.default_skill not in self.skills:
            raise ValueError(f"default_skill {self.default_skill!r} is not in skills ({', '.join(self.skills)})")
        for tech_id, tech in self.technicians.items():
            if tech.skill not in self.skills:
                raise ValueError(
                    f"technicians.{tech_id}.skill {tech.skill!r} is not in skills ({', '.join(self.skills)})"
                )
        names = [band.name for band in self.time_bands]
        for name in names:
            if names.count(name) > 1:
                raise ValueError(f"time_bands: band name {name!r} is used twice")
        if self.travel_billing != "time" and self.mileage_rate_per_km is None:
            raise ValueError(f"travel_billing {self.travel_billing!r} needs mileage_rate_per_km")
        return self


class ContractCovers(_Model):
    """What a client contract ("abono") includes.

    ``preventive_labour`` / ``preventive_parts``: labour (and travel) / parts of scheduled jobs and
    preventive work orders are covered (zero-priced lines; nothing billable left -> no invoice,
    only a "covered" record). ``corrective_hours_per_month``: that many hours of corrective labour
    per calendar month (tenant time zone) are covered, consumed in processing order; only the
    excess is billed. ``call_out_fee``: call-out fees are covered.
    """

    preventive_labour: bool = False
    preventive_parts: bool = False
    corrective_hours_per_month: Annotated[Decimal, Field(ge=0, le=744)] = Decimal("0")
    call_out_fee: bool = False

    @field_validator("corrective_hours_per_month")
    @classmethod
    def _whole_minutes(cls, value: Decimal) -> Decimal:
        if (value * 60) != (value * 60).to_integral_value():
            raise ValueError(f"corrective_hours_per_month must be a whole number of minutes (got {value} h)")
        return value

    @property
    def corrective_minutes(self) -> int:
        """The monthly corrective allowance in minutes."""
        return int(self.corrective_hours_per_month * 60)


class Contract(_Model):
    """A client contract valid from ``valid_from`` to ``valid_to`` (inclusive; open-ended when unset), at ``sites`` (empty: all)."""  # noqa: E501 - one line: it is the JSON Schema description (schemas/tenant-config)

    id: Annotated[str, Field(min_length=1, max_length=64, pattern=r"^[^:]+$")]
    valid_from: date
    valid_to: date | None = None
    sites: list[str] = Field(default_factory=list, description="Site ids covered; empty = every site of the client.")
    covers: ContractCovers
    monthly_fee: Money | None = Field(
        default=None,
        description="The subscription (abono) fee per month, net of tax: the contract's revenue in the economic "
        "report.",
    )

    @model_validator(mode="after")
    def _dates(self) -> Contract:
        if self.valid_to is not None and self.valid_to < self.valid_from:
            raise ValueError(f"contract {self.id!r}: valid_to {self.valid_to} is before valid_from {self.valid_from}")
        return self

    def applies(self, site_id: str, day: date) -> bool:
        """Whether the contract covers ``site_id`` on local date ``day``."""
        if day < self.valid_from or (self.valid_to is not None and day > self.valid_to):
            return False
        return not self.sites or site_id in self.sites


class Discount(_Model):
    """Client discount, a percentage of the line amount shown on the line (``discount_percent``)."""

    labour_percent: DiscountPercent = Decimal("0")
    parts_percent: DiscountPercent = Decimal("0")


#: How an invoice reaches the billing system (issue 12, docs/approval.md): ``none`` posted as final;
#: ``draft`` posted as a draft where the system has drafts, for someone to finalise there; ``required``
#: held in the broker until an operator approves it (console or API), then delivered exactly once.
Approval = Literal["none", "draft", "required"]


class Client(_Model):
    """A client company of the tenant, how it is known in the billing system, and its prices and tax treatment.

    * ``hourly_rate`` (any skill) and ``skill_rates`` (per skill) override the rate card for this
      client; client+skill beats client beats technician beats skill.
    * ``discount``: percentage on labour and/or parts lines.
    * ``tax_exempt`` (with ``tax_exemption_note``, the legal ground printed on the invoice) or
      ``reverse_charge`` (EU B2B: rate 0 and the tenant's ``tax.reverse_charge_note``; needs
      ``tax_number``).
    * ``contracts``: see :class:`Contract`; contracts of one client must not overlap (same
      day and a common site).
    """

    name: str
    contact_id: str | None = Field(default=None, description="Contact/customer id in the billing system.")
    email: str | None = None
    tax_number: str | None = None
    hourly_rate: Money | None = Field(default=None, description="Client rate for every skill.")
    skill_rates: dict[str, Money] = Field(default_factory=dict, description="Client rate per skill.")
    discount: Discount = Field(default_factory=Discount)
    tax_exempt: bool = False
    tax_exemption_note: str | None = Field(default=None, max_length=500)
    reverse_charge: bool = False
    travel_billing: TravelBilling | None = Field(
        default=None, description="Overrides rate_card.travel_billing for this client (time, mileage or both)."
    )
    invoicing: Literal["per_document", "weekly", "monthly"] = Field(
        default="per_document",
        description="One invoice per document, or one per ISO week / calendar month with all of the period's "
        "documents and the contracts' monthly fees (docs/pricing.md, 'Periodic invoicing').",
    )
    language: str | None = Field(
        default=None,
        description="Language of this client's invoice texts (en, es, fr, pt; a locale such as pt_PT is accepted); "
        "unset: the tenant's language.",
    )
    approval: Approval | None = Field(
        default=None,
        description="Overrides the tenant's approval for this client's invoices (none, draft, required); unset: "
        "the tenant's.",
    )
    contracts: list[Contract] = Field(default_factory=list)

    @field_validator("language")
    @classmethod
    def _known_language(cls, language: str | None) -> str | None:
        return check_language(language) if language is not None else None

    @field_validator("contracts")
    @classmethod
    def _no_overlap(cls, contracts: list[Contract]) -> list[Contract]:
        for j, later in enumerate(contracts):
            for i, earlier in enumerate(contracts[:j]):
                if later.id == earlier.id:
                    raise ValueError(f"contracts.{j}: contract id {later.id!r} is also contracts.{i}")
                days_overlap = (earlier.valid_to is None or later.valid_from <= earlier.valid_to) and (
                    later.valid_to is None or earlier.valid_from <= later.valid_to
                )
                common = not earlier.sites or not later.sites or set(earlier.sites) & set(later.sites)
                if days_overlap and common:
                    where = "every site" if common is True else ", ".join(sorted(common))
                    raise ValueError(
                        f"contracts.{j} {later.id!r} ({later.valid_from}..{later.valid_to or 'open'}) overlaps "
                        f"contracts.{i} {earlier.id!r} ({earlier.valid_from}..{earlier.valid_to or 'open'}) at {where}"
                    )
        return contracts

    @model_validator(mode="after")
    def _tax_treatment(self) -> Client:
        if self.tax_exempt and self.reverse_charge:
            raise ValueError("a client is either tax_exempt or reverse_charge, not both")
        if self.tax_exempt and not self.tax_exemption_note:
            raise ValueError("tax_exempt needs tax_exemption_note (the legal ground printed on the invoice)")
        if self.reverse_charge and not self.tax_number:
            raise ValueError("reverse_charge needs the client's tax_number (EU VAT id)")
        return self

    def contract_for(self, site_id: str, day: date) -> Contract | None:
        """The contract covering ``site_id`` on ``day`` (at most one: overlaps are refused at load)."""
        for contract in self.contracts:
            if contract.applies(site_id, day):
                return contract
        return None


class TaxSettings(_Model):
    """VAT per line type, tax-inclusive prices and the reverse-charge legal text.

    ``rates``: percentage per line type (``labour``, ``travel``, ``mileage``, ``call_out``, ``part``,
    ``expense``, ``quote``); a type not listed uses the tenant's ``vat_percent`` (``mileage``: the
    ``travel`` rate when that is listed).
    ``prices_include_tax``: configured prices (hourly rates, fees, catalogue and quote prices) are
    gross; lines then carry gross amounts and the net is derived per line (costs are always net).
    ``exempt_tax_type`` / ``reverse_charge_tax_type``: optional billing-system codes for the 0 % lines of
    ``tax_exempt`` / ``reverse_charge`` clients (a Xero TaxType, a Zoho tax id; for Moloni and
    InvoiceXpress an AT exemption code ``M01``-``M99``, e.g. ``M07`` / ``M40``); without one, the
    connector's settings must map the 0 % rate. Every rate is checked against the billing system
    when the configuration loads (``docs/connectors.md``, "Tax codes").
    """

    rates: dict[TaxLineType, Percent] = Field(default_factory=dict)
    prices_include_tax: bool = False
    reverse_charge_note: str = Field(default=DEFAULT_REVERSE_CHARGE_NOTE, min_length=1, max_length=500)
    exempt_tax_type: str | None = None
    reverse_charge_tax_type: str | None = None


class QuoteBilling(_Model):
    """How approved quotes are invoiced.

    ``invoice_at: approval`` (default): the quote is invoiced in full when approved; its work order
    then bills only the extras outside the quote. ``deposit_percent`` (with ``approval``): that
    percentage of each quote line is invoiced at approval and the balance with the work order.
    ``invoice_at: completion``: nothing at approval; the work order bills the quote's lines plus extras.
    """

    invoice_at: Literal["approval", "completion"] = "approval"
    deposit_percent: Annotated[Decimal, Field(gt=0, lt=100)] | None = None

    @model_validator(mode="after")
    def _deposit_at_approval(self) -> QuoteBilling:
        if self.deposit_percent is not None and self.invoice_at != "approval":
            raise ValueError("deposit_percent is invoiced at approval: use it with invoice_at 'approval'")
        return self


class PaymentFeed(_Model):
    """How ``broker payments`` hears of the tenant's payments (``billing.payments``; ``docs/payments.md``).

    ``webhook_secret_env``: the variable holding what signs the billing system's webhooks (Xero's webhook
    key, Stripe's endpoint secret ``whsec_…``, QuickBooks' verifier token, FreshBooks' callback verifier;
    for PayPal, which signs with its own key, the webhook id its verify API needs), required for systems
    with webhooks; ``poll_seconds``: how often a system without webhooks (Moloni, InvoiceXpress, Zoho) is
    asked what changed; ``tolerance_seconds``: how far a signed timestamp (Stripe's ``t``, PayPal's
    transmission time) may be from now (Stripe's SDKs: 300).
    """

    webhook_secret_env: str | None = None
    poll_seconds: Annotated[float, Field(gt=0, le=86400)] = 60.0
    tolerance_seconds: Annotated[float, Field(gt=0, le=86400)] = 300.0


class Billing(_Model):
    """Which billing system the tenant uses; ``settings`` are validated by that connector's Settings model;
    ``payments``: how payments are read back (``None``: they are not)."""

    system: str
    settings: dict[str, Any] = Field(default_factory=dict)
    payments: PaymentFeed | None = None


class IntakeSource(_Model):
    """One sender of CloudEvents to ``broker ingest`` (``POST /events``) for this tenant: a bearer
    token (``token_env``) or an HMAC-SHA256 secret (``hmac_secret_env``), each the name of the
    environment variable that holds it (``docs/intake.md``)."""

    name: Annotated[str, Field(pattern=r"^[a-z0-9][a-z0-9_-]{0,63}$")]
    token_env: str | None = None
    hmac_secret_env: str | None = None

    @model_validator(mode="after")
    def _one_credential(self) -> IntakeSource:
        if (self.token_env is None) == (self.hmac_secret_env is None):
            raise ValueError("give exactly one of token_env and hmac_secret_env")
        return self


#: The maintenance platforms ``broker ingest`` takes webhooks from (``POST /webhooks/{platform}/{tenant}``).
PLATFORMS = ("maintainx", "atlas", "erpnext", "odoo", "limble", "infraspeak")


class PlatformApi(_Model):
    """How the intake reads a platform's API to complete a thin webhook (``docs/intake.md``):
    ``base_url`` (the API root, e.g. ``https://api.getmaintainx.com/v1``), ``token_env`` (the
    environment variable holding the API token or secret), ``username`` (Limble's client id, an
    ERPNext API key; sent with the secret), ``requests_per_minute`` (default: the platform's
    published limit)."""

    base_url: Annotated[str, Field(pattern=r"^https?://[^\s]+$")]
    token_env: str
    username: str | None = None
    requests_per_minute: Annotated[int, Field(ge=1, le=100_000)] | None = None


class PlatformWebhook(_Model):
    """A tenant's webhooks from one maintenance platform (``webhooks.<platform>``).

    ``secret_env`` names the variable holding what authenticates the platform: the MaintainX
    subscription secret, the Atlas endpoint secret, the Frappe webhook secret, Limble's oldest API
    key, the Infraspeak bearer token, or (Odoo signs nothing) the secret carried in the webhook URL.
    ``clients``, ``sites`` and ``technicians`` map the platform's references to the tenant's ids
    (a reference not listed is used as it is); ``default_site``: the site of documents that name
    none; ``options``: per-platform choices (``client_field``, ``contract_field`` for MaintainX)."""

    secret_env: str
    api: PlatformApi | None = None
    clients: dict[str, str] = Field(default_factory=dict)
    sites: dict[str, str] = Field(default_factory=dict)
    technicians: dict[str, str] = Field(default_factory=dict)
    default_site: str | None = None
    options: dict[str, str] = Field(default_factory=dict)


#: What a tenant's ``callbacks.events`` may list: the ``billing.payments`` states (``billing.invoice.<state>``).
CallbackEvent = Literal["paid", "partially_paid", "voided"]


def _loopback(host: str) -> bool:
    """Whether ``host`` (a URL's host name, brackets removed) is this machine: ``localhost`` or a loopback IP."""
    import ipaddress

    if host.lower() == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


class Callbacks(_Model):
    """Where ``broker callbacks`` tells the tenant's maintenance platform of payments (``callbacks:``;
    ``docs/payments.md``, "Callbacks to the platform").

    Every ``billing.payments`` record of the tenant whose state is in ``events`` is POSTed to ``url`` as
    the CloudEvent recorded, signed the Standard Webhooks way with the key in the variable ``secret_env``
    (``whsec_`` + base64 of 24 to 64 random bytes; never written in the file, never logged).

    ``url``: ``https://…``, or ``http://`` only to a loopback host (``localhost``, ``127.0.0.1``, ``[::1]``),
    without user or password; ``events``: which states are sent (default all three); ``timeout_seconds``:
    the most one request may take, connecting, sending and reading the answer; ``max_attempts``: requests
    per record, the first included, before it is dead-lettered; ``backoff_seconds``: the wait after the
    first failed attempt, doubled after each next one up to ``max_backoff_seconds``, which also caps a
    waited ``Retry-After``.
    """

    url: Annotated[str, Field(max_length=2000)]
    secret_env: Annotated[str, Field(pattern=r"^[A-Za-z_][A-Za-z0-9_]*$")]
    events: list[CallbackEvent] = Field(
        default_factory=lambda: list(get_args(CallbackEvent)), min_length=1, max_length=3
    )
    timeout_seconds: Annotated[float, Field(gt=0, le=300)] = 10.0
    max_attempts: Annotated[int, Field(ge=1, le=100)] = 8
    backoff_seconds: Annotated[float, Field(gt=0, le=3600)] = 1.0
    max_backoff_seconds: Annotated[float, Field(gt=0, le=86400)] = 300.0

    @field_validator("url")
    @classmethod
    def _callback_url(cls, url: str) -> str:
        from urllib.parse import urlsplit

        parts = urlsplit(url)
        try:
            host = parts.hostname or ""
            parts.port  # noqa: B018 - raises ValueError for a port that is not a number
        except ValueError as exc:
            raise ValueError(f"not a valid URL: {exc}") from None
        if parts.scheme not in ("https", "http") or not host or any(c.isspace() for c in url):
            raise ValueError("give an absolute https:// URL (http:// only to a loopback host)")
        if parts.username is not None or parts.password is not None:
            raise ValueError("a user or password in the URL would be logged; the request is signed instead")
        if parts.scheme == "http" and not _loopback(host):
            raise ValueError(
                f"http:// only to a loopback host (localhost, 127.0.0.1, [::1]), not {host!r}: use https://"
            )
        return url

    @field_validator("events")
    @classmethod
    def _distinct_events(cls, events: list[str]) -> list[str]:
        if len(set(events)) != len(events):
            raise ValueError("list each state once")
        return events

    @model_validator(mode="after")
    def _backoff_order(self) -> Callbacks:
        if self.backoff_seconds > self.max_backoff_seconds:
            raise ValueError("backoff_seconds is larger than max_backoff_seconds")
        return self


class HolidayCalendar(_Model):
    """The tenant's public holidays (``holidays:``), local dates in the tenant's time zone, for the
    ``holiday`` time band. Two forms:

    * a list of dates, ``[2026-04-03, 2026-04-25]``: exactly those days (read as ``add``);
    * a mapping ``{country: PT, subdivision: "11", add: [...], remove: [...]}``: the official calendar
      of ``country`` (ISO 3166-1 code) and, optionally, of one of its ``subdivision`` (ISO 3166-2
      code as the ``holidays`` package lists it, quoted, or an alias it knows: ``"11"`` or
      ``"Lisboa"``), computed for any year by the ``holidays`` package (public holidays, observed
      substitute days included: https://holidays.readthedocs.io), plus the ``add`` days, minus the
      ``remove`` days. Without ``country`` only the ``add`` days are holidays.

    Validation errors name the field and the value: an unknown ``country`` (with a suggestion), an
    unknown ``subdivision`` (listing the valid ones), a ``subdivision`` or ``remove`` without
    ``country``, a ``remove`` day that is not in the official calendar (nothing to remove: a typo),
    a day both in ``add`` and ``remove``.

    ``day in calendar`` / :meth:`dates` look days up (each year computed once, no I/O).
    """

    country: str | None = Field(
        default=None, description="ISO 3166-1 country code of the official calendar (holidays package), e.g. PT."
    )
    subdivision: str | None = Field(
        default=None,
        description="Subdivision of the country as the holidays package lists it (ISO 3166-2 code, quoted: "
        "'11' is Lisbon district), or one of its aliases ('Lisboa').",
    )
    add: list[date] = Field(default_factory=list, description="Extra holidays (local dates).")
    remove: list[date] = Field(
        default_factory=list, description="Days of the official calendar that are not holidays for this tenant."
    )
    _dates: HolidayDates | None = PrivateAttr(default=None)

    @model_validator(mode="before")
    @classmethod
    def _date_list(cls, value: Any) -> Any:
        """The list form ``[YYYY-MM-DD, ...]`` is ``{add: [...]}``."""
        if isinstance(value, list | tuple):
            return {"add": value}
        if not isinstance(value, dict | HolidayCalendar):
            raise ValueError("holidays is a list of dates or a mapping {country, subdivision, add, remove}")
        return value

    @classmethod
    def __get_pydantic_json_schema__(cls, core_schema: Any, handler: Any) -> dict[str, Any]:
        """Both forms: a list of dates, or the mapping."""
        mapping: dict[str, Any] = handler(core_schema)
        dates = {"type": "array", "items": {"type": "string", "format": "date"}}
        return {"anyOf": [dates, mapping], "description": "Public holidays: a list of dates, or a calendar."}

    @field_validator("country")
    @classmethod
    def _known_country(cls, value: str | None) -> str | None:
        return None if value is None else check_country(value)

    @field_validator("subdivision", mode="before")
    @classmethod
    def _subdivision_text(cls, value: Any) -> Any:
        if isinstance(value, int) and not isinstance(value, bool):
            raise ValueError(f'subdivision codes are text: quote it (subdivision: "{value}")')
        return value

    @field_validator("subdivision")
    @classmethod
    def _known_subdivision(cls, value: str | None, info: ValidationInfo) -> str | None:
        if value is None:
            return None
        if "country" not in info.data:  # the country was refused: its error is enough
            return value
        country = info.data["country"]
        if country is None:
            raise ValueError("a subdivision needs a country")
        return check_subdivision(country, value)

    @field_validator("remove")
    @classmethod
    def _removable(cls, value: list[date], info: ValidationInfo) -> list[date]:
        if not value or "country" not in info.data or "subdivision" not in info.data:
            return value
        country, subdivision = info.data["country"], info.data["subdivision"]
        if country is None:
            raise ValueError("remove needs a country: it takes days out of that country's official calendar")
        both = sorted(set(value) & set(info.data.get("add", ())))
        if both:
            raise ValueError(f"{both[0].isoformat()} is both in add and in remove")
        official = official_calendar(country, subdivision)
        where = country + (f" subdivision {subdivision}" if subdivision else "")
        for day in value:
            if day not in official:
                raise ValueError(f"{day.isoformat()} is not a holiday of {where} (nothing to remove)")
        return value

    @model_validator(mode="after")
    def _calendar(self) -> HolidayCalendar:
        self._dates = self._build()
        return self

    def _build(self) -> HolidayDates:
        official = official_calendar(self.country, self.subdivision) if self.country is not None else None
        return HolidayDates(official, self.add, self.remove)

    def dates(self) -> HolidayDates:
        """The holiday dates, for lookups: ``day in calendar.dates()`` (built at validation, shared)."""
        if self._dates is None:  # a model built without validation (model_construct)
            self._dates = self._build()
        return self._dates

    def __contains__(self, day: object) -> bool:
        return day in self.dates()


class PeriodicInvoicing(_Model):
    """Periodic invoicing (clients' ``invoicing: weekly | monthly``): ``late``: where a new document
    dated in an already closed period goes: ``next_period`` (the period holding the day it arrives)
    or ``amend`` (a new revision of the closed period's invoice)."""

    late: Literal["next_period", "amend"] = "next_period"


class Economics(_Model):
    """Settings of the economic report (``broker report economics``): ``target_margin_percent`` is
    the margin (``(revenue - cost) / revenue × 100``) a contract's recommended monthly fee aims at."""

    target_margin_percent: Annotated[Decimal, Field(ge=0, lt=100)] = Decimal("30")


class Tenant(_Model):
    """A maintenance company using the broker."""

    name: str
    currency: Annotated[str, Field(pattern=r"^[A-Z]{3}$")]
    timezone: str = "UTC"
    vat_percent: Percent
    invoice_prefix: Annotated[str, Field(pattern=r"^[A-Z0-9][A-Z0-9-]{0,11}$")]
    payment_terms_days: Annotated[int, Field(ge=0, le=365)] = 30
    billing: Billing
    clients: dict[str, Client] = Field(default_factory=dict)
    rate_card: RateCard
    holidays: HolidayCalendar = Field(
        default_factory=HolidayCalendar,
        description="Public holidays (local dates) for the 'holiday' time band: a list of dates, or "
        "{country, subdivision, add, remove} (the official calendar of the holidays package, adjusted).",
    )
    tax: TaxSettings = Field(default_factory=TaxSettings)
    quotes: QuoteBilling = Field(default_factory=QuoteBilling)
    ignored_event_types: list[EventTypeName] = Field(
        default_factory=lambda: list(DEFAULT_IGNORED_EVENT_TYPES),
        max_length=50,
        description="Platform event types acknowledged and counted (broker_events_ignored_total) but never billed "
        "nor dead-lettered; other unknown types still go to billing.dlq (unknown_type).",
    )
    intake: list[IntakeSource] = Field(
        default_factory=list, description="Who may send this tenant's CloudEvents to `broker ingest`."
    )
    webhooks: dict[str, PlatformWebhook] = Field(
        default_factory=dict,
        description="Webhooks from maintenance platforms to `broker ingest`, by platform (docs/intake.md).",
    )
    callbacks: Callbacks | None = Field(
        default=None,
        description="Signed HTTP callbacks of the tenant's payments (billing.payments) to its maintenance platform, "
        "sent by `broker callbacks` (docs/payments.md); none when absent.",
    )
    economics: Economics = Field(default_factory=Economics)
    periodic: PeriodicInvoicing = Field(default_factory=PeriodicInvoicing)
    approval: Approval = Field(
        default="none",
        description="none: invoices are posted final; draft: posted as drafts where the billing system has them; "
        "required: held until an operator approves them (clients may override).",
    )
    language: str = Field(
        default="en", description="Language of the invoice texts of clients that set none (en, es, fr, pt)."
    )
    texts: dict[str, dict[str, str]] = Field(
        default_factory=dict,
        description="Invoice text templates replacing the catalogue's, per language ('*': every language): "
        "{pt: {labour: 'Mão de obra – {technician}: {time}'}} (docs/pricing.md, 'Invoice texts').",
    )
    corrections: Literal["amend", "reject"] = Field(
        default="amend",
        description="A delivered invoice version arriving with other content: 'amend' replaces the billed "
        "document, 'reject' dead-letters it (content_conflict) naming both totals.",
    )
    _number_max: int | None = PrivateAttr(default=None)

    @field_validator("ignored_event_types")
    @classmethod
    def _not_handled_types(cls, types: list[str]) -> list[str]:
        for index, name in enumerate(types):
            if name in EVENT_TYPES:
                raise ValueError(
                    f"item {index}, {name!r}, is an event type the broker handles (list only types it does not know)"
                )
        return types

    @field_validator("webhooks")
    @classmethod
    def _known_platforms(cls, webhooks: dict[str, PlatformWebhook]) -> dict[str, PlatformWebhook]:
        for platform, hook in webhooks.items():
            if platform not in PLATFORMS:
                raise ValueError(f"platform {platform!r} is not one the intake knows ({', '.join(PLATFORMS)})")
            if platform in ("maintainx", "atlas", "limble", "infraspeak") and hook.api is None:
                raise ValueError(f"{platform}: webhooks from {platform} are thin; give 'api' to read the rest")
        return webhooks

    @field_validator("language")
    @classmethod
    def _tenant_language(cls, language: str) -> str:
        return check_language(language)

    @field_validator("texts")
    @classmethod
    def _text_templates(cls, texts: dict[str, dict[str, str]]) -> dict[str, dict[str, str]]:
        check_templates(texts)
        return texts

    def invoicing_of(self, client_id: str) -> str:
        """``per_document``, ``weekly`` or ``monthly``: the client's ``invoicing`` (unknown client: per document)."""
        client = self.clients.get(client_id)
        return client.invoicing if client is not None else "per_document"

    def approval_of(self, client_id: str) -> Approval:
        """``none``, ``draft`` or ``required``: the client's ``approval``, else the tenant's (:data:`Approval`)."""
        client = self.clients.get(client_id)
        return client.approval if client is not None and client.approval is not None else self.approval

    def language_of(self, client_id: str) -> str:
        """The invoice language of ``client_id``: its ``language``, else the tenant's."""
        client = self.clients.get(client_id)
        return (client.language if client is not None else None) or self.language

    @model_validator(mode="after")
    def _client_skills_exist(self) -> Tenant:
        for client_id, client in self.clients.items():
            for skill in client.skill_rates:
                if skill not in self.rate_card.skills:
                    raise ValueError(
                        f"clients.{client_id}.skill_rates: skill {skill!r} is not in rate_card.skills "
                        f"({', '.join(self.rate_card.skills)})"
                    )
            if client.travel_billing not in (None, "time") and self.rate_card.mileage_rate_per_km is None:
                raise ValueError(
                    f"clients.{client_id}.travel_billing {client.travel_billing!r} needs rate_card.mileage_rate_per_km"
                )
        return self

    def tax_rate(self, line_type: TaxLineType) -> Decimal:
        """VAT percentage for a line type (``tax.rates``, else ``vat_percent``; ``mileage`` falls back
        to ``tax.rates.travel`` first)."""
        return self.tax.rates.get(line_type, self.vat_percent) if line_type != "mileage" else self._mileage_rate()

    def _mileage_rate(self) -> Decimal:
        rates = self.tax.rates
        return rates.get("mileage", rates.get("travel", self.vat_percent))

    def _tax_rate_source(self, line_type: TaxLineType) -> str:
        """The field that sets the VAT rate of ``line_type`` (``tax.rates.travel``, ``vat_percent`` ...)."""
        for key in (line_type, "travel") if line_type == "mileage" else (line_type,):
            if key in self.tax.rates:
                return f"tax.rates.{key}"
        return "vat_percent"

    def travel_billing(self, client_id: str) -> TravelBilling:
        """How travel is billed for ``client_id``: the client's ``travel_billing``, else the rate card's."""
        client = self.clients.get(client_id)
        override = client.travel_billing if client is not None else None
        return override or self.rate_card.travel_billing

    def vat_rates(self) -> list[VatRate]:
        """Every VAT rate this tenant's invoice lines can carry, as the configuration sets them.

        * ``standard``: the rate of each line type (``tax.rates``, else ``vat_percent``), one entry per
          distinct percentage, its ``sources`` the fields that set it (``vat_percent``, ``tax.rates.part``);
        * ``exempt`` (0 %, code ``tax.exempt_tax_type``) when a client is ``tax_exempt``;
        * ``reverse_charge`` (0 %, code ``tax.reverse_charge_tax_type``) when a client is ``reverse_charge``.

        An approved quote line's own ``tax_rate`` comes with the event and is not listed.
        """
        standard: dict[str, tuple[Decimal, list[str]]] = {}
        for line_type in get_args(TaxLineType):
            rate = self.tax_rate(line_type)
            source = self._tax_rate_source(line_type)
            sources = standard.setdefault(rate_key(rate), (rate, []))[1]
            if source not in sources:
                sources.append(source)
        rates = [VatRate(rate, "standard", None, tuple(sources)) for rate, sources in standard.values()]
        exempt = tuple(f"clients.{cid}.tax_exempt" for cid, client in self.clients.items() if client.tax_exempt)
        if exempt:
            rates.append(VatRate(Decimal(0), "exempt", self.tax.exempt_tax_type, exempt))
        reverse = tuple(f"clients.{cid}.reverse_charge" for cid, c in self.clients.items() if c.reverse_charge)
        if reverse:
            rates.append(VatRate(Decimal(0), "reverse_charge", self.tax.reverse_charge_tax_type, reverse))
        return rates

    @property
    def invoice_number_max(self) -> int:
        """Longest invoice number the pricing gives this tenant (characters): ``INVOICE_NUMBER_MAX`` (32),
        lowered to what the billing system takes (its connector's ``Capabilities.invoice_number_limit``:
        QuickBooks 21, PayPal 25, Stripe 30). See :func:`broker.pricing.numbers.invoice_number`.

        Raises :class:`ConfigError` when the connector cannot be loaded.
        """
        if self._number_max is None:
            from broker.pricing.numbers import invoice_number_limit

            system = connector_class(self.billing.system, field="billing.system")
            self._number_max = invoice_number_limit(system.capabilities.invoice_number_limit)
        return self._number_max

    @field_validator("timezone")
    @classmethod
    def _zone(cls, value: str) -> str:
        try:
            ZoneInfo(value)
        except (ZoneInfoNotFoundError, ValueError):
            raise ValueError(f"unknown IANA time zone {value!r}") from None
        return value

    @property
    def zone(self) -> ZoneInfo:
        return ZoneInfo(self.timezone)


class BrokerConfig(_Model):
    """The whole configuration file."""

    tenants: dict[str, Tenant] = Field(min_length=1)

    def tenant(self, tenant_id: str) -> Tenant:
        """The tenant named ``tenant_id``; ``KeyError`` with a clear message when unknown."""
        try:
            return self.tenants[tenant_id]
        except KeyError:
            raise KeyError(f"unknown tenant {tenant_id!r}; configured: {', '.join(sorted(self.tenants))}") from None


def connector_class(system: str, *, field: str) -> type[Connector]:
    """The connector class of billing system ``system`` (:func:`connectors.registry.load`).

    Raises :class:`ConfigError` ``"<field>: <why>"`` when no connector is installed under that name
    or it failed to import.
    """
    from connectors import registry

    try:
        return registry.load(system)
    except LookupError as exc:
        raise ConfigError(f"{field}: {exc}") from None


def billing_problems(config: BrokerConfig) -> list[str]:
    """Why tenants of ``config`` cannot bill in their system: one message per problem, ``[]`` when none.

    Each message starts with the tenant's path, ``tenants.<id>``:

    * ``tenants.<id>.billing.system: ...``: no connector installed, or it failed to import;
    * ``tenants.<id>.billing.settings.<field>: ...``: the connector's settings refuse a value;
    * ``tenants.<id>.billing (<system>): VAT 6% (tax.rates.part) has no ...``: a rate of
      :meth:`Tenant.vat_rates` the settings do not map to a code of the system
      (:meth:`Connector.required_tax_mapping <connectors.sdk.interface.Connector.required_tax_mapping>`);
    * ``tenants.<id>.approval: ...`` / ``tenants.<id>.clients.<client>.approval: ...``: ``draft`` for a
      system without draft invoices (``Capabilities.drafts`` false, e.g. QuickBooks Online);
    * ``tenants.<id>.invoice_prefix: ...``: even the shortest invoice number of the prefix
      (:func:`broker.pricing.numbers.shortest_invoice_number`) exceeds :attr:`Tenant.invoice_number_max`.
    """
    problems: list[str] = []
    for tenant_id, tenant in config.tenants.items():
        problems.extend(_tenant_billing_problems(tenant_id, tenant))
    return problems


def _tenant_billing_problems(tenant_id: str, tenant: Tenant) -> list[str]:
    from broker.pricing.numbers import NUMBER_HASH_DIGITS, shortest_invoice_number

    where, system = f"tenants.{tenant_id}", tenant.billing.system
    try:
        cls = connector_class(system, field=f"{where}.billing.system")
        settings = cls.validate_settings(tenant.billing.settings, prefix=f"{where}.billing.settings")
        unmapped = cls.required_tax_mapping(settings, tenant.vat_rates())
        limit = tenant.invoice_number_max
    except ConfigError as exc:
        return [str(exc)]
    problems = [f"{where}.billing ({system}): {problem}" for problem in unmapped]
    if not cls.capabilities.drafts:
        problems.extend(_draft_problems(where, tenant, system, getattr(cls, "label", "") or system))
    shortest = shortest_invoice_number(tenant.invoice_prefix)
    if shortest > limit:
        problems.append(
            f"{where}.invoice_prefix: {tenant.invoice_prefix!r} is too long for {system}, whose invoice numbers "
            f"hold {limit} characters at most: the shortest number of this prefix ('<prefix>-WO-' and "
            f"{NUMBER_HASH_DIGITS} hash digits) has {shortest}; use at most {limit - NUMBER_HASH_DIGITS - 4} characters"
        )
    return problems


def _draft_problems(where: str, tenant: Tenant, system: str, label: str) -> list[str]:
    """``approval: draft`` (the tenant's or a client's) for a billing system without draft invoices: one message
    per field naming its path and the system (``Capabilities.drafts``, docs/connectors.md "Drafts")."""
    fields = [f"{where}.approval"] if tenant.approval == "draft" else []
    fields += [
        f"{where}.clients.{cid}.approval" for cid, client in tenant.clients.items() if client.approval == "draft"
    ]
    return [
        f"{field}: 'draft' posts invoices as drafts, but the billing system {system} ({label}) has no draft "
        "invoices (an invoice is issued when it is created); use 'none' or 'required'"
        for field in fields
    ]


#: PyYAML's C loader (libyaml) when PyYAML was built with it, else its pure-Python loader; both build
#: the same plain data as ``yaml.safe_load`` (the C one parses a large config about 4x faster).
YAML_LOADER: type[yaml.SafeLoader] | type[yaml.CSafeLoader] = getattr(yaml, "CSafeLoader", yaml.SafeLoader)


def load_yaml(text: str) -> Any:
    """The one YAML document in ``text`` as plain data (dicts, lists, str, int, float, bool, None,
    dates), like ``yaml.safe_load``, parsed with :data:`YAML_LOADER`.

    Raises ``yaml.YAMLError`` for malformed YAML: the pure-Python loader's error (the text is parsed
    again with it), whose message names the line and column and shows the offending line, as
    ``yaml.safe_load`` always did (libyaml's own message has no excerpt).
    """
    try:
        return yaml.load(text, Loader=YAML_LOADER)
    except yaml.YAMLError:
        if YAML_LOADER is yaml.SafeLoader:
            raise
    return yaml.load(text, Loader=yaml.SafeLoader)  # raises the pure loader's error (or, should libyaml be
    # stricter than the pure loader on some document, returns what yaml.safe_load returns)


def load_config(path: str | os.PathLike[str]) -> BrokerConfig:
    """Read and validate the YAML file at ``path`` (parsed by :func:`load_yaml`). Raises :class:`ConfigError`
    naming the field path, or ``"<path>: not valid YAML: <line, column and why>"``."""
    p = Path(path)
    try:
        raw = load_yaml(p.read_text(encoding="utf-8"))
    except FileNotFoundError:
        raise ConfigError(f"config file not found: {p}") from None
    except yaml.YAMLError as exc:
        raise ConfigError(f"{p}: not valid YAML: {exc}") from None
    return parse_config(raw, source=str(p))


def parse_config(raw: Any, source: str = "<config>") -> BrokerConfig:
    """Validate an already-parsed config mapping, then check every tenant against its billing system
    (:func:`billing_problems`: connector, settings, tax codes, invoice-number length).

    Raises :class:`ConfigError` ``"<source>: invalid configuration:"`` followed by one line per
    problem, each naming the field path (and the tenant, the system, the rate or limit).
    """
    try:
        config = BrokerConfig.model_validate(raw)
    except ValidationError as exc:
        raise ConfigError(
            f"{source}: invalid configuration:\n{format_validation_error(exc, model=BrokerConfig)}"
        ) from None
    problems = billing_problems(config)
    if problems:
        raise ConfigError(f"{source}: invalid configuration:\n" + "\n".join(problems))
    return config


__all__ = [
    "DEFAULT_REVERSE_CHARGE_NOTE",
    "Approval",
    "Billing",
    "BrokerConfig",
    "CallbackEvent",
    "Callbacks",
    "CatalogueItem",
    "Client",
    # ConfigError, format_validation_error and resolve_secret live in the connector SDK; re-exported here
    "ConfigError",
    "Contract",
    "ContractCovers",
    "Discount",
    "DiscountPercent",
    "Money",
    "PaymentFeed",
    "Percent",
    "QuoteBilling",
    "RateCard",
    "SkillRate",
    "TaxLineType",
    "TaxSettings",
    "Technician",
    "Tenant",
    "TimeBand",
    "Weekday",
    "billing_problems",
    "connector_class",
    "format_validation_error",
    "hhmm_minutes",
    "load_config",
    "load_yaml",
    "parse_config",
    "resolve_secret",
]
