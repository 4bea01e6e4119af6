"""Static checks of the deployment files under deploy/ (nothing is built, started or downloaded).

No Docker engine, Kubernetes cluster, Flink or GCP is reachable from the development machines
(docs/platform.md), so these tests check what can be checked offline: every YAML/JSON file
parses; the compose file's services, mounts, env files, build context and dependencies refer to
things that exist; the Dockerfile copies only existing, non-ignored paths; the daemon configs
load with ``monitor.config.load_config`` (also with the environment the deployments set) and
their Beam runner options parse; the Kubernetes manifests are well formed and consistent; the
systemd units are syntactically valid; TF-Serving's models.config serves exactly the committed
models.
"""

from __future__ import annotations

import fnmatch
import json
import re
import shlex
import shutil
import subprocess
from pathlib import Path
from typing import Any

import pytest
import yaml

from monitor.config import MonitorConfig, PipelineConfig, load_config

REPO = Path(__file__).resolve().parent.parent
DEPLOY = REPO / "deploy"
COMPOSE_DIR = DEPLOY / "compose"
COMPOSE_FILE = COMPOSE_DIR / "compose.yaml"
DOCKERFILE = DEPLOY / "docker" / "Dockerfile"
K8S_DIR = DEPLOY / "flink" / "k8s"
FLINK_CONFIG = DEPLOY / "flink" / "insar-monitor-flink.yaml"
DATAFLOW_CONFIG = DEPLOY / "flink" / "dataflow.yaml"
SYSTEMD_UNITS = sorted((DEPLOY / "systemd").glob("*.service"))

DAEMON_CONFIGS = [
    DEPLOY / "config" / "production.yaml",
    COMPOSE_DIR / "insar-monitor.yaml",
    FLINK_CONFIG,
    DATAFLOW_CONFIG,
]

# Mounted by compose.yaml but written in a separate change (Prometheus rules, Grafana
# provisioning and dashboards): their absence skips, never fails, until they land.
PENDING_MOUNT_SOURCES = {
    DEPLOY / "prometheus" / "prometheus.yml",
    DEPLOY / "prometheus" / "rules",
    DEPLOY / "grafana" / "provisioning",
    DEPLOY / "grafana" / "dashboards",
}

METRICS_PENDING = "metrics section not yet in config"


def _rel(path: Path) -> str:
    return str(path.relative_to(REPO))


def _has_metrics_section() -> bool:
    return hasattr(MonitorConfig(), "metrics")


def _skip_if_metrics_pending(data: dict[str, Any], environ: dict[str, str] | None = None) -> None:
    uses_metrics = "metrics" in data or any(
        k.startswith("INSAR_MONITOR__METRICS__") for k in (environ or {})
    )
    if uses_metrics and not _has_metrics_section():
        pytest.skip(METRICS_PENDING)


def _load_yaml(path: Path) -> Any:
    return yaml.safe_load(path.read_text())


# ------------------------------------------------------------------------------ every file
def _deploy_files(*suffixes: str) -> list[Path]:
    return sorted(p for s in suffixes for p in DEPLOY.rglob(f"*{s}") if p.is_file())


@pytest.mark.parametrize("path", _deploy_files(".yml", ".yaml"), ids=_rel)
def test_every_yaml_file_parses(path: Path):
    documents = list(yaml.safe_load_all(path.read_text()))
    assert documents, f"{_rel(path)} is empty"


def test_every_json_file_parses():
    for path in _deploy_files(".json"):
        json.loads(path.read_text())


# ------------------------------------------------------------------------------- compose
@pytest.fixture(scope="module")
def compose() -> dict[str, Any]:
    return _load_yaml(COMPOSE_FILE)


_INTERPOLATION = re.compile(r"\$\{([A-Za-z_][A-Za-z0-9_]*)(?:(:?[-?+])([^}]*))?\}")


