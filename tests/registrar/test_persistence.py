"""Write-behind of binding sets: one AOR the database refuses never holds back the others."""

from __future__ import annotations

import asyncio
from datetime import UTC, datetime

from gateway.registrar import Binding, Source
from gateway.registrar.persistence import BindingWriter, from_stored, to_stored
from gateway.store import StoredBinding, StoreError

T0 = 1_767_225_600.0
SRC = Source("203.0.113.7", 40123, "UDP")


def binding(aor: str, user_agent: str | None = "Linphone/5.2", call_id: str = "c1") -> Binding:
    return Binding(aor, f"{aor.replace('@gw.example', '@10.1.2.3')}", T0 + 600, call_id, 1, SRC, user_agent)


class FakeStore:
    """Refuses, like PostgreSQL, a value longer than its ``varchar(255)`` columns."""

    def __init__(self) -> None:
        self.saved: dict[str, list[StoredBinding]] = {}
        self.attempts: list[str] = []
        self.down = False
        self.refuse: set[str] = set()

    async def save_bindings(self, aor: str, bindings: list[StoredBinding]) -> None:
        self.attempts.append(aor)
        await asyncio.sleep(0)
        if self.down or aor in self.refuse:
            raise StoreError("database unavailable")
        for b in bindings:
            if len(b.call_id) > 255 or len(b.user_agent or "") > 255:
                raise StoreError("value too long for type character varying(255)")
        self.saved[aor] = list(bindings)


async def settle(rounds: int = 20) -> None:
    for _ in range(rounds):
        await asyncio.sleep(0)


async def test_one_aor_the_database_refuses_does_not_block_the_others() -> None:
    store = FakeStore()
    writer = BindingWriter(store)  # type: ignore[arg-type]
    writer.retry_delay = 0.0
    writer.start()
    store.refuse.add("sip:hp@gw.example")  # a set the database refuses on every retry
    writer.submit("sip:hp@gw.example", (binding("sip:hp@gw.example"),))
    await settle()
    writer.submit("sip:council-cctv-1@gw.example", (binding("sip:council-cctv-1@gw.example"),))
    writer.submit("sip:police-control-1@gw.example", (binding("sip:police-control-1@gw.example"),))
    await settle()
    assert set(store.saved) == {"sip:council-cctv-1@gw.example", "sip:police-control-1@gw.example"}
    store.refuse.clear()
    await settle()
    assert "sip:hp@gw.example" in store.saved  # still retried, never dropped
    await writer.close()


async def test_long_user_agent_or_call_id_is_still_saved() -> None:
    store = FakeStore()
    writer = BindingWriter(store)  # type: ignore[arg-type]
    writer.retry_delay = 0.0
    writer.submit("sip:a@gw.example", (binding("sip:a@gw.example", user_agent="X" * 400),))
    writer.submit("sip:b@gw.example", (binding("sip:b@gw.example", call_id="c" * 300),))
    writer.submit("sip:c@gw.example", (binding("sip:c@gw.example"),))
    assert await writer.flush(deadline=asyncio.get_running_loop().time() + 1.0)
    assert set(store.saved) == {"sip:a@gw.example", "sip:b@gw.example", "sip:c@gw.example"}
    assert len(store.saved["sip:a@gw.example"][0].user_agent or "") == 255


async def test_latest_set_wins_and_close_is_bounded_when_the_database_is_down() -> None:
    store = FakeStore()
    writer = BindingWriter(store)  # type: ignore[arg-type]
    writer.retry_delay = 0.0
    store.down = True
    writer.submit("sip:a@gw.example", (binding("sip:a@gw.example"),))
    writer.submit("sip:a@gw.example", ())  # de-registered before the first write could land
    await asyncio.wait_for(writer.close(timeout=0.05), 2.0)  # returns although nothing could be written
    assert store.saved == {}
    store.down = False
    assert await writer.flush()
    assert store.saved == {"sip:a@gw.example": []}  # the latest set, not the resurrected contact


def test_stored_round_trip() -> None:
    b = binding("sip:a@gw.example")
    row = to_stored(b)
    assert row.expires_at == datetime.fromtimestamp(T0 + 600, UTC)
    assert from_stored(row) == b
