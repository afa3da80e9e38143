"""The service's INVITE admission and call start: no press is left unanswered, none starts after the drain."""

from __future__ import annotations

import asyncio
from pathlib import Path

import pytest

from gateway.config import load_config, load_inventory
from gateway.service import Gateway
from gateway.sip.message import parse_message

ROOT = Path(__file__).resolve().parents[1]


def _invite(hp_user: str, realm: str, branch: str = "z9hG4bKadm1", call_id: str = "adm-1") -> bytes:
    return (
        "INVITE sip:help@127.0.0.1 SIP/2.0\r\n"
        f"Via: SIP/2.0/UDP 127.0.0.1:5099;branch={branch}\r\n"
        f"From: <sip:{hp_user}@127.0.0.1>;tag=hp1\r\nTo: <sip:help@127.0.0.1>\r\nCall-ID: {call_id}\r\n"
        "CSeq: 2 INVITE\r\nMax-Forwards: 70\r\n"
        f"Contact: <sip:{hp_user}@127.0.0.1:5099>\r\n"
        f'Authorization: Digest username="{hp_user}", realm="{realm}", nonce="n", '
        'uri="sip:help@127.0.0.1", response="00000000000000000000000000000000"\r\n'
        "Content-Length: 0\r\n\r\n"
    ).encode()


class NoStore:
    """A store that knows no credentials (these tests never authenticate a help point)."""

    async def get_credentials(self, username, realm):
        return None


class WarningPlane:
    """A media plane with warning 1's prompt only (what the talk-down checks before it calls)."""

    prompts = {"warning-1": object()}


def _gateway(tmp_path: Path, store: object) -> tuple[Gateway, list[bytes]]:
    config = load_config(ROOT / "sip-config" / "gateway.yaml", env={"GATEWAY_DATA_DIR": str(tmp_path)})
    gateway = Gateway(config, load_inventory(config), store)  # type: ignore[arg-type]
    sent: list[bytes] = []
    gateway.transport._send = lambda data, peer: sent.append(data)  # type: ignore[method-assign]
    return gateway, sent


def _statuses(sent: list[bytes]) -> list[int]:
    return [parse_message(d).status for d in sent if d.startswith(b"SIP/2.0")]


async def _settle(gateway: Gateway) -> None:
    for _ in range(50):
        await asyncio.sleep(0)
        if not gateway.tasks:
            break
    await asyncio.sleep(0)


def _close(gateway: Gateway) -> None:
    for task in list(gateway.tasks):
        task.cancel()
    gateway.transport.close()
    gateway.summaries.close()


async def test_a_credentials_store_failure_still_answers_the_invite(tmp_path):
    """The database is unavailable while a help point's credentials are read (not cached: a press after
    more than five minutes of quiet): the INVITE must get a final response (503 with Retry-After, so the
    intercom tries again), not only its 100 Trying, which leaves the press hanging unanswered for minutes."""
    from gateway.store import StoreUnavailableError

    class DownStore:
        async def get_credentials(self, username, realm):
            raise StoreUnavailableError("database unavailable")

    gateway, sent = _gateway(tmp_path, DownStore())
    hp = gateway.inventory.help_points[0]
    try:
        gateway.transport.received(_invite(hp.sip_user, gateway.config.sip.realm), ("UDP", "127.0.0.1", 5099))
        await _settle(gateway)
        finals = [s for s in _statuses(sent) if s >= 200]
        assert finals == [503]
        response = parse_message(next(d for d in sent if d.startswith(b"SIP/2.0 503")))
        assert response.headers.get("Retry-After")
    finally:
        _close(gateway)


async def test_an_invite_admitted_after_the_drain_began_gets_503_and_starts_no_call(tmp_path):
    """SIGTERM arrives while an INVITE's credentials are being read.  Once the read completes the drain may
    already have ended the calls still up (stop_all) and be closing the journal, the database writer and the
    sockets: a call started then would never be ended or recorded.  It is refused like any INVITE received
    while draining (503 with Retry-After), and no call starts."""
    gateway, sent = _gateway(tmp_path, NoStore())
    started: list[object] = []
    gateway.calls.add = lambda call, media: started.append(call)  # type: ignore[method-assign]
    gateway.media_factory = lambda activation_id, runner: pytest.fail("no media for a refused INVITE")
    assert gateway.reload_dialplans()
    hp = gateway.inventory.help_points[0]
    try:
        event = _admitted_event(gateway, hp)
        gateway.draining = True  # drain() began while the INVITE was being admitted
        gateway.start_call(event, hp)
        gateway.transport.transmit()
        assert started == []
        assert [s for s in _statuses(sent) if s >= 200] == [503]
    finally:
        _close(gateway)


