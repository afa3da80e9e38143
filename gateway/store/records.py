"""Activation records: the repository (:class:`Records`), the write-behind :class:`ActivationWriter`,
API tokens, retention and recording verification.

A shell around :mod:`gateway.records` (the pure rules) and the tables of migration 0002.  Every
method translates database errors into :class:`~gateway.store.errors.StoreError` subclasses.

Wiring::

    records = Records(store, retention=RetentionPolicy(...))
    writer = ActivationWriter(records, repeat_window=120)
    await writer.start()            # marks calls left in-progress by a crash as interrupted
    writer.started(...); writer.event(...); writer.ended(summary); writer.recording(...)
    await writer.close()            # drains the queue
"""

from __future__ import annotations

import asyncio
import base64
import dataclasses
import hashlib
import json
import logging
import os
import secrets
import time
from collections.abc import Callable, Iterable, Mapping, Sequence
from contextlib import AbstractAsyncContextManager
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Any, Protocol, cast

import msgspec
from sqlalchemy import Table, and_, bindparam, func, or_, select, update
from sqlalchemy.ext.asyncio import AsyncSession

from gateway import metrics
from gateway.records import (
    DEFAULT_RETENTION,
    ROLES,
    UNCLASSIFIED,
    Press,
    RepeatLinker,
    RetentionCandidate,
    RetentionPolicy,
    decide_retention,
    parse_classification,
    retention_until,
)

from .errors import StoreError, StoreUnavailableError
from .models import (
    ActivationEventRow,
    ActivationRow,
    ApiTokenRow,
    AuditRow,
    DialplanVersionRow,
    HelpPointRow,
    PositionRow,
    RecordingRow,
)
from .repository import Store

__all__ = [
    "ActivationDetail",
    "ActivationFilter",
    "ActivationWriter",
    "Records",
    "RecordingMismatch",
    "RetentionReport",
    "TokenInfo",
    "apply_retention",
    "create_token",
    "retention_forever",
    "sha256_file",
    "verify_recordings",
]

log = logging.getLogger(__name__)

#: Columns of :class:`ActivationRow` a summary (``CallSummary`` as a dict) sets when the call ends.
_ENDED_FIELDS = ("outcome", "answered_by", "answered_room", "ended_by", "duration", "talk_time",
                 "dialplan", "dialplan_version", "silent")
_ACTIVATIONS = cast(Table, ActivationRow.__table__)
_EVENTS = cast(Table, ActivationEventRow.__table__)
_RECORDINGS = cast(Table, RecordingRow.__table__)

# The writer's queries, built once with an expanding ``ids`` parameter: a statement built per batch
# (``column.in_(list)``) leaves a reference cycle of SQLAlchemy objects behind each time, which only the cyclic
# garbage collector frees, and the gateway runs without it (see HeapPolicy in gateway/calls/heap.py).
_EXISTING_ACTIVATIONS = select(ActivationRow.id).where(ActivationRow.id.in_(bindparam("ids", expanding=True)))
_LINKED_RECORDINGS = select(RecordingRow.activation_id, RecordingRow.path).where(
    RecordingRow.activation_id.in_(bindparam("ids", expanding=True)))
_LIVE_RECORDINGS_WITH_ACTIVATION = (
    select(RecordingRow, ActivationRow)
    .join(ActivationRow, ActivationRow.id == RecordingRow.activation_id)
    .where(RecordingRow.activation_id.in_(bindparam("ids", expanding=True)), RecordingRow.deleted_at.is_(None)))
_ACTIVATION_COLUMNS = tuple(_ACTIVATIONS.columns.keys())
#: Longest text each bounded activation column holds (PostgreSQL refuses more; SQLite keeps anything).
_ACTIVATION_LENGTHS = {c.name: c.type.length for c in _ACTIVATIONS.columns
                       if isinstance(getattr(c.type, "length", None), int) and c.name != "id"}
_HASH_CHUNK = 1 << 20


def _fit(row: dict[str, Any]) -> dict[str, Any]:
    """An activation row with its text cut to the column lengths: a long room or dialplan name must not
    cost the record (the id is never cut: it is the key)."""
    for name, length in _ACTIVATION_LENGTHS.items():
        value = row.get(name)
        if isinstance(value, str) and len(value) > length:
            row[name] = value[:length]
    return row


def _utc(epoch: float) -> datetime:
    return datetime.fromtimestamp(epoch, UTC)


def _plain(value: Any) -> Any:
    """``value`` as JSON-able builtins (tuples become lists, anything odd becomes its ``str``)."""
    return msgspec.to_builtins(value, enc_hook=str, str_keys=True)


def encode_cursor(*parts: Any) -> str:
    """An opaque pagination cursor."""
    return base64.urlsafe_b64encode(json.dumps(parts, default=str).encode()).decode().rstrip("=")


def decode_cursor(cursor: str) -> list[Any]:
    """The parts of a cursor; ``ValueError`` if it was not made by :func:`encode_cursor`."""
    try:
        parts = json.loads(base64.urlsafe_b64decode(cursor + "=" * (-len(cursor) % 4)))
    except (ValueError, TypeError) as exc:
        raise ValueError("not a cursor returned by this API") from exc
    if not isinstance(parts, list):
        raise ValueError("not a cursor returned by this API")
    return parts


