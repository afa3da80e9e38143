"""Pure decisions about activation records: triage vocabulary, roles, repeat-press links, retention.

No I/O, no clock, no asyncio: every function takes the time it needs as an argument.  The
shells that use these (``gateway.store.records``, ``gateway.api``) do the waiting.
"""

from .linking import Press, RepeatLinker, link_repeat
from .retention import (
    DEFAULT_RETENTION,
    PersonalData,
    RetentionCandidate,
    RetentionDecision,
    RetentionPolicy,
    decide_retention,
    retention_until,
)
from .roles import ROLES, Role, role_allows
from .triage import (
    CLASSIFICATIONS,
    DTMF_CLASSIFICATION,
    OUTCOMES,
    UNCLASSIFIED,
    classification_for_digit,
    parse_classification,
)

__all__ = [
    "CLASSIFICATIONS",
    "DEFAULT_RETENTION",
    "DTMF_CLASSIFICATION",
    "OUTCOMES",
    "ROLES",
    "UNCLASSIFIED",
    "PersonalData",
    "Press",
    "RepeatLinker",
    "RetentionCandidate",
    "RetentionDecision",
    "RetentionPolicy",
    "Role",
    "classification_for_digit",
    "decide_retention",
    "link_repeat",
    "parse_classification",
    "retention_until",
    "role_allows",
]
