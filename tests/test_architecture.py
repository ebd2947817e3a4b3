"""The dependency direction of the code, read statically from every import statement.

* no import cycles among the modules of ``broker/`` and ``connectors/`` (typing-only and lazy
  imports included);
* the connector SDK (``connectors/sdk``) imports no broker module and no connector;
* a connector package imports only the SDK and itself (its harness ``testing.py`` may add the
  conformance kit and its emulator; its emulator and its spec validation ``spec.py`` the sandbox kit);
* the sandbox kit imports only the standard library and the SDK's money module (its spec validation
  ``connectors.sandbox.spec`` also the ``sandbox`` extra's schema libraries and PyYAML);
* the broker reaches connectors only through the registry and the SDK, except the demo and sandbox
  commands, which start emulators and harnesses lazily, and the platform emulator
  (``broker.platforms.emulator``), which is built on the sandbox kit and which no module imports at
  its top level;
* mappers, the pricing core, the economic report's figures and the platform adapters are pure: no HTTP,
  sockets, threads or event loop (an adapter reaches a platform's API through the client it is given).
"""

from __future__ import annotations

import ast
from collections.abc import Iterator
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
SDK_OR_REGISTRY = ("connectors.sdk", "connectors.registry")
SYSTEMS = ("xero", "quickbooks", "zoho", "freshbooks", "moloni", "invoicexpress", "stripe", "paypal")


def _modules() -> dict[str, Path]:
    found: dict[str, Path] = {}
    for base in ("broker", "connectors"):
        for path in sorted((ROOT / base).rglob("*.py")):
            parts = list(path.relative_to(ROOT).with_suffix("").parts)
            if parts[-1] == "__init__":
                parts.pop()
            found[".".join(parts)] = path
    return found


MODULES = _modules()


def _imported(name: str, path: Path) -> Iterator[tuple[str, bool]]:
    """(imported module, at module level?) for every import statement of ``path`` (relative ones resolved)."""
    package = name if path.name == "__init__.py" else name.rpartition(".")[0]

    def walk(node: ast.AST, top: bool) -> Iterator[tuple[str, bool]]:
        for child in ast.iter_child_nodes(node):
            inner = top and not isinstance(child, ast.FunctionDef | ast.AsyncFunctionDef)
            if isinstance(child, ast.Import):
                yield from ((alias.name, top) for alias in child.names)
            elif isinstance(child, ast.ImportFrom):
                if child.level:
                    base = package.split(".")[: len(package.split(".")) - child.level + 1]
                    module = ".".join([*base, *([child.module] if child.module else [])])
                else:
                    module = child.module or ""
                subs = [f"{module}.{alias.name}" for alias in child.names if f"{module}.{alias.name}" in MODULES]
                yield from ((sub, top) for sub in subs)
                if len(subs) < len(child.names):
                    yield module, top
            yield from walk(child, inner)

    yield from walk(ast.parse(path.read_text(encoding="utf-8")), True)


def _own(module: str) -> str | None:
    """The module of ours that ``module`` names (itself, or its nearest parent package of ours)."""
    while module and module not in MODULES:
        module = module.rpartition(".")[0]
    return module or None


def _imports(name: str, *, lazy: bool = True) -> set[str]:
    """Everything ``name`` imports (third-party modules by full name, ours resolved to our module)."""
    out = set()
    for module, top in _imported(name, MODULES[name]):
        if top or lazy:
            out.add(_own(module) or module)
    out.discard(name)
    return out


def test_no_import_cycles():
    graph = {name: {m for m in _imports(name) if m in MODULES} for name in MODULES}
    cycles: list[list[str]] = []
    state: dict[str, int] = {}

    def visit(node: str, trail: list[str]) -> None:
        state[node] = 1
        for nxt in sorted(graph[node]):
            if state.get(nxt) == 1:
                cycles.append([*trail[trail.index(nxt) :], nxt])
            elif nxt not in state:
                visit(nxt, [*trail, nxt])
        state[node] = 2

    for name in sorted(graph):
        if name not in state:
            visit(name, [name])
    assert cycles == []


def _ours(imports: set[str]) -> set[str]:
    return {m for m in imports if m.split(".")[0] in ("broker", "connectors")}


