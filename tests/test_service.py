"""Pure helpers of the composition root: where contacts are reached, the activation journal."""

from __future__ import annotations

import pytest

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


async def test_cancel_while_credentials_are_read_answers_487_and_starts_no_call(tmp_path):
    """A CANCEL that arrives while the INVITE's credentials are still being read from the store: the INVITE
    gets its 487, and no activation starts once the read completes (the press was never admitted)."""
    import asyncio
    from pathlib import Path

    from gateway.config import load_config, load_inventory
    from gateway.service import Gateway
    from gateway.sip.message import parse_message

    root = Path(__file__).resolve().parents[1]
    config = load_config(root / "sip-config" / "gateway.yaml", env={"GATEWAY_DATA_DIR": str(tmp_path)})
    release = asyncio.Event()
    asked: list[str] = []

    class SlowStore:
        async def get_credentials(self, username, realm):
            asked.append(username)
            await release.wait()
            return None  # whatever the store says, the INVITE was cancelled first

    gateway = Gateway(config, load_inventory(config), SlowStore())  # type: ignore[arg-type]
    sent: list[bytes] = []
    gateway.transport._send = lambda data, peer: sent.append(data)  # type: ignore[method-assign]
    started: list[object] = []
    gateway.start_call = lambda event, hp: started.append(hp)  # type: ignore[method-assign]
    hp = gateway.inventory.help_points[0]
    peer = ("UDP", "127.0.0.1", 5099)
    common = (
        f"Via: SIP/2.0/UDP 127.0.0.1:5099;branch=z9hG4bKadmit1\r\n"
        f"From: <sip:{hp.sip_user}@127.0.0.1>;tag=hp1\r\nTo: <sip:help@127.0.0.1>\r\nCall-ID: admit-1\r\n"
    )
    invite = (
        "INVITE sip:help@127.0.0.1 SIP/2.0\r\n" + common + "CSeq: 2 INVITE\r\nMax-Forwards: 70\r\n"
        f"Contact: <sip:{hp.sip_user}@127.0.0.1:5099>\r\n"
        f'Authorization: Digest username="{hp.sip_user}", realm="{config.sip.realm}", nonce="n", '
        f'uri="sip:help@127.0.0.1", response="00000000000000000000000000000000"\r\n'
        "Content-Length: 0\r\n\r\n"
    ).encode()
    cancel = ("CANCEL sip:help@127.0.0.1 SIP/2.0\r\n" + common + "CSeq: 2 CANCEL\r\nMax-Forwards: 70\r\n"
              "Content-Length: 0\r\n\r\n").encode()
    try:
        gateway.transport.received(invite, peer)
        for _ in range(50):
            if asked:
                break
            await asyncio.sleep(0)
        assert asked == [hp.sip_user]  # the credentials read is pending
        gateway.transport.received(cancel, peer)
        statuses = [parse_message(d).status for d in sent if d.startswith(b"SIP/2.0")]
        assert 487 in statuses and 200 in statuses  # the INVITE's 487, the CANCEL's 200
        release.set()
        for _ in range(50):
            await asyncio.sleep(0)
        assert started == []
        assert [parse_message(d).status for d in sent if d.startswith(b"SIP/2.0")].count(487) == 1
    finally:
        release.set()
        for task in list(gateway.tasks):
            task.cancel()
        gateway.transport.close()
        gateway.summaries.close()


def test_media_clock_errors_are_exported_as_a_counter_read_at_scrape_time():
    from gateway import metrics

    before = metrics.MEDIA_TICK_ERRORS.source
    try:
        metrics.MEDIA_TICK_ERRORS.source = lambda: 3
        assert metrics.REGISTRY.get_sample_value("gateway_media_tick_errors_total") == 3
    finally:
        metrics.MEDIA_TICK_ERRORS.source = before


def test_dialplan_file_changes_count_once_settled():
    """A dialplan file caught half-written must not be loaded: a change is acted on only when two polls in a
    row see the same new state, and only once."""
    from gateway.service import SettledChanges

    changes = SettledChanges(("a.yaml", 1.0, 100))
    assert not changes.poll(("a.yaml", 1.0, 100))  # nothing changed
    assert not changes.poll(("a.yaml", 2.0, 40))  # being written
    assert not changes.poll(("a.yaml", 3.0, 80))  # still being written
    assert changes.poll(("a.yaml", 3.0, 80))  # settled: reload
    assert not changes.poll(("a.yaml", 3.0, 80))  # once
    assert not changes.poll(("a.yaml", 4.0, 90))
    assert not changes.poll(("a.yaml", 3.0, 80))  # back as it was: nothing to reload
    assert not changes.poll(("a.yaml", 3.0, 80))


