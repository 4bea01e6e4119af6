"""Security settings: Kafka SASL/TLS pass-through, hashed API tokens, redaction of secrets.

No SASL or TLS broker is available offline, so the Kafka half checks what reaches the client
libraries (kafka-python's keyword arguments, the Java consumer's properties) and that
kafka-python accepts those keywords; docs/security.md says what remains untested.
"""

from __future__ import annotations

import hashlib
import io
import json
import logging
import pickle
import sys
import uuid
import warnings
from collections.abc import Callable, Iterator
from pathlib import Path

import kafka
import pytest

from monitor.cli.main import main
from monitor.config import ApiConfig, ConfigError, load_config
from monitor.logs import configure_logging, redact, register_config_secrets, register_secret
from pipelines.context import PipelineContext, kafka_settings_from_config
from pipelines.kafka_io import KafkaSettings, Secret, _common_config, _consumer

with warnings.catch_warnings():
    warnings.filterwarnings("ignore", "Using `httpx` with `starlette.testclient`")
    from fastapi.testclient import TestClient

SASL_ENV = {
    "INSAR_MONITOR__KAFKA__SECURITY_PROTOCOL": "SASL_SSL",
    "INSAR_MONITOR__KAFKA__SASL_MECHANISM": "SCRAM-SHA-512",
    "INSAR_MONITOR__KAFKA__SASL_USERNAME": "monitor",
    "INSAR_MONITOR__KAFKA__SASL_PASSWORD": "pw-sasl-5f3e1b",
}


def _unique(prefix: str) -> str:
    """A secret no other test registers (the redaction registry is process-wide)."""
    return f"{prefix}-{uuid.uuid4().hex}"


@pytest.fixture
def pem_files(tmp_path: Path) -> dict[str, Path]:
    """Stand-ins for a CA bundle and a combined client certificate + key (only existence
    is checked before a client connects)."""
    ca = tmp_path / "ca.pem"
    client = tmp_path / "client.pem"
    ca.write_text("-----BEGIN CERTIFICATE-----\n")
    client.write_text("-----BEGIN CERTIFICATE-----\n-----BEGIN PRIVATE KEY-----\n")
    return {"ca": ca, "client": client}


# ------------------------------------------------------------------------- Kafka config
def test_sasl_protocol_without_password_is_rejected_naming_the_key() -> None:
    env = {k: v for k, v in SASL_ENV.items() if not k.endswith("SASL_PASSWORD")}
    with pytest.raises(ConfigError, match=r"SASL_SSL needs kafka\.sasl_password"):
        load_config(environ=env)


def test_sasl_protocol_without_mechanism_or_user_is_rejected() -> None:
    env = {"INSAR_MONITOR__KAFKA__SECURITY_PROTOCOL": "SASL_PLAINTEXT",
           "INSAR_MONITOR__KAFKA__SASL_PASSWORD": "pw-x"}
    with pytest.raises(ConfigError) as caught:
        load_config(environ=env)
    assert "kafka.sasl_mechanism" in str(caught.value)
    assert "kafka.sasl_username" in str(caught.value)


def test_empty_sasl_password_counts_as_missing() -> None:
    env = {**SASL_ENV, "INSAR_MONITOR__KAFKA__SASL_PASSWORD": "''"}
    with pytest.raises(ConfigError, match="sasl_password"):
        load_config(environ=env)


def test_unknown_security_protocol_and_mechanism_are_rejected() -> None:
    with pytest.raises(ConfigError, match="security_protocol"):
        load_config(environ={"INSAR_MONITOR__KAFKA__SECURITY_PROTOCOL": "TLS"})
    with pytest.raises(ConfigError, match="sasl_mechanism"):
        load_config(environ={**SASL_ENV, "INSAR_MONITOR__KAFKA__SASL_MECHANISM": "GSSAPI"})


