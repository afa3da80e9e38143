"""Media-plane benchmark: N concurrent bridged and recorded G.711 calls on loopback.

One command::

    .venv/bin/python bench/media_bench.py --calls 500 --duration 20

The gateway side runs as a subprocess of this script (``--serve``), pinned with ``taskset -c 0``; it
allocates two legs per call, bridges them with a :class:`StereoRecorder` each (half the calls transcode
PCMU<->PCMA by default) and runs the normal 20 ms clock.  This process is the packet generator, pinned
to CPU 1: every call has two peers sending 20 ms G.711 both ways for ``--duration`` seconds, spread
evenly over each 20 ms interval (phones are not synchronised).  The send time (ns) is written in
the first 16 payload bytes as nibbles chosen to survive PCMU<->PCMA transcoding, so the receiver
measures each packet's one-way time through the gateway.

Before each gateway run, the same traffic goes through a *reference relay* pinned to the same core: a bare
epoll relay in C (bench/ref_relay.c, compiled with gcc at run time; a Python one without gcc) that only
copies each datagram to the other leg's peer (no clock, no recording, no RTCP).  Its latency is what this
machine, at this moment, does to any relay on that core, so a tail that both show is the machine's and the
gateway's own share is the difference (``--no-reference`` skips it).

Reported: packets lost (sent by a peer and not relayed to the other, after a drain), one-way latency
p50/p99 through the gateway, the same for a direct peer->peer baseline at the same packet rate (the
difference is the gateway's added latency; also without the first second of traffic, when every call's
first packets arrive at once, which a real gateway never sees: calls start one by one), gateway CPU % of one core per call while traffic is sent
(not during the 1 s drain, when every bridged leg sends keep-alive silence), RSS per call (growth from before the first leg to the end of traffic, divided by calls), and recorder
frames dropped to disk.  Peers share a few generator sockets (the gateway learns their address by
symmetric RTP as it would behind NAT).
"""

from __future__ import annotations

import argparse
import array
import asyncio
import gc
import json
import os
import selectors
import shutil
import socket
import struct
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from gateway.media import g711  # noqa: E402
from gateway.media.sdp import NegotiatedMedia  # noqa: E402

HOST = "127.0.0.1"
TICK = 0.02
PAYLOAD = 160


def _nibble_codes() -> dict[str, bytes]:
    """16 PCMU codes (and their PCMA images) that map one-to-one through transcoding."""
    chosen = []
    for u in range(0x10, 0x100):
        a = g711.ULAW_TO_ALAW[u]
        if g711.ALAW_TO_ULAW[a] == u and u != 0xFF and a != 0xD5:
            chosen.append(u)
        if len(chosen) == 16:
            break
    return {"PCMU": bytes(chosen), "PCMA": bytes(g711.ULAW_TO_ALAW[u] for u in chosen)}


NIBBLES = _nibble_codes()
DECODE = {codec: bytes(codes.find(bytes((b,))) & 0xFF for b in range(256)) for codec, codes in NIBBLES.items()}
HEX = bytes.maketrans(bytes(range(16)), b"0123456789abcdef")


STAMP = {codec: bytes.maketrans(b"0123456789abcdef", codes) for codec, codes in NIBBLES.items()}


def stamp(ns: int, codec: str) -> bytes:
    return (b"%016x" % ns).translate(STAMP[codec])


def unstamp(payload: bytes, codec: str) -> int:
    return int(payload[:16].translate(DECODE[codec]).translate(HEX), 16)


def run_delay_s(pid: int | str = "self") -> float:
    """Seconds a process spent runnable but waiting for a CPU (/proc/PID/schedstat, field 2)."""
    try:
        return int(Path(f"/proc/{pid}/schedstat").read_text().split()[1]) / 1e9
    except (OSError, IndexError, ValueError):
        return float("nan")


def rss_kib(pid: int | str = "self") -> int:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1])
    return 0


# ---------------------------------------------------------------------------------------------------
# gateway side (subprocess)
# ---------------------------------------------------------------------------------------------------

