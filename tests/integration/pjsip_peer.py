"""A PJSIP user agent (pjsua2-pybind11, PJSIP 2.14.1) run as a subprocess by test_pjsip_interop.py.

    python pjsip_peer.py '<json config>'

It speaks JSON lines: commands on stdin (``{"cmd": "call", "uri": ...}``, ``{"cmd": "hangup"}``,
``{"cmd": "quit"}``; ``auto_answer`` with ``answer_after_ms`` rings with a 180 first), events on stdout (``{"ev": "reg", "code": 200}``, ``{"ev": "state", "state": "EARLY",
"code": 183}``, ``{"ev": "tsx", ...}``, ``{"ev": "bye"}``...), each with ``t``, its monotonic time.  PJSIP's own
log (level 5, every SIP message in full) goes to ``config["log"]``.

Why a subprocess, and why it looks the way it does (see shared/PEERS.md):

* One thread makes every pjsua call (``threadCnt = 0``; media on the SIP ioqueue).  The events are polled with
  the C function ``pjsua_handle_events`` through ctypes, which lets go of the GIL while PJSIP waits: a
  callback then takes it back on the same thread, and no PJSIP thread ever waits for Python.
* Every callback catches everything: a Python exception escaping into PJSIP aborts the process.
* ``Call`` objects are dropped at DISCONNECTED.
* This wheel's binding has no ``AccountConfig.callConfig`` / ``mediaConfig``, no player or recorder and no
  ``libHandleEvents``.  The rest goes through the pjsua C API in the wheel's own ``libpjsua`` (ctypes): the
  WAV player and recorder, and :func:`tune_account`, which sets 100rel, the session timer and the RTP bind
  address with ``pjsua_acc_get_config``/``pjsua_acc_modify``.  The offsets of those fields in
  ``pjsua_acc_config`` are found at run time from the defaults ``pjsua_acc_config_default`` writes (90/1800
  for the timer, the ``pjsua_transport_config_default`` pattern with port 4000 for ``rtp_cfg``), and the
  script stops with an error when they are not found, never writes blind.
* RTP stays on loopback: the media transport is bound to 127.0.0.1 (by default PJSIP binds RTP to every
  interface and writes the default interface's address in its SDP).
"""

from __future__ import annotations

import ctypes
import glob
import json
import os
import select
import struct
import sys
import time
import traceback
from collections.abc import Callable
from typing import Any

import pjsua2 as pj

#: pjsua_100rel_use and pjsua_sip_timer_use (pjsua.h).
PRACK_USE = {"none": 0, "mandatory": 1, "optional": 2}
TIMER_USE = {"inactive": 0, "optional": 1, "required": 2, "always": 3}
#: pjsua_destroy_flag: PJSUA_DESTROY_NO_RX_MSG | PJSUA_DESTROY_NO_TX_MSG.
DESTROY_NO_NETWORK = 3

_LIBDIR = os.path.join(os.path.dirname(pj.__file__), "pjsua2_pybind11.libs")


def _lib(prefix: str) -> ctypes.CDLL:
    (path,) = glob.glob(os.path.join(_LIBDIR, f"{prefix}-*.so*"))
    return ctypes.CDLL(path)  # the very library the binding loaded (same file: same handle, same globals)


PJSUA = _lib("libpjsua")
PJSUA.pjsua_pool_create.restype = ctypes.c_void_p
PJSUA.pjsua_handle_events.argtypes = [ctypes.c_uint]


class PjStr(ctypes.Structure):
    """pj_str_t."""

    _fields_ = [("ptr", ctypes.c_char_p), ("slen", ctypes.c_ssize_t)]


_KEEP: list[Any] = []  # C strings handed to PJSIP must outlive the call


def pj_str(text: str) -> PjStr:
    raw = ctypes.create_string_buffer(text.encode())
    _KEEP.append(raw)
    return PjStr(ctypes.cast(raw, ctypes.c_char_p), len(text))


def emit(ev: str, **data: Any) -> None:
    sys.stdout.write(json.dumps({"ev": ev, "t": time.monotonic(), **data}) + "\n")
    sys.stdout.flush()


def _u32(buf: ctypes.Array, offset: int) -> int:
    return struct.unpack_from("<I", buf, offset)[0]


