"""Helpers for the integration tests: the gateway process, SIPp runs, a bare UDP SIP peer (see conftest)."""

from __future__ import annotations

import contextlib
import csv
import hashlib
import os
import re
import signal
import socket
import subprocess
import sys
import tempfile
import threading
import time
import urllib.error
import urllib.request
import uuid
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[2]
SCENARIOS = Path(__file__).resolve().parent / "scenarios"
CONFIG = ROOT / "sip-config" / "gateway.yaml"
PYTHON = Path(sys.executable)
LOOPBACK = "127.0.0.1"
START_TIMEOUT = 30.0
STOP_TIMEOUT = 10.0

HELP_POINTS = ("hp-outram-street", "hp-portland-square", "hp-old-market-place")
OPERATORS = ("council-cctv-1", "council-cctv-2", "police-control-1")


def demo_password(user: str) -> str:
    return "demo-" + user


def _find_key(node: object, key: str) -> object | None:
    if isinstance(node, dict):
        if key in node:
            return node[key]
        for value in node.values():
            found = _find_key(value, key)
            if found is not None:
                return found
    elif isinstance(node, list):
        for value in node:
            found = _find_key(value, key)
            if found is not None:
                return found
    return None


def read_realm(config: Path = CONFIG) -> str:
    """The digest realm from the gateway config (key ``realm`` anywhere in it), else ``helppoint.local``."""
    try:
        import yaml

        realm = _find_key(yaml.safe_load(config.read_text()), "realm")
    except (OSError, ImportError, ValueError):
        realm = None
    return str(realm) if realm else "helppoint.local"


def stop_process(proc: subprocess.Popen[Any], sig: int = signal.SIGTERM, timeout: float = 5.0) -> int | None:
    """Send ``sig`` to ``proc`` if it still runs, wait ``timeout`` s for it, then SIGKILL it (and wait 5 s);
    its exit code.  Peers run under coreutils ``timeout``, which passes the signal on."""
    if proc.poll() is None:
        proc.send_signal(sig)
        try:
            proc.wait(timeout)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait(5)
    return proc.returncode


def free_port() -> int:
    """A port free for both UDP and TCP on loopback (the SIP listener binds both)."""
    for _ in range(50):
        tcp = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        udp = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        try:
            tcp.bind((LOOPBACK, 0))
            port = tcp.getsockname()[1]
            udp.bind((LOOPBACK, port))
            return port
        except OSError:
            continue
        finally:
            tcp.close()
            udp.close()
    raise RuntimeError("no free UDP+TCP port on loopback")


# --------------------------------------------------------------------------------------------- SIP helpers


@dataclass
class SipMessage:
    """A SIP message as text: enough to assert on what a peer sent (not the gateway's parser)."""

    raw: bytes

    @property
    def text(self) -> str:
        return self.raw.decode("utf-8", "replace")

    @property
    def start_line(self) -> str:
        return self.text.split("\r\n", 1)[0].split("\n", 1)[0].strip()

    @property
    def is_response(self) -> bool:
        return self.start_line.startswith("SIP/2.0 ")

    @property
    def status(self) -> int | None:
        return int(self.start_line.split()[1]) if self.is_response else None

    @property
    def method(self) -> str | None:
        return None if self.is_response else self.start_line.split()[0]

    @property
    def headers(self) -> list[tuple[str, str]]:
        head = re.split(r"\r?\n\r?\n", self.text, maxsplit=1)[0]
        lines = re.split(r"\r?\n", head)[1:]
        out: list[tuple[str, str]] = []
        for line in lines:
            if line[:1] in (" ", "\t") and out:  # folded continuation
                out[-1] = (out[-1][0], out[-1][1] + " " + line.strip())
            elif ":" in line:
                name, _, value = line.partition(":")
                out.append((name.strip(), value.strip()))
        return out

    def get_all(self, name: str, compact: str | None = None) -> list[str]:
        names = {name.lower()} | ({compact.lower()} if compact else set())
        return [v for n, v in self.headers if n.lower() in names]

    def get(self, name: str, compact: str | None = None) -> str | None:
        values = self.get_all(name, compact)
        return values[0] if values else None

    @property
    def contacts(self) -> list[str]:
        """Every Contact value, comma-separated values split outside <> and quotes."""
        out: list[str] = []
        for value in self.get_all("Contact", "m"):
            out.extend(split_commas(value))
        return out

    @property
    def cseq(self) -> tuple[int, str]:
        number, method = (self.get("CSeq") or "0 ?").split()
        return int(number), method

    @property
    def call_id(self) -> str | None:
        return self.get("Call-ID", "i")

    @property
    def body(self) -> bytes:
        parts = re.split(rb"\r?\n\r?\n", self.raw, maxsplit=1)
        return parts[1] if len(parts) == 2 else b""


