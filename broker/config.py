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
        clients: {<client id>: {name, contact_id, email, tax_number}}
        rate_card: {...}            # see RateCard

Secrets are never written in the file: settings name the environment variable that holds them
(``client_secret_env: XERO_CLIENT_SECRET``); :func:`resolve_secret` reads it and raises
:class:`ConfigError` naming the variable when it is missing.

Every validation error names the field path and the bad value, e.g.
``tenants.acme.rate_card.skills.hvac.hourly_rate: Input should be greater than or equal to 0 (got '-5')``.
"""

from __future__ import annotations

import os
from decimal import Decimal
from pathlib import Path
from typing import Annotated, Any
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

import yaml
from pydantic import BaseModel, ConfigDict, Field, SecretStr, ValidationError, field_validator, model_validator

Money = Annotated[Decimal, Field(ge=0)]
Percent = Annotated[Decimal, Field(ge=0, le=1000)]


class ConfigError(Exception):
    """Invalid configuration. The message names the field path (or environment variable) and the bad value."""


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


class RateCard(_Model):
    """How labour, parts and expenses are priced.

    * Labour: per technician per visit, worked minutes are rounded **up** to
      ``billing_increment_minutes`` (an exact multiple stays as is), then raised to
      ``minimum_billable_minutes``. Rate: technician's own rate, else their skill's rate.
    * Call-out fee: once per corrective visit (not for preventive work).
    * Parts: catalogue ``unit_price`` when the event has one, else ``unit_cost × (1 + parts_markup_percent/100)``,
      unit price rounded half-up to the currency minor unit.
    * Expenses: billable ones at cost plus ``expenses_handling_percent``.
    """

    billing_increment_minutes: Annotated[int, Field(ge=1, le=240)] = 15
    minimum_billable_minutes: Annotated[int, Field(ge=0, le=1440)] = 60
    skills: dict[str, SkillRate]
    default_skill: str
    technicians: dict[str, Technician] = Field(default_factory=dict)
    travel_hourly_rate: Money | None = None
    call_out_fee: Money | None = None
    parts_markup_percent: Percent = Decimal("0")
    expenses_handling_percent: Percent = Decimal("0")

    @model_validator(mode="after")
    def _skills_exist(self) -> "RateCard":
        if self.default_skill not in self.skills:
            raise ValueError(f"default_skill {self.default_skill!r} is not in skills ({', '.join(self.skills)})")
        for tech_id, tech in self.technicians.items():
            if tech.skill not in self.skills:
                raise ValueError(f"technicians.{tech_id}.skill {tech.skill!r} is not in skills ({', '.join(self.skills)})")
        return self


class Client(_Model):
    """A client company of the tenant and how it is known in the billing system."""

    name: str
    contact_id: str | None = Field(default=None, description="Contact/customer id in the billing system.")
    email: str | None = None
    tax_number: str | None = None


class Billing(_Model):
    """Which billing system the tenant uses; ``settings`` are validated by that connector's Settings model."""

    system: str
    settings: dict[str, Any] = Field(default_factory=dict)


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


def format_validation_error(exc: ValidationError, prefix: str = "") -> str:
    """Render pydantic errors as ``path.to.field: message (got value)``, one per line."""
    lines = []
    for err in exc.errors():
        path = ".".join(str(p) for p in err["loc"])
        if prefix:
            path = f"{prefix}.{path}" if path else prefix
        if err["type"] == "missing":
            lines.append(f"{path}: field required")
        else:
            got = err.get("input")
            shown = "" if isinstance(got, dict) else f" (got {got!r})"
            lines.append(f"{path}: {err['msg']}{shown}")
    return "\n".join(lines)


def load_config(path: str | os.PathLike) -> BrokerConfig:
    """Read and validate the YAML file at ``path``. Raises :class:`ConfigError` naming the field path."""
    p = Path(path)
    try:
        raw = yaml.safe_load(p.read_text(encoding="utf-8"))
    except FileNotFoundError:
        raise ConfigError(f"config file not found: {p}") from None
    except yaml.YAMLError as exc:
        raise ConfigError(f"{p}: not valid YAML: {exc}") from None
    return parse_config(raw, source=str(p))


def parse_config(raw: Any, source: str = "<config>") -> BrokerConfig:
    """Validate an already-parsed config mapping. Raises :class:`ConfigError`."""
    try:
        return BrokerConfig.model_validate(raw)
    except ValidationError as exc:
        raise ConfigError(f"{source}: invalid configuration:\n{format_validation_error(exc)}") from None


def resolve_secret(env_name: str, *, field: str) -> SecretStr:
    """Read the secret held in environment variable ``env_name`` (named by config field ``field``).

    Raises :class:`ConfigError` naming the variable and the field when it is unset or empty.
    The value is returned as ``SecretStr`` so it never shows in reprs or logs.
    """
    value = os.environ.get(env_name)
    if not value:
        raise ConfigError(f"missing secret: environment variable {env_name} (named by {field}) is not set")
    return SecretStr(value)