def tune_account(acc_id: int, config: dict[str, Any]) -> dict[str, int]:
    """Set require_100rel, use_timer/timer_setting and rtp_cfg (port, bind address) of account *acc_id*."""
    pool = PJSUA.pjsua_pool_create(b"tune", 4096, 4096)
    size = 1 << 16
    acc = ctypes.create_string_buffer(size)
    status = PJSUA.pjsua_acc_get_config(acc_id, ctypes.c_void_p(pool), acc)
    if status != 0:
        raise RuntimeError(f"pjsua_acc_get_config: {status}")
    # timer_setting {min_se, sess_expires} defaults to {90, 1800}; use_timer and require_100rel precede it.
    timer = next(o for o in range(0, 4096, 4) if _u32(acc, o) == 90 and _u32(acc, o + 4) == 1800)
    if _u32(acc, timer - 4) != TIMER_USE["optional"] or _u32(acc, timer - 8) != PRACK_USE["none"]:
        raise RuntimeError("pjsua_acc_config layout not as expected around timer_setting")
    # rtp_cfg: port 4000 (pjsua_acc_config_default), then what pjsua_transport_config_default writes.
    tdef = ctypes.create_string_buffer(4096)
    PJSUA.pjsua_transport_config_default(tdef)
    marks = [(o, _u32(tdef, o)) for o in range(0, 1024, 4) if 0 < _u32(tdef, o) < 65536]
    rtp = next(o for o in range(timer, size - 2048, 8)
               if _u32(acc, o) == 4000 and marks and all(_u32(acc, o + k) == v for k, v in marks))
    struct.pack_into("<I", acc, timer - 8, PRACK_USE[config.get("prack", "none")])
    struct.pack_into("<I", acc, timer - 4, TIMER_USE[config.get("timer", "optional")])
    struct.pack_into("<II", acc, timer, config.get("min_se", 90), config.get("session_expires", 1800))
    struct.pack_into("<II", acc, rtp, config["rtp_port"], 200)  # port, port_range
    bound = pj_str("127.0.0.1")  # rtp_cfg.bound_addr: public_addr at +16, bound_addr at +32 (pj_str_t)
    ctypes.memmove(ctypes.addressof(acc) + rtp + 32, ctypes.addressof(bound), ctypes.sizeof(PjStr))
    status = PJSUA.pjsua_acc_modify(acc_id, acc)
    if status != 0:
        raise RuntimeError(f"pjsua_acc_modify: {status}")
    return {"timer_offset": timer, "rtp_offset": rtp}


class Media:
    """A looping WAV player (the microphone) and a WAV recorder (the speaker), through the pjsua C API."""

    def __init__(self, play: str | None, record: str | None) -> None:
        self.player_slot = -1
        self.recorder_id = -1
        self.recorder_slot = -1
        self.player_id = -1
        if play:
            pid = ctypes.c_int(-1)
            name = pj_str(play)
            if PJSUA.pjsua_player_create(ctypes.byref(name), 0, ctypes.byref(pid)) != 0:
                raise RuntimeError(f"pjsua_player_create {play}")
            self.player_id = pid.value
            self.player_slot = PJSUA.pjsua_player_get_conf_port(pid.value)
        if record:
            rid = ctypes.c_int(-1)
            name = pj_str(record)
            if PJSUA.pjsua_recorder_create(ctypes.byref(name), 0, None, ctypes.c_ssize_t(-1), 0,
                                           ctypes.byref(rid)) != 0:
                raise RuntimeError(f"pjsua_recorder_create {record}")
            self.recorder_id = rid.value
            self.recorder_slot = PJSUA.pjsua_recorder_get_conf_port(rid.value)

    def attach(self, call_slot: int) -> None:
        if self.player_slot >= 0:
            PJSUA.pjsua_conf_connect(self.player_slot, call_slot)
        if self.recorder_slot >= 0:
            PJSUA.pjsua_conf_connect(call_slot, self.recorder_slot)

    def close(self) -> None:
        if self.recorder_id >= 0:
            PJSUA.pjsua_recorder_destroy(self.recorder_id)  # writes the WAV header's sizes
            self.recorder_id = -1
        if self.player_id >= 0:
            PJSUA.pjsua_player_destroy(self.player_id)
            self.player_id = -1


