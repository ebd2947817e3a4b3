"""Static checks of the container deployment: Dockerfile, .dockerignore, docker-compose.yml, deploy/.

No Docker engine is needed: the files are parsed and cross-checked against each other and against
the code that reads them (``broker.settings.Settings.from_env``, ``broker.config.load_config``,
``pyproject.toml``).

Every check is a function returning a list of problems (empty = fine). ``test_*`` functions assert
the real files have none; :func:`test_each_check_can_fail` feeds each check a deliberately broken
copy of the real data and asserts it reports a problem, so no check passes vacuously.
"""

from __future__ import annotations

import copy
import fnmatch
import json
import re
import shlex
import tomllib
from collections.abc import Callable
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import pytest
import yaml

import broker.settings as settings_module
from broker.config import load_config
from broker.settings import Settings

ROOT = Path(__file__).resolve().parents[1]
COMPOSE_FILE = ROOT / "docker-compose.yml"
DOCKERFILE = ROOT / "Dockerfile"
DOCKERIGNORE = ROOT / ".dockerignore"
PROMETHEUS_FILE = ROOT / "deploy" / "prometheus.yml"
COMPOSE_CONFIG = ROOT / "deploy" / "config.compose.yaml"
PYPROJECT = ROOT / "pyproject.toml"

BROKER = "broker"
KAFKA = "kafka"
EMULATOR = "xero-emulator"
PROMETHEUS = "prometheus"


# =========================================================================== parsing helpers
_INTERPOLATION = re.compile(r"\$(?:\$|\{(?P<braced>[^}]*)\}|(?P<bare>[A-Za-z_][A-Za-z0-9_]*))")


def interpolate(value: Any, environ: dict[str, str] | None = None) -> str:
    """Compose variable interpolation (``${VAR}``, ``${VAR:-default}``, ``${VAR-default}``, ``$$``).

    With an empty ``environ`` this yields what ``docker compose`` uses when nothing is exported.
    ``${VAR:?err}`` / ``${VAR?err}`` with the variable missing raises ``ValueError``.
    """
    env = environ or {}
    text = "" if value is None else str(value)

    def sub(m: re.Match) -> str:
        if m.group(0) == "$$":
            return "$"
        if m.group("bare"):
            return env.get(m.group("bare"), "")
        expr = m.group("braced")
        op = re.match(r"^([A-Za-z_][A-Za-z0-9_]*)(?:(:?[-?+])(.*))?$", expr, re.S)
        if not op:
            raise ValueError(f"bad interpolation ${{{expr}}}")
        name, kind, arg = op.group(1), op.group(2), op.group(3) or ""
        current = env.get(name)
        unset_or_empty = current in (None, "")
        if kind is None:
            return current or ""
        if kind == ":-":
            return arg if unset_or_empty else current
        if kind == "-":
            return arg if current is None else current
        if kind in (":?", "?"):
            if (kind == ":?" and unset_or_empty) or current is None:
                raise ValueError(f"required variable {name} is missing: {arg}")
            return current
        if kind == ":+":
            return "" if unset_or_empty else arg
        return "" if current is None else arg  # "+"

    return _INTERPOLATION.sub(sub, text)


def service(compose: dict, name: str) -> dict:
    return (compose.get("services") or {}).get(name) or {}


def service_env(svc: dict) -> dict[str, str | None]:
    """The service's ``environment`` (mapping or ``KEY=VALUE`` list form), values as raw strings."""
    env = svc.get("environment") or {}
    if isinstance(env, list):
        out: dict[str, str | None] = {}
        for item in env:
            key, sep, val = str(item).partition("=")
            out[key] = val if sep else None
        return out
    return {str(k): (None if v is None else str(v)) for k, v in env.items()}


def resolved_env(svc: dict) -> dict[str, str]:
    return {k: interpolate(v) for k, v in service_env(svc).items() if v is not None}


def service_command(svc: dict) -> list[str]:
    cmd = svc.get("command")
    if cmd is None:
        return []
    return shlex.split(cmd) if isinstance(cmd, str) else [str(c) for c in cmd]


def option(args: list[str], name: str) -> str | None:
    """Value of ``--name VALUE`` or ``--name=VALUE`` in an argument list."""
    for i, arg in enumerate(args):
        if arg == name and i + 1 < len(args):
            return args[i + 1]
        if arg.startswith(name + "="):
            return arg.split("=", 1)[1]
    return None


@dataclass(frozen=True)
class Port:
    published: int | None
    target: int


def service_ports(svc: dict) -> list[Port]:
    """``ports`` in short (``[ip:][host:]container[/proto]``) or long (``target/published``) syntax."""
    out = []
    for entry in svc.get("ports") or []:
        if isinstance(entry, dict):
            published = entry.get("published")
            out.append(Port(int(interpolate(published)) if published not in (None, "") else None, int(entry["target"])))
            continue
        text = interpolate(entry).split("/", 1)[0]
        parts = text.rsplit(":", 2)
        target = int(parts[-1])
        published = int(parts[-2]) if len(parts) >= 2 and parts[-2] else None
        out.append(Port(published, target))
    return out


@dataclass(frozen=True)
class Mount:
    type: str  # "bind" or "volume"
    source: str | None
    target: str
    read_only: bool


def service_mounts(svc: dict) -> list[Mount]:
    """``volumes`` in short (``src:dst[:mode]``) or long syntax."""
    out = []
    for entry in svc.get("volumes") or []:
        if isinstance(entry, dict):
            source = entry.get("source")
            kind = entry.get("type") or ("bind" if source and _is_path(str(source)) else "volume")
            out.append(Mount(kind, source, entry["target"], bool(entry.get("read_only"))))
            continue
        parts = interpolate(entry).split(":")
        if len(parts) == 1:
            out.append(Mount("volume", None, parts[0], False))
            continue
        source, target = parts[0], parts[1]
        modes = parts[2].split(",") if len(parts) > 2 else []
        out.append(Mount("bind" if _is_path(source) else "volume", source, target, "ro" in modes))
    return out


def _is_path(source: str) -> bool:
    return source.startswith((".", "/", "~"))


def build_spec(svc: dict) -> tuple[str, str] | None:
    """``(context, dockerfile)`` of a service's ``build`` (string or mapping form), or None."""
    build = svc.get("build")
    if build is None:
        return None
    if isinstance(build, str):
        return build, "Dockerfile"
    return str(build.get("context", ".")), str(build.get("dockerfile", "Dockerfile"))


@dataclass(frozen=True)
class Instruction:
    keyword: str
    args: str


