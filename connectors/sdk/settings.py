"""Connector settings and secrets: the base settings model, secret resolution, readable validation errors.

A connector's settings are a pydantic model (``billing.settings`` of a tenant) built on
:class:`ConnectorSettings`. Secrets are never values in the file: a field ending in ``_env`` names
the environment variable that holds the secret, read with :func:`resolve_secret` when first needed.
"""

from __future__ import annotations

import os
from collections.abc import Mapping, Sequence
from typing import TYPE_CHECKING, Any, TypeVar

from pydantic import BaseModel, ConfigDict, Field, SecretStr, ValidationError

from connectors.sdk.errors import ConfigError

if TYPE_CHECKING:
    from connectors.sdk.tax import VatRate

SettingsT = TypeVar("SettingsT", bound=BaseModel)


class ConnectorSettings(BaseModel):
    """Base of every connector's settings model (``billing.settings`` of a tenant).

    Conventions the conformance kit checks:

    * unknown keys are refused (``extra="forbid"``) and the model is immutable;
    * **secrets are never values in the file**: a field ending in ``_env`` names the environment
      variable that holds the secret (``client_secret_env: XERO_CLIENT_SECRET``), read with
      :func:`broker.config.resolve_secret` when first needed; a secret that must be passed in
      code is a :class:`~pydantic.SecretStr` field (shown as ``**********``);
    * ``timeout_seconds`` is the per-request HTTP timeout (the kit shortens it).
    """

    model_config = ConfigDict(extra="forbid", frozen=True)

    timeout_seconds: float = Field(default=10.0, gt=0, description="Per-request HTTP timeout in seconds.")

    def tax_mapping_problems(self, rates: Sequence[VatRate]) -> list[str]:  # noqa: ARG002 - the default needs none
        """What these settings lack to bill ``rates`` (:class:`~connectors.sdk.interface.VatRate`): one message
        per unmapped rate naming the rate (``rate.label``) and the field to fill; ``[]`` when all map.

        Default ``[]``: the system takes our rate and our tax amount as they are and needs no code.
        A connector whose system books each line under a tax code overrides it with the same rules
        its mapper applies (:meth:`Connector.required_tax_mapping
        <connectors.sdk.interface.Connector.required_tax_mapping>` calls it when the broker loads
        its configuration).
        """
        return []


class OAuthClientSettings(ConnectorSettings):
    """Settings of a connector that signs in as an OAuth 2.0 client (an app registered with the billing system).

    ``client_id`` is the app's id (not a secret); ``client_secret_env`` names the environment
    variable holding its client secret. Enough on its own for the client-credentials grant.
    """

    client_id: str = Field(min_length=1, description="OAuth 2.0 client id of the app (not a secret).")
    client_secret_env: str = Field(
        min_length=1, description="Name of the environment variable holding the app's client secret."
    )


class OAuthRefreshSettings(OAuthClientSettings):
    """:class:`OAuthClientSettings` of a connector the tenant authorised once (authorization-code grant).

    ``refresh_token_env`` names the environment variable holding the first refresh token (from
    ``broker connectors authorize`` or the system's OAuth playground); the rotated ones live in the
    token store.
    """

    refresh_token_env: str = Field(
        min_length=1, description="Name of the environment variable holding the first refresh token."
    )


def secret_env_fields(settings_cls: type[BaseModel]) -> list[str]:
    """Names of the settings fields that name a secret's environment variable (``*_env``)."""
    return [name for name in settings_cls.model_fields if name.endswith("_env")]


def secret_str_fields(settings_cls: type[BaseModel]) -> list[str]:
    """Names of the settings fields typed :class:`~pydantic.SecretStr` (optional or not)."""
    out = []
    for name, info in settings_cls.model_fields.items():
        ann = info.annotation
        if ann is SecretStr or SecretStr in getattr(ann, "__args__", ()):
            out.append(name)
    return out