def _admitted_event(gateway: Gateway, hp):  # type: ignore[no-untyped-def]
    """A RequestReceived for a fresh INVITE, as the endpoint hands it to the TU."""
    from gateway.sip import events as ev

    events: list[ev.Event] = []
    gateway.transport.on_event = events.append  # type: ignore[method-assign]
    gateway.transport.received(_invite(hp.sip_user, gateway.config.sip.realm, "z9hG4bKadm2", "adm-2"),
                               ("UDP", "127.0.0.1", 5099))
    gateway.transport.on_event = gateway.on_event  # type: ignore[method-assign]
    return next(e for e in events if isinstance(e, ev.RequestReceived))


async def test_no_talkdown_starts_while_the_gateway_drains(tmp_path):
    """A talk-down asked for over HTTP during the drain (the API is served until the very end) would be a
    call started after stop_all: never ended, never recorded.  It is refused."""
    gateway, _ = _gateway(tmp_path, NoStore())
    gateway.media_factory = lambda activation_id, runner: pytest.fail("no media for a refused talk-down")

    gateway.media = WarningPlane()  # type: ignore[assignment]
    hp = gateway.inventory.help_points[0]
    try:
        gateway.draining = True
        with pytest.raises(LookupError, match="shutting down"):
            gateway.start_talkdown(hp.id, 1)
        assert gateway.calls.active == 0
    finally:
        _close(gateway)


async def test_drain_answers_an_invite_still_waiting_for_its_credentials(tmp_path):
    """The store hangs (a database that neither answers nor fails) while an INVITE's credentials are read,
    and SIGTERM comes.  stop_all knows only the calls; the admission waits outside them.  When the drain time
    is over the INVITE must still get its 503 (the intercom can try another gateway), not be left with only
    its 100 Trying as the sockets close."""
    import msgspec

    never = asyncio.Event()

    class HungStore:
        async def get_credentials(self, username, realm):
            await never.wait()

    gateway, sent = _gateway(tmp_path, HungStore())
    gateway.config = msgspec.structs.replace(gateway.config, drain_timeout=0.05)
    hp = gateway.inventory.help_points[0]
    try:
        gateway.transport.received(_invite(hp.sip_user, gateway.config.sip.realm), ("UDP", "127.0.0.1", 5099))
        await asyncio.sleep(0)
        assert gateway._admitting
        transmitted: list[bytes] = []
        close = gateway.transport.close

        def close_after_flush() -> None:
            gateway.transport.transmit()  # what was queued before the sockets close still goes out
            transmitted.extend(sent)
            close()

        gateway.transport.close = close_after_flush  # type: ignore[method-assign]
        await asyncio.wait_for(gateway.drain(), 10)
        assert [s for s in _statuses(transmitted) if s >= 200] == [503]
        assert not gateway._admitting
    finally:
        never.set()
        _close(gateway)


async def test_drain_ends_and_the_journal_is_closed_when_the_database_hangs(tmp_path, monkeypatch):
    """The database hangs at shutdown: the activation writer's close (a flush) would wait forever, the drain
    never ends and systemd kills the gateway.  The journal is closed (every line on disk) before the database
    writer, whose close is bounded."""
    import msgspec

    from gateway import service

    monkeypatch.setattr(service, "STOP_GRACE", 0.1)
    never = asyncio.Event()

    class HungWriter:
        pending = 3

        async def close(self) -> None:
            await never.wait()

    gateway, _ = _gateway(tmp_path, NoStore())
    gateway.config = msgspec.structs.replace(gateway.config, drain_timeout=0.05)
    gateway.activations = HungWriter()  # type: ignore[assignment]
    closed: list[bool] = []
    close = gateway.summaries.close
    gateway.summaries.close = lambda: (closed.append(True), close())[1]  # type: ignore[method-assign]
    try:
        await asyncio.wait_for(gateway.drain(), 5)
        assert closed == [True]
    finally:
        never.set()
        _close(gateway)


async def test_a_press_refused_for_want_of_rtp_ports_is_still_an_activation_record(tmp_path):
    """Every RTP port is in use: the help point gets 503 with Retry-After (it tries again), and the press is
    journalled as a failed activation ended by the gateway, with the reason, not only logged."""
    from gateway.media.errors import MediaError

    gateway, sent = _gateway(tmp_path, NoStore())

    def exhausted(activation_id, runner):
        raise MediaError("no free RTP port pair in 30000-30999")

    gateway.media_factory = exhausted
    assert gateway.reload_dialplans()
    hp = gateway.inventory.help_points[0]
    try:
        event = _admitted_event(gateway, hp)
        gateway.start_call(event, hp)
        gateway.transport.transmit()
        assert [s for s in _statuses(sent) if s >= 200] == [503]
        gateway.summaries.close()
        (record,) = [d for d in gateway.summaries.read() if "activation_id" in d]
        assert (record["help_point"], record["outcome"], record["ended_by"]) == (hp.id, "failed", "gateway")
        refused = [e for e in record["timeline"] if e["event"] == "refused"]
        assert refused and "no free RTP port" in refused[0]["why"] and refused[0]["status"] == 503
    finally:
        _close(gateway)


