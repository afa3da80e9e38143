"""Calls per second through the gateway, and the post-dial delay it adds (issue 3's benchmark).

    .venv/bin/python bench/calls_bench.py [--rates 100,250,500,750,1000] [--calls 2000] [--pdd-calls 1000]

One command, one table. It starts ``python -m gateway serve`` on free loopback ports with a throw-away data
directory and a benchmark dialplan (tests/integration/calls_harness.py ``single_room_dialplan``): one step that
rings council-cctv-1 only, no prompt, no confirm digit, so every call is INVITE -> operator answers -> bridged.
Digest is MD5-first (``registrar.algorithms: [MD5, SHA-256]``) because SIPp 3.6.1 only computes MD5.

* Operator: a SIPp UAS (scenarios/calls/bench_op.xml) registered as council-cctv-1 (a new one per run, its
  contact removed after the run, so every call rings exactly one contact), answering every INVITE at
  once (180, 200 with SDP), then the ACK and the BYE.
* Help point: a SIPp UAC (scenarios/calls/bench_hp.xml) as hp-outram-street: INVITE, 401, INVITE with digest,
  183, 200, ACK, BYE at once. No RTP is sent by either SIPp (the gateway still opens its two RTP legs per call
  and records from the 183, as in production).
* Throughput: each offered rate runs a bounded number of calls (``--calls``, SIPp ``-m``), at most ``--limit``
  in flight; "failed" is SIPp's FailedCall count at the help point (plus calls the gateway did not journal as
  answered). cps = successful calls / SIPp's elapsed time.  The note gives the event-loop thread's CPU per
  completed call and the share of the run it spent runnable but waiting for a CPU (other processes on the
  machine): a run where that share is more than a few per cent measured a crowded machine, not the gateway.
* Every call is recorded from its 183, as in production: the note says how many recordings were sealed
  (fsync'd, hashed, linked) when the help point's SIPp finished and how long the rest took, so a gateway
  that keeps up with the calls but not with their evidence shows it; and the gateway's RSS before and after.
* Post-dial delay at 100 cps, from a packet capture on ``lo`` (tcpdump, microsecond stamps), not from SIPp's
  4 ms clock: for each call, the help point's authenticated INVITE (CSeq 2) arriving at the gateway ->
  (a) the gateway's INVITE to the operator leaving, (b) the gateway's 183 to the help point leaving.
  The 183 is matched by Call-ID. The operator INVITE is a new dialog that carries nothing of the help point's
  Call-ID, so each call is paired with the operator INVITE sent nearest its 183 (within 2 ms: the gateway
  sends both from the same event-loop step, and calls are 10 ms apart at 100 cps); calls that cannot be
  paired that way are counted as "unpaired" in the note, not guessed.

* Reference, in the same command (``--no-reference`` skips it): after the gateway's runs, the same offered
  rates and call counts go from a SIPp caller (scenarios/calls/ref_uac.xml: the help point's call without the
  digest round) through Kamailio (a transaction-stateful
  proxy in C that record-routes; ``apt-get install -y kamailio``) to SIPp's built-in ``uas``, so the gateway's calls/s
  can be read against what this machine gives a C proxy doing less work at that moment.

Everything stays on 127.0.0.1; every SIPp run is bounded by -m, -timeout and coreutils timeout, and tcpdump by
coreutils timeout too.
"""

from __future__ import annotations

import argparse
import bisect
import csv
import os
import re
import resource
import shutil
import signal
import struct
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "tests" / "integration"))
sys.path.insert(0, str(ROOT))

from calls_harness import CALL_SCENARIOS, CallGateway, free_udp_block, register, single_room_dialplan  # noqa: E402
from sip_harness import (  # noqa: E402
    LOOPBACK,
    cpu_seconds,
    demo_password,
    free_port,
    percentile,
    print_markdown_table,
    sipp_elapsed,
    thread_cpu_seconds,
    udp_rcvbuf_errors,
)

