"""Run the gateway: build every part from the config, wire them, serve, drain.

``serve(config) -> int`` is what ``gateway serve`` calls.  Lifecycle:

1. load the inventory, open the store (migrations run on start), seed demo
   credentials when the config has a ``demo`` section, load bindings;
2. bind SIP listeners (UDP, TCP) and the HTTP server;
3. run until SIGTERM/SIGINT; SIGHUP reloads what can be reloaded;
4. drain (uvicorn ``server.py`` style): health turns 503, new requests get
   503, transactions in progress finish (bounded by ``drain_timeout``),
   pending database writes are flushed, sockets close, exit 0.
"""

from __future__ import annotations

import asyncio
import logging
import os
import secrets
import signal
import time
from datetime import datetime, timezone
from collections.abc import Awaitable
from pathlib import Path
from typing import Any

from aiohttp import web

from gateway import metrics
from gateway.api.app import create_app
from gateway.config import Config, Inventory, load_inventory
from gateway.registrar.bindings import Binding, BindingPolicy
from gateway.registrar.digest import Algorithm
from gateway.registrar.registrar import Decision, Registrar
from gateway.registrar.service import CredentialCache, RegistrarService
from gateway.sip import events as ev
from gateway.sip.endpoint import EndpointConfig, SipEndpoint
from gateway.sip.message import Request, Response, build_response
from gateway.sip.transport import SipTransport
from gateway.registrar.bindings import Source
from gateway.store import Store, StoredBinding

log = logging.getLogger(__name__)

#: Methods the gateway accepts (OPTIONS answers list them in Allow).
ALLOW = "INVITE, ACK, CANCEL, BYE, OPTIONS, REGISTER, INFO, UPDATE, MESSAGE"


def db_url_for(config: Config) -> str:
    """The configured database URL, or the embedded SQLite file in the data directory."""
    if config.db_url:
        return config.db_url
    return f"sqlite+aiosqlite:///{Path(config.data_dir).resolve() / 'gateway.db'}"


def to_stored(binding: Binding) -> StoredBinding:
    """A registrar binding as the store keeps it (UTC datetime expiry)."""
    return StoredBinding(
        aor=binding.aor,
        contact=binding.contact,
        expires_at=datetime.fromtimestamp(binding.expires_at, timezone.utc),
        call_id=binding.call_id,
        cseq=binding.cseq,
        source_host=binding.source.host,
        source_port=binding.source.port,
        transport=binding.source.transport,
        user_agent=binding.user_agent,
        q=binding.q,
    )


def from_stored(row: StoredBinding) -> Binding:
    """A stored binding back as the registrar's value."""
    return Binding(
        aor=row.aor,
        contact=row.contact,
        expires_at=row.expires_at.timestamp(),
        call_id=row.call_id,
        cseq=row.cseq,
        source=Source(row.source_host, row.source_port, row.transport),
        user_agent=row.user_agent,
        q=row.q,
    )


class BindingWriter:
    """Write-behind for binding sets: coalesces per AOR, never blocks the SIP path."""

    def __init__(self, store: Store) -> None:
        self.store = store
        self._pending: dict[str, tuple[Binding, ...]] = {}
        self._wake = asyncio.Event()
        self._task: asyncio.Task[None] | None = None

    def submit(self, aor: str, bindings: tuple[Binding, ...]) -> None:
        """Queue the AOR's complete new binding set."""
        self._pending[aor] = bindings
        metrics.DB_QUEUE_DEPTH.set(len(self._pending))
        self._wake.set()

    def start(self) -> None:
        """Start the writer task."""
        self._task = asyncio.get_running_loop().create_task(self._run(), name="binding-writer")

    async def _run(self) -> None:
        while True:
            await self._wake.wait()
            self._wake.clear()
            await self.flush()

    async def flush(self) -> None:
        """Write everything pending (retrying later on failure; nothing is dropped)."""
        while self._pending:
            aor, bindings = next(iter(self._pending.items()))
            try:
                await self.store.save_bindings(aor, [to_stored(b) for b in bindings])
            except Exception:
                metrics.DB_WRITE_FAILURES.inc()
                log.exception("saving bindings of %s failed; will retry", aor)
                await asyncio.sleep(1.0)
                continue
            if self._pending.get(aor) is bindings:
                del self._pending[aor]
            metrics.DB_QUEUE_DEPTH.set(len(self._pending))

    async def close(self) -> None:
        """Flush and stop."""
        if self._task is not None:
            self._task.cancel()
            try:
                await self._task
            except asyncio.CancelledError:
                pass
        await self.flush()


