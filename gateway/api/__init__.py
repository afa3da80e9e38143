"""The HTTP API: ``create_app(Services(...))`` serves /health, /metrics and /api (see docs/api.md)."""

from .app import HEALTH, SERVICES, create_app
from .errors import ApiError
from .services import Services

__all__ = ["HEALTH", "SERVICES", "ApiError", "Services", "create_app"]