def parse_dockerfile(text: str) -> list[Instruction]:
    """Instructions of a Dockerfile: comments dropped, ``\\`` continuations joined."""
    out: list[Instruction] = []
    pending = ""
    for raw in text.splitlines():
        stripped = raw.strip()
        if not pending and (not stripped or stripped.startswith("#")):
            continue
        if pending and stripped.startswith("#"):
            continue  # comment lines inside a continued instruction are ignored by Docker
        if stripped.endswith("\\"):
            pending += stripped[:-1].rstrip() + " "
            continue
        line = pending + stripped
        pending = ""
        keyword, _, args = line.partition(" ")
        out.append(Instruction(keyword.upper(), args.strip()))
    if pending.strip():
        keyword, _, args = pending.strip().partition(" ")
        out.append(Instruction(keyword.upper(), args.strip()))
    return out


def exec_form(args: str) -> list[str] | None:
    """The JSON array of an exec-form instruction, None for shell form."""
    try:
        value = json.loads(args)
    except json.JSONDecodeError:
        return None
    return value if isinstance(value, list) and all(isinstance(v, str) for v in value) else None


def split_flags(args: str) -> tuple[dict[str, str], list[str]]:
    """``--flag=value`` options and the remaining words of COPY/ADD/HEALTHCHECK arguments."""
    words = exec_form(args)
    if words is not None:
        return {}, words
    flags: dict[str, str] = {}
    rest = shlex.split(args)
    while rest and rest[0].startswith("--"):
        key, _, val = rest.pop(0)[2:].partition("=")
        flags[key] = val
    return flags, rest


def final_stage(instructions: list[Instruction]) -> list[Instruction]:
    """Instructions of the last build stage (what the image runs)."""
    starts = [i for i, ins in enumerate(instructions) if ins.keyword == "FROM"]
    return instructions[starts[-1] :] if starts else instructions


def dockerignore_excludes(patterns: list[str], path: str) -> bool:
    """Whether ``path`` (relative to the build context) or one of its parents is excluded."""
    parts = Path(path.strip("/")).parts
    candidates = ["/".join(parts[: i + 1]) for i in range(len(parts))]
    excluded = False
    for candidate in candidates:
        for pattern in patterns:
            negate = pattern.startswith("!")
            pat = pattern[1:] if negate else pattern
            pat = pat.strip().strip("/")
            if pat.startswith("./"):
                pat = pat[2:]
            if not pat:
                continue
            matches = fnmatch.fnmatchcase(candidate, pat) or (
                pat.startswith("**/") and fnmatch.fnmatchcase(candidate.split("/")[-1], pat[3:])
            )
            if matches:
                excluded = not negate
        if excluded:
            return True
    return excluded


def read_dockerignore(text: str) -> list[str]:
    return [line.strip() for line in text.splitlines() if line.strip() and not line.strip().startswith("#")]


def secret_env_names(node: Any) -> set[str]:
    """Values of every ``*_env`` key anywhere in a config mapping (names of secret variables)."""
    found: set[str] = set()
    if isinstance(node, dict):
        for key, value in node.items():
            if str(key).endswith("_env") and isinstance(value, str):
                found.add(value)
            else:
                found |= secret_env_names(value)
    elif isinstance(node, list):
        for item in node:
            found |= secret_env_names(item)
    return found


def documented_env_vars() -> set[str]:
    """Variable names in the table of ``broker/settings.py``'s module docstring."""
    return set(re.findall(r"``([A-Z][A-Z0-9_]+)``", settings_module.__doc__ or ""))


def settings_reads(name: str) -> bool:
    """Whether ``Settings.from_env`` reads ``name``: setting it alone changes the result."""
    probe = "54321"  # valid for the integer variables and unlike every default
    return Settings.from_env({name: probe}) != Settings.from_env({})


# =========================================================================== the inputs
@dataclass
class Inputs:
    """Everything the checks look at, parsed. Mutable copies feed the "can fail" test."""

    compose: dict
    dockerfile: list[Instruction]
    dockerignore: list[str]
    prometheus: dict
    pyproject: dict
    configs: dict[str, dict] = field(default_factory=dict)  # host path (relative) -> raw YAML
    root: Path = ROOT

    def config_for_broker(self) -> tuple[str | None, dict | None]:
        """The host file mounted where the broker service reads its config, and its parsed content."""
        mount = broker_config_mount(self.compose)
        if mount is None or mount.source is None:
            return None, None
        rel = _relative(mount.source)
        if rel not in self.configs:
            path = self.root / rel
            self.configs[rel] = yaml.safe_load(path.read_text(encoding="utf-8")) if path.is_file() else None
        return rel, self.configs[rel]


def _relative(source: str) -> str:
    path = Path(source)
    if path.is_absolute():
        try:
            return path.resolve().relative_to(ROOT).as_posix()
        except ValueError:
            return source
    return Path(source).as_posix().removeprefix("./")


def broker_config_path(compose: dict) -> str | None:
    """Where the broker service reads its config: ``--config`` in its command, else ``BROKER_CONFIG``."""
    svc = service(compose, BROKER)
    return option(service_command(svc), "--config") or resolved_env(svc).get("BROKER_CONFIG")


def broker_config_mount(compose: dict) -> Mount | None:
    target = broker_config_path(compose)
    for mount in service_mounts(service(compose, BROKER)):
        if mount.target == target:
            return mount
    return None


def load_inputs() -> Inputs:
    return Inputs(
        compose=yaml.safe_load(COMPOSE_FILE.read_text(encoding="utf-8")),
        dockerfile=parse_dockerfile(DOCKERFILE.read_text(encoding="utf-8")),
        dockerignore=read_dockerignore(DOCKERIGNORE.read_text(encoding="utf-8")),
        prometheus=yaml.safe_load(PROMETHEUS_FILE.read_text(encoding="utf-8")),
        pyproject=tomllib.loads(PYPROJECT.read_text(encoding="utf-8")),
    )


@pytest.fixture(scope="module")
def inputs() -> Inputs:
    return load_inputs()


# =========================================================================== checks
Check = Callable[[Inputs], list[str]]


def check_services(inp: Inputs) -> list[str]:
    """The compose file declares the four services of the stack."""
    services = inp.compose.get("services") if isinstance(inp.compose, dict) else None
    if not isinstance(services, dict):
        return ["docker-compose.yml has no `services` mapping"]
    return [f"service {name!r} missing" for name in (KAFKA, EMULATOR, BROKER, PROMETHEUS) if name not in services]


