"""Every Prometheus metric of the gateway, and nothing else.

Names follow ``gateway_`` + base units + ``_total`` for counters.  Labels are
bounded sets (outcome, method, transport, reason class): never a Call-ID, a
phone number or a SIP user typed by a stranger.
"""

from __future__ import annotations

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram

#: The registry /metrics serves (a fresh one, so tests in one process stay independent).
REGISTRY = CollectorRegistry(auto_describe=True)

SIP_REQUESTS = Counter(
    "gateway_sip_requests_total", "SIP requests received, by method class",
    ["method"], registry=REGISTRY,
)
SIP_MESSAGES_REJECTED = Counter(
    "gateway_sip_messages_rejected_total",
    "Datagrams or frames refused: unparseable (status 0), oversized (513) or failing RFC 3261 §8.2 checks",
    ["status"], registry=REGISTRY,
)
REGISTER = Counter(
    "gateway_register_total", "REGISTER requests by result",
    ["result"], registry=REGISTRY,
)
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

ACTIVATIONS_STARTED = Counter(
    "gateway_activations_started_total", "Help-point activations admitted (one per press)", registry=REGISTRY,
)
ACTIVATIONS = Counter(
    "gateway_activations_total", "Ended activations by outcome", ["outcome"], registry=REGISTRY,
)
CALLS_REFUSED = Counter(
    "gateway_calls_refused_total", "INVITEs refused before an activation started, by reason",
    ["reason"], registry=REGISTRY,
)
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