def split_commas(value: str) -> list[str]:
    parts, depth, quoted, cur = [], 0, False, []
    for ch in value:
        if ch == '"':
            quoted = not quoted
        elif not quoted and ch == "<":
            depth += 1
        elif not quoted and ch == ">":
            depth -= 1
        if ch == "," and not quoted and depth == 0:
            parts.append("".join(cur).strip())
            cur = []
        else:
            cur.append(ch)
    if "".join(cur).strip():
        parts.append("".join(cur).strip())
    return parts


def contact_expires(contact: str) -> int | None:
    m = re.search(r";\s*expires\s*=\s*(\d+)", contact.split(">", 1)[-1] if ">" in contact else contact, re.I)
    return int(m.group(1)) if m else None


def digest_params(challenge: str) -> dict[str, str]:
    scheme, _, rest = challenge.strip().partition(" ")
    params = {
        k.lower(): (v1 if v1 or q else v2)
        for k, q, v1, v2 in re.findall(r'([\w-]+)\s*=\s*(?:(")([^"]*)"|([^\s,]+))', rest)
    }
    params["scheme"] = scheme
    return params


_TRACE_SPLIT = re.compile(r"^-{10,} [0-9-]+ [0-9:.]+\s*$", re.M)
_TRACE_HEAD = re.compile(
    r"^(?P<transport>UDP|TCP|TLS|SCTP) message (?P<dir>sent|received) (?:\(\d+ bytes\)|\[\d+\] bytes) ?:\s*$",
    re.M,
)


@dataclass
class TracedMessage:
    direction: str  # "sent" or "received", from SIPp's point of view
    transport: str
    message: SipMessage


def parse_trace(text: str) -> list[TracedMessage]:
    """Messages of a SIPp ``-trace_msg`` file, in order."""
    out: list[TracedMessage] = []
    for block in _TRACE_SPLIT.split(text):
        m = _TRACE_HEAD.search(block)
        if not m:
            continue
        body = block[m.end() :].lstrip("\r\n")
        # SIPp writes CRLF line ends as in the message, plus a trailing blank line per block.
        raw = body.rstrip("\n") + "\n"
        raw = re.sub(r"(?<!\r)\n", "\r\n", raw)
        if not raw.endswith("\r\n\r\n"):
            raw = raw.rstrip("\r\n") + "\r\n\r\n"
        out.append(TracedMessage(m.group("dir"), m.group("transport"), SipMessage(raw.encode())))
    return out