def check_builds(inp: Inputs) -> list[str]:
    """Every ``build`` context is a directory holding its Dockerfile; broker and emulator are built."""
    problems = []
    for name, svc in (inp.compose.get("services") or {}).items():
        spec = build_spec(svc)
        if spec is None:
            if name in (BROKER, EMULATOR):
                problems.append(f"{name}: must be built from this repository (no `build`)")
            continue
        context, dockerfile = spec
        ctx = (inp.root / context).resolve()
        if not ctx.is_dir():
            problems.append(f"{name}: build context {context!r} is not a directory")
        elif not (ctx / dockerfile).is_file():
            problems.append(f"{name}: Dockerfile {dockerfile!r} not found in context {context!r}")
    return problems


def check_mounts(inp: Inputs) -> list[str]:
    """Host files mounted into containers exist in the repo; named volumes are declared."""
    problems = []
    declared = set((inp.compose.get("volumes") or {}).keys())
    for name, svc in (inp.compose.get("services") or {}).items():
        for mount in service_mounts(svc):
            if mount.type == "bind":
                path = Path(mount.source).expanduser()
                host = path if path.is_absolute() else inp.root / path
                if not host.exists():
                    problems.append(f"{name}: mounted host path {mount.source!r} does not exist")
                elif not host.resolve().is_relative_to(inp.root):
                    problems.append(f"{name}: mounted host path {mount.source!r} is outside the repository")
            elif mount.source and mount.source not in declared:
                problems.append(f"{name}: named volume {mount.source!r} not declared under top-level `volumes`")
    kafka_targets = {m.target for m in service_mounts(service(inp.compose, KAFKA))}
    log_dirs = resolved_env(service(inp.compose, KAFKA)).get("KAFKA_LOG_DIRS")
    if not kafka_targets:
        problems.append("kafka: no volume for its data")
    elif log_dirs and not any(d in kafka_targets for d in log_dirs.split(",")):
        problems.append(f"kafka: KAFKA_LOG_DIRS={log_dirs} is not on a volume ({sorted(kafka_targets)})")
    return problems


def check_config_mount(inp: Inputs) -> list[str]:
    """The broker reads deploy/config.compose.yaml, mounted read-only where BROKER_CONFIG / --config point."""
    svc = service(inp.compose, BROKER)
    env_path = resolved_env(svc).get("BROKER_CONFIG")
    cli_path = option(service_command(svc), "--config")
    if cli_path is None:  # no command in compose: the image's CMD applies
        cmd = next((exec_form(i.args) for i in reversed(final_stage(inp.dockerfile)) if i.keyword == "CMD"), None)
        cli_path = option(cmd or [], "--config")
    problems = []
    if not env_path:
        problems.append("broker: BROKER_CONFIG not set")
    if cli_path and env_path and cli_path != env_path:
        problems.append(f"broker: --config {cli_path} differs from BROKER_CONFIG={env_path}")
    mount = broker_config_mount(inp.compose)
    if mount is None:
        problems.append(f"broker: nothing is mounted at the config path {broker_config_path(inp.compose)!r}")
        return problems
    if mount.type != "bind" or _relative(mount.source or "") != "deploy/config.compose.yaml":
        problems.append(f"broker: config mount source is {mount.source!r}, expected ./deploy/config.compose.yaml")
    if not mount.read_only:
        problems.append("broker: config file must be mounted read-only (:ro)")
    return problems


def check_broker_env_known(inp: Inputs) -> list[str]:
    """Each KAFKA_*/BROKER_* variable of the broker service is documented and read by Settings.from_env."""
    env = resolved_env(service(inp.compose, BROKER))
    documented = documented_env_vars()
    problems = []
    ours = [k for k in env if k.startswith(("KAFKA_", "BROKER_"))]
    if not ours:
        problems.append("broker: sets no KAFKA_/BROKER_ variables")
    for name in ours:
        if name not in documented:
            problems.append(f"broker: {name} is not in broker/settings.py's table ({sorted(documented)})")
        if not settings_reads(name):
            problems.append(f"broker: Settings.from_env ignores {name}")
    try:
        settings = Settings.from_env(env)
    except ValueError as exc:
        return [*problems, f"broker: {exc}"]
    if settings.metrics_host not in ("0.0.0.0", "::"):
        problems.append(f"broker: BROKER_METRICS_HOST={settings.metrics_host} is not reachable from other containers")
    if not settings.bootstrap_servers:
        problems.append("broker: KAFKA_BOOTSTRAP_SERVERS unset (the CLI would start an embedded broker)")
    return problems


def check_bootstrap(inp: Inputs) -> list[str]:
    """KAFKA_BOOTSTRAP_SERVERS points at the kafka service's advertised PLAINTEXT listener."""
    bootstrap = resolved_env(service(inp.compose, BROKER)).get("KAFKA_BOOTSTRAP_SERVERS", "")
    advertised = resolved_env(service(inp.compose, KAFKA)).get("KAFKA_ADVERTISED_LISTENERS", "")
    addresses = {re.sub(r"^[A-Z_]+://", "", a.strip()) for a in advertised.split(",") if a.strip()}
    problems = []
    servers = [s.strip() for s in bootstrap.split(",") if s.strip()]
    if not servers:
        problems.append("broker: KAFKA_BOOTSTRAP_SERVERS is empty")
    for server in servers:
        host = server.rsplit(":", 1)[0]
        if host != KAFKA:
            problems.append(f"broker: bootstrap server {server} is not the compose service {KAFKA!r}")
        if server not in addresses:
            problems.append(f"broker: bootstrap server {server} is not an advertised listener ({sorted(addresses)})")
    return problems


def check_metrics_port(inp: Inputs) -> list[str]:
    """BROKER_METRICS_PORT = published container port = Dockerfile EXPOSE = Prometheus target port."""
    env = resolved_env(service(inp.compose, BROKER))
    port = Settings.from_env(env).metrics_port
    problems = []
    if port == 0:
        return ["broker: BROKER_METRICS_PORT=0 disables /metrics"]
    targets = {p.target for p in service_ports(service(inp.compose, BROKER))}
    if port not in targets:
        problems.append(f"broker: metrics port {port} is not published (container ports {sorted(targets)})")
    exposed = set()
    for ins in final_stage(inp.dockerfile):
        if ins.keyword == "EXPOSE":
            exposed |= {int(p.split("/")[0]) for p in ins.args.split()}
    if port not in exposed:
        problems.append(f"Dockerfile: EXPOSE {sorted(exposed)} does not include metrics port {port}")
    scrape_targets: list[str] = []
    for job in inp.prometheus.get("scrape_configs") or []:
        if job.get("metrics_path", "/metrics") != "/metrics":
            continue
        for static in job.get("static_configs") or []:
            scrape_targets += [str(t) for t in static.get("targets") or []]
        for dns in job.get("dns_sd_configs") or []:  # every replica of a scaled compose service
            if dns.get("type", "SRV") == "A":
                scrape_targets += [f"{name}:{dns.get('port')}" for name in dns.get("names") or []]
    if f"{BROKER}:{port}" not in scrape_targets:
        problems.append(f"deploy/prometheus.yml: no /metrics target {BROKER}:{port} (targets {scrape_targets})")
    return problems


