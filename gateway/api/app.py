"""The aiohttp application: health, metrics (the records issue adds /api).

``create_app(services)`` takes everything it serves as explicit arguments held
in ``web.AppKey`` slots, so tests build it with fakes.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from aiohttp import web
from prometheus_client import CONTENT_TYPE_LATEST, generate_latest

from gateway import metrics

#: A function returning the health document (``{"status": "ok" | "draining", ...}``).
HEALTH: web.AppKey[Callable[[], dict[str, Any]]] = web.AppKey("health", Callable[[], dict[str, Any]])


async def health(request: web.Request) -> web.Response:
    """200 while serving, 503 while draining: load balancers stop sending new calls."""
    doc = request.app[HEALTH]()
    return web.json_response(doc, status=200 if doc.get("status") == "ok" else 503)


async def metrics_endpoint(request: web.Request) -> web.Response:
    """Prometheus text exposition of :data:`gateway.metrics.REGISTRY`."""
    body = generate_latest(metrics.REGISTRY)
    return web.Response(body=body, headers={"Content-Type": CONTENT_TYPE_LATEST})


def create_app(health_doc: Callable[[], dict[str, Any]]) -> web.Application:
    """Build the HTTP application."""
    app = web.Application()
    app[HEALTH] = health_doc
    app.router.add_get("/health", health)
    app.router.add_get("/metrics", metrics_endpoint)
    return app
