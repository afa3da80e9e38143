"""ops/ha/alerts.yml: valid for promtool and unit-tested by promtool (split brain, no active node)."""

from __future__ import annotations

import shutil
import subprocess
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
RULES = ROOT / "ops" / "ha" / "alerts.yml"
RULE_TESTS = Path(__file__).with_name("ha_alerts_test.yml")
PROMTOOL = shutil.which("promtool")
needs_promtool = pytest.mark.skipif(
    PROMTOOL is None, reason="promtool not found: install Debian package `prometheus` (apt-get install -y prometheus)")


@needs_promtool
def test_promtool_checks_the_ha_rules() -> None:
    result = subprocess.run([PROMTOOL, "check", "rules", str(RULES)], capture_output=True, text=True, timeout=60)
    assert result.returncode == 0, result.stdout + result.stderr


@needs_promtool
def test_promtool_unit_tests_of_the_ha_rules() -> None:
    result = subprocess.run([PROMTOOL, "test", "rules", str(RULE_TESTS)], capture_output=True, text=True,
                            timeout=60)
    assert result.returncode == 0, result.stdout + result.stderr


def test_the_notify_script_writes_the_metric_the_rules_read() -> None:
    notify = (ROOT / "ops" / "ha" / "helppoint-notify.sh").read_text()
    assert "helppoint_ha_master $master" in notify and "helppoint_ha.prom" in notify
    assert "helppoint_ha_master" in RULES.read_text()