def _env_example() -> dict[str, str]:
    """KEY=VALUE lines of deploy/compose/.env.example, as `cp .env.example .env` would give."""
    values: dict[str, str] = {}
    for line in (COMPOSE_DIR / ".env.example").read_text().splitlines():
        line = line.strip()
        if not line or line.startswith("#") or "=" not in line:
            continue
        key, value = line.split("=", 1)
        if len(value) >= 2 and value[0] == value[-1] and value[0] in "'\"":
            value = value[1:-1]
        values[key.strip()] = value
    return values


def _interpolate(text: str, env: dict[str, str]) -> str:
    """Compose-style ${VAR}, ${VAR:-default}, ${VAR:?error}; $$ is a literal $."""

    def one(m: re.Match[str]) -> str:
        name, op, arg = m.group(1), m.group(2), m.group(3)
        if name in env and (env[name] != "" or op in (None, "-", "?")):
            return env[name]
        if op in (":-", "-"):
            return arg
        if op in (":?", "?"):
            raise AssertionError(f"compose needs {name}: {arg}")
        return ""

    parts = text.split("$$")
    return "$".join(_INTERPOLATION.sub(one, part) for part in parts)


def _volume_entries(service: dict[str, Any]) -> list[tuple[str, str, str]]:
    """(type, source, target) of a service's volumes, short or long syntax."""
    out = []
    for entry in service.get("volumes", []):
        if isinstance(entry, str):
            source, _, rest = entry.partition(":")
            target = rest.split(":")[0]
            kind = "bind" if source.startswith((".", "/", "~")) else "volume"
            out.append((kind, source, target))
        else:
            out.append((entry.get("type", "volume"), entry.get("source", ""), entry["target"]))
    return out


def test_compose_services_have_an_image_or_a_build(compose):
    services = compose["services"]
    assert {"kafka", "kafka-init", "tfserving", "postgres", "insar-monitor", "prometheus",
            "alertmanager", "grafana"} <= set(services)
    for name, service in services.items():
        assert "image" in service or "build" in service, f"service {name}: no image or build"


def test_compose_build_context_and_dockerfile_exist(compose):
    for name, service in compose["services"].items():
        build = service.get("build")
        if build is None:
            continue
        if isinstance(build, str):
            build = {"context": build}
        context = (COMPOSE_DIR / build.get("context", ".")).resolve()
        assert context.is_dir(), f"service {name}: build context {context} missing"
        dockerfile = context / build.get("dockerfile", "Dockerfile")
        assert dockerfile.is_file(), f"service {name}: {dockerfile} missing"
        if "target" in build:
            stages = re.findall(r"(?im)^FROM\s+\S+\s+AS\s+(\S+)", dockerfile.read_text())
            assert build["target"] in stages, f"service {name}: no stage {build['target']}"


def test_compose_bind_mount_sources_exist(compose):
    missing = []
    for name, service in compose["services"].items():
        for kind, source, _ in _volume_entries(service):
            if kind != "bind":
                continue
            path = (COMPOSE_DIR / source).resolve()
            if not path.exists() and path not in PENDING_MOUNT_SOURCES:
                missing.append(f"{name}: {source}")
    assert not missing, f"bind-mount sources missing: {missing}"


def test_compose_pending_mount_sources_exist(compose):
    referenced = {
        (COMPOSE_DIR / source).resolve()
        for service in compose["services"].values()
        for kind, source, _ in _volume_entries(service)
        if kind == "bind"
    }
    assert referenced >= PENDING_MOUNT_SOURCES, "compose.yaml no longer mounts a pending path"
    absent = sorted(_rel(p) for p in PENDING_MOUNT_SOURCES if not p.exists())
    if absent:
        pytest.skip(f"written by the monitoring change, not there yet: {absent}")


def test_compose_named_volumes_are_declared(compose):
    declared = set(compose.get("volumes") or {})
    for name, service in compose["services"].items():
        for kind, source, _ in _volume_entries(service):
            if kind == "volume" and source:
                assert source in declared, f"service {name}: volume {source} not declared"


