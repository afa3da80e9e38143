"""The OpenAPI 3.1 document, generated from the route table so it cannot drift from the router."""

from __future__ import annotations

import re
from typing import Any

from gateway.records import CLASSIFICATIONS, OUTCOMES

from .routes import ROUTES, Route
from .schema import Schema

_NULLABLE_STR = {"type": ["string", "null"]}
_NULLABLE_TIME = {"type": ["string", "null"], "format": "date-time"}
_NULLABLE_NUM = {"type": ["number", "null"]}

_ACTIVATION_PROPS: dict[str, Schema] = {
    "id": {"type": "string"},
    "help_point": {"type": "string"},
    "started_at": {"type": "string", "format": "date-time"},
    "ended_at": _NULLABLE_TIME,
    "outcome": {"type": "string", "enum": list(OUTCOMES)},
    "answered_by": _NULLABLE_STR,
    "answered_room": _NULLABLE_STR,
    "ended_by": _NULLABLE_STR,
    "duration": _NULLABLE_NUM,
    "talk_time": _NULLABLE_NUM,
    "dialplan": _NULLABLE_STR,
    "dialplan_version": {"type": ["integer", "null"]},
    "silent": {"type": "boolean"},
    "classification": {"type": ["string", "null"], "enum": [*CLASSIFICATIONS, None]},
    "note": _NULLABLE_STR,
    "linked_to": {**_NULLABLE_STR, "description": "first activation of this repeat-press chain"},
    "hold": {"type": "boolean"},
    "camera_url": _NULLABLE_STR,
    "location": _NULLABLE_STR,
    "purged_at": {**_NULLABLE_TIME, "description": "when retention deleted recordings and personal data"},
    "retention_until": {**_NULLABLE_TIME, "description": "when retention will delete them (null: kept)"},
}

COMPONENTS: dict[str, Schema] = {
    "Error": {"type": "object", "required": ["error", "detail"], "properties": {
        "error": {"type": "string"},
        "detail": {"description": "an object or null; for an error about the request's input (every 400, and a "
                                  "404 or 409 about a body field) a FieldProblem",
                   "anyOf": [{"$ref": "#/components/schemas/FieldProblem"}, {}]}}},
    "FieldProblem": {"type": "object", "required": ["field", "problem"], "properties": {
        "field": {"type": "string", "description": "body.<name> (a key of an object after a dot), query.<name> "
                                                   "or path.<name>, e.g. body.outcomes.council-cctv"},
        "problem": {"type": "string", "description": "what is wrong with it"}}},
    "Activation": {"type": "object", "required": list(_ACTIVATION_PROPS), "properties": _ACTIVATION_PROPS},
    "ActivationDetail": {"allOf": [{"$ref": "#/components/schemas/Activation"}, {
        "type": "object", "required": ["timeline", "recordings", "repeats"],
        "properties": {
            "timeline": {"type": "array", "items": {"type": "object", "required": ["t", "event"], "properties": {
                "t": {"type": "number", "description": "seconds after the INVITE"}, "event": {"type": "string"}}}},
            "recordings": {"type": "array", "items": {"$ref": "#/components/schemas/Recording"}},
            "repeats": {"type": "array", "items": {"type": "string"},
                        "description": "repeat presses linked to this activation"}}}]},
    "Recording": {"type": "object", "properties": {
        "id": {"type": "integer"}, "duration": {"type": "number"}, "sha256": {"type": "string"},
        "size": {"type": "integer"}, "created_at": {"type": "string", "format": "date-time"},
        "retention_until": _NULLABLE_TIME, "deleted_at": _NULLABLE_TIME, "download": {"type": "string"}}},
    "ActivationPage": {"type": "object", "required": ["items", "next_cursor"], "properties": {
        "items": {"type": "array", "items": {"$ref": "#/components/schemas/Activation"}},
        "next_cursor": _NULLABLE_STR}},
    "AuditEntry": {"type": "object", "properties": {
        "id": {"type": "integer"}, "at": {"type": "string", "format": "date-time"}, "actor": {"type": "string"},
        "role": {"type": "string"}, "action": {"type": "string"}, "target": _NULLABLE_STR,
        "detail": {"type": "object"}}},
    "AuditPage": {"type": "object", "required": ["items", "next_cursor"], "properties": {
        "items": {"type": "array", "items": {"$ref": "#/components/schemas/AuditEntry"}},
        "next_cursor": _NULLABLE_STR}},
    "WarningPlaying": {"type": "object", "properties": {
        "activation_id": {"type": "string"}, "warning": {"type": "integer"}, "playing": {"type": "boolean"}}},
    "Talkdown": {"type": "object", "properties": {
        "activation_id": {"type": "string"}, "help_point": {"type": "string"}, "warning": {"type": "integer"},
        "times": {"type": "integer"}}},
    "HelpPointList": {"type": "object", "required": ["help_points"], "properties": {
        "help_points": {"type": "array", "items": {"type": "object", "required": ["id", "state"], "properties": {
            "id": {"type": "string"}, "state": {"type": "string", "enum": ["up", "down", "unknown"]},
            "reason": _NULLABLE_STR}}}}},
    "DialplanResult": {"type": "object", "properties": {
        "ok": {"type": "boolean"}, "applied": {"type": "boolean"}, "version": {"type": ["integer", "null"]},
        "lines": {"type": "array", "items": {"type": "string"}}}},
}

