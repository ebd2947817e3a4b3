"""The Kubernetes manifests (``deploy/kubernetes/broker.yaml``), checked statically: probes on the
endpoints the code serves, ports and variables the code reads, valid Kafka security settings, the
commands exist, and the workers do not outnumber the partitions."""

from __future__ import annotations

from pathlib import Path

import yaml

from broker.cli import main
from broker.kafka_security import KafkaSecurity
from broker.settings import KNOWN_VARIABLES, Settings

MANIFEST = Path(__file__).resolve().parent.parent / "deploy" / "kubernetes" / "broker.yaml"
DOCS = [d for d in yaml.safe_load_all(MANIFEST.read_text()) if d]


def _kind(kind: str, name: str) -> dict:
    return next(d for d in DOCS if d["kind"] == kind and d["metadata"]["name"] == name)


def _env(container: dict) -> dict[str, str]:
    return {e["name"]: e["value"] for e in container.get("env", [])}


def _container(name: str) -> dict:
    return _kind("Deployment", name)["spec"]["template"]["spec"]["containers"][0]


def test_probes_point_at_the_health_endpoints_on_the_served_port():
    for deployment, port_var in (("broker-worker", "BROKER_METRICS_PORT"), ("broker-intake", "BROKER_INTAKE_PORT")):
        container = _container(deployment)
        ports = {p["name"]: p["containerPort"] for p in container["ports"]}
        assert len(ports) == 1
        [(port_name, port)] = ports.items()
        assert int(_env(container)[port_var]) == port, deployment
        assert container["livenessProbe"]["httpGet"] == {"path": "/healthz", "port": port_name}
        assert container["readinessProbe"]["httpGet"] == {"path": "/readyz", "port": port_name}


def test_variables_commands_and_scale():
    secret = _kind("Secret", "broker-secrets")["stringData"]
    assert KafkaSecurity.from_env(secret).protocol == "SASL_SSL"  # the example settings are valid
    for name in ("broker-worker", "broker-intake"):
        container = _container(name)
        env = _env(container)
        unknown = sorted(n for n in env if n.startswith("BROKER_") and n not in KNOWN_VARIABLES)
        assert unknown == [], name
        Settings.from_env(env)  # every value parses
        command, _, config = container["args"]
        assert command in main.commands and container["args"][1] == "--config"
        mounts = {m["mountPath"] for m in container["volumeMounts"]}
        assert str(Path(config).parent) in mounts
        assert {e["secretRef"]["name"] for e in container["envFrom"]} == {"broker-secrets"}
    worker = _kind("Deployment", "broker-worker")
    replicas = worker["spec"]["replicas"]
    assert replicas == 3 and int(_env(_container("broker-worker"))["BROKER_TOPIC_PARTITIONS"]) >= replicas
    assert _env(_container("broker-worker"))["BROKER_METRICS_HOST"] == "0.0.0.0"
    config = _kind("ConfigMap", "broker-config")["data"]["config.yaml"]
    assert yaml.safe_load(config) == {"tenants": {}}
    service = _kind("Service", "broker-intake")
    assert service["spec"]["selector"] == _kind("Deployment", "broker-intake")["spec"]["selector"]["matchLabels"]
