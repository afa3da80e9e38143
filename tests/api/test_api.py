"""The /api routes over a real store (SQLite and PostgreSQL): auth, roles, filters, triage, audit, errors."""

from __future__ import annotations

import logging
from pathlib import Path
from typing import Any

import pytest
from aiohttp.test_utils import TestClient, TestServer
from apihelp import ROLES, T0, Fakes, auth, seed, services_for

from gateway.api import create_app
from gateway.api.routes import ROUTES
from gateway.dialplan import Inventory, load_dialplan_set
from gateway.records import role_allows
from gateway.service_records import dialplan_simulator
from gateway.store import Records, Store

Client = TestClient[Any, Any]
SUTTON = Path(__file__).resolve().parents[2] / "dialplans" / "sutton.yaml"


async def test_health_and_metrics_still_work_with_a_bare_health_function() -> None:
    async with TestClient(TestServer(create_app(lambda: {"status": "draining"}))) as client:
        response = await client.get("/health")
        assert response.status == 503 and (await response.json())["status"] == "draining"
        response = await client.get("/metrics")
        assert response.status == 200 and "gateway_db_queue_depth" in await response.text()
        response = await client.get("/api/activations", headers=auth("x"))
        assert response.status == 503
        assert (await response.json())["error"] == "activation records are not available"


async def test_openapi_document_covers_every_route_of_the_router(client: Client) -> None:
    response = await client.get("/api/openapi.json")
    assert response.status == 200
    doc = await response.json()
    assert doc["openapi"] == "3.1.0"
    served = {(r.method.lower(), r.resource.canonical) for r in client.app.router.routes()
              if r.method != "HEAD" and r.resource is not None}
    documented = {(method, path) for path, ops in doc["paths"].items() for method in ops}
    assert served == documented
    for path, ops in doc["paths"].items():
        for method, op in ops.items():
            assert op["operationId"] and op["responses"], (method, path)


def test_openapi_document_is_valid_openapi_3_1() -> None:
    validator = pytest.importorskip("openapi_spec_validator", reason="openapi-spec-validator not installed")
    from gateway.api.openapi import openapi_document

    validator.validate(openapi_document())


# -- authentication and roles ---------------------------------------------------------------------


@pytest.mark.parametrize("header, why", [
    (None, "authentication required"),
    ("Basic dXNlcjpwYXNz", "malformed"),
    ("Bearer", "malformed"),
    ("Bearer hpg_not-a-token", "unknown or revoked"),
])
async def test_401_without_a_valid_token(client: Client, header: str | None, why: str) -> None:
    headers = {"Authorization": header} if header else {}
    response = await client.get("/api/activations", headers=headers)
    assert response.status == 401
    assert why in (await response.json())["error"]
    assert response.headers["WWW-Authenticate"].startswith("Bearer")


async def test_revoked_token_is_refused(client: Client, records: Records, tokens: dict[str, str]) -> None:
    assert (await client.get("/api/activations", headers=auth(tokens["operator"]))).status == 200
    assert await records.revoke_tokens("operator-1") == 1
    assert (await client.get("/api/activations", headers=auth(tokens["operator"]))).status == 401


async def test_only_the_hash_of_a_token_is_stored(store: Store, tokens: dict[str, str]) -> None:
    from sqlalchemy import text

    async with store.engine.connect() as connection:
        rows = (await connection.execute(text("SELECT token_hash, name, role FROM api_tokens"))).all()
    stored = " ".join(" ".join(map(str, row)) for row in rows)
    assert len(rows) == 4
    assert not any(token in stored for token in tokens.values())


async def test_role_matrix_every_route_every_role(client: Client, tokens: dict[str, str]) -> None:
    """403 exactly when the role does not reach the route's role (ops and auditor are incomparable)."""
    for route in ROUTES:
        path = route.path.replace("{id}", "nope").replace("{activation_id}", "nope")
        for role in ROLES:
            response = await client.request(route.method, path, headers=auth(tokens[role]), json={})
            allowed = role_allows(role, route.role) if route.role else True
            assert (response.status == 403) is (not allowed), (route.name, role, response.status)