async def serve(args: argparse.Namespace) -> None:
    from gateway.media.session import MediaEngine

    loop = asyncio.get_running_loop()
    lines: asyncio.Queue[dict] = asyncio.Queue()
    buf = bytearray()

    def on_stdin() -> None:
        data = os.read(0, 65536)
        if not data:
            loop.remove_reader(0)
            return
        buf.extend(data)
        while b"\n" in buf:
            line, _, rest = bytes(buf).partition(b"\n")
            buf[:] = rest
            lines.put_nowait(json.loads(line))

    loop.add_reader(0, on_stdin)

    def say(obj: dict) -> None:
        sys.stdout.write(json.dumps(obj) + "\n")
        sys.stdout.flush()

    rss0 = rss_kib()
    engine = MediaEngine(HOST, args.port_base, args.port_base + 4 * args.calls + 10, silence_timeout=30.0)
    legs = [(engine.allocate_leg(name=f"hp{i}"), engine.allocate_leg(name=f"op{i}")) for i in range(args.calls)]
    say({"legs": [[a.local_port, b.local_port] for a, b in legs]})
    setup = await lines.get()
    recorders = []
    for i, ((a, b), (hp, op)) in enumerate(zip(legs, setup["peers"], strict=True)):
        a.set_remote(NegotiatedMedia(HOST, hp[0], hp[1], 0 if hp[1] == "PCMU" else 8))
        b.set_remote(NegotiatedMedia(HOST, op[0], op[1], 0 if op[1] == "PCMU" else 8))
        rec = engine.recorder(os.path.join(args.record_dir, f"call{i}.wav")) if args.record_dir else None
        if rec is not None:
            recorders.append(rec)
        engine.bridge(a, b, rec)
    # As `gateway serve` does once it is ready (gateway/service.py): long-lived objects out of the cyclic
    # collector's sight, and no automatic collections.
    gc.freeze()
    gc.disable()
    say({"bridged": True})
    await lines.get()  # go
    cpu0, wall0, wait0 = time.process_time(), time.monotonic(), run_delay_s()
    await lines.get()  # the last packet was sent (the drain that follows is keep-alive only)
    cpu1, wall1, wait1 = time.process_time(), time.monotonic(), run_delay_s()
    await lines.get()  # drained
    rss1 = rss_kib()
    stats = [leg.stats for pair in legs for leg in pair]
    result = {
        "cpu_s": cpu1 - cpu0, "wall_s": wall1 - wall0, "runq_wait_s": wait1 - wait0, "rss0_kib": rss0, "rss1_kib": rss1,
        "relayed": sum(s.relayed_out for s in stats), "in": sum(s.packets_in for s in stats),
        "generated": sum(s.generated_out for s in stats),
        "rx_lost": sum(max(0, s.lost) for s in stats), "send_errors": sum(s.send_errors for s in stats),
        "ticks_skipped": engine.schedule.skipped if engine.schedule else -1,
        "late_ticks": engine.late_ticks, "max_lateness_ms": 1000 * engine.max_lateness,
        "disk_dropped": sum(r.frames_dropped for r in recorders),
    }
    t = time.monotonic()
    await asyncio.gather(*(r.seal_async() for r in recorders))
    result["seal_s"] = time.monotonic() - t
    result["recorded_s"] = sum(r.duration for r in recorders) / max(1, len(recorders))
    await engine.close()
    say(result)