_ERRORS = {
    400: "invalid input: `detail.field` names it, `detail.problem` says why",
    401: "missing, malformed, unknown or revoked token",
    403: "the token's role may not do this",
    404: "no such thing",
    405: "method not allowed",
    413: "body larger than 1 MiB",
    503: "a service or the database is unavailable",
}


def _operation(route: Route) -> dict[str, Any]:
    op: dict[str, Any] = {"operationId": route.name, "summary": route.summary}
    roles = f"Needs role **{route.role.value}** or above." if route.role else "No token needed."
    op["description"] = " ".join(p for p in (route.description, roles,
                                            "Audited." if route.audited else "") if p)
    if route.role is not None:
        op["security"] = [{"bearer": []}]
        op["x-required-role"] = route.role.value
    params = [{"name": name, "in": "path", "required": True, "schema": {"type": "string"}}
              for name in re.findall(r"{(\w+)}", route.path)]
    params += [{"name": name, "in": "query", "required": False, "schema": schema}
               for name, schema in route.query.items()]
    if params:
        op["parameters"] = params
    if route.body is not None:
        op["requestBody"] = {"required": bool(route.body.get("required")),
                             "content": {"application/json": {"schema": route.body}}}
    responses: dict[str, Any] = {}
    for status, (text, schema) in route.responses.items():
        media = "audio/wav" if schema and schema.get("contentMediaType") else "application/json"
        responses[str(status)] = {"description": text, "content": {media: {"schema": schema or {}}}}
    errors = dict(_ERRORS)
    if route.role is None:
        errors.pop(401)
        errors.pop(403)
    if route.body is None:
        errors.pop(413)
    for status, text in errors.items():
        responses.setdefault(str(status), {"description": text, "content": {"application/json": {
            "schema": {"$ref": "#/components/schemas/Error"}}}})
    op["responses"] = responses
    return op


_PUBLIC: dict[str, dict[str, Any]] = {
    "/health": {"get": {"operationId": "health", "summary": "Liveness: 200 serving, 503 draining",
                        "responses": {"200": {"description": "serving", "content": {"application/json": {
                            "schema": {"type": "object"}}}},
                                      "503": {"description": "draining", "content": {"application/json": {
                                          "schema": {"type": "object"}}}}}}},
    "/metrics": {"get": {"operationId": "metrics", "summary": "Prometheus text exposition",
                         "responses": {"200": {"description": "metrics", "content": {"text/plain": {
                             "schema": {"type": "string"}}}}}}},
    "/api/openapi.json": {"get": {"operationId": "openapi", "summary": "This document",
                                  "responses": {"200": {"description": "OpenAPI 3.1", "content": {
                                      "application/json": {"schema": {"type": "object"}}}}}}},
}


def openapi_document(routes: tuple[Route, ...] = ROUTES) -> dict[str, Any]:
    """The OpenAPI 3.1 document of every route the application serves."""
    paths: dict[str, dict[str, Any]] = {path: dict(ops) for path, ops in _PUBLIC.items()}
    for route in routes:
        paths.setdefault(route.path, {})[route.method.lower()] = _operation(route)
    return {
        "openapi": "3.1.0",
        "info": {"title": "Help-point gateway API", "version": "1",
                 "description": "Activation records, triage, recordings, live-call actions, help-point status and "
                                "dialplans. Errors are JSON `{\"error\", \"detail\"}`. See docs/api.md."},
        "paths": paths,
        "components": {"schemas": COMPONENTS,
                       "securitySchemes": {"bearer": {"type": "http", "scheme": "bearer",
                                                      "description": "a token from `gateway tokens create`"}}},
    }
