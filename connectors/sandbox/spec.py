"""Request validation against an official OpenAPI 3.0 document, for the emulators (needs the ``sandbox`` extra).

One engine for every billing system: :func:`load_openapi` parses a spec (YAML or JSON) once per path and
process, :class:`SpecRequestValidator` finds the operation of ``(method, path)`` and checks what the spec
declares for it — path, query and header parameters (strings coerced to the declared types first), the
security scheme, the ``Content-Type`` and the request body — and raises one :class:`SpecValidationError`
listing the first problems. Schemas are checked with OpenAPI 3.0 semantics (``openapi-schema-validator``,
the engine under openapi-core): ``nullable`` honoured, ``readOnly`` refused in requests (``writeOnly`` in
responses with ``mode="read"``), ``$ref`` resolved in the document. JSON bodies are decoded with every
fraction a :class:`~decimal.Decimal` (valid as ``number``, also with ``format: double``; an integral
Decimal is an ``integer``).

What a system adds, in a few lines next to its emulator (``connectors/<system>/spec.py``):

* ``operations``: the operationIds validated (others pass; inside ``scope``, a path prefix, they are refused);
* ``decoders`` for non-JSON media types (e.g. Stripe's bracket-notation forms; their string values are
  coerced to the declared types like query parameters) and ``decode_query``;
* ``strict_properties``: refuse property names the spec does not define (``allOf`` branches merged);
  ``strict_query``: refuse undeclared query parameters;
* ``checks``: callables for the rules the spec cannot express (they see a :class:`SpecRequest`);
* ``preprocess``/``patch`` for community files that need a repair or a documented deviation;
* ``describe``: how a :class:`Problem` is worded (Stripe's ``Received unknown parameter: ...``).

openapi-core's request validator is not used on top of that engine: it finds an operation through the spec's
server URLs (the emulators listen on loopback), validates the whole document first (the official Xero file
does not pass: a ``default: 'false'`` string) and has no strict properties, bracket-notation forms or per-system
checks.
"""

from __future__ import annotations

import copy
import functools
import hashlib
import json
import os
import re
import tempfile
from collections.abc import Callable, Collection, Iterable, Iterator, Mapping, Sequence
from dataclasses import dataclass, replace
from decimal import Decimal, InvalidOperation
from pathlib import Path
from typing import Any
from urllib.parse import parse_qsl, urlsplit

import yaml
from jsonschema import FormatChecker
from jsonschema.validators import extend
from openapi_schema_validator import OAS30ReadValidator, OAS30WriteValidator, oas30_format_checker

from connectors.sandbox.http import loads_decimal

JSON = "application/json"
FORM = "application/x-www-form-urlencoded"
_METHODS = ("get", "put", "post", "delete", "options", "head", "patch", "trace")
#: header parameters OpenAPI says to ignore (the media type and the security scheme cover them)
_IGNORED_HEADERS = frozenset({"accept", "content-type", "authorization"})
_CACHE_VERSION = 1

Decoder = Callable[[bytes], Any]
#: ``decode_query(query, headers)`` -> the query as the spec's parameters see it (headers lower-cased)
QueryDecoder = Callable[[Mapping[str, Any], Mapping[str, str]], Mapping[str, Any]]
Check = Callable[["SpecRequest"], Iterable["Problem | str"]]
Location = tuple[str | int, ...]


@dataclass(frozen=True)
class Problem:
    """One way a request misses the spec: where (``body``, ``query``, ``header``, ``path`` or ``""`` for the
    request), the path inside it (property names and array indexes), a message and the failed keyword."""

    where: str
    path: Location
    message: str
    keyword: str = ""

    @property
    def param(self) -> str:
        """The path in bracket notation (``lines[0][amount]``), or ``where`` for the whole part."""
        if not self.path:
            return self.where
        head, *rest = (str(p) for p in self.path)
        return head + "".join(f"[{p}]" for p in rest)

    def under(self, *prefix: str | int) -> Problem:
        """The same problem inside a larger document (``prefix`` leads to this one's root)."""
        return replace(self, path=(*prefix, *self.path))

    def __str__(self) -> str:
        if self.where == "body":
            return f"{'/' + '/'.join(str(p) for p in self.path) if self.path else '<body>'}: {self.message}"
        if self.where:
            return f"{self.where} {self.param}: {self.message}" if self.path else f"{self.where}: {self.message}"
        return self.message


