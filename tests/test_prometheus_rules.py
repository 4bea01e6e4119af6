"""The Prometheus configuration and alerting rules in deploy/prometheus/.

promtool (from Debian's ``prometheus`` package, ``make system-deps``) checks the scrape
configuration and the rule files and runs the rule unit tests in deploy/prometheus/tests/.
Without promtool those tests skip, except under CI, where a skip would prove nothing. The
Python tests need no promtool: every ``insar_*`` metric the rules read must be one the daemon
exposes (:data:`monitor.metrics.METRIC_NAMES`), and every alert must be complete and have a
unit test that fires and one that must not.
"""

from __future__ import annotations

import re
import shutil
import subprocess
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import yaml

from monitor.metrics import METRIC_NAMES
from tests.environment import unavailable

REPO_ROOT = Path(__file__).resolve().parent.parent
PROMETHEUS_DIR = REPO_ROOT / "deploy" / "prometheus"
CONFIG = PROMETHEUS_DIR / "prometheus.yml"
RULE_FILES = sorted((PROMETHEUS_DIR / "rules").glob("*.yml"))
TEST_FILES = sorted((PROMETHEUS_DIR / "tests").glob("*.yml"))

# Series a histogram exposes besides its family name.
_HISTOGRAM_SUFFIXES = ("_bucket", "_sum", "_count")
# A metric name of ours: not preceded by a name character or a colon (recording rules are
# named insar:...), so label values such as "insar-monitor" never match.
_INSAR_NAME = re.compile(r"(?<![\w:])insar_[A-Za-z0-9_]*")
_STRING_LITERAL = re.compile(r'"(?:[^"\\]|\\.)*"|\'(?:[^\'\\]|\\.)*\'|`[^`]*`')


@pytest.fixture(scope="module")
def promtool() -> str:
    path = shutil.which("promtool")
    if path is None:
        unavailable(
            "promtool not found: run `make system-deps` (installs Debian's prometheus package)"
        )
    return path


def _run(promtool: str, *args: str | Path) -> None:
    cmd = [promtool, *map(str, args)]
    proc = subprocess.run(
        cmd, cwd=REPO_ROOT, capture_output=True, text=True, timeout=120, check=False
    )
    assert proc.returncode == 0, (
        f"{' '.join(cmd)} exited {proc.returncode}\n"
        f"--- stdout\n{proc.stdout}\n--- stderr\n{proc.stderr}"
    )


def test_files_exist() -> None:
    assert CONFIG.is_file()
    assert RULE_FILES, "no rule files in deploy/prometheus/rules/"
    assert TEST_FILES, "no rule unit tests in deploy/prometheus/tests/"


# ----------------------------------------------------------------------------- promtool
def test_promtool_check_config(promtool: str) -> None:
    # Also checks the rule files, which it resolves relative to the config file.
    _run(promtool, "check", "config", CONFIG)


def test_promtool_check_rules(promtool: str) -> None:
    _run(promtool, "check", "rules", *RULE_FILES)


def test_promtool_test_rules(promtool: str) -> None:
    _run(promtool, "test", "rules", *TEST_FILES)


# ----------------------------------------------------------------------------- metric names
def _load(path: Path) -> dict[str, Any]:
    data = yaml.safe_load(path.read_text(encoding="utf-8"))
    assert isinstance(data, dict), f"{path} is not a YAML mapping"
    return data


def _rules() -> Iterator[tuple[Path, dict[str, Any]]]:
    for path in RULE_FILES:
        for group in _load(path)["groups"]:
            for rule in group["rules"]:
                yield path, rule


def _alerts() -> dict[str, dict[str, Any]]:
    return {rule["alert"]: rule for _, rule in _rules() if "alert" in rule}


