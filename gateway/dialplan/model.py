"""Dialplan schema (frozen msgspec Structs decoded from ``dialplans/*.yaml``), the routing rules, the
activation timeline values and the package errors.

Rules (shared by the validator's search in :mod:`.load` and the engine in :mod:`.engine`, so the two can
never disagree about where a failure leads):

1. A dialplan is an ordered list of steps; exactly one of ``play``, ``message``, ``ring``, ``dial`` or
   ``goto`` per step.
2. A ``ring`` or ``dial`` step either ends in an answer (confirmed, when the room asks for it) or fails
   with one :data:`Cause`.
3. The action for a failure is ``on[cause]``, else ``on["default"]``, else ``retry`` with the step's
   ``repeat`` count when it has one, else ``next``.
4. ``retry`` counts are per visit: entering a step afresh (by ``next`` or ``goto``) resets them.
5. Falling off the end of the steps is safe only straight after a message (a ``message`` step or an
   ``on`` action with ``play``): the caller has heard something clear and the activation is recorded as
   unanswered.
"""

from __future__ import annotations

import datetime
import re
import zoneinfo
from collections.abc import Sequence
from typing import Annotated, Final, Literal

import msgspec

__all__ = [
    "CAUSES",
    "Cause",
    "Confirm",
    "Day",
    "DialplanConflictError",
    "DialplanError",
    "DialplanLoopError",
    "DialplanSyntaxError",
    "DialplanValidationError",
    "InvalidDialplanError",
    "Problem",
    "Dial",
    "Dialplan",
    "FailureAction",
    "Inventory",
    "OnAction",
    "Play",
    "Ring",
    "Room",
    "Route",
    "Schedule",
    "Serves",
    "Step",
    "Window",
    "Offered", "PromptPlayed", "PromptTimedOut", "RoomClosed", "RingStarted", "LegEnded", "Answered", "Confirmed",
    "Retried", "FailedOver", "Finished", "TimelineEntry",
    "action_for",
    "cause_for_status",
    "route_after",
]

Cause = Literal["timeout", "busy", "decline", "server_error", "unreachable", "unconfirmed", "closed"]
"""Why a ring (or dial) step failed; also the keys allowed in a step's ``on`` mapping."""

CAUSES: Final[tuple[Cause, ...]] = (
    "timeout", "busy", "decline", "server_error", "unreachable", "unconfirmed", "closed",
)
"""Every :data:`Cause`, in documentation order."""

Day = Literal["mon", "tue", "wed", "thu", "fri", "sat", "sun", "bank-holiday"]
"""A day in a schedule window; ``bank-holiday`` stands for every date in ``bank_holidays``."""

ALL_DAYS: Final[tuple[Day, ...]] = ("mon", "tue", "wed", "thu", "fri", "sat", "sun", "bank-holiday")
"""The default ``days`` of a window: every day, bank holidays included."""

_HOURS = re.compile(r"^([01][0-9]|2[0-3]):([0-5][0-9])-([01][0-9]|2[0-3]|24):([0-5][0-9])$")
_NAME = r"^[a-z0-9][a-z0-9._-]*$"

Name = Annotated[str, msgspec.Meta(pattern=_NAME, max_length=64)]
"""An identifier: dialplan, room, position, prompt or label name (lower case, digits, ``.-_``)."""
Seconds = Annotated[float, msgspec.Meta(gt=0)]


class _Base(msgspec.Struct, frozen=True, forbid_unknown_fields=True, kw_only=True):
    """Common config: immutable, typos in YAML are errors, fields by name only."""