def test_password_that_yaml_reads_as_a_number_is_rejected_with_the_fix() -> None:
    # INSAR_MONITOR__... values are YAML: 0123 would silently become the password "83".
    with pytest.raises(ConfigError, match="quote it in the environment"):
        load_config(environ={**SASL_ENV, "INSAR_MONITOR__KAFKA__SASL_PASSWORD": "0123"})


def test_missing_ssl_file_is_rejected_naming_the_path(tmp_path: Path) -> None:
    missing = tmp_path / "nowhere" / "ca.pem"
    env = {"INSAR_MONITOR__KAFKA__SECURITY_PROTOCOL": "SSL",
           "INSAR_MONITOR__KAFKA__SSL_CAFILE": str(missing)}
    with pytest.raises(ConfigError, match=r"kafka\.ssl_cafile: .*nowhere/ca\.pem does not exist"):
        load_config(environ=env)


def test_sasl_password_with_plaintext_is_accepted_with_a_warning(
    caplog: pytest.LogCaptureFixture,
) -> None:
    caplog.set_level(logging.WARNING, logger="monitor.config")
    config = load_config(environ={"INSAR_MONITOR__KAFKA__SASL_PASSWORD": "pw-unused"})
    assert config.kafka.security_protocol == "PLAINTEXT"
    assert any("sasl_* settings are ignored" in r.getMessage() for r in caplog.records)
    assert "pw-unused" not in caplog.text


def test_sasl_settings_reach_the_kafka_python_config(pem_files: dict[str, Path]) -> None:
    env = {**SASL_ENV,
           "INSAR_MONITOR__KAFKA__SSL_CAFILE": str(pem_files["ca"]),
           "INSAR_MONITOR__KAFKA__SSL_CERTFILE": str(pem_files["client"]),
           "INSAR_MONITOR__KAFKA__SSL_KEYFILE": str(pem_files["client"]),
           "INSAR_MONITOR__KAFKA__SSL_CHECK_HOSTNAME": "false"}
    settings = PipelineContext.from_config(load_config(environ=env)).kafka
    config = _common_config(settings)
    assert config["security_protocol"] == "SASL_SSL"
    assert config["sasl_mechanism"] == "SCRAM-SHA-512"
    assert config["sasl_plain_username"] == "monitor"
    assert config["sasl_plain_password"] == "pw-sasl-5f3e1b"
    assert config["ssl_cafile"] == str(pem_files["ca"])
    assert config["ssl_certfile"] == config["ssl_keyfile"] == str(pem_files["client"])
    assert config["ssl_check_hostname"] is False


def test_plaintext_kafka_config_has_no_security_keys() -> None:
    config = _common_config(kafka_settings_from_config(load_config(environ={}).kafka))
    assert not [k for k in config if k.startswith(("security", "sasl", "ssl"))]


def test_ssl_without_sasl_passes_no_sasl_keys(pem_files: dict[str, Path]) -> None:
    settings = KafkaSettings("broker:9093", security_protocol="SSL",
                             ssl_cafile=str(pem_files["ca"]))
    config = _common_config(settings)
    assert config["security_protocol"] == "SSL"
    assert config["ssl_cafile"] == str(pem_files["ca"])
    assert config["ssl_check_hostname"] is True
    assert not [k for k in config if k.startswith("sasl")]


def test_kafka_python_accepts_the_security_keywords(pem_files: dict[str, Path]) -> None:
    # kafka-python refuses unknown keywords at construction, before any connection is made.
    settings = KafkaSettings(
        "127.0.0.1:1", api_version=(2, 7), security_protocol="SASL_SSL",
        sasl_mechanism="PLAIN", sasl_username="u", sasl_password="p",
        ssl_cafile=str(pem_files["ca"]),
    )
    consumer = _consumer(settings, with_group=False)
    try:
        assert consumer.config["security_protocol"] == "SASL_SSL"
        assert consumer.config["sasl_plain_password"] == "p"
    finally:
        consumer.close()
    with pytest.raises(kafka.errors.KafkaConfigurationError, match="Unrecognized"):
        kafka.KafkaConsumer(bootstrap_servers=["127.0.0.1:1"], api_version=(2, 7),
                            sasl_password="p")