def _model_at(model: type[BaseModel], loc: Sequence[Any]) -> type[BaseModel] | None:
    """The model class that holds the last element of ``loc`` (a pydantic error location), walking
    fields, ``dict`` values, ``list`` items and optional types from ``model``; None when unknown."""
    current: Any = model
    for part in loc[:-1]:
        while True:  # unwrap Optional[...] / X | None / containers down to a model
            if isinstance(current, type) and issubclass(current, BaseModel):
                break
            args = [a for a in getattr(current, "__args__", ()) if a is not type(None)]
            origin = getattr(current, "__origin__", None)
            if origin in (dict, Mapping) and len(args) == 2:
                current = ("container", args[1])
                break
            if origin in (list, Sequence, tuple) and args:
                current = ("container", args[0])
                break
            if len(args) == 1:
                current = args[0]
                continue
            return None
        if isinstance(current, tuple):  # this part is a key or an index
            current = current[1]
            continue
        field = current.model_fields.get(str(part))
        if field is None:
            return None
        current = field.annotation
    while not (isinstance(current, type) and issubclass(current, BaseModel)):
        args = [a for a in getattr(current, "__args__", ()) if a is not type(None)]
        if len(args) != 1:
            return None
        current = args[0]
    return current


def format_validation_error(exc: ValidationError, prefix: str = "", model: type[BaseModel] | None = None) -> str:
    """Render pydantic errors as ``path.to.field: message (got value)``, one per line. With
    ``model`` (the validated class), an unknown field gets the closest known name
    (``rate_cards: unknown field; did you mean rate_card?``)."""
    import difflib

    lines = []
    for err in exc.errors():
        path = ".".join(str(p) for p in err["loc"])
        if prefix:
            path = f"{prefix}.{path}" if path else prefix
        holder = _model_at(model, err["loc"]) if model is not None and err["type"] == "extra_forbidden" else None
        if err["type"] == "missing":
            lines.append(f"{path}: field required")
        elif holder is not None:
            close = difflib.get_close_matches(str(err["loc"][-1]), list(holder.model_fields), n=1, cutoff=0.6)
            hint = f"did you mean {close[0]}?" if close else f"known fields: {', '.join(holder.model_fields)}"
            lines.append(f"{path}: unknown field; {hint}")
        else:
            got = err.get("input")
            shown = "" if isinstance(got, dict) else f" (got {got!r})"
            lines.append(f"{path}: {err['msg']}{shown}")
    return "\n".join(lines)


def resolve_secret(env_name: str, *, field: str) -> SecretStr:
    """Read the secret held in environment variable ``env_name`` (named by config field ``field``).

    Raises :class:`~connectors.sdk.errors.ConfigError` naming the variable and the field when it is
    unset or empty. The value is returned as ``SecretStr`` so it never shows in reprs or logs.
    """
    value = os.environ.get(env_name)
    if not value:
        raise ConfigError(f"missing secret: environment variable {env_name} (named by {field}) is not set")
    return SecretStr(value)


def validate_settings(
    model: type[SettingsT], raw: BaseModel | Mapping[str, Any], *, label: str, prefix: str = "billing.settings"
) -> SettingsT:
    """``raw`` as a ``model`` instance; :class:`~connectors.sdk.errors.ConfigError` naming each bad field and value.

    ``label`` names the connector in the message (``"invalid xero settings: ..."``).
    """
    if isinstance(raw, model):
        return raw
    if isinstance(raw, BaseModel):
        raw = raw.model_dump()
    try:
        return model.model_validate(dict(raw))
    except ValidationError as exc:
        raise ConfigError(f"invalid {label} settings:\n" + format_validation_error(exc, prefix=prefix)) from None


__all__ = [
    "ConnectorSettings",
    "OAuthClientSettings",
    "OAuthRefreshSettings",
    "format_validation_error",
    "resolve_secret",
    "secret_env_fields",
    "secret_str_fields",
    "validate_settings",
]