def build_request(
    method: str,
    uri: str,
    *,
    local_port: int,
    transport: str = "UDP",
    branch: str | None = None,
    from_uri: str = "sip:probe@127.0.0.1",
    to_uri: str | None = None,
    call_id: str | None = None,
    cseq: int = 1,
    headers: tuple[tuple[str, str], ...] = (),
    body: bytes = b"",
) -> bytes:
    branch = branch or "z9hG4bK" + uuid.uuid4().hex
    lines = [
        f"{method} {uri} SIP/2.0",
        f"Via: SIP/2.0/{transport} {LOOPBACK}:{local_port};branch={branch};rport",
        "Max-Forwards: 70",
        f"From: <{from_uri}>;tag={uuid.uuid4().hex[:10]}",
        f"To: <{to_uri or from_uri}>",
        f"Call-ID: {call_id or uuid.uuid4().hex}@{LOOPBACK}",
        f"CSeq: {cseq} {method}",
        *[f"{n}: {v}" for n, v in headers],
        f"Content-Length: {len(body)}",
    ]
    return ("\r\n".join(lines) + "\r\n\r\n").encode() + body


def md5_authorization(challenges: list[str], user: str, password: str, uri: str, method: str = "REGISTER") -> str:
    """An RFC 2617/7616 MD5 ``Authorization`` value answering the MD5 one of ``challenges`` (qop=auth)."""
    md5 = next(c for c in map(digest_params, challenges) if c.get("algorithm", "MD5").upper() == "MD5")
    ha1 = hashlib.md5(f"{user}:{md5['realm']}:{password}".encode()).hexdigest()
    ha2 = hashlib.md5(f"{method}:{uri}".encode()).hexdigest()
    cnonce, nc = uuid.uuid4().hex[:16], "00000001"
    if "auth" in [q.strip() for q in md5.get("qop", "").split(",")]:
        response = hashlib.md5(f"{ha1}:{md5['nonce']}:{nc}:{cnonce}:auth:{ha2}".encode()).hexdigest()
        qop = f', qop=auth, nc={nc}, cnonce="{cnonce}"'
    else:
        response = hashlib.md5(f"{ha1}:{md5['nonce']}:{ha2}".encode()).hexdigest()
        qop = ""
    opaque = f', opaque="{md5["opaque"]}"' if "opaque" in md5 else ""
    return (
        f'Digest username="{user}", realm="{md5["realm"]}", nonce="{md5["nonce"]}", uri="{uri}", '
        f'response="{response}", algorithm=MD5{qop}{opaque}'
    )


class UdpClient:
    """A bare UDP SIP peer on loopback: send bytes, collect the datagrams that come back."""

    def __init__(self, target: tuple[str, int]) -> None:
        self.target = target
        self.sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        self.sock.bind((LOOPBACK, 0))
        self.port = self.sock.getsockname()[1]

    def send(self, data: bytes) -> None:
        self.sock.sendto(data, self.target)

    def recv(self, timeout: float = 2.0) -> SipMessage | None:
        self.sock.settimeout(timeout)
        try:
            data, _ = self.sock.recvfrom(70000)
        except TimeoutError:
            return None
        return SipMessage(data)

    def recv_final(self, timeout: float = 5.0) -> SipMessage | None:
        """The first final (>= 200) response, skipping provisionals."""
        deadline = time.monotonic() + timeout
        while (left := deadline - time.monotonic()) > 0:
            msg = self.recv(left)
            if msg is None:
                return None
            if msg.is_response and (msg.status or 0) >= 200:
                return msg
        return None

    def request(self, method: str, uri: str, timeout: float = 5.0, **kw: object) -> SipMessage | None:
        self.send(build_request(method, uri, local_port=self.port, **kw))  # type: ignore[arg-type]
        return self.recv_final(timeout)

    def drain(self, timeout: float = 0.2) -> list[SipMessage]:
        out = []
        while (msg := self.recv(timeout)) is not None:
            out.append(msg)
        return out

    def close(self) -> None:
        self.sock.close()


# --------------------------------------------------------------------------------------------- the process