def test_compose_env_files_exist_unless_optional(compose):
    for name, service in compose["services"].items():
        env_files = service.get("env_file", [])
        for entry in [env_files] if isinstance(env_files, str | dict) else env_files:
            path, required = (entry, True) if isinstance(entry, str) else (
                entry["path"], entry.get("required", True)
            )
            assert Path(path).name != ".env" or not required, (
                f"service {name}: .env is local (documented by .env.example); mark it optional"
            )
            if required:
                assert (COMPOSE_DIR / path).is_file(), f"service {name}: env_file {path} missing"


def test_compose_interpolated_variables_are_documented_in_env_example():
    text = COMPOSE_FILE.read_text().replace("$$", "")
    documented = set(_env_example())
    commented = set(re.findall(r"(?m)^#\s*([A-Z_][A-Z0-9_]*)=", (COMPOSE_DIR / ".env.example")
                               .read_text()))
    for m in _INTERPOLATION.finditer(text):
        name, op = m.group(1), m.group(2)
        if op in (":-", "-"):
            assert name in documented | commented, f"${{{name}}} not mentioned in .env.example"
        else:
            assert name in documented, f"${{{name}}} has no default and is not in .env.example"


def test_compose_depends_on_targets_exist(compose):
    services = compose["services"]
    for name, service in services.items():
        depends = service.get("depends_on", [])
        targets = list(depends) if isinstance(depends, dict | list) else []
        for target in targets:
            assert target in services, f"service {name} depends on unknown {target}"
    daemon = services["insar-monitor"]["depends_on"]
    for dep in ("kafka", "postgres", "tfserving"):
        assert daemon[dep]["condition"] == "service_healthy"
        assert "healthcheck" in services[dep], f"{dep} has no healthcheck to wait on"
    assert daemon["kafka-init"]["condition"] == "service_completed_successfully"


def test_compose_kafka_is_single_node_kraft(compose):
    env = compose["services"]["kafka"]["environment"]
    assert set(env["KAFKA_PROCESS_ROLES"].split(",")) == {"broker", "controller"}
    node = env["KAFKA_NODE_ID"]
    assert env["KAFKA_CONTROLLER_QUORUM_VOTERS"] == f"{node}@kafka:9093"
    assert "CONTROLLER://" in env["KAFKA_LISTENERS"]
    assert "PLAINTEXT://kafka:9092" in env["KAFKA_ADVERTISED_LISTENERS"]
    assert len(env["CLUSTER_ID"]) == 22
    # The broker accepts the daemon's largest message.
    assert int(env["KAFKA_MESSAGE_MAX_BYTES"]) >= MonitorConfig().kafka.max_message_bytes


def test_compose_kafka_init_creates_every_configured_topic(compose):
    script = " ".join(compose["services"]["kafka-init"]["command"])
    created = set(re.search(r"for topic in ([^;]+);", script).group(1).split())
    assert created == set(MonitorConfig().topics.model_dump().values())


def test_compose_tfserving_flags_point_at_mounted_files(compose):
    service = compose["services"]["tfserving"]
    targets = {target for _, _, target in _volume_entries(service)}
    flags = dict(arg.lstrip("-").split("=", 1) for arg in service["command"] if "=" in arg)
    for flag in ("model_config_file", "batching_parameters_file", "monitoring_config_file"):
        assert flags[flag] in targets, f"--{flag}={flags[flag]} is not mounted"
    assert flags["port"] == "8500" and flags["rest_api_port"] == "8501"
    devices = service["deploy"]["resources"]["reservations"]["devices"]
    assert devices[0]["driver"] == "nvidia"


def test_compose_daemon_config_mount_and_ports(compose):
    daemon = compose["services"]["insar-monitor"]
    targets = {target: source for _, source, target in _volume_entries(daemon)}
    assert targets["/etc/insar-monitor/config.yaml"] == "./insar-monitor.yaml"
    assert "/var/lib/insar-monitor" in targets
    assert {"8088:8088", "9464:9464"} <= set(daemon["ports"])