async def test_a_talkdown_with_every_rtp_port_in_use_is_refused_with_503(tmp_path):
    """The API asks for a talk-down while every RTP port is in use: a 503 (try again shortly), not a 500."""
    from gateway.api.errors import ApiError
    from gateway.media.errors import MediaError
    from gateway.service_records import api_services

    gateway, _ = _gateway(tmp_path, NoStore())

    def exhausted(activation_id, runner):
        raise MediaError("no free RTP port pair")

    gateway.media = WarningPlane()  # type: ignore[assignment]
    gateway.media_factory = exhausted
    hp = next(h for h in gateway.inventory.help_points)
    import msgspec

    # The unit does not register: the talk-down would call its static address.
    unit = msgspec.structs.replace(hp, static_uri="sip:unit@127.0.0.1:5099")
    gateway.inventory = msgspec.structs.replace(gateway.inventory,
                                                help_points=(unit, *gateway.inventory.help_points[1:]))
    try:
        services = api_services(gateway)
        with pytest.raises(ApiError) as refused:
            services.start_talkdown(unit.id, 1, 1)
        assert refused.value.status == 503 and "RTP port" in refused.value.message
    finally:
        _close(gateway)


async def test_a_refused_talkdown_names_the_field_or_says_the_gateway_cannot(tmp_path):
    """The API's talk-down names the body field a refusal is about (unknown help point 404, a known one
    that cannot be called 409, a warning without its prompt 400); a gateway that cannot call now is 503."""
    from gateway.api.errors import ApiError, FieldError
    from gateway.service_records import api_services

    gateway, _ = _gateway(tmp_path, NoStore())

    gateway.media_factory = lambda activation_id, runner: pytest.fail("no media for a refused talk-down")
    hp = next(h for h in gateway.inventory.help_points if h.static_uri is None)
    try:
        talkdown = api_services(gateway).start_talkdown
        with pytest.raises(ApiError) as refused:
            talkdown(hp.id, 1, 1)  # no media plane
        assert refused.value.status == 503
        gateway.media = WarningPlane()  # type: ignore[assignment]
        cases = [("hp-nowhere", 1, "help_point", 404, "unknown help point 'hp-nowhere'"),
                 (hp.id, 1, "help_point", 409, f"help point '{hp.id}' is not registered and has no static_uri"),
                 (hp.id, 2, "warning", 400, "no prompt warning-2")]
        for help_point, warning, argument, status, problem in cases:
            with pytest.raises(FieldError) as named:
                talkdown(help_point, warning, 1)
            assert (named.value.argument, named.value.status, named.value.problem) == (argument, status, problem)
        gateway.draining = True
        with pytest.raises(ApiError) as refused:
            talkdown(hp.id, 1, 1)
        assert refused.value.status == 503 and "shutting down" in refused.value.message
        assert gateway.calls.active == 0
    finally:
        _close(gateway)


async def test_sighup_leaves_a_trace_in_the_log_even_when_nothing_changed(tmp_path, caplog):
    """`systemctl reload` (SIGHUP) with no dialplan change must still say what it did, or ops cannot tell
    from the journal that the reload ran."""

    gateway, _sent = _gateway(tmp_path, NoStore())
    try:
        assert gateway.reload_dialplans()
        caplog.clear()
        with caplog.at_level("INFO", logger="gateway.service"):
            gateway.on_sighup()
        assert "SIGHUP: reloading dialplans" in caplog.text
        assert f"dialplans unchanged: version {gateway.dialplans.version} stays in force" in caplog.text
    finally:
        _close(gateway)


async def test_bindings_loaded_at_start_make_their_sources_known_at_once(tmp_path):
    """After a restart or an HA failover the registrations come from the database: their sources are known
    at once, not rate-limited as strangers until the first 30 s sweep."""
    import time
    from datetime import UTC, datetime, timedelta

    from gateway.registrar.persistence import from_stored
    from gateway.store.repository import StoredBinding

    gateway, _sent = _gateway(tmp_path, NoStore())
    try:
        row = StoredBinding("hp-outram-street", "sip:hp-outram-street@198.51.100.7:5060",
                            datetime.now(UTC) + timedelta(seconds=600), "c1", 1, "198.51.100.7", 5060, "UDP")
        gateway.registrar.load([from_stored(row)], time.time())
        assert "198.51.100.7" not in gateway.known_sources
        gateway.refresh_known_sources()
        assert gateway.known_sources == {"198.51.100.7"}
    finally:
        _close(gateway)