class SpecValidationError(ValueError):
    """A request does not conform to the spec; the message lists the first problems, ``problems`` all of
    them, ``param`` names the first one's parameter (bracket notation)."""

    def __init__(self, message: str, problems: Sequence[Problem] = ()) -> None:
        super().__init__(message)
        self.problems = tuple(problems)
        self.param = self.problems[0].param if self.problems else None


# --------------------------------------------------------------------------- loading
def load_document(spec_path: str | Path, preprocess: Callable[[str], str] | None = None) -> dict[str, Any]:
    """The parsed document, cached per path and process (shared: do not modify it).

    ``preprocess`` repairs the text before parsing (in memory only). YAML is also cached on disk as JSON,
    keyed by the text's SHA-256, so a later process skips the seconds a large file takes to parse.
    """
    return _load(str(Path(spec_path).resolve()), preprocess)


@functools.lru_cache(maxsize=16)
def _load(path: str, preprocess: Callable[[str], str] | None) -> dict[str, Any]:
    text = Path(path).read_text(encoding="utf-8")
    if preprocess is not None:
        text = preprocess(text)
    document = json.loads(text) if path.endswith(".json") else _parse_yaml(text)
    if not isinstance(document, dict) or not isinstance(document.get("paths"), dict):
        raise ValueError(f"{path}: not an OpenAPI document")
    return document


def _parse_yaml(text: str) -> Any:
    digest = hashlib.sha256(text.encode("utf-8")).hexdigest()[:24]
    cache = Path(tempfile.gettempdir()) / f"broker-openapi-{digest}-v{_CACHE_VERSION}.json"
    try:
        return json.loads(cache.read_text(encoding="utf-8"))
    except (OSError, ValueError):
        pass
    loader = getattr(yaml, "CSafeLoader", yaml.SafeLoader)
    # JSON types only (YAML dates and integer keys become strings), so a cached copy reads the same
    document = json.loads(json.dumps(yaml.load(text, Loader=loader), default=str))
    try:  # atomic; failing to cache is not an error
        fd, tmp = tempfile.mkstemp(dir=cache.parent, prefix=cache.name, suffix=".tmp")
        with os.fdopen(fd, "w", encoding="utf-8") as fh:
            json.dump(document, fh)
        os.replace(tmp, cache)
    except OSError:
        pass
    return document


def load_openapi(
    spec_path: str | Path,
    *,
    preprocess: Callable[[str], str] | None = None,
    patch: Callable[[dict[str, Any]], None] | None = None,
) -> OpenAPI:
    """The :class:`OpenAPI` of ``spec_path``, cached per path, ``preprocess`` and ``patch`` (which modifies a
    copy of the document: documented deviations from a community file, never from an official one)."""
    return _openapi(str(Path(spec_path).resolve()), preprocess, patch)


@functools.lru_cache(maxsize=16)
def _openapi(
    path: str, preprocess: Callable[[str], str] | None, patch: Callable[[dict[str, Any]], None] | None
) -> OpenAPI:
    document = load_document(path, preprocess)
    if patch is not None:
        document = copy.deepcopy(document)
        patch(document)
    return OpenAPI(path, document)


# --------------------------------------------------------------------------- schemas
def _any_number(instance: object) -> bool:
    return not isinstance(instance, bool)  # the type keyword checks the rest; Decimal is fine for money


def _integer(_checker: Any, instance: object) -> bool:
    if isinstance(instance, Decimal):
        return instance.is_finite() and instance == instance.to_integral_value()
    return bool(OAS30WriteValidator.TYPE_CHECKER.is_type(instance, "integer"))