def test_role_hierarchy() -> None:
    assert role_allows("admin", "ops") and role_allows("admin", "auditor") and role_allows("admin", "operator")
    assert role_allows("ops", "operator") and role_allows("auditor", "operator")
    assert not role_allows("ops", "auditor") and not role_allows("auditor", "ops")
    assert not role_allows("operator", "ops") and not role_allows("ops", "admin")
    assert not role_allows("nobody", "operator") and not role_allows("admin", "nobody")


# -- listing ---------------------------------------------------------------------------------------


async def test_list_is_newest_first_and_pages_without_gaps(client: Client, records: Records,
                                                           tokens: dict[str, str]) -> None:
    ids = await seed(records, 23)
    seen: list[str] = []
    cursor = None
    pages = 0
    while True:
        params = {"limit": "10"} | ({"cursor": cursor} if cursor else {})
        response = await client.get("/api/activations", params=params, headers=auth(tokens["operator"]))
        assert response.status == 200
        page = await response.json()
        seen += [item["id"] for item in page["items"]]
        pages += 1
        cursor = page["next_cursor"]
        if cursor is None:
            break
    assert pages == 3
    assert seen == list(reversed(ids))


async def test_list_filters(client: Client, records: Records, tokens: dict[str, str]) -> None:
    ids = await seed(records, 12)
    headers = auth(tokens["operator"])

    async def listed(**params: str) -> list[str]:
        response = await client.get("/api/activations", params=params, headers=headers)
        assert response.status == 200, await response.text()
        return sorted(item["id"] for item in (await response.json())["items"])

    assert await listed(help_point="hp-outram") == sorted(ids[0::2])
    assert await listed(outcome="unanswered") == sorted(ids[1::3])
    answered = ids[0::3]
    assert await listed(room="council") == sorted(a for a in answered if int(a[-5:]) % 2)
    assert await listed(**{"from": "2026-11-01T12:10:00Z", "to": "2026-11-01T12:20:00+00:00"}) == ids[2:4]
    assert await listed(classification="unclassified") == sorted(ids)
    response = await client.post(f"/api/activations/{ids[4]}/classification", json={"classification": "prank"},
                                 headers=headers)
    assert response.status == 200
    assert await listed(classification="prank") == [ids[4]]
    assert ids[4] not in await listed(classification="unclassified")


async def test_talkdown_outcomes_can_be_listed_and_filtered(client: Client, records: Records,
                                                             tokens: dict[str, str]) -> None:
    # A talk-down's record ends as talkdown-played / -unanswered / -failed / -interrupted (README, Talk-down):
    # the outcome filter and the OpenAPI enum must accept what the API itself returns.
    from gateway.api.openapi import openapi_document
    from gateway.store import ActivationWriter

    ids = await seed(records, 3)
    writer = ActivationWriter(records, clock=lambda: T0 + 5000)
    await writer.start()
    writer.started("td-1", "hp-outram", T0 + 4000, "", 0, None, None)
    writer.ended({"activation_id": "td-1", "help_point": "hp-outram", "started_at": T0 + 4000,
                  "outcome": "talkdown-played", "answered_by": None, "answered_room": None, "ended_by": "gateway",
                  "duration": 14.3, "talk_time": 14.3, "dialplan": "", "dialplan_version": 0, "silent": False,
                  "timeline": [{"t": 0.0, "event": "talkdown-requested"}], "kind": "talkdown"})
    await writer.close()
    headers = auth(tokens["operator"])
    response = await client.get("/api/activations", params={"outcome": "talkdown-played"}, headers=headers)
    assert response.status == 200, await response.text()
    assert [item["id"] for item in (await response.json())["items"]] == ["td-1"]
    response = await client.get("/api/activations", headers=headers)
    outcomes = {item["outcome"] for item in (await response.json())["items"]}
    assert outcomes == {"talkdown-played", "answered", "unanswered", "abandoned"} and len(ids) == 3
    documented = openapi_document()["components"]["schemas"]
    enums = [schema["properties"]["outcome"]["enum"] for schema in documented.values()
             if "outcome" in schema.get("properties", {})]
    assert enums and all(outcomes <= set(enum) for enum in enums)