class GatewayProcess:
    """``python -m gateway serve`` on free loopback ports, its log captured to ``data_dir/gateway.log``."""

    def __init__(self, data_dir: Path, *, config: Path = CONFIG, env: dict[str, str] | None = None) -> None:
        self.data_dir = data_dir
        self.config = config
        self.sip_port = free_port()
        self.http_port = free_port()
        self.realm = read_realm(config)
        self.extra_env = dict(env or {})
        self.log_path = data_dir / "gateway.log"
        self.proc: subprocess.Popen[bytes] | None = None
        self.exit_codes: list[int] = []
        self._log_file = None

    # -- lifecycle
    @property
    def env(self) -> dict[str, str]:
        env = dict(os.environ)
        env.update(
            GATEWAY_SIP_LISTEN=f"udp:{LOOPBACK}:{self.sip_port},tcp:{LOOPBACK}:{self.sip_port}",
            GATEWAY_HTTP_LISTEN=f"{LOOPBACK}:{self.http_port}",
            GATEWAY_DATA_DIR=str(self.data_dir),
            PYTHONUNBUFFERED="1",
        )
        env.update(self.extra_env)
        return env

    def start(self, timeout: float = START_TIMEOUT) -> None:
        assert self.proc is None or self.proc.poll() is not None, "already running"
        self._log_file = open(self.log_path, "ab")  # noqa: SIM115 - closed in stop()
        self._log_file.write(f"\n===== start {time.strftime('%H:%M:%S')} =====\n".encode())
        self._log_file.flush()
        self.proc = subprocess.Popen(
            [str(PYTHON), "-m", "gateway", "serve", "--config", str(self.config)],
            cwd=ROOT,
            env=self.env,
            stdout=self._log_file,
            stderr=subprocess.STDOUT,
        )
        self.wait_ready(timeout)

    def wait_ready(self, timeout: float = START_TIMEOUT) -> None:
        assert self.proc is not None
        deadline = time.monotonic() + timeout
        last = ""
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                raise RuntimeError(
                    f"gateway exited with {self.proc.returncode} before it was ready; log:\n{self.log_tail()}"
                )
            try:
                status, _ = self.http_get("/health", timeout=1.0)
                if status == 200:
                    return
                last = f"/health answered {status}"
            except OSError as exc:
                last = repr(exc)
            time.sleep(0.1)
        self.kill()
        raise RuntimeError(f"gateway not ready after {timeout}s ({last}); log:\n{self.log_tail()}")

    def stop(self, timeout: float = STOP_TIMEOUT) -> int:
        """SIGTERM, wait; returns the exit code (SIGKILL and -9 if it does not exit in time)."""
        if self.proc is None:
            return 0
        code = stop_process(self.proc, signal.SIGTERM, timeout)
        self.exit_codes.append(code)
        if self._log_file:
            self._log_file.close()
            self._log_file = None
        return code

    def kill(self) -> None:
        if self.proc is not None and self.proc.poll() is None:
            self.proc.kill()
            self.proc.wait(5)

    def restart(self, timeout: float = START_TIMEOUT) -> int:
        """Graceful stop then start on the same ports and data directory; returns the stop's exit code."""
        code = self.stop()
        self.start(timeout)
        return code

    @property
    def running(self) -> bool:
        return self.proc is not None and self.proc.poll() is None

    # -- observation
    @property
    def sip_addr(self) -> tuple[str, int]:
        return (LOOPBACK, self.sip_port)

    @property
    def uri(self) -> str:
        return f"sip:{LOOPBACK}:{self.sip_port}"

    def log_text(self) -> str:
        try:
            return self.log_path.read_text(errors="replace")
        except OSError:
            return ""

    def log_tail(self, lines: int = 60) -> str:
        return "\n".join(self.log_text().splitlines()[-lines:])

    def http_get(self, path: str, timeout: float = 5.0) -> tuple[int, bytes]:
        url = f"http://{LOOPBACK}:{self.http_port}{path}"
        try:
            with urllib.request.urlopen(url, timeout=timeout) as resp:  # noqa: S310 - loopback only
                return resp.status, resp.read()
        except urllib.error.HTTPError as exc:
            return exc.code, exc.read()

    def metrics(self) -> dict[str, float]:
        """Prometheus text exposition -> {'name{label="v",...}': value} (labels as exposed)."""
        status, body = self.http_get("/metrics")
        assert status == 200, f"/metrics answered {status}"
        out: dict[str, float] = {}
        for line in body.decode().splitlines():
            if not line or line.startswith("#"):
                continue
            key, _, value = line.rpartition(" ")
            with contextlib.suppress(ValueError):
                out[key.strip()] = float(value)
        return out

    def metric(self, name: str, **labels: str) -> float:
        """Sum of the samples of ``name`` whose labels include ``labels`` (0 when absent)."""
        total = 0.0
        for key, value in self.metrics().items():
            base, _, rest = key.partition("{")
            if base != name:
                continue
            got = dict(re.findall(r'(\w+)="((?:[^"\\]|\\.)*)"', rest))
            if all(got.get(k) == v for k, v in labels.items()):
                total += value
        return total