_FORMATS = FormatChecker()
_FORMATS.checkers = dict(oas30_format_checker.checkers)
_FORMATS.checks("double")(_any_number)
_FORMATS.checks("float")(_any_number)
_VALIDATORS = {
    mode: extend(cls, type_checker=cls.TYPE_CHECKER.redefine("integer", _integer))
    for mode, cls in (("write", OAS30WriteValidator), ("read", OAS30ReadValidator))
}


def _problems(error: Any, where: str, prefix: Location = ()) -> Iterator[Problem]:
    """:class:`Problem` s of a jsonschema error (one per unknown property, the missing name in the path)."""
    path = (*prefix, *error.absolute_path)
    instance, value = error.instance, error.validator_value
    if error.validator == "additionalProperties" and value is False and isinstance(instance, dict):
        known, patterns = error.schema.get("properties") or {}, error.schema.get("patternProperties") or {}
        for key in instance:
            if key not in known and not any(re.search(p, key) for p in patterns):
                yield Problem(where, (*path, key), "property not defined by the spec", "additionalProperties")
        return
    if error.validator == "required" and isinstance(instance, dict):
        missing = next((n for n in value if error.message.startswith(repr(n))), None)
        if missing is not None:
            yield Problem(where, (*path, missing), "missing (required)", "required")
            return
    message = error.message if len(error.message) <= 200 else error.message[:197] + "..."
    yield Problem(where, path, message, str(error.validator))


def _error_order(error: Any) -> list[str]:
    return [str(p) for p in error.absolute_path]


@dataclass(frozen=True, eq=False)
class Operation:
    """One operation of the spec: its id (``operationId``, else ``METHOD template``), parameters (path-level
    ones included, ``$ref`` resolved), request body and security requirements."""

    id: str
    method: str
    template: str
    parameters: tuple[dict[str, Any], ...]
    body: dict[str, Any] | None
    security: tuple[dict[str, Any], ...]
    names: tuple[str, ...]  # of the path parameters, in order

    @property
    def media(self) -> dict[str, Any]:
        """Request body schema by (lower-case) media type."""
        content = (self.body or {}).get("content") or {}
        return {k.lower(): (v or {}).get("schema") or {} for k, v in content.items()}