def serve_reference(args: argparse.Namespace) -> None:
    """The same JSON protocol as :func:`serve`, but a bare relay: one socket per leg, one ``epoll``, each
    datagram read and sent to the other leg's peer (payload transcoded by table when the codecs differ, the
    RTP header untouched), no clock, no recording.  Pinned to the gateway's core, it shows what this machine
    does to the latency of *any* relay on that core, so the gateway's own share can be told from it."""
    import select

    def say(obj: dict) -> None:
        sys.stdout.write(json.dumps(obj) + "\n")
        sys.stdout.flush()

    def read() -> dict:
        return json.loads(sys.stdin.readline())

    socks = []
    for i in range(2 * args.calls):
        s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        s.bind((HOST, args.port_base + 2 * i))
        s.setblocking(False)
        socks.append(s)
    say({"legs": [[socks[2 * i].getsockname()[1], socks[2 * i + 1].getsockname()[1]] for i in range(args.calls)]})
    setup = read()
    route: dict[int, tuple[Callable[..., object], socket.socket, tuple[str, int], bytes | None]] = {}
    for i, (hp, op) in enumerate(setup["peers"]):
        a, b = socks[2 * i], socks[2 * i + 1]
        table = None if hp[1] == op[1] else (g711.ULAW_TO_ALAW if hp[1] == "PCMU" else g711.ALAW_TO_ULAW)
        back = None if table is None else (g711.ALAW_TO_ULAW if hp[1] == "PCMU" else g711.ULAW_TO_ALAW)
        route[a.fileno()] = (a.recv, b, (HOST, op[0]), table)
        route[b.fileno()] = (b.recv, a, (HOST, hp[0]), back)
    native = _build_reference_relay()
    if native is not None:
        _relay_natively(native, route, say, read)
        return
    ep = select.epoll()
    for fd in route:
        ep.register(fd, select.EPOLLIN)
    ep.register(0, select.EPOLLIN)
    say({"bridged": True})
    read()  # go
    cpu0, wall0, wait0, rss0 = time.process_time(), time.monotonic(), run_delay_s(), rss_kib()
    relayed = 0
    stdin_lines = 0
    while stdin_lines < 2:  # "sent", then "stop"
        for fd, _ in ep.poll():
            if fd == 0:
                line = sys.stdin.readline()
                stdin_lines += 1
                if stdin_lines == 1:
                    cpu1, wall1, wait1 = time.process_time(), time.monotonic(), run_delay_s()
                if not line:
                    stdin_lines = 2
                continue
            recv, out, dest, table = route[fd]
            while True:
                try:
                    data = recv(2048)
                except BlockingIOError:
                    break
                if table is not None:
                    data = data[:12] + data[12:].translate(table)
                out.sendto(data, dest)
                relayed += 1
    say(_reference_result(cpu1 - cpu0, wall1 - wall0, wait1 - wait0, rss0, rss_kib(), relayed, "Python"))


def _reference_result(cpu_s: float, wall_s: float, wait_s: float, rss0: int, rss1: int, relayed: int,
                      kind: str) -> dict:
    return {"cpu_s": cpu_s, "wall_s": wall_s, "runq_wait_s": wait_s, "rss0_kib": rss0, "rss1_kib": rss1,
            "relayed": relayed, "in": relayed, "generated": 0, "rx_lost": 0, "send_errors": 0, "ticks_skipped": 0,
            "late_ticks": 0, "max_lateness_ms": 0.0, "disk_dropped": 0, "seal_s": 0.0, "recorded_s": 0.0,
            "kind": kind}


def _build_reference_relay() -> str | None:
    """bench/ref_relay.c compiled into a temporary folder (gcc -O2), or None without gcc (the Python relay
    is used instead, and the note says which one ran)."""
    gcc = shutil.which("gcc") or shutil.which("cc")
    if gcc is None:
        return None
    out = os.path.join(tempfile.mkdtemp(prefix="ref-relay-"), "ref_relay")
    done = subprocess.run([gcc, "-O2", "-o", out, str(Path(__file__).with_name("ref_relay.c"))],
                          capture_output=True, text=True, timeout=120)
    return out if done.returncode == 0 else None


def _relay_natively(binary: str, route: dict, say: Callable[[dict], None], read: Callable[[], dict]) -> None:
    tables = (g711.ULAW_TO_ALAW + g711.ALAW_TO_ULAW).hex()
    kinds = {None: 0, g711.ULAW_TO_ALAW: 1, g711.ALAW_TO_ULAW: 2}
    lines = [tables] + [f"{fd} {out.fileno()} {dest[1]} {kinds[table]}" for fd, (_, out, dest, table) in route.items()]
    # The relay inherits this process's core (taskset) and the bound sockets.
    child = subprocess.Popen([binary], stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True,
                             pass_fds=tuple(route))
    assert child.stdin is not None and child.stdout is not None
    try:
        child.stdin.write("\n".join(lines) + "\nend\n")
        child.stdin.flush()
        child.stdout.readline()  # ready
        say({"bridged": True})
        read()  # go
        wall0, wait0 = time.monotonic(), run_delay_s(child.pid)
        child.stdin.write("go\n")
        child.stdin.flush()
        cpu0 = float(child.stdout.readline())
        read()  # sent
        child.stdin.write("sent\n")
        child.stdin.flush()
        cpu1 = float(child.stdout.readline())
        wall1, wait1 = time.monotonic(), run_delay_s(child.pid)
        rss = rss_kib(child.pid)
        read()  # stop
        child.stdin.write("stop\n")
        child.stdin.flush()
        relayed = int(child.stdout.readline())
        child.wait(10)
    finally:
        if child.poll() is None:
            child.kill()
        shutil.rmtree(os.path.dirname(binary), ignore_errors=True)
    say(_reference_result(cpu1 - cpu0, wall1 - wall0, wait1 - wait0, rss, rss, relayed, "C"))


