"""Review: a live-call warning the call layer refuses is still audited (every other refusal is)."""

from __future__ import annotations

from aiohttp.test_utils import TestClient, TestServer
from apihelp import Fakes, auth, services_for

from gateway.api import create_app
from gateway.store import Records


async def test_a_refused_warning_is_audited(records: Records, fakes: Fakes, tokens: dict[str, str]) -> None:
    app = create_app(services_for(records, fakes, play_warning=fakes.refusing))
    async with TestClient(TestServer(app)) as client:
        response = await client.post("/api/calls/live-1/warning", json={"warning": 1},
                                     headers=auth(tokens["operator"]))
        assert response.status == 409
    rows, _ = await records.list_audit(action="call.warning")
    assert [(r.actor, r.target, r.detail["played"]) for r in rows] == [("operator-1", "live-1", False)]
    assert rows[0].detail["error"] == "help point busy with a live call"
