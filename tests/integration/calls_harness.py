"""Helpers for the call tests and the call benchmark: a gateway with a test dialplan, operators, SIPp agents.

Used by ``test_calls.py``, ``test_calls_peers.py`` and ``bench/calls_bench.py``.

Why a test dialplan: the demo council room is only open 07:00-23:00 Europe/London, so a test on the demo
dialplan would pass or fail with the time of day. :func:`write_config` writes a config whose
``dialplans_dir`` holds one test dialplan (council always open, short timers, then police, then a final
message and round again), with ``registrar.algorithms: [MD5, SHA-256]`` because SIPp 3.6.1 computes MD5 only
and answers the first challenge (see conftest.py).

Pieces:

* :class:`CallGateway`: ``python -m gateway serve`` with that config, its own data directory and its own
  RTP port range (``GATEWAY_RTP_PORTS``, from a free-port search so parallel gateways never clash);
  ``activations()`` reads ``activations.jsonl``.
* :func:`register`: REGISTER an operator position from Python (MD5 digest computed here), with a Contact on
  the port where its SIPp UAS (or softphone) listens; the gateway sends INVITEs to that Contact because
  the REGISTER came from the same host.
* :class:`SippAgent`: one SIPp process in the background (an operator UAS or a help point UAC), bounded by
  ``-m``, ``-timeout`` and coreutils ``timeout``; ``wait()`` returns a :class:`SippResult` with the messages
  of ``-trace_msg``.
* :class:`RtpSink`: a UDP socket that counts the RTP packets the gateway sends to a help point (early media).
"""

from __future__ import annotations

import contextlib
import csv
import hashlib
import json
import random
import re
import shutil
import socket
import subprocess
import tempfile
import textwrap
import threading
import time
from datetime import datetime
from pathlib import Path
from typing import Any

import yaml
from sip_harness import (
    CONFIG,
    LOOPBACK,
    ROOT,
    SCENARIOS,
    GatewayProcess,
    SipMessage,
    SippResult,
    TracedMessage,
    demo_password,
    digest_register,
    free_port,
    parse_trace,
    stop_process,
)

CALL_SCENARIOS = SCENARIOS / "calls"
SAMPLE_PCAP = Path("/usr/share/sip-tester/g711a.pcap")
HELP_POINT = "hp-portland-square"
COUNCIL = ("council-cctv-1", "council-cctv-2")
POLICE = "police-control-1"


def make_dialplan(
    *,
    ring_timeout: float = 3,
    connect_timeout: float = 1,
    confirm_within: int | None = 3,
    police_ring_timeout: float = 3,
    prompt: bool = True,
    retry_interval: int = 1,
) -> str:
    """Council CCTV (always open) -> police -> a final message -> council again, forever.

    ``confirm_within=None`` drops the confirm rule of both rooms (softphones that cannot send a digit, the
    benchmark).
    """
    rooms = ""
    if confirm_within is not None:
        rooms = textwrap.dedent(
            f"""\
            rooms:
              council-cctv:
                confirm: {{digit: 1, within: {confirm_within}}}
              police-control:
                confirm: {{digit: 1, within: {confirm_within}}}
            """
        )
    play = "  - play: connecting\n" if prompt else ""
    return (
        textwrap.dedent(
            """\
            # Test dialplan: council CCTV always open, short timers; then police; then a message; then again.
            name: calltest
            serves:
              help_points: [hp-outram-street, hp-portland-square, hp-old-market-place]
            """
        )
        + rooms
        + f"retry_interval: {retry_interval}\n"
        + "steps:\n"
        + play
        + "  - label: council\n"
        + f"    ring: {{room: council-cctv, strategy: parallel, ring_timeout: {ring_timeout}, "
        + f"connect_timeout: {connect_timeout}}}\n"
        + "  - label: police\n"
        + f"    ring: {{room: police-control, strategy: parallel, ring_timeout: {police_ring_timeout}, "
        + f"connect_timeout: {connect_timeout}}}\n"
        + "  - message: all-rooms-unavailable\n"
        + "  - goto: council\n"
    )


def single_room_dialplan() -> str:
    """The benchmark's plan: council-cctv-1 only, no prompt, no confirmation; a safe ending for the validator."""
    return textwrap.dedent(
        """\
        name: callbench
        serves:
          help_points: [hp-outram-street, hp-portland-square, hp-old-market-place]
        rooms:
          council-cctv:
            positions: [council-cctv-1]
        retry_interval: 1
        steps:
          - label: council
            ring: {room: council-cctv, strategy: parallel, ring_timeout: 10, connect_timeout: 4}
          - message: all-rooms-unavailable
        """
    )


