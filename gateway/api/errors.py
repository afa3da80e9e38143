"""API errors: one JSON shape, ``{"error": "...", "detail": ...}``, and the middleware that guarantees it.

Handlers raise :class:`ApiError` (or its helpers); the service functions the API calls may raise it
too, to choose a status, or :class:`FieldError` to name the argument that is wrong.  A bad-input error
names its field in ``detail``: ``{"field": "body.outcomes.council-cctv", "problem": "..."}``.
``KeyError`` from a service function means 404, ``ValueError`` 400.
Anything else unexpected is logged with its traceback and answered 500 in the same JSON shape,
but input alone must never get there: the tests fuzz every route to prove it.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Awaitable, Callable
from typing import Any

from aiohttp import web

from gateway.store import StoreUnavailableError

log = logging.getLogger(__name__)

Handler = Callable[[web.Request], Awaitable[web.StreamResponse]]


class ApiError(Exception):
    """An HTTP error answered as ``{"error": message, "detail": detail}``."""

    def __init__(self, status: int, message: str, detail: Any = None, *,
                 headers: dict[str, str] | None = None) -> None:
        super().__init__(message)
        self.status = status
        self.message = message
        self.detail = detail
        self.headers = headers or {}


class FieldError(ValueError):
    """What a service function raises about one of its arguments, so the API can name the field.

    ``argument`` is the parameter's name, which is the request body field's name too (``help_point``),
    with a key after a dot (``outcomes.council-cctv``).  ``status``: 400 for a value that cannot be
    used, 404 for a well-formed name of something that does not exist, 409 for something that exists
    but cannot be used now.
    """

    def __init__(self, argument: str, problem: str, status: int = 400) -> None:
        super().__init__(problem)
        self.argument = argument
        self.problem = problem
        self.status = status


def bad_input(field: str, problem: str) -> ApiError:
    """400 naming the field (``body.warning``, ``query.limit``, ``path.id``) and what is wrong."""
    return ApiError(400, f"invalid {field}: {problem}", {"field": field, "problem": problem})


def field_error(status: int, field: str, problem: str) -> ApiError:
    """``status`` with the detail of :func:`bad_input`; a 404 or 409 says just the problem in ``error``."""
    if status == 400:
        return bad_input(field, problem)
    return ApiError(status, problem, {"field": field, "problem": problem})


def not_found(what: str, field: str = "path.id") -> ApiError:
    """404 for a thing that does not exist, naming the input (``field``) that named it."""
    return field_error(404, field, f"{what} not found")


def error_response(status: int, message: str, detail: Any = None,
                   headers: dict[str, str] | None = None) -> web.Response:
    """The JSON error body every failure uses."""
    return web.json_response({"error": message, "detail": detail}, status=status, headers=headers)


@web.middleware
async def error_middleware(request: web.Request, handler: Handler) -> web.StreamResponse:
    """Turn every failure into JSON with the right status; log what is our fault."""
    try:
        return await handler(request)
    except ApiError as exc:
        return error_response(exc.status, exc.message, exc.detail, exc.headers)
    except web.HTTPException as exc:
        if exc.status < 400:
            raise
        headers = {k: v for k, v in exc.headers.items() if k in ("Allow", "WWW-Authenticate", "Retry-After")}
        return error_response(exc.status, exc.reason.lower(), None, headers)
    except StoreUnavailableError as exc:
        log.error("%s %s: database unavailable: %s", request.method, request.path, exc)
        return error_response(503, "database unavailable", None, {"Retry-After": "5"})
    except asyncio.CancelledError:
        raise
    except Exception:
        log.exception("%s %s failed", request.method, request.path)
        return error_response(500, "internal error", "the gateway logged the details")
