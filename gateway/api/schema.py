"""Request checks driven by the same JSON Schemas the OpenAPI document publishes.

Only the subset the API uses: ``type`` (object, string, integer, number, boolean, array),
``enum``, ``properties``, ``required``, ``additionalProperties`` (false or a schema), string
``minLength``/``maxLength``/``format: date-time``, numeric ``minimum``/``maximum``.  A failure is a
400 naming the field, e.g. ``invalid body.warning: must be one of 1, 2 (got 3)``.
"""

from __future__ import annotations

import json
from datetime import UTC, datetime
from typing import Any

from .errors import bad_input

Schema = dict[str, Any]

#: Largest JSON body the API reads (a dialplan file under check is the biggest thing posted).
MAX_BODY = 1 << 20


def parse_datetime(text: str) -> datetime:
    """An ISO 8601 date-time with a zone (``Z`` or an offset); ``ValueError`` otherwise."""
    value = datetime.fromisoformat(text)
    if value.tzinfo is None:
        raise ValueError("needs a time zone, e.g. 2026-11-01T12:00:00Z")
    try:
        return value.astimezone(UTC)
    except OverflowError:
        raise ValueError("out of range") from None


def check(value: Any, schema: Schema, field: str) -> Any:
    """``value`` if it matches ``schema``; raise a 400 naming ``field`` otherwise."""
    kind = schema.get("type")
    if kind == "object":
        if not isinstance(value, dict):
            raise bad_input(field, f"must be an object (got {_kind(value)})")
        props: dict[str, Schema] = schema.get("properties", {})
        for name in schema.get("required", ()):
            if name not in value:
                raise bad_input(f"{field}.{name}", "is required")
        extra = schema.get("additionalProperties", True)
        out = {}
        for name, item in value.items():
            check_text(name, f"{field}.{name[:40]}")
            if name in props:
                out[name] = check(item, props[name], f"{field}.{name}")
            elif extra is False:
                raise bad_input(f"{field}.{name}", f"unknown field (allowed: {', '.join(props) or 'none'})")
            elif isinstance(extra, dict):
                out[name] = check(item, extra, f"{field}.{name}")
            else:
                out[name] = item
        return out
    if kind == "array":
        if not isinstance(value, list):
            raise bad_input(field, f"must be an array (got {_kind(value)})")
        return [check(item, schema.get("items", {}), f"{field}[{i}]") for i, item in enumerate(value)]
    if isinstance(kind, list):  # ["string", "null"]
        if value is None and "null" in kind:
            return None
        kind = next(k for k in kind if k != "null")
    if kind == "string":
        if not isinstance(value, str):
            raise bad_input(field, f"must be a string (got {_kind(value)})")
        check_text(value, field)
        if len(value) < schema.get("minLength", 0):
            raise bad_input(field, "must not be empty" if schema.get("minLength") == 1
                            else f"must be at least {schema['minLength']} characters")
        if "maxLength" in schema and len(value) > schema["maxLength"]:
            raise bad_input(field, f"must be at most {schema['maxLength']} characters")
        if schema.get("format") == "date-time":
            try:
                return parse_datetime(value)
            except ValueError as exc:
                raise bad_input(field, f"must be an ISO 8601 date-time with a zone ({exc})") from None
    elif kind in ("integer", "number"):
        if isinstance(value, bool) or not isinstance(value, int | float) or (
                kind == "integer" and not isinstance(value, int)):
            raise bad_input(field, f"must be an {kind} (got {_kind(value)})")
        if "minimum" in schema and value < schema["minimum"]:
            raise bad_input(field, f"must be >= {schema['minimum']} (got {value})")
        if "maximum" in schema and value > schema["maximum"]:
            raise bad_input(field, f"must be <= {schema['maximum']} (got {value})")
    elif kind == "boolean" and not isinstance(value, bool):
        raise bad_input(field, f"must be true or false (got {_kind(value)})")
    if "enum" in schema and value not in schema["enum"]:
        allowed = ", ".join(json.dumps(v) if not isinstance(v, str) else v for v in schema["enum"])
        raise bad_input(field, f"must be one of {allowed} (got {value!r})"[:300])
    return value


def check_query(raw: str, schema: Schema, field: str) -> Any:
    """A query-string value converted to the schema's type, then checked."""
    kind = schema.get("type")
    value: Any = raw
    if kind == "integer":
        try:
            value = int(raw, 10)
        except ValueError:
            raise bad_input(field, f"must be an integer (got {raw[:40]!r})") from None
    elif kind == "boolean":
        if raw not in ("true", "false"):
            raise bad_input(field, f"must be true or false (got {raw[:40]!r})")
        value = raw == "true"
    return check(value, schema, field)


def check_text(value: str, field: str) -> None:
    """Refuse what no database column can hold: NUL and lone surrogates."""
    if "\x00" in value:
        raise bad_input(field, "must not contain NUL")
    try:
        value.encode("utf-8")
    except UnicodeEncodeError:
        raise bad_input(field, "is not valid UTF-8") from None


def _kind(value: Any) -> str:
    return {dict: "an object", list: "an array", str: "a string", bool: "a boolean", type(None): "null",
            int: "a number", float: "a number"}.get(type(value), type(value).__name__)


async def read_json(request: Any, schema: Schema | None) -> Any:
    """The request's JSON body checked against ``schema`` (``{}`` when the route takes none and none, or ``{}``,
    came)."""
    raw = await request.read()  # aiohttp answers 413 past client_max_size
    if schema is None:
        # A body sent where none is read would be silently ignored (a client sure it asked for something):
        # nothing but an empty one, or an empty JSON object, is taken.
        if raw.strip() and raw.strip() != b"{}":
            raise bad_input("body", "this request takes no body (send none, or {})")
        return {}
    if not raw.strip():
        if schema.get("required"):
            raise bad_input("body", "a JSON object is required")
        raw = b"{}"
    try:
        value = json.loads(raw)
    except (ValueError, RecursionError):
        raise bad_input("body", "is not valid JSON (UTF-8)") from None
    return check(value, schema, "body")