def test_compose_daemon_config_loads_with_the_compose_environment(compose):
    env = _env_example()
    environ = {
        k: _interpolate(str(v), env)
        for k, v in compose["services"]["insar-monitor"]["environment"].items()
    }
    path = COMPOSE_DIR / "insar-monitor.yaml"
    _skip_if_metrics_pending(_load_yaml(path), environ)
    config = load_config(path, environ=environ)
    assert config.database_url().startswith("postgresql+psycopg://insar:")
    assert config.database_url().endswith("@postgres:5432/insar")
    assert [t.get_secret_value() for t in config.api.tokens] == ["change-me-token"]
    assert config.metrics.host == "0.0.0.0"


@pytest.mark.skipif(shutil.which("amtool") is None, reason="no amtool")
def test_alertmanager_config_passes_amtool():
    result = subprocess.run(
        ["amtool", "check-config", str(COMPOSE_DIR / "alertmanager.yml")],
        capture_output=True, text=True, timeout=60, check=False,
    )
    assert result.returncode == 0, result.stdout + result.stderr


def test_alertmanager_config_routes_to_a_declared_receiver():
    config = _load_yaml(COMPOSE_DIR / "alertmanager.yml")
    receivers = {r["name"] for r in config["receivers"]}
    assert config["route"]["receiver"] in receivers
    for receiver in config["receivers"]:
        for hook in receiver.get("webhook_configs", []):
            assert hook["url"].startswith(("http://", "https://"))


# ------------------------------------------------------------------------------ Dockerfile
def _dockerfile_instructions() -> list[tuple[str, str]]:
    """(INSTRUCTION, arguments) with continuation lines joined and comments dropped."""
    logical, current = [], ""
    for raw in DOCKERFILE.read_text().splitlines():
        line = raw.strip()
        if not current and (not line or line.startswith("#")):
            continue
        if current and line.startswith("#"):
            continue
        if line.endswith("\\"):
            current += line[:-1] + " "
            continue
        current += line
        logical.append(current)
        current = ""
    out = []
    for line in logical:
        instruction, _, args = line.partition(" ")
        out.append((instruction.upper(), args.strip()))
    return out


def _dockerignore_patterns() -> list[str]:
    lines = (REPO / ".dockerignore").read_text().splitlines()
    return [ln.strip().lstrip("/") for ln in lines if ln.strip() and not ln.startswith("#")]


def _ignored(path: str, patterns: list[str]) -> bool:
    parts = Path(path).parts
    candidates = ["/".join(parts[: i + 1]) for i in range(len(parts))]
    for pattern in patterns:
        if pattern.startswith("!"):
            continue
        bare = pattern.removeprefix("**/")
        for candidate in candidates:
            if fnmatch.fnmatch(candidate, pattern) or (
                pattern.startswith("**/") and fnmatch.fnmatch(Path(candidate).name, bare)
            ):
                return True
    return False


def test_dockerfile_copy_sources_exist_and_are_in_the_context():
    patterns = _dockerignore_patterns()
    copies = [args for ins, args in _dockerfile_instructions() if ins in ("COPY", "ADD")]
    checked = 0
    for args in copies:
        words = shlex.split(args)
        if any(w.startswith("--from=") for w in words):
            continue
        sources = [w for w in words if not w.startswith("--")][:-1]
        for source in sources:
            matches = list(REPO.glob(source.rstrip("/")))
            assert matches, f"COPY source {source} does not exist"
            assert not _ignored(source.rstrip("/"), patterns), f"{source} is in .dockerignore"
            checked += 1
    assert checked >= 5


