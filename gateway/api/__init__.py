"""The HTTP API: ``create_app(Services(...))`` serves /health, /metrics and /api (see docs/api.md)."""

from .app import HEALTH, SERVICES, create_app
from .errors import ApiError, FieldError
from .services import Services

__all__ = ["HEALTH", "SERVICES", "ApiError", "FieldError", "Services", "create_app"]
