"""The /api routes: one table (:data:`ROUTES`) that both the router and the OpenAPI document read.

Each :class:`Route` names its least role (see :mod:`gateway.records.roles`), its query parameters
and request body as JSON Schemas (checked by :mod:`.schema` before the handler runs) and its
responses.  Handlers receive a :class:`Context` with the checked input and the caller's identity.
Every change and every recording access writes the audit log.
"""

from __future__ import annotations

import asyncio
import hashlib
import inspect
import logging
import os
from base64 import b64encode
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

from aiohttp import web

from gateway import metrics
from gateway.records import CLASSIFICATIONS, OUTCOMES, UNCLASSIFIED, Role, retention_until, role_allows
from gateway.store.models import ActivationRow, AuditRow, RecordingRow
from gateway.store.records import ActivationFilter, Records, TokenInfo

from .errors import ApiError, FieldError, bad_input, field_error, not_found
from .schema import Schema, check_query, check_text, read_json
from .services import Services

log = logging.getLogger(__name__)

SERVICES: web.AppKey[Services] = web.AppKey("services", Services)

#: Longest id (activation, help point) the store keeps; anything longer cannot exist.
MAX_ID = 64
_CHUNK = 256 * 1024


@dataclass(frozen=True)
class Context:
    """A request after checks: who is calling, the path, query and body values."""

    request: web.Request
    services: Services
    identity: TokenInfo
    path: dict[str, str]
    query: dict[str, Any]
    body: Any

    @property
    def records(self) -> Records:
        """The records repository (503 when the gateway runs without one)."""
        if self.services.records is None:
            raise ApiError(503, "activation records are not available")
        return self.services.records

    async def audit(self, action: str, target: str | None, detail: dict[str, Any]) -> None:
        """Write one audit-log entry as the caller."""
        await self.records.audit(self.identity, action, target, detail)


ContextHandler = Callable[[Context], Awaitable[web.StreamResponse]]


@dataclass(frozen=True)
class Route:
    """One API operation: router entry and OpenAPI operation at once."""

    method: str
    path: str
    name: str
    summary: str
    handler: ContextHandler
    role: Role | None
    """Least role needed (None: no token needed)."""
    query: dict[str, Schema] = field(default_factory=dict)
    body: Schema | None = None
    responses: dict[int, tuple[str, Schema | None]] = field(default_factory=dict)
    description: str = ""
    audited: bool = False


#: Longest field name an error echoes (a key of ``outcomes`` may be anything the body holds).
_MAX_FIELD = 120


async def _call(function: Callable[..., Any] | None, what: str, *args: Any, missing: str | None = None) -> Any:
    """Call a service function (plain or async) and map its errors.

    :class:`FieldError` names ``body.<argument>``; ``KeyError`` is a 404, naming ``missing`` when the
    route knows which field named the missing thing; ``ValueError`` is a 400.
    """
    if function is None:
        raise ApiError(503, f"{what} is not available in this gateway")
    try:
        result = function(*args)
        if inspect.isawaitable(result):
            result = await result
    except FieldError as exc:
        raise field_error(exc.status, f"body.{exc.argument}"[:_MAX_FIELD], exc.problem) from None
    except KeyError as exc:
        message = str(exc.args[0]) if exc.args else f"{what}: not found"
        raise (field_error(404, missing, message) if missing else ApiError(404, message)) from None
    except ValueError as exc:
        raise ApiError(400, str(exc)) from None
    return result


def _iso(value: datetime | None) -> str | None:
    return value.isoformat() if value is not None else None


