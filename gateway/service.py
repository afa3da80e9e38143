"""Run the gateway: build every part from the config, wire them, serve, drain.

``serve(config) -> int`` is what ``gateway serve`` calls.  Lifecycle:

1. load the inventory, open the store (migrations run on start), seed demo
   credentials when the config has a ``demo`` section, load bindings;
2. bind SIP listeners (UDP, TCP) and the HTTP server;
3. run until SIGTERM/SIGINT; SIGHUP reloads what can be reloaded;
4. drain (uvicorn ``server.py`` style): health turns 503, new requests get
   503, transactions in progress finish (bounded by ``drain_timeout``),
   calls still up then are ended on the wire and recorded (``CallRunner.stop_all``),
   pending database writes are flushed, sockets close, exit 0.
"""

from __future__ import annotations

import asyncio
import gc
import ipaddress
import logging
import os
import secrets
import signal
import time
from collections.abc import Awaitable, Callable
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from aiohttp import web

from gateway import metrics
from gateway.api import create_app
from gateway.calls.call import DIAL_PREFIX, Call, CallConfig
from gateway.calls.events import CallSummary
from gateway.calls.heap import HeapAction, HeapPolicy
from gateway.calls.journal import SummaryLog
from gateway.calls.liveness import Liveness, StateChanged
from gateway.calls.liveness import State as LiveState
from gateway.calls.media_adapter import MediaPlane, create_media_plane
from gateway.calls.metadata import HelpPointInfo
from gateway.calls.runner import CallMedia, CallRunner, new_activation_id
from gateway.calls.talkdown import Talkdown
from gateway.config import Config, HelpPoint, Inventory, load_inventory, trunk_uri
from gateway.dialplan.engine import Plan
from gateway.dialplan.load import DialplanSet
from gateway.dialplan.load import reload as reload_dialplans
from gateway.dialplan.model import DialplanError
from gateway.dialplan.model import Inventory as DialplanInventory
from gateway.media.errors import MediaError
from gateway.media.ports import StereoRecorder
from gateway.registrar.bindings import BindingPolicy
from gateway.registrar.digest import Algorithm
from gateway.registrar.persistence import BindingWriter, from_stored
from gateway.registrar.registrar import Decision, Registrar
from gateway.registrar.service import (
    Admission,
    CredentialCache,
    Presented,
    RegistrarService,
    admit,
    contact_destination,
    presented_credentials,
)
from gateway.service_records import api_services, start_records
from gateway.sip import events as ev
from gateway.sip.endpoint import EndpointConfig, RandomTokens, SipEndpoint
from gateway.sip.errors import RemoteProtocolError
from gateway.sip.events import Peer
from gateway.sip.message import Headers, Request, Response, build_response, parse_uri
from gateway.sip.ratelimit import SourceLimiter
from gateway.sip.transport import SipTransport
from gateway.sip.uri import Uri
from gateway.store import ActivationWriter, Records, Store, TokenInfo, retention_forever

log = logging.getLogger(__name__)

#: Methods the gateway accepts (OPTIONS answers list them in Allow).
ALLOW = "INVITE, ACK, CANCEL, BYE, OPTIONS, REGISTER, INFO, UPDATE, PRACK, MESSAGE"
#: Seconds the drain still waits, after ending the calls its timeout left up, for their BYEs and CANCELs to
#: be answered (each is retransmitted meanwhile).
STOP_GRACE = 4.0


def db_url_for(config: Config) -> str:
    """The configured database URL, or the embedded SQLite file in the data directory."""
    if config.db_url:
        return config.db_url
    return f"sqlite+aiosqlite:///{Path(config.data_dir).resolve() / 'gateway.db'}"


#: ``factory(activation_id, runner) -> CallMedia``: the media plane's entry point.
MediaFactory = Callable[[str, CallRunner], CallMedia]

#: Prompts the gateway itself plays (the media plane ships them).
BUILTIN_PROMPTS = frozenset({"connecting", "call-recorded", "all-rooms-unavailable", "warning-1", "warning-2",
                             "confirm-operator"})


def _uri_peer(uri: Any, transport: str | None = None) -> Peer:
    """Where a sip: URI is reached: its host and port (5060 when absent) over ``transport``, else the URI's
    own ``transport`` parameter (UDP when absent)."""
    return ((transport or uri.param("transport") or "udp").upper(), uri.host.strip("[]"), uri.port or 5060)


def dialplan_inventory(config: Config, inventory: Inventory) -> DialplanInventory:
    """What the dialplan validator needs from the inventory and the prompts folder."""
    prompts = set(BUILTIN_PROMPTS)
    folder = Path(config.prompts_dir)
    if folder.is_dir():
        prompts.update(f.stem for f in folder.glob("*.wav"))
    return DialplanInventory(
        help_points={hp.id: tuple(hp.tags) for hp in inventory.help_points},
        rooms={room.id: tuple(p.id for p in room.positions) for room in inventory.rooms},
        prompts=frozenset(prompts),
        trunk=config.sip.trunk is not None,
    )



