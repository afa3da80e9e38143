"""The aiohttp application: /health, /metrics and the /api routes.

``create_app(services)`` takes everything it serves as explicit arguments held in ``web.AppKey``
slots, so tests build it with fakes.  ``create_app(health_function)`` still works: it serves
/health, /metrics and an /api that answers 503 (no records).
"""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import Any

from aiohttp import web
from prometheus_client import CONTENT_TYPE_LATEST, generate_latest

from gateway import metrics

from .errors import Handler, error_middleware
from .openapi import openapi_document
from .routes import ROUTES, SERVICES, bind
from .schema import MAX_BODY
from .services import Services

__all__ = ["HEALTH", "SERVICES", "Services", "create_app"]

#: A function returning the health document (``{"status": "ok" | "draining", ...}``).
HEALTH: web.AppKey[Callable[[], dict[str, Any]]] = web.AppKey("health")
_OPENAPI: web.AppKey[dict[str, Any]] = web.AppKey("openapi", dict)


async def health(request: web.Request) -> web.Response:
    """200 while serving, 503 while draining: load balancers stop sending new calls."""
    doc = request.app[HEALTH]()
    return web.json_response(doc, status=200 if doc.get("status") == "ok" else 503)


async def metrics_endpoint(request: web.Request) -> web.Response:
    """Prometheus text exposition of :data:`gateway.metrics.REGISTRY`."""
    body = generate_latest(metrics.REGISTRY)
    return web.Response(body=body, headers={"Content-Type": CONTENT_TYPE_LATEST})


async def openapi_endpoint(request: web.Request) -> web.Response:
    """The OpenAPI 3.1 document."""
    return web.json_response(request.app[_OPENAPI])


@web.middleware
async def metrics_middleware(request: web.Request, handler: Handler) -> web.StreamResponse:
    """Time every request by route name and status class (bounded labels)."""
    started = time.perf_counter()
    response = await handler(request)
    route = request.match_info.route.name or "unmatched"
    metrics.API_REQUESTS.labels(route, f"{response.status // 100}xx").observe(time.perf_counter() - started)
    return response


def create_app(services: Services | Callable[[], dict[str, Any]]) -> web.Application:
    """Build the HTTP application from :class:`Services` (or just a health function)."""
    if not isinstance(services, Services):
        services = Services(health=services)
    app = web.Application(middlewares=[metrics_middleware, error_middleware], client_max_size=MAX_BODY)
    app[SERVICES] = services
    app[HEALTH] = services.health
    app[_OPENAPI] = openapi_document()
    app.router.add_get("/health", health, name="health")
    app.router.add_get("/metrics", metrics_endpoint, name="metrics")
    app.router.add_get("/api/openapi.json", openapi_endpoint, name="openapi")
    for route in ROUTES:
        app.router.add_route(route.method, route.path, bind(route), name=route.name)
    return app