def activation_json(row: ActivationRow | Any, policy: Any = None) -> dict[str, Any]:
    """The API view of an activation (an ORM row or a Core row with the same columns)."""
    doc = {
        "id": row.id, "help_point": row.help_point, "started_at": _iso(row.started_at),
        "ended_at": _iso(row.ended_at), "outcome": row.outcome, "answered_by": row.answered_by,
        "answered_room": row.answered_room, "ended_by": row.ended_by, "duration": row.duration,
        "talk_time": row.talk_time, "dialplan": row.dialplan, "dialplan_version": row.dialplan_version,
        "silent": bool(row.silent), "classification": row.classification, "note": row.note,
        "linked_to": row.linked_to, "hold": bool(row.hold), "camera_url": row.camera_url,
        "location": row.location, "purged_at": _iso(row.purged_at),
    }
    if policy is not None:
        doc["retention_until"] = None if row.purged_at else _iso(
            retention_until(row.started_at, row.classification, row.outcome, bool(row.hold), policy))
    return doc


def _recording_json(row: RecordingRow) -> dict[str, Any]:
    return {"id": row.id, "duration": row.duration, "sha256": row.sha256, "size": row.size,
            "created_at": _iso(row.created_at), "retention_until": _iso(row.retention_until),
            "deleted_at": _iso(row.deleted_at),
            "download": f"/api/activations/{row.activation_id}/recording?recording_id={row.id}"}


def _audit_json(row: AuditRow) -> dict[str, Any]:
    return {"id": row.id, "at": _iso(row.at), "actor": row.actor, "role": row.role, "action": row.action,
            "target": row.target, "detail": row.detail}


def _id(ctx: Context, what: str = "activation") -> str:
    value = ctx.path["id"]
    if len(value) > MAX_ID:
        raise not_found(what)
    return value


# -- handlers --------------------------------------------------------------------------------------


async def list_activations(ctx: Context) -> web.Response:
    """GET /api/activations."""
    q = ctx.query
    where = ActivationFilter(help_point=q.get("help_point"), room=q.get("room"), outcome=q.get("outcome"),
                             classification=q.get("classification"), since=q.get("from"), until=q.get("to"))
    try:
        rows, cursor = await ctx.records.list_activations(where, limit=q.get("limit", 50), cursor=q.get("cursor"))
    except ValueError as exc:
        raise bad_input("query.cursor", str(exc)) from None
    policy = ctx.records.retention
    return web.json_response({"items": [activation_json(r, policy) for r in rows], "next_cursor": cursor})


async def get_activation(ctx: Context) -> web.Response:
    """GET /api/activations/{id}."""
    detail = await ctx.records.get_activation(_id(ctx))
    if detail is None:
        raise not_found("activation")
    doc = activation_json(detail.activation, ctx.records.retention)
    doc["timeline"] = [{"t": e.t, "event": e.event, **(e.data or {})} for e in detail.events]
    doc["recordings"] = [_recording_json(r) for r in detail.recordings]
    doc["repeats"] = detail.linked
    return web.json_response(doc)


async def classify(ctx: Context) -> web.Response:
    """POST /api/activations/{id}/classification."""
    row = await ctx.records.classify(_id(ctx), ctx.body["classification"], ctx.body.get("note"),
                                     actor=ctx.identity)
    if row is None:
        raise not_found("activation")
    return web.json_response(activation_json(row, ctx.records.retention))


async def set_hold(ctx: Context) -> web.Response:
    """POST /api/activations/{id}/hold."""
    row = await ctx.records.set_hold(_id(ctx), ctx.body["hold"], actor=ctx.identity)
    if row is None:
        raise not_found("activation")
    return web.json_response(activation_json(row, ctx.records.retention))