def write_config(folder: Path, dialplan: str, algorithms: tuple[str, ...] = ("MD5", "SHA-256")) -> Path:
    """A gateway config (demo inventory and prompts, absolute paths) whose only dialplan is ``dialplan``.

    ``algorithms``: the digest challenges offered, in order (MD5 first for SIPp; MD5 only for baresip 1.0,
    whose libre fails the whole challenge with ENOSYS as soon as one WWW-Authenticate says SHA-256)."""
    folder.mkdir(parents=True, exist_ok=True)
    plans = folder / "dialplans"
    plans.mkdir(exist_ok=True)
    (plans / "test.yaml").write_text(dialplan)
    data = yaml.safe_load(CONFIG.read_text())
    data.setdefault("registrar", {})["algorithms"] = list(algorithms)
    data["inventory"] = {
        "help_points": str(ROOT / "sip-config" / "help-points.yaml"),
        "operators": str(ROOT / "sip-config" / "operators.yaml"),
    }
    data["dialplans_dir"] = str(plans)
    data["prompts_dir"] = str(ROOT / "prompts")
    data["data_dir"] = str(folder / "data")
    path = folder / "gateway.yaml"
    path.write_text(yaml.safe_dump(data, sort_keys=False))
    return path


def check_dialplan(config: Path) -> subprocess.CompletedProcess[str]:
    """``gateway dialplan check --config <config>``."""
    return subprocess.run(
        [
            str(ROOT / ".venv" / "bin" / "python"),
            "-m",
            "gateway",
            "dialplan",
            "check",
            "--config",
            str(config),
        ],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )


def _udp_free(port: int) -> bool:
    s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    try:
        s.bind((LOOPBACK, port))
        return True
    except OSError:
        return False
    finally:
        s.close()


def free_udp_block(size: int, low: int = 20000, high: int = 60000) -> int:
    """First port of ``size`` consecutive free UDP ports (even start), picked at random in [low, high)."""
    rng = random.Random()
    for _ in range(200):
        start = rng.randrange(low, high - size) & ~1
        if all(_udp_free(p) for p in range(start, start + size)):
            return start
    raise RuntimeError(f"no block of {size} free UDP ports on loopback")


class CallGateway(GatewayProcess):
    """The gateway with a test dialplan and its own RTP port range."""

    def __init__(
        self,
        folder: Path,
        dialplan: str,
        *,
        rtp_ports: int = 200,
        algorithms: tuple[str, ...] = ("MD5", "SHA-256"),
    ) -> None:
        config = write_config(folder, dialplan, algorithms)
        data_dir = folder / "data"
        data_dir.mkdir(parents=True, exist_ok=True)
        start = free_udp_block(rtp_ports, 30000, 60000)
        self.rtp_range = (start, start + rtp_ports - 1)
        super().__init__(
            data_dir, config=config, env={"GATEWAY_RTP_PORTS": f"{start}-{start + rtp_ports - 1}"}
        )

    @property
    def journal(self) -> Path:
        return self.data_dir / "activations.jsonl"

    def journal_lines(self) -> list[dict[str, Any]]:
        try:
            text = self.journal.read_text(encoding="utf-8")
        except OSError:
            return []
        return [json.loads(line) for line in text.splitlines() if line.strip()]

    def activations(self) -> list[dict[str, Any]]:
        return [d for d in self.journal_lines() if "activation_id" in d]

    def recordings(self) -> list[dict[str, Any]]:
        return [d["recording"] for d in self.journal_lines() if "recording" in d]

    def wait_activations(self, count: int, timeout: float = 20.0) -> list[dict[str, Any]]:
        """Wait until ``count`` activations are journalled; returns them (possibly fewer on timeout)."""
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            found = self.activations()
            if len(found) >= count:
                return found
            time.sleep(0.1)
        return self.activations()

    def wait_recording(self, activation_id: str, timeout: float = 10.0) -> dict[str, Any] | None:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            for rec in self.recordings():
                if rec.get("activation_id") == activation_id:
                    return rec
            time.sleep(0.1)
        return None


# ------------------------------------------------------------------------------------------- registration


def register(
    gw: GatewayProcess,
    user: str,
    contact_port: int,
    *,
    expires: int = 300,
    password: str | None = None,
    timeout: float = 5.0,
) -> SipMessage:
    """REGISTER ``user`` with Contact ``sip:user@127.0.0.1:contact_port`` (MD5 digest); the final response."""
    contact = (("Contact", f"<sip:{user}@{LOOPBACK}:{contact_port}>"), ("Expires", str(expires)))
    return digest_register(gw, user, contact, password=password, timeout=timeout, what=f"REGISTER {user}")