def test_the_sdk_depends_on_no_broker_module_and_no_connector():
    for name in MODULES:
        if name.startswith("connectors.sdk"):
            outside = {m for m in _ours(_imports(name)) if not m.startswith("connectors.sdk")}
            assert outside == set(), name


@pytest.mark.parametrize("system", SYSTEMS)
def test_a_connector_imports_only_the_sdk_and_itself(system):
    package = f"connectors.{system}"
    allowed = {
        "testing": ("connectors.sdk", package, "connectors.testing"),
        "emulator": ("connectors.sdk", package, "connectors.sandbox"),
        "spec": ("connectors.sdk", package, "connectors.sandbox"),
    }
    names = [n for n in MODULES if n == package or n.startswith(package + ".")]
    assert {n.rpartition(".")[2] for n in names} >= {system, "settings", "mapper", "connector", "emulator", "testing"}
    for name in names:
        prefixes = allowed.get(name.rpartition(".")[2], ("connectors.sdk", package))
        outside = {m for m in _ours(_imports(name)) if not m.startswith(prefixes)}
        assert outside == set(), name
    production = [f"{package}.{part}" for part in ("settings", "mapper", "connector")] + [package]
    for name in production:
        assert not {m for m in _imports(name) if m.endswith((".emulator", ".testing")) or "sandbox" in m}, name


#: what the kit's spec validation needs beyond the standard library (the ``sandbox`` extra, and PyYAML)
SPEC_LIBRARIES = {"connectors.sandbox.spec": {"yaml", "jsonschema", "openapi_schema_validator"}}


def test_the_sandbox_kit_needs_only_the_standard_library_and_money():
    import sys

    for name in MODULES:
        if name.startswith("connectors.sandbox"):
            ours = {m for m in _ours(_imports(name)) if not m.startswith("connectors.sandbox")}
            assert ours <= {"connectors.sdk.money"}, name
            third_party = {
                m.split(".")[0] for m in _imports(name) if m.split(".")[0] not in ("broker", "connectors", "__future__")
            }
            assert third_party <= set(sys.stdlib_module_names) | SPEC_LIBRARIES.get(name, set()), name


def test_the_broker_reaches_connectors_through_the_registry_and_the_sdk():
    sandbox_commands = {"broker.demo", "broker.demo_webhooks", "broker.sandboxes"}  # start emulators and harnesses
    platform_emulator = "broker.platforms.emulator"  # the platforms' APIs, on the sandbox kit
    for name in MODULES:
        if not name.startswith("broker") or name in sandbox_commands:
            continue
        if name.startswith(platform_emulator):
            outside = {m for m in _imports(name) if m.startswith("connectors")}
            assert outside <= {"connectors.sandbox"}, name
            continue
        assert not any(m.startswith(platform_emulator) for m in _imports(name, lazy=False)), name
        at_top = _imports(name, lazy=False)
        assert {m for m in at_top if m.startswith("connectors") and not m.startswith(SDK_OR_REGISTRY)} == set(), name
        assert at_top & sandbox_commands == set(), name  # the CLI imports them inside the command only
        anywhere = {m for m in _imports(name) if m.startswith("connectors") and not m.startswith(SDK_OR_REGISTRY)}
        if name != "broker.cli":  # `broker xero-emulator` starts the emulator, lazily
            assert anywhere == set(), name


@pytest.mark.parametrize(
    "name",
    [f"connectors.{s}.mapper" for s in SYSTEMS]
    + [n for n in MODULES if n.startswith("broker.pricing")]
    + ["broker.economics"]  # the economic report's figures (its Kafka reader is broker.economics_source)
    + [  # the platform adapters map and verify; their API client and emulator do the I/O
        n
        for n in MODULES
        if n.startswith("broker.platforms.")
        and not n.startswith("broker.platforms.emulator")
        and n != "broker.platforms.client"
    ],
)
def test_mappers_and_the_pricing_core_do_no_io(name):
    io = {"httpx", "socket", "asyncio", "threading", "urllib.request", "http.client", "subprocess", "faust", "kafka"}
    assert {m for m in _imports(name) if m.split(".")[0] in io or m in io} == set()