class OpenAPI:
    """A parsed (and patched) document: its operations, ``$ref`` resolution, compiled schema validators."""

    def __init__(self, path: str, document: dict[str, Any]) -> None:
        self.path = path
        self.document = document
        self.components: dict[str, Any] = document.get("components") or {}
        self.operations = [
            op for template, item in document["paths"].items() for op in self._operations(template, item)
        ]
        self.bases = sorted({urlsplit(str(s.get("url", ""))).path.rstrip("/") for s in document.get("servers") or [{}]})
        self._routes: dict[bool, list[tuple[re.Pattern[str], Operation]]] = {}
        self._validators: dict[tuple[int, str], tuple[Any, Any]] = {}
        self._refs: dict[str, dict[str, str]] = {}

    def _operations(self, template: str, item: dict[str, Any]) -> Iterator[Operation]:
        shared = [self.resolve(p) for p in item.get("parameters") or []]
        for method in _METHODS:
            op = item.get(method)
            if not isinstance(op, dict):
                continue
            own = [self.resolve(p) for p in op.get("parameters") or []]
            keys = {(p.get("in"), p.get("name")) for p in own}
            body = self.resolve(op["requestBody"]) if "requestBody" in op else None
            security = op.get("security", self.document.get("security") or [])
            yield Operation(
                str(op.get("operationId") or f"{method.upper()} {template}"),
                method.upper(),
                template,
                tuple([p for p in shared if (p.get("in"), p.get("name")) not in keys] + own),
                body,
                tuple(security),
                tuple(re.findall(r"\{([^/{}]+)\}", template)),
            )

    def resolve(self, node: Any) -> Any:
        """``node`` with its ``$ref`` (a pointer into this document) followed."""
        for _ in range(50):
            if not (isinstance(node, dict) and isinstance(node.get("$ref"), str)):
                return node
            ref = node["$ref"]
            if not ref.startswith("#/"):
                raise ValueError(f"{self.path}: $ref {ref!r} outside the document is not supported")
            node = self.document
            for part in ref[2:].split("/"):
                node = node[part.replace("~1", "/").replace("~0", "~")]
        raise ValueError(f"{self.path}: $ref chain too long")

    def schema_ref(self, name: str) -> dict[str, str]:
        """``{"$ref": "#/components/schemas/<name>"}`` (one object per name: validators are cached on it)."""
        if name not in self._refs:
            if name not in (self.components.get("schemas") or {}):
                raise ValueError(f"{self.path}: components/schemas/{name} not found")
            self._refs[name] = {"$ref": f"#/components/schemas/{name}"}
        return self._refs[name]

    def routes(self, ignore_case: bool) -> list[tuple[re.Pattern[str], Operation]]:
        """(regex of server base + template, operation), literal templates before templated ones."""
        if ignore_case not in self._routes:
            bases = "|".join(re.escape(b) for b in self.bases)
            table = []
            for op in sorted(self.operations, key=lambda o: (o.template.count("{"), -len(o.template))):
                segments = re.sub(r"\\\{[^/]+?\\\}", "([^/]+)", re.escape(op.template.rstrip("/")))
                table.append((re.compile(f"^(?:{bases}){segments}$", re.IGNORECASE if ignore_case else 0), op))
            self._routes[ignore_case] = table
        return self._routes[ignore_case]

    def validator(self, schema: Any, mode: str = "write") -> Any:
        """An OpenAPI 3.0 validator of ``schema`` (``$ref`` resolved in the document), cached per schema object."""
        key = (id(schema), mode)
        cached = self._validators.get(key)
        if cached is None or cached[0] is not schema:
            root = {**schema, "components": self.components} if isinstance(schema, dict) else schema
            cached = self._validators[key] = (schema, _VALIDATORS[mode](root, format_checker=_FORMATS))
        return cached[1]

    def coerce(self, value: Any, schema: Any) -> Any:
        """Strings (of a query or a form) converted to the types ``schema`` declares: ``integer``, ``number``
        (Decimal), ``boolean`` (``true``/``false``), arrays from index-keyed objects; for ``anyOf``/``oneOf``
        the first alternative the converted value is valid under."""
        schema = self.resolve(schema)
        if not isinstance(schema, dict):
            return value
        for combinator in ("anyOf", "oneOf"):
            if combinator in schema:
                for alternative in schema[combinator]:
                    candidate = self.coerce(value, alternative)
                    if self.validator(alternative).is_valid(candidate):
                        return candidate
                return value
        kind = schema.get("type")
        types = [kind] if isinstance(kind, str) else list(kind or [])
        if isinstance(value, str):
            return _scalar(value, types)
        if isinstance(value, dict):
            if "array" not in types or not all(str(k).isdigit() for k in value):
                props, extra = schema.get("properties") or {}, schema.get("additionalProperties")
                return {k: self.coerce(v, props.get(k, extra)) for k, v in value.items()}
            value = [value[k] for k in sorted(value, key=int)]
        if isinstance(value, list):
            return [self.coerce(v, schema.get("items") or {}) for v in value]
        return value

    def _shape(self, schema: Any) -> dict[str, Any]:
        """``properties`` (with those of the ``allOf`` branches), ``additionalProperties`` and ``items``."""
        schema = self.resolve(schema)
        if not isinstance(schema, dict):
            return {"properties": {}}
        shape = {k: schema[k] for k in ("additionalProperties", "items") if k in schema}
        shape["properties"] = dict(schema.get("properties") or {})
        for branch in schema.get("allOf") or []:
            sub = self._shape(branch)
            for name, prop in sub["properties"].items():
                shape["properties"].setdefault(name, prop)
            for key in ("additionalProperties", "items"):
                if key in sub:
                    shape.setdefault(key, sub[key])
        return shape

    def unknown_properties(self, schema: Any, instance: Any, path: Location = ()) -> Iterator[Problem]:
        """Property names in ``instance`` that ``schema`` does not define (where it lists ``properties`` and
        says nothing of ``additionalProperties``)."""
        shape = self._shape(schema)
        if isinstance(instance, dict):
            props, extra = shape["properties"], shape.get("additionalProperties")
            for key, value in instance.items():
                if key in props:
                    yield from self.unknown_properties(props[key], value, (*path, key))
                elif isinstance(extra, dict):
                    yield from self.unknown_properties(extra, value, (*path, key))
                elif props and "additionalProperties" not in shape:
                    yield Problem("body", (*path, key), "property not defined by the spec", "additionalProperties")
        elif isinstance(instance, list) and "items" in shape:
            for index, value in enumerate(instance):
                yield from self.unknown_properties(shape["items"], value, (*path, index))