def healthcheck_command(args: str) -> list[str] | None:
    """The command of ``HEALTHCHECK [--opts] CMD ...`` as a word list (exec or shell form); None for NONE."""
    m = re.match(r"^((?:--\S+\s+)*)(CMD|NONE)\b\s*(.*)$", args.strip(), re.S)
    if not m or m.group(2) == "NONE":
        return None
    rest = m.group(3)
    words = exec_form(rest)
    return words if words is not None else ["/bin/sh", "-c", rest]


def python_code(command: list[str]) -> str | None:
    """The ``-c`` program of a ``python -c CODE`` command, else None."""
    if len(command) >= 3 and Path(command[0]).name.startswith("python") and command[1] == "-c":
        return command[2]
    return None


def check_healthcheck(inp: Inputs) -> list[str]:
    """The image's HEALTHCHECK probes /readyz on BROKER_METRICS_PORT with python (slim has no curl)."""
    checks = [i for i in final_stage(inp.dockerfile) if i.keyword == "HEALTHCHECK"]
    if not checks:
        return ["Dockerfile: no HEALTHCHECK"]
    command = healthcheck_command(checks[-1].args)
    if command is None:
        return [f"Dockerfile: HEALTHCHECK runs no command ({checks[-1].args!r})"]
    problems = []
    code = python_code(command)
    if code is None:
        problems.append(f"Dockerfile: HEALTHCHECK must be exec-form `python -c ...` (no curl in slim), got {command}")
        return problems
    try:
        compile(code, "<HEALTHCHECK>", "exec")
    except SyntaxError as exc:
        problems.append(f"Dockerfile: HEALTHCHECK python code does not compile: {exc}")
    if "/readyz" not in code or "BROKER_METRICS_PORT" not in code:
        problems.append("Dockerfile: HEALTHCHECK must probe /readyz on BROKER_METRICS_PORT")
    if "127.0.0.1" not in code and "localhost" not in code:
        problems.append("Dockerfile: HEALTHCHECK must probe the container itself (127.0.0.1)")
    for name, svc in (inp.compose.get("services") or {}).items():
        test = (svc.get("healthcheck") or {}).get("test")
        if isinstance(test, list) and test[:1] == ["CMD"] and python_code(test[1:]) is not None:
            try:
                compile(python_code(test[1:]), f"<{name} healthcheck>", "exec")
            except SyntaxError as exc:
                problems.append(f"{name}: healthcheck python code does not compile: {exc}")
    return problems


def check_secrets_provided(inp: Inputs) -> list[str]:
    """Every secret variable named by the mounted config (``*_env`` keys) is set on the broker service."""
    rel, raw = inp.config_for_broker()
    if raw is None:
        return [f"broker: mounted config {rel!r} not readable"]
    names = secret_env_names(raw)
    env = resolved_env(service(inp.compose, BROKER))
    problems = []
    if not names:
        problems.append(f"{rel}: names no secret variables (expected *_env keys)")
    for name in sorted(names):
        if name not in env:
            problems.append(f"broker: secret variable {name} (named by {rel}) is not set")
        elif not env[name]:
            problems.append(f"broker: secret variable {name} resolves to an empty value without a shell override")
    return problems


def check_kraft(inp: Inputs) -> list[str]:
    """Kafka is a single KRaft node (broker+controller), no ZooKeeper anywhere."""
    problems = []
    for name, svc in (inp.compose.get("services") or {}).items():
        if "zookeeper" in name.lower() or "zookeeper" in str(svc.get("image", "")).lower():
            problems.append(f"service {name!r} is ZooKeeper")
        problems.extend(f"{name}: sets {key}" for key in service_env(svc) if "ZOOKEEPER" in key.upper())
    svc = service(inp.compose, KAFKA)
    env = resolved_env(svc)
    image = str(svc.get("image", ""))
    if not re.fullmatch(r"apache/kafka:(3\.9\.\d+|4\.\d+\.\d+)", image):
        problems.append(f"kafka: image {image!r} is not apache/kafka 3.9.x / 4.x")
    roles = {r.strip() for r in env.get("KAFKA_PROCESS_ROLES", "").split(",")}
    if roles != {"broker", "controller"}:
        problems.append(f"kafka: KAFKA_PROCESS_ROLES={env.get('KAFKA_PROCESS_ROLES')} (want broker,controller)")
    node_id = env.get("KAFKA_NODE_ID")
    if not node_id:
        problems.append("kafka: KAFKA_NODE_ID not set")
    listeners = {
        m.group(1): int(m.group(2)) for m in re.finditer(r"([A-Z_]+)://[^:,]*:(\d+)", env.get("KAFKA_LISTENERS", ""))
    }
    controller_names = [n.strip() for n in env.get("KAFKA_CONTROLLER_LISTENER_NAMES", "").split(",") if n.strip()]
    if not controller_names:
        problems.append("kafka: KAFKA_CONTROLLER_LISTENER_NAMES not set")
    problems.extend(
        f"kafka: controller listener {listener} not in KAFKA_LISTENERS"
        for listener in controller_names
        if listener not in listeners
    )
    if listeners.get("PLAINTEXT") != 9092:
        problems.append(f"kafka: KAFKA_LISTENERS has no PLAINTEXT://:9092 ({env.get('KAFKA_LISTENERS')})")
    protocol_map = dict(
        item.split(":", 1) for item in env.get("KAFKA_LISTENER_SECURITY_PROTOCOL_MAP", "").split(",") if ":" in item
    )
    problems.extend(
        f"kafka: listener {listener} missing from KAFKA_LISTENER_SECURITY_PROTOCOL_MAP"
        for listener in listeners
        if listener not in protocol_map
    )
    voters = env.get("KAFKA_CONTROLLER_QUORUM_VOTERS", "")
    controller_port = listeners.get(controller_names[0]) if controller_names else None
    if voters != f"{node_id}@{KAFKA}:{controller_port}":
        problems.append(f"kafka: KAFKA_CONTROLLER_QUORUM_VOTERS={voters!r}, want {node_id}@{KAFKA}:{controller_port}")
    problems.extend(
        f"kafka: {key}={env.get(key)} (a single node needs 1)"
        for key in ("KAFKA_OFFSETS_TOPIC_REPLICATION_FACTOR", "KAFKA_TRANSACTION_STATE_LOG_REPLICATION_FACTOR")
        if env.get(key) != "1"
    )
    if not re.fullmatch(r"[A-Za-z0-9_-]{22}", env.get("CLUSTER_ID", "")):
        problems.append(f"kafka: CLUSTER_ID={env.get('CLUSTER_ID')!r} is not a 22-character base64 UUID")
    health = " ".join(str(t) for t in (svc.get("healthcheck") or {}).get("test") or [])
    if "/opt/kafka/bin/kafka-broker-api-versions.sh" not in health or "9092" not in health:
        problems.append(f"kafka: healthcheck must run kafka-broker-api-versions.sh against :9092 (got {health!r})")
    depends = service(inp.compose, BROKER).get("depends_on") or {}
    condition = depends.get(KAFKA, {}).get("condition") if isinstance(depends, dict) else None
    if condition != "service_healthy":
        problems.append(f"broker: depends_on kafka must wait for service_healthy (got {condition!r})")
    return problems