@pytest.mark.parametrize("params, field", [
    ({"limit": "0"}, "query.limit"),
    ({"limit": "501"}, "query.limit"),
    ({"limit": "ten"}, "query.limit"),
    ({"outcome": "won"}, "query.outcome"),
    ({"classification": "maybe"}, "query.classification"),
    ({"from": "yesterday"}, "query.from"),
    ({"from": "2026-11-01T12:00:00"}, "query.from"),
    ({"to": "0001-01-01T00:00:00+14:00"}, "query.to"),
    ({"cursor": "garbage"}, "query.cursor"),
    ({"cursor": "WyIyMDI2IiwgMV0"}, "query.cursor"),
    ({"help_pont": "x"}, "query.help_pont"),
    ({"help_point": "a\x00b"}, "query.help_point"),
])
async def test_list_bad_query_is_400_naming_the_field(client: Client, tokens: dict[str, str],
                                                      params: dict[str, str], field: str) -> None:
    response = await client.get("/api/activations", params=params, headers=auth(tokens["operator"]))
    assert response.status == 400
    body = await response.json()
    assert body["detail"]["field"] == field, body
    assert field in body["error"]


# -- one activation, triage, hold --------------------------------------------------------------------


async def test_get_activation_with_timeline_recordings_and_repeats(client: Client, records: Records,
                                                                   tokens: dict[str, str]) -> None:
    from gateway.store import ActivationWriter

    writer = ActivationWriter(records, repeat_window=120, clock=lambda: T0)
    await writer.start()
    writer.started("first", "hp-outram", T0, "town", 2, "rtsp://cam/1", "Outram Street")
    writer.event("first", {"t": 0.0, "event": "offered", "dialplan": "town"})
    writer.started("again", "hp-outram", T0 + 60, "town", 2, "rtsp://cam/1", "Outram Street")
    writer.recording("first", "/nonexistent/first.wav", 12.5, "ab" * 32, 1234)
    await writer.close()
    response = await client.get("/api/activations/first", headers=auth(tokens["operator"]))
    assert response.status == 200
    doc = await response.json()
    assert doc["outcome"] == "in-progress"
    assert doc["camera_url"] == "rtsp://cam/1" and doc["location"] == "Outram Street"
    assert doc["timeline"] == [{"t": 0.0, "event": "offered", "dialplan": "town"}]
    assert doc["repeats"] == ["again"]
    assert doc["recordings"][0]["sha256"] == "ab" * 32 and "path" not in doc["recordings"][0]
    again = await (await client.get("/api/activations/again", headers=auth(tokens["operator"]))).json()
    assert again["linked_to"] == "first"
    # A recording that is not there names what named it: the activation (path) or the recording id (query).
    for url, field in (("/api/activations/again/recording", "path.id"),
                       ("/api/activations/first/recording?recording_id=999", "query.recording_id")):
        response = await client.get(url, headers=auth(tokens["auditor"]))
        assert response.status == 404, url
        assert (await response.json())["detail"] == {"field": field, "problem": "recording not found"}, url
    for missing in ("nope", "x" * 300):
        response = await client.get(f"/api/activations/{missing}", headers=auth(tokens["operator"]))
        assert response.status == 404 and (await response.json())["error"] == "activation not found"
        assert (await response.json())["detail"] == {"field": "path.id", "problem": "activation not found"}


async def test_classify_is_audited(client: Client, records: Records, tokens: dict[str, str]) -> None:
    (aid,) = await seed(records, 1)
    response = await client.post(f"/api/activations/{aid}/classification",
                                 json={"classification": "genuine", "note": "assault reported"},
                                 headers=auth(tokens["operator"]))
    assert response.status == 200
    doc = await response.json()
    assert doc["classification"] == "genuine" and doc["note"] == "assault reported"
    assert doc["retention_until"].startswith("2027-11-01")  # genuine: 365 days
    rows, _ = await records.list_audit(action="activation.classify")
    assert [(r.actor, r.role, r.target) for r in rows] == [("operator-1", "operator", aid)]
    assert rows[0].detail["before"] == {"classification": None, "note": None}


@pytest.mark.parametrize("body, status, field", [
    ({"classification": "spam"}, 400, "body.classification"),
    ({}, 400, "body.classification"),
    ({"classification": "prank", "note": 7}, 400, "body.note"),
    ({"classification": "prank", "note": "x" * 4001}, 400, "body.note"),
    ({"classification": "prank", "colour": "red"}, 400, "body.colour"),
    ([1, 2], 400, "body"),
    ("not json", 400, "body"),
])
async def test_classify_bad_input(client: Client, records: Records, tokens: dict[str, str],
                                  body: Any, status: int, field: str) -> None:
    (aid,) = await seed(records, 1)
    kwargs: dict[str, Any] = {"data": body} if isinstance(body, str) else {"json": body}
    response = await client.post(f"/api/activations/{aid}/classification", headers=auth(tokens["operator"]),
                                 **kwargs)
    assert response.status == status
    assert (await response.json())["detail"]["field"] == field


