"""ops/grafana/helppoint-gateway.json: a loadable dashboard whose queries use only metrics the gateway exports."""

from __future__ import annotations

import json
import re
from pathlib import Path

from test_alerts import exported_names

DASHBOARD = Path(__file__).resolve().parents[2] / "ops" / "grafana" / "helppoint-gateway.json"


def test_dashboard_shape_and_metrics() -> None:
    doc = json.loads(DASHBOARD.read_text())
    assert doc["schemaVersion"] == 39 and doc["uid"] == "helppoint-gateway"
    panels = doc["panels"]
    assert len({p["id"] for p in panels}) == len(panels)
    exprs = [t["expr"] for p in panels for t in p.get("targets", [])]
    used = {name for expr in exprs for name in re.findall(r"\b(gateway_[a-z_]+)", expr)}
    missing = {n for n in used if n not in exported_names()}
    assert not missing, missing
    for name in ("gateway_help_point_up", "gateway_time_to_answer_seconds_bucket", "gateway_failovers_total",
                 "gateway_recordings_failed_total", "gateway_rtp_loss_ratio_bucket", "gateway_rtp_jitter_seconds_bucket",
                 "gateway_db_queue_depth"):
        assert name in used, name
    for panel in panels:
        grid = panel["gridPos"]
        assert grid["x"] + grid["w"] <= 24, panel["title"]
        assert "datasource" in panel or panel["type"] == "row"