def _scalar(value: str, types: list[str]) -> Any:
    if "integer" in types and re.fullmatch(r"-?\d+", value):
        return int(value)
    if "number" in types:
        try:
            number = Decimal(value)
        except InvalidOperation:
            pass
        else:
            if number.is_finite():
                return number
    if "boolean" in types and value in ("true", "false"):
        return value == "true"
    return value


# --------------------------------------------------------------------------- requests
@dataclass(frozen=True, eq=False)
class SpecRequest:
    """What a check sees: the request (method upper-case, path without a trailing slash, the decoded query,
    lower-case header names), its operation (``None`` unless it is one of those validated) and the validator."""

    method: str
    path: str
    query: Mapping[str, Any]
    headers: Mapping[str, str]
    body: bytes
    operation: Operation | None
    validator: SpecRequestValidator


def header_max_length(name: str, limit: int) -> Check:
    """A check: header ``name``, when sent to a validated operation, has at most ``limit`` characters."""

    def check(request: SpecRequest) -> Iterator[Problem]:
        value = request.headers.get(name.lower())
        if request.operation is not None and value is not None and len(value) > limit:
            yield Problem("header", (name,), f"{len(value)} characters, {limit} max", "maxLength")

    return check


def _form(body: bytes) -> dict[str, str]:
    return dict(parse_qsl(body.decode("utf-8"), keep_blank_values=True))


