"""The configuration: embedded defaults, YAML file, environment overrides, clear errors."""

from pathlib import Path

import pytest

from monitor.config import ConfigError, describe_schema, load_config


def test_defaults_run_embedded_with_inprocess_models():
    config = load_config(environ={})
    assert config.models.backend == "inprocess"
    assert config.models.model_base.name == "models"
    assert config.unrest.threshold == 0.5


def test_yaml_file_overrides_defaults_and_environment_overrides_file(tmp_path: Path):
    path = tmp_path / "c.yaml"
    path.write_text("models:\n  backend: rest\n  timeout_s: 5\nunrest:\n  threshold: 0.8\n")
    env = {"INSAR_MONITOR__UNREST__THRESHOLD": "0.9", "UNRELATED": "x"}
    config = load_config(path, environ=env)
    assert config.models.backend == "rest"
    assert config.models.timeout_s == 5
    assert config.unrest.threshold == 0.9


@pytest.mark.parametrize(
    ("text", "fragment"),
    [
        ("models:\n  backend: carrier-pigeon\n", "models.backend"),
        ("unrest:\n  threshold: 1.5\n", "unrest.threshold"),
        ("unrest:\n  treshold: 0.5\n", "unrest.treshold"),
        ("- a\n- b\n", "mapping"),
        ("models: [unclosed\n", "not valid YAML"),
    ],
)
def test_invalid_configuration_names_the_key(tmp_path: Path, text: str, fragment: str):
    path = tmp_path / "c.yaml"
    path.write_text(text)
    with pytest.raises(ConfigError, match=fragment.replace(".", r"\.")):
        load_config(path, environ={})


def test_missing_file_is_a_config_error(tmp_path: Path):
    with pytest.raises(ConfigError, match="not found"):
        load_config(tmp_path / "absent.yaml", environ={})


def test_schema_lists_every_key_with_its_meaning():
    text = describe_schema()
    for key in ("backend:", "grpc_target:", "threshold:", "allowed_crs:", "min_epochs:"):
        assert key in text
    assert "ge=1" in text