def test_dockerfile_runs_the_daemon_as_non_root_with_a_healthcheck():
    instructions = _dockerfile_instructions()
    text = DOCKERFILE.read_text()
    froms = [args for ins, args in instructions if ins == "FROM"]
    assert any("python:3.11-slim" in f or "PYTHON_IMAGE" in f for f in froms)
    assert "python:3.11-slim" in text and "openjdk-17-jre-headless" in text
    last_stage = text.rsplit("\nFROM ", 1)[1]
    users = re.findall(r"(?m)^USER\s+(\S+)", last_stage)
    assert users and not users[-1].startswith(("root", "0")), "daemon stage runs as root"
    exposed = {p for ins, args in instructions if ins == "EXPOSE" for p in args.split()}
    assert {"9464", "8088"} <= exposed
    healthcheck = [args for ins, args in instructions if ins == "HEALTHCHECK"]
    assert healthcheck and "9464/healthz" in healthcheck[-1]
    entrypoint = [args for ins, args in instructions if ins == "ENTRYPOINT"][-1]
    assert "insar-monitor" in json.loads(entrypoint)
    cmd = json.loads([args for ins, args in instructions if ins == "CMD"][-1])
    assert cmd == ["run", "--config", "/etc/insar-monitor/config.yaml"]
    assert re.search(r"(?m)^LABEL\s", text)


def test_dockerignore_keeps_local_state_out_of_the_context():
    patterns = _dockerignore_patterns()
    for path in (".venv", "build", ".git", ".pytest_cache", ".ruff_cache",
                 "monitor/__pycache__", "deploy/compose/.env"):
        assert _ignored(path, patterns), f"{path} would be sent to the Docker daemon"
    for path in ("pyproject.toml", "README.md", "monitor", "serving/models", "deploy/config"):
        assert not _ignored(path, patterns)


# -------------------------------------------------------------------------- daemon configs
@pytest.mark.parametrize("path", DAEMON_CONFIGS, ids=_rel)
def test_daemon_config_loads(path: Path):
    _skip_if_metrics_pending(_load_yaml(path))
    config = load_config(path, environ={})
    assert config.storage.state_dir == Path("/var/lib/insar-monitor")


def test_compose_daemon_config_points_at_the_compose_services():
    data = _load_yaml(COMPOSE_DIR / "insar-monitor.yaml")
    assert data["models"] == data["models"] | {"backend": "grpc", "grpc_target": "tfserving:8500"}
    assert data["kafka"]["bootstrap_servers"] == "kafka:9092"
    # kafka-python 3.0.12 recognises a 3.x/4.x broker through ApiVersions: no pin.
    assert data["kafka"]["api_version"] is None
    assert data["api"] == data["api"] | {"enabled": True, "host": "0.0.0.0", "port": 8088}
    assert data["metrics"] == {"enabled": True, "host": "0.0.0.0", "port": 9464}
    assert data["pipeline"]["runner"] == "FnApiRunner"


def _runner_options(path: Path):
    from pipelines.streaming import streaming_options

    pipeline = PipelineConfig.model_validate(_load_yaml(path)["pipeline"])
    return pipeline, streaming_options(pipeline.runner, dict(pipeline.runner_options))


def test_flink_runner_options_parse_as_beam_pipeline_options():
    from apache_beam.options import pipeline_options as po

    pipeline, options = _runner_options(FLINK_CONFIG)
    assert pipeline.runner == "FlinkRunner"
    assert options.view_as(po.StandardOptions).streaming is True
    flink = options.view_as(po.FlinkRunnerOptions)
    assert flink.flink_master == "insar-flink-rest:8081"
    assert flink.flink_version == "1.20"
    assert flink.parallelism == 4
    portable = options.view_as(po.PortableOptions)
    assert (portable.environment_type, portable.environment_config) == (
        "EXTERNAL", "localhost:50000"
    )
    # Java FlinkPipelineOptions, re-parsed by PortableRunner once the job server lists them.
    java_only = {"checkpointing_interval", "checkpointing_mode", "min_pause_between_checkpoints"}
    known = set(options.get_all_options(drop_default=True))
    assert set(pipeline.runner_options) - known <= java_only
    assert int(pipeline.runner_options["checkpointing_interval"]) > 0
    assert "streaming" not in pipeline.runner_options  # a flag: --streaming=true is an error