async def test_classify_unknown_activation_is_404_and_huge_body_413(client: Client,
                                                                    tokens: dict[str, str]) -> None:
    response = await client.post("/api/activations/nope/classification", json={"classification": "test"},
                                 headers=auth(tokens["operator"]))
    assert response.status == 404 and (await response.json())["detail"]["field"] == "path.id"
    response = await client.post("/api/activations/nope/classification", data=b"{" + b" " * (2 << 20) + b"}",
                                 headers=auth(tokens["operator"]))
    assert response.status == 413
    assert "error" in await response.json()


async def test_hold_needs_auditor_and_is_audited(client: Client, records: Records,
                                                 tokens: dict[str, str]) -> None:
    (aid,) = await seed(records, 1)
    path = f"/api/activations/{aid}/hold"
    assert (await client.post(path, json={"hold": True}, headers=auth(tokens["operator"]))).status == 403
    assert (await client.post(path, json={"hold": True}, headers=auth(tokens["ops"]))).status == 403
    response = await client.post(path, json={"hold": True}, headers=auth(tokens["auditor"]))
    assert response.status == 200
    doc = await response.json()
    assert doc["hold"] is True and doc["retention_until"] is None
    response = await client.post(path, json={"hold": "yes"}, headers=auth(tokens["admin"]))
    assert response.status == 400 and (await response.json())["detail"]["field"] == "body.hold"
    rows, _ = await records.list_audit(action="activation.hold")
    assert [(r.actor, r.detail["hold"]) for r in rows] == [("auditor-1", True)]


# -- live calls, talk-down, help points, dialplans -----------------------------------------------------


async def test_warning_into_a_live_call(client: Client, records: Records, fakes: Fakes,
                                        tokens: dict[str, str]) -> None:
    headers = auth(tokens["operator"])
    response = await client.post("/api/calls/live-1/warning", json={"warning": 2}, headers=headers)
    assert response.status == 200 and (await response.json())["playing"] is True
    response = await client.post("/api/calls/gone/warning", json={"warning": 1}, headers=headers)
    assert response.status == 404
    assert (await response.json())["detail"] == {"field": "path.activation_id",
                                                 "problem": "no live call with this activation id"}
    response = await client.post("/api/calls/live-1/warning", json={"warning": 3}, headers=headers)
    assert response.status == 400 and (await response.json())["detail"]["field"] == "body.warning"
    response = await client.post("/api/calls/live-1/warning", json={"warning": True}, headers=headers)
    assert response.status == 400
    assert fakes.calls == [("warning", "live-1", 2), ("warning", "gone", 1)]
    rows, _ = await records.list_audit(action="call.warning")
    assert sorted((r.target, r.detail["played"]) for r in rows) == [("gone", False), ("live-1", True)]


async def test_talkdown(client: Client, records: Records, fakes: Fakes, tokens: dict[str, str]) -> None:
    headers = auth(tokens["operator"])
    response = await client.post("/api/talkdown", json={"help_point": "hp-outram", "warning": 1, "times": 3},
                                 headers=headers)
    assert response.status == 202
    assert (await response.json())["activation_id"] == "talkdown-1"
    response = await client.post("/api/talkdown", json={"help_point": "hp-nowhere", "warning": 1},
                                 headers=headers)
    assert response.status == 404 and "hp-nowhere" in (await response.json())["error"]
    assert (await response.json())["detail"] == {"field": "body.help_point", "problem": "unknown help point hp-nowhere"}
    response = await client.post("/api/talkdown", json={"help_point": "hp-outram", "warning": 1, "times": 11},
                                 headers=headers)
    assert response.status == 400 and (await response.json())["detail"]["field"] == "body.times"
    rows, _ = await records.list_audit(action="talkdown.start")
    # Refused attempts are accountable too (an operator tried to broadcast a warning); a request that
    # fails validation never reached the call layer and is not an attempt.
    assert sorted((r.target, r.detail["times"], r.detail["started"]) for r in rows) == [
        ("hp-nowhere", 1, False), ("hp-outram", 3, True)]
    refused = next(r for r in rows if r.target == "hp-nowhere")
    assert "hp-nowhere" in refused.detail["error"]