def test_kafka_settings_hide_the_password_but_still_pickle() -> None:
    settings = KafkaSettings("b:9092", security_protocol="SASL_PLAINTEXT",
                             sasl_mechanism="PLAIN", sasl_username="u",
                             sasl_password="pw-repr-91c2")
    assert isinstance(settings.sasl_password, Secret)
    assert "pw-repr-91c2" not in repr(settings)
    assert "pw-repr-91c2" not in str(settings.sasl_password)
    restored = pickle.loads(pickle.dumps(settings))
    assert restored == settings
    assert _common_config(restored)["sasl_plain_password"] == "pw-repr-91c2"


def test_streaming_consumer_gets_java_sasl_and_pem_properties(
    pem_files: dict[str, Path],
) -> None:
    from pipelines.streaming import ReadKafkaUnbounded

    env = {**SASL_ENV,
           "INSAR_MONITOR__KAFKA__SASL_MECHANISM": "PLAIN",
           "INSAR_MONITOR__KAFKA__SASL_PASSWORD": "pw \"quoted\" \\ end",
           "INSAR_MONITOR__KAFKA__SSL_CAFILE": str(pem_files["ca"])}
    consumer = ReadKafkaUnbounded(PipelineContext.from_config(load_config(environ=env)))
    props = consumer.consumer_config()
    assert props["security.protocol"] == "SASL_SSL"
    assert props["sasl.mechanism"] == "PLAIN"
    assert props["sasl.jaas.config"] == (
        'org.apache.kafka.common.security.plain.PlainLoginModule required '
        'username="monitor" password="pw \\"quoted\\" \\\\ end";'
    )
    assert props["ssl.truststore.type"] == "PEM"
    assert props["ssl.truststore.location"] == str(pem_files["ca"])
    assert "ssl.endpoint.identification.algorithm" not in props


def test_streaming_scram_uses_the_scram_login_module() -> None:
    settings = KafkaSettings("b:9092", security_protocol="SASL_PLAINTEXT",
                             sasl_mechanism="SCRAM-SHA-256", sasl_username="u",
                             sasl_password="p")
    props = settings.java_security_properties()
    assert props["sasl.jaas.config"].startswith(
        "org.apache.kafka.common.security.scram.ScramLoginModule required "
    )
    assert "ssl.truststore.type" not in props


def test_streaming_refuses_client_key_and_certificate_in_separate_files() -> None:
    settings = KafkaSettings("b:9092", security_protocol="SSL",
                             ssl_certfile="/etc/c.crt", ssl_keyfile="/etc/c.key")
    with pytest.raises(ValueError, match="one file"):
        settings.java_security_properties()


def test_plaintext_streaming_consumer_has_no_security_properties() -> None:
    assert KafkaSettings("b:9092").java_security_properties() == {}


# ---------------------------------------------------------------------------- API tokens
def _app_client(tmp_path: Path, **api: object) -> TestClient:
    from monitor.api import create_app
    from monitor.config import MonitorConfig
    from monitor.storage.alert_store import AlertStore

    store = AlertStore(f"sqlite:///{tmp_path / 'alerts.sqlite'}")
    return TestClient(create_app(store, MonitorConfig.model_validate({"api": api})))


def test_hashed_token_authorizes_and_a_wrong_one_does_not(tmp_path: Path) -> None:
    token = "tok-hashed-" + "7" * 20
    client = _app_client(tmp_path, token_hashes=[ApiConfig.hash_token(token)])
    ok = client.get("/subscriptions", headers={"Authorization": f"Bearer {token}"})
    assert ok.status_code == 200
    for wrong in (token + "x", token[:-1], ApiConfig.hash_token(token)):
        refused = client.get("/subscriptions", headers={"Authorization": f"Bearer {wrong}"})
        assert refused.status_code == 401, wrong


