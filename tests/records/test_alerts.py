"""ops/prometheus/alerts.yml: valid for promtool, unit-tested by promtool, and every metric it uses exists."""

from __future__ import annotations

import re
import shutil
import subprocess
from pathlib import Path

import pytest
import yaml

from gateway import metrics

ROOT = Path(__file__).resolve().parents[2]
RULES = ROOT / "ops" / "prometheus" / "alerts.yml"
RULE_TESTS = Path(__file__).with_name("alerts_test.yml")
PROMTOOL = shutil.which("promtool")
needs_promtool = pytest.mark.skipif(
    PROMTOOL is None, reason="promtool not found: install Debian package `prometheus` (apt-get install -y prometheus)")


def exported_names() -> set[str]:
    """Every sample name the gateway's registry can expose (histogram and counter suffixes included)."""
    names = set()
    for collector in metrics.REGISTRY._collector_to_names:  # noqa: SLF001 - the registry's own index
        names.update(metrics.REGISTRY._collector_to_names[collector])
    return names


@needs_promtool
def test_promtool_check_rules() -> None:
    result = subprocess.run([PROMTOOL, "check", "rules", str(RULES)], capture_output=True, text=True, timeout=60)
    assert result.returncode == 0, result.stdout + result.stderr
    assert "SUCCESS" in result.stdout


@needs_promtool
def test_promtool_rule_unit_tests() -> None:
    result = subprocess.run([PROMTOOL, "test", "rules", str(RULE_TESTS)], capture_output=True, text=True,
                            timeout=60)
    assert result.returncode == 0, result.stdout + result.stderr


def test_every_gateway_metric_in_the_rules_exists() -> None:
    exprs = [rule["expr"] for group in yaml.safe_load(RULES.read_text())["groups"] for rule in group["rules"]]
    used = {name for expr in exprs for name in re.findall(r"\b(gateway_[a-z_]+)", expr)}
    assert used and used <= exported_names(), used - exported_names()
    alerts = {rule["alert"] for group in yaml.safe_load(RULES.read_text())["groups"] for rule in group["rules"]}
    assert {"HelpPointDown", "RoomNotAnswering", "FailoverRateHigh", "RecordingFailures", "DbQueueBackingUp",
            "GatewayDown"} <= alerts
