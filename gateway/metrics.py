"""Every Prometheus metric of the gateway, and nothing else.

Names follow ``gateway_`` + base units + ``_total`` for counters.  Labels are
bounded sets (outcome, method, transport, reason class): never a Call-ID, a
phone number or a SIP user typed by a stranger.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from typing import Generic, TypeVar

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram
from prometheus_client.core import CounterMetricFamily, Metric

_M = TypeVar("_M", Counter, Gauge, Histogram)


class ReadCounter:
    """A counter kept elsewhere (a plain int on a hot path), read when Prometheus scrapes."""

    def __init__(self, name: str, documentation: str) -> None:
        self.name, self.documentation = name, documentation
        #: Where the value comes from; set once the owner exists (0 until then).
        self.source: Callable[[], float] = lambda: 0

    def collect(self) -> Iterator[Metric]:
        yield CounterMetricFamily(self.name, self.documentation, value=self.source())


class Children(Generic[_M]):
    """The labelled children of one metric, looked up once per label set.

    ``metric.labels(...)`` validates and locks on every call; the hot paths (a few per call) ask here
    instead.  Only for bounded label sets (method class, outcome, room, reason): past ``limit``
    distinct sets nothing more is remembered, so a bug can never turn this into a leak.
    """

    __slots__ = ("metric", "limit", "_children")

    def __init__(self, metric: _M, limit: int = 1024) -> None:
        self.metric = metric
        self.limit = limit
        self._children: dict[tuple[str, ...], _M] = {}

    def __call__(self, *values: str) -> _M:
        child = self._children.get(values)
        if child is None:
            child = self.metric.labels(*values)
            if len(self._children) < self.limit:
                self._children[values] = child
        return child


#: The registry /metrics serves (a fresh one, so tests in one process stay independent).
REGISTRY = CollectorRegistry(auto_describe=True)

SIP_REQUESTS = Counter(
    "gateway_sip_requests_total", "SIP requests received, by method class",
    ["method"], registry=REGISTRY,
)
SIP_REQUESTS_BY_METHOD = Children(SIP_REQUESTS)
SIP_MESSAGES_REJECTED = Counter(
    "gateway_sip_messages_rejected_total",
    "Datagrams or frames refused: unparseable (status 0), oversized (513) or failing RFC 3261 §8.2 checks",
    ["status"], registry=REGISTRY,
)
REGISTER = Counter(
    "gateway_register_total", "REGISTER requests by result",
    ["result"], registry=REGISTRY,
)
REGISTER_BY_RESULT = Children(REGISTER)
REGISTRATIONS = Gauge(
    "gateway_registrations", "Live registered contacts (bindings)", registry=REGISTRY,
)
OPTIONS_ANSWERED = Counter(
    "gateway_options_answered_total", "OPTIONS probes answered", registry=REGISTRY,
)
TRANSACTIONS = Gauge(
    "gateway_sip_transactions", "Live SIP transactions", registry=REGISTRY,
)
TRANSACTION_TIMEOUTS = Counter(
    "gateway_sip_transaction_timeouts_total", "Transactions that timed out or hit a transport error",
    ["kind"], registry=REGISTRY,
)
RATE_LIMITED = Counter(
    "gateway_sip_rate_limited_total", "Requests dropped because their source exceeded its rate",
    registry=REGISTRY,
)
DB_QUEUE_DEPTH = Gauge(
    "gateway_db_queue_depth", "Pending writes in the database write-behind queue", registry=REGISTRY,
)
DB_WRITE_FAILURES = Counter(
    "gateway_db_write_failures_total", "Database writes that failed (retried)", registry=REGISTRY,
)
REGISTER_SECONDS = Histogram(
    "gateway_register_seconds", "Time to decide a REGISTER, from receipt to response",
    buckets=(0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25), registry=REGISTRY,
)

EVENT_LOOP_LAG = Histogram(
    "gateway_event_loop_lag_seconds",
    "How late the event loop ran a timer due every 0.25 s: SIP messages and media wait about as long "
    "when the gateway is busy (its capacity: README, Benchmarks)",
    buckets=(0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5), registry=REGISTRY,
)

CALL_TIMERS_STALLED = Counter(
    "gateway_call_timers_stalled_total",
    "Call timers (ring, connect, confirm...) that fired more than 0.25 s late, the event loop having been "
    "stalled: each waited for the messages that arrived meanwhile before it decided its call",
    registry=REGISTRY,
)

ACTIVATIONS_STARTED = Counter(
    "gateway_activations_started_total", "Help-point activations admitted (one per press)", registry=REGISTRY,
)
ACTIVATIONS = Counter(
    "gateway_activations_total", "Ended activations by help point and outcome (talk-downs: talkdown-*)",
    ["help_point", "outcome"], registry=REGISTRY,
)
#: Help points come from the inventory (a bounded set), outcomes from a fixed vocabulary.
ACTIVATIONS_BY = Children(ACTIVATIONS)
ACTIVE_CALLS = Gauge(
    "gateway_active_calls", "Activations and talk-downs in progress", registry=REGISTRY,
)
BINDING_QUEUE_DEPTH = Gauge(
    "gateway_binding_queue_depth", "Registrar binding sets waiting to be written to the database",
    registry=REGISTRY,
)
CALLS_REFUSED = Counter(
    "gateway_calls_refused_total", "INVITEs refused before an activation started, by reason",
    ["reason"], registry=REGISTRY,
)
CALLS_REFUSED_BY_REASON = Children(CALLS_REFUSED)
CALL_ERRORS = Counter(
    "gateway_call_errors_total", "Calls torn down because of an internal error", registry=REGISTRY,
)
DIALPLAN_RELOADS = Counter(
    "gateway_dialplan_reloads_total", "Dialplan reloads by result (applied, rejected)", ["result"],
    registry=REGISTRY,
)
DIALPLAN_VERSION = Gauge(
    "gateway_dialplan_version", "Version of the dialplan set in force", registry=REGISTRY,
)

# -- activation records, liveness, media quality (issue 5) ----------------------------------------

HELP_POINT_UP = Gauge(
    "gateway_help_point_up", "1 while a help point is reachable (registered or answering OPTIONS), else 0",
    ["help_point"], registry=REGISTRY,
)
TIME_TO_ANSWER = Histogram(
    "gateway_time_to_answer_seconds", "From the INVITE of a help point to an operator answering, by room",
    ["room"], buckets=(1, 2, 3, 5, 8, 10, 15, 20, 30, 45, 60, 90, 120), registry=REGISTRY,
)
TIME_TO_ANSWER_BY_ROOM = Children(TIME_TO_ANSWER)
FAILOVERS = Counter(
    "gateway_failovers_total", "Calls moved from one room to the next, by cause (busy, timeout, 503...)",
    ["from_room", "to_room", "cause"], registry=REGISTRY,
)
RECORDINGS_WRITTEN = Counter(
    "gateway_recordings_written_total", "Recordings sealed and linked to their activation", registry=REGISTRY,
)
RECORDINGS_FAILED = Counter(
    "gateway_recordings_failed_total", "Recordings that could not be written or sealed", registry=REGISTRY,
)
MEDIA_TICK_ERRORS = ReadCounter(
    "gateway_media_tick_errors",
    "Steps of the 20 ms media clock that raised (a leg's keep-alive, prompt, RTCP or silence check, or a"
    " slice of recorders): logged, and the clock goes on, but something is broken",
)
REGISTRY.register(MEDIA_TICK_ERRORS)
RECORDING_AUDIO_DROPPED = Counter(
    "gateway_recording_audio_dropped_seconds_total",
    "Audio left out of sealed recordings (silence in its place, timing kept): a burst of packets beyond the"
    " aligner's buffer (burst), or frames the disk could not take in time (disk)",
    ["reason"], registry=REGISTRY,
)
RTP_LOSS_RATIO = Histogram(
    "gateway_rtp_loss_ratio", "Fraction of RTP packets lost over a call, per leg (hp or operator)",
    ["leg"], buckets=(0.001, 0.005, 0.01, 0.02, 0.05, 0.1, 0.2, 0.5), registry=REGISTRY,
)
RTP_JITTER_SECONDS = Histogram(
    "gateway_rtp_jitter_seconds", "RFC 3550 interarrival jitter at the end of a call, per leg (hp or operator)",
    ["leg"], buckets=(0.001, 0.005, 0.01, 0.02, 0.03, 0.05, 0.1, 0.2), registry=REGISTRY,
)
DB_WRITES_DROPPED = Counter(
    "gateway_db_writes_dropped_total",
    "Activation record writes dropped: the queue was full, or the database refused them (kind)",
    ["kind"], registry=REGISTRY,
)
RECORDING_INTEGRITY_FAILURES = Counter(
    "gateway_recording_integrity_failures_total",
    "Recording downloads refused or aborted because the file did not match its SHA-256 seal",
    registry=REGISTRY,
)
RETENTION_DELETED = Counter(
    "gateway_retention_deleted_total", "What the retention job deleted (recording files, personal data sets)",
    ["kind"], registry=REGISTRY,
)
API_REQUESTS = Histogram(
    "gateway_api_request_seconds", "HTTP API requests by route name and status class",
    ["route", "status"], buckets=(0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5),
    registry=REGISTRY,
)