def _activation_cursor(cursor: str) -> tuple[datetime, str]:
    """(started_at, id) of the last row of the previous page; ``ValueError`` for anything we did not make."""
    parts = decode_cursor(cursor)
    try:
        if len(parts) != 2 or not isinstance(parts[1], str) or len(parts[1]) > 64 or "\x00" in parts[1]:
            raise ValueError
        parts[1].encode("utf-8")
        at = datetime.fromisoformat(parts[0])
        if at.tzinfo is None:
            raise ValueError
        return at.astimezone(UTC), parts[1]
    except (TypeError, ValueError, OverflowError):  # UnicodeEncodeError is a ValueError
        raise ValueError("not a cursor returned by this API") from None


# -- values -------------------------------------------------------------------------------------


@dataclass(frozen=True)
class ActivationFilter:
    """Filters of the activation list; None means "any"."""

    help_point: str | None = None
    room: str | None = None
    """The room that answered."""
    outcome: str | None = None
    classification: str | None = None
    """A classification, or ``"unclassified"``."""
    since: datetime | None = None
    """Started at or after (inclusive)."""
    until: datetime | None = None
    """Started before (exclusive)."""


@dataclass(frozen=True)
class ActivationDetail:
    """One activation with its timeline, recordings and the repeat presses linked to it."""

    activation: ActivationRow
    events: list[ActivationEventRow]
    recordings: list[RecordingRow]
    linked: list[str]


@dataclass(frozen=True)
class TokenInfo:
    """Who an API token belongs to."""

    name: str
    role: str


@dataclass(frozen=True)
class RecordingMismatch:
    """A recording whose file no longer matches what was sealed."""

    recording_id: int
    activation_id: str
    path: str
    problem: str
    """``missing``, ``size`` or ``sha256``."""
    expected: str
    actual: str | None


@dataclass
class RetentionReport:
    """What one retention run deleted."""

    purged: list[dict[str, Any]] = field(default_factory=list)
    errors: list[str] = field(default_factory=list)


class InventoryHelpPoint(Protocol):
    """What :meth:`Records.sync_inventory` reads of a help point (``gateway.config.HelpPoint``)."""

    id: str
    name: str
    sip_user: str
    camera_url: str | None
    tags: tuple[str, ...]

    @property
    def location(self) -> Any:
        """An object with ``lat``, ``lon`` and ``address``."""


class InventoryRoom(Protocol):
    """What :meth:`Records.sync_inventory` reads of a room (``gateway.config.Room``)."""

    id: str
    name: str
    positions: tuple[Any, ...]


# -- repository --------------------------------------------------------------------------------