def test_dataflow_runner_options_parse_as_beam_pipeline_options():
    from apache_beam.options import pipeline_options as po

    pipeline, options = _runner_options(DATAFLOW_CONFIG)
    assert pipeline.runner == "DataflowRunner"
    assert options.view_as(po.StandardOptions).streaming is True
    gcp = options.view_as(po.GoogleCloudOptions)
    assert gcp.project and gcp.region and gcp.temp_location.startswith("gs://")
    assert gcp.service_account_email.endswith(".iam.gserviceaccount.com")
    assert options.view_as(po.DebugOptions).experiments == ["use_runner_v2"]
    assert options.view_as(po.WorkerOptions).sdk_container_image
    assert set(pipeline.runner_options) <= set(options.get_all_options(drop_default=True))


# ------------------------------------------------------------------------------ Kubernetes
def _k8s_documents() -> list[tuple[Path, dict[str, Any]]]:
    docs = []
    for path in sorted(K8S_DIR.glob("*.yaml")):
        if path.name == "kustomization.yaml":
            continue
        docs += [(path, d) for d in yaml.safe_load_all(path.read_text()) if d is not None]
    return docs


def test_k8s_manifests_have_api_version_kind_and_name():
    docs = _k8s_documents()
    assert len(docs) >= 6
    for path, doc in docs:
        for key in ("apiVersion", "kind"):
            assert doc.get(key), f"{path.name}: document without {key}"
        assert doc.get("metadata", {}).get("name"), f"{path.name}: {doc['kind']} without a name"


def test_kustomization_resources_exist_and_leave_the_secret_template_out():
    kustomization = _load_yaml(K8S_DIR / "kustomization.yaml")
    assert kustomization["kind"] == "Kustomization"
    for resource in kustomization["resources"]:
        assert (K8S_DIR / resource).is_file(), f"kustomization lists missing {resource}"
    assert "secret.example.yaml" not in kustomization["resources"]


def _by_kind(kind: str) -> list[dict[str, Any]]:
    return [d for _, d in _k8s_documents() if d["kind"] == kind]


def test_flink_deployment_has_the_beam_worker_pool_sidecar():
    (deployment,) = _by_kind("FlinkDeployment")
    assert deployment["apiVersion"] == "flink.apache.org/v1beta1"
    spec = deployment["spec"]
    flink_version = _load_yaml(FLINK_CONFIG)["pipeline"]["runner_options"]["flink_version"]
    assert spec["flinkVersion"] == "v" + flink_version.replace(".", "_")
    assert "job" not in spec  # session cluster: Beam's job server submits the job
    conf = spec["flinkConfiguration"]
    assert conf["state.backend.type"] == "rocksdb"
    assert conf["execution.checkpointing.interval"]
    assert conf["state.savepoints.dir"]
    for role in ("jobManager", "taskManager"):
        assert spec[role]["resource"]["memory"] and spec[role]["resource"]["cpu"]
    containers = {c["name"]: c for c in spec["taskManager"]["podTemplate"]["spec"]["containers"]}
    pool = containers["beam-worker-pool"]
    assert pool["args"] == ["--worker_pool"]
    assert [p["containerPort"] for p in pool["ports"]] == [50000]
    assert "flink-main-container" in containers