# ---------------------------------------------------------------------------------------------------
# generator side (this process)
# ---------------------------------------------------------------------------------------------------

def make_sockets(count: int) -> list[socket.socket]:
    socks = []
    for _ in range(count):
        s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        for opt, force in ((socket.SO_RCVBUF, 33), (socket.SO_SNDBUF, 32)):  # SO_RCVBUFFORCE / SNDBUFFORCE
            try:
                s.setsockopt(socket.SOL_SOCKET, force, 8 << 20)
            except OSError:
                s.setsockopt(socket.SOL_SOCKET, opt, 4 << 20)
        s.bind((HOST, 0))
        s.setblocking(False)
        socks.append(s)
    return socks


def run_traffic(streams: list[tuple[socket.socket, tuple[str, int], str]], socks: dict[socket.socket, str],
                duration: float, drain: float, sample_every: int = 4,
                on_sent: Callable[[], None] | None = None) -> dict:
    """Send every stream's packets, spread over each 20 ms in 1 ms groups; receive what comes back.

    ``streams``: (socket, destination, codec sent).  ``socks``: every socket -> the codec it receives
    (peers are grouped on sockets by codec, so no source address is needed to decode).  The one-way
    time of every ``sample_every``-th received packet is decoded from its payload.
    """
    n = len(streams)
    groups = 20  # send groups per 20 ms tick
    per_group = -(-n // groups)
    slot = TICK / groups
    per_stream = int(duration / TICK)
    total_groups = per_stream * groups
    filler = {c: g711.encode(bytes(2 * (PAYLOAD - 16)), c).replace(b"\xff", b"\xfe").replace(b"\xd5", b"\xd4")
              for c in ("PCMU", "PCMA")}
    pts = {"PCMU": 0, "PCMA": 8}
    seqs = [0] * n
    hdr = struct.Struct("!BBHII").pack
    latencies = array.array("d")
    second = array.array("i")  # which second of the run each sampled packet was sent in
    received = 0
    silence = 0
    sel = selectors.DefaultSelector()
    for sock in socks:
        sel.register(sock, selectors.EVENT_READ, socks[sock])
    perf_ns = time.perf_counter_ns
    t0 = time.perf_counter() + 0.05
    group = 0
    max_lag = 0.0
    end = t0 + duration + drain
    cpu0 = time.process_time()
    while True:
        now = time.perf_counter()
        if group < total_groups:
            due = min(total_groups, int((now - t0) / slot) + 1) if now >= t0 else 0
            if due - group > 1:
                max_lag = max(max_lag, (due - group - 1) * slot)
            while group < due:
                first = (group % groups) * per_group
                for i in range(first, min(n, first + per_group)):
                    sock, dest, codec = streams[i]
                    seq = seqs[i]
                    seqs[i] = (seq + 1) & 0xFFFF
                    try:
                        sock.sendto(hdr(0x80, pts[codec], seq, (seq * PAYLOAD) & 0xFFFFFFFF, 0x10000 + i)
                                    + (b"%016x" % perf_ns()).translate(STAMP[codec]) + filler[codec], dest)
                    except BlockingIOError:
                        pass
                group += 1
            if group == total_groups and on_sent is not None:
                on_sent()
        elif now > end:
            break
        for key, _ in sel.select(0):
            recv = key.fileobj.recv
            codec = key.data
            while True:
                try:
                    data = recv(2048)
                except BlockingIOError:
                    break
                if data[12:28] == data[28:44]:  # keep-alive silence from the gateway
                    silence += 1
                    continue
                received += 1
                if received % sample_every == 0:
                    sent_ns = unstamp(data[12:], codec)
                    latencies.append((perf_ns() - sent_ns) / 1e6)
                    second.append(int(sent_ns / 1e9 - t0))
        if group < total_groups:
            wait = t0 + group * slot - time.perf_counter()
            if wait > 0.0003:
                sel.select(wait - 0.0002)
        else:
            sel.select(0.005)
    cpu = time.process_time() - cpu0
    per_second: dict[int, array.array] = {}
    for sec, lat in zip(second, latencies, strict=True):
        per_second.setdefault(sec, array.array("d")).append(lat)
    # After the first second: every call's first packets (latching, the slow path, recordings opening) all
    # fall in it because the benchmark starts every call at once, which a real gateway never sees.
    steady = array.array("d", (lat for sec, lat in zip(second, latencies, strict=True) if sec >= 1))
    return {"sent": per_stream * n, "received": received, "silence": silence, "latencies": latencies,
            "steady": steady,
            "p99_by_second": [percentile(per_second[k], 0.99) for k in sorted(per_second)],
            "max_lag": max_lag, "gen_cpu": 100 * cpu / (duration + drain)}


def percentile(values: array.array, q: float) -> float:
    if not values:
        return float("nan")
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(q * len(ordered)))]


