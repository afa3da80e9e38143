"""ops/prometheus/alerts.yml and ops/ha/alerts.yml: valid for promtool, unit-tested by promtool (the gateway's
alerts; split brain and no active node for the HA pair), and every metric they use exists."""

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
HA_RULES = ROOT / "ops" / "ha" / "alerts.yml"
HA_RULE_TESTS = Path(__file__).with_name("ha_alerts_test.yml")
RULE_SETS = pytest.mark.parametrize(("rules", "rule_tests"), [(RULES, RULE_TESTS), (HA_RULES, HA_RULE_TESTS)],
                                    ids=["gateway", "ha"])
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
@RULE_SETS
def test_promtool_check_rules(rules: Path, rule_tests: Path) -> None:
    result = subprocess.run([PROMTOOL, "check", "rules", str(rules)], capture_output=True, text=True, timeout=60)
    assert result.returncode == 0, result.stdout + result.stderr
    assert "SUCCESS" in result.stdout


@needs_promtool
@RULE_SETS
def test_promtool_rule_unit_tests(rules: Path, rule_tests: Path) -> None:
    result = subprocess.run([PROMTOOL, "test", "rules", str(rule_tests)], capture_output=True, text=True,
                            timeout=60)
    assert result.returncode == 0, result.stdout + result.stderr


def test_the_ha_notify_script_writes_the_metric_the_ha_rules_read() -> None:
    notify = (ROOT / "ops" / "ha" / "helppoint-notify.sh").read_text()
    assert "helppoint_ha_master $master" in notify and "helppoint_ha.prom" in notify
    assert "helppoint_ha_master" in HA_RULES.read_text()


def test_every_gateway_metric_in_the_rules_exists() -> None:
    exprs = [rule["expr"] for group in yaml.safe_load(RULES.read_text())["groups"] for rule in group["rules"]]
    used = {name for expr in exprs for name in re.findall(r"\b(gateway_[a-z_]+)", expr)}
    assert used and used <= exported_names(), used - exported_names()
    alerts = {rule["alert"] for group in yaml.safe_load(RULES.read_text())["groups"] for rule in group["rules"]}
    assert {"HelpPointDown", "RoomNotAnswering", "FailoverRateHigh", "RecordingFailures", "DbQueueBackingUp",
            "GatewayDown"} <= alerts