class Peer:
    """The endpoint, one account, at most one call."""

    def __init__(self, config: dict[str, Any]) -> None:
        self.config = config
        self.call: PeerCall | None = None
        self.media_slot = -1
        self.quit = False
        self.unregistered = False
        #: When to answer the ringing incoming call with 200 (``answer_after_ms``), or None.
        self.answer_at: float | None = None


class PeerCall(pj.Call):
    def __init__(self, peer: Peer, acc: pj.Account, call_id: int = -1) -> None:
        super().__init__(acc, call_id)
        self.peer = peer

    def onCallState(self, prm: Any) -> None:  # noqa: N802 - PJSIP's name
        try:
            info = self.info
            emit("state", state=info.state.name, code=int(info.lastStatusCode), reason=info.lastReason,
                 call_id=info.callIdString)
            if info.state == pj.InvState.DISCONNECTED:
                self.peer.call = None  # dropped at DISCONNECTED (the next call would reuse the slot)
        except Exception:  # noqa: BLE001 - an exception escaping into PJSIP aborts the process
            emit("error", where="onCallState", trace=traceback.format_exc())

    def onCallMediaState(self, prm: Any) -> None:  # noqa: N802
        try:
            info = self.info
            for m in info.media:
                if m.type == pj.MediaType.AUDIO and m.status == pj.CallMediaStatus.ACTIVE:
                    if m.audioConfSlot != self.peer.media_slot:
                        self.peer.media_slot = m.audioConfSlot
                        MEDIA.attach(m.audioConfSlot)
                    emit("media", status="ACTIVE", slot=m.audioConfSlot, state=info.state.name)
        except Exception:  # noqa: BLE001
            emit("error", where="onCallMediaState", trace=traceback.format_exc())

    def onCallTsxState(self, prm: Any) -> None:  # noqa: N802
        try:
            event = prm.e
            if event.type != pj.EventId.TSX_STATE:
                return
            tsx = event.body.tsxState.tsx
            if tsx.state in (pj.TsxState.COMPLETED, pj.TsxState.TERMINATED, pj.TsxState.PROCEEDING):
                emit("tsx", method=tsx.method, role=tsx.role.name, state=tsx.state.name,
                     code=int(tsx.statusCode), text=tsx.statusText)
        except Exception:  # noqa: BLE001
            emit("error", where="onCallTsxState", trace=traceback.format_exc())


class PeerAccount(pj.Account):
    def __init__(self, peer: Peer) -> None:
        super().__init__()
        self.peer = peer

    def onRegState(self, prm: Any) -> None:  # noqa: N802
        try:
            emit("reg", code=int(prm.code), reason=prm.reason, expires=prm.expiration)
            if prm.expiration == 0:
                self.peer.unregistered = True
        except Exception:  # noqa: BLE001
            emit("error", where="onRegState", trace=traceback.format_exc())

    def onIncomingCall(self, prm: Any) -> None:  # noqa: N802
        try:
            call = PeerCall(self.peer, self, prm.callId)
            emit("incoming", remote=call.info.remoteUri)
            op = pj.CallOpParam()
            if self.peer.call is not None or not self.peer.config.get("auto_answer"):
                op.statusCode = pj.StatusCode(486)
                call.hangup(op)
                return
            self.peer.call = call
            delay = self.peer.config.get("answer_after_ms", 0)
            op.statusCode = pj.StatusCode(180 if delay else 200)  # a 180 first is reliable with 100rel
            call.answer(op)
            if delay:
                self.peer.answer_at = time.monotonic() + delay / 1000
        except Exception:  # noqa: BLE001
            emit("error", where="onIncomingCall", trace=traceback.format_exc())


MEDIA: Media