class Records:
    """Activation records over a :class:`~gateway.store.Store`."""

    def __init__(self, store: Store, *, retention: RetentionPolicy = DEFAULT_RETENTION,
                 token_cache_seconds: float = 10.0) -> None:
        self.store = store
        self.retention = retention
        self.token_cache_seconds = token_cache_seconds
        """How long a valid token is trusted without asking the database again (revoking through this
        object clears the cache at once; a revocation by another process takes up to this long)."""
        self._tokens: dict[str, tuple[TokenInfo, float]] = {}

    def _session(self, action: str) -> AbstractAsyncContextManager[AsyncSession]:
        return self.store._session(action)

    # -- inventory -----------------------------------------------------------------------------

    async def sync_inventory(self, help_points: Iterable[InventoryHelpPoint], rooms: Iterable[InventoryRoom],
                             *, now: datetime | None = None) -> None:
        """Make help_points and positions match the inventory; ones that left it become inactive."""
        now = now or datetime.now(UTC)
        hps = {hp.id: hp for hp in help_points}
        positions = {p.id: (p, room) for room in rooms for p in room.positions}
        async with self._session("syncing the inventory") as session:
            for hp_row in (await session.scalars(select(HelpPointRow))).all():
                hp_row.active = hp_row.id in hps
            for pos_row in (await session.scalars(select(PositionRow))).all():
                pos_row.active = pos_row.id in positions
            for hp in hps.values():
                loc = hp.location
                await session.merge(HelpPointRow(
                    id=hp.id, name=hp.name, sip_user=hp.sip_user, lat=getattr(loc, "lat", None),
                    lon=getattr(loc, "lon", None), address=getattr(loc, "address", None),
                    camera_url=hp.camera_url, tags=list(hp.tags), active=True, synced_at=now))
            for position, room in positions.values():
                await session.merge(PositionRow(
                    id=position.id, room=room.id, room_name=room.name, name=position.name,
                    sip_user=position.sip_user, active=True, synced_at=now))

    async def list_help_points(self) -> list[HelpPointRow]:
        """Every help point ever synced, by id."""
        async with self._session("listing help points") as session:
            return list((await session.scalars(select(HelpPointRow).order_by(HelpPointRow.id))).all())

    async def list_positions(self) -> list[PositionRow]:
        """Every position ever synced, by room then id."""
        async with self._session("listing positions") as session:
            query = select(PositionRow).order_by(PositionRow.room, PositionRow.id)
            return list((await session.scalars(query)).all())

    # -- activations: the writer's path ----------------------------------------------------------

    async def mark_interrupted(self, now: datetime) -> list[str]:
        """Every activation still ``in-progress`` becomes ``interrupted`` (the gateway died mid-call).

        Its duration becomes the time of its last recorded timeline entry.
        """
        last_t = (select(func.max(ActivationEventRow.t))
                  .where(ActivationEventRow.activation_id == ActivationRow.id).scalar_subquery())
        async with self._session("marking interrupted activations") as session:
            ids = list((await session.scalars(
                select(ActivationRow.id).where(ActivationRow.outcome == "in-progress"))).all())
            if ids:
                await session.execute(
                    update(ActivationRow).where(ActivationRow.outcome == "in-progress")
                    .values(outcome="interrupted", ended_at=now, duration=func.coalesce(last_t, 0.0),
                            talk_time=func.coalesce(ActivationRow.talk_time, 0.0),
                            ended_by="gateway"),
                    execution_options={"synchronize_session": False})
        return ids

    async def interrupted_ids(self) -> list[str]:
        """Ids of every activation whose outcome is ``interrupted``, oldest first.

        Start-up makes up for what this node alone holds of them (journal ends, recordings on its disk): with
        two gateways on one database (an active/standby pair) the peer that took over marked them.
        """
        query = (select(ActivationRow.id).where(ActivationRow.outcome == "interrupted")
                 .order_by(ActivationRow.started_at))
        async with self._session("reading interrupted activations") as session:
            return list((await session.scalars(query)).all())

    async def recent_presses(self, since: datetime) -> list[tuple[str, Press]]:
        """(help point, press) of every activation started at or after ``since``, oldest first."""
        query = (select(ActivationRow.help_point, ActivationRow.id, ActivationRow.started_at,
                        ActivationRow.linked_to)
                 .where(ActivationRow.started_at >= since).order_by(ActivationRow.started_at))
        async with self._session("reading recent presses") as session:
            return [(hp, Press(aid, at.timestamp(), linked)) for hp, aid, at, linked in
                    (await session.execute(query)).all()]

    async def write_batch(self, ops: Sequence[tuple[str, dict[str, Any]]]) -> None:
        """Apply the writer's operations in one transaction (see :class:`ActivationWriter`)."""
        inserts: dict[str, dict[str, Any]] = {}
        ended: dict[str, dict[str, Any]] = {}
        events: list[dict[str, Any]] = []
        recordings: list[dict[str, Any]] = []
        for kind, values in ops:
            if kind == "started":
                inserts.setdefault(values["id"], values)
            elif kind == "event":
                events.append(values)
            elif kind == "recording":
                recordings.append(values)
            elif values["id"] in inserts:
                inserts[values["id"]].update({k: values[k] for k in (*_ENDED_FIELDS, "ended_at")})
            else:
                ended[values["id"]] = values
        async with self._session(f"writing {len(ops)} activation records") as session:
            if ended:
                existing = set((await session.scalars(_EXISTING_ACTIVATIONS, {"ids": list(ended)})).all())
                for aid in [aid for aid in ended if aid not in existing]:
                    inserts[aid] = ended.pop(aid)
            if inserts:
                rows = [_fit({name: row.get(name) for name in _ACTIVATION_COLUMNS}) for row in inserts.values()]
                await session.execute(_ACTIVATIONS.insert(), rows)
            if ended:
                fields = [_fit({k: v for k, v in row.items() if k in (*_ENDED_FIELDS, "id", "ended_at")})
                          for row in ended.values()]
                await session.execute(update(ActivationRow), fields)
            if events:
                await session.execute(_EVENTS.insert(), events)
            if recordings:
                # A batch retried after a commit whose acknowledgement was lost must not link a file twice.
                ids = list({r["activation_id"] for r in recordings})
                linked = {(aid, path) for aid, path in (await session.execute(_LINKED_RECORDINGS, {"ids": ids})).all()}
                recordings = [r for r in recordings if (r["activation_id"], r["path"]) not in linked]
            if recordings:
                await session.execute(_RECORDINGS.insert(), recordings)
            touched = {r["activation_id"] for r in recordings} | set(ended)
            touched |= {aid for aid, row in inserts.items() if "ended_at" in row}
            if touched:
                await self._refresh_retention(session, touched)

    async def _refresh_retention(self, session: AsyncSession, activation_ids: Iterable[str]) -> None:
        """Recompute ``retention_until`` of the live recordings of these activations."""
        rows = await session.execute(_LIVE_RECORDINGS_WITH_ACTIVATION, {"ids": list(activation_ids)})
        for recording, activation in rows.all():
            recording.retention_until = retention_until(
                activation.started_at, activation.classification, activation.outcome, activation.hold,
                self.retention)

    # -- activations: the API's path -------------------------------------------------------------

    async def list_activations(self, where: ActivationFilter, *, limit: int = 50,
                               cursor: str | None = None) -> tuple[list[Any], str | None]:
        """A page of activations, newest first, and the cursor of the next page (None at the end).

        Rows are read-only records with :class:`ActivationRow`'s column attributes.
        """
        query = select(*_ACTIVATIONS.columns)  # Core rows: no ORM identity map to fill
        conditions = []
        if where.help_point is not None:
            conditions.append(ActivationRow.help_point == where.help_point)
        if where.room is not None:
            conditions.append(ActivationRow.answered_room == where.room)
        if where.outcome is not None:
            conditions.append(ActivationRow.outcome == where.outcome)
        if where.classification == UNCLASSIFIED:
            conditions.append(ActivationRow.classification.is_(None))
        elif where.classification is not None:
            conditions.append(ActivationRow.classification == where.classification)
        if where.since is not None:
            conditions.append(ActivationRow.started_at >= where.since)
        if where.until is not None:
            conditions.append(ActivationRow.started_at < where.until)
        if cursor is not None:
            at, last_id = _activation_cursor(cursor)
            conditions.append(or_(ActivationRow.started_at < at,
                                  and_(ActivationRow.started_at == at, ActivationRow.id < last_id)))
        query = (query.where(*conditions).order_by(ActivationRow.started_at.desc(), ActivationRow.id.desc())
                 .limit(limit + 1))
        async with self._session("listing activations") as session:
            rows: list[Any] = list((await session.execute(query)).all())
        if len(rows) <= limit:
            return rows, None
        rows = rows[:limit]
        return rows, encode_cursor(rows[-1].started_at.isoformat(), rows[-1].id)

    async def get_activation(self, activation_id: str) -> ActivationDetail | None:
        """One activation with its timeline, recordings and linked repeat presses."""
        async with self._session(f"reading activation {activation_id}") as session:
            row = await session.get(ActivationRow, activation_id)
            if row is None:
                return None
            events = (await session.scalars(select(ActivationEventRow).where(
                ActivationEventRow.activation_id == activation_id).order_by(ActivationEventRow.seq))).all()
            recordings = (await session.scalars(select(RecordingRow).where(
                RecordingRow.activation_id == activation_id).order_by(RecordingRow.id))).all()
            linked = (await session.scalars(select(ActivationRow.id).where(
                ActivationRow.linked_to == activation_id).order_by(ActivationRow.started_at))).all()
            return ActivationDetail(row, list(events), list(recordings), list(linked))

    async def classify(self, activation_id: str, classification: str, note: str | None, *,
                       actor: TokenInfo, now: datetime | None = None) -> ActivationRow | None:
        """Set an activation's classification and note (audited); None if there is no such activation."""
        classification = parse_classification(classification)
        now = now or datetime.now(UTC)
        async with self._session(f"classifying {activation_id}") as session:
            row = await session.get(ActivationRow, activation_id)
            if row is None:
                return None
            before = {"classification": row.classification, "note": row.note}
            row.classification = classification
            if note is not None:
                row.note = note
            session.add(_audit_row(now, actor, "activation.classify", activation_id,
                                   {"before": before, "classification": classification, "note": row.note}))
            await session.flush()
            await self._refresh_retention(session, [activation_id])
            return row

    async def set_hold(self, activation_id: str, hold: bool, *, actor: TokenInfo,
                       now: datetime | None = None) -> ActivationRow | None:
        """Place or lift a retention hold (audited); None if there is no such activation."""
        now = now or datetime.now(UTC)
        async with self._session(f"setting the hold of {activation_id}") as session:
            row = await session.get(ActivationRow, activation_id)
            if row is None:
                return None
            session.add(_audit_row(now, actor, "activation.hold", activation_id,
                                   {"before": row.hold, "hold": hold}))
            row.hold = hold
            await session.flush()
            await self._refresh_retention(session, [activation_id])
            return row

    async def get_recording(self, activation_id: str, recording_id: int | None = None) -> RecordingRow | None:
        """The newest recording of an activation (or the one with ``recording_id``), deleted or not."""
        query = select(RecordingRow).where(RecordingRow.activation_id == activation_id)
        if recording_id is not None:
            query = query.where(RecordingRow.id == recording_id)
        async with self._session(f"reading the recording of {activation_id}") as session:
            return (await session.scalars(query.order_by(RecordingRow.id.desc()).limit(1))).first()

    # -- audit --------------------------------------------------------------------------------------

    async def audit(self, actor: TokenInfo, action: str, target: str | None, detail: Mapping[str, Any],
                    *, now: datetime | None = None) -> None:
        """Append one entry to the audit log."""
        async with self._session(f"auditing {action}") as session:
            session.add(_audit_row(now or datetime.now(UTC), actor, action, target, detail))

    async def list_audit(self, *, actor: str | None = None, action: str | None = None, target: str | None = None,
                         since: datetime | None = None, until: datetime | None = None, limit: int = 100,
                         cursor: str | None = None) -> tuple[list[AuditRow], str | None]:
        """A page of the audit log, newest first, and the next page's cursor."""
        conditions = []
        for column, value in ((AuditRow.actor, actor), (AuditRow.action, action), (AuditRow.target, target)):
            if value is not None:
                conditions.append(column == value)
        if since is not None:
            conditions.append(AuditRow.at >= since)
        if until is not None:
            conditions.append(AuditRow.at < until)
        if cursor is not None:
            parts = decode_cursor(cursor)
            if len(parts) != 1 or type(parts[0]) is not int or not 0 < parts[0] < 2**31:
                raise ValueError("not a cursor returned by this API")
            conditions.append(AuditRow.id < parts[0])
        query = select(AuditRow).where(*conditions).order_by(AuditRow.id.desc()).limit(limit + 1)
        async with self._session("listing the audit log") as session:
            rows = list((await session.scalars(query)).all())
        if len(rows) <= limit:
            return rows, None
        return rows[:limit], encode_cursor(rows[limit - 1].id)

    # -- dialplan versions ----------------------------------------------------------------------------

    async def record_dialplan_version(self, version: int, digest: str, files: Sequence[str], *,
                                      now: datetime | None = None) -> None:
        """Remember that dialplan set ``version`` (content ``digest``) was put in force."""
        async with self._session(f"recording dialplan version {version}") as session:
            await session.merge(DialplanVersionRow(version=version, digest=digest, files=list(files),
                                                   applied_at=now or datetime.now(UTC)))

    async def list_dialplan_versions(self) -> list[DialplanVersionRow]:
        """Every dialplan version put in force, newest first."""
        async with self._session("listing dialplan versions") as session:
            query = select(DialplanVersionRow).order_by(DialplanVersionRow.version.desc())
            return list((await session.scalars(query)).all())

    # -- tokens ---------------------------------------------------------------------------------------

    async def authenticate(self, token: str) -> TokenInfo | None:
        """The live token matching ``token``, or None."""
        digest = hashlib.sha256(token.encode("utf-8", "surrogateescape")).hexdigest()
        cached = self._tokens.get(digest)
        if cached is not None and cached[1] > time.monotonic():
            return cached[0]
        query = select(ApiTokenRow.name, ApiTokenRow.role).where(
            ApiTokenRow.token_hash == digest, ApiTokenRow.revoked_at.is_(None))
        async with self._session("checking an API token") as session:
            found = (await session.execute(query)).first()
        if found is None:
            self._tokens.pop(digest, None)
            return None
        if len(self._tokens) >= 1000:  # only valid tokens are cached, so this bound is never reached in use
            self._tokens.clear()
        identity = TokenInfo(found[0], found[1])
        self._tokens[digest] = (identity, time.monotonic() + self.token_cache_seconds)
        return identity

    async def revoke_tokens(self, name: str, *, now: datetime | None = None) -> int:
        """Revoke every live token called ``name``; return how many."""
        self._tokens.clear()
        async with self._session(f"revoking tokens of {name}") as session:
            result = await session.execute(
                update(ApiTokenRow).where(ApiTokenRow.name == name, ApiTokenRow.revoked_at.is_(None))
                .values(revoked_at=now or datetime.now(UTC)))
            return int(getattr(result, "rowcount", 0) or 0)