class Window(_Base, frozen=True, kw_only=True):
    """One opening window of a room, e.g. ``{days: [mon, tue], hours: "07:00-23:00"}``."""

    days: tuple[Day, ...] = ALL_DAYS
    """Days the window opens on; a window that crosses midnight belongs to the day it starts on."""
    hours: str
    """``HH:MM-HH:MM`` local time; the end may be ``24:00``; an end before the start crosses midnight."""

    def __post_init__(self) -> None:
        match = _HOURS.match(self.hours)
        if match is None:
            raise ValueError(f"hours must look like 07:00-23:00, got {self.hours!r}")
        start, end = self.span
        if start == end:
            raise ValueError(f"hours {self.hours!r} is an empty window")
        if end > 24 * 60:
            raise ValueError(f"hours {self.hours!r} ends after 24:00")
        if not self.days:
            raise ValueError("days must list at least one day (a window with no days never opens)")

    @property
    def span(self) -> tuple[int, int]:
        """(start, end) in minutes after local midnight."""
        match = _HOURS.match(self.hours)
        assert match is not None
        h1, m1, h2, m2 = (int(g) for g in match.groups())
        return h1 * 60 + m1, h2 * 60 + m2


class Schedule(_Base, frozen=True, kw_only=True):
    """When a room is staffed; outside these windows a ring of the room fails at once with ``closed``."""

    timezone: str = "Europe/London"
    """IANA zone the windows are written in (zoneinfo), so 07:00 stays 07:00 across DST changes."""
    open: tuple[Window, ...]
    """Opening windows; the room is open when any window covers the local time."""
    bank_holidays: tuple[datetime.date, ...] = ()
    """Dates on which only windows listing ``bank-holiday`` apply (instead of the weekday's windows)."""

    def __post_init__(self) -> None:
        try:
            zoneinfo.ZoneInfo(self.timezone)
        except (zoneinfo.ZoneInfoNotFoundError, ValueError):
            raise ValueError(f"unknown timezone {self.timezone!r}") from None
        if not self.open:
            raise ValueError("open must list at least one window (a room never open would never ring)")
        if not self.bank_holidays and all(set(window.days) == {"bank-holiday"} for window in self.open):
            raise ValueError("never open: its windows are for bank holidays only and bank_holidays lists none")


class Confirm(_Base, frozen=True, kw_only=True):
    """The operator must press ``digit`` within ``within`` seconds of answering, or the leg fails over."""

    digit: Literal[0, 1, 2, 3, 4, 5, 6, 7, 8, 9, "0", "1", "2", "3", "4", "5", "6", "7", "8", "9", "*", "#"]
    """DTMF digit (RFC 4733 or SIP INFO); YAML ``1`` and ``"1"`` both work, kept as a string."""
    within: Annotated[float, msgspec.Meta(ge=1, le=60)] = 10.0
    """Seconds after the answer."""

    def __post_init__(self) -> None:
        msgspec.structs.force_setattr(self, "digit", str(self.digit))


class Room(_Base, frozen=True, kw_only=True):
    """A control room: its positions (from the inventory when omitted), schedule and confirmation rule."""

    positions: tuple[Name, ...] = ()
    """Operator positions; empty means every position the inventory lists for the room."""
    schedule: Schedule | None = None
    """Staffed hours; none means always open."""
    confirm: Confirm | None = None
    """Confirmed-answer rule for every ring of this room."""


class FailureAction(_Base, frozen=True, kw_only=True):
    """An ``on`` action written as a mapping: ``{retry: 2}``, ``{retry: forever}``, ``{goto: police}``
    or ``{play: all-rooms-unavailable}`` (play the message to the caller, then go to the next step)."""

    retry: Annotated[int, msgspec.Meta(ge=1, le=100)] | Literal["forever"] | None = None
    """Ring the same step again, up to this many more times in this visit."""
    goto: Name | None = None
    """Jump to the step with this label."""
    play: Name | None = None
    """Play this message, then continue with the next step."""

    def __post_init__(self) -> None:
        given = [name for name in ("retry", "goto", "play") if getattr(self, name) is not None]
        if len(given) != 1:
            raise ValueError(f"an action needs exactly one of retry, goto, play (got {', '.join(given) or 'none'})")


OnAction = Literal["next", "retry"] | FailureAction
"""``next``, ``retry`` (once) or a :class:`FailureAction` mapping."""
Repeat = Annotated[int, msgspec.Meta(ge=0, le=100)] | Literal["forever"]


