"""Pure helpers of the composition root: where contacts are reached, the activation journal."""

from __future__ import annotations

from gateway.calls.events import CallSummary
from gateway.registrar.bindings import Source
from gateway.service import SummaryLog, contact_destination


def test_contact_on_the_sending_host_is_used_as_written():
    assert contact_destination("sip:op@127.0.0.1:25080", Source("127.0.0.1", 25081, "UDP")) == (
        "UDP", "127.0.0.1", 25080)


def test_contact_behind_nat_is_reached_at_the_packet_source():
    # A 4G help point: private Contact, public source address and port of the NAT binding.
    assert contact_destination("sip:hp@10.64.0.7:5060", Source("203.0.113.9", 40123, "UDP")) == (
        "UDP", "203.0.113.9", 40123)


def test_tcp_contacts_reuse_the_registering_connection():
    assert contact_destination("sip:op@127.0.0.1:5099;transport=tcp", Source("127.0.0.1", 40000, "TCP")) == (
        "TCP", "127.0.0.1", 40000)


def test_unparseable_contact_falls_back_to_the_source():
    assert contact_destination("not a uri", Source("127.0.0.1", 5, "UDP")) == ("UDP", "127.0.0.1", 5)


def test_summary_log_appends_durable_json_lines(tmp_path):
    log = SummaryLog(tmp_path / "a" / "activations.jsonl")
    summary = CallSummary("act-1", "hp-x", 1.0, "answered", "op-1", "room", "hp", 2.0, 1.0, "dp", 1,
                          [{"t": 0.0, "event": "offered"}])
    log.append(summary)
    log.append_recording("act-1", "/r/act-1.wav", 1.0, "ab" * 32)
    log.close()  # written by the journal thread, in order
    rows = log.read()
    assert rows[0]["activation_id"] == "act-1" and rows[0]["timeline"] == [{"t": 0.0, "event": "offered"}]
    assert rows[1] == {"recording": {"activation_id": "act-1", "path": "/r/act-1.wav", "duration": 1.0,
                                     "sha256": "ab" * 32}}


async def test_loop_lag_probe_reports_how_late_the_loop_ran_its_timer():
    """A callback that holds the loop for 60 ms makes the probe's next wake-up at least 50 ms late."""
    import asyncio
    import time

    from gateway.service import loop_lag_probe

    seen: list[float] = []
    first = asyncio.Event()

    def observe(lag: float) -> None:
        seen.append(lag)
        first.set()

    probe = asyncio.create_task(loop_lag_probe(observe, interval=0.01))
    try:
        await asyncio.wait_for(first.wait(), 10)
        before = len(seen)
        time.sleep(0.06)  # a busy loop: nothing else runs meanwhile
        while len(seen) < before + 2:
            await asyncio.sleep(0.01)
    finally:
        probe.cancel()
    assert all(lag >= 0.0 for lag in seen)
    assert seen[before] >= 0.05, seen
