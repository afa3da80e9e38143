"""API roles and what each may do.

The hierarchy is a partial order, not a line::

            admin
           /     \\
         ops    auditor
           \\     /
          operator

* ``operator`` - control-room staff: read activations and help-point status, classify, play
  warnings, start talk-downs.
* ``ops`` - telecom operations: everything an operator may, plus dialplan check/simulate/reload.
* ``auditor`` - community-safety managers and auditors: everything an operator may, plus
  recordings, retention holds and the audit log.
* ``admin`` - everything.

``ops`` and ``auditor`` are incomparable: ops cannot download evidence, auditors cannot change
routing.  A route names the *least* role it needs; :func:`role_allows` answers whether a token's
role reaches it.
"""

from __future__ import annotations

import enum


class Role(enum.StrEnum):
    """A token's role."""

    OPERATOR = "operator"
    OPS = "ops"
    AUDITOR = "auditor"
    ADMIN = "admin"


ROLES: tuple[str, ...] = tuple(role.value for role in Role)

#: Each role and every role it includes (itself and everything below it).
_INCLUDES: dict[Role, frozenset[Role]] = {
    Role.OPERATOR: frozenset({Role.OPERATOR}),
    Role.OPS: frozenset({Role.OPS, Role.OPERATOR}),
    Role.AUDITOR: frozenset({Role.AUDITOR, Role.OPERATOR}),
    Role.ADMIN: frozenset(Role),
}


def role_allows(held: Role | str, required: Role | str) -> bool:
    """True if a token holding ``held`` may use a route that requires ``required``."""
    try:
        return Role(required) in _INCLUDES[Role(held)]
    except ValueError:
        return False