class Ring(_Base, frozen=True, kw_only=True):
    """Ring a room, or an explicit list of positions, all at once or one after another."""

    room: Name | None = None
    """Room id: its positions, schedule and confirmation rule apply."""
    positions: tuple[Name, ...] = ()
    """Explicit positions (a subset of ``room``'s when both are given)."""
    strategy: Literal["parallel", "sequential"] = "parallel"
    """``parallel`` forks to every position; ``sequential`` hunts in order, ``ring_timeout`` each."""
    ring_timeout: Annotated[float, msgspec.Meta(ge=1, le=300)] = 20.0
    """Seconds a leg may ring before it fails with ``timeout``."""
    connect_timeout: Annotated[float, msgspec.Meta(ge=0.5, le=60)] = 4.0
    """Seconds a leg may go without any provisional response before it fails with ``unreachable``."""
    repeat: Repeat = 0
    """Default retry count for causes not in ``on`` (``forever`` keeps ringing until answered)."""
    on: dict[str, OnAction] = {}
    """Failure cause (or ``default``) to action."""

    @property
    def name(self) -> str:
        """What the ring is called in timelines and simulations: the room, else the position list."""
        return self.room if self.room is not None else "+".join(self.positions)


class Dial(_Base, frozen=True, kw_only=True):
    """Ring a last-resort number through the trunk; keeps retrying forever unless told otherwise."""

    number: Annotated[str, msgspec.Meta(pattern=r"^(\+?[0-9]{3,15}|sips?:[^\s]+)$")]
    """E.164-ish digits or a SIP URI."""
    ring_timeout: Annotated[float, msgspec.Meta(ge=1, le=300)] = 60.0
    """Seconds the number may ring before the attempt fails with ``timeout``."""
    connect_timeout: Annotated[float, msgspec.Meta(ge=0.5, le=60)] = 8.0
    """Seconds without a provisional response before the attempt fails with ``unreachable``."""
    repeat: Repeat = "forever"
    """Default retry count for causes not in ``on``."""
    on: dict[str, OnAction] = {}
    """Failure cause (or ``default``) to action."""

    @property
    def name(self) -> str:
        """The number, as shown in timelines."""
        return self.number


class Play(_Base, frozen=True, kw_only=True):
    """A prompt played to the caller as early media while the following steps run."""

    prompt: Name
    """Prompt name (a file the media layer knows)."""
    wait: bool = False
    """Wait for the prompt to finish before the next step."""


class Step(_Base, frozen=True, kw_only=True):
    """One step; exactly one of ``play``, ``message``, ``ring``, ``dial``, ``goto``."""

    label: Name | None = None
    """Target for ``goto``."""
    play: Name | Play | None = None
    """Early-media prompt (``play: connecting`` is short for ``play: {prompt: connecting}``)."""
    message: Name | None = None
    """A message the caller hears in full (e.g. ``all-rooms-unavailable``); a safe last step."""
    ring: Ring | None = None
    """Ring a room or positions."""
    dial: Dial | None = None
    """Ring a last-resort number."""
    goto: Name | None = None
    """Jump to a labelled step."""

    def __post_init__(self) -> None:
        given = [name for name in ("play", "message", "ring", "dial", "goto") if getattr(self, name) is not None]
        if len(given) != 1:
            raise ValueError(
                f"a step needs exactly one of play, message, ring, dial, goto (got {', '.join(given) or 'none'})"
            )
        if isinstance(self.play, str):
            msgspec.structs.force_setattr(self, "play", Play(prompt=self.play))

    @property
    def kind(self) -> Literal["play", "message", "ring", "dial", "goto"]:
        """Which action the step has."""
        for name in ("play", "message", "ring", "dial"):
            if getattr(self, name) is not None:
                return name
        return "goto"

    @property
    def leg(self) -> Ring | Dial | None:
        """The ring or dial of the step, if it has one."""
        return self.ring if self.ring is not None else self.dial


class Serves(_Base, frozen=True, kw_only=True):
    """Which help points the dialplan handles."""

    help_points: tuple[Name, ...] = ()
    """Help point ids."""
    tags: tuple[Name, ...] = ()
    """Inventory tags: every help point carrying one of them."""