# ------------------------------------------------------------------------------------------- SIPp agents


class SippAgent:
    """One SIPp process in the background, in its own working directory (with ``pcap/g711a.pcap``).

    ``port`` is its SIP port (an operator's Contact port), ``media_port`` its RTP port (``-mp``).
    """

    def __init__(
        self,
        sipp: str,
        scenario: str,
        gw: GatewayProcess,
        workroot: Path,
        *,
        name: str | None = None,
        calls: int = 1,
        keys: dict[str, str] | None = None,
        user: str | None = None,
        password: str | None = None,
        timeout: float = 40.0,
        recv_timeout_ms: int | None = None,
        extra: list[str] | None = None,
        port: int | None = None,
    ) -> None:
        self.scenario = scenario
        self.name = name or Path(scenario).stem
        self.work = Path(tempfile.mkdtemp(prefix=f"{self.name}-", dir=workroot))
        if SAMPLE_PCAP.exists():
            (self.work / "pcap").mkdir()
            shutil.copy(SAMPLE_PCAP, self.work / "pcap" / SAMPLE_PCAP.name)
        self.port = port or free_port()
        self.media_port = free_udp_block(4, 20000, 29990)
        self.timeout = timeout
        all_keys = {"domain": gw.realm, "hp_rtp": str(self.media_port), **(keys or {})}
        self.argv = [
            "timeout", "-k", "5", str(int(timeout)),
            sipp, f"{LOOPBACK}:{gw.sip_port}",
            "-sf", str(CALL_SCENARIOS / scenario),
            "-i", LOOPBACK, "-p", str(self.port), "-mp", str(self.media_port),
            "-t", "u1", "-m", str(calls), "-nostdin",
            "-timeout", f"{max(1, int(timeout) - 2)}s", "-timeout_error",
            "-trace_msg", "-message_file", str(self.work / "messages.log"),
            "-trace_err", "-error_file", str(self.work / "errors.log"),
            "-trace_stat", "-stf", str(self.work / "stats.csv"), "-fd", "1",
        ]  # fmt: skip
        if recv_timeout_ms is not None:
            self.argv += ["-recv_timeout", str(recv_timeout_ms)]
        for k, v in all_keys.items():
            self.argv += ["-key", k, v]
        if user is not None:
            self.argv += ["-au", user, "-ap", password if password is not None else demo_password(user)]
        self.argv += extra or []
        self.proc: subprocess.Popen[bytes] | None = None
        self.started_at = 0.0

    def start(self) -> SippAgent:
        self.started_at = time.monotonic()
        self.proc = subprocess.Popen(
            self.argv,
            cwd=self.work,
            stdout=open(self.work / "stdout.log", "wb"),  # noqa: SIM115
            stderr=subprocess.STDOUT,
        )
        return self

    def wait_listening(self, timeout: float = 5.0) -> None:
        """Wait until the UAS has bound its SIP port (so the first INVITE is not lost)."""
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if not _udp_free(self.port):
                return
            if self.proc is not None and self.proc.poll() is not None:
                raise RuntimeError(f"{self.name}: SIPp exited at once:\n{self.stdout()[-2000:]}")
            time.sleep(0.05)
        raise RuntimeError(f"{self.name}: SIPp not listening on {self.port} after {timeout}s")

    def running(self) -> bool:
        return self.proc is not None and self.proc.poll() is None

    def stdout(self) -> str:
        with contextlib.suppress(OSError):
            return (self.work / "stdout.log").read_text(errors="replace")
        return ""

    def wait(self, timeout: float | None = None) -> SippResult:
        """Wait for SIPp to finish (killing it after ``timeout``) and collect what it traced."""
        assert self.proc is not None, "not started"
        try:
            self.proc.wait(timeout=timeout if timeout is not None else self.timeout + 10)
        except subprocess.TimeoutExpired:
            self.stop()
        return self.result()

    def stop(self) -> None:
        """Stop this SIPp (its coreutils ``timeout`` wrapper and SIPp, by pid)."""
        if self.proc is not None:
            stop_process(self.proc)  # `timeout` passes SIGTERM on to SIPp

    def result(self) -> SippResult:
        assert self.proc is not None
        res = SippResult(
            self.argv,
            self.proc.returncode if self.proc.returncode is not None else -1,
            self.stdout(),
            "",
            self.work,
        )
        with contextlib.suppress(OSError):
            res.messages = parse_trace((self.work / "messages.log").read_text(errors="replace"))
        with contextlib.suppress(OSError):
            res.errors = (self.work / "errors.log").read_text(errors="replace")
        with contextlib.suppress(OSError):
            with open(self.work / "stats.csv", newline="") as fh:
                res.stats = list(csv.DictReader(fh, delimiter=";"))
        return res

    def received(self, method: str | None = None, status: int | None = None) -> list[SipMessage]:
        """Messages SIPp has received so far (read the trace now; it is flushed per message)."""
        out = self.result().received if self.proc is not None else []
        return [
            m
            for m in out
            if (method is None or m.method == method) and (status is None or m.status == status)
        ]


