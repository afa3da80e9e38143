"""REGISTER-with-digest throughput of the real gateway (driven by SIPp), and the SIP parser's speed.

    .venv/bin/python bench/register_bench.py [--rates 100,250,500,1000,2000] [--seconds 8] [--max-calls 20000]

Starts ``python -m gateway serve`` on free loopback ports with a throw-away data directory (embedded SQLite),
then runs SIPp's ``tests/integration/scenarios/register_auth.xml`` (REGISTER -> 401 -> REGISTER with MD5
digest -> 200) at each offered rate for a bounded number of registrations (rate x seconds, at most
--max-calls), as the demo account council-cctv-1 with one Contact, so every registration authenticates and
rewrites the same persisted binding. (SIPp 3.6.1 cannot take per-call credentials from an injection file:
``[authentication username=[field0] ...]`` is mangled into a header line without a colon.) Then it times ``gateway.sip.message.parse_message`` on a typical INVITE with SDP.
Everything prints as one table. Loopback only; every SIPp run is bounded by -m, -timeout and coreutils timeout.

SIPp 3.6.1 answers only MD5 and takes the *first* challenge, so the gateway runs with the demo config changed to
``registrar.algorithms: [MD5, SHA-256]`` (both still offered; see tests/integration/conftest.py).
Response times come from SIPp's -trace_rtt (its clock is coarse here, about 4 ms steps: small values are
quantised), per transaction: "401" = first REGISTER -> challenge, "200" = authenticated REGISTER -> 200.
They include SIPp's UDP retransmission waits (T1 = 500 ms, then 1 s ...) when a datagram was lost, so p99 jumps
to about 0.5 or 1.5 s as soon as the note column shows kernel receive-buffer drops.
"""

from __future__ import annotations

import argparse
import csv
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "tests" / "integration"))
sys.path.insert(0, str(ROOT))

from sip_harness import (  # noqa: E402
    CONFIG,
    LOOPBACK,
    SCENARIOS,
    GatewayProcess,
    cpu_seconds,
    demo_password,
    free_port,
    percentile,
    print_markdown_table,
    sipp_elapsed,
    udp_rcvbuf_errors,
)

BENCH_USER = "council-cctv-1"

_INVITE_HEAD = (
    b"INVITE sip:council-cctv@helppoint-gateway SIP/2.0\r\n"
    b"Via: SIP/2.0/UDP 10.20.0.31:5060;branch=z9hG4bK776asdhds;rport\r\n"
    b"Max-Forwards: 70\r\n"
    b'From: "Help point Outram Street" <sip:hp-outram-street@helppoint-gateway>;tag=1928301774\r\n'
    b"To: <sip:council-cctv@helppoint-gateway>\r\n"
    b"Call-ID: a84b4c76e66710@10.20.0.31\r\n"
    b"CSeq: 314159 INVITE\r\n"
    b"Contact: <sip:hp-outram-street@10.20.0.31:5060;transport=udp>\r\n"
    b"Allow: INVITE, ACK, CANCEL, BYE, OPTIONS, INFO, NOTIFY\r\n"
    b"Supported: replaces, timer\r\n"
    b"User-Agent: Intercom-Vendor HP-200 2.4.1\r\n"
    b"Content-Type: application/sdp\r\n"
)
_INVITE_SDP = (
    b"v=0\r\n"
    b"o=hp-outram-street 2890844526 2890844526 IN IP4 10.20.0.31\r\n"
    b"s=Help point call\r\n"
    b"c=IN IP4 10.20.0.31\r\n"
    b"t=0 0\r\n"
    b"m=audio 49170 RTP/AVP 8 0 101\r\n"
    b"a=rtpmap:8 PCMA/8000\r\n"
    b"a=rtpmap:0 PCMU/8000\r\n"
    b"a=rtpmap:101 telephone-event/8000\r\n"
    b"a=sendrecv\r\n"
)
TYPICAL_INVITE = _INVITE_HEAD + b"Content-Length: %d\r\n\r\n" % len(_INVITE_SDP) + _INVITE_SDP