def main() -> int:
    global MEDIA
    config = json.loads(sys.argv[1])
    peer = Peer(config)
    ep = pj.Endpoint()
    ep.libCreate()
    try:
        cfg = pj.EpConfig()
        cfg.uaConfig.threadCnt = 0
        cfg.uaConfig.mainThreadOnly = False
        cfg.uaConfig.maxCalls = 4
        cfg.logConfig.level = 5
        cfg.logConfig.consoleLevel = 0
        cfg.logConfig.msgLogging = True
        cfg.logConfig.filename = config["log"]
        cfg.medConfig.hasIoqueue = False  # RTP on the SIP ioqueue, polled by pjsua_handle_events below
        cfg.medConfig.threadCnt = 0
        cfg.medConfig.clockRate = 8000
        cfg.medConfig.sndClockRate = 8000
        cfg.medConfig.noVad = True
        ep.libInit(cfg)
        tcfg = pj.TransportConfig()
        tcfg.boundAddress = "127.0.0.1"
        tcfg.port = config.get("sip_port", 0)
        kind = pj.TransportType.TCP if config.get("transport") == "tcp" else pj.TransportType.UDP
        tid = ep.transportCreate(kind, tcfg)
        ep.libStart()
        ep.audDevManager.setNullDev()  # the conference clock without a sound card
        MEDIA = Media(config.get("play"), config.get("record"))
        sip_port = int(ep.transportGetInfo(tid).localName.rsplit(":", 1)[1])

        gw = config["gateway"]
        suffix = ";transport=tcp" if kind == pj.TransportType.TCP else ""
        acfg = pj.AccountConfig()
        acfg.idUri = f"sip:{config['user']}@{gw}"
        acfg.sipConfig.transportId = tid
        acfg.regConfig.registerOnAdd = False
        if config.get("register", True):
            acfg.regConfig.registrarUri = f"sip:{gw}{suffix}"
            acfg.regConfig.timeoutSec = 300
        acfg.sipConfig.authCreds.append(
            pj.AuthCredInfo("digest", "*", config["user"], 0, config["password"]))
        acc = PeerAccount(peer)
        acc.create(acfg, True)
        offsets = tune_account(acc.id, config)
        emit("ready", sip_port=sip_port, **offsets)
        if config.get("register", True):
            acc.setRegistration(True)

        deadline = time.monotonic() + float(config.get("lifetime", 60))
        while not peer.quit and time.monotonic() < deadline:
            PJSUA.pjsua_handle_events(10)
            if peer.answer_at is not None and time.monotonic() >= peer.answer_at:
                peer.answer_at = None
                answer_now(peer)
            if select.select([sys.stdin], [], [], 0)[0]:
                line = sys.stdin.readline()
                if not line:
                    break
                handle_command(peer, acc, json.loads(line), suffix)
        emit("stopping", timed_out=not peer.quit)
        ep.hangupAllCalls()
        pump_until(lambda: peer.call is None, 3.0)  # the BYE out and its 200 back
        peer.call = None
        MEDIA.close()
        if config.get("register", True) and config.get("unregister", True):
            try:
                acc.setRegistration(False)
                pump_until(lambda: peer.unregistered, 3.0)
            except Exception:  # noqa: BLE001 - already unregistered
                pass
        acc.shutdown()
    except Exception:  # noqa: BLE001
        emit("error", where="main", trace=traceback.format_exc())
        return 1
    finally:
        # Everything that had to go out went out above: no network at destroy time (which would otherwise
        # sleep a second for unregistrations).
        ep.libDestroy(DESTROY_NO_NETWORK)
        emit("destroyed")
    return 0


def answer_now(peer: Peer) -> None:
    """Answer the ringing incoming call with 200."""
    try:
        if peer.call is not None:
            op = pj.CallOpParam()
            op.statusCode = pj.StatusCode(200)
            peer.call.answer(op)
    except Exception:  # noqa: BLE001
        emit("error", where="answer", trace=traceback.format_exc())


def pump_until(done: Callable[[], bool], timeout: float) -> None:
    """Poll PJSIP's events until ``done()`` or ``timeout`` seconds."""
    deadline = time.monotonic() + timeout
    while not done() and time.monotonic() < deadline:
        PJSUA.pjsua_handle_events(10)
    for _ in range(5):
        PJSUA.pjsua_handle_events(10)


def handle_command(peer: Peer, acc: PeerAccount, cmd: dict[str, Any], suffix: str) -> None:
    try:
        if cmd["cmd"] == "call":
            call = PeerCall(peer, acc)
            peer.call = call
            call.makeCall(cmd["uri"] + suffix, pj.CallOpParam(True))
        elif cmd["cmd"] == "hangup":
            if peer.call is not None:
                peer.call.hangup(pj.CallOpParam())
        elif cmd["cmd"] == "quit":
            peer.quit = True
    except Exception:  # noqa: BLE001
        emit("error", where=f"command {cmd}", trace=traceback.format_exc())


if __name__ == "__main__":
    sys.exit(main())