def _audit_row(at: datetime, actor: TokenInfo, action: str, target: str | None,
               detail: Mapping[str, Any]) -> AuditRow:
    return AuditRow(at=at, actor=actor.name, role=actor.role, action=action,
                    target=None if target is None else target[:255], detail=_plain(dict(detail)))


async def create_token(store: Store, name: str, role: str, *, now: datetime | None = None) -> str:
    """Create an API token for ``name`` with ``role`` and return it: it is shown once, only its hash is kept.

    The CLI (``gateway tokens create --name N --role R``) prints what this returns.
    """
    if role not in ROLES:
        raise ValueError(f"role must be one of {', '.join(ROLES)} (got {role!r})")
    if not name or len(name) > 128:
        raise ValueError("name must be 1 to 128 characters")
    token = "hpg_" + secrets.token_urlsafe(32)
    now = now or datetime.now(UTC)
    async with store._session(f"creating a token for {name}") as session:
        session.add(ApiTokenRow(token_hash=hashlib.sha256(token.encode()).hexdigest(), name=name, role=role,
                                created_at=now))
        session.add(_audit_row(now, TokenInfo("cli", "admin"), "token.create", name, {"role": role}))
    log.info("API token created for %s (role %s)", name, role)
    return token


# -- the write-behind queue ------------------------------------------------------------------------