@dataclass
class Row:
    bench: str
    offered: str
    done: str
    failed: str
    throughput: str
    p50: str
    p99: str
    note: str = ""


def md5_first_config(tmp: Path) -> Path:
    import yaml

    data = yaml.safe_load(CONFIG.read_text())
    data.setdefault("registrar", {})["algorithms"] = ["MD5", "SHA-256"]

    def absolutise(node: object) -> object:
        if isinstance(node, dict):
            return {k: absolutise(v) for k, v in node.items()}
        if isinstance(node, list):
            return [absolutise(v) for v in node]
        if isinstance(node, str) and node and not node.startswith("/") and (ROOT / node).exists():
            return str(ROOT / node)
        return node

    path = tmp / "gateway-bench.yaml"
    path.write_text(yaml.safe_dump(absolutise(data)))
    return path


def run_rate(sipp: str, gw: GatewayProcess, work: Path, rate: int, calls: int, limit: int) -> Row:
    step = work / f"rate-{rate}"
    step.mkdir()
    local_port = free_port()
    budget = int(calls / rate) + 30
    argv = [
        "timeout",
        "-k",
        "5",
        str(budget + 10),
        sipp,
        f"{LOOPBACK}:{gw.sip_port}",
        "-sf",
        str(SCENARIOS / "register_auth.xml"),
        "-i",
        LOOPBACK,
        "-p",
        str(local_port),
        "-t",
        "u1",
        "-m",
        str(calls),
        "-r",
        str(rate),
        "-l",
        str(limit),
        "-nostdin",
        "-recv_timeout",
        "5000",
        "-timeout",
        f"{budget}s",
        "-max_recv_loops",
        "10000",
        "-key",
        "user",
        BENCH_USER,
        "-au",
        BENCH_USER,
        "-ap",
        demo_password(BENCH_USER),
        "-key",
        "domain",
        gw.realm,
        "-key",
        "expires",
        "3600",
        "-key",
        "tag",
        "bench",
        "-key",
        "via",
        f"{LOOPBACK}:{local_port}",
        "-trace_stat",
        "-stf",
        str(step / "stats.csv"),
        "-fd",
        "1",
        "-trace_rtt",
        "-rtt_freq",
        "200",
        "-trace_err",
        "-error_file",
        str(step / "errors.log"),
    ]
    cpu0 = cpu_seconds(gw.proc.pid)  # type: ignore[union-attr]
    drops0 = udp_rcvbuf_errors()
    t0 = time.monotonic()
    proc = subprocess.run(argv, cwd=step, capture_output=True, check=False, timeout=budget + 30)
    wall = time.monotonic() - t0
    cpu = cpu_seconds(gw.proc.pid) - cpu0  # type: ignore[union-attr]
    drops = udp_rcvbuf_errors() - drops0
    with open(step / "stats.csv", newline="") as fh:
        last = list(csv.DictReader(fh, delimiter=";"))[-1]
    ok = int(last["SuccessfulCall(C)"])
    failed = int(last["FailedCall(C)"])
    elapsed = sipp_elapsed(last)
    rtts: dict[str, list[float]] = {"1": [], "2": []}
    for rtt_file in step.glob("*_rtt.csv"):
        with open(rtt_file, newline="") as fh:
            reader = csv.reader(fh, delimiter=";")
            header = [h.strip().lower() for h in next(reader, [])]
            i_time = next(i for i, h in enumerate(header) if h.startswith("response_time"))
            i_rtd = next(i for i, h in enumerate(header) if h.startswith("rtd"))
            for rec in reader:
                if len(rec) > max(i_time, i_rtd) and rec[i_rtd].strip() in rtts:
                    rtts[rec[i_rtd].strip()].append(float(rec[i_time]))
    p50 = f"{percentile(rtts['1'], 50):.1f} / {percentile(rtts['2'], 50):.1f} ms"
    p99 = f"{percentile(rtts['1'], 99):.1f} / {percentile(rtts['2'], 99):.1f} ms"
    regs = ok / elapsed if elapsed else 0.0
    note = (
        f"gateway CPU {100 * cpu / wall:.0f}%, SIPp retrans {last['Retransmissions(C)']}, "
        f"UDP rcvbuf drops {drops}"
    )
    if proc.returncode not in (0, 1):
        note += f"; sipp exit {proc.returncode}"
    return Row(
        "REGISTER+digest, SIPp UDP",
        f"{rate}/s x {calls}",
        str(ok),
        str(failed),
        f"{regs:.0f} reg/s = {2 * regs:.0f} tx/s",
        p50,
        p99,
        note,
    )