async def download_recording(ctx: Context) -> web.StreamResponse:
    """GET /api/activations/{id}/recording: streamed, SHA-256 checked on the way out, audited."""
    activation_id = _id(ctx)
    recording = await ctx.records.get_recording(activation_id, ctx.query.get("recording_id"))
    if recording is None:
        await ctx.audit("recording.download", activation_id, {"result": "not-found"})
        raise not_found("recording", "query.recording_id" if "recording_id" in ctx.query else "path.id")
    base = {"recording_id": recording.id, "sha256": recording.sha256, "size": recording.size}
    if recording.deleted_at is not None:
        await ctx.audit("recording.download", activation_id, {**base, "result": "deleted"})
        raise ApiError(410, "recording deleted by the retention policy", {"deleted_at": _iso(recording.deleted_at)})
    try:
        fh = open(recording.path, "rb")  # closed in the finally below
    except OSError as exc:
        await _integrity_failure(ctx, activation_id, base, f"file unreadable: {exc.strerror}")
        raise ApiError(409, "recording file is missing or unreadable", {"recording_id": recording.id}) from None
    try:
        size = _fstat_size(fh)
        if size != recording.size:
            await _integrity_failure(ctx, activation_id, base, f"size {size}, sealed {recording.size}")
            raise ApiError(409, "recording file does not match its seal (size)", {"recording_id": recording.id})
        await ctx.audit("recording.download", activation_id, {**base, "result": "streaming"})
        return await _stream(ctx, fh, recording, activation_id, base)
    finally:
        fh.close()


def _fstat_size(fh: Any) -> int:
    return os.fstat(fh.fileno()).st_size


async def _integrity_failure(ctx: Context, activation_id: str, base: dict[str, Any], problem: str) -> None:
    metrics.RECORDING_INTEGRITY_FAILURES.inc()
    log.error("recording %s of activation %s fails its seal: %s (download refused)", base["recording_id"],
              activation_id, problem)
    await ctx.audit("recording.integrity_failure", activation_id, {**base, "problem": problem})


async def _stream(ctx: Context, fh: Any, recording: RecordingRow, activation_id: str,
                  base: dict[str, Any]) -> web.StreamResponse:
    """Send the file holding back its last chunk until the whole file hashed to the seal.

    On a mismatch the connection is cut before the last chunk, so the client never receives a
    complete body (Content-Length is not reached): a tampered file is never delivered silently.
    """
    loop = asyncio.get_running_loop()
    sealed = bytes.fromhex(recording.sha256) if len(recording.sha256) == 64 else b""
    response = web.StreamResponse(headers={
        "Content-Type": "audio/wav",
        "Content-Length": str(recording.size),
        "Content-Disposition": f'attachment; filename="{activation_id}-{recording.id}.wav"',
        "Repr-Digest": f"sha-256=:{b64encode(sealed).decode()}:",
        "X-Recording-SHA256": recording.sha256,
        "Cache-Control": "no-store",
    })
    await response.prepare(ctx.request)
    digest = hashlib.sha256()
    held = b""
    while chunk := await loop.run_in_executor(None, fh.read, _CHUNK):
        digest.update(chunk)
        if held:
            await response.write(held)
        held = chunk
    if digest.hexdigest() != recording.sha256:
        await _integrity_failure(ctx, activation_id, base, f"sha256 {digest.hexdigest()} while streaming")
        response.force_close()
        if ctx.request.transport is not None:
            ctx.request.transport.abort()
        return response
    await response.write(held)
    await response.write_eof()
    return response


async def play_warning(ctx: Context) -> web.Response:
    """POST /api/calls/{activation_id}/warning."""
    activation_id = ctx.path["activation_id"]
    warning = ctx.body["warning"]
    try:
        played = len(activation_id) <= MAX_ID and bool(
            await _call(ctx.services.play_warning, "playing warnings", activation_id, warning))
    except ApiError as exc:  # refused by the call layer (e.g. busy): an attempt is audited all the same
        await ctx.audit("call.warning", activation_id[:MAX_ID],
                        {"warning": warning, "played": False, "error": exc.message})
        raise
    await ctx.audit("call.warning", activation_id[:MAX_ID], {"warning": warning, "played": played})
    if not played:
        raise field_error(404, "path.activation_id", "no live call with this activation id")
    return web.json_response({"activation_id": activation_id, "warning": warning, "playing": True})