def check_emulator(inp: Inputs) -> list[str]:
    """Xero URLs of the mounted config point at the emulator service, on the port it listens on and publishes."""
    svc = service(inp.compose, EMULATOR)
    cmd = service_command(svc)
    problems = []
    if cmd[:2] != ["sandbox", "xero"]:
        problems.append(f"{EMULATOR}: command {cmd} is not `sandbox xero ...`")
    if option(cmd, "--host") != "0.0.0.0":
        problems.append(f"{EMULATOR}: --host {option(cmd, '--host')} is not reachable from other containers")
    port_arg = option(cmd, "--port")
    port = int(port_arg) if port_arg and port_arg.isdigit() else 8765  # the CLI's default
    if port not in {p.target for p in service_ports(svc)}:
        problems.append(f"{EMULATOR}: listening port {port} is not published")
    depends = service(inp.compose, BROKER).get("depends_on") or {}
    if EMULATOR not in depends:
        problems.append(f"broker: does not depend on {EMULATOR}")
    rel, raw = inp.config_for_broker()
    xero_tenants = {
        tid: t["billing"].get("settings") or {}
        for tid, t in ((raw or {}).get("tenants") or {}).items()
        if (t.get("billing") or {}).get("system") == "xero"
    }
    if not xero_tenants:
        problems.append(f"{rel}: no tenant bills to xero")
    for tid, s in xero_tenants.items():
        for key in ("api_url", "identity_url"):
            url = urlsplit(str(s.get(key, "")))
            if url.hostname != EMULATOR or url.port != port or url.scheme != "http":
                problems.append(
                    f"{rel}: tenants.{tid}.billing.settings.{key}={s.get(key)!r}, want http://{EMULATOR}:{port}/..."
                )
        if s.get("client_id") != "demo-client":
            problems.append(
                f"{rel}: tenants.{tid}.billing.settings.client_id={s.get('client_id')!r}, the emulator's is demo-client"
            )
    return problems


def check_entrypoint(inp: Inputs) -> list[str]:
    """ENTRYPOINT is the `broker` console script of pyproject.toml; CMD runs the worker."""
    stage = final_stage(inp.dockerfile)
    scripts = (inp.pyproject.get("project") or {}).get("scripts") or {}
    problems = []
    entry = next((exec_form(i.args) for i in reversed(stage) if i.keyword == "ENTRYPOINT"), None)
    if entry is None:
        problems.append("Dockerfile: no exec-form ENTRYPOINT")
    elif entry != ["broker"] or "broker" not in scripts:
        problems.append(f"Dockerfile: ENTRYPOINT {entry} is not the console script `broker` ({sorted(scripts)})")
    cmd = next((exec_form(i.args) for i in reversed(stage) if i.keyword == "CMD"), None)
    if not cmd or cmd[0] != "run" or option(cmd, "--config") != "/etc/broker/config.yaml":
        problems.append(f"Dockerfile: CMD {cmd} is not [run, --config, /etc/broker/config.yaml]")
    return problems


def check_dockerfile_image(inp: Inputs) -> list[str]:
    """python:3.11-slim base, non-root final user."""
    problems = []
    froms = [shlex.split(i.args)[0] for i in inp.dockerfile if i.keyword == "FROM"]
    if not froms or any(not f.startswith("python:3.11-slim") for f in froms):
        problems.append(f"Dockerfile: base images {froms} are not python:3.11-slim")
    users = [i.args.split(":")[0] for i in final_stage(inp.dockerfile) if i.keyword == "USER"]
    if not users or users[-1] in ("root", "0"):
        problems.append(f"Dockerfile: the image runs as {users[-1] if users else 'root'}; needs a non-root USER")
    return problems


def check_dockerfile_copies(inp: Inputs) -> list[str]:
    """COPY sources exist, are not excluded by .dockerignore, and cover what `pip install .` needs."""
    problems = []
    copied: set[str] = set()
    for ins in inp.dockerfile:
        if ins.keyword not in ("COPY", "ADD"):
            continue
        flags, words = split_flags(ins.args)
        if "from" in flags:
            continue  # copies between stages, not from the build context
        if len(words) < 2:
            problems.append(f"Dockerfile: {ins.keyword} {ins.args!r} has no destination")
            continue
        for source in words[:-1]:
            rel = source.strip().removeprefix("./").rstrip("/") or "."
            copied.add(rel)
            if not (inp.root / rel).exists():
                problems.append(f"Dockerfile: {ins.keyword} source {source!r} does not exist")
            elif dockerignore_excludes(inp.dockerignore, rel):
                problems.append(f"Dockerfile: {ins.keyword} source {source!r} is excluded by .dockerignore")
    project = inp.pyproject.get("project") or {}
    readme = project.get("readme")
    readme = readme.get("file") if isinstance(readme, dict) else readme
    needed = {"pyproject.toml", "broker", "connectors", "schemas"} | ({readme} if readme else set())
    problems.extend(
        f"Dockerfile: does not COPY {path} (needed by the build or at runtime)" for path in sorted(needed - copied)
    )
    project_install = r"pip install[^&;]*\s[\"']?\.(\[[a-z,]+\])?[\"']?(\s|$)"  # `.` or ".[extras]"
    if not any(i.keyword == "RUN" and re.search(project_install, i.args) for i in inp.dockerfile):
        problems.append("Dockerfile: no `pip install .` of the project")
    return problems


CHECKS: dict[str, Check] = {
    "services": check_services,
    "builds": check_builds,
    "mounts": check_mounts,
    "config_mount": check_config_mount,
    "broker_env_known": check_broker_env_known,
    "bootstrap": check_bootstrap,
    "metrics_port": check_metrics_port,
    "healthcheck": check_healthcheck,
    "secrets_provided": check_secrets_provided,
    "kraft": check_kraft,
    "emulator": check_emulator,
    "entrypoint": check_entrypoint,
    "dockerfile_image": check_dockerfile_image,
    "dockerfile_copies": check_dockerfile_copies,
}