def bench_parser(seconds: float = 2.0, max_iter: int = 500_000) -> list[Row]:
    from gateway.sip.message import parse_message

    data = TYPICAL_INVITE
    msg = parse_message(data)
    assert bytes(msg) == data, "parse/serialise round trip of the typical INVITE"
    rows = []
    for name, fn in (
        ("parse_message(INVITE+SDP)", lambda: parse_message(data)),
        ("bytes(parsed INVITE)", lambda: bytes(msg)),
    ):
        for _ in range(2000):  # warm up
            fn()
        samples: list[float] = []
        n = 0
        clock = time.perf_counter_ns
        deadline = time.perf_counter() + seconds
        t_start = clock()
        while n < max_iter and time.perf_counter() < deadline:
            a = clock()
            fn()
            samples.append((clock() - a) / 1000)
            n += 1
        total = (clock() - t_start) / 1e9
        rate = n / total
        rows.append(
            Row(
                name,
                f"{len(data)} B/msg, {seconds:.0f} s",
                str(n),
                "-",
                f"{rate / 1000:.1f} k msg/s ({rate * len(data) / 1e6:.0f} MB/s)",
                f"{statistics.median(samples):.1f} us",
                f"{percentile(samples, 99):.1f} us",
                "timing overhead included",
            )
        )
    return rows


def print_table(rows: list[Row]) -> None:
    head = Row(
        "benchmark", "offered", "done", "failed", "throughput", "p50 (401 / 200)", "p99 (401 / 200)", "note"
    )
    print_markdown_table(head, rows)


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument(
        "--rates", default="100,250,500,1000,2000", help="offered registrations/s, comma-separated"
    )
    ap.add_argument("--seconds", type=float, default=8.0, help="target duration per rate (bounds the count)")
    ap.add_argument("--max-calls", type=int, default=20000, help="upper bound of registrations per rate")
    ap.add_argument("--limit", type=int, default=200, help="SIPp -l: registrations in flight at most")
    ap.add_argument("--parser-seconds", type=float, default=2.0)
    ap.add_argument("--workdir", help="keep SIPp files and the gateway log here (default: a temporary dir)")
    ap.add_argument("--no-sipp", action="store_true", help="parser benchmark only")
    args = ap.parse_args()

    rows: list[Row] = []
    sipp = shutil.which("sipp")
    if not args.no_sipp and sipp is None:
        print("SIPp not found (apt-get install -y sip-tester); parser benchmark only", file=sys.stderr)
    if not args.no_sipp and sipp is not None:
        with tempfile.TemporaryDirectory(prefix="register-bench-") as tmp:
            work = Path(args.workdir or tmp)
            work.mkdir(parents=True, exist_ok=True)
            data_dir = work / "data"
            data_dir.mkdir()
            gw = GatewayProcess(data_dir, config=md5_first_config(work))
            gw.start()
            try:
                for rate in [int(r) for r in args.rates.split(",") if r.strip()]:
                    calls = max(1, min(args.max_calls, int(rate * args.seconds)))
                    row = run_rate(sipp, gw, work, rate, calls, args.limit)
                    rows.append(row)
                    print(
                        f"  {row.offered}: {row.done} ok, {row.failed} failed, {row.throughput}",
                        file=sys.stderr,
                    )
                    if not gw.running:
                        print("gateway died; log tail:\n" + gw.log_tail(), file=sys.stderr)
                        break
            finally:
                code = gw.stop()
                if code != 0:
                    print(f"gateway exit code {code}; log tail:\n{gw.log_tail()}", file=sys.stderr)
    rows.extend(bench_parser(args.parser_seconds))
    print_table(rows)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
