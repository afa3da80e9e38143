"""Real softphones as control-room operators: the gateway rings them and they answer.

* baresip 1.0.0 registers as ``council-cctv-1`` (against a gateway offering MD5 digest only: libre 1.0 fails
  a 401 carrying any SHA-256 challenge with "Register: Function not implemented") with ``answermode=auto`` and a WAV file as its microphone
  (``aufile``). It confirms the answer like a person would: the test drives its ``ctrl_tcp`` interface and,
  on ``CALL_ESTABLISHED``, sends ``sndcode 1``, which baresip sends as an RFC 4733 telephone-event. So this
  test keeps the confirm rule of the test dialplan (digit 1 within 3 s).
* pyVoIP 1.6.8 registers as ``council-cctv-1`` and answers from its callback. pyVoIP cannot *send* DTMF
  (VoIPCall has no such method), so its test uses a test dialplan whose rooms have **no** ``confirm`` rule.

The help point is SIPp (hp_call.xml: digest, 183, 200, plays g711a.pcap, BYE after 3 s). Assertions: the SIP
outcome at the help point, the activation record (answered by council-cctv-1, room council-cctv) and the
recording: stereo, with the softphone's own audio on the operator channel.
"""

from __future__ import annotations

import array
import contextlib
import json
import math
import shutil
import socket
import subprocess
import threading
import time
import wave
from collections.abc import Iterator
from pathlib import Path

import pytest
from calls_harness import (
    COUNCIL,
    HELP_POINT,
    CallGateway,
    SippAgent,
    check_dialplan,
    event_names,
    first_event,
    free_udp_block,
    make_dialplan,
    sha256_file,
)
from media_harness import tone_wav
from sip_harness import (
    LOOPBACK,
    GatewayProcess,
    demo_password,
    free_port,
    query_bindings,
    stop_process,
    wait_for,
)

pytestmark = pytest.mark.integration

OPERATOR = COUNCIL[0]


def bound_contacts(gw: GatewayProcess, user: str) -> list[str]:
    resp = query_bindings(gw, user)
    return resp.contacts if resp.status == 200 else []


def channel_rms(path: Path, channel: int, start: float = 0.0) -> float:
    """RMS of one channel of a 16-bit stereo WAV from ``start`` seconds."""
    with wave.open(str(path)) as w:
        assert w.getsampwidth() == 2 and w.getnchannels() == 2
        w.setpos(int(start * w.getframerate()))
        samples = array.array("h", w.readframes(w.getnframes()))
    picked = samples[channel::2]
    return math.sqrt(sum(v * v for v in picked) / len(picked)) if picked else 0.0


# ------------------------------------------------------------------------------------------- baresip