async def start_talkdown(ctx: Context) -> web.Response:
    """POST /api/talkdown."""
    body = ctx.body
    times = body.get("times", 1)
    try:
        activation_id = await _call(ctx.services.start_talkdown, "talk-down", body["help_point"],
                                    body["warning"], times, missing="body.help_point")
    except ApiError as exc:  # refused (unknown help point, no free RTP port, ...): the attempt is audited too
        await ctx.audit("talkdown.start", body["help_point"],
                        {"warning": body["warning"], "times": times, "started": False, "error": exc.message})
        raise
    await ctx.audit("talkdown.start", body["help_point"],
                    {"warning": body["warning"], "times": times, "started": True, "activation_id": activation_id})
    return web.json_response({"activation_id": activation_id, "help_point": body["help_point"],
                              "warning": body["warning"], "times": times}, status=202)


async def help_points(ctx: Context) -> web.Response:
    """GET /api/help-points."""
    if ctx.services.help_point_status is not None:
        points = await _call(ctx.services.help_point_status, "help-point status")
    else:
        points = [{"id": hp.id, "name": hp.name, "state": "unknown", "reason": "no liveness monitor",
                   "active": hp.active} for hp in await ctx.records.list_help_points()]
    return web.json_response({"help_points": points})


async def check_dialplans(ctx: Context) -> web.Response:
    """POST /api/dialplans/check."""
    return web.json_response(await _call(ctx.services.check_dialplans, "dialplan check", ctx.body.get("text")))


async def simulate_dialplan(ctx: Context) -> web.Response:
    """POST /api/dialplans/simulate."""
    body = ctx.body
    at = body["at"].isoformat() if isinstance(body.get("at"), datetime) else None
    result = await _call(ctx.services.simulate_dialplan, "dialplan simulation", body["help_point"], at,
                         dict(body.get("outcomes") or {}), missing="body.help_point")
    return web.json_response(result)


async def reload_dialplans(ctx: Context) -> web.Response:
    """POST /api/dialplans/reload (audited)."""
    result = await _call(ctx.services.reload_dialplans, "dialplan reload")
    applied = bool(result.get("applied"))
    await ctx.audit("dialplan.reload", None, {"applied": applied, "version": result.get("version")})
    if not applied:
        raise ApiError(409, "dialplans rejected; the version in force is kept", result)
    return web.json_response(result)


async def list_audit(ctx: Context) -> web.Response:
    """GET /api/audit."""
    q = ctx.query
    try:
        rows, cursor = await ctx.records.list_audit(
            actor=q.get("actor"), action=q.get("action"), target=q.get("target"), since=q.get("from"),
            until=q.get("to"), limit=q.get("limit", 100), cursor=q.get("cursor"))
    except ValueError as exc:
        raise bad_input("query.cursor", str(exc)) from None
    return web.json_response({"items": [_audit_json(r) for r in rows], "next_cursor": cursor})


# -- the table -------------------------------------------------------------------------------------

_ID = {"type": "string", "minLength": 1, "maxLength": 200}
_TIME = {"type": "string", "format": "date-time"}
_CURSOR = {"type": "string", "minLength": 1, "maxLength": 400, "description": "next_cursor of the previous page"}
_WARNING = {"type": "integer", "enum": [1, 2], "description": "which recorded warning (prompt warning-1/2)"}


def _ref(name: str) -> Schema:
    return {"$ref": f"#/components/schemas/{name}"}