# --------------------------------------------------------------------------------------------- SIPp


class Md5OnlyRelay:
    """Loopback relay SIPp -> gateway that drops non-MD5 digest challenges from responses (see module doc).

    UDP: one socket; requests from SIPp go on to the gateway *from this socket*, and the scenarios put this
    socket's address in their Via (``-key via``), so the gateway's responses come back here.
    TCP: one gateway connection per SIPp connection, responses framed by Content-Length and filtered.
    ``from_gateway`` holds every message the gateway sent, unmodified.
    """

    _NON_MD5 = re.compile(
        rb"^(?:WWW|Proxy)-Authenticate[ \t]*:[^\r\n]*algorithm[ \t]*=[ \t]*\"?(?!MD5[\",\s])[^\r\n]*\r\n",
        re.I | re.M,
    )

    def __init__(self, gateway: tuple[str, int]) -> None:
        self.gateway = gateway
        self.from_gateway: list[SipMessage] = []
        self._stop = threading.Event()
        self.udp = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        self.udp.bind((LOOPBACK, 0))
        self.port = self.udp.getsockname()[1]
        self.tcp = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        self.tcp.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            self.tcp.bind((LOOPBACK, self.port))
        except OSError:
            self.tcp.bind((LOOPBACK, 0))
        self.tcp_port = self.tcp.getsockname()[1]
        self.tcp.listen(16)
        self._client: tuple[str, int] | None = None
        self._threads = [
            threading.Thread(target=self._udp_loop, daemon=True),
            threading.Thread(target=self._accept_loop, daemon=True),
        ]
        for t in self._threads:
            t.start()

    def filter(self, data: bytes) -> bytes:
        if data.startswith(b"SIP/2.0 "):
            self.from_gateway.append(SipMessage(data))
            return self._NON_MD5.sub(b"", data)
        return data

    def _udp_loop(self) -> None:
        self.udp.settimeout(0.2)
        while not self._stop.is_set():
            try:
                data, addr = self.udp.recvfrom(70000)
            except (TimeoutError, OSError):
                continue
            with contextlib.suppress(OSError):
                if addr == self.gateway:
                    if self._client is not None:
                        self.udp.sendto(self.filter(data), self._client)
                else:
                    self._client = addr
                    self.udp.sendto(data, self.gateway)

    def _accept_loop(self) -> None:
        self.tcp.settimeout(0.2)
        while not self._stop.is_set():
            try:
                client, _ = self.tcp.accept()
            except (TimeoutError, OSError):
                continue
            upstream = socket.create_connection(self.gateway, timeout=5)
            for src, dst, filt in ((client, upstream, False), (upstream, client, True)):
                threading.Thread(target=self._pump, args=(src, dst, filt), daemon=True).start()

    def _pump(self, src: socket.socket, dst: socket.socket, filt: bool) -> None:
        buf = b""
        src.settimeout(0.2)
        while not self._stop.is_set():
            try:
                data = src.recv(65536)
            except TimeoutError:
                continue
            except OSError:
                break
            if not data:
                break
            if not filt:
                dst.sendall(data)
                continue
            buf += data
            while (end := buf.find(b"\r\n\r\n")) >= 0:
                m = re.search(rb"^(?:Content-Length|l)[ \t]*:[ \t]*(\d+)", buf[:end], re.I | re.M)
                total = end + 4 + (int(m.group(1)) if m else 0)
                if len(buf) < total:
                    break
                msg, buf = buf[:total], buf[total:]
                dst.sendall(self.filter(msg))
        with contextlib.suppress(OSError):
            dst.shutdown(socket.SHUT_WR)

    def close(self) -> None:
        self._stop.set()
        for t in self._threads:
            t.join(2)
        self.udp.close()
        self.tcp.close()