class ActivationWriter:
    """A bounded queue in front of the database; the call layer's methods never block or raise.

    Order is kept: one consumer task applies operations in the order they were queued, in batches
    of up to ``batch_size`` per transaction.  ``ended`` and ``recording`` are never dropped: when the
    queue is full they wait in an overflow list.  ``started`` and ``event`` are dropped when it is
    full (counted in ``gateway_db_writes_dropped_total`` and logged at ERROR; ``ended`` still creates
    the row).  The default bound (100 000) is about an hour of presses at an implausible rate.

    The timeline contract: ``event`` entries are the call's timeline entries in order; ``ended``
    writes the summary's timeline entries that ``event`` has not sent (by position).
    """

    def __init__(self, records: Records, *, repeat_window: float = 120.0, max_queue: int = 100_000,
                 batch_size: int = 500, retry_delay: float = 1.0, clock: Callable[[], float] = time.time,
                 gather_delay: float = 0.05) -> None:
        self.records = records
        #: Seconds the consumer waits after waking so that one transaction carries many rows.
        self.gather_delay = gather_delay
        self.linker = RepeatLinker(repeat_window)
        self.max_queue = max_queue
        self.batch_size = batch_size
        self.retry_delay = retry_delay
        self.clock = clock
        self._queue: asyncio.Queue[tuple[str, dict[str, Any]]] = asyncio.Queue(max_queue)
        self._overflow: list[tuple[str, dict[str, Any]]] = []
        self._wake = asyncio.Event()
        self._seq: dict[str, int] = {}
        self._task: asyncio.Task[None] | None = None
        self._idle = asyncio.Event()
        self._idle.set()
        self._warned_full = False

    # -- the call layer's side (synchronous, never blocks) --------------------------------------

    def started(self, activation_id: str, help_point: str, started_at: float, dialplan: str | None,
                version: int | None, camera_url: str | None, location: str | None) -> str | None:
        """An INVITE became an activation; returns the activation this press repeats (or None)."""
        linked_to = self.linker.press(help_point, activation_id, started_at)
        self._seq[activation_id] = 0
        self._put("started", {
            "id": activation_id, "help_point": help_point, "started_at": _utc(started_at), "outcome": "in-progress",
            "dialplan": dialplan, "dialplan_version": version, "camera_url": camera_url, "location": location,
            "linked_to": linked_to, "silent": False, "hold": False,
        })
        return linked_to

    def event(self, activation_id: str, entry: Mapping[str, Any]) -> None:
        """One timeline entry ``{"t": seconds, "event": name, ...}`` of a live activation."""
        seq = self._seq.get(activation_id, 0)
        self._seq[activation_id] = seq + 1
        self._put("event", _event_row(activation_id, seq, entry))

    def ended(self, summary: Any, *, events_stored: int | None = None) -> None:
        """The call ended: ``summary`` is a ``CallSummary`` or its ``dataclasses.asdict``.  Never dropped.

        ``events_stored``: how many of its timeline entries the database already holds, when this writer did
        not write them itself (an end replayed from the journal after a restart)."""
        values = dict(summary) if isinstance(summary, Mapping) else dataclasses.asdict(summary)
        aid = str(values["activation_id"])
        started_at = float(values["started_at"])
        duration = float(values.get("duration") or 0.0)
        row: dict[str, Any] = {"id": aid, "help_point": values.get("help_point", ""),
                               "started_at": _utc(started_at), "ended_at": _utc(started_at + duration),
                               "linked_to": None, "hold": False}
        for name in _ENDED_FIELDS:
            row[name] = values.get(name)
        row["silent"] = bool(row["silent"])
        sent = self._seq.pop(aid, 0)
        if events_stored is not None:
            sent = events_stored
        timeline = list(values.get("timeline") or ())
        self._put("ended", row, keep=True)
        for seq, entry in enumerate(timeline[sent:], start=sent):
            self._put("event", _event_row(aid, seq, entry), keep=True)

    def recording(self, activation_id: str, path: str, duration: float, sha256: str, size: int) -> None:
        """A sealed recording file of an activation.  Never dropped."""
        self._put("recording", {"activation_id": activation_id, "path": str(path), "duration": float(duration),
                                "sha256": sha256.lower(), "size": int(size), "created_at": _utc(self.clock())},
                  keep=True)

    def _put(self, kind: str, values: dict[str, Any], *, keep: bool = False) -> None:
        self._idle.clear()
        try:
            if self._overflow:
                raise asyncio.QueueFull  # keep order behind what already overflowed
            self._queue.put_nowait((kind, values))
        except asyncio.QueueFull:
            if not self._warned_full:
                self._warned_full = True
                log.error("activation write queue FULL (%d pending): the database is not keeping up; "
                          "timeline entries are being dropped, call ends are kept in memory", self.max_queue)
            if keep:
                self._overflow.append((kind, values))
            else:
                metrics.DB_WRITES_DROPPED.labels(kind).inc()
                return
        metrics.DB_QUEUE_DEPTH.inc()
        self._wake.set()

    @property
    def pending(self) -> int:
        """Operations queued and not yet written."""
        return self._queue.qsize() + len(self._overflow)

    # -- the database side -------------------------------------------------------------------------

    async def start(self) -> list[str]:
        """Mark activations a crash left in progress as interrupted, seed repeat links, start the consumer.

        Returns the ids marked interrupted.
        """
        now = self.clock()
        interrupted = await self.records.mark_interrupted(_utc(now))
        if interrupted:
            log.warning("%d activation(s) were in progress when the gateway stopped; marked interrupted: %s",
                        len(interrupted), ", ".join(interrupted[:20]))
        for help_point, press in await self.records.recent_presses(_utc(now - self.linker.window)):
            self.linker.seed(help_point, press)
        self._task = asyncio.get_running_loop().create_task(self._run(), name="activation-writer")
        return interrupted

    def _take(self) -> list[tuple[str, dict[str, Any]]]:
        batch: list[tuple[str, dict[str, Any]]] = []
        while len(batch) < self.batch_size and not self._queue.empty():
            batch.append(self._queue.get_nowait())
        if len(batch) < self.batch_size and self._queue.empty() and self._overflow:
            room = self.batch_size - len(batch)
            batch += self._overflow[:room]
            del self._overflow[:room]
        return batch

    async def _run(self) -> None:
        while True:
            if not self.pending:
                self._idle.set()
                self._wake.clear()
                await self._wake.wait()
                # Let a burst gather (a call writes a dozen rows within milliseconds): one transaction
                # for many rows instead of one per row.  Bounded: records are never late by more than this.
                await asyncio.sleep(self.gather_delay)
            batch = self._take()
            await self._write(batch)
            metrics.DB_QUEUE_DEPTH.dec(len(batch))
            if self._warned_full and self.pending < self.max_queue // 2:
                self._warned_full = False
                log.warning("activation write queue recovered (%d pending)", self.pending)

    async def _write(self, batch: list[tuple[str, dict[str, Any]]]) -> None:
        """Write a batch, retrying while the database is unavailable.

        When the database refuses the batch (a constraint, a value it cannot hold, or a bug of ours),
        write it item by item and drop, loudly, only the items it refuses: the consumer task never dies
        and one bad row never holds back the rows behind it.
        """
        while True:
            try:
                await self.records.write_batch(batch)
                return
            except StoreUnavailableError:
                metrics.DB_WRITE_FAILURES.inc()
                log.exception("writing %d activation records failed; retrying", len(batch))
                await asyncio.sleep(self.retry_delay)
            except StoreError:  # refused (a constraint, a value the column cannot hold): retrying cannot help
                metrics.DB_WRITE_FAILURES.inc()
                log.exception("the database refused %d activation records; writing them one by one", len(batch))
                break
            except Exception:  # the consumer's one catch-all: a bug must not stop every later write
                log.exception("writing %d activation records failed unexpectedly", len(batch))
                break
        for op in batch:
            while True:
                try:
                    await self.records.write_batch([op])
                    break
                except StoreUnavailableError:
                    metrics.DB_WRITE_FAILURES.inc()
                    log.exception("writing an activation record failed; retrying")
                    await asyncio.sleep(self.retry_delay)
                except StoreError as exc:
                    self._dropped(op, str(exc))
                    break
                except Exception as exc:  # see above
                    log.exception("activation record could not be written")
                    self._dropped(op, repr(exc))
                    break

    @staticmethod
    def _dropped(op: tuple[str, dict[str, Any]], why: str) -> None:
        metrics.DB_WRITES_DROPPED.labels(op[0]).inc()
        log.error("activation record refused by the database, dropped: %s %s: %s",
                  op[0], op[1].get("id") or op[1].get("activation_id"), why)

    async def flush(self) -> None:
        """Wait until everything queued so far is written."""
        if self._task is None:
            raise RuntimeError("ActivationWriter.start() was not called")
        while not self._idle.is_set():
            await self._idle.wait()

    async def close(self) -> None:
        """Write everything pending, then stop the consumer."""
        if self._task is None:
            return
        await self.flush()
        self._task.cancel()
        try:
            await self._task
        except asyncio.CancelledError:
            pass
        self._task = None