ROUTES: tuple[Route, ...] = (
    Route("GET", "/api/activations", "list_activations", "List activations, newest first", list_activations,
          Role.OPERATOR,
          query={"help_point": _ID, "room": {**_ID, "description": "the room that answered"},
                 "outcome": {"type": "string", "enum": list(OUTCOMES)},
                 "classification": {"type": "string", "enum": [*CLASSIFICATIONS, UNCLASSIFIED]},
                 "from": {**_TIME, "description": "started at or after"},
                 "to": {**_TIME, "description": "started before"},
                 "limit": {"type": "integer", "minimum": 1, "maximum": 500, "default": 50},
                 "cursor": _CURSOR},
          responses={200: ("a page of activations", _ref("ActivationPage"))}),
    Route("GET", "/api/activations/{id}", "get_activation", "One activation with timeline and recordings",
          get_activation, Role.OPERATOR, responses={200: ("the activation", _ref("ActivationDetail"))}),
    Route("POST", "/api/activations/{id}/classification", "classify_activation",
          "Classify an activation (triage)", classify, Role.OPERATOR, audited=True,
          body={"type": "object", "additionalProperties": False, "required": ["classification"],
                "properties": {"classification": {"type": "string", "enum": list(CLASSIFICATIONS)},
                               "note": {"type": ["string", "null"], "maxLength": 4000}}},
          responses={200: ("the classified activation", _ref("Activation"))}),
    Route("POST", "/api/activations/{id}/hold", "hold_activation", "Place or lift a retention hold", set_hold,
          Role.AUDITOR, audited=True,
          body={"type": "object", "additionalProperties": False, "required": ["hold"],
                "properties": {"hold": {"type": "boolean"}}},
          responses={200: ("the activation", _ref("Activation"))}),
    Route("GET", "/api/activations/{id}/recording", "download_recording", "Download a recording (audited)",
          download_recording, Role.AUDITOR, audited=True,
          query={"recording_id": {"type": "integer", "minimum": 1, "maximum": 2**31 - 1,
                                  "description": "which recording (default: the newest)"}},
          description="Streamed as audio/wav with `Repr-Digest` and `X-Recording-SHA256`. The file is hashed "
                      "while it is sent and its last chunk is held back until the hash matches the seal: on a "
                      "mismatch the connection is cut short of Content-Length (and the failure audited), so a "
                      "tampered file is never delivered complete. 409 when the file is missing or its size "
                      "differs from the seal, 410 after retention deleted it.",
          responses={200: ("the WAV file", {"type": "string", "contentMediaType": "audio/wav"}),
                     409: ("file missing or not matching its seal", _ref("Error")),
                     410: ("deleted by retention", _ref("Error"))}),
    Route("POST", "/api/calls/{activation_id}/warning", "play_warning", "Play a recorded warning into a live call",
          play_warning, Role.OPERATOR, audited=True,
          body={"type": "object", "additionalProperties": False, "required": ["warning"],
                "properties": {"warning": _WARNING}},
          responses={200: ("the warning is playing", _ref("WarningPlaying"))}),
    Route("POST", "/api/talkdown", "start_talkdown", "Call a help point and play a warning (talk-down)",
          start_talkdown, Role.OPERATOR, audited=True,
          body={"type": "object", "additionalProperties": False, "required": ["help_point", "warning"],
                "properties": {"help_point": _ID, "warning": _WARNING,
                               "times": {"type": "integer", "minimum": 1, "maximum": 10, "default": 1}}},
          responses={202: ("the talk-down call started", _ref("Talkdown")),
                     404: ("unknown help point (`detail.field` body.help_point)", _ref("Error")),
                     409: ("the help point cannot be called now: not registered, no static_uri "
                           "(`detail.field` body.help_point), or busy", _ref("Error"))}),
    Route("GET", "/api/help-points", "list_help_points", "Help points and their liveness", help_points,
          Role.OPERATOR, responses={200: ("every help point", _ref("HelpPointList"))}),
    Route("POST", "/api/dialplans/check", "check_dialplans", "Validate a dialplan (or the files in force)",
          check_dialplans, Role.OPS,
          body={"type": "object", "additionalProperties": False,
                "properties": {"text": {"type": "string", "maxLength": 512 * 1024,
                                        "description": "one dialplan as YAML; omitted: the files on disk"}}},
          responses={200: ("the verdict (ok false lists the problems)", _ref("DialplanResult"))}),
    Route("POST", "/api/dialplans/simulate", "simulate_dialplan", "Simulate a call through the dialplans",
          simulate_dialplan, Role.OPS,
          body={"type": "object", "additionalProperties": False, "required": ["help_point"],
                "properties": {"help_point": _ID, "at": {**_TIME, "description": "wall time (default: now)"},
                               "outcomes": {"type": "object", "description": "room or position -> script "
                                            "(answer, busy@5, timeout,answer...)",
                                            "additionalProperties": {"type": "string", "maxLength": 200}}}},
          description="Every bad input names its field: `body.at` (no zone, or a year outside 2-9998), "
                      "`body.outcomes.<key>` (not a room, position or dialled number of the dialplans, or a "
                      "script that does not parse), `body.help_point` (404 when no dialplan serves it).",
          responses={200: ("the simulated steps", _ref("DialplanResult")),
                     404: ("no dialplan serves the help point (`detail.field` body.help_point)", _ref("Error"))}),
    Route("POST", "/api/dialplans/reload", "reload_dialplans", "Validate and apply the dialplan files",
          reload_dialplans, Role.OPS, audited=True,
          responses={200: ("applied", _ref("DialplanResult")),
                     409: ("rejected; the version in force is kept", _ref("Error"))}),
    Route("GET", "/api/audit", "list_audit", "The audit log, newest first", list_audit, Role.AUDITOR,
          query={"actor": _ID, "action": _ID, "target": {"type": "string", "minLength": 1, "maxLength": 255},
                 "from": _TIME, "to": _TIME,
                 "limit": {"type": "integer", "minimum": 1, "maximum": 1000, "default": 100},
                 "cursor": _CURSOR},
          responses={200: ("a page of the audit log", _ref("AuditPage"))}),
)