HP = "hp-outram-street"
OPERATOR = "council-cctv-1"


@dataclass
class Row:
    bench: str
    offered: str
    ok: str
    failed: str
    result: str
    p50: str = "-"
    p99: str = "-"
    note: str = ""


def machine_busy_seconds() -> float:
    """CPU seconds the whole machine spent busy (all cores), from /proc/stat."""
    fields = [int(x) for x in Path("/proc/stat").read_text().splitlines()[0].split()[1:]]
    idle = fields[3] + (fields[4] if len(fields) > 4 else 0)
    return (sum(fields[:8]) - idle) / os.sysconf("SC_CLK_TCK")


def loop_run_delay_seconds(pid: int, tid: int | None = None) -> float:
    """Seconds a thread of *pid* (default: the event loop's, whose id is the process id) was runnable but
    waiting for a CPU (schedstat field 2): a loop that waits here is short of CPU because of other
    processes, not saturated by its own work."""
    try:
        return int(Path(f"/proc/{pid}/task/{pid if tid is None else tid}/schedstat").read_text().split()[1]) / 1e9
    except (OSError, IndexError, ValueError):
        return float("nan")


def thread_id(pid: int, name: str) -> int | None:
    """The id of *pid*'s thread whose kernel name is *name* (the gateway names its writer threads), or None."""
    for task in Path(f"/proc/{pid}/task").glob("*"):
        try:
            if (task / "comm").read_text().strip() == name:
                return int(task.name)
        except (OSError, ValueError):
            continue
    return None


def thread_cpu_and_wait(pid: int, tid: int | None) -> tuple[float, float]:
    """(CPU seconds, seconds runnable but waiting for a CPU) of one thread; NaNs when it cannot be read."""
    if tid is None:
        return float("nan"), float("nan")
    try:
        return thread_cpu_seconds(pid, tid), loop_run_delay_seconds(pid, tid)
    except (OSError, IndexError, ValueError):
        return float("nan"), float("nan")


def rss_mib(pid: int) -> float:
    """Resident set size of *pid* in MiB (VmRSS), NaN when it cannot be read."""
    try:
        for line in Path(f"/proc/{pid}/status").read_text().splitlines():
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) / 1024
    except (OSError, ValueError):
        pass
    return float("nan")


def children_cpu_seconds() -> float:
    usage = resource.getrusage(resource.RUSAGE_CHILDREN)
    return usage.ru_utime + usage.ru_stime


def ok_calls(step: Path) -> int:
    """Successful calls SIPp (the help point) counted in a run's step folder so far."""
    stats = last_stats(step / "hp" / "stats.csv") if (step / "hp" / "stats.csv").exists() else {}
    return int(stats.get("SuccessfulCall(C)", 0))


def sipp_argv(
    sipp: str,
    scenario: str,
    gw: CallGateway,
    work: Path,
    port: int,
    calls: int,
    budget: int,
    extra: list[str],
) -> list[str]:
    return [
        "timeout", "-k", "5", str(budget + 10),
        sipp, f"{LOOPBACK}:{gw.sip_port}", "-sf", str(CALL_SCENARIOS / scenario),
        "-i", LOOPBACK, "-p", str(port), "-mp", str(free_udp_block(4, 20000, 29990)), "-t", "u1",
        "-m", str(calls), "-nostdin", "-timeout", f"{budget}s", "-max_recv_loops", "10000",
        "-trace_stat", "-stf", str(work / "stats.csv"), "-fd", "1",
        "-trace_err", "-error_file", str(work / "errors.log"),
        *extra,
    ]  # fmt: skip


def last_stats(path: Path) -> dict[str, str]:
    with open(path, newline="") as fh:
        rows = list(csv.DictReader(fh, delimiter=";"))
    return rows[-1] if rows else {}