def insar_metric_names(text: str) -> set[str]:
    """The ``insar_*`` metric families named in a PromQL expression or text."""
    names = set()
    for name in _INSAR_NAME.findall(_STRING_LITERAL.sub('""', text)):
        for suffix in _HISTOGRAM_SUFFIXES:
            if name.endswith(suffix) and name.removesuffix(suffix) in METRIC_NAMES:
                name = name.removesuffix(suffix)
                break
        names.add(name)
    return names


def test_metric_name_parser() -> None:
    expr = (
        "histogram_quantile(0.9, sum by (le) (rate(insar_inference_seconds_bucket[5m]))) "
        '/ insar:inference_error_ratio:rate10m and up{job="insar-monitor", x="insar_not_one"}'
        " + insar_passes_total"
    )
    assert insar_metric_names(expr) == {"insar_inference_seconds", "insar_passes_total"}
    # A suffix that is part of a family's own name stays.
    assert insar_metric_names("insar_frames_scored_total") == {"insar_frames_scored_total"}


def test_rule_expressions_use_only_exposed_metrics() -> None:
    used: dict[str, set[str]] = {}
    for path, rule in _rules():
        name = rule.get("alert") or rule["record"]
        for metric in insar_metric_names(rule["expr"]):
            used.setdefault(metric, set()).add(f"{path.name}: {name}")
    assert used, "no insar_* metric found in any rule expression"
    unknown = {m: sorted(where) for m, where in used.items() if m not in METRIC_NAMES}
    assert not unknown, f"rules read metrics that monitor.metrics does not expose: {unknown}"


def test_annotations_name_only_exposed_metrics() -> None:
    # Runbook hints that name a metric must name one that exists.
    unknown = {}
    for name, rule in _alerts().items():
        text = " ".join(str(v) for v in rule.get("annotations", {}).values())
        missing = {m for m in _INSAR_NAME.findall(text) if m not in METRIC_NAMES}
        if missing:
            unknown[name] = sorted(missing)
    assert not unknown, f"annotations name metrics monitor.metrics does not expose: {unknown}"


def test_unit_test_series_are_exposed_metrics() -> None:
    unknown = set()
    for path in TEST_FILES:
        for case in _load(path)["tests"]:
            for series in case.get("input_series", []):
                unknown |= insar_metric_names(series["series"]) - set(METRIC_NAMES)
    assert not unknown, f"rule tests feed metrics monitor.metrics does not expose: {unknown}"


# ----------------------------------------------------------------------------- completeness
EXPECTED_ALERTS = {
    "InsarMonitorDown", "InsarPassesStalled", "InsarPassesFailing", "InsarConsumerLagRising",
    "InsarInferenceErrors", "TFServingDown", "InsarDeadLettersGrowing",
    "InsarWebhookDeliveriesDead", "InsarWebhookBacklog",
}


def test_alerts_are_complete() -> None:
    alerts = _alerts()
    assert set(alerts) >= EXPECTED_ALERTS, EXPECTED_ALERTS - set(alerts)
    for name, rule in alerts.items():
        assert rule.get("for"), f"{name}: no `for`"
        assert rule.get("labels", {}).get("severity") in ("warning", "critical"), name
        annotations = rule.get("annotations", {})
        for key in ("summary", "description", "runbook"):
            assert annotations.get(key), f"{name}: no {key} annotation"
        assert "$labels." in annotations["description"] + annotations["summary"], (
            f"{name}: summary and description say nothing about which series alerted"
        )


def test_every_alert_has_a_firing_and_a_silent_unit_test() -> None:
    fires: set[str] = set()
    silent: set[str] = set()
    for path in TEST_FILES:
        for case in _load(path)["tests"]:
            for check in case.get("alert_rule_test", []):
                (fires if check.get("exp_alerts") else silent).add(check["alertname"])
    alerts = set(_alerts())
    assert alerts - fires == set(), f"alerts no test sees firing: {sorted(alerts - fires)}"
    assert alerts - silent == set(), f"alerts no test sees silent: {sorted(alerts - silent)}"
