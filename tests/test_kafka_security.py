"""Managed Kafka (:mod:`broker.kafka_security`): TLS and SASL settings from the environment, mapped
for kafka-python, aiokafka and Faust, and applied to every Kafka client the broker opens."""

from __future__ import annotations

import ast
import ssl
import subprocess
from pathlib import Path

import pytest

from broker.kafka_security import KafkaSecurity, client_options

ROOT = Path(__file__).resolve().parent.parent
CLIENTS = {"KafkaConsumer", "KafkaProducer", "KafkaAdminClient", "AIOKafkaConsumer", "AIOKafkaProducer"}


@pytest.fixture
def certificate(tmp_path):
    """A self-signed certificate and its key (openssl), standing in for a CA and a client certificate."""
    key, cert = tmp_path / "client.key", tmp_path / "client.pem"
    subprocess.run(
        [
            *("openssl", "req", "-x509", "-newkey", "rsa:2048", "-nodes"),
            *("-keyout", str(key), "-out", str(cert), "-days", "2", "-subj", "/CN=broker-test"),
        ],
        check=True,
        capture_output=True,
    )
    return cert, key


def test_plaintext_by_default():
    assert KafkaSecurity.from_env({}) == KafkaSecurity()
    assert client_options({}) == {"security_protocol": "PLAINTEXT"}
    assert KafkaSecurity.from_env({}).faust() == {}


def test_sasl_ssl_with_scram_for_every_client():
    from faust.transport.drivers.aiokafka import credentials_to_aiokafka_auth

    env = {
        "KAFKA_SECURITY_PROTOCOL": "sasl_ssl",
        "KAFKA_SASL_MECHANISM": "SCRAM-SHA-512",
        "KAFKA_SASL_USERNAME": "broker",
        "KAFKA_SASL_PASSWORD": "s3cret",
    }
    security = KafkaSecurity.from_env(env)
    options = security.client_options()
    context = options.pop("ssl_context")
    assert isinstance(context, ssl.SSLContext) and context.check_hostname and context.verify_mode == ssl.CERT_REQUIRED
    assert options == {
        "security_protocol": "SASL_SSL",
        "sasl_mechanism": "SCRAM-SHA-512",
        "sasl_plain_username": "broker",
        "sasl_plain_password": "s3cret",
    }
    faust_side = credentials_to_aiokafka_auth(security.faust()["broker_credentials"])
    assert isinstance(faust_side.pop("ssl_context"), ssl.SSLContext)
    assert faust_side == options  # the worker's Faust consumer and producer get the same settings
    assert "s3cret" not in repr(security)


def test_sasl_plaintext_and_mutual_tls(certificate):
    from faust.transport.drivers.aiokafka import credentials_to_aiokafka_auth

    plain = {"KAFKA_SECURITY_PROTOCOL": "SASL_PLAINTEXT", "KAFKA_SASL_USERNAME": "u", "KAFKA_SASL_PASSWORD": "p"}
    assert client_options(plain) == {
        "security_protocol": "SASL_PLAINTEXT",
        "sasl_mechanism": "PLAIN",
        "sasl_plain_username": "u",
        "sasl_plain_password": "p",
    }
    cert, key = certificate
    mtls = {
        "KAFKA_SECURITY_PROTOCOL": "SSL",
        "KAFKA_SSL_CAFILE": str(cert),
        "KAFKA_SSL_CERTFILE": str(cert),
        "KAFKA_SSL_KEYFILE": str(key),
        "KAFKA_SSL_CHECK_HOSTNAME": "false",
    }
    options = client_options(mtls)
    context = options.pop("ssl_context")
    assert options == {"security_protocol": "SSL"} and context.check_hostname is False
    assert [c["subject"] for c in context.get_ca_certs()] == [((("commonName", "broker-test"),),)]
    faust_side = credentials_to_aiokafka_auth(KafkaSecurity.from_env(mtls).faust()["broker_credentials"])
    assert faust_side["security_protocol"] == "SSL" and isinstance(faust_side["ssl_context"], ssl.SSLContext)


@pytest.mark.parametrize(
    ("env", "message"),
    [
        ({"KAFKA_SECURITY_PROTOCOL": "TLS"}, "KAFKA_SECURITY_PROTOCOL='TLS' is not one of PLAINTEXT, SSL"),
        (
            {"KAFKA_SECURITY_PROTOCOL": "SASL_SSL", "KAFKA_SASL_USERNAME": "u"},
            "KAFKA_SECURITY_PROTOCOL=SASL_SSL needs KAFKA_SASL_PASSWORD",
        ),
        ({"KAFKA_SASL_MECHANISM": "GSSAPI"}, "KAFKA_SASL_MECHANISM='GSSAPI' is not one of PLAIN, SCRAM-SHA-256"),
        ({"KAFKA_SSL_CAFILE": "/nonexistent/ca.pem"}, "KAFKA_SSL_CAFILE='/nonexistent/ca.pem': no such file"),
        ({"KAFKA_SSL_CHECK_HOSTNAME": "maybe"}, "KAFKA_SSL_CHECK_HOSTNAME='maybe' is not true or false"),
    ],
)
def test_bad_settings_name_the_variable(env, message):
    with pytest.raises(ValueError, match=message.replace("(", r"\(").replace(")", r"\)")):
        KafkaSecurity.from_env(env)


def test_every_kafka_client_the_broker_opens_gets_the_settings():
    checked = 0
    for path in sorted((ROOT / "broker").rglob("*.py")):
        for node in ast.walk(ast.parse(path.read_text())):
            if isinstance(node, ast.Call) and getattr(node.func, "id", getattr(node.func, "attr", None)) in CLIENTS:
                spread = [k.value for k in node.keywords if k.arg is None]
                names = [getattr(getattr(v, "func", None), "id", None) for v in spread]
                assert {"client_options", "tool_options"} & set(names), (
                    f"{path.relative_to(ROOT)}:{node.lineno} opens a client without them"
                )
                checked += 1
    assert checked >= 11
    app = (ROOT / "broker" / "app.py").read_text()
    assert "**KafkaSecurity.from_env().faust()" in app


def test_broker_run_refuses_bad_security_settings_naming_the_variable(tmp_path):
    import os
    import sys

    env = {**os.environ, "KAFKA_SECURITY_PROTOCOL": "SASL_SSL", "KAFKA_SASL_USERNAME": "u"}
    env.pop("KAFKA_SASL_PASSWORD", None)
    proc = subprocess.run(
        [sys.executable, "-m", "broker", "run", "--config", str(ROOT / "broker" / "examples" / "config.yaml")],
        env=env,
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert proc.returncode == 2
    assert "KAFKA_SECURITY_PROTOCOL=SASL_SSL needs KAFKA_SASL_PASSWORD" in " ".join(proc.stderr.split())