@dataclass
class SippResult:
    argv: list[str]
    returncode: int
    stdout: str
    stderr: str
    workdir: Path
    messages: list[TracedMessage] = field(default_factory=list)
    stats: list[dict[str, str]] = field(default_factory=list)
    errors: str = ""
    gateway_messages: list[SipMessage] = field(default_factory=list)
    gateway_log: str = ""

    @property
    def received(self) -> list[SipMessage]:
        """What SIPp received (after the MD5-only relay, when one was used)."""
        return [t.message for t in self.messages if t.direction == "received"]

    @property
    def sent(self) -> list[SipMessage]:
        return [t.message for t in self.messages if t.direction == "sent"]

    @property
    def responses(self) -> list[SipMessage]:
        """The gateway's responses as it sent them (relay capture), else as SIPp received them."""
        return self.gateway_messages or [m for m in self.received if m.is_response]

    def stat(self, column: str) -> str:
        """Last row's value of a ``-trace_stat`` column (e.g. 'SuccessfulCall(C)')."""
        assert self.stats, f"no -trace_stat rows; stdout:\n{self.stdout[-2000:]}"
        return self.stats[-1][column]

    def explain(self) -> str:
        msgs = "\n".join(f"--- {t.direction} ({t.transport})\n{t.message.text}" for t in self.messages)
        return (
            f"sipp {' '.join(self.argv[1:])}\nexit {self.returncode}\nerrors: {self.errors[-3000:]}\n"
            f"stderr: {self.stderr[-2000:]}\nmessages:\n{msgs[-8000:]}\ngateway log tail:\n{self.gateway_log}"
        )