def test_hashed_and_plaintext_tokens_work_side_by_side(tmp_path: Path) -> None:
    client = _app_client(tmp_path, tokens=["plain-token-0123456789"],
                         token_hashes=[ApiConfig.hash_token("hashed-token-0123456789")])
    for token in ("plain-token-0123456789", "hashed-token-0123456789"):
        response = client.get("/subscriptions", headers={"Authorization": f"Bearer {token}"})
        assert response.status_code == 200, token


def test_token_hash_is_sha256_of_the_utf8_token() -> None:
    assert ApiConfig.hash_token("s3cret") == (
        "sha256:" + hashlib.sha256(b"s3cret").hexdigest()
    )


@pytest.mark.parametrize(
    "entry",
    ["my-plain-token", "sha256:abc", "md5:" + "0" * 64, "sha256:" + "g" * 64,
     "sha256:" + "0" * 65, ""],
)
def test_malformed_token_hash_is_rejected_at_load_without_echoing_it(entry: str) -> None:
    with pytest.raises(ConfigError) as caught:
        load_config(environ={"INSAR_MONITOR__API__TOKEN_HASHES": json.dumps([entry])})
    message = str(caught.value)
    assert "api.token_hashes" in message and "sha256:<64 hex digits>" in message
    if entry:
        assert entry not in message


def test_upper_case_token_hash_is_accepted_as_lower_case() -> None:
    digest = hashlib.sha256(b"t").hexdigest()
    config = load_config(
        environ={"INSAR_MONITOR__API__TOKEN_HASHES": json.dumps([f"SHA256:{digest.upper()}"])}
    )
    assert config.api.token_hashes == [f"sha256:{digest}"]


def test_hash_token_command_reads_stdin_and_prints_the_hash(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str],
) -> None:
    monkeypatch.setattr(sys, "stdin", io.StringIO("tok-from-stdin-0123456789\n"))
    assert main(["alerts", "hash-token"]) == 0
    out = capsys.readouterr().out.strip()
    assert out == ApiConfig.hash_token("tok-from-stdin-0123456789")
    # What it prints is accepted as a token_hashes entry.
    load_config(environ={"INSAR_MONITOR__API__TOKEN_HASHES": json.dumps([out])})


def test_hash_token_command_refuses_the_token_as_an_argument(
    capsys: pytest.CaptureFixture[str],
) -> None:
    with pytest.raises(SystemExit) as caught:
        main(["alerts", "hash-token", "tok-in-argv"])
    assert caught.value.code == 2
    assert "unrecognized arguments" in capsys.readouterr().err


def test_hash_token_command_refuses_empty_stdin(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str],
) -> None:
    monkeypatch.setattr(sys, "stdin", io.StringIO("\n"))
    assert main(["alerts", "hash-token"]) == 2
    assert "no token on stdin" in capsys.readouterr().err


# ----------------------------------------------------------------------------- redaction
@pytest.fixture
def json_log(
    capsys: pytest.CaptureFixture[str],
) -> Iterator[Callable[[], Callable[[], str]]]:
    """Yields a function that runs configure_logging() and returns a reader of the log."""
    root = logging.getLogger()
    saved_handlers, saved_level = root.handlers[:], root.level
    configured = False

    def logged() -> str:
        return capsys.readouterr().err

    def start() -> Callable[[], str]:
        # Called from the test body: capsys swaps sys.stderr only once the test runs.
        nonlocal configured
        configure_logging("DEBUG")
        configured = True
        return logged

    try:
        yield start
    finally:
        if configured:
            root.handlers[:] = saved_handlers
            root.setLevel(saved_level)