def _event_row(activation_id: str, seq: int, entry: Mapping[str, Any]) -> dict[str, Any]:
    data = {k: v for k, v in entry.items() if k not in ("t", "event")}
    try:
        t = float(entry.get("t") or 0.0)
    except (TypeError, ValueError):
        t = 0.0
    return {"activation_id": activation_id, "seq": seq, "t": t, "event": str(entry.get("event", "?"))[:64],
            "data": _plain(data)}


# -- retention and verification ------------------------------------------------------------------


async def apply_retention(records: Records, *, now: datetime | None = None, page: int = 500) -> RetentionReport:
    """Delete the recordings and personal data that :func:`gateway.records.decide_retention` says are due.

    Each activation is claimed (row locked) and decided again before its files go, so a hold or a
    classification placed during the run is honoured.  Files first, then the rows, in the claiming
    transaction (a crash in between leaves a row whose file is already gone: the next run finishes it).  Every purged activation is logged and audited (actor ``retention``).
    """
    now = now or datetime.now(UTC)
    policy = records.retention
    cutoff = now - timedelta(days=policy.shortest_days)
    report = RetentionReport()
    actor = TokenInfo("retention", "system")
    after: tuple[datetime, str] | None = None
    while True:
        query = (select(ActivationRow).where(
            ActivationRow.purged_at.is_(None), ActivationRow.hold.is_(False),
            ActivationRow.outcome != "in-progress", ActivationRow.started_at <= cutoff)
            .order_by(ActivationRow.started_at, ActivationRow.id).limit(page))
        if after is not None:
            query = query.where(or_(ActivationRow.started_at > after[0],
                                    and_(ActivationRow.started_at == after[0], ActivationRow.id > after[1])))
        async with records._session("finding activations due for deletion") as session:
            rows = list((await session.scalars(query)).all())
        if not rows:
            return report
        after = (rows[-1].started_at, rows[-1].id)
        candidates = [RetentionCandidate(r.id, r.started_at, r.outcome, r.classification, r.hold) for r in rows]
        for decision in decide_retention(candidates, now, policy):
            await _purge(records, decision.activation_id, now, actor, report)


