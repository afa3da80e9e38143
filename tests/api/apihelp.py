"""Helpers shared by the API tests: fake call-control functions, tokens, seeding through the real writer."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import asyncpg
import pytest

from gateway.api import ApiError, FieldError, Services
from gateway.store import ActivationWriter, Records

PG_HOST, PG_PORT, PG_DATABASE = "127.0.0.1", 5432, "test"
PG_USERS = ("postgres", "root")
ROLES = ("operator", "ops", "auditor", "admin")
T0 = 1_793_534_400.0  # 2026-11-01T12:00:00Z


async def pg_admin() -> tuple[asyncpg.Connection, str]:
    """A connection to the test server, or skip saying why."""
    errors = []
    for user in PG_USERS:
        try:
            return await asyncpg.connect(host=PG_HOST, port=PG_PORT, user=user, database=PG_DATABASE,
                                         timeout=3), user
        except (OSError, asyncpg.PostgresError, TimeoutError) as exc:
            errors.append(f"{user}: {exc!r}")
    pytest.skip(f"no PostgreSQL server at {PG_HOST}:{PG_PORT}/{PG_DATABASE} ({'; '.join(errors)})")


@dataclass
class Fakes:
    """Call-control functions the API calls, recording what they were asked."""

    live: set[str] = field(default_factory=lambda: {"live-1"})
    help_points: set[str] = field(default_factory=lambda: {"hp-outram"})
    calls: list[tuple[Any, ...]] = field(default_factory=list)
    reload_ok: bool = True

    def play_warning(self, activation_id: str, n: int) -> bool:
        self.calls.append(("warning", activation_id, n))
        return activation_id in self.live

    async def start_talkdown(self, help_point: str, warning: int, times: int) -> str:
        self.calls.append(("talkdown", help_point, warning, times))
        if help_point not in self.help_points:
            raise KeyError(f"unknown help point {help_point}")
        return "talkdown-1"

    def help_point_status(self) -> list[dict[str, Any]]:
        return [{"id": "hp-outram", "state": "up", "reason": "registered", "since": "2026-11-01T12:00:00+00:00"}]

    def check_dialplans(self, text: str | None) -> dict[str, Any]:
        self.calls.append(("check", text))
        if text is not None and "bad" in text:
            return {"ok": False, "lines": ["x.yaml: $.steps: bad"]}
        return {"ok": True, "lines": ["ok"]}

    def simulate_dialplan(self, help_point: str, at: str | None, outcomes: dict[str, str]) -> dict[str, Any]:
        self.calls.append(("simulate", help_point, at, outcomes))
        if help_point not in self.help_points:
            raise KeyError(f"help point `{help_point}` is not served by any dialplan")
        for key, script in outcomes.items():
            if script == "bogus":
                raise FieldError(f"outcomes.{key}", "unknown outcome script bogus")
        return {"ok": True, "lines": ["+0.000s offered"]}

    def reload_dialplans(self) -> dict[str, Any]:
        self.calls.append(("reload",))
        if not self.reload_ok:
            return {"applied": False, "version": 3, "lines": ["x.yaml: broken"]}
        return {"applied": True, "version": 4, "lines": []}

    def broken(self, *args: Any) -> Any:
        raise RuntimeError("a bug in a service function")

    def refusing(self, *args: Any) -> Any:
        raise ApiError(409, "help point busy with a live call")


def services_for(records: Records | None, fakes: Fakes, **overrides: Any) -> Services:
    """Services wired to the fakes."""
    values: dict[str, Any] = dict(
        health=lambda: {"status": "ok"}, records=records, play_warning=fakes.play_warning,
        start_talkdown=fakes.start_talkdown, help_point_status=fakes.help_point_status,
        check_dialplans=fakes.check_dialplans, simulate_dialplan=fakes.simulate_dialplan,
        reload_dialplans=fakes.reload_dialplans)
    values.update(overrides)
    return Services(**values)


def auth(token: str) -> dict[str, str]:
    """The Authorization header of ``token``."""
    return {"Authorization": f"Bearer {token}"}


async def seed(records: Records, count: int, *, help_points: tuple[str, ...] = ("hp-outram", "hp-portland"),
               step: float = 300.0, start: float = T0) -> list[str]:
    """``count`` ended activations written through the real ActivationWriter; ids oldest first."""
    writer = ActivationWriter(records, clock=lambda: start + count * step + 10)
    await writer.start()
    ids = []
    outcomes = ("answered", "unanswered", "abandoned")
    for i in range(count):
        aid = f"act-{i:05d}"
        hp = help_points[i % len(help_points)]
        at = start + i * step
        writer.started(aid, hp, at, "town-centre", 3, f"rtsp://cam/{hp}", f"53.1,-1.2;address={hp}")
        writer.event(aid, {"t": 0.0, "event": "offered"})
        outcome = outcomes[i % 3]
        writer.ended({"activation_id": aid, "help_point": hp, "started_at": at, "outcome": outcome,
                      "answered_by": "cctv-1" if outcome == "answered" else None,
                      "answered_room": ("council" if i % 2 else "police") if outcome == "answered" else None,
                      "ended_by": "hp", "duration": 30.0, "talk_time": 20.0, "dialplan": "town-centre",
                      "dialplan_version": 3, "silent": False,
                      "timeline": [{"t": 0.0, "event": "offered"}, {"t": 1.5, "event": "ringing", "leg": "cctv-1#1"},
                                   {"t": 30.0, "event": "ended", "by": "hp"}]})
        ids.append(aid)
    await writer.close()
    return ids