# =========================================================================== tests on the real files
def test_compose_parses_with_safe_load():
    data = yaml.safe_load(COMPOSE_FILE.read_text(encoding="utf-8"))
    assert isinstance(data, dict) and isinstance(data.get("services"), dict)
    assert set(data["services"]) == {KAFKA, EMULATOR, BROKER, PROMETHEUS, "grafana"}


@pytest.mark.parametrize("name", list(CHECKS))
def test_check(inputs: Inputs, name: str):
    assert CHECKS[name](copy.deepcopy(inputs)) == []


EXAMPLE_CONFIG = ROOT / "broker" / "examples" / "config.yaml"
EXAMPLE_EVENTS = ROOT / "broker" / "examples" / "events.ndjson"
URL_KEYS = ("api_url", "identity_url")


def test_compose_config_validates():
    config = load_config(COMPOSE_CONFIG)
    tenant = config.tenant("acme-fm")
    assert tenant.billing.system == "xero"
    assert len(tenant.clients) >= 2
    assert tenant.rate_card.default_skill in tenant.rate_card.skills
    s = tenant.billing.settings
    assert s["xero_tenant_id"] == "00000000-0000-0000-0000-000000000001"
    assert s["client_id"] == "demo-client"
    assert s["client_secret_env"] == "XERO_CLIENT_SECRET"
    assert s["refresh_token_env"] == "XERO_REFRESH_TOKEN"


def _without_urls(raw: dict) -> dict:
    raw = copy.deepcopy(raw)
    for tenant in raw["tenants"].values():
        for key in URL_KEYS:
            tenant["billing"]["settings"].pop(key, None)
    return raw


def _xero_tenants(raw: dict) -> dict:
    """The config with only its tenants billed in Xero (compose runs only the Xero emulator)."""
    raw = copy.deepcopy(raw)
    raw["tenants"] = {tid: t for tid, t in raw["tenants"].items() if t["billing"]["system"] == "xero"}
    return raw


def test_compose_config_is_the_example_with_emulator_urls():
    """deploy/config.compose.yaml = the Xero tenants of broker/examples/config.yaml except the Xero URLs (kept in sync)."""
    if not EXAMPLE_CONFIG.is_file():
        pytest.skip("broker/examples/config.yaml not written yet")
    example = yaml.safe_load(EXAMPLE_CONFIG.read_text(encoding="utf-8"))
    compose = yaml.safe_load(COMPOSE_CONFIG.read_text(encoding="utf-8"))
    assert {t["billing"]["system"] for t in compose["tenants"].values()} == {"xero"}
    assert len(_xero_tenants(example)["tenants"]) >= 2
    assert _without_urls(compose) == _without_urls(_xero_tenants(example))
    for tid, tenant in compose["tenants"].items():
        for key in URL_KEYS:
            url = urlsplit(tenant["billing"]["settings"][key])
            example_url = urlsplit(example["tenants"][tid]["billing"]["settings"][key])
            assert (url.scheme, url.hostname, url.port) == ("http", EMULATOR, 8765), (tid, key)
            assert url.path == example_url.path, (tid, key)  # only the host changes


def test_demo_events_resolve_in_compose_config():
    """Every tenant / client / technician the Xero tenants' demo events name is configured for compose."""
    if not EXAMPLE_EVENTS.is_file():
        pytest.skip("broker/examples/events.ndjson not written yet")
    config = load_config(COMPOSE_CONFIG)
    example = yaml.safe_load(EXAMPLE_CONFIG.read_text(encoding="utf-8"))
    other_systems = set(example["tenants"]) - set(_xero_tenants(example)["tenants"])  # not run by compose
    missing = set()
    lines = [line for line in EXAMPLE_EVENTS.read_text(encoding="utf-8").splitlines() if line.strip()]
    events = [e for e in map(json.loads, lines) if e["tenant"] not in other_systems]
    assert events
    for event in events:
        tenant = config.tenants.get(event["tenant"])
        if tenant is None:
            missing.add(f"tenant {event['tenant']}")
            continue
        data = event.get("data") or {}
        if data.get("client_id") and data["client_id"] not in tenant.clients:
            missing.add(f"{event['tenant']}: client {data['client_id']}")
        for entry in data.get("time_entries") or []:
            if entry.get("technician_id") and entry["technician_id"] not in tenant.rate_card.technicians:
                missing.add(f"{event['tenant']}: technician {entry['technician_id']}")
    assert not missing, sorted(missing)


def test_compose_config_matches_connector_settings():
    """When the Xero connector exists, its Settings model accepts the compose tenant's settings."""
    xero = pytest.importorskip("connectors.xero")
    connector = getattr(xero, "XeroConnector", None)
    model = getattr(connector, "Settings", None)
    if model is None:
        pytest.skip("connectors.xero.XeroConnector.Settings not defined yet")
    settings = load_config(COMPOSE_CONFIG).tenant("acme-fm").billing.settings
    model.model_validate(settings)


def test_compose_secret_defaults_are_demo_credentials(inputs: Inputs):
    env = resolved_env(service(inputs.compose, BROKER))
    assert env["XERO_CLIENT_SECRET"] == "demo-secret"
    assert env["XERO_REFRESH_TOKEN"] == "demo-refresh-token"
    # ...and a value exported in the shell wins over the default.
    raw = service_env(service(inputs.compose, BROKER))
    assert interpolate(raw["XERO_CLIENT_SECRET"], {"XERO_CLIENT_SECRET": "real"}) == "real"


def test_broker_compose_settings(inputs: Inputs):
    settings = Settings.from_env(resolved_env(service(inputs.compose, BROKER)))
    assert settings.bootstrap_servers == "kafka:9092"
    assert settings.config_path == "/etc/broker/config.yaml"
    assert settings.metrics_host == "0.0.0.0"
    assert settings.metrics_port == 9108


def test_prometheus_service_mounts_scrape_config(inputs: Inputs):
    mounts = service_mounts(service(inputs.compose, PROMETHEUS))
    assert any(
        m.type == "bind"
        and _relative(m.source) == "deploy/prometheus.yml"
        and m.target == "/etc/prometheus/prometheus.yml"
        for m in mounts
    ), mounts
    assert 9090 in {p.target for p in service_ports(service(inputs.compose, PROMETHEUS))}


# =========================================================================== helpers behave
def test_interpolate():
    assert interpolate("${A:-x}") == "x"
    assert interpolate("${A:-x}", {"A": ""}) == "x"
    assert interpolate("${A-x}", {"A": ""}) == ""
    assert interpolate("${A}-$B", {"A": "1", "B": "2"}) == "1-2"
    assert interpolate("$$A") == "$A"
    with pytest.raises(ValueError):
        interpolate("${A:?set A}")


