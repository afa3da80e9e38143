"""The HA front end (ops/ha) for real: two gateways behind a keepalived VIP, the active one SIGKILLed.

Four network namespaces of our own: ``hpha-a-<pid>`` and ``hpha-b-<pid>`` (the two gateway nodes),
``hpha-c-<pid>`` (help point and operator, SIPp) and ``hpha-br-<pid>`` (a bridge joining them), on
10.213.0.0/24 with the VIP 10.213.0.100.  Nothing touches the host's own interfaces: every veth end is
created inside a namespace.  keepalived runs in the foreground in each node namespace with a config rendered
from ``ops/ha/keepalived.conf.in`` and ``ops/ha/helppoint-check.sh`` and ``helppoint-notify.sh`` (copied
root-owned, as a deployment installs them); the
notify script starts the gateway (``start-stop-daemon``, standing in for systemd) on the node that holds the
VIP and stops it elsewhere.  Both gateways share one throw-away PostgreSQL database, reached through the
server's Unix socket (sockets are not bound to a network namespace).

Flow: the operator registers through the VIP (node A); a help point calls and is answered through A; A's
gateway is SIGKILLed mid-call; B must take the VIP, start its gateway (bindings loaded from the shared
database: the operator does not re-register, as a softphone whose registration has not expired would not),
answer a second press, and leave both activations in the database with the right outcomes (the first one
``interrupted``, not ``in-progress`` forever).  The measured failover times are printed (``pytest -s``).
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import re
import shutil
import signal
import string
import subprocess
import time
import uuid
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest
import yaml
from calls_harness import POLICE, SippAgent, first_at, make_dialplan, write_config
from sip_harness import PYTHON, ROOT, stop_process

pytestmark = pytest.mark.integration

HA_DIR = ROOT / "ops" / "ha"
SUBNET = "10.213.0"
VIP = f"{SUBNET}.100"
NODE_ADDRESSES = {"a": f"{SUBNET}.1", "b": f"{SUBNET}.2"}
CLIENT = f"{SUBNET}.3"
SIP_PORT = 5060
OPERATOR_PORT = 25080  # op_reg.xml registers police-control-1 with this Contact port
PG_SOCKET = "/var/run/postgresql"
#: Seconds from the SIGKILL until B must hold the VIP and answer /health.  Measured here: the VIP moves in
#: 1.6-2.6 s and B answers /health 3.1-5.2 s after the kill (ops/ha/README.md); generous for slow CI machines.
FAILOVER_BOUND = 20.0


def _run(argv: list[str], timeout: float = 10.0, check: bool = True) -> subprocess.CompletedProcess[str]:
    return subprocess.run(argv, capture_output=True, text=True, timeout=timeout, check=check)


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


def _why_not_runnable() -> str | None:
    """Why this machine cannot run the test, or None."""
    if os.geteuid() != 0:
        return "needs root (network namespaces, keepalived)"
    for tool, package in (("ip", "iproute2"), ("keepalived", "keepalived"), ("curl", "curl"),
                          ("start-stop-daemon", "dpkg"), ("flock", "util-linux")):
        if shutil.which(tool, path=os.environ.get("PATH", "") + ":/usr/sbin:/sbin") is None:
            return f"{tool} not installed (bash scripts/dev.sh test installs {package})"
    probe = f"hpha-probe-{os.getpid()}"
    made = subprocess.run(["ip", "netns", "add", probe], capture_output=True, text=True, timeout=10)
    if made.returncode != 0:
        return f"cannot create network namespaces here: {made.stderr.strip()}"
    subprocess.run(["ip", "netns", "del", probe], capture_output=True, timeout=10)
    if not Path(PG_SOCKET).is_dir():
        return f"no PostgreSQL Unix socket directory {PG_SOCKET}"
    return None


# ------------------------------------------------------------------------------------------ PostgreSQL


async def _pg(sql: str, *args: Any, database: str = "test", fetch: bool = False) -> list[Any]:
    import asyncpg

    conn = await asyncpg.connect(host=PG_SOCKET, database=database, timeout=5)
    try:
        if fetch:
            return list(await conn.fetch(sql, *args, timeout=10))
        await conn.execute(sql, *args, timeout=30)
        return []
    finally:
        await conn.close()


def pg(sql: str, *args: Any, database: str = "test", fetch: bool = False) -> list[Any]:
    return asyncio.run(_pg(sql, *args, database=database, fetch=fetch))


# ------------------------------------------------------------------------------------------ the rig


@dataclass
class Node:
    """One gateway node: its namespace, keepalived and the files the notify script uses."""

    name: str
    ns: str
    address: str
    peer: str
    priority: int
    folder: Path
    keepalived: subprocess.Popen[bytes] | None = None

    @property
    def pidfile(self) -> Path:
        return self.folder / "gateway.pid"

    @property
    def gateway_log(self) -> Path:
        return self.folder / "gateway.log"

    @property
    def notify_log(self) -> Path:
        return self.folder / "notify.log"

    @property
    def keepalived_log(self) -> Path:
        return self.folder / "keepalived.log"

    def holds_vip(self) -> bool:
        out = _run(["ip", "-n", self.ns, "-o", "addr", "show", "to", VIP], check=False)
        return bool(out.stdout.strip())

    def health(self) -> int | None:
        """Status of this node's /health (from inside its namespace), None when nothing answers."""
        out = _run(["ip", "netns", "exec", self.ns, "curl", "-s", "-o", "/dev/null", "-m", "1", "-w",
                    "%{http_code}", "http://127.0.0.1:8080/health"], check=False)
        code = out.stdout.strip()
        return int(code) if code.isdigit() and code != "000" else None

    def gateway_pid(self) -> int | None:
        try:
            pid = int(self.pidfile.read_text().strip())
        except (OSError, ValueError):
            return None
        return pid if _alive(pid) else None

    def tails(self) -> str:
        out = []
        for path in (self.keepalived_log, self.notify_log, self.gateway_log):
            with contextlib.suppress(OSError):
                out.append(f"--- node {self.name}: {path.name}\n" + "\n".join(
                    path.read_text(errors="replace").splitlines()[-40:]))
        return "\n".join(out)