def resident_kib() -> int:
    """This process's resident memory in KiB (Linux: /proc/self/statm; elsewhere: peak RSS)."""
    try:
        with open("/proc/self/statm", "rb") as f:
            return int(f.read().split()[1]) * (os.sysconf("SC_PAGE_SIZE") // 1024)
    except (OSError, ValueError, IndexError):
        import resource

        return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss


async def loop_lag_probe(observe: Callable[[float], None], interval: float = 0.25) -> None:
    """Sleep ``interval`` again and again and pass how late each wake-up was to ``observe`` (seconds).

    A busy event loop runs every callback late, SIP and media alike: this is the delay a message waits
    before the gateway looks at it (``gateway_event_loop_lag_seconds``).  Cheap: four wake-ups a second.
    """
    loop = asyncio.get_running_loop()
    while True:
        due = loop.time() + interval
        await asyncio.sleep(interval)
        observe(max(0.0, loop.time() - due))


class SettledChanges:
    """Decides when polled file state (name, mtime, size of each file) has changed *and settled*.

    A file still being written (an editor saving, ``scp``, a config tool) would otherwise be loaded
    half-written, and a truncated dialplan that still validates (its last steps cut off) would replace a
    good one.  So a change counts only once two polls in a row see the same new state.
    """

    def __init__(self, state: object) -> None:
        self.seen = state
        self.pending: object = None

    def poll(self, state: object) -> bool:
        """Feed the state seen now; True when a settled change should be acted on (once per change)."""
        if state == self.seen:
            self.pending = None
            return False
        if state != self.pending:
            self.pending = state  # changed since the last poll: maybe still being written
            return False
        self.seen, self.pending = state, None
        return True


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
            timers=(config.sip.timer_t1, config.sip.timer_t2, config.sip.timer_t4),
        ))
        self.transport = SipTransport(self.endpoint, self.on_event)
        self.help_points = {hp.sip_user: hp for hp in inventory.help_points}
        self.positions = {p.id: (p, room.id) for room in inventory.rooms for p in room.positions}
        self.dialplan_inventory = dialplan_inventory(config, inventory)
        self.dialplans: DialplanSet | None = None
        #: Activation records (set by run() once the store is migrated); None in unit tests.
        self.records: Records | None = None
        self.activations: ActivationWriter | None = None
        self.calls = CallRunner(self.endpoint, self.transport.transmit_soon, self.on_summary,
                                count_error=metrics.CALL_ERRORS.inc, on_started=self.on_call_started,
                                on_progress=self.on_call_progress)
        metrics.ACTIVE_CALLS.set_function(lambda: self.calls.active)
        metrics.TRANSACTIONS.set_function(lambda: self.endpoint.transaction_count)  # read when scraped
        #: Builds a call's media (the media plane plugs in here); None = calls are refused with 503.
        self.media_factory: MediaFactory | None = None
        self.media: MediaPlane | None = None
        self.summaries = SummaryLog(Path(config.data_dir) / "activations.jsonl")
        self.liveness = Liveness()
        #: Scanner defence: a request budget per unknown source (never a ban).
        self.limiter = SourceLimiter(rate=config.sip.rate_limit, burst=config.sip.rate_burst)
        self.trusted_networks = [ipaddress.ip_network(n, strict=False) for n in config.sip.trusted_networks]
        #: Addresses that authenticated (live bindings); rebuilt by the binding sweep.
        self.known_sources: set[str] = set()
        self._probes: dict[str, str] = {}  # OPTIONS client transaction -> help point id
        #: INVITEs waiting for their help point's credentials from the store (server transaction -> event).
        self._admitting: dict[str, ev.RequestReceived] = {}
        #: To tags of our responses and of the calls' dialogs.
        self.new_tag = RandomTokens(6)
        #: Activation id -> the activation it repeats, until its end line is logged.
        self._repeats: dict[str, str] = {}
        now = self.loop.time()
        for hp in inventory.help_points:
            self.liveness.add(hp.id, hp.options_interval, now)

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
        elif isinstance(event, ev.CancelReceived):
            if not self.calls.on_cancel(event):
                pending = self._admitting.pop(event.invite_transaction, None)
                if pending is not None:
                    # Cancelled while its credentials were being read: not admitted, so no activation;
                    # the INVITE still gets its 487 (RFC 3261 §9.2) and no call starts afterwards.
                    log.info("INVITE from %s:%s cancelled before it was admitted", *event.source[1:])
                    self.respond(pending, 487, "Request Terminated")
        elif isinstance(event, ev.ResponseReceived):
            if event.transaction in self._probes:
                if event.response.status >= 200:
                    hp_id = self._probes.pop(event.transaction)
                    self._liveness_changed(self.liveness.probe_answered(hp_id, self.loop.time(),
                                                                        event.response.status))
            else:
                self.calls.on_response(event)
        elif isinstance(event, ev.MessageRejected):
            metrics.SIP_MESSAGES_REJECTED.labels(str(event.status)).inc()
            log.debug("rejected message from %s:%s:%s: %s", *event.source, event.reason)
        elif isinstance(event, ev.TransactionTimedOut):
            metrics.TRANSACTION_TIMEOUTS.labels("transport" if event.transport_error else "timer").inc()
            hp_id = self._probes.pop(event.transaction, None)
            if hp_id is not None:
                why = "transport error" if event.transport_error else "no answer to OPTIONS"
                self._liveness_changed(self.liveness.probe_failed(hp_id, self.loop.time(), why))
            else:
                self.calls.on_timeout(event)

    def respond(self, event: ev.RequestReceived, status: int, reason: str | None = None,
                headers: tuple[tuple[str, str], ...] = (), *, retransmit: bool = True) -> None:
        """Answer a request's transaction.

        ``retransmit=False`` refuses an INVITE with one response per INVITE received (no 100 Trying, no
        Timer G): a transaction's non-2xx answer is otherwise retransmitted until ACKed, up to 10 times over
        UDP, which to a spoofed source is 11 packets out for 1 in.  The transaction stays, so a caller that
        missed the answer and retransmits its INVITE gets it again from the transaction (cheaply: no new
        challenge), and its ACK is matched as usual.
        """
        assert event.transaction is not None
        response = build_response(event.request, status, reason, to_tag=self.new_tag(), headers=headers)
        self.endpoint.send_response(event.transaction, response, self.loop.time(), retransmit=retransmit)

    def trusted(self, host: str) -> bool:
        """Sources exempt from the per-source budget: configured infrastructure, registered devices."""
        if host in self.known_sources:
            return True
        try:
            address = ipaddress.ip_address(host)
        except ValueError:
            return False
        return any(address in net for net in self.trusted_networks)

    def on_request(self, event: ev.RequestReceived) -> None:
        """Dispatch a new request by method (unknown sources within their budget only)."""
        request = event.request
        method = request.method
        metrics.SIP_REQUESTS_BY_METHOD(method if method in ALLOW else "other").inc()
        host = event.source[1]
        if not self.trusted(host) and not self.limiter.allow(host, self.loop.time()):
            metrics.RATE_LIMITED.inc()
            if event.transaction is not None:
                self.endpoint.drop(event.transaction)
            return
        if request.to.tag is not None:
            # In-dialog: BYE, ACK, INFO, UPDATE, re-INVITE, OPTIONS of a live call.
            if not self.calls.on_in_dialog(event) and event.transaction is not None:
                if method == "OPTIONS":
                    self.on_options(event)
                else:
                    self.respond(event, 481, "Call/Transaction Does Not Exist")
            return
        if event.transaction is None:
            return  # a stray ACK
        if self.draining and method != "OPTIONS":
            self.respond(event, 503, "Service Unavailable", (("Retry-After", "5"),))
            return
        if method == "OPTIONS":
            self.on_options(event)
        elif method == "REGISTER":
            self.on_register(event)
        elif method == "INVITE":
            self.on_invite(event)
        elif method in ("BYE", "INFO", "UPDATE", "PRACK"):
            self.respond(event, 481, "Call/Transaction Does Not Exist")
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
            ("Supported", "timer, replaces, 100rel"),
        ))

    def on_register(self, event: ev.RequestReceived) -> None:
        """Hand a REGISTER to the registrar service."""
        transaction = event.transaction
        assert transaction is not None
        started = self.loop.time()

        def respond(response: Response, decision: Decision | None) -> None:
            metrics.REGISTER_BY_RESULT(decision.counter.value if decision else "malformed").inc()
            if decision is not None and decision.counter.value == "ok":
                self.known_sources.add(event.source[1])
            if (decision is not None and decision.counter.value == "ok" and decision.username in self.help_points
                    and decision.bindings):
                # A registration that leaves the unit bound says it is up, for as long as it was granted (a
                # unit not probed by OPTIONS stays up that long); a de-registration says nothing of the kind.
                hp_id = self.help_points[decision.username].id
                wall = time.time()
                granted = max(b.remaining(wall) for b in decision.bindings)
                self._liveness_changed(self.liveness.registered(hp_id, self.loop.time(), granted))
            metrics.REGISTER_SECONDS.observe(self.loop.time() - started)
            self.endpoint.send_response(transaction, response, self.loop.time())
            self.transport.transmit_soon()

        self.registrar_service.handle(event.request, event.source, respond, secrets.token_hex(6))

    def on_sighup(self) -> None:
        """SIGHUP: reload dialplans (validated, atomic) and forget cached credentials."""
        self.credentials.clear()
        log.info("SIGHUP: reloading dialplans; cached credentials forgotten")
        self.reload_dialplans()

    # -- calls -------------------------------------------------------------------------
    def on_invite(self, event: ev.RequestReceived) -> None:
        """A new INVITE: admit the help point, then start its activation."""
        request = event.request
        user = getattr(request.from_.uri, "user", None) or ""
        hp = self.help_points.get(user)
        if hp is None:
            # Unknown callers are hostile until proven otherwise: no hint which users exist, and one 403 per
            # INVITE received (no 100 Trying, no Timer G towards a source that may be spoofed).
            metrics.CALLS_REFUSED_BY_REASON("unknown_caller").inc()
            self.respond(event, 403, "Forbidden", retransmit=False)
            return
        presented = presented_credentials(self.registrar, request)  # parsed once, handed to admit
        needed = presented.username
        if needed is None:
            self._admit_invite(event, hp, None, presented)
            return
        hit, record = self.credentials.peek(needed, time.time())
        if hit:
            self._admit_invite(event, hp, record, presented)
            return

        assert event.transaction is not None
        transaction = event.transaction
        self._admitting[transaction] = event

        async def later() -> None:
            try:
                rec = await self.credentials.fetch(needed, time.time())
            except Exception:
                # The store is unavailable (or failed): the INVITE already had its 100 Trying, so without a
                # final response the press would hang unanswered.  503 + Retry-After: the intercom tries again.
                if self._admitting.pop(transaction, None) is not None:
                    metrics.CALLS_REFUSED_BY_REASON("credentials_unavailable").inc()
                    log.exception("INVITE from help point %s (%s:%s) refused: its credentials could not be read",
                                  hp.id, event.source[1], event.source[2])
                    self.respond(event, 503, "Service Unavailable", (("Retry-After", "1"),))
                return
            if self._admitting.pop(transaction, None) is not None:
                self._admit_invite(event, hp, rec, presented)

        self.spawn(later())

    def _admit_invite(self, event: ev.RequestReceived, hp: HelpPoint, record: Any, presented: Presented) -> None:
        verdict, detail = admit(self.registrar, event.request, event.source, record, time.time(), presented)
        if verdict in (Admission.CHALLENGE, Admission.STALE):
            challenge = self.registrar.auth.challenge(time.time(), stale=verdict is Admission.STALE)
            # Like the 403 above: the INVITE may come from a spoofed source that names a real help point.
            self.respond(event, 401, "Unauthorized", tuple(("WWW-Authenticate", c) for c in challenge),
                         retransmit=False)
            return
        if verdict is not Admission.OK:
            # A known help point that fails authentication is an ops emergency: log loudly.
            metrics.CALLS_REFUSED_BY_REASON(verdict.value).inc()
            log.error("INVITE from help point %s (%s:%s) refused: %s", hp.id, event.source[1], event.source[2],
                      detail)
            self.respond(event, 403 if verdict is Admission.FORBIDDEN else 400)
            return
        self.start_call(event, hp)

    def start_call(self, event: ev.RequestReceived, hp: HelpPoint) -> None:
        """Create the activation's Call and hand it to the runner."""
        assert event.transaction is not None
        if self.draining:
            # Admitted only now (its credentials were being read when the drain began): the drain may already
            # have ended the calls still up and be closing the records and sockets; a call started now would
            # never be ended or recorded.  Refused like any INVITE received while draining.
            metrics.CALLS_REFUSED_BY_REASON("draining").inc()
            log.warning("activation from %s refused: the gateway is shutting down", hp.id)
            self.respond(event, 503, "Service Unavailable", (("Retry-After", "5"),))
            return
        dialplan = self.dialplans.for_help_point(hp.id) if self.dialplans else None
        activation_id = new_activation_id()
        if dialplan is None or self.media_factory is None:
            why = "no dialplan serves it" if dialplan is None else "media plane unavailable"
            metrics.CALLS_REFUSED_BY_REASON("no_dialplan" if dialplan is None else "no_media").inc()
            log.error("activation %s from %s cannot be routed: %s", activation_id, hp.id, why)
            self.respond(event, 503, "Service Unavailable")
            self._record_refused(activation_id, hp, 503, why)
            return
        try:
            media = self.media_factory(activation_id, self.calls)
        except MediaError as exc:
            metrics.CALLS_REFUSED_BY_REASON("no_media").inc()
            log.error("activation %s from %s refused: %s", activation_id, hp.id, exc)
            self.respond(event, 503, "Service Unavailable", (("Retry-After", "1"),))
            self._record_refused(activation_id, hp, 503, str(exc), dialplan.name)
            return
        assert self.dialplans is not None
        try:
            info = HelpPointInfo(hp.id, hp.name, hp.sip_user, hp.location.lat, hp.location.lon,
                                 hp.location.address, hp.camera_url)
            call = Call(
                activation_id, info, event.request, event.transaction, event.source,
                Plan(dialplan, hp.id, version=self.dialplans.version), media.negotiator,
                self.locate, self.room_of, self.call_config(event.source[0]), self.new_tag,
                datetime.now(UTC), dialplan_version=self.dialplans.version,
            )
        except Exception as exc:  # a bug: the press is answered and recorded, its ports go back to the pool
            self.calls.count_error()
            log.exception("activation %s from %s: the call could not be built", activation_id, hp.id)
            media.close()
            self.respond(event, 500, "Server Internal Error")
            self._record_refused(activation_id, hp, 500, f"internal error: {type(exc).__name__}", dialplan.name)
            return
        metrics.ACTIVATIONS_STARTED.inc()
        log.info("activation %s from %s (dialplan %s v%d)", activation_id, hp.id, dialplan.name,
                 self.dialplans.version)
        self.calls.add(call, media)

    def _record_refused(self, activation_id: str, hp: HelpPoint, status: int, why: str, dialplan: str = "") -> None:
        """A press the gateway itself had to refuse (no route, no RTP ports, a bug) is still an activation:
        journalled and stored as ``failed``, ended by the gateway, so the refusal is seen, not just logged."""
        timeline = [{"t": 0.0, "event": "offered", "help_point": hp.id},
                    {"t": 0.0, "event": "refused", "status": status, "why": why},
                    {"t": 0.0, "event": "ended", "outcome": "failed", "by": "gateway"}]
        summary = CallSummary(activation_id, hp.id, time.time(), "failed", None, None, "gateway", 0.0, 0.0,
                              dialplan, self.dialplans.version if self.dialplans else 0, timeline)
        try:
            self.on_summary(summary)
        except Exception:
            log.exception("activation %s: the record of its refusal could not be written", activation_id)

    def start_talkdown(self, help_point_id: str, warning: int, times: int = 1, requested_by: str = "api") -> str:
        """Call a help point and play warning ``warning`` ``times`` times; returns the record id.

        Raises LookupError (unknown or unregistered help point) or ValueError (bad warning/times).
        """
        if self.draining:
            # The API is served until the drain ends: a talk-down started now would outlive stop_all.
            raise LookupError("the gateway is shutting down")
        hp = next((h for h in self.inventory.help_points if h.id == help_point_id), None)
        if hp is None:
            raise LookupError(f"unknown help point {help_point_id!r}")
        if self.media is None or self.media_factory is None:
            raise LookupError("media plane unavailable")
        if f"warning-{warning}" not in self.media.prompts:
            raise ValueError(f"no prompt warning-{warning}")
        if not 1 <= times <= 10:
            raise ValueError("times must be between 1 and 10")
        bindings = self.registrar.lookup(hp.sip_user, time.time())
        if bindings:
            contact, dest = bindings[0].contact, self.reach(bindings[0].contact, bindings[0].source)
        elif hp.static_uri is not None:
            contact, dest = hp.static_uri, _uri_peer(parse_uri(hp.static_uri))
        else:
            raise LookupError(f"help point {help_point_id!r} is not registered and has no static_uri")
        activation_id = new_activation_id()
        media = self.media_factory(activation_id, self.calls)
        try:
            info = HelpPointInfo(hp.id, hp.name, hp.sip_user, hp.location.lat, hp.location.lon,
                                 hp.location.address, hp.camera_url)
            talkdown = Talkdown(activation_id, info, contact, dest, warning, times, media.negotiator,
                                self.call_config(dest[0]), lambda: secrets.token_hex(6), datetime.now(UTC),
                                requested_by=requested_by)
        except Exception:
            media.close()  # its two RTP ports go back to the pool
            raise
        log.info("talk-down %s to %s: warning %d x%d (by %s)", activation_id, hp.id, warning, times, requested_by)
        self.calls.add(talkdown, media)
        return activation_id

    def call_config(self, transport: str) -> CallConfig:
        """Our identity in a call's headers, for the transport the call came in on."""
        host, port = self.endpoint.config.local.get(transport) or next(iter(self.endpoint.config.local.values()))
        param = "" if transport == "UDP" else f";transport={transport.lower()}"
        return CallConfig(
            host=f"{host}:{port}",
            contact=f"sip:gateway@{host}:{port}{param}",
            record_url=(self.config.records.public_url or f"http://{self.config.http.listen.host_port}").rstrip("/")
            + "/api/activations/",
            t1=self.endpoint.config.timers[0],
        )

    def locate(self, position_id: str) -> list[tuple[str, Peer]]:
        """Registered contacts (or the static URI) of an operator position; for ``dial:<number>`` (a dialplan
        ``dial`` step) the number's sip: URI, or its URI through the trunk."""
        if position_id.startswith(DIAL_PREFIX):
            number = position_id[len(DIAL_PREFIX):]
            if number.startswith("sip"):
                target = number
            elif self.config.sip.trunk is not None:
                target = trunk_uri(self.config.sip.trunk, number)
            else:
                return []  # the validator refuses such a step; kept safe if one got through
            try:
                return [(target, _uri_peer(parse_uri(target)))]
            except RemoteProtocolError:
                return []
        found = self.positions.get(position_id)
        if found is None:
            return []
        position, _ = found
        if position.static_uri:
            return [(position.static_uri, _uri_peer(parse_uri(position.static_uri)))]
        return [(b.contact, self.reach(b.contact, b.source)) for b in
                self.registrar.lookup(position.sip_user, time.time())]

    def reach(self, contact: str, source: Any) -> Peer:
        """Where to send requests for a registered contact: :func:`contact_destination`, except that a TCP
        flow that no longer exists (the bindings were reloaded after a restart, or the device's connection
        dropped) is replaced by the Contact's own address over that transport: the old flow's ephemeral
        source port reaches nothing."""
        dest = contact_destination(contact, source)
        if dest[0] == "UDP" or dest in self.transport.connections:
            return dest
        try:
            uri = parse_uri(contact)
        except RemoteProtocolError:
            return dest
        if not isinstance(uri, Uri) or not uri.host:
            return dest
        return _uri_peer(uri, dest[0])

    def room_of(self, position_id: str) -> str | None:
        """The room of a position."""
        found = self.positions.get(position_id)
        return found[1] if found else None

    def on_summary(self, summary: CallSummary) -> None:
        """An activation ended: count it and make it durable."""
        metrics.ACTIVATIONS_BY(summary.help_point, summary.outcome).inc()
        doc = summary.as_dict()  # once, shared by the database writer and the journal
        if self.activations is not None:
            self.activations.ended(doc)
        if summary.classification and self.records is not None:
            actor = TokenInfo(summary.answered_by or "operator", "operator")
            self.spawn(self._classify(summary.activation_id, summary.classification, actor))
        bridged = next((e for e in summary.timeline if e.get("event") == "bridged"), None)
        if bridged is not None and summary.answered_room:
            metrics.TIME_TO_ANSWER_BY_ROOM(summary.answered_room).observe(bridged["t"])
        for entry in summary.routing:
            if isinstance(entry, dict) and entry.get("type") == "FailedOver":
                metrics.FAILOVERS.labels(entry.get("from_name") or "", entry.get("to_name") or "none",
                                         entry.get("cause") or "").inc()
        self.summaries.append(doc)
        linked = self._repeats.pop(summary.activation_id, None)
        log.info("activation %s from %s ended: %s (%s, %.1f s)%s%s", summary.activation_id,
                 summary.help_point, summary.outcome,
                 f"answered by {summary.answered_by}" if summary.answered_by else "nobody answered",
                 summary.duration, "" if linked is None else ", repeats ", linked or "")

    def on_call_started(self, call: Call | Talkdown) -> None:
        """Write the activation row the moment the INVITE is admitted (a crash still leaves a record)."""
        if self.activations is None:
            return
        hp = call.help_point
        location = f"{hp.address} ({hp.lat:.6f},{hp.lon:.6f})"
        dialplan, version = (None, None) if isinstance(call, Talkdown) else (call.plan.dialplan.name,
                                                                              call.dialplan_version)
        linked = self.activations.started(call.id, hp.id, time.time(), dialplan, version, hp.camera_url, location)
        if linked is not None:
            # Said once, in the call's end line (one INFO line per call start and one per end).
            self._repeats[call.id] = linked
            log.debug("activation %s repeats %s (same help point within %.0f s)", call.id, linked,
                      self.config.records.repeat_window)

    def on_call_progress(self, activation_id: str, entry: dict[str, Any]) -> None:
        """Each timeline entry goes to the database as it happens."""
        if self.activations is not None:
            self.activations.event(activation_id, entry)

    async def _classify(self, activation_id: str, classification: str, actor: TokenInfo) -> None:
        assert self.records is not None and self.activations is not None
        await self.activations.flush()  # the row must exist before it is classified
        await self.records.classify(activation_id, classification, "classified from the operator's keypad",
                                    actor=actor)

    def on_recording(self, activation_id: str, recorder: StereoRecorder) -> None:
        """A call's recording was sealed: count it, journal it and link it to the activation."""
        metrics.RECORDINGS_WRITTEN.inc()
        log.debug("activation %s recording sealed: %s (%.1f s, sha256 %s)", activation_id, recorder.path,
                 recorder.duration, recorder.sha256)
        self.summaries.append_recording(activation_id, str(recorder.path), recorder.duration, recorder.sha256)
        # The size is the one the writer thread hashed (set with sha256 at the seal): no stat() here, since a
        # system call on the event loop's thread hands the GIL to whichever thread wants it.
        if self.activations is not None and recorder.sha256 and recorder.size is not None:
            self.activations.recording(activation_id, str(recorder.path), recorder.duration, recorder.sha256,
                                       recorder.size)

    def reload_dialplans(self) -> bool:
        """Validate the dialplan files and swap atomically; a bad file never replaces a good one."""
        return self.reload_dialplans_report()["applied"]

    def reload_dialplans_report(self) -> dict[str, Any]:
        """:meth:`reload_dialplans` with what happened, for the API (``applied``, ``version``, ``lines``)."""
        paths = [self.config.dialplans_dir]
        try:
            new = reload_dialplans(self.dialplans, paths, self.dialplan_inventory)
        except DialplanError as exc:
            metrics.DIALPLAN_RELOADS.labels("rejected").inc()
            log.error("dialplan reload rejected, keeping version %s: %s",
                      self.dialplans.version if self.dialplans else None, exc)
            return {"applied": False, "version": self.dialplans.version if self.dialplans else None,
                    "lines": str(exc).splitlines()}
        lines = [f"version {new.version} unchanged"]
        if new is self.dialplans:
            log.info("dialplans unchanged: version %d stays in force", new.version)
        else:
            metrics.DIALPLAN_RELOADS.labels("applied").inc()
            metrics.DIALPLAN_VERSION.set(new.version)
            log.info("dialplans version %d in force (%s)", new.version, ", ".join(new.sources))
            lines = [f"version {new.version} in force: {', '.join(new.sources)}"]
            if self.records is not None:
                self.spawn(self.records.record_dialplan_version(new.version, new.digest, list(new.sources)))
        self.dialplans = new
        return {"applied": True, "version": new.version, "lines": lines}

    async def watch_dialplans(self, interval: float = 2.0) -> None:
        """Reload when a dialplan file changes (mtime/size poll: no extra dependency)."""
        def snapshot() -> tuple[tuple[str, float, int], ...]:
            files = sorted(Path(self.config.dialplans_dir).glob("*.y*ml"))
            return tuple((str(f), f.stat().st_mtime, f.stat().st_size) for f in files if f.is_file())

        changes = SettledChanges(snapshot())
        while True:
            await asyncio.sleep(interval)
            try:
                now = snapshot()
            except OSError:
                continue
            if changes.poll(now):
                self.reload_dialplans()

    # -- liveness ------------------------------------------------------------------------
    def _liveness_changed(self, change: StateChanged | None) -> None:
        if change is None:
            return
        metrics.HELP_POINT_UP.labels(change.help_point).set(1 if change.new is LiveState.UP else 0)
        level = logging.WARNING if change.new is LiveState.DOWN else logging.INFO
        log.log(level, "help point %s is %s (was %s): %s", change.help_point, change.new.value,
                change.old.value, change.reason)

    def probe(self, hp: HelpPoint) -> None:
        """Send one OPTIONS to a help point's registered contact (RFC 3261 §11)."""
        now = self.loop.time()
        bindings = self.registrar.lookup(hp.sip_user, time.time())
        if not bindings:
            self._liveness_changed(self.liveness.probe_failed(hp.id, now, "not registered"))
            return
        binding = bindings[0]
        dest = self.reach(binding.contact, binding.source)
        cfg = self.call_config(dest[0])
        request = Request("OPTIONS", binding.contact, Headers([
            ("Max-Forwards", "70"),
            ("From", f"<sip:gateway@{cfg.host}>;tag={secrets.token_hex(6)}"),
            ("To", f"<sip:{hp.sip_user}@{cfg.host}>"),
            ("Call-ID", f"probe-{secrets.token_hex(8)}@{cfg.host}"),
            ("CSeq", "1 OPTIONS"),
            ("Accept", "application/sdp"),
        ]))
        self._probes[self.endpoint.send_request(request, dest, now)] = hp.id
        self.transport.transmit_soon()

    async def probe_forever(self) -> None:
        """Probe help points as they fall due; apply the silence rule; never more than 1 s asleep."""
        by_id = {hp.id: hp for hp in self.inventory.help_points}
        while True:
            now = self.loop.time()
            for hp_id in self.liveness.due(now):
                self.probe(by_id[hp_id])
            for change in self.liveness.check_all(now):
                self._liveness_changed(change)
            deadline = self.liveness.next_deadline()
            await asyncio.sleep(min(1.0, max(0.05, (deadline or now + 1.0) - self.loop.time())))

    def help_point_status(self) -> list[dict[str, Any]]:
        """Each help point's liveness, for the API and /health."""
        out = []
        mono, wall = self.loop.time(), time.time()
        for hp in self.inventory.help_points:
            state, reason, seen = self.liveness.state(hp.id)
            out.append({
                "id": hp.id, "name": hp.name, "state": state.value, "reason": reason,
                "last_seen": None if seen is None else datetime.fromtimestamp(wall - (mono - seen), UTC).isoformat(),
                "registered": bool(self.registrar.lookup(hp.sip_user, wall)),
            })
        return out

    # -- heap --------------------------------------------------------------------------
    async def heap_upkeep(self, interval: float = 0.25) -> None:
        """Freeze the heap and collect it in full as :class:`HeapPolicy` says (never a long pause mid-load)."""
        # Growth is measured as resident memory in KiB (cheap), not by counting the frozen objects
        # (gc.get_freeze_count() walks every one of them: ~20 ms per million, a stall on every check).
        # 16 MiB is about 100,000 call objects; 256 MiB about 1.5 million.  Each call held (up or
        # lingering LINGER seconds for late messages) is allowed 128 KiB on top (measured: 50-90 KiB of
        # resident memory per held call at 200-300 calls/s), so a busy gateway is not paused to walk
        # live calls; memory stays bounded because the calls held are bounded by rate x LINGER.
        policy = HeapPolicy(min_growth=16 * 1024, max_frozen=256 * 1024, per_call=128)
        policy.collected(resident_kib())  # the start-up heap, frozen once ready, is the baseline
        while True:
            await asyncio.sleep(interval)
            action = policy.decide(self.loop.time(), self.calls.started, resident_kib,
                                   lambda: self.calls.active, lambda: len(self.calls.calls))
            if action is HeapAction.FREEZE:
                gc.freeze()
            elif action is HeapAction.COLLECT:
                started = time.perf_counter()
                gc.unfreeze()
                collected = gc.collect()
                gc.freeze()
                policy.collected(resident_kib())
                log.debug("full collection: %d objects freed, %.0f ms", collected,
                          1000 * (time.perf_counter() - started))

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
            "calls": self.calls.active,
            "help_points_down": sorted(h["id"] for h in self.help_point_status() if h["state"] == "down"),
            "dialplan_version": self.dialplans.version if self.dialplans else None,
        }

    def refresh_known_sources(self) -> None:
        """Sources with a live binding are known (not rate-limited as strangers): after a restart or a
        failover (ops/ha) the bindings loaded from the database count at once."""
        self.known_sources = {b.source.host for b in self.registrar.all_bindings(time.time())}

    async def sweep_forever(self, interval: float = 30.0) -> None:
        """Expire bindings and persist the removals."""
        while True:
            await asyncio.sleep(interval)
            gone = self.registrar.sweep(time.time())
            self.refresh_known_sources()
            for aor in {b.aor for b in gone}:
                self.writer.submit(aor, self.registrar.lookup(aor, time.time()))

    async def drain(self) -> None:
        """Stop accepting, let transactions in progress finish, flush writes."""
        self.draining = True
        self.transport.stop_accepting()
        for transaction in self._probes:  # liveness probes are not work in progress
            self.endpoint.drop(transaction)
        self._probes.clear()
        deadline = self.loop.time() + self.config.drain_timeout
        while (self.endpoint.in_progress(self.loop.time()) or self.calls.active) and self.loop.time() < deadline:
            await asyncio.sleep(0.05)
        if self._admitting:
            # INVITEs still waiting for their credentials (a store that hangs) are not calls, so stop_all
            # does not see them: each gets its 503 here, never only a 100 Trying before the sockets close.
            log.warning("drain time over: %d INVITE(s) still being admitted refused with 503", len(self._admitting))
            for pending in self._admitting.values():
                self.respond(pending, 503, "Service Unavailable", (("Retry-After", "5"),))
            self._admitting.clear()
            self.transport.transmit_soon()
        if self.calls.active:
            # Calls still up are ended on the wire and recorded, never abandoned: without this the phones
            # would hold a dead call until their session timers ran out, and each record would stay
            # in progress until the next start marked it interrupted.
            ended = self.calls.stop_all()
            log.warning("drain time over: ended %d call(s) still in progress (BYE/CANCEL/503 sent)", ended)
            # Let the BYEs and CANCELs be answered (retransmitted meanwhile), within a bounded extra time.
            extra = self.loop.time() + STOP_GRACE
            while self.endpoint.in_progress(self.loop.time()) and self.loop.time() < extra:
                await asyncio.sleep(0.05)
            deadline = max(deadline, extra)
        if self.tasks:
            await asyncio.wait(list(self.tasks), timeout=max(0.1, deadline - self.loop.time()))
        if self.media is not None:
            # Recordings of the last calls are still being sealed: journal and link them before closing.
            await self.media.wait_sealed(max(1.0, deadline - self.loop.time()))
        await self.writer.close()
        # The journal first: it is on local disk and must be complete even if the database below hangs.
        await asyncio.get_running_loop().run_in_executor(None, self.summaries.close)
        if self.activations is not None:
            try:
                # Bounded: a database that hangs would otherwise hold the drain until systemd kills it.
                await asyncio.wait_for(self.activations.close(), max(STOP_GRACE, deadline - self.loop.time()))
            except TimeoutError:
                log.error("database not answering: %d activation record write(s) left undone "
                          "(activations.jsonl has the ended activations)", self.activations.pending)
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
    await start_records(gw)
    if not gw.reload_dialplans():
        log.error("no valid dialplan: fix the files under %s (see `gateway dialplan check`)", config.dialplans_dir)
        await store.close()
        return 2
    try:
        gw.media = await create_media_plane(config)
    except MediaError as exc:
        log.error("media plane cannot start: %s", exc)
        await store.close()
        return 2
    gw.media.on_recording = gw.on_recording
    engine = gw.media.engine
    metrics.MEDIA_TICK_ERRORS.source = lambda: engine.tick_errors + engine.leg_tick_errors
    gw.media_factory = gw.media.factory
    gw.registrar.load([from_stored(r) for r in await store.load_bindings()], time.time())
    gw.refresh_known_sources()  # the loaded bindings' sources are known now, not after the first sweep
    gw.writer.start()
    for la in config.sip.listen:
        host, port = await gw.transport.listen(la.transport.upper(), la.host, la.port)
        # Port 0 binds a free port: our Via sent-by must name the real one.
        gw.endpoint.config.local[la.transport.upper()] = (f"[{host}]" if ":" in host else host, port)
        log.info("SIP listening on %s %s:%s", la.transport.upper(), host, port)
    runner = web.AppRunner(create_app(api_services(gw)), access_log=None)
    await runner.setup()
    site = web.TCPSite(runner, config.http.listen.host, config.http.listen.port)
    await site.start()
    log.info("HTTP listening on %s:%s", config.http.listen.host, config.http.listen.port)
    sweeper = asyncio.get_running_loop().create_task(gw.sweep_forever())
    assert gw.records is not None
    retention = asyncio.get_running_loop().create_task(
        retention_forever(gw.records, interval=config.records.retention_interval))

    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, stop.set)
    loop.add_signal_handler(signal.SIGHUP, gw.on_sighup)
    watcher = loop.create_task(gw.watch_dialplans())
    prober = loop.create_task(gw.probe_forever())
    # Everything built so far lives for the whole run: move it out of the cyclic collector's sight.  From
    # now on there are no automatic collections: a call leaves no reference cycles (its garbage is freed by
    # reference counting the moment it is dropped), and the automatic young-generation collections cost 4 %
    # of the event loop's time at 300 calls/s, walking call objects that were all alive, in pauses of up to
    # 10-30 ms (gen 0 / gen 1) that delayed every SIP message and RTP packet queued behind them.  heap_upkeep
    # collects in full at quiet moments and whenever resident memory grows past its bound (HeapPolicy), so
    # cycles made elsewhere (rare: an exception kept with its traceback, an HTTP client) are still freed.
    gc.freeze()
    gc.disable()
    heap = loop.create_task(gw.heap_upkeep())
    lag = loop.create_task(loop_lag_probe(metrics.EVENT_LOOP_LAG.observe))
    log.info("gateway ready (pid %d, %d help points, %d rooms)", os.getpid(),
             len(inventory.help_points), len(inventory.rooms))
    await stop.wait()
    log.info("SIGTERM: draining (up to %.0f s)", config.drain_timeout)
    sweeper.cancel()
    watcher.cancel()
    prober.cancel()
    retention.cancel()
    heap.cancel()
    lag.cancel()
    await gw.drain()
    if gw.media is not None:
        await gw.media.engine.close()
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