class SippRunner:
    """Runs one bounded SIPp client against the gateway in a fresh working directory."""

    def __init__(self, sipp: str, gateway: GatewayProcess, workroot: Path) -> None:
        self.sipp = sipp
        self.gateway = gateway
        self.workroot = workroot
        self._md5_first: bool | None = None
        self._relay: Md5OnlyRelay | None = None

    # The gateway lists its challenges in its preferred order; decide once whether SIPp needs the relay.
    def md5_first(self) -> bool:
        if self._md5_first is None:
            client = UdpClient(self.gateway.sip_addr)
            try:
                user = "council-cctv-1"
                resp = client.request(
                    "REGISTER",
                    self.gateway.uri,
                    from_uri=f"sip:{user}@{self.gateway.realm}",
                    headers=(("Contact", f"<sip:{user}@{LOOPBACK}:{client.port}>"), ("Expires", "0")),
                )
            finally:
                client.close()
            assert resp is not None and resp.status == 401, (
                f"probe REGISTER: expected 401, got {resp and resp.text}"
            )
            first = digest_params(resp.get_all("WWW-Authenticate")[0]).get("algorithm", "MD5")
            self._md5_first = first.upper() == "MD5"
        return self._md5_first

    def relay(self) -> Md5OnlyRelay:
        if self._relay is None:
            self._relay = Md5OnlyRelay(self.gateway.sip_addr)
        return self._relay

    def close(self) -> None:
        if self._relay is not None:
            self._relay.close()

    def run(
        self,
        scenario: str,
        *,
        transport: str = "u1",
        user: str | None = None,
        password: str | None = None,
        keys: dict[str, str] | None = None,
        calls: int = 1,
        rate: float | None = None,
        limit: int | None = None,
        extra: list[str] | None = None,
        auth: bool = True,
        timeout: float = 30.0,
        recv_timeout_ms: int = 5000,
    ) -> SippResult:
        name = Path(scenario).stem
        work = Path(tempfile.mkdtemp(prefix=f"{name}-", dir=self.workroot))
        use_relay = auth and not self.md5_first()
        if use_relay:
            relay = self.relay()
            relay.from_gateway.clear()
            target = (LOOPBACK, relay.port if transport.startswith("u") else relay.tcp_port)
        else:
            relay = None
            target = self.gateway.sip_addr
        keys = {"domain": self.gateway.realm, "expires": "3600", "tag": "a", **(keys or {})}
        if user is not None:
            keys.setdefault("user", user)
        argv = [
            "timeout",
            "-k",
            "5",
            str(int(timeout)),
            self.sipp,
            f"{target[0]}:{target[1]}",
            "-sf",
            str(SCENARIOS / scenario),
            "-i",
            LOOPBACK,
            "-t",
            transport,
            "-m",
            str(calls),
            "-nostdin",
            "-recv_timeout",
            str(recv_timeout_ms),
            "-timeout",
            f"{int(timeout)}s",
            "-timeout_error",
            "-trace_msg",
            "-message_file",
            str(work / "messages.log"),
            "-trace_err",
            "-error_file",
            str(work / "errors.log"),
            "-trace_stat",
            "-stf",
            str(work / "stats.csv"),
            "-fd",
            "1",
        ]
        local_port = free_port()
        argv += ["-p", str(local_port)]
        # Via sent-by: SIPp's own port, or the relay's when the relay must see the responses (UDP).
        via_port = relay.port if relay is not None and transport.startswith("u") else local_port
        keys.setdefault("via", f"{LOOPBACK}:{via_port}")
        for k, v in keys.items():
            argv += ["-key", k, v]
        if user is not None:
            argv += ["-au", user, "-ap", password if password is not None else demo_password(user)]
        if rate is not None:
            argv += ["-r", str(rate)]
        if limit is not None:
            argv += ["-l", str(limit)]
        argv += extra or []
        proc = subprocess.run(argv, cwd=work, capture_output=True, timeout=timeout + 15, check=False)
        result = SippResult(
            argv,
            proc.returncode,
            proc.stdout.decode(errors="replace"),
            proc.stderr.decode(errors="replace"),
            work,
        )
        with contextlib.suppress(OSError):
            result.messages = parse_trace((work / "messages.log").read_text(errors="replace"))
        with contextlib.suppress(OSError):
            result.errors = (work / "errors.log").read_text(errors="replace")
        with contextlib.suppress(OSError):
            with open(work / "stats.csv", newline="") as fh:
                result.stats = list(csv.DictReader(fh, delimiter=";"))
        result.gateway_log = self.gateway.log_tail(30)
        if relay is not None:
            time.sleep(0.05)
            result.gateway_messages = list(relay.from_gateway)
        return result


def digest_register(
    gw: GatewayProcess,
    user: str,
    headers: tuple[tuple[str, str], ...] = (),
    *,
    password: str | None = None,
    timeout: float = 5.0,
    what: str = "REGISTER",
) -> SipMessage:
    """REGISTER ``user`` with ``headers`` (none: a query), answering the 401 with an MD5 digest computed
    here; returns the final response. ``what`` names the request in assertion messages."""
    client = UdpClient(gw.sip_addr)
    try:
        aor = f"sip:{user}@{gw.realm}"
        call_id = uuid.uuid4().hex
        first = client.request(
            "REGISTER", gw.uri, from_uri=aor, call_id=call_id, cseq=1, timeout=timeout, headers=headers
        )
        assert first is not None, f"no answer to the {what}"
        if first.status != 401:
            return first
        pw = password if password is not None else demo_password(user)
        authz = md5_authorization(first.get_all("WWW-Authenticate"), user, pw, gw.uri)
        final = client.request(
            "REGISTER",
            gw.uri,
            from_uri=aor,
            call_id=call_id,
            cseq=2,
            timeout=timeout,
            headers=(*headers, ("Authorization", authz)),
        )
        assert final is not None, f"no answer to the authenticated {what}"
        return final
    finally:
        client.close()