@dataclass
class Rig:
    """Namespaces, a database and two nodes; ``close()`` undoes all of it."""

    folder: Path
    tag: str = field(default_factory=lambda: str(os.getpid()))
    database: str = field(default_factory=lambda: f"hpha_{os.getpid()}_{uuid.uuid4().hex[:8]}")
    namespaces: list[str] = field(default_factory=list)
    nodes: dict[str, Node] = field(default_factory=dict)
    sipps: list[SippAgent] = field(default_factory=list)
    database_made: bool = False

    def ns(self, role: str) -> str:
        return f"hpha-{role}-{self.tag}"

    # -- network
    @staticmethod
    def sweep_leftovers() -> None:
        """Namespaces and databases of earlier runs whose pytest process is gone (killed before its cleanup)."""
        for line in _run(["ip", "netns", "list"], check=False).stdout.splitlines():
            m = re.match(r"(hpha-(?:br|a|b|c)-(\d+))\b", line)
            if m and not _alive(int(m.group(2))):
                for pid in _run(["ip", "netns", "pids", m.group(1)], check=False).stdout.split():
                    with contextlib.suppress(ProcessLookupError, ValueError):
                        os.kill(int(pid), signal.SIGKILL)
                _run(["ip", "netns", "del", m.group(1)], check=False)
        for row in pg("SELECT datname FROM pg_database WHERE datname LIKE 'hpha\\_%'", fetch=True):
            m = re.fullmatch(r"hpha_(\d+)_[0-9a-f]+", row["datname"])
            if m and not _alive(int(m.group(1))):
                pg(f'DROP DATABASE IF EXISTS "{row["datname"]}" WITH (FORCE)')

    def build_network(self) -> None:
        self.sweep_leftovers()
        bridge = self.ns("br")
        for role in ("br", "a", "b", "c"):
            name = self.ns(role)
            _run(["ip", "netns", "del", name], check=False)  # a leftover of a killed run with our pid
            _run(["ip", "netns", "add", name])
            self.namespaces.append(name)
            _run(["ip", "-n", name, "link", "set", "lo", "up"])
        _run(["ip", "-n", bridge, "link", "add", "br0", "type", "bridge"])
        _run(["ip", "-n", bridge, "link", "set", "br0", "up"])
        for role, address in (("a", NODE_ADDRESSES["a"]), ("b", NODE_ADDRESSES["b"]), ("c", CLIENT)):
            name = self.ns(role)
            _run(["ip", "-n", bridge, "link", "add", f"v{role}", "type", "veth", "peer", "name", "eth0",
                  "netns", name])
            _run(["ip", "-n", bridge, "link", "set", f"v{role}", "master", "br0", "up"])
            _run(["ip", "-n", name, "addr", "add", f"{address}/24", "dev", "eth0"])
            _run(["ip", "-n", name, "link", "set", "eth0", "up"])

    # -- database
    def create_database(self) -> str:
        pg(f'CREATE DATABASE "{self.database}"')
        self.database_made = True
        return f"postgresql+asyncpg:///{self.database}?host={PG_SOCKET}"

    def query(self, sql: str, *args: Any) -> list[Any]:
        return pg(sql, *args, database=self.database, fetch=True)

    # -- nodes
    def scripts(self) -> Path:
        """ops/ha's scripts, copied root-owned and 0755: keepalived's enable_script_security refuses a script
        in a directory a non-root user can write, and a CI checkout may belong to another user."""
        folder = self.folder / "ha-scripts"
        if not folder.exists():
            folder.mkdir(mode=0o755)
            for script in ("helppoint-check.sh", "helppoint-notify.sh"):
                shutil.copyfile(HA_DIR / script, folder / script)
                (folder / script).chmod(0o755)
        return folder

    def add_node(self, name: str, db_url: str) -> Node:
        folder = self.folder / f"node-{name}"
        peer = NODE_ADDRESSES["b" if name == "a" else "a"]
        node = Node(name, self.ns(name), NODE_ADDRESSES[name], peer, 150 if name == "a" else 100, folder)
        config = write_config(folder, make_dialplan(confirm_within=3))
        data = yaml.safe_load(config.read_text())
        data["sip"]["listen"] = [f"udp:{VIP}:{SIP_PORT}", f"tcp:{VIP}:{SIP_PORT}"]
        data["media"]["address"] = VIP
        data["media"]["rtp_port_min"], data["media"]["rtp_port_max"] = 30000, 30199
        data["http"]["listen"] = "127.0.0.1:8080"
        data["db_url"] = db_url
        data["drain_timeout"] = 3
        config.write_text(yaml.safe_dump(data, sort_keys=False))
        (folder / "run").mkdir()
        start = (f"start-stop-daemon --start --quiet --oknodo --background --make-pidfile --pidfile {node.pidfile}"
                 f" --chdir {ROOT} --output {node.gateway_log} --startas {PYTHON} --"
                 f" -m gateway serve --config {config}")
        stop = f"start-stop-daemon --stop --quiet --oknodo --pidfile {node.pidfile} --retry TERM/10/KILL/5"
        env = folder / "ha.env"
        env.write_text("\n".join([
            f"HA_VIP={VIP}",
            "HA_HEALTH_URL=http://127.0.0.1:8080/health",
            "HA_HEALTH_TIMEOUT=1",
            f"HA_START='{start}'",
            f"HA_STOP='{stop}'",
            "HA_START_GRACE=20",
            f"HA_RUN_DIR={folder / 'run'}",
            f"HA_LOG={node.notify_log}",
            "",
        ]))
        template = string.Template((HA_DIR / "keepalived.conf.in").read_text())
        (folder / "keepalived.conf").write_text(template.substitute(
            NODE_NAME=f"hpha-{name}", INTERFACE="eth0", NODE_ADDRESS=node.address, PEER_ADDRESS=peer,
            VIP=VIP, VIP_PREFIX="24", VRID="51", PRIORITY=str(node.priority), HA_DIR=str(self.scripts()),
            HA_ENV=str(env)))
        self.nodes[name] = node
        return node

    def start_keepalived(self, node: Node) -> None:
        f = node.folder
        node.keepalived = subprocess.Popen(
            ["ip", "netns", "exec", node.ns, "keepalived", "--dont-fork", "--log-console", "--log-detail",
             "--vrrp", "--use-file", str(f / "keepalived.conf"), "--pid", str(f / "keepalived.pid"),
             "--vrrp_pid", str(f / "vrrp.pid"), "--checkers_pid", str(f / "checkers.pid")],
            stdout=open(node.keepalived_log, "wb"),  # noqa: SIM115 - the child holds it
            stderr=subprocess.STDOUT,
        )

    # -- SIPp in the client namespace
    def sipp(self, sipp: str, scenario: str, *, port: int, **kw: Any) -> SippAgent:
        """A :class:`SippAgent` run in the client namespace, aimed at the VIP."""
        target = _Target()
        agent = SippAgent(sipp, scenario, target, self.folder, port=port, **kw)  # type: ignore[arg-type]
        argv = agent.argv
        argv[argv.index(f"127.0.0.1:{target.sip_port}")] = f"{VIP}:{SIP_PORT}"
        argv[argv.index("-i") + 1] = CLIENT
        agent.argv = ["ip", "netns", "exec", self.ns("c"), *argv]
        self.sipps.append(agent)
        return agent

    def udp_listening(self, port: int) -> bool:
        out = _run(["ip", "netns", "exec", self.ns("c"), "ss", "-Hlun", f"sport = :{port}"], check=False)
        return bool(out.stdout.strip())

    def diagnostics(self) -> str:
        """The nodes' logs and what the database holds: for failure messages."""
        out = [node.tails() for node in self.nodes.values()]
        with contextlib.suppress(Exception):
            out.append("--- activations\n" + "\n".join(map(str, self.query("SELECT * FROM activations"))))
            out.append("--- timeline\n" + "\n".join(map(str, self.query(
                "SELECT activation_id, seq, t, event FROM activation_events ORDER BY activation_id, seq"))))
        return "\n".join(out)

    # -- teardown
    def close(self) -> None:
        for agent in self.sipps:
            with contextlib.suppress(Exception):
                agent.stop()
        for node in self.nodes.values():
            proc = node.keepalived
            if proc is not None:
                stop_process(proc, signal.SIGTERM, 15)  # keepalived's STOP notify stops the gateway too
            pid = node.gateway_pid()
            if pid is not None:
                with contextlib.suppress(ProcessLookupError):
                    os.kill(pid, signal.SIGKILL)
        for name in self.namespaces:
            # Anything still running in our namespaces was started by this test (keepalived's scripts).
            out = _run(["ip", "netns", "pids", name], check=False)
            for pid in out.stdout.split():
                with contextlib.suppress(ProcessLookupError, ValueError):
                    os.kill(int(pid), signal.SIGKILL)
        time.sleep(0.2)
        for name in self.namespaces:
            _run(["ip", "netns", "del", name], check=False)
        if self.database_made:
            pg(f'DROP DATABASE IF EXISTS "{self.database}" WITH (FORCE)')