def test_k8s_volumes_and_config_refer_to_declared_objects():
    claims = {d["metadata"]["name"] for d in _by_kind("PersistentVolumeClaim")}
    config_maps = {d["metadata"]["name"] for d in _by_kind("ConfigMap")}
    pod_specs = [d["spec"]["template"]["spec"] for d in _by_kind("Job")]
    (deployment,) = _by_kind("FlinkDeployment")
    pod_specs += [deployment["spec"][r]["podTemplate"]["spec"] for r in ("jobManager",
                                                                          "taskManager")]
    for spec in pod_specs:
        volumes = {v["name"]: v for v in spec.get("volumes", [])}
        for container in spec["containers"]:
            for mount in container.get("volumeMounts", []):
                assert mount["name"] in volumes, f"mount {mount['name']} without a volume"
        for volume in volumes.values():
            if "persistentVolumeClaim" in volume:
                assert volume["persistentVolumeClaim"]["claimName"] in claims
            if "configMap" in volume:
                assert volume["configMap"]["name"] in config_maps


def test_k8s_config_map_is_the_flink_config():
    (config_map,) = _by_kind("ConfigMap")
    assert config_map["data"]["config.yaml"] == FLINK_CONFIG.read_text()


def test_submitter_job_config_loads_with_its_environment():
    (job,) = _by_kind("Job")
    (container,) = job["spec"]["template"]["spec"]["containers"]
    assert container["args"] == ["run", "--config", "/etc/insar-monitor/config.yaml"]
    environ = {e["name"]: e["value"] for e in container["env"] if "value" in e}
    assert environ["INSAR_MONITOR__PIPELINE__RUNNER"] == "FlinkRunner"
    secrets = [e for e in container["env"] if "valueFrom" in e]
    assert all("secretKeyRef" in e["valueFrom"] for e in secrets)
    _skip_if_metrics_pending(_load_yaml(FLINK_CONFIG), environ)
    config = load_config(FLINK_CONFIG, environ=environ)
    assert config.pipeline.runner == "FlinkRunner"
    assert config.pipeline.runner_options["environment_type"] == "EXTERNAL"


@pytest.mark.skipif(shutil.which("kubectl") is None, reason="no kubectl")
def test_kustomize_builds_offline():
    result = subprocess.run(
        ["kubectl", "kustomize", str(K8S_DIR)],
        capture_output=True, text=True, timeout=120, check=False,
    )
    assert result.returncode == 0, result.stderr
    docs = [d for d in yaml.safe_load_all(result.stdout) if d]
    kinds = sorted(d["kind"] for d in docs)
    assert kinds == sorted(["ConfigMap", "FlinkDeployment", "Job"] + ["PersistentVolumeClaim"] * 3)
    assert {d["metadata"]["namespace"] for d in docs} == {"insar-monitor"}


def test_secret_template_holds_placeholders_only():
    (secret,) = _by_kind("Secret")
    for value in secret["stringData"].values():
        assert "CHANGE-ME" in value


# ------------------------------------------------------------------------------- systemd
KNOWN_SECTIONS = {"Unit", "Service", "Install"}


def _parse_unit(path: Path) -> dict[str, dict[str, list[str]]]:
    sections: dict[str, dict[str, list[str]]] = {}
    current = None
    lines = iter(enumerate(path.read_text().splitlines(), 1))
    for number, line in lines:
        stripped = line.strip()
        if not stripped or stripped.startswith(("#", ";")):
            continue
        header = re.fullmatch(r"\[([A-Za-z]+)\]", stripped)
        if header:
            current = header.group(1)
            assert current in KNOWN_SECTIONS, f"{path.name}:{number}: unknown [{current}]"
            sections.setdefault(current, {})
            continue
        match = re.fullmatch(r"([A-Za-z][A-Za-z0-9]*)=(.*)", stripped)
        assert match, f"{path.name}:{number}: not Key=Value: {line!r}"
        assert current is not None, f"{path.name}:{number}: key outside a section"
        value = match.group(2)
        while value.endswith("\\"):
            value = value[:-1] + next(lines)[1].strip()
        sections[current].setdefault(match.group(1), []).append(value)
    return sections