class Gateway:
    """The running gateway: owns the endpoint, the registrar and the task set."""

    def __init__(self, config: Config, inventory: Inventory, store: Store) -> None:
        self.config = config
        self.inventory = inventory
        self.store = store
        self.loop = asyncio.get_running_loop()
        self.draining = False
        self.tasks: set[asyncio.Task[None]] = set()
        self.started = time.time()
        self.writer = BindingWriter(store)
        reg_cfg = config.registrar
        admitted = {hp.sip_user: hp.allowed_networks for hp in inventory.help_points if hp.allowed_networks}
        self.registrar = Registrar(
            config.sip.realm,
            secrets.token_bytes(32),
            policy=BindingPolicy(
                min_expires=reg_cfg.min_expires,
                max_expires=reg_cfg.max_expires,
                default_expires=reg_cfg.default_expires,
            ),
            admitted_networks=admitted,
            algorithms=tuple(Algorithm.parse(a) for a in reg_cfg.algorithms),
            nonce_lifetime=reg_cfg.nonce_lifetime,
        )
        self.credentials = CredentialCache(store.get_credentials, config.sip.realm)
        self.registrar_service = RegistrarService(self.registrar, self.credentials, self.writer.submit, self.spawn)
        local = {la.transport.upper(): (la.host, la.port) for la in config.sip.listen}  # bound ports set in run()
        self.endpoint = SipEndpoint(EndpointConfig(
            local=local,
            user_agent=config.sip.user_agent,
            max_message_size=config.sip.max_message_size,
            max_headers=config.sip.max_headers,
        ))
        self.transport = SipTransport(self.endpoint, self.on_event)

    # -- tasks -------------------------------------------------------------------
    def spawn(self, coro: Awaitable[None]) -> None:
        """Run *coro* as a tracked task; its failure is logged, never lost."""
        task = self.loop.create_task(coro)  # type: ignore[arg-type]
        self.tasks.add(task)
        task.add_done_callback(self._task_done)

    def _task_done(self, task: asyncio.Task[None]) -> None:
        self.tasks.discard(task)
        if not task.cancelled() and task.exception() is not None:
            log.error("task failed", exc_info=task.exception())
        self.transport.transmit_soon()

    # -- SIP events ----------------------------------------------------------------
    def on_event(self, event: ev.Event) -> None:
        """The transaction user: route each endpoint event."""
        if isinstance(event, ev.RequestReceived):
            self.on_request(event)
        elif isinstance(event, ev.MessageRejected):
            metrics.SIP_MESSAGES_REJECTED.labels(str(event.status)).inc()
            log.debug("rejected message from %s:%s:%s: %s", *event.source, event.reason)
        elif isinstance(event, ev.TransactionTimedOut):
            metrics.TRANSACTION_TIMEOUTS.labels("transport" if event.transport_error else "timer").inc()
        metrics.TRANSACTIONS.set(self.endpoint.transaction_count)

    def respond(self, event: ev.RequestReceived, status: int, reason: str | None = None,
                headers: tuple[tuple[str, str], ...] = ()) -> None:
        """Answer a request's transaction."""
        assert event.transaction is not None
        response = build_response(event.request, status, reason, to_tag=secrets.token_hex(6), headers=headers)
        self.endpoint.send_response(event.transaction, response, self.loop.time())

    def on_request(self, event: ev.RequestReceived) -> None:
        """Dispatch a new request by method."""
        request = event.request
        method = request.method
        metrics.SIP_REQUESTS.labels(method if method in ALLOW else "other").inc()
        if event.transaction is None:
            return  # ACK for a 2xx: the call layer's business
        if self.draining and method != "OPTIONS":
            self.respond(event, 503, "Service Unavailable", (("Retry-After", "5"),))
            return
        if method == "OPTIONS":
            self.on_options(event)
        elif method == "REGISTER":
            self.on_register(event)
        elif method in ("INVITE", "BYE", "INFO", "UPDATE", "MESSAGE"):
            # Call control arrives with the call-control issue: refuse clearly, never silently.
            self.respond(event, 480 if method == "INVITE" else 481)
        else:
            self.respond(event, 405, "Method Not Allowed", (("Allow", ALLOW),))

    def on_options(self, event: ev.RequestReceived) -> None:
        """RFC 3261 §11.2: 200 with what we allow, accept and support."""
        metrics.OPTIONS_ANSWERED.inc()
        self.respond(event, 200, "OK", (
            ("Allow", ALLOW),
            ("Accept", "application/sdp"),
            ("Accept-Encoding", "identity"),
            ("Accept-Language", "en"),
            ("Supported", "timer, replaces"),
        ))

    def on_register(self, event: ev.RequestReceived) -> None:
        """Hand a REGISTER to the registrar service."""
        transaction = event.transaction
        assert transaction is not None
        started = self.loop.time()

        def respond(response: Response, decision: Decision | None) -> None:
            metrics.REGISTER.labels(decision.counter.value if decision else "malformed").inc()
            metrics.REGISTER_SECONDS.observe(self.loop.time() - started)
            self.endpoint.send_response(transaction, response, self.loop.time())
            self.transport.transmit_soon()

        self.registrar_service.handle(event.request, event.source, respond, secrets.token_hex(6))

    # -- health ------------------------------------------------------------------------
    def health(self) -> dict[str, Any]:
        """The /health document."""
        bindings = self.registrar.all_bindings(time.time())
        metrics.REGISTRATIONS.set(len(bindings))
        return {
            "status": "draining" if self.draining else "ok",
            "uptime_seconds": round(time.time() - self.started, 1),
            "registrations": len(bindings),
            "transactions": self.endpoint.transaction_count,
        }

    async def sweep_forever(self, interval: float = 30.0) -> None:
        """Expire bindings and persist the removals."""
        while True:
            await asyncio.sleep(interval)
            gone = self.registrar.sweep(time.time())
            for aor in {b.aor for b in gone}:
                self.writer.submit(aor, self.registrar.lookup(aor, time.time()))

    async def drain(self) -> None:
        """Stop accepting, let transactions in progress finish, flush writes."""
        self.draining = True
        self.transport.stop_accepting()
        deadline = self.loop.time() + self.config.drain_timeout
        while self.endpoint.active_transaction_count and self.loop.time() < deadline:
            await asyncio.sleep(0.05)
        if self.tasks:
            await asyncio.wait(list(self.tasks), timeout=max(0.1, deadline - self.loop.time()))
        await self.writer.close()
        self.transport.close()