async def _purge(records: Records, activation_id: str, now: datetime, actor: TokenInfo,
                 report: RetentionReport) -> None:
    async with records._session(f"purging {activation_id}") as session:
        # Claim the row before deciding again and deleting anything (a row lock on PostgreSQL, the write
        # lock on SQLite): a hold or a classification placed since the run chose this activation either
        # commits first, and is seen here, or waits until the files are gone and the purge is recorded.
        await session.execute(update(ActivationRow).where(ActivationRow.id == activation_id)
                              .values(hold=ActivationRow.hold))
        row = await session.get(ActivationRow, activation_id, populate_existing=True)
        if row is None or row.purged_at is not None:
            return
        decisions = decide_retention([RetentionCandidate(row.id, row.started_at, row.outcome, row.classification,
                                                         row.hold)], now, records.retention)
        if not decisions:
            return
        reason = decisions[0].reason
        recordings = list((await session.scalars(select(RecordingRow).where(
            RecordingRow.activation_id == activation_id, RecordingRow.deleted_at.is_(None)))).all())
        deleted, failed = [], []
        for recording in recordings:
            try:
                await asyncio.to_thread(os.unlink, recording.path)
                deleted.append(recording)
            except FileNotFoundError:
                deleted.append(recording)
            except OSError as exc:
                failed.append(recording.path)
                report.errors.append(f"{activation_id}: cannot delete {recording.path}: {exc}")
                log.error("retention: cannot delete recording %s of %s: %s", recording.path, activation_id, exc)
        fields = [name for name in ("location", "camera_url", "note") if getattr(row, name) is not None]
        row.location = row.camera_url = row.note = None
        if not failed:
            row.purged_at = now
        for recording in deleted:
            recording.deleted_at = now
        entry = {"activation_id": activation_id, "reason": reason, "fields": fields,
                 "recordings": [r.path for r in deleted], "failed": failed}
        session.add(_audit_row(now, actor, "retention.delete", activation_id, entry))
    report.purged.append(entry)
    metrics.RETENTION_DELETED.labels("recording").inc(len(deleted))
    if fields:
        metrics.RETENTION_DELETED.labels("personal_data").inc()
    log.info("retention: %s: deleted %d recording(s) and %s (%s)", activation_id, len(deleted),
             ", ".join(fields) or "no personal data", reason)