def answering_operator(sipp: str, gw: GatewayProcess, folder: Path, user: str = COUNCIL[0]) -> SippAgent:
    """A SIPp softphone for position ``user`` that answers (op_answer.xml): started, listening, registered."""
    op = SippAgent(sipp, "op_answer.xml", gw, folder, name="op", keys={"opuser": user}, timeout=60).start()
    op.wait_listening()
    ok = register(gw, user, op.port)
    assert ok.status == 200, f"REGISTER {user}: {ok.text}"
    return op


def calling_help_point(sipp: str, gw: GatewayProcess, folder: Path, hold_ms: int,
                       user: str = HELP_POINT) -> SippAgent:
    """A SIPp help point (hp_call.xml, digest as ``user``) that calls and hangs up after ``hold_ms``: started."""
    return SippAgent(sipp, "hp_call.xml", gw, folder, name="hp", keys={"hpuser": user}, user=user,
                     extra=["-d", str(hold_ms)], timeout=60).start()


class RtpSink:
    """A UDP socket that counts datagrams (RTP the gateway sends to a help point), in a thread."""

    def __init__(self) -> None:
        self.port = free_udp_block(2, 20000, 29990)
        self.sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        self.sock.bind((LOOPBACK, self.port))
        self.sock.settimeout(0.2)
        self.packets: list[tuple[float, bytes]] = []
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._loop, daemon=True, name="rtp-sink")
        self._thread.start()

    def _loop(self) -> None:
        while not self._stop.is_set():
            try:
                data, _ = self.sock.recvfrom(4096)
            except (TimeoutError, OSError):
                continue
            self.packets.append((time.monotonic(), data))

    def count_between(self, t0: float, t1: float) -> int:
        return sum(1 for t, _ in list(self.packets) if t0 <= t < t1)

    def close(self) -> None:
        self._stop.set()
        self._thread.join(2)
        self.sock.close()


# ------------------------------------------------------------------------------------------- timelines


def events(activation: dict[str, Any], name: str) -> list[dict[str, Any]]:
    return [e for e in activation["timeline"] if e["event"] == name]


def event_names(activation: dict[str, Any]) -> list[str]:
    return [e["event"] for e in activation["timeline"]]


def first_event(activation: dict[str, Any], name: str, **match: Any) -> dict[str, Any]:
    for e in activation["timeline"]:
        if e["event"] == name and all(e.get(k) == v for k, v in match.items()):
            return e
    raise AssertionError(f"no {name} {match} in timeline:\n{json.dumps(activation['timeline'], indent=1)}")


def sha256_file(path: Path) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as fh:
        for chunk in iter(lambda: fh.read(1 << 16), b""):
            h.update(chunk)
    return h.hexdigest()


_STAMP = re.compile(r"^-{10,} (\d{4}-\d\d-\d\d \d\d:\d\d:\d\d\.\d+)\s*$", re.M)


def timed_messages(result: SippResult) -> list[tuple[float, TracedMessage]]:
    """``-trace_msg`` messages with SIPp's wall-clock stamp (epoch seconds), in order."""
    try:
        text = (result.workdir / "messages.log").read_text(errors="replace")
    except OSError:
        return []
    out: list[tuple[float, TracedMessage]] = []
    stamps = list(_STAMP.finditer(text))
    for i, m in enumerate(stamps):
        block = text[m.start() : stamps[i + 1].start() if i + 1 < len(stamps) else len(text)]
        parsed = parse_trace(block)
        if parsed:
            when = datetime.strptime(m.group(1), "%Y-%m-%d %H:%M:%S.%f").timestamp()
            out.append((when, parsed[0]))
    return out


def first_at(result: SippResult, direction: str, start_line: str) -> float:
    """Time of the first traced message whose start line begins with ``start_line``."""
    for when, tm in timed_messages(result):
        if tm.direction == direction and tm.message.start_line.startswith(start_line):
            return when
    raise AssertionError(f"no {direction} {start_line!r} in {result.workdir}/messages.log")