def baseline(calls: int, duration: float) -> dict:
    """Peer -> peer directly (no gateway) at the same packet rate: the measurement's own floor."""
    socks = make_sockets(8)
    streams = []
    for i in range(calls):
        a, b = socks[i % 4], socks[4 + i % 4]
        streams.append((a, b.getsockname(), "PCMU"))
        streams.append((b, a.getsockname(), "PCMU"))
    result = run_traffic(streams, dict.fromkeys(socks, "PCMU"), duration, 0.5)
    for s in socks:
        s.close()
    return result


def bench(calls: int, duration: float, record: bool, transcode: float, port_base: int, *,
          reference: bool = False) -> dict:
    record_dir = tempfile.mkdtemp(prefix="media-bench-") if record and not reference else ""
    cmd = [sys.executable, __file__, "--serve", "--calls", str(calls), "--port-base", str(port_base),
           "--record-dir", record_dir, *(["--reference"] if reference else [])]
    if shutil.which("taskset"):
        cmd = ["taskset", "-c", "0", *cmd]
    gw = subprocess.Popen(cmd, stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True)
    assert gw.stdin is not None and gw.stdout is not None

    def send(obj: dict) -> None:
        gw.stdin.write(json.dumps(obj) + "\n")
        gw.stdin.flush()

    try:
        legs = json.loads(gw.stdout.readline())["legs"]
        # help points (PCMU) on 4 sockets, operators on 2 PCMA and 2 PCMU sockets
        hp_socks, op_pcma, op_pcmu = make_sockets(4), make_sockets(2), make_sockets(2)
        codec_of = {**dict.fromkeys(hp_socks, "PCMU"), **dict.fromkeys(op_pcma, "PCMA"),
                    **dict.fromkeys(op_pcmu, "PCMU")}
        streams, peers = [], []
        for i, (pa, pb) in enumerate(legs):
            hp = hp_socks[i % 4]
            op = (op_pcma if i < transcode * calls else op_pcmu)[i % 2]
            peers.append([[hp.getsockname()[1], "PCMU"], [op.getsockname()[1], codec_of[op]]])
            streams.append((hp, (HOST, pa), "PCMU"))
            streams.append((op, (HOST, pb), codec_of[op]))
        send({"peers": peers})
        json.loads(gw.stdout.readline())  # bridged
        send({"go": True})
        result = run_traffic(streams, codec_of, duration, 1.0, on_sent=lambda: send({"sent": True}))
        send({"stop": True})
        gw_result = json.loads(gw.stdout.readline())
        gw.wait(60)
    finally:
        if gw.poll() is None:
            gw.kill()
        if record_dir:
            shutil.rmtree(record_dir, ignore_errors=True)
    result.update(gw_result)
    return result


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--calls", default="500", help="comma-separated call counts, e.g. 100,300,500")
    parser.add_argument("--duration", type=float, default=20.0, help="seconds of traffic per run")
    parser.add_argument("--no-record", action="store_true", help="bridge without recorders")
    parser.add_argument("--transcode", type=float, default=0.5, help="fraction of calls PCMU<->PCMA")
    parser.add_argument("--port-base", type=int, default=30000)
    parser.add_argument("--no-reference", action="store_true", help="skip the bare reference relay run")
    parser.add_argument("--serve", action="store_true", help=argparse.SUPPRESS)
    parser.add_argument("--reference", action="store_true", help=argparse.SUPPRESS)
    parser.add_argument("--record-dir", default="", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.serve:
        args.calls = int(args.calls)
        if args.reference:
            serve_reference(args)
            return
        try:
            import uvloop
            uvloop.install()
        except ImportError:
            pass
        asyncio.run(serve(args))
        return
    try:
        os.sched_setaffinity(0, {1})
    except (AttributeError, OSError):
        pass
    print(f"# {time.strftime('%Y-%m-%d %H:%M')}  python {sys.version.split()[0]}  cpus {os.cpu_count()}  "
          f"duration {args.duration:.0f}s  record {not args.no_record}  transcode {args.transcode:.0%}")
    header = (f"{'calls':>5} {'sent':>8} {'lost':>5} {'p50 ms':>7} {'p99 ms':>7} {'base p50':>8} {'base p99':>8} "
              f"{'add p50':>7} {'add p99':>7} {'CPU%/call':>9} {'CPU% tot':>8} {'RSS KiB/call':>12} "
              f"{'disk drop':>9} {'gen lag ms':>10} {'add p99 after 1st s':>19}")
    print(header)
    for calls in (int(c) for c in args.calls.split(",")):
        base = baseline(calls, min(args.duration, 5.0))
        ref = None if args.no_reference else bench(calls, args.duration, False, args.transcode, args.port_base,
                                                   reference=True)
        r = bench(calls, args.duration, not args.no_record, args.transcode, args.port_base)
        lat, blat = r["latencies"], base["latencies"]
        p50, p99, b50, b99 = (percentile(lat, 0.5), percentile(lat, 0.99), percentile(blat, 0.5),
                              percentile(blat, 0.99))
        cpu_total = 100 * r["cpu_s"] / r["wall_s"]
        rss_per_call = (r["rss1_kib"] - r["rss0_kib"]) / calls
        print(f"{calls:>5} {r['sent']:>8} {r['sent'] - r['received']:>5} {p50:>7.3f} {p99:>7.3f} {b50:>8.3f} "
              f"{b99:>8.3f} {p50 - b50:>7.3f} {p99 - b99:>7.3f} {cpu_total / calls:>9.3f} {cpu_total:>8.1f} "
              f"{rss_per_call:>12.1f} {r['disk_dropped']:>9} {1000 * max(r['max_lag'], base['max_lag']):>10.1f} "
              f"{percentile(r['steady'], 0.99) - percentile(base['steady'], 0.99):>19.3f}",
              flush=True)
        print(f"#   gateway: relayed {r['relayed']} generated {r['generated']} in {r['in']} rx_lost {r['rx_lost']} send_errors "
              f"{r['send_errors']} ticks late>5ms {r['late_ticks']} (max {r['max_lateness_ms']:.1f} ms) skipped "
              f"{r['ticks_skipped']} keepalive_rx {r['silence']}; waited for CPU {r['runq_wait_s']:.2f}s of "
              f"{r['wall_s']:.1f}s; generator CPU {r['gen_cpu']:.0f}%; rss "
              f"{r['rss0_kib']}->{r['rss1_kib']} KiB seal {r['seal_s']:.2f}s recorded {r['recorded_s']:.1f}s/call",
              flush=True)
        print("#   one-way p99 ms by second of the run (gateway): "
              + " ".join(f"{p:.1f}" for p in r["p99_by_second"]), flush=True)
        if ref is not None:
            rl = ref["latencies"]
            print(f"#   reference relay ({ref['kind']}, bare epoll relay, same core, same traffic, no clock or recording): lost "
                  f"{ref['sent'] - ref['received']} p50 {percentile(rl, 0.5):.3f} p99 {percentile(rl, 0.99):.3f} "
                  f"(added over direct: p99 {percentile(rl, 0.99) - b99:.3f}, after 1st s "
                  f"{percentile(ref['steady'], 0.99) - percentile(base['steady'], 0.99):.3f}) CPU "
                  f"{100 * ref['cpu_s'] / ref['wall_s']:.1f}%; by second: "
                  + " ".join(f"{p:.1f}" for p in ref["p99_by_second"]), flush=True)


if __name__ == "__main__":
    main()