class SpecRequestValidator:
    """``validator(method, path, query, headers, body)`` raises :class:`SpecValidationError` when the request
    does not match ``spec`` (the emulators' ``request_validator``); see the module docstring for the options.

    ``default_media_type`` is assumed for a body sent without ``Content-Type``; ``title`` names the spec in
    messages; ``shown`` problems are listed in the message (all are in ``SpecValidationError.problems``).
    """

    def __init__(
        self,
        spec: OpenAPI,
        *,
        operations: Collection[str] | None = None,
        scope: str | None = None,
        ignore_case: bool = False,
        strict_properties: bool = False,
        strict_query: bool = False,
        check_security: bool = False,
        decoders: Mapping[str, Decoder] | None = None,
        decode_query: QueryDecoder | None = None,
        default_media_type: str | None = None,
        checks: Sequence[Check] = (),
        describe: Callable[[Problem], str] = str,
        title: str | None = None,
        shown: int = 5,
    ) -> None:
        known = {op.id for op in spec.operations}
        if operations is not None and set(operations) - known:
            raise ValueError(f"{spec.path}: no operation {sorted(set(operations) - known)} in the spec")
        self.spec = spec
        self.operations = known if operations is None else frozenset(operations)
        self.scope, self.ignore_case = scope, ignore_case
        self.strict_properties, self.strict_query, self.check_security = strict_properties, strict_query, check_security
        self.decoders: dict[str, Decoder] = {JSON: loads_decimal, FORM: _form, **(decoders or {})}
        self.decode_query, self.default_media_type = decode_query, default_media_type
        self.checks, self.describe, self.shown = tuple(checks), describe, shown
        self.title = title or f"the {spec.document.get('info', {}).get('title', 'OpenAPI')} spec"

    def __call__(
        self, method: str, path: str, query: Mapping[str, Any], headers: Mapping[str, Any], body: bytes
    ) -> None:
        request, problems = self.check(method, path, query, headers, body)
        if problems:
            shown = "; ".join(self.describe(p) for p in problems[: self.shown])
            more = f" (+{len(problems) - self.shown} more)" if len(problems) > self.shown else ""
            op = f" ({request.operation.id})" if request.operation is not None else ""
            raise SpecValidationError(
                f"{request.method} {path}{op} does not match {self.title}: {shown}{more}", problems
            )

    def match(self, method: str, path: str) -> tuple[Operation, dict[str, str]] | None:
        """The operation of ``method path`` (server base path included) and its path parameters, or ``None``."""
        for pattern, op in self.spec.routes(self.ignore_case):
            m = pattern.match(path) if op.method == method.upper() else None
            if m is not None:
                return op, dict(zip(op.names, m.groups(), strict=True))
        return None

    def check(
        self, method: str, path: str, query: Mapping[str, Any], headers: Mapping[str, Any], body: bytes
    ) -> tuple[SpecRequest, list[Problem]]:
        """The request as the checks see it and every problem found (empty list: it conforms)."""
        method, path = method.upper(), path.rstrip("/") or "/"
        lower = {str(k).lower(): str(v) for k, v in (headers or {}).items()}
        problems: list[Problem] = []
        try:
            decoded = self.decode_query(query or {}, lower) if self.decode_query else dict(query or {})
        except ValueError as exc:
            problems.append(Problem("query", (), str(exc)))
            decoded = {}
        found = self.match(method, path)
        op = found[0] if found is not None else None
        validated = op if op is not None and op.id in self.operations else None
        request = SpecRequest(method, path, decoded, lower, body or b"", validated, self)
        for check in self.checks:
            problems.extend(p if isinstance(p, Problem) else Problem("", (), p) for p in check(request))
        if found is None or validated is None:  # (found is None: for the type checker)
            scope = self.scope
            if scope is not None and (path.lower() if self.ignore_case else path).startswith(scope):
                what = "no such operation in the spec" if op is None else f"{op.id} is not a validated operation"
                problems.append(Problem("", (), f"{method} {path}: {what}"))
            return request, problems
        op, values = found
        if self.check_security:  # the Authorization header of OAuth2/OIDC/HTTP schemes
            problems.extend(self._security(op, lower))
        problems.extend(self._parameters(op, values, decoded, lower))
        problems.extend(self._body(op, lower, request.body))
        return request, problems

    def _security(self, op: Operation, headers: Mapping[str, str]) -> list[Problem]:
        schemes = self.spec.components.get("securitySchemes") or {}
        first: list[Problem] = []
        for requirement in op.security:  # alternatives: one satisfied is enough
            missing = [p for name in requirement if (p := _credentials(name, schemes.get(name) or {}, headers))]
            if not missing:
                return []
            first = first or missing
        return first

    def _parameters(
        self, op: Operation, values: dict[str, str], query: Mapping[str, Any], headers: Mapping[str, str]
    ) -> Iterator[Problem]:
        sources: dict[str, Mapping[str, Any]] = {"path": values, "query": query, "header": headers}
        for param in op.parameters:
            where, name = str(param.get("in")), str(param.get("name"))
            key = name.lower() if where == "header" else name
            if where not in sources or (where == "header" and key in _IGNORED_HEADERS):
                continue
            if key not in sources[where]:
                if param.get("required"):
                    yield Problem(where, (name,), "missing (required)", "required")
                continue
            schema = param.get("schema") or {}
            value = self.spec.coerce(sources[where][key], schema)
            for error in sorted(self.spec.validator(schema).iter_errors(value), key=_error_order):
                yield from _problems(error, where, (name,))
        if self.strict_query:
            declared = {p.get("name") for p in op.parameters if p.get("in") == "query"}
            for name in query:
                if name not in declared:
                    yield Problem("query", (name,), f"not a parameter of {op.id}", "additionalProperties")

    def _body(self, op: Operation, headers: Mapping[str, str], body: bytes) -> Iterator[Problem]:
        if op.body is None:
            if body:
                yield Problem("", (), f"{op.id} takes no request body")
            return
        content = op.media
        sent = headers.get("content-type", "")
        media = sent.split(";")[0].strip().lower() or self.default_media_type
        if not body:
            if FORM in content and media in (None, FORM):  # no form body is the empty form
                yield from self.document_problems(content[FORM], {}, FORM)
            elif op.body.get("required"):
                yield Problem("", (), f"{op.id} requires a request body ({' or '.join(content)})")
            return
        if media is None or media not in content:
            yield Problem(
                "header", ("Content-Type",), f"{sent!r}, the spec's request media type is {' or '.join(content)}"
            )
            return
        decoder = self.decoders.get(media)
        if decoder is None:  # a media type no one asked to validate
            return
        try:
            document = decoder(body)
        except (ValueError, UnicodeDecodeError) as exc:
            yield Problem("body", (), f"not {'JSON' if 'json' in media else 'valid ' + media} ({exc})")
            return
        yield from self.document_problems(content[media], document, media)

    def document_problems(
        self, schema: Any, document: Any, media: str = JSON, *, mode: str = "write", strict: bool | None = None
    ) -> list[Problem]:
        """Problems of a decoded body against ``schema`` (strings of non-JSON media coerced first)."""
        if "json" not in media:
            document = self.spec.coerce(document, schema)
        errors = sorted(self.spec.validator(schema, mode).iter_errors(document), key=_error_order)
        problems = [p for e in errors for p in _problems(e, "body")]
        if self.strict_properties if strict is None else strict:
            problems.extend(self.spec.unknown_properties(schema, document))
        return problems

    def schema_problems(
        self, name: str, document: Any, *, mode: str = "write", strict: bool | None = None
    ) -> list[Problem]:
        """Problems of a parsed document against ``components/schemas/<name>`` (``mode="read"`` for responses)."""
        return self.document_problems(self.spec.schema_ref(name), document, mode=mode, strict=strict)

    def body_problems(self, method: str, path: str, document: Any, media: str = JSON) -> list[Problem]:
        """Problems of a decoded body of ``method path`` (a path or the spec's template) for ``media``."""
        found = self.match(method, path)
        if found is None or media not in found[0].media:
            raise ValueError(f"{method} {path}: no operation with a {media} body in {self.spec.path}")
        return self.document_problems(found[0].media[media], document, media)


def _credentials(name: str, scheme: dict[str, Any], headers: Mapping[str, str]) -> Problem | None:
    """The problem of a request without the ``Authorization`` of security scheme ``name`` (OAuth2, OpenID
    Connect, HTTP bearer or basic), or ``None`` (also for the schemes not checked)."""
    kind, http = scheme.get("type"), str(scheme.get("scheme", "")).lower()
    if kind in ("oauth2", "openIdConnect") or (kind == "http" and http == "bearer"):
        prefix = "Bearer"
    elif kind == "http" and http == "basic":
        prefix = "Basic"
    else:
        return None
    if headers.get("authorization", "").startswith(prefix + " "):
        return None
    return Problem("header", ("Authorization",), f"{prefix} credentials required (security scheme {name})", "security")


__all__ = [
    "FORM",
    "JSON",
    "Check",
    "OpenAPI",
    "Operation",
    "Problem",
    "SpecRequest",
    "SpecRequestValidator",
    "SpecValidationError",
    "header_max_length",
    "load_document",
    "load_openapi",
]
