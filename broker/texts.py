"""The texts an invoice shows, in the customer's language: line descriptions and legal notes.

Every text is a message of :data:`MESSAGES` (key -> English template with ``{named}``
placeholders); the English template is the gettext ``msgid`` and the translations are the
message catalogues ``broker/locales/<language>/LC_MESSAGES/invoice.po`` (read with Babel's PO
reader the first time a language is used, then kept). A client's ``language`` (else the tenant's,
else ``en``) picks the catalogue; a tenant's ``texts`` replace templates per language
(``texts: {pt: {labour: "..."}}``, ``"*"`` for every language), checked when the configuration
loads (:func:`check_templates`).

Numbers inside texts (hours, km, percentages) keep their digits and take the language's decimal
sign (``2.25 h`` -> ``2,25 h`` in Spanish, Portuguese and French; CLDR data through Babel). English
texts are exactly those the broker wrote before translations existed, so English invoices keep their
content fingerprints. Rules, sources and the invoice ``notes`` stay English: they are for operators.

Sources: the reverse-charge wording of Council Directive 2006/112/EC art. 226(11a) ("Reverse
charge") in the official language versions: "Autoliquidação" (PT), "Inversión del sujeto pasivo"
(ES), "Autoliquidation" (FR).
"""

from __future__ import annotations

import string
from decimal import Decimal
from functools import cache, lru_cache
from importlib import resources

from babel import Locale, UnknownLocaleError
from babel.messages.pofile import read_po
from babel.numbers import get_decimal_symbol

__all__ = [
    "DEFAULT_LANGUAGE",
    "LANGUAGES",
    "MESSAGES",
    "InvoiceTexts",
    "check_language",
    "check_templates",
    "invoice_texts",
    "placeholders",
]

DEFAULT_LANGUAGE = "en"
#: Languages with a complete catalogue (English is the source language).
LANGUAGES = ("en", "es", "fr", "pt")

#: key -> English template (the gettext msgid). Placeholders are filled by :class:`InvoiceTexts`.
MESSAGES: dict[str, str] = {
    "labour": "Labour – {technician} ({skill}){band}{visit}: {time}",
    "band": ", {band}",
    "visit": ", visit {visit}",
    "travel": "Travel – {technician}{visit}: {time}",
    "hours": "{hours} h",
    "km": "{km} km",
    "covered": "{description} – covered by contract {contract}",
    "call_out": "Call-out fee",
    "call_out_band": "Call-out fee ({band})",
    "part": "{description} ({sku})",
    "deposit": "Deposit {percent} % – {description} (quote {quote})",
    "balance": "Balance – {description} (quote {quote}, less {percent} % deposit)",
    "reverse_charge": (
        "Reverse charge: VAT to be accounted for by the recipient (Article 196 of Council Directive 2006/112/EC)."
    ),
    "customer_vat_number": "Customer VAT number: {number}",
    "exempt": "Exempt from VAT",
    "section": "{reference}: {description}",
    "ref_wo": "WO {id}",
    "ref_sj": "Scheduled job {id}",
    "ref_qt": "Quote {id}",
    "subscription": "Subscription, contract {contract} – {month}",
    "period_reference": "Services {period}",
}


def placeholders(template: str) -> set[str]:
    """The ``{named}`` fields of ``template``. Raises ``ValueError`` for a malformed template
    (an unmatched brace, a positional ``{}``)."""
    names = set()
    for _text, name, _spec, _conversion in string.Formatter().parse(template):
        if name is None:
            continue
        if not name.isidentifier():
            raise ValueError(f"placeholder {{{name}}} is not a name")
        names.add(name)
    return names


def check_language(value: str) -> str:
    """``value`` as a language this module has texts for (``"pt_PT"`` -> ``"pt"``, ``"es-ES"`` ->
    ``"es"``). Raises ``ValueError`` naming the value for an unknown locale or a language without
    a catalogue (the message lists :data:`LANGUAGES`)."""
    try:
        locale = Locale.parse(value.replace("-", "_"))
    except (UnknownLocaleError, ValueError, TypeError) as exc:
        raise ValueError(f"unknown locale {value!r} (invoice texts exist in {', '.join(LANGUAGES)})") from exc
    if locale.language not in LANGUAGES:
        raise ValueError(f"no invoice texts in {value!r} (invoice texts exist in {', '.join(LANGUAGES)})")
    return locale.language