class Baresip:
    """baresip as an auto-answering operator that confirms with DTMF 1 through ctrl_tcp."""

    def __init__(
        self,
        folder: Path,
        gw: GatewayProcess,
        user: str,
        wav: Path,
        *,
        confirm_digit: str | None = "1",
        lifetime: int = 60,
    ) -> None:
        self.folder = folder
        folder.mkdir(parents=True, exist_ok=True)
        self.sip_port = free_port()
        self.ctrl_port = free_port()
        rtp = free_udp_block(20, 20000, 29990)
        (folder / "config").write_text(
            "\n".join(
                [
                    "poll_method epoll",
                    f"sip_listen {LOOPBACK}:{self.sip_port}",
                    f"net_interface {LOOPBACK}",
                    f"audio_source aufile,{wav}",
                    "audio_player aubridge,nil",
                    "audio_alert aubridge,nil",
                    f"rtp_ports {rtp}-{rtp + 19}",
                    "module_path /usr/lib/baresip/modules",
                    "module g711.so",
                    "module aufile.so",
                    "module aubridge.so",
                    "module_app account.so",
                    "module_app menu.so",
                    "module_app ctrl_tcp.so",
                    f"ctrl_tcp_listen {LOOPBACK}:{self.ctrl_port}",
                    "",
                ]
            )
        )
        (folder / "accounts").write_text(
            f"<sip:{user}@{LOOPBACK}:{gw.sip_port}>;auth_pass={demo_password(user)};answermode=auto;regint=300\n"
        )
        (folder / "contacts").write_text("")
        self.confirm_digit = confirm_digit
        self.events: list[dict] = []
        self.sent_digit_at: float | None = None
        self.log_path = folder / "baresip.log"
        self.proc = subprocess.Popen(
            ["timeout", "-k", "5", str(lifetime), "baresip", "-f", str(folder), "-t", str(lifetime - 2)],
            stdout=open(self.log_path, "wb"),  # noqa: SIM115
            stderr=subprocess.STDOUT,
            stdin=subprocess.DEVNULL,
        )
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._ctrl_loop, daemon=True, name="baresip-ctrl")
        self._thread.start()

    def _ctrl_loop(self) -> None:
        sock = None
        deadline = time.monotonic() + 15
        while sock is None and not self._stop.is_set() and time.monotonic() < deadline:
            try:
                sock = socket.create_connection((LOOPBACK, self.ctrl_port), timeout=1)
            except OSError:
                time.sleep(0.1)
        if sock is None:
            return
        sock.settimeout(0.2)
        buf = b""
        with sock:
            while not self._stop.is_set():
                try:
                    data = sock.recv(65536)
                except TimeoutError:
                    continue
                except OSError:
                    return
                if not data:
                    return
                buf += data
                while b":" in buf:  # netstrings: <len>:<json>,
                    head, _, rest = buf.partition(b":")
                    if not head.isdigit() or len(rest) < int(head) + 1:
                        break
                    n = int(head)
                    doc, buf = rest[:n], rest[n + 1 :]
                    with contextlib.suppress(ValueError):
                        self.events.append(json.loads(doc))
                        event = self.events[-1]
                        if (
                            event.get("type") == "CALL_ESTABLISHED"
                            and self.confirm_digit
                            and self.sent_digit_at is None
                        ):
                            time.sleep(0.3)
                            cmd = json.dumps(
                                {"command": "sndcode", "params": self.confirm_digit, "token": "confirm"}
                            ).encode()
                            sock.sendall(str(len(cmd)).encode() + b":" + cmd + b",")
                            self.sent_digit_at = time.monotonic()

    def event_types(self) -> list[str]:
        return [str(e.get("type")) for e in self.events if "type" in e]

    def log(self) -> str:
        with contextlib.suppress(OSError):
            return self.log_path.read_text(errors="replace")
        return ""

    def stop(self) -> None:
        self._stop.set()
        stop_process(self.proc)
        self._thread.join(2)


# ------------------------------------------------------------------------------------------- fixtures


@pytest.fixture
def gateway_for(tmp_path: Path) -> Iterator:
    made: list[CallGateway] = []

    def make(dialplan: str, algorithms: tuple[str, ...] = ("MD5", "SHA-256")) -> CallGateway:
        gw = CallGateway(tmp_path / f"gw{len(made)}", dialplan, algorithms=algorithms)
        made.append(gw)
        checked = check_dialplan(gw.config)
        assert checked.returncode == 0, checked.stdout + checked.stderr
        gw.start()
        return gw

    yield make
    for gw in made:
        gw.stop()


def help_point_call(sipp: str, gw: CallGateway, work: Path) -> tuple[int, list[int]]:
    hp = SippAgent(
        sipp,
        "hp_call.xml",
        gw,
        work,
        name="hp",
        keys={"hpuser": HELP_POINT},
        user=HELP_POINT,
        extra=["-d", "3000"],
        timeout=60,
    ).start()
    result = hp.wait(70)
    return result.returncode, [
        m.status for m in result.received if m.status is not None and m.cseq[1] == "INVITE"
    ]


def assert_answered_with_operator_audio(gw: CallGateway) -> dict:
    acts = gw.wait_activations(1, 20)
    assert len(acts) == 1, f"activations: {acts}\n{gw.log_tail()}"
    act = acts[0]
    assert act["outcome"] == "answered", json.dumps(act, indent=1)
    assert act["answered_by"] == OPERATOR and act["answered_room"] == "council-cctv", act
    rec = gw.wait_recording(act["activation_id"])
    assert rec is not None and rec["sha256"] == sha256_file(Path(rec["path"])), rec
    bridged = first_event(act, "bridged")["t"]
    # Operator channel (right) carries the softphone's 440 Hz tone once bridged.
    rms = channel_rms(Path(rec["path"]), 1, start=bridged + 0.5)
    assert rms > 300, f"operator channel nearly silent (rms {rms}): the softphone's audio was not recorded"
    return act


# ------------------------------------------------------------------------------------------- tests