class Dialplan(_Base, frozen=True, kw_only=True):
    """One deployment's dialplan (one file)."""

    name: Name
    """Unique across the dialplan set."""
    description: str = ""
    """Free text for humans."""
    serves: Serves
    """Help points handled by this dialplan."""
    rooms: dict[Name, Room] = {}
    """Room definitions and overrides; after loading, every room a step rings is here with positions."""
    retry_interval: Annotated[float, msgspec.Meta(ge=1, le=60)] = 5.0
    """Minimum seconds between two attempts of the same step (no tight loops on instant failures)."""
    steps: Annotated[tuple[Step, ...], msgspec.Meta(max_length=100)]
    """Ordered steps (at most 100: the validator's search grows with steps times retries)."""

    def label_index(self, label: str) -> int:
        """Index of the step with ``label`` (KeyError when absent)."""
        for index, step in enumerate(self.steps):
            if step.label == label:
                return index
        raise KeyError(label)


class Inventory(msgspec.Struct, frozen=True, kw_only=True):
    """What the validator and engine need from ``sip-config``, passed in as plain data."""

    help_points: dict[str, tuple[str, ...]]
    """Help point id to its tags."""
    rooms: dict[str, tuple[str, ...]]
    """Room id to its operator positions."""
    prompts: frozenset[str]
    """Prompt names the media layer can play."""
    positions: frozenset[str] = frozenset()
    """Positions outside any room (static URIs), ringable by explicit ``positions`` lists."""
    trunk: bool = False
    """A trunk is configured (``sip.trunk``): ``dial`` steps with a number of digits can be placed.  Without
    one they are an error (they would fail every time: a path that looks safe and ends in silence); a
    ``dial`` of a sip: URI needs no trunk."""

    @property
    def known_positions(self) -> frozenset[str]:
        """Every position a dialplan may ring."""
        return self.positions.union(*self.rooms.values())


class Route(msgspec.Struct, frozen=True):
    """Where a failed step leads: step ``index`` (``len(steps)`` = the end), after ``message`` if set."""

    index: int
    """Next step index."""
    retries: int
    """Retries used in the visit of ``index`` (non-zero only when ``retry`` is true)."""
    retry: bool = False
    """The same step again."""
    message: str | None = None
    """Message to play before moving on."""


def action_for(leg: Ring | Dial, cause: Cause) -> OnAction:
    """Rule 3: the action a step takes for ``cause``."""
    if cause in leg.on:
        return leg.on[cause]
    if "default" in leg.on:
        return leg.on["default"]
    if leg.repeat == "forever" or leg.repeat > 0:
        return FailureAction(retry=leg.repeat)
    return "next"


def route_after(dialplan: Dialplan, index: int, cause: Cause, retries: int) -> Route:
    """Rules 3 and 4: where step ``index`` goes after failing with ``cause``, ``retries`` retries used."""
    leg = dialplan.steps[index].leg
    assert leg is not None, "only ring and dial steps fail"
    action = action_for(leg, cause)
    if action == "retry":
        action = FailureAction(retry=1)
    if isinstance(action, FailureAction):
        if action.retry is not None:
            if action.retry == "forever" or retries < action.retry:
                return Route(index, retries + 1, retry=True)
            return Route(index + 1, 0)
        if action.goto is not None:
            return Route(dialplan.label_index(action.goto), 0)
        return Route(index + 1, 0, message=action.play)
    return Route(index + 1, 0)


def cause_for_status(status: int) -> Cause:
    """Map a final SIP response status of an outgoing leg to a failure cause.

    486/600 busy, 603 decline, 404/408/410/480 unreachable, 5xx server_error, other 6xx decline, any
    other failure server_error.
    """
    if status in (486, 600):
        return "busy"
    if status == 603 or 600 <= status < 700:
        return "decline"
    if status in (404, 408, 410, 480):
        return "unreachable"
    return "server_error"