async def seed_demo_credentials(config: Config, inventory: Inventory, store: Store) -> int:
    """Give each inventory account without credentials its DEMO password (``demo-<user>``)."""
    if config.demo is None:
        return 0
    users = [hp.sip_user for hp in inventory.help_points]
    users += [p.sip_user for room in inventory.rooms for p in room.positions]
    seeded = 0
    for user in users:
        if await store.get_credentials(user, config.sip.realm) is None:
            await store.set_credentials(user, config.sip.realm, config.demo.password_prefix + user)
            seeded += 1
    if seeded:
        log.warning("seeded DEMO credentials for %d accounts (password = %r + user); not for production",
                    seeded, config.demo.password_prefix)
    return seeded


async def run(config: Config) -> int:
    """Serve until SIGTERM/SIGINT, then drain; returns the exit code."""
    inventory = load_inventory(config)
    Path(config.data_dir).mkdir(parents=True, exist_ok=True)
    store = Store.create(db_url_for(config))
    await store.upgrade()
    await seed_demo_credentials(config, inventory, store)
    gw = Gateway(config, inventory, store)
    gw.registrar.load([from_stored(r) for r in await store.load_bindings()], time.time())
    gw.writer.start()
    for la in config.sip.listen:
        host, port = await gw.transport.listen(la.transport.upper(), la.host, la.port)
        # Port 0 binds a free port: our Via sent-by must name the real one.
        gw.endpoint.config.local[la.transport.upper()] = (f"[{host}]" if ":" in host else host, port)
        log.info("SIP listening on %s %s:%s", la.transport.upper(), host, port)
    runner = web.AppRunner(create_app(gw.health), access_log=None)
    await runner.setup()
    site = web.TCPSite(runner, config.http.listen.host, config.http.listen.port)
    await site.start()
    log.info("HTTP listening on %s:%s", config.http.listen.host, config.http.listen.port)
    sweeper = asyncio.get_running_loop().create_task(gw.sweep_forever())

    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, stop.set)
    loop.add_signal_handler(signal.SIGHUP, lambda: (gw.credentials.clear(), log.info("SIGHUP: caches cleared")))
    log.info("gateway ready (pid %d, %d help points, %d rooms)", os.getpid(),
             len(inventory.help_points), len(inventory.rooms))
    await stop.wait()
    log.info("SIGTERM: draining (up to %.0f s)", config.drain_timeout)
    sweeper.cancel()
    await gw.drain()
    await runner.cleanup()
    await store.close()
    log.info("stopped")
    return 0


def serve(config: Config) -> int:
    """Entry point of ``gateway serve``: run the event loop (uvloop when installed)."""
    try:
        import uvloop
    except ImportError:  # pragma: no cover - uvloop is a dependency on Linux
        return asyncio.run(run(config))
    return uvloop.run(run(config))