async def test_help_points_from_the_monitor_and_from_the_inventory(client: Client, records: Records,
                                                                   fakes: Fakes, tokens: dict[str, str]) -> None:
    response = await client.get("/api/help-points", headers=auth(tokens["operator"]))
    assert (await response.json())["help_points"][0]["state"] == "up"

    class Loc:
        lat, lon, address = 53.1, -1.2, "Outram Street"

    class HP:
        id, name, sip_user, camera_url, tags, location = "hp-outram", "Outram St", "hp1", None, ("town",), Loc()

    await records.sync_inventory([HP()], [])
    app = create_app(services_for(records, fakes, help_point_status=None))
    async with TestClient(TestServer(app)) as bare:
        response = await bare.get("/api/help-points", headers=auth(tokens["operator"]))
        assert (await response.json())["help_points"] == [
            {"id": "hp-outram", "name": "Outram St", "state": "unknown", "reason": "no liveness monitor",
             "active": True}]


async def test_dialplan_routes(client: Client, records: Records, fakes: Fakes, tokens: dict[str, str]) -> None:
    headers = auth(tokens["ops"])
    response = await client.post("/api/dialplans/check", json={"text": "bad: yaml"}, headers=headers)
    assert response.status == 200 and (await response.json())["ok"] is False
    response = await client.post("/api/dialplans/check", headers=headers)
    assert response.status == 200 and (await response.json())["ok"] is True
    response = await client.post("/api/dialplans/simulate", headers=headers, json={
        "help_point": "hp-outram", "at": "2026-11-01T23:30:00+00:00", "outcomes": {"council": "busy"}})
    assert response.status == 200
    assert fakes.calls[-1] == ("simulate", "hp-outram", "2026-11-01T23:30:00+00:00", {"council": "busy"})
    response = await client.post("/api/dialplans/simulate", json={"help_point": "hp-x"}, headers=headers)
    assert response.status == 404
    assert (await response.json())["detail"]["field"] == "body.help_point"
    response = await client.post("/api/dialplans/simulate", headers=headers,
                                 json={"help_point": "hp-outram", "outcomes": {"council": "bogus"}})
    assert response.status == 400 and "bogus" in (await response.json())["error"]
    assert (await response.json())["detail"] == {"field": "body.outcomes.council",
                                                 "problem": "unknown outcome script bogus"}
    # A body where the request takes none is refused, not ignored (a client sure it asked for something):
    response = await client.post("/api/dialplans/reload", json={"files": ["x.yaml"]}, headers=headers)
    assert response.status == 400
    assert (await response.json())["detail"] == {"field": "body",
                                                 "problem": "this request takes no body (send none, or {})"}
    response = await client.post("/api/dialplans/reload", json={}, headers=headers)
    assert response.status == 200 and (await response.json())["version"] == 4
    fakes.reload_ok = False
    response = await client.post("/api/dialplans/reload", headers=headers)
    assert response.status == 409
    assert (await response.json())["detail"]["lines"] == ["x.yaml: broken"]
    rows, _ = await records.list_audit(action="dialplan.reload")
    assert [r.detail["applied"] for r in rows] == [False, True]


SIM_INVENTORY = Inventory(
    help_points={"hp-outram-street": ("sutton", "town-centre"), "hp-portland-square": ("sutton", "town-centre"),
                 "hp-old-market-place": ("sutton",), "hp-blackwellgate": ("darlington",)},
    rooms={"council-cctv": ("council-cctv-1", "council-cctv-2"), "police-control": ("police-control-1",)},
    prompts=frozenset({"connecting", "call-recorded", "all-rooms-unavailable", "warning-1", "warning-2"}),
    positions=frozenset({"duty-manager"}))
OUTCOME_KINDS = "answer, answer-unconfirmed, timeout, no-response, busy, decline, server_error, unreachable"
ROOMS = "(rooms: council-cctv, police-control)"