# -- timeline: the activation's record (value objects, ``at`` is the plan's ``now``) -------------------


class _Entry(msgspec.Struct, frozen=True, kw_only=True, tag=True):
    """Base of timeline entries (tagged with ``type`` when encoded)."""

    at: float
    """Monotonic time of the entry (the ``now`` passed in)."""


class Offered(_Entry, frozen=True, kw_only=True, tag=True):
    """The help point's call reached the plan."""

    help_point: str
    dialplan: str
    version: int


class PromptPlayed(_Entry, frozen=True, kw_only=True, tag=True):
    """A prompt (early media) or message started playing."""

    prompt: str
    message: bool


class PromptTimedOut(_Entry, frozen=True, kw_only=True, tag=True):
    """The end of a prompt the plan waited for was never reported (a fault in the media plane): the plan went
    on rather than leave the caller in silence."""

    prompt: str


class RoomClosed(_Entry, frozen=True, kw_only=True, tag=True):
    """A room was skipped because its schedule says it is not staffed."""

    room: str


class RingStarted(_Entry, frozen=True, kw_only=True, tag=True):
    """An attempt of a ring or dial step began."""

    name: str
    targets: tuple[str, ...]
    attempt: int


class LegEnded(_Entry, frozen=True, kw_only=True, tag=True):
    """A leg ended without being bridged: ``result`` is a cause, or ``cancelled`` (answered elsewhere,
    caller hung up)."""

    target: str
    result: str
    detail: str = ""


class Answered(_Entry, frozen=True, kw_only=True, tag=True):
    """``target`` answered."""

    target: str


class Confirmed(_Entry, frozen=True, kw_only=True, tag=True):
    """``target`` confirmed the answer with the room's digit."""

    target: str


class Retried(_Entry, frozen=True, kw_only=True, tag=True):
    """A step failed with ``cause`` and will be attempted again (``attempt``)."""

    name: str
    cause: Cause
    attempt: int


class FailedOver(_Entry, frozen=True, kw_only=True, tag=True):
    """A step failed with ``cause``; routing moves on to ``to_name`` (None: only messages remain)."""

    from_name: str
    to_name: str | None
    cause: Cause


class Finished(_Entry, frozen=True, kw_only=True, tag=True):
    """Routing ended (see :class:`.engine.Done`)."""

    outcome: str
    target: str | None = None


TimelineEntry = (
    Offered | PromptPlayed | PromptTimedOut | RoomClosed | RingStarted | LegEnded | Answered | Confirmed | Retried
    | FailedOver | Finished
)
"""One entry of :attr:`Plan.timeline`."""


class Problem(msgspec.Struct, frozen=True):
    """One thing wrong with a dialplan file: where (file and ``$.``-style path) and why."""

    file: str
    """File the problem is in, as given to the loader."""
    path: str
    """Location inside the document, e.g. ``$.steps[2].ring.ring_timeout``."""
    why: str
    """What is wrong, in words an ops engineer can act on."""

    def __str__(self) -> str:
        return f"{self.file}: {self.path}: {self.why}"


class DialplanError(Exception):
    """Root of every dialplan error."""


class InvalidDialplanError(DialplanError):
    """One or more files are not acceptable dialplans; ``problems`` lists them all."""

    def __init__(self, problems: Sequence[Problem]) -> None:
        self.problems: tuple[Problem, ...] = tuple(problems)
        """Every problem found, in file and document order."""
        super().__init__("\n".join(str(problem) for problem in self.problems))


class DialplanSyntaxError(InvalidDialplanError):
    """Unreadable file, bad YAML, or a document that does not fit the schema (types, unknown fields,
    values out of range)."""


class DialplanValidationError(InvalidDialplanError):
    """A well-formed dialplan that is unsafe or refers to things that do not exist."""


class DialplanConflictError(InvalidDialplanError):
    """Dialplans that cannot be loaded together: duplicate names, help points served twice."""


class DialplanLoopError(DialplanError):
    """The engine hopped through steps without ringing anyone (only an unvalidated dialplan can)."""