class _Target:
    """What :class:`SippAgent` reads from a gateway; the real target (the VIP) is put into its argv after."""

    realm = "helppoint-gateway"
    sip_port = 1  # a placeholder replaced in the argv


def wait_for(what: str, predicate: Any, timeout: float, rig: Rig, interval: float = 0.1) -> float:
    """Poll ``predicate`` until true; returns the monotonic time it became true; fails with the logs."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if predicate():
            return time.monotonic()
        time.sleep(interval)
    raise AssertionError(f"{what}: not within {timeout:.0f} s\n{rig.diagnostics()}")


@pytest.fixture
def rig(tmp_path: Path) -> Iterator[Rig]:
    why = _why_not_runnable()
    if why is not None:
        pytest.skip(why)
    try:
        pg("SELECT 1")
    except Exception as exc:  # noqa: BLE001 - any failure to reach the server is a reason to skip
        pytest.skip(f"no PostgreSQL server on {PG_SOCKET} (database test, trust auth): {exc!r}")
    r = Rig(tmp_path)
    try:
        yield r
    finally:
        r.close()


def test_failover_to_standby_keeps_serving_and_records_both_presses(rig: Rig, sipp: str) -> None:
    t_begin = time.monotonic()
    rig.build_network()
    db_url = rig.create_database()
    a = rig.add_node("a", db_url)
    b = rig.add_node("b", db_url)

    # A first, so it is the one that takes the VIP; B joins as the standby.
    rig.start_keepalived(a)
    wait_for("node A takes the VIP", a.holds_vip, 15, rig)
    wait_for("node A's gateway answers /health", lambda: a.health() == 200, 30, rig)
    rig.start_keepalived(b)
    wait_for("node B's keepalived enters BACKUP",
             lambda: "Entering BACKUP STATE" in b.keepalived_log.read_text(errors="replace"), 15, rig)
    assert not b.holds_vip(), "both nodes hold the VIP"
    assert b.gateway_pid() is None, "the standby must not run a gateway (cold standby)"
    t_ready = time.monotonic()

    # The operator registers through the VIP, then answers calls on the Contact port it registered.
    reg = rig.sipp(sipp, "op_reg.xml", port=5070, timeout=20).start()
    assert reg.wait(25).returncode == 0, f"REGISTER through the VIP failed:\n{reg.stdout()[-2000:]}"
    operator = rig.sipp(sipp, "op_answer.xml", port=OPERATOR_PORT, calls=2, keys={"opuser": POLICE},
                        timeout=60).start()
    wait_for("the operator's SIPp listens", lambda: rig.udp_listening(OPERATOR_PORT), 5, rig)
    # The binding reaches the shared database (write-behind) before A dies.
    wait_for("the operator's binding is in the shared database",
             lambda: rig.query("SELECT 1 FROM registrations WHERE aor LIKE $1", f"%{POLICE}%"), 10, rig)

    # Press 1, answered through A; A's gateway is SIGKILLed while the call is up.
    hp1 = rig.sipp(sipp, "hp_call.xml", port=5072, keys={"hpuser": "hp-portland-square"},
                   user="hp-portland-square", extra=["-d", "60000"], timeout=60).start()

    def first_bridged() -> bool:
        rows = rig.query("SELECT a.id FROM activations a JOIN activation_events e ON e.activation_id = a.id "
                         "WHERE e.event = 'bridged' AND a.outcome = 'in-progress'")
        return bool(rows)

    wait_for("press 1 is answered and bridged through node A", first_bridged, 20, rig)
    wait_for("press 1: the help point has its 200 OK from the VIP",
             lambda: any(m.cseq[1] == "INVITE" for m in hp1.received(status=200)), 5, rig)
    (first,) = rig.query("SELECT id FROM activations")
    pid = a.gateway_pid()
    assert pid is not None
    os.kill(pid, signal.SIGKILL)
    t_kill, t_kill_wall = time.monotonic(), time.time()

    t_vip = wait_for("node B takes the VIP", b.holds_vip, FAILOVER_BOUND, rig, interval=0.05)
    t_health = wait_for("node B's gateway answers /health", lambda: b.health() == 200,
                        FAILOVER_BOUND - (t_vip - t_kill), rig, interval=0.05)
    assert not a.holds_vip(), "split brain: node A still holds the VIP"
    hp1.stop()

    # Press 2 through the VIP, now node B: answered by the operator whose binding B loaded from the database.
    hp2 = rig.sipp(sipp, "hp_call.xml", port=5074, keys={"hpuser": "hp-portland-square"},
                   user="hp-portland-square", extra=["-d", "1000"], timeout=30).start()
    res2 = hp2.wait(35)
    t_second = time.monotonic()
    assert res2.returncode == 0, f"press 2 through node B failed:\n{res2.stdout[-2000:]}\n{rig.diagnostics()}"
    answered_after = first_at(res2, "received", "SIP/2.0 200") - t_kill_wall  # SIPp's wall-clock stamp

    def both_ended() -> bool:
        return not rig.query("SELECT 1 FROM activations WHERE outcome = 'in-progress'")

    wait_for("no activation left in progress", both_ended, 10, rig)
    rows = {r["id"]: r for r in rig.query(
        "SELECT id, outcome, answered_by, ended_by, linked_to FROM activations ORDER BY started_at")}
    assert len(rows) == 2, rows
    one = rows.pop(first["id"])
    (two,) = rows.values()
    # Press 1 died with node A: B's start marked it interrupted (ended by the gateway), not in progress forever.
    assert one["outcome"] == "interrupted" and one["ended_by"] == "gateway", one
    assert two["outcome"] == "answered" and two["answered_by"] == POLICE and two["ended_by"] == "hp", two
    # The second press is linked to the first (repeat window), across the failover.
    assert two["linked_to"] == one["id"], two
    # A's keepalived saw its check fail and gave the VIP up; without the VIP its check passes again, so A is
    # back as the standby by itself, and (nopreempt) does not take the VIP back from B.
    assert "Entering FAULT STATE" in a.keepalived_log.read_text(errors="replace")
    wait_for("node A is the standby again",
             lambda: a.keepalived_log.read_text(errors="replace").count("Entering BACKUP STATE") >= 2, 15, rig)
    assert b.holds_vip() and not a.holds_vip()
    assert b.gateway_pid() is not None and a.gateway_pid() is None
    # The operator was rung once by each node, both times from the VIP.
    invites = operator.received(method="INVITE")
    assert len(invites) == 2 and all(VIP in (m.get("Via", "v") or "") for m in invites), invites

    print(f"\nHA failover timings: set-up {t_ready - t_begin:.1f} s; SIGKILL -> VIP on B {t_vip - t_kill:.2f} s;"
          f" -> B /health 200 {t_health - t_kill:.2f} s; -> press 2 answered {answered_after:.2f} s,"
          f" done {t_second - t_kill:.2f} s;"
          f" whole test {time.monotonic() - t_begin:.1f} s")
