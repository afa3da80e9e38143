"""Registrar: digest authentication (RFC 7616/8760) and bindings (RFC 3261 §10), sans-IO.

The asyncio and store glue lives in :mod:`gateway.registrar.service`; everything exported here
is pure and driven by ``now``.
"""

from .bindings import (
    Binding,
    BindingPolicy,
    BindingRequest,
    BindingUpdate,
    ContactSpec,
    Source,
    active,
    expired,
    update_bindings,
)
from .digest import (
    Algorithm,
    AuthResult,
    DigestAuthenticator,
    DigestCredentials,
    build_challenge,
    compute_response,
    ha1,
    parse_authorization,
)
from .errors import DigestParseError, RegistrarError
from .nonces import NonceCodec, NonceCounter, NonceState
from .registrar import Decision, Ha1Credentials, RegisterOutcome, RegisterRequest, Registrar

__all__ = [
    "Algorithm",
    "AuthResult",
    "Binding",
    "BindingPolicy",
    "BindingRequest",
    "BindingUpdate",
    "ContactSpec",
    "Decision",
    "DigestAuthenticator",
    "DigestCredentials",
    "DigestParseError",
    "Ha1Credentials",
    "NonceCodec",
    "NonceCounter",
    "NonceState",
    "RegisterOutcome",
    "RegisterRequest",
    "Registrar",
    "RegistrarError",
    "Source",
    "active",
    "build_challenge",
    "compute_response",
    "expired",
    "ha1",
    "parse_authorization",
    "update_bindings",
]