def test_parsers():
    assert service_ports({"ports": ["127.0.0.1:1:2", "3:4/udp", "5", {"target": 6, "published": "7"}]}) == [
        Port(1, 2),
        Port(3, 4),
        Port(None, 5),
        Port(7, 6),
    ]
    assert service_mounts(
        {"volumes": ["./a:/b:ro", "v:/c", "/d", {"type": "bind", "source": "./e", "target": "/f"}]}
    ) == [
        Mount("bind", "./a", "/b", True),
        Mount("volume", "v", "/c", False),
        Mount("volume", None, "/d", False),
        Mount("bind", "./e", "/f", False),
    ]
    assert service_env({"environment": ["A=1", "B"]}) == {"A": "1", "B": None}
    ins = parse_dockerfile('FROM x\n# c\nRUN a \\\n  # inner\n  && b\nCMD ["y"]\n')
    assert [i.keyword for i in ins] == ["FROM", "RUN", "CMD"] and ins[1].args == "a && b"
    assert dockerignore_excludes(["tests", "**/__pycache__"], "tests/x.py")
    assert dockerignore_excludes(["**/__pycache__"], "broker/__pycache__")
    assert not dockerignore_excludes(["*.md", "!README.md"], "README.md")
    assert dockerignore_excludes(["*.md"], "README.md")
    assert not dockerignore_excludes(["tests"], "broker")
    assert secret_env_names({"a": {"x_env": "A", "b": [{"y_env": "B"}]}, "z": "C"}) == {"A", "B"}
    assert settings_reads("BROKER_METRICS_PORT") and not settings_reads("BROKER_NOPE")


# =========================================================================== each check can fail
def _svc(inp: Inputs, name: str) -> dict:
    return inp.compose["services"][name]


def _set_env(name: str, key: str, value: str | None) -> Callable[[Inputs], None]:
    def mutate(inp: Inputs) -> None:
        env = _svc(inp, name).setdefault("environment", {})
        if value is None:
            env.pop(key, None)
        else:
            env[key] = value

    return mutate


def _replace_instruction(keyword: str, args: str | None) -> Callable[[Inputs], None]:
    """Replace (or with None drop) every instruction ``keyword`` of the Dockerfile."""

    def mutate(inp: Inputs) -> None:
        out = []
        for ins in inp.dockerfile:
            if ins.keyword == keyword:
                if args is not None:
                    out.append(replace(ins, args=args))
            else:
                out.append(ins)
        inp.dockerfile = out

    return mutate


def _set_config(path: tuple[str, ...], value: Any) -> Callable[[Inputs], None]:
    def mutate(inp: Inputs) -> None:
        _, raw = inp.config_for_broker()
        node = raw
        for key in path[:-1]:
            node = node[key]
        if value is None:
            node.pop(path[-1])
        else:
            node[path[-1]] = value

    return mutate


def _pop(name: str, key: str) -> Callable[[Inputs], None]:
    return lambda inp: _svc(inp, name).pop(key)


def _set(name: str, key: str, value: Any) -> Callable[[Inputs], None]:
    return lambda inp: _svc(inp, name).__setitem__(key, value)


XERO = ("tenants", "acme-fm", "billing", "settings")