async def test_a_tcp_contact_whose_connection_is_gone_is_reached_at_its_contact_address(tmp_path):
    """After a restart the bindings come back from the database, but their TCP flows do not: the old flow's
    ephemeral source port reaches nothing, so the Contact's own address is used (over TCP) until the device
    connects again; a live flow is still preferred."""
    from pathlib import Path

    from gateway.config import load_config, load_inventory
    from gateway.service import Gateway

    root = Path(__file__).resolve().parents[1]
    config = load_config(root / "sip-config" / "gateway.yaml", env={"GATEWAY_DATA_DIR": str(tmp_path)})
    class NoStore:
        async def get_credentials(self, username, realm):
            return None

    gateway = Gateway(config, load_inventory(config), NoStore())  # type: ignore[arg-type]
    contact, flow = "sip:desk@192.0.2.9:5070;transport=tcp", Source("192.0.2.9", 49152, "TCP")
    assert gateway.reach(contact, flow) == ("TCP", "192.0.2.9", 5070)
    gateway.transport.connections[("TCP", "192.0.2.9", 49152)] = object()  # type: ignore[assignment]
    assert gateway.reach(contact, flow) == ("TCP", "192.0.2.9", 49152)
    assert gateway.reach("sip:desk@192.0.2.9:5070", Source("192.0.2.9", 5070)) == ("UDP", "192.0.2.9", 5070)


def test_summary_log_write_failure_leaves_no_torn_line_and_retries_the_lines(tmp_path, monkeypatch):
    """A full disk takes only part of a write (ENOSPC after some bytes).  The torn line must not stay in the
    journal, where the next line would be glued onto it (two records lost, and every reader of the file
    failing at that line); the lines that failed are written with the next ones once the disk has room."""
    import builtins
    import errno
    import json

    from gateway.calls import journal

    full = {"on": True}

    class DiskFull:
        """The journal file on a disk that takes half of the first write, then says ENOSPC."""

        def __init__(self, *args, **kwargs):  # type: ignore[no-untyped-def]
            self.file = builtins.open(*args, **kwargs)

        def __enter__(self):  # type: ignore[no-untyped-def]
            return self

        def __exit__(self, *exc):  # type: ignore[no-untyped-def]
            self.file.close()

        def __getattr__(self, name):  # type: ignore[no-untyped-def]
            return getattr(self.file, name)

        def write(self, data):  # type: ignore[no-untyped-def]
            if full["on"]:
                full["on"] = False
                self.file.write(data[: len(data) // 2])
                self.file.flush()
                raise OSError(errno.ENOSPC, "No space left on device")
            return self.file.write(data)

    monkeypatch.setattr(journal, "open", DiskFull, raising=False)
    monkeypatch.setattr(journal, "_APPEND_DURABLY", None)  # the Python path (the C one: the next test)
    path = tmp_path / "activations.jsonl"
    log = SummaryLog(path)
    first = CallSummary("act-1", "hp-x", 1.0, "answered", "op-1", "room", "hp", 2.0, 1.0, "dp", 1, [])
    log.append(first)
    log._thread.submit(lambda: None).result()  # the failed write has happened
    log.append_recording("act-1", "/r/act-1.wav", 1.0, "ab" * 32)
    log.close()
    lines = path.read_text(encoding="utf-8").splitlines()
    docs = [json.loads(line) for line in lines]  # every line whole
    assert [d.get("activation_id") or d["recording"]["activation_id"] for d in docs] == ["act-1", "act-1"]
    assert "recording" in docs[1]


def test_the_c_append_cuts_a_torn_write_back(tmp_path):
    """The journal's append in C (one GIL release for open, write, fsync, close) meets a real partial write:
    a file size limit (RLIMIT_FSIZE, in a child process) lets the kernel take part of the line, then refuses
    the rest with EFBIG.  The file is cut back to the last whole line and the error is raised."""
    import errno
    import subprocess
    import sys

    from gateway.calls import journal

    if journal._APPEND_DURABLY is None:
        pytest.skip("the C module is not built")
    path = tmp_path / "activations.jsonl"
    child = (
        "import resource, signal, sys\n"
        "from gateway.media import _fastrtp\n"
        "signal.signal(signal.SIGXFSZ, signal.SIG_IGN)\n"
        "path = sys.argv[1].encode()\n"
        "_fastrtp.append_durably(path, b'{\"first\": 1}\\n')\n"
        "resource.setrlimit(resource.RLIMIT_FSIZE, (20, resource.RLIM_INFINITY))\n"
        "try:\n"
        "    _fastrtp.append_durably(path, b'{\"second\": \"a line longer than the disk takes\"}\\n')\n"
        "except OSError as exc:\n"
        "    print(exc.errno)\n"
    )
    out = subprocess.run([sys.executable, "-c", child, str(path)], capture_output=True, text=True, timeout=60)
    assert out.returncode == 0, out.stderr
    assert out.stdout.strip() == str(errno.EFBIG)
    assert path.read_bytes() == b'{"first": 1}\n'


def test_the_journal_tail_skips_a_cut_first_line_and_a_torn_one(tmp_path):
    log = SummaryLog(tmp_path / "activations.jsonl")
    log.path.write_text('{"activation_id": "a1", "outcome": "answered"}\n{"activation_id": "a2", "outc\n'
                        '{"activation_id": "a3", "outcome": "failed"}\n')
    assert [d["activation_id"] for d in log.read_tail(1 << 20)] == ["a1", "a3"]
    assert [d["activation_id"] for d in log.read_tail(60)] == ["a3"]  # starts inside a line: that one is cut
    log.close()