# -- binding a route to aiohttp ---------------------------------------------------------------------


async def identify(request: web.Request, services: Services) -> TokenInfo:
    """The caller of an authenticated route, from ``Authorization: Bearer <token>``."""
    header = request.headers.get("Authorization", "")
    scheme, _, token = header.partition(" ")
    if not header:
        raise ApiError(401, "authentication required: send Authorization: Bearer <token>",
                       headers={"WWW-Authenticate": 'Bearer realm="gateway"'})
    token = token.strip()
    if scheme.lower() != "bearer" or not token or len(token) > 200:
        raise ApiError(401, "malformed Authorization header: expected Bearer <token>",
                       headers={"WWW-Authenticate": 'Bearer realm="gateway", error="invalid_request"'})
    if services.records is None:
        raise ApiError(503, "activation records are not available")
    identity = await services.records.authenticate(token)
    if identity is None:
        log.warning("API request with an unknown or revoked token from %s", request.remote)
        raise ApiError(401, "unknown or revoked token",
                       headers={"WWW-Authenticate": 'Bearer realm="gateway", error="invalid_token"'})
    return identity


def bind(route: Route) -> Callable[[web.Request], Awaitable[web.StreamResponse]]:
    """The aiohttp handler of ``route``: authenticate, authorise, check input, run."""

    async def handler(request: web.Request) -> web.StreamResponse:
        services = request.app[SERVICES]
        identity = TokenInfo("anonymous", "none")
        if route.role is not None:
            identity = await identify(request, services)
        path = {}
        for name, value in request.match_info.items():
            check_text(value, f"path.{name}")
            path[name] = value
        if route.role is not None and not role_allows(identity.role, route.role):
            if route.name == "download_recording" and services.records is not None:
                await services.records.audit(identity, "recording.denied", path.get("id"),
                                             {"needed": route.role.value})
            raise ApiError(403, f"role {identity.role} may not {route.summary.lower()} "
                           f"(needs {route.role.value} or above)")
        query: dict[str, Any] = {}
        for name, value in request.query.items():
            if name not in route.query:
                allowed = ", ".join(route.query) or "none"
                raise bad_input(f"query.{name}"[:80], f"unknown parameter (allowed: {allowed})")
            if name in query:
                raise bad_input(f"query.{name}", "given more than once")
            query[name] = check_query(value, route.query[name], f"query.{name}")
        body = await read_json(request, route.body)
        return await route.handler(Context(request, services, identity, path, query, body))

    return handler