def test_registered_secret_is_redacted_from_message_arguments_and_extras(json_log) -> None:
    logged = json_log()
    secret = _unique("reg")
    register_secret(secret)
    log = logging.getLogger("test.security")
    log.warning("connecting with %s", secret, extra={"detail": f"pw={secret}",
                                                      "nested": {"list": [secret]}})
    log.info(f"inline {secret}")
    text = logged()
    assert secret not in text
    first, second = (json.loads(line) for line in text.strip().splitlines())
    assert first["msg"] == "connecting with ***"
    assert first["nested"] == {"list": ["***"]}
    assert second["msg"] == "inline ***"


def test_secret_in_an_exception_traceback_is_redacted(json_log) -> None:
    logged = json_log()
    secret = _unique("exc")
    register_secret(secret)
    try:
        raise RuntimeError(f"login failed for password {secret}")
    except RuntimeError:
        logging.getLogger("test.security").exception("broker login failed")
    text = logged()
    assert secret not in text
    assert "RuntimeError: login failed for password ***" in json.loads(text)["exc"]


def test_credential_shapes_are_redacted_without_registration(json_log) -> None:
    logged = json_log()
    log = logging.getLogger("test.security")
    log.error("db down: postgresql+psycopg://insar:url-pw-1a2b@db:5432/insar")
    log.error("sent headers {'Authorization': 'Bearer bearer-tok-3c4d'}")
    log.error("posted X-Insar-Signature: t=1700000000,v1=" + "ab12" * 16)
    log.error("jaas: PlainLoginModule required username=\"u\" password=\"jaas-pw-5e6f\";")
    text = logged()
    for leaked in ("url-pw-1a2b", "bearer-tok-3c4d", "ab12" * 16, "jaas-pw-5e6f"):
        assert leaked not in text
    assert "postgresql+psycopg://insar:***@db:5432/insar" in text
    assert "t=1700000000,v1=***" in text


def test_unformattable_log_call_does_not_print_its_arguments(json_log) -> None:
    logged = json_log()
    secret = _unique("args")
    logging.getLogger("test.security").warning("two %s %s", secret)
    text = logged()
    assert secret not in text
    assert "arguments dropped" in text


def test_config_loading_registers_kafka_database_and_api_secrets() -> None:
    sasl, db, token = _unique("sasl"), _unique("db"), _unique("tok")
    config = load_config(environ={
        **SASL_ENV,
        "INSAR_MONITOR__KAFKA__SASL_PASSWORD": sasl,
        "INSAR_MONITOR__DATABASE__URL": f"postgresql+psycopg://insar:{db}@db/insar",
        "INSAR_MONITOR__API__TOKENS": json.dumps([token]),
    })
    PipelineContext.from_config(config)
    assert redact(f"{sasl} {token} bare:{db}") == "*** *** bare:***"


def test_register_config_secrets_covers_percent_encoded_url_passwords() -> None:
    raw = _unique("p%40ss")
    config = load_config(
        environ={"INSAR_MONITOR__DATABASE__URL": f"postgresql://u:{raw}@h/d"}
    )
    register_config_secrets(config)
    decoded = raw.replace("%40", "@")
    assert redact(f"{raw} / {decoded}") == "*** / ***"


def test_config_show_masks_every_secret(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str],
) -> None:
    secrets = {"sasl": _unique("sasl"), "db": _unique("db"), "tok": _unique("tok")}
    for key, value in {
        **SASL_ENV,
        "INSAR_MONITOR__KAFKA__SASL_PASSWORD": secrets["sasl"],
        "INSAR_MONITOR__DATABASE__URL": f"postgresql+psycopg://u:{secrets['db']}@h/d",
        "INSAR_MONITOR__API__TOKENS": json.dumps([secrets["tok"]]),
    }.items():
        monkeypatch.setenv(key, value)
    root = logging.getLogger()
    saved_handlers, saved_level = root.handlers[:], root.level
    try:
        assert main(["config", "show"]) == 0
    finally:
        root.handlers[:] = saved_handlers
        root.setLevel(saved_level)
    captured = capsys.readouterr()
    for value in secrets.values():
        assert value not in captured.out + captured.err
    assert "sasl_password: '**********'" in captured.out