async def retention_forever(records: Records, interval: float = 3600.0) -> None:
    """The scheduled retention job: :func:`apply_retention` every ``interval`` seconds, forever."""
    while True:
        try:
            await apply_retention(records)
        except StoreError:
            log.exception("retention run failed; next try in %.0f s", interval)
        await asyncio.sleep(interval)


def sha256_file(path: str) -> tuple[str, int]:
    """SHA-256 (hex) and size of a file, read in 1 MiB chunks (blocking: run it in a thread)."""
    digest = hashlib.sha256()
    size = 0
    with open(path, "rb") as fh:
        while chunk := fh.read(_HASH_CHUNK):
            digest.update(chunk)
            size += len(chunk)
    return digest.hexdigest(), size


async def verify_recordings(store: Store, *, page: int = 500) -> list[RecordingMismatch]:
    """Re-hash every live recording file; return the ones missing or not matching their seal."""
    records = Records(store)
    mismatches: list[RecordingMismatch] = []
    last_id = 0
    checked = 0
    while True:
        async with records._session("listing recordings to verify") as session:
            rows = list((await session.scalars(select(RecordingRow).where(
                RecordingRow.deleted_at.is_(None), RecordingRow.id > last_id)
                .order_by(RecordingRow.id).limit(page))).all())
        if not rows:
            break
        last_id = rows[-1].id
        for row in rows:
            checked += 1
            try:
                digest, size = await asyncio.to_thread(sha256_file, row.path)
            except OSError as exc:
                mismatches.append(RecordingMismatch(row.id, row.activation_id, row.path, "missing", row.sha256,
                                                    str(exc)))
                continue
            if size != row.size:
                mismatches.append(RecordingMismatch(row.id, row.activation_id, row.path, "size", str(row.size),
                                                    str(size)))
            elif digest != row.sha256:
                mismatches.append(RecordingMismatch(row.id, row.activation_id, row.path, "sha256", row.sha256,
                                                    digest))
    for m in mismatches:
        log.error("recording %s of activation %s fails verification (%s): expected %s, found %s",
                  m.path, m.activation_id, m.problem, m.expected, m.actual)
    log.info("verified %d recording(s): %d mismatch(es)", checked, len(mismatches))
    return mismatches