def run_rate(
    sipp: str, gw: CallGateway, work: Path, rate: int, calls: int, limit: int, capture: Path | None = None
) -> tuple[Row, Path]:
    step = work / f"rate-{rate}{'-pcap' if capture else ''}"
    run = 1
    while step.exists():  # the same rate offered twice (a soak: --rates 200,200,200)
        run += 1
        step = work / f"rate-{rate}{'-pcap' if capture else ''}-{run}"
    (step / "op").mkdir(parents=True)
    (step / "hp").mkdir()
    budget = int(calls / rate) + 40
    op_port = free_port()
    op = subprocess.Popen(
        sipp_argv(
            sipp,
            "bench_op.xml",
            gw,
            step / "op",
            op_port,
            calls,
            budget + 10,
            ["-key", "opuser", OPERATOR, "-recv_timeout", "30000"],
        ),
        cwd=step / "op",
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    tcpdump = None
    capture_note = ""
    try:
        deadline = time.monotonic() + 5
        while time.monotonic() < deadline:  # wait for the UAS to bind its port
            out = subprocess.run(["ss", "-uln", f"sport = :{op_port}"], capture_output=True, text=True).stdout
            if f":{op_port}" in out:
                break
            time.sleep(0.05)
        reg = register(gw, OPERATOR, op_port, expires=3600)
        assert reg.status == 200, f"REGISTER {OPERATOR}: {reg.text}"
        if capture is not None:
            tcpdump = subprocess.Popen(
                [
                    "timeout",
                    "-s",
                    "INT",
                    str(budget + 20),
                    "tcpdump",
                    "-i",
                    "lo",
                    "-w",
                    str(capture),
                    "-U",
                    "-B",
                    "16384",
                    "-n",
                    f"udp port {gw.sip_port}",
                ],
                stdout=subprocess.DEVNULL,
                stderr=subprocess.PIPE,
            )
            time.sleep(1.0)  # tcpdump needs a moment before it captures
        sealed0 = gw.metric("gateway_recordings_written_total")
        answered0 = gw.metric("gateway_activations_total", outcome="answered")
        all0 = gw.metric("gateway_activations_total")
        rss0 = rss_mib(gw.proc.pid)  # type: ignore[union-attr]
        cpu0 = cpu_seconds(gw.proc.pid)  # type: ignore[union-attr]
        loop0 = thread_cpu_seconds(gw.proc.pid)  # type: ignore[union-attr]
        wait0 = loop_run_delay_seconds(gw.proc.pid)  # type: ignore[union-attr]
        writer = thread_id(gw.proc.pid, "gw-disk-writer")  # type: ignore[union-attr]
        writer_cpu0, writer_wait0 = thread_cpu_and_wait(gw.proc.pid, writer)  # type: ignore[union-attr]
        busy0, kids0 = machine_busy_seconds(), children_cpu_seconds()
        drops0 = udp_rcvbuf_errors()
        t0 = time.monotonic()
        hp_proc = subprocess.run(
            sipp_argv(
                sipp,
                "bench_hp.xml",
                gw,
                step / "hp",
                free_port(),
                calls,
                budget,
                [
                    "-r",
                    str(rate),
                    "-l",
                    str(limit),
                    "-recv_timeout",
                    "10000",
                    "-key",
                    "hpuser",
                    HP,
                    "-au",
                    HP,
                    "-ap",
                    demo_password(HP),
                ],
            ),
            cwd=step / "hp",
            capture_output=True,
            timeout=budget + 30,
            check=False,
        )
        wall = time.monotonic() - t0
        cpu = cpu_seconds(gw.proc.pid) - cpu0  # type: ignore[union-attr]
        loop_cpu = thread_cpu_seconds(gw.proc.pid) - loop0  # type: ignore[union-attr]
        loop_wait = loop_run_delay_seconds(gw.proc.pid) - wait0  # type: ignore[union-attr]
        writer_cpu1, writer_wait1 = thread_cpu_and_wait(gw.proc.pid, writer)  # type: ignore[union-attr]
        busy = machine_busy_seconds() - busy0
        hp_cpu = children_cpu_seconds() - kids0  # the help point SIPp (waited for); the UAS is counted below
        drops = udp_rcvbuf_errors() - drops0
        sealed_at_end = gw.metric("gateway_recordings_written_total") - sealed0
        # Let the journal catch up with the last BYEs.
        deadline = time.monotonic() + 10
        while time.monotonic() < deadline and gw.metric("gateway_activations_total") - all0 < calls:
            time.sleep(0.2)
        answered = gw.metric("gateway_activations_total", outcome="answered") - answered0
        rss1 = rss_mib(gw.proc.pid)  # type: ignore[union-attr]
        # Every call is recorded (from the 183): how far the sealing of recordings (fsync, SHA-256) lags the
        # calls, i.e. how many finished recordings wait in memory when the help point's SIPp is done.
        t_end, recorded = time.monotonic(), ok_calls(step)  # SIPp is done: its count is final
        while time.monotonic() - t_end < 60 and gw.metric("gateway_recordings_written_total") - sealed0 < recorded:
            time.sleep(0.2)
        sealed_lag = time.monotonic() - t_end
        sealed = gw.metric("gateway_recordings_written_total") - sealed0
        ended = gw.metric("gateway_activations_total") - all0
    finally:
        if tcpdump is not None:
            time.sleep(0.5)
            tcpdump.send_signal(signal.SIGINT)
            try:
                _, err = tcpdump.communicate(timeout=10)
                dropped = re.search(rb"(\d+) packets? dropped by kernel", err or b"")
                if dropped:
                    capture_note = f", tcpdump: {int(dropped.group(1))} dropped by kernel"
            except subprocess.TimeoutExpired:
                tcpdump.kill()
        try:
            op.wait(15)
        except subprocess.TimeoutExpired:
            op.terminate()
            op.wait(5)
        # Remove this UAS's contact: left bound, every call of the next run would also be forked to a dead
        # port (an INVITE retransmitted until Timer B, 32 s, per call) and measure that instead.
        try:
            gone = register(gw, OPERATOR, op_port, expires=0)
            if gone.status != 200:
                print(f"  warning: un-REGISTER {OPERATOR} answered {gone.status}", file=sys.stderr)
        except (AssertionError, OSError) as exc:  # the run already failed: keep its own error in view
            print(f"  warning: un-REGISTER {OPERATOR} failed: {exc}", file=sys.stderr)
    op_cpu = children_cpu_seconds() - kids0 - hp_cpu
    others = max(0.0, busy - cpu - hp_cpu - op_cpu)
    stats = last_stats(step / "hp" / "stats.csv")
    ok = int(stats.get("SuccessfulCall(C)", 0))
    failed = int(stats.get("FailedCall(C)", 0))
    elapsed = sipp_elapsed(stats) if stats else wall
    cps = ok / elapsed if elapsed else 0.0
    peers = "SIPp+tcpdump" if capture else "SIPp"
    note = (
        f"gateway CPU {100 * cpu / wall:.0f}% (event-loop thread {100 * loop_cpu / wall:.0f}%, "
        f"{1000 * loop_cpu / max(1, ok):.2f} ms per completed call, waited for a CPU {100 * loop_wait / wall:.0f}%), {peers} {100 * (hp_cpu + op_cpu) / wall:.0f}%, "
        f"other processes {100 * others / wall:.0f}% (of 1 core, {os.cpu_count()} cores), "
        f"journal: {answered:.0f} answered / {ended:.0f} ended, "
        f"SIPp retrans {stats.get('Retransmissions(C)', '?')}, UDP rcvbuf drops {drops}, "
        f"gateway RSS {rss0:.0f} -> {rss1:.0f} MiB, recordings sealed {sealed_at_end:.0f} when SIPp ended, "
        f"{sealed:.0f} {sealed_lag:.1f} s later (disk-writer thread CPU {100 * (writer_cpu1 - writer_cpu0) / wall:.0f}%, "
        f"waited for a CPU {100 * (writer_wait1 - writer_wait0) / wall:.0f}%)"
    )
    if hp_proc.returncode not in (0, 1):
        note += f", sipp exit {hp_proc.returncode}"
    note += capture_note
    not_answered = max(0, calls - int(answered))
    row = Row(
        "calls, SIPp hp -> gw -> SIPp op (UDP)",
        f"{rate}/s x {calls}",
        str(ok),
        f"{failed}" + (f" (+{not_answered} not answered)" if not_answered and not failed else ""),
        f"{cps:.0f} calls/s",
        note=note,
    )
    return row, step


# -------------------------------------------------------------------------------------- reference

#: The reference run's Kamailio: a transaction-stateful proxy (tm) that record-routes and relays every new
#: request to the SIPp UAS, and every in-dialog request too.  No registrar, no authentication, no
#: media, no records: far less work than the gateway does per call, in C.  Kamailio 5.6 (Debian bookworm).
KAMAILIO_CFG = """#!KAMAILIO
debug=0
log_stderror=yes
children={children}
auto_aliases=no
listen=udp:{host}:{port}
mpath="{modules}"
loadmodule "tm.so"
loadmodule "sl.so"
loadmodule "rr.so"
loadmodule "pv.so"
loadmodule "maxfwd.so"
loadmodule "siputils.so"
loadmodule "textops.so"
request_route {{
    if (!mf_process_maxfwd_header("10")) {{ sl_send_reply("483", "Too Many Hops"); exit; }}
    if (has_totag()) {{
        # SIPp's built-in uas does not echo Record-Route: in-dialog requests come without a Route set and
        # go to the UAS too; the ACK of a 2xx statelessly (it is no transaction), the rest through tm.
        if (!loose_route()) {{ $du = "sip:{host}:{uas_port}"; }}
        if (is_method("ACK")) {{
            if (t_check_trans()) {{ t_relay(); }} else {{ forward(); }}
            exit;
        }}
        t_relay();
        exit;
    }}
    if (is_method("CANCEL")) {{ if (t_check_trans()) {{ t_relay(); }} exit; }}
    t_check_trans();
    if (is_method("INVITE")) {{ record_route(); }}
    $du = "sip:{host}:{uas_port}";
    t_relay();
}}
"""


def kamailio_modules() -> str | None:
    """Kamailio's module folder (Debian's multiarch path, or the build's default), or None."""
    for folder in sorted(Path("/usr/lib").glob("*/kamailio/modules")) + [Path("/usr/lib/kamailio/modules"),
                                                                         Path("/usr/local/lib64/kamailio/modules")]:
        if (folder / "tm.so").exists():
            return str(folder)
    return None


def kamailio_cpu_seconds() -> float:
    """User + system CPU seconds of every running kamailio process (the reference run's only ones)."""
    total = 0.0
    for proc in Path("/proc").glob("[0-9]*"):
        try:
            if (proc / "comm").read_text().strip() == "kamailio":
                total += cpu_seconds(int(proc.name))
        except (OSError, ValueError, IndexError):
            continue
    return total


def reference_row(sipp: str, work: Path, rate: int, calls: int, limit: int) -> Row:
    """The same SIPp load through Kamailio instead of the gateway (scenarios/calls/ref_uac.xml, the help point's
    call without its digest round, -> SIPp's built-in uas), in the same command, so the gateway's calls/s can be read against what this machine gives a C proxy now."""
    kamailio, modules = shutil.which("kamailio"), kamailio_modules()
    name = "reference: SIPp caller -> Kamailio (tm, record-route) -> SIPp uas"
    if kamailio is None or modules is None:
        return Row(name, f"{rate}/s x {calls}", "-", "-", "kamailio missing (apt-get install -y kamailio)")
    step = work / f"kamailio-{rate}"
    run = 1
    while step.exists():
        run += 1
        step = work / f"kamailio-{rate}-{run}"
    step.mkdir(parents=True)
    port, uas_port = free_port(), free_port()
    # One UDP worker: with more, Kamailio passes some 180s on after their 200, and SIPp aborts such calls.
    (step / "kamailio.cfg").write_text(KAMAILIO_CFG.format(children=1, host=LOOPBACK,
                                                          port=port, modules=modules, uas_port=uas_port))
    budget = int(calls / rate) + 40
    kam = subprocess.Popen(
        ["timeout", "-k", "5", str(budget + 30), kamailio, "-f", str(step / "kamailio.cfg"), "-DD", "-E",
         "-m", "512", "-M", "16", "-Y", str(step)],
        cwd=step, stdout=subprocess.DEVNULL, stderr=open(step / "kamailio.log", "w"),  # noqa: SIM115
    )
    uas = None
    try:
        deadline = time.monotonic() + 10
        while time.monotonic() < deadline:  # wait for Kamailio's UDP listener
            out = subprocess.run(["ss", "-uln", f"sport = :{port}"], capture_output=True, text=True).stdout
            if f":{port}" in out or kam.poll() is not None:
                break
            time.sleep(0.05)
        if kam.poll() is not None:
            return Row(name, f"{rate}/s x {calls}", "-", "-", "kamailio did not start",
                       note=(step / "kamailio.log").read_text()[-300:])
        common = ["-i", LOOPBACK, "-m", str(calls), "-nostdin", "-timeout", f"{budget}s", "-max_recv_loops", "10000"]
        uas = subprocess.Popen(["timeout", "-k", "5", str(budget + 10), sipp, "-sn", "uas", "-p", str(uas_port),
                                *common], cwd=step, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        time.sleep(0.5)
        kids0, kam0 = children_cpu_seconds(), kamailio_cpu_seconds()
        t0 = time.monotonic()
        subprocess.run(["timeout", "-k", "5", str(budget + 10), sipp, f"{LOOPBACK}:{port}",
                        "-sf", str(CALL_SCENARIOS / "ref_uac.xml"),
                        "-p", str(free_port()), "-r", str(rate), "-l", str(limit), *common, "-trace_stat",
                        "-stf", str(step / "stats.csv"), "-fd", "1", "-trace_err", "-error_file", str(step / "errors.log")],
                       cwd=step, capture_output=True, timeout=budget + 30, check=False)
        wall = time.monotonic() - t0
        kam_cpu = kamailio_cpu_seconds() - kam0
        uac_cpu = children_cpu_seconds() - kids0
    finally:
        for proc in (uas, kam):
            if proc is not None and proc.poll() is None:
                proc.terminate()
                try:
                    proc.wait(10)
                except subprocess.TimeoutExpired:
                    proc.kill()
    stats = last_stats(step / "stats.csv") if (step / "stats.csv").exists() else {}
    ok = int(stats.get("SuccessfulCall(C)", 0))
    elapsed = sipp_elapsed(stats) if stats else wall
    return Row(name, f"{rate}/s x {calls}", str(ok), stats.get("FailedCall(C)", "?"),
               f"{ok / elapsed if elapsed else 0:.0f} calls/s",
               note=f"Kamailio CPU {100 * kam_cpu / wall:.0f}%, SIPp caller {100 * uac_cpu / wall:.0f}% (of 1 core, "
                    f"{os.cpu_count()} cores) over {wall:.1f} s, SIPp retrans {stats.get('Retransmissions(C)', '?')}")


# ------------------------------------------------------------------------------------------- pcap


def read_pcap(path: Path) -> list[tuple[float, int, int, bytes]]:
    """(time, src port, dst port, UDP payload) of each IPv4/UDP packet in a pcap file."""
    data = path.read_bytes()
    magic = data[:4]
    if magic in (b"\xd4\xc3\xb2\xa1", b"\x4d\x3c\xb2\xa1"):
        endian = "<"
    elif magic in (b"\xa1\xb2\xc3\xd4", b"\xa1\xb2\x3c\x4d"):
        endian = ">"
    else:
        raise ValueError(f"{path}: not a pcap file")
    nano = magic in (b"\x4d\x3c\xb2\xa1", b"\xa1\xb2\x3c\x4d")
    linktype = struct.unpack(endian + "I", data[20:24])[0]
    link_len = {1: 14, 113: 16, 276: 20, 0: 4, 12: 0, 101: 0}.get(linktype)
    if link_len is None:
        raise ValueError(f"{path}: unsupported link type {linktype}")
    out = []
    pos = 24
    while pos + 16 <= len(data):
        sec, frac, incl, _ = struct.unpack(endian + "IIII", data[pos : pos + 16])
        pkt = data[pos + 16 : pos + 16 + incl]
        pos += 16 + incl
        ip = pkt[link_len:]
        if len(ip) < 28 or ip[0] >> 4 != 4 or ip[9] != 17:
            continue
        ihl = (ip[0] & 0x0F) * 4
        sport, dport = struct.unpack("!HH", ip[ihl : ihl + 4])
        out.append((sec + frac / (1e9 if nano else 1e6), sport, dport, ip[ihl + 8 :]))
    return out


def _header(payload: bytes, name: bytes) -> bytes | None:
    head = payload.split(b"\r\n\r\n", 1)[0]
    for line in head.split(b"\r\n")[1:]:
        key, _, value = line.partition(b":")
        if key.strip().lower() == name.lower():
            return value.strip()
    return None


def post_dial_delays(pcap: Path, gw_port: int) -> tuple[list[float], list[float], int, int]:
    """(INVITE in -> INVITE out ms, INVITE in -> 183 ms, calls seen, pairs out of order)."""
    hp_invites: dict[bytes, float] = {}
    hp_order: list[bytes] = []
    ringing: dict[bytes, float] = {}
    op_invites: list[float] = []
    seen_op: set[bytes] = set()
    for when, sport, dport, payload in read_pcap(pcap):
        first = payload.split(b"\r\n", 1)[0]
        call_id = _header(payload, b"Call-ID") or _header(payload, b"i") or b""
        cseq = _header(payload, b"CSeq") or b""
        if dport == gw_port and first.startswith(b"INVITE ") and cseq.startswith(b"2 "):
            if call_id not in hp_invites:  # retransmissions keep the first arrival
                hp_invites[call_id] = when
                hp_order.append(call_id)
        elif sport == gw_port and first.startswith(b"SIP/2.0 183") and call_id not in ringing:
            ringing[call_id] = when
        elif sport == gw_port and first.startswith(b"INVITE ") and call_id not in seen_op:
            seen_op.add(call_id)
            op_invites.append(when)
    to_183 = [1000 * (ringing[c] - hp_invites[c]) for c in hp_order if c in ringing]
    # Pair each call with the operator INVITE sent nearest to its 183 (same event-loop step, calls 10 ms apart).
    op_sorted = sorted(op_invites)
    to_invite, bad, used = [], 0, set()
    for cid in hp_order:
        if cid not in ringing:
            bad += 1
            continue
        t183 = ringing[cid]
        i = bisect.bisect_left(op_sorted, t183)
        near = [j for j in (i - 1, i) if 0 <= j < len(op_sorted) and j not in used]
        j = min(near, key=lambda k: abs(op_sorted[k] - t183), default=None)
        if j is None or abs(op_sorted[j] - t183) > 0.002:
            bad += 1
            continue
        used.add(j)
        to_invite.append(1000 * (op_sorted[j] - hp_invites[cid]))
    return to_invite, to_183, len(hp_order), bad


def pdd_rows(sipp: str, gw: CallGateway, work: Path, calls: int, limit: int) -> list[Row]:
    if shutil.which("tcpdump") is None:
        return [Row("post-dial delay", "100/s", "-", "-", "tcpdump missing (apt-get install -y tcpdump)")]
    capture = work / "pdd.pcap"
    row, _ = run_rate(sipp, gw, work, 100, calls, limit, capture=capture)
    to_invite, to_183, seen, bad = post_dial_delays(capture, gw.sip_port)
    row.bench = "calls at 100/s under capture"
    rows = [row]
    for name, values in (
        ("PDD: hp INVITE in -> operator INVITE out", to_invite),
        ("PDD: hp INVITE in -> 183 to hp", to_183),
    ):
        rows.append(
            Row(
                name,
                "100/s",
                str(len(values)),
                "-",
                f"max {max(values):.3f} ms" if values else "no data",
                f"{percentile(values, 50):.3f} ms",
                f"{percentile(values, 99):.3f} ms",
                f"tcpdump on lo, {seen} calls captured"
                + (f", {bad} unpaired" if bad and "operator" in name else ""),
            )
        )
    return rows


def print_table(rows: list[Row]) -> None:
    head = Row("benchmark", "offered", "ok", "failed", "result", "p50", "p99", "note")
    print_markdown_table(head, rows)


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--rates", default="100,250,500,750,1000", help="offered calls/s, comma-separated")
    ap.add_argument("--calls", type=int, default=2000, help="calls per rate (SIPp -m)")
    ap.add_argument("--limit", type=int, default=400, help="SIPp -l: calls in flight at most")
    ap.add_argument("--pdd-calls", type=int, default=1000, help="calls in the captured 100/s run (0: skip)")
    ap.add_argument("--workdir", help="keep SIPp files, the capture and the gateway log here")
    ap.add_argument("--no-reference", action="store_true",
                    help="skip the reference runs through Kamailio (one per rate, after the gateway's)")
    args = ap.parse_args()
    sipp = shutil.which("sipp")
    if sipp is None:
        print("SIPp not found (apt-get install -y sip-tester)", file=sys.stderr)
        return 2
    rows: list[Row] = []
    with tempfile.TemporaryDirectory(prefix="calls-bench-") as tmp:
        work = Path(args.workdir or tmp)
        work.mkdir(parents=True, exist_ok=True)
        gw = CallGateway(work / "gateway", single_room_dialplan(), rtp_ports=4000)
        gw.start()
        try:
            if args.pdd_calls:
                rows += pdd_rows(sipp, gw, work, args.pdd_calls, args.limit)
                print(
                    f"  pdd: {rows[-2].p50} / {rows[-2].p99}; {rows[-1].p50} / {rows[-1].p99}",
                    file=sys.stderr,
                )
            for rate in [int(r) for r in args.rates.split(",") if r.strip()]:
                row, _ = run_rate(sipp, gw, work, rate, args.calls, args.limit)
                rows.append(row)
                print(f"  {row.offered}: {row.ok} ok, {row.failed} failed, {row.result}", file=sys.stderr)
                if not gw.running:
                    print("gateway died; log tail:\n" + gw.log_tail(), file=sys.stderr)
                    break
        finally:
            t_stop = time.monotonic()
            code = gw.stop(timeout=45)
            print(f"  gateway SIGTERM -> exit {code} in {time.monotonic() - t_stop:.1f} s", file=sys.stderr)
            if code != 0:
                print(f"gateway exit code {code}; log tail:\n{gw.log_tail()}", file=sys.stderr)
            errors = [ln for ln in gw.log_text().splitlines() if " ERROR " in ln]
            if errors:
                print(f"gateway logged {len(errors)} ERROR lines, first: {errors[0]}", file=sys.stderr)
        if not args.no_reference:
            for rate in [int(r) for r in args.rates.split(",") if r.strip()]:
                rows.append(reference_row(sipp, work / "reference", rate, args.calls, args.limit))
                print(f"  reference {rows[-1].offered}: {rows[-1].ok} ok, {rows[-1].failed} failed, "
                      f"{rows[-1].result}", file=sys.stderr)
    print_table(rows)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