@pytest.mark.parametrize("path", SYSTEMD_UNITS, ids=lambda p: p.name)
def test_systemd_unit_syntax_and_essentials(path: Path):
    unit = _parse_unit(path)
    service = unit["Service"]
    assert service["ExecStart"][0].startswith("/opt/insar-monitor/.venv/bin/insar-monitor ")
    assert service["Restart"] == ["on-failure"]
    assert service["NoNewPrivileges"] == ["yes"]
    assert service["User"] == ["insar-monitor"] and service["Group"] == ["insar-monitor"]
    assert service["ProtectSystem"] == ["strict"]
    assert service["ReadWritePaths"] == ["/var/lib/insar-monitor"]
    assert service["CapabilityBoundingSet"] == [""]
    assert service["EnvironmentFile"] == ["-/etc/insar-monitor/secrets.env"]
    assert unit["Install"]["WantedBy"] == ["multi-user.target"]


def test_systemd_daemon_unit_lets_a_pass_finish():
    service = _parse_unit(DEPLOY / "systemd" / "insar-monitor.service")["Service"]
    assert service["ExecStart"] == [
        "/opt/insar-monitor/.venv/bin/insar-monitor run --config /etc/insar-monitor/config.yaml"
    ]
    assert service["KillSignal"] == ["SIGTERM"]
    assert service["TimeoutStopSec"] == ["120"]
    assert service["StateDirectory"] == ["insar-monitor"]
    assert service["MemoryDenyWriteExecute"] == ["no"]  # JVM / TensorFlow JIT
    for key in ("MemoryMax", "CPUQuota", "TasksMax", "LimitNOFILE", "SystemCallFilter"):
        assert service.get(key), f"insar-monitor.service: no {key}="


@pytest.mark.skipif(shutil.which("systemd-analyze") is None, reason="no systemd-analyze")
def test_systemd_analyze_verify_finds_nothing_but_the_missing_binary():
    result = subprocess.run(
        ["systemd-analyze", "verify", "--man=no", *map(str, SYSTEMD_UNITS)],
        capture_output=True, text=True, timeout=120, check=False,
    )
    # The venv is not installed on the test machine; any other message is a real problem.
    expected = re.compile(r"Command /opt/insar-monitor/\.venv/bin/insar-monitor is not executable")
    unexpected = [
        line for line in (result.stdout + result.stderr).splitlines()
        if line.strip() and not expected.search(line)
    ]
    assert not unexpected, "\n".join(unexpected)


# ----------------------------------------------------------------------------- TF-Serving
def test_tfserving_models_config_serves_exactly_the_committed_models():
    text = (DEPLOY / "tfserving" / "models.config").read_text()
    text = "\n".join(line.split("#", 1)[0] for line in text.splitlines())
    configured = dict(re.findall(r'name:\s*"([^"]+)"\s*base_path:\s*"([^"]+)"', text))
    model_dirs = {
        d.name for d in (REPO / "serving" / "models").iterdir()
        if d.is_dir() and any(v.is_dir() and v.name.isdigit() for v in d.iterdir())
    }
    assert set(configured) == model_dirs
    for name, base_path in configured.items():
        assert base_path == f"/models/{name}"
        versions = [v for v in (REPO / "serving" / "models" / name).iterdir() if v.name.isdigit()]
        assert all((v / "saved_model.pb").is_file() for v in versions)
    # Every model of the contract is served, the delineation U-Net included.
    from serving.signatures import SIGNATURES

    assert set(SIGNATURES) == set(configured)
    assert "ada_delineator" in configured


def test_every_served_model_is_health_checked_and_shipped_in_the_images():
    from serving.signatures import SIGNATURES

    compose_text = COMPOSE_FILE.read_text()
    (loop,) = re.findall(r"for m in ([\w ]+); do", compose_text)
    assert set(loop.split()) == set(SIGNATURES)
    dockerfile = DOCKERFILE.read_text()
    for name in SIGNATURES:
        assert dockerfile.count(f"models/{name}") >= 2, f"{name} not copied into both images"
