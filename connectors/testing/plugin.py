"""pytest plugin of the connector conformance kit (entry point ``pytest11: broker_connectors``).

* registers the ``conformance`` marker, put on every generated scenario test (select them with
  ``-m conformance``, one connector's with ``-k XeroConnector``);
* ``--conformance-scenario NAME`` (repeatable) keeps only those scenarios;
* gives every test its own OAuth2 token directory (``BROKER_TOKEN_DIR`` in a temporary folder)
  so tests never read or write real tokens, unless ``BROKER_TOKEN_DIR`` was set before pytest started.

Skipped scenarios show with their reasons in the ``-ra`` summary.

Import-light on purpose: pytest loads it in every run of every project that has the broker installed.
"""

from __future__ import annotations

import os

import pytest

_PRESET_TOKEN_DIR = "BROKER_TOKEN_DIR" in os.environ


def pytest_addoption(parser: pytest.Parser) -> None:
    group = parser.getgroup("broker-connectors", "billing-system connector conformance kit")
    group.addoption(
        "--conformance-scenario",
        action="append",
        default=[],
        metavar="NAME",
        help="run only these conformance scenarios (repeatable), e.g. --conformance-scenario batch",
    )


def pytest_configure(config: pytest.Config) -> None:
    config.addinivalue_line("markers", "conformance: a scenario of the connector conformance kit (connectors.testing)")


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    wanted = set(config.getoption("--conformance-scenario") or [])
    if wanted:
        from connectors.testing.suite import SCENARIOS

        unknown = wanted - set(SCENARIOS)
        if unknown:
            raise pytest.UsageError(
                f"--conformance-scenario: unknown {', '.join(sorted(unknown))}; known: {', '.join(SCENARIOS)}"
            )
    keep: list[pytest.Item] = []
    drop: list[pytest.Item] = []
    for item in items:
        name = getattr(getattr(item, "function", None), "_conformance_scenario", None)
        if name is None:
            keep.append(item)
            continue
        item.add_marker(pytest.mark.conformance)
        (keep if not wanted or name in wanted else drop).append(item)
    if drop:
        config.hook.pytest_deselected(items=drop)
        items[:] = keep


@pytest.fixture(autouse=True)
def _broker_isolated_token_store(monkeypatch: pytest.MonkeyPatch, tmp_path_factory: pytest.TempPathFactory) -> None:
    """Every test gets an empty OAuth2 token store directory (see connectors.sdk.oauth2.default_token_store)."""
    if not _PRESET_TOKEN_DIR:
        monkeypatch.setenv("BROKER_TOKEN_DIR", str(tmp_path_factory.mktemp("broker-tokens")))