def query_bindings(
    gw: GatewayProcess, user: str, *, password: str | None = None, timeout: float = 5.0
) -> SipMessage:
    """Query-only REGISTER (no Contact) with an MD5 digest answer computed here; returns the final response.

    Used to check bindings from Python without SIPp (RFC 3261 section 10.2.3)."""
    return digest_register(gw, user, password=password, timeout=timeout, what="query REGISTER")


def wait_for(predicate: Callable[[], bool], timeout: float, step: float = 0.05) -> bool:
    """Poll ``predicate`` every ``step`` seconds for up to ``timeout``; its last value."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if predicate():
            return True
        time.sleep(step)
    return predicate()


def cpu_seconds(pid: int) -> float:
    """User + system CPU seconds of process ``pid`` (benchmarks)."""
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def thread_cpu_seconds(pid: int, tid: int | None = None) -> float:
    """User + system CPU seconds of one thread (default: the main thread, whose id is the process id)."""
    tid = pid if tid is None else tid
    fields = Path(f"/proc/{pid}/task/{tid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def udp_rcvbuf_errors() -> int:
    """Datagrams the kernel dropped because a UDP receive buffer was full (this network namespace)."""
    try:
        lines = [
            ln.split() for ln in Path("/proc/net/snmp").read_text().splitlines() if ln.startswith("Udp:")
        ]
        return int(lines[1][lines[0].index("RcvbufErrors")])
    except (OSError, ValueError, IndexError):
        return -1


def sipp_elapsed(stats: dict[str, str]) -> float:
    """Seconds from a SIPp statistics row's StartTime to its CurrentTime (``-trace_stat`` CSV), to the
    microsecond: its ElapsedTime(C) column counts whole seconds, which would make a 5.9 s run of 1,500 calls
    read as 300 calls/s."""

    def epoch(field: str) -> float:
        return float(stats[field].split()[-1])  # "2026-12-04\t15:00:15.178305\t1796396415.178305"

    try:
        return epoch("CurrentTime") - epoch("StartTime")
    except (KeyError, ValueError, IndexError):  # another SIPp's columns: its whole seconds, then
        h, m, sec, *us = (int(x) for x in stats["ElapsedTime(C)"].strip().split(":"))
        return h * 3600 + m * 60 + sec + (us[0] / 1e6 if us else 0.0)


def percentile(values: list[float], q: float) -> float:
    """The ``q``-th percentile (nearest rank) of ``values``; NaN when empty (benchmarks)."""
    if not values:
        return float("nan")
    ordered = sorted(values)
    k = min(len(ordered) - 1, max(0, round(q / 100 * (len(ordered) - 1))))
    return ordered[k]


def print_markdown_table(head: object, rows: list[Any]) -> None:
    """Print dataclass rows (``head`` holds the column titles) as a Markdown table (benchmarks)."""
    cols = list(head.__dict__)
    widths = {c: max(len(str(getattr(r, c))) for r in [head, *rows]) for c in cols}

    def line(row: object) -> str:
        return "| " + " | ".join(str(getattr(row, c)).ljust(widths[c]) for c in cols) + " |"

    print(line(head))
    print("|" + "|".join("-" * (widths[c] + 2) for c in cols) + "|")
    for row in rows:
        print(line(row))