MUTATIONS: list[tuple[str, str, Callable[[Inputs], None]]] = [
    ("services", "no prometheus", lambda inp: inp.compose["services"].pop(PROMETHEUS)),
    ("builds", "missing context", _set(BROKER, "build", "./no-such-dir")),
    ("builds", "missing dockerfile", _set(EMULATOR, "build", {"context": ".", "dockerfile": "Nope.Dockerfile"})),
    ("builds", "broker not built", _pop(BROKER, "build")),
    (
        "mounts",
        "missing host file",
        _set(PROMETHEUS, "volumes", ["./deploy/nope.yml:/etc/prometheus/prometheus.yml:ro"]),
    ),
    ("mounts", "undeclared volume", lambda inp: inp.compose["volumes"].pop("kafka-data")),
    ("mounts", "kafka without volume", _pop(KAFKA, "volumes")),
    (
        "config_mount",
        "not read-only",
        _set(BROKER, "volumes", ["./deploy/config.compose.yaml:/etc/broker/config.yaml"]),
    ),
    ("config_mount", "mounted elsewhere", _set(BROKER, "volumes", ["./deploy/config.compose.yaml:/config.yaml:ro"])),
    ("config_mount", "BROKER_CONFIG disagrees", _set_env(BROKER, "BROKER_CONFIG", "/other.yaml")),
    (
        "config_mount",
        "other source file",
        _set(BROKER, "volumes", ["./deploy/prometheus.yml:/etc/broker/config.yaml:ro"]),
    ),
    ("broker_env_known", "unknown variable", _set_env(BROKER, "BROKER_METRICS_ADDR", "0.0.0.0")),
    ("broker_env_known", "typo KAFKA_ variable", _set_env(BROKER, "KAFKA_BOOTSTRAP_SERVER", "kafka:9092")),
    ("broker_env_known", "metrics on loopback", _set_env(BROKER, "BROKER_METRICS_HOST", "127.0.0.1")),
    ("broker_env_known", "port not an integer", _set_env(BROKER, "BROKER_METRICS_PORT", "nine")),
    ("bootstrap", "wrong host", _set_env(BROKER, "KAFKA_BOOTSTRAP_SERVERS", "localhost:9092")),
    ("bootstrap", "controller port", _set_env(BROKER, "KAFKA_BOOTSTRAP_SERVERS", "kafka:9093")),
    ("metrics_port", "env port differs", _set_env(BROKER, "BROKER_METRICS_PORT", "9200")),
    ("metrics_port", "not published", _set(BROKER, "ports", ["9109:9109"])),
    ("metrics_port", "not exposed", _replace_instruction("EXPOSE", "8000")),
    (
        "metrics_port",
        "prometheus target",
        lambda inp: inp.prometheus["scrape_configs"][0]["dns_sd_configs"][0].__setitem__("port", 9000),
    ),
    (
        "metrics_port",
        "prometheus host",
        lambda inp: inp.prometheus["scrape_configs"][0]["dns_sd_configs"][0].__setitem__("names", ["localhost"]),
    ),
    ("metrics_port", "disabled", _set_env(BROKER, "BROKER_METRICS_PORT", "0")),
    ("healthcheck", "none", _replace_instruction("HEALTHCHECK", None)),
    ("healthcheck", "curl", _replace_instruction("HEALTHCHECK", "CMD curl -f http://127.0.0.1:9108/metrics")),
    ("healthcheck", "not metrics", _replace_instruction("HEALTHCHECK", 'CMD ["python", "-c", "print(1)"]')),
    (
        "healthcheck",
        "syntax error",
        _replace_instruction(
            "HEALTHCHECK",
            '--interval=5s CMD ["python", "-c", "import os; os.environ[\'BROKER_METRICS_PORT\'] + \'/metrics\' +"]',
        ),
    ),
    (
        "healthcheck",
        "shell form",
        _replace_instruction("HEALTHCHECK", "CMD python -c 'print(\"/metrics BROKER_METRICS_PORT\")'"),
    ),
    ("healthcheck", "NONE", _replace_instruction("HEALTHCHECK", "NONE")),
    (
        "healthcheck",
        "emulator syntax",
        lambda inp: _svc(inp, EMULATOR)["healthcheck"].__setitem__("test", ["CMD", "python", "-c", "import socket;("]),
    ),
    ("secrets_provided", "secret not set", _set_env(BROKER, "XERO_REFRESH_TOKEN", None)),
    ("secrets_provided", "secret empty", _set_env(BROKER, "XERO_CLIENT_SECRET", "${XERO_CLIENT_SECRET}")),
    ("secrets_provided", "new secret in config", _set_config((*XERO, "api_key_env"), "XERO_API_KEY")),
    (
        "secrets_provided",
        "no secrets named",
        lambda inp: [
            t["billing"]["settings"].pop(k)
            for t in inp.config_for_broker()[1]["tenants"].values()
            for k in ("client_secret_env", "refresh_token_env")
        ],
    ),
    (
        "kraft",
        "zookeeper service",
        lambda inp: inp.compose["services"].__setitem__("zookeeper", {"image": "zookeeper:3.9"}),
    ),
    ("kraft", "zookeeper connect", _set_env(KAFKA, "KAFKA_ZOOKEEPER_CONNECT", "zk:2181")),
    ("kraft", "broker only", _set_env(KAFKA, "KAFKA_PROCESS_ROLES", "broker")),
    ("kraft", "voters port", _set_env(KAFKA, "KAFKA_CONTROLLER_QUORUM_VOTERS", "1@kafka:9092")),
    ("kraft", "voters node id", _set_env(KAFKA, "KAFKA_NODE_ID", "2")),
    ("kraft", "replication factor 3", _set_env(KAFKA, "KAFKA_OFFSETS_TOPIC_REPLICATION_FACTOR", "3")),
    ("kraft", "txn replication factor", _set_env(KAFKA, "KAFKA_TRANSACTION_STATE_LOG_REPLICATION_FACTOR", None)),
    ("kraft", "no cluster id", _set_env(KAFKA, "CLUSTER_ID", None)),
    ("kraft", "protocol map", _set_env(KAFKA, "KAFKA_LISTENER_SECURITY_PROTOCOL_MAP", "PLAINTEXT:PLAINTEXT")),
    ("kraft", "no healthcheck", _pop(KAFKA, "healthcheck")),
    ("kraft", "old image", _set(KAFKA, "image", "bitnami/kafka:3.5")),
    (
        "kraft",
        "broker not waiting",
        lambda inp: _svc(inp, BROKER)["depends_on"].__setitem__(KAFKA, {"condition": "service_started"}),
    ),
    (
        "emulator",
        "port mismatch",
        _set(EMULATOR, "command", ["sandbox", "xero", "--host", "0.0.0.0", "--port", "9999"]),
    ),
    (
        "emulator",
        "loopback host",
        _set(EMULATOR, "command", ["sandbox", "xero", "--host", "127.0.0.1", "--port", "8765"]),
    ),
    ("emulator", "not published", _set(EMULATOR, "ports", ["8766:8766"])),
    ("emulator", "api_url host", _set_config((*XERO, "api_url"), "http://127.0.0.1:8765")),
    ("emulator", "identity_url port", _set_config((*XERO, "identity_url"), "http://xero-emulator:9000")),
    ("emulator", "not the demo client", _set_config((*XERO, "client_id"), "someone")),
    ("entrypoint", "python entrypoint", _replace_instruction("ENTRYPOINT", '["python", "-m", "broker"]')),
    ("entrypoint", "shell form", _replace_instruction("ENTRYPOINT", "broker")),
    (
        "entrypoint",
        "script renamed",
        lambda inp: inp.pyproject["project"].__setitem__("scripts", {"mbb": "broker.cli:main"}),
    ),
    ("entrypoint", "cmd config path", _replace_instruction("CMD", '["run", "--config", "/config.yaml"]')),
    ("dockerfile_image", "root user", _replace_instruction("USER", "root")),
    ("dockerfile_image", "no user", _replace_instruction("USER", None)),
    ("dockerfile_image", "other base", _replace_instruction("FROM", "python:3.12 AS x")),
    (
        "dockerfile_copies",
        "missing source",
        lambda inp: inp.dockerfile.append(Instruction("COPY", "no-such-dir/ ./no-such-dir/")),
    ),
    ("dockerfile_copies", "ignored source", lambda inp: inp.dockerignore.append("README.md")),
    (
        "dockerfile_copies",
        "readme not copied",
        lambda inp: inp.pyproject["project"].__setitem__("readme", "CHANGES.rst"),
    ),
    (
        "dockerfile_copies",
        "no pip install",
        lambda inp: setattr(inp, "dockerfile", [i for i in inp.dockerfile if "pip install" not in i.args]),
    ),
]


def test_every_check_has_a_mutation():
    assert {name for name, _, _ in MUTATIONS} == set(CHECKS)


@pytest.mark.parametrize(
    ("check", "mutation"), [(c, m) for c, m, _ in MUTATIONS], ids=[f"{c}-{m}" for c, m, _ in MUTATIONS]
)
def test_each_check_can_fail(inputs: Inputs, check: str, mutation: str):
    broken = copy.deepcopy(inputs)
    broken.config_for_broker()  # load the mounted config so mutations can edit it
    mutate = next(fn for c, m, fn in MUTATIONS if (c, m) == (check, mutation))
    mutate(broken)
    assert CHECKS[check](broken), f"check {check!r} did not notice: {mutation}"


def test_the_worker_service_scales():
    """``docker compose up --scale broker=3``: no fixed container name or host port, and Prometheus finds
    every replica by DNS."""
    data = yaml.safe_load(COMPOSE_FILE.read_text(encoding="utf-8"))
    broker = data["services"][BROKER]
    assert "container_name" not in broker
    assert [p.published for p in service_ports(broker)] == [None]
    prometheus = yaml.safe_load((ROOT / "deploy" / "prometheus.yml").read_text(encoding="utf-8"))
    [job] = prometheus["scrape_configs"]
    assert job["dns_sd_configs"] == [{"names": [BROKER], "type": "A", "port": 9108}]