@pytest.fixture
async def simulating(records: Records, fakes: Fakes) -> Any:
    """The application with the gateway's own simulate service over the demo dialplan (not a fake)."""
    in_force = load_dialplan_set([SUTTON], SIM_INVENTORY)
    app = create_app(services_for(records, fakes, simulate_dialplan=dialplan_simulator(
        SUTTON, SIM_INVENTORY, lambda: in_force)))
    async with TestClient(TestServer(app)) as client:
        yield client


@pytest.mark.parametrize("body, status, field, problem", [
    ({"help_point": "hp-nowhere"}, 404, "body.help_point", "no dialplan serves help point 'hp-nowhere'"),
    ({"help_point": "hp-blackwellgate"}, 404, "body.help_point", "no dialplan serves help point 'hp-blackwellgate'"),
    ({}, 400, "body.help_point", "is required"),
    ({"help_point": 7}, 400, "body.help_point", "must be a string (got a number)"),
    ({"help_point": ""}, 400, "body.help_point", "must not be empty"),
    ({"help_point": "hp-outram-street", "at": "yesterday"}, 400, "body.at",
     "must be an ISO 8601 date-time with a zone (Invalid isoformat string: 'yesterday')"),
    ({"help_point": "hp-outram-street", "at": "2026-11-22T02:10"}, 400, "body.at",
     "must be an ISO 8601 date-time with a zone (needs a time zone, e.g. 2026-11-01T12:00:00Z)"),
    ({"help_point": "hp-outram-street", "at": 1793534400}, 400, "body.at", "must be a string (got a number)"),
    ({"help_point": "hp-outram-street", "at": "0001-01-01T00:00:00Z"}, 400, "body.at",
     "must be in the years 2 to 9998 (got 1)"),
    ({"help_point": "hp-outram-street", "at": "9999-12-31T23:59:00Z"}, 400, "body.at",
     "must be in the years 2 to 9998 (got 9999)"),
    ({"help_point": "hp-outram-street", "outcomes": {"fire-control": "busy"}}, 400, "body.outcomes.fire-control",
     f"not a room, position or dialled number of the dialplans {ROOMS}"),
    ({"help_point": "hp-outram-street", "outcomes": {"police-control": "busy", "": "busy"}}, 400, "body.outcomes.",
     f"not a room, position or dialled number of the dialplans {ROOMS}"),
    ({"help_point": "hp-outram-street", "outcomes": {"police-control": "busy", "council-cctv": "bizzy"}}, 400,
     "body.outcomes.council-cctv", f"unknown outcome `bizzy` (expected one of {OUTCOME_KINDS})"),
    ({"help_point": "hp-outram-street", "outcomes": {"council-cctv": ""}}, 400, "body.outcomes.council-cctv",
     f"unknown outcome `` (expected one of {OUTCOME_KINDS})"),
    ({"help_point": "hp-outram-street", "outcomes": {"council-cctv": "busy@soon"}}, 400,
     "body.outcomes.council-cctv", "bad delay `soon` in `busy@soon`"),
    ({"help_point": "hp-outram-street", "outcomes": {"council-cctv": "answer@nan"}}, 400,
     "body.outcomes.council-cctv", "bad delay `nan` in `answer@nan` (not a finite number of seconds)"),
    ({"help_point": "hp-outram-street", "outcomes": {"council-cctv": "busy@-1"}}, 400,
     "body.outcomes.council-cctv", "negative delay in `busy@-1`"),
    ({"help_point": "hp-outram-street", "outcomes": {"council-cctv": 486}}, 400, "body.outcomes.council-cctv",
     "must be a string (got a number)"),
    ({"help_point": "hp-outram-street", "outcomes": ["council-cctv=busy"]}, 400, "body.outcomes",
     "must be an object (got an array)"),
    ({"help_point": "hp-outram-street", "outcome": {"council-cctv": "busy"}}, 400, "body.outcome",
     "unknown field (allowed: help_point, at, outcomes)"),
])
async def test_simulate_names_the_bad_field(simulating: Client, tokens: dict[str, str], body: dict[str, Any],
                                           status: int, field: str, problem: str) -> None:
    """Every bad input of the simulation, found by the route's schema or by the simulator itself, names
    its field and says why, in the one error shape."""
    response = await simulating.post("/api/dialplans/simulate", json=body, headers=auth(tokens["ops"]))
    doc = await response.json()
    assert response.status == status, doc
    assert doc["detail"] == {"field": field, "problem": problem}
    assert doc["error"] == (f"invalid {field}: {problem}" if status == 400 else problem)