def check_templates(texts: dict[str, dict[str, str]]) -> None:
    """Check a tenant's ``texts`` (language or ``"*"`` -> key -> template): known languages and
    keys, and placeholders among the message's own. Raises ``ValueError`` naming
    ``texts.<language>.<key>`` and the value."""
    for language, templates in texts.items():
        if language != "*":
            check_language(language)
        for key, template in templates.items():
            where = f"texts.{language}.{key}"
            if key not in MESSAGES:
                raise ValueError(f"{where}: no such text (texts: {', '.join(MESSAGES)})")
            try:
                names = placeholders(template)
            except ValueError as exc:
                raise ValueError(f"{where}: {template!r}: {exc}") from exc
            unknown = names - placeholders(MESSAGES[key])
            if unknown:
                allowed = ", ".join(f"{{{n}}}" for n in sorted(placeholders(MESSAGES[key]))) or "none"
                raise ValueError(
                    f"{where}: {template!r} uses {', '.join(f'{{{n}}}' for n in sorted(unknown))} "
                    f"(placeholders of this text: {allowed})"
                )


@cache
def _catalogue(language: str) -> dict[str, str]:
    """msgid -> msgstr of the language's catalogue (untranslated and fuzzy messages left out)."""
    if language == DEFAULT_LANGUAGE:
        return {}
    source = resources.files("broker").joinpath("locales", language, "LC_MESSAGES", "invoice.po")
    with source.open("rb") as handle:
        catalog = read_po(handle, locale=language)
    return {
        str(message.id): str(message.string)
        for message in catalog
        if message.id and message.string and not message.fuzzy
    }


class InvoiceTexts:
    """The invoice texts of one language, with a tenant's template overrides.

    ``language``: one of :data:`LANGUAGES`; ``overrides``: key -> template (already checked by
    :func:`check_templates`). Methods return finished strings; numbers are given as ``Decimal``
    and shown with their digits and the language's decimal sign.
    """

    __slots__ = ("_decimal", "_templates", "language")

    def __init__(self, language: str, overrides: dict[str, str] | None = None):
        self.language = language
        catalogue = _catalogue(language)
        self._templates = {key: catalogue.get(msgid, msgid) for key, msgid in MESSAGES.items()}
        self._templates.update(overrides or {})
        self._decimal = get_decimal_symbol(language) if language != DEFAULT_LANGUAGE else "."

    def text(self, key: str, **values: object) -> str:
        """The template ``key`` filled with ``values``. Raises ``KeyError`` for an unknown key."""
        return self._templates[key].format(**values)

    def number(self, value: Decimal) -> str:
        """``value``'s digits as written (``Decimal("37.50")`` -> ``37.50``) with this language's decimal sign."""
        text = format(value, "f")
        return text if self._decimal == "." else text.replace(".", self._decimal)

    def hours(self, hours: Decimal) -> str:
        """``2.25 h`` / ``2,25 h``."""
        return self.text("hours", hours=self.number(hours))

    def km(self, km: Decimal) -> str:
        """``37.5 km`` / ``37,5 km``."""
        return self.text("km", km=self.number(km))

    def covered(self, description: str, contract: str) -> str:
        """``<description> – covered by contract <contract>``."""
        return self.text("covered", description=description, contract=contract)


@lru_cache(maxsize=1024)
def _texts(language: str, overrides: tuple[tuple[str, str], ...]) -> InvoiceTexts:
    return InvoiceTexts(language, dict(overrides))


def invoice_texts(language: str, tenant_texts: dict[str, dict[str, str]]) -> InvoiceTexts:
    """The (cached) :class:`InvoiceTexts` of ``language`` with the tenant's overrides for every
    language (``"*"``) and for that language, the latter winning."""
    overrides = {**tenant_texts.get("*", {}), **tenant_texts.get(language, {})}
    return _texts(language, tuple(sorted(overrides.items())))
