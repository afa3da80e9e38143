"""What the HTTP application serves: the :class:`Services` the composition root hands to ``create_app``.

Every field but ``health`` is optional so tests build the app with only the fakes they need; a
route whose service is missing answers 503.  Functions may be plain or ``async``.  A function may
raise :class:`gateway.api.errors.ApiError` to choose the status, or
:class:`gateway.api.errors.FieldError` to name the argument that is wrong (answered with
``detail.field`` ``body.<argument>``); ``KeyError`` means 404 (naming ``body.help_point`` on the
routes that take one) and ``ValueError`` 400 (its message is shown to the caller).
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import Any

from gateway.store.records import Records

JsonDoc = dict[str, Any]


@dataclass(frozen=True)
class Services:
    """Everything the HTTP API calls into."""

    health: Callable[[], JsonDoc]
    """The /health document (``{"status": "ok" | "draining", ...}``)."""
    records: Records | None = None
    """Activation records, audit log and API tokens; without it every /api route but the OpenAPI document is 503."""
    play_warning: Callable[[str, int], bool | Awaitable[bool]] | None = None
    """``play_warning(activation_id, n)``: play warning ``n`` (1 or 2) into a live call; False if it is not live."""
    start_talkdown: Callable[[str, int, int], str | Awaitable[str]] | None = None
    """``start_talkdown(help_point, warning, times) -> activation_id``; KeyError (or a 404 FieldError) for an
    unknown help point."""
    help_point_status: Callable[[], list[JsonDoc] | Awaitable[list[JsonDoc]]] | None = None
    """Each help point's liveness: ``{"id", "state": "up"|"down"|"unknown", "reason", "since", ...}``."""
    check_dialplans: Callable[[str | None], JsonDoc | Awaitable[JsonDoc]] | None = None
    """``check_dialplans(text)``: validate ``text`` (one dialplan YAML) or, when None, the files in force
    on disk; returns ``{"ok": bool, "lines": [str, ...]}``."""
    simulate_dialplan: Callable[[str, str, dict[str, str]], JsonDoc | Awaitable[JsonDoc]] | None = None
    """``simulate_dialplan(help_point, at_iso, outcomes)`` -> ``{"ok": bool, "lines": [...]}`` (the CLI's
    ``gateway dialplan simulate``); KeyError when no dialplan serves the help point, FieldError naming
    ``at`` or ``outcomes.<key>`` for a time or an outcome it cannot use."""
    reload_dialplans: Callable[[], JsonDoc | Awaitable[JsonDoc]] | None = None
    """Validate and swap the dialplans -> ``{"applied": bool, "version": int | None, "lines": [...]}``;
    not applied answers 409 (the old version stays in force)."""