async def test_simulate_with_the_real_simulator_still_simulates(simulating: Client, tokens: dict[str, str]) -> None:
    response = await simulating.post("/api/dialplans/simulate", headers=auth(tokens["ops"]), json={
        "help_point": "hp-portland-square", "at": "2026-11-22T02:10:00Z",
        "outcomes": {"council-cctv": "busy", "police-control": "answer"}})
    doc = await response.json()
    assert response.status == 200 and doc["ok"] is True, doc
    assert doc["lines"][0] == ("+0.000s offered by hp-portland-square: dialplan sutton v1, "
                               "at 2026-11-22T02:10+00:00 (Sunday)")
    assert doc["lines"][-1].endswith("done: answered by police-control-1")


async def test_audit_log_needs_auditor_and_pages(client: Client, records: Records,
                                                 tokens: dict[str, str]) -> None:
    assert (await client.get("/api/audit", headers=auth(tokens["operator"]))).status == 403
    assert (await client.get("/api/audit", headers=auth(tokens["ops"]))).status == 403
    response = await client.get("/api/audit", params={"limit": "3"}, headers=auth(tokens["auditor"]))
    page = await response.json()
    assert [e["action"] for e in page["items"]] == ["token.create"] * 3  # four tokens were created
    response = await client.get("/api/audit", params={"limit": "3", "cursor": page["next_cursor"]},
                                headers=auth(tokens["auditor"]))
    rest = await response.json()
    assert len(rest["items"]) == 1 and rest["next_cursor"] is None
    response = await client.get("/api/audit", params={"target": "ops-1"}, headers=auth(tokens["admin"]))
    assert [e["target"] for e in (await response.json())["items"]] == ["ops-1"]


# -- errors --------------------------------------------------------------------------------------------


async def test_unknown_path_and_wrong_method_are_json(client: Client, tokens: dict[str, str]) -> None:
    response = await client.get("/api/nothing", headers=auth(tokens["admin"]))
    assert response.status == 404 and "error" in await response.json()
    response = await client.delete("/api/activations", headers=auth(tokens["admin"]))
    assert response.status == 405 and "GET" in response.headers["Allow"]
    assert (await response.json())["error"] == "method not allowed"


async def test_a_bug_in_a_service_is_a_logged_json_500(records: Records, fakes: Fakes, tokens: dict[str, str],
                                                       caplog: pytest.LogCaptureFixture) -> None:
    app = create_app(services_for(records, fakes, play_warning=fakes.broken, start_talkdown=fakes.refusing))
    async with TestClient(TestServer(app)) as client:
        with caplog.at_level(logging.ERROR, logger="gateway.api.errors"):
            response = await client.post("/api/calls/live-1/warning", json={"warning": 1},
                                         headers=auth(tokens["operator"]))
        assert response.status == 500
        assert await response.json() == {"error": "internal error", "detail": "the gateway logged the details"}
        assert "a bug in a service function" in caplog.text
        response = await client.post("/api/talkdown", json={"help_point": "hp-outram", "warning": 1},
                                     headers=auth(tokens["operator"]))
        assert response.status == 409 and (await response.json())["error"] == "help point busy with a live call"


async def test_missing_service_is_503(records: Records, fakes: Fakes, tokens: dict[str, str]) -> None:
    app = create_app(services_for(records, fakes, reload_dialplans=None))
    async with TestClient(TestServer(app)) as client:
        response = await client.post("/api/dialplans/reload", headers=auth(tokens["ops"]))
        assert response.status == 503


async def test_database_down_is_503_not_500(fakes: Fakes, tmp_path: Any) -> None:
    store = Store.create("postgresql+asyncpg://nobody@127.0.0.1:1/none")
    try:
        app = create_app(services_for(Records(store), fakes))
        async with TestClient(TestServer(app)) as client:
            response = await client.get("/api/activations", headers=auth("hpg_x"))
            assert response.status == 503
            assert (await response.json())["error"] == "database unavailable"
    finally:
        await store.close()


async def test_api_requests_are_measured(client: Client, tokens: dict[str, str]) -> None:
    await client.get("/api/activations", headers=auth(tokens["operator"]))
    text = await (await client.get("/metrics")).text()
    assert 'gateway_api_request_seconds_count{route="list_activations",status="2xx"}' in text