@pytest.mark.skipif(
    shutil.which("baresip") is None, reason="baresip not installed (apt-get install -y baresip)"
)
def test_baresip_operator_answers_and_confirms_with_rfc4733(sipp: str, gateway_for, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    """(11) baresip auto-answers and presses 1 (RFC 4733): the activation is answered and recorded."""
    # baresip 1.0 (libre) gives up with ENOSYS when any challenge is SHA-256, even if MD5 comes first: this
    # gateway offers MD5 only. (RFC 8760 says a client ignores algorithms it does not support: a peer bug.)
    gw = gateway_for(make_dialplan(ring_timeout=5, connect_timeout=2, confirm_within=3), algorithms=("MD5",))
    phone = Baresip(tmp_path / "baresip", gw, OPERATOR, tone_wav(tmp_path / "operator-tone.wav"))
    try:
        assert wait_for(lambda: bool(bound_contacts(gw, OPERATOR)), 15, 0.3), (
            f"baresip did not register; its log:\n{phone.log()[-3000:]}\ngateway:\n{gw.log_tail()}"
        )
        code, flow = help_point_call(sipp, gw, tmp_path)
        assert code == 0 and 183 in flow and 200 in flow, (code, flow, phone.log()[-3000:], gw.log_tail())
        act = assert_answered_with_operator_audio(gw)
    finally:
        phone.stop()
    assert phone.sent_digit_at is not None, f"baresip never reported CALL_ESTABLISHED: {phone.event_types()}"
    assert first_event(act, "digit")["digit"] == "1", act["timeline"]
    names = event_names(act)
    assert names.index("confirm-requested") < names.index("digit") < names.index("bridged"), names
    assert "CALL_CLOSED" in phone.event_types() or "call: terminated" in phone.log().lower()


pyVoIP = pytest.importorskip("pyVoIP", reason="pyVoIP not installed (pip install 'pyVoIP==1.6.8')")
from pyVoIP.VoIP import CallState, PhoneStatus, VoIPPhone  # noqa: E402


def test_pyvoip_operator_answers_without_confirm_rule(sipp: str, gateway_for, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    """(11b) pyVoIP answers (it cannot send DTMF, so this dialplan has no confirm rule); 440 Hz is recorded."""
    gw = gateway_for(make_dialplan(ring_timeout=5, connect_timeout=2, confirm_within=None))
    # pyVoIP writes 8-bit unsigned linear audio: one second of 440 Hz, written once a second.
    second = bytes(int(128 + 90 * math.sin(2 * math.pi * 440 * n / 8000)) for n in range(8000))
    answered = threading.Event()
    stop = threading.Event()

    def on_call(call) -> None:  # type: ignore[no-untyped-def]
        try:
            call.answer()
            answered.set()
            deadline = time.monotonic() + 20
            while call.state == CallState.ANSWERED and not stop.is_set() and time.monotonic() < deadline:
                call.write_audio(second)
                time.sleep(1.0)
        except Exception:  # noqa: BLE001 - pyVoIP raises when the call ends under it
            pass

    sip_port = free_port()
    rtp = free_udp_block(40, 20000, 29990)
    phone = VoIPPhone(
        LOOPBACK,
        gw.sip_port,
        OPERATOR,
        demo_password(OPERATOR),
        myIP=LOOPBACK,
        callCallback=on_call,
        sipPort=sip_port,
        rtpPortLow=rtp,
        rtpPortHigh=rtp + 39,
    )
    starter = threading.Thread(target=phone.start, daemon=True)
    starter.start()
    try:
        assert wait_for(lambda: bool(bound_contacts(gw, OPERATOR)), 20, 0.3), (
            f"pyVoIP did not register\n{gw.log_tail()}"
        )
        code, flow = help_point_call(sipp, gw, tmp_path)
        assert answered.is_set(), "pyVoIP never got the call"
        assert code == 0 and 200 in flow, (code, flow, gw.log_tail())
        act = gw.wait_activations(1, 20)[0]
        assert act["outcome"] == "answered" and act["answered_by"] == OPERATOR, act
        assert "confirm-requested" not in event_names(act), "this dialplan has no confirm rule"
        assert_answered_with_operator_audio(gw)
    finally:
        stop.set()
        if phone.get_status() not in (PhoneStatus.INACTIVE, PhoneStatus.FAILED):
            t = threading.Thread(target=phone.stop, daemon=True)
            t.start()
            t.join(10)
        with contextlib.suppress(Exception):
            phone.sip._close_sockets()
