"""Dialplans: which control rooms a help point's call rings, in what order, and what happens on failure.

Pure decision code (no sockets, no clocks). ``model`` is the YAML schema, ``load`` parses, validates and
versions dialplan files, ``engine`` runs one call's :class:`Plan`, ``simulate`` drives it offline for
``gateway dialplan simulate`` and ``gateway dialplan check``.
"""

from .engine import (
    Action,
    Bridge,
    CallerHungUp,
    CancelTargets,
    DialNumber,
    DigitReceived,
    Done,
    Event,
    LegAnswered,
    LegFailed,
    LegProgressed,
    Plan,
    PlayMessage,
    PlayPrompt,
    PromptFinished,
    RequireConfirm,
    RingTargets,
    timeline_to_builtins,
)
from .load import (
    DialplanSet,
    dialplan_paths,
    load_dialplan,
    load_dialplan_set,
    load_dialplans,
    parse_dialplan,
    reload,
    served_help_points,
    validate_dialplan,
)
from .model import (
    CAUSES,
    Answered,
    Cause,
    Confirmed,
    Dialplan,
    DialplanConflictError,
    DialplanError,
    DialplanLoopError,
    DialplanSyntaxError,
    DialplanValidationError,
    FailedOver,
    Finished,
    InvalidDialplanError,
    Inventory,
    LegEnded,
    Offered,
    Problem,
    PromptPlayed,
    Retried,
    RingStarted,
    RoomClosed,
    TimelineEntry,
    cause_for_status,
)
from .simulate import SimulationInputError, check_command, simulate, simulate_command, simulate_files

__all__ = [
    "CAUSES", "Action", "Answered", "Bridge", "CallerHungUp", "CancelTargets", "Cause", "Confirmed",
    "DialNumber", "Dialplan", "DialplanConflictError", "DialplanError", "DialplanLoopError", "DialplanSet",
    "DialplanSyntaxError", "DialplanValidationError", "DigitReceived", "Done", "Event", "FailedOver",
    "Finished", "InvalidDialplanError", "Inventory", "LegAnswered", "LegEnded", "LegFailed", "LegProgressed",
    "Offered", "Plan", "PlayMessage", "PlayPrompt", "Problem", "PromptFinished", "PromptPlayed",
    "RequireConfirm", "Retried", "RingStarted", "RingTargets", "RoomClosed", "SimulationInputError", "TimelineEntry",
    "cause_for_status", "check_command", "dialplan_paths", "load_dialplan", "load_dialplan_set",
    "load_dialplans", "parse_dialplan", "reload", "served_help_points", "simulate", "simulate_command",
    "simulate_files", "timeline_to_builtins", "validate_dialplan",
]
