"""The dialplan engine: one :class:`Plan` per help-point call, sans-IO.

Usage (aioquic style)::

    plan = Plan(dialplan, "hp-portland-square")
    actions = plan.start(now, wall)              # wall: aware datetime (UTC) for schedules
    actions = plan.handle(LegFailed("council-cctv-1", "busy"), now)
    deadline = plan.get_timer()                  # float | None
    actions = plan.handle_timer(now)             # once ``now >= deadline``

Rules:

1. The plan never reads a clock: ``now`` is monotonic seconds, and the wall-clock time at ``now`` is
   ``wall + (now - start_now)``.
2. Every failure of a ring or dial step goes through :func:`.model.route_after`, the same rule the
   validator searched, so a validated dialplan never ends in silence.
3. A leg fails with ``unreachable`` when no provisional response arrives within ``connect_timeout``
   (a fast timer separate from ``ring_timeout``), with ``timeout`` when it rings ``ring_timeout``, and
   with ``unconfirmed`` when an answer is not confirmed with the room's digit in time. Answered legs
   awaiting a digit are no longer subject to the ring timer; other legs keep ringing meanwhile.
4. When legs of one attempt fail differently, the step's cause is the first of: decline, busy,
   unconfirmed, timeout, server_error, unreachable.
5. A step is not attempted again sooner than ``retry_interval`` after its previous attempt began.
6. Events that no longer apply (a late 486 for a cancelled leg, a digit after the bridge) are ignored.
7. :class:`CancelTargets` means CANCEL for a leg still ringing and BYE for one already answered.
8. The plan waits only for prompts it asked to hear the end of: a message, or a ``play`` with
   ``wait: true``, both sent as :class:`PlayMessage`; a :class:`PlayPrompt` is never reported.
"""

from __future__ import annotations

import datetime
import enum
from collections.abc import Sequence
from typing import Literal

import msgspec

from .model import (
    Answered,
    Cause,
    Confirm,
    Confirmed,
    Dial,
    Dialplan,
    DialplanLoopError,
    FailedOver,
    Finished,
    LegEnded,
    Offered,
    PromptPlayed,
    PromptTimedOut,
    Retried,
    Ring,
    RingStarted,
    RoomClosed,
    Route,
    TimelineEntry,
    route_after,
)
from .schedule import is_open

__all__ = [
    "Action", "Bridge", "CallerHungUp", "CancelTargets", "DialNumber", "DigitReceived", "Done", "Event",
    "LegAnswered", "LegFailed", "LegProgressed", "Plan", "PlayMessage", "PlayPrompt", "PromptFinished",
    "RequireConfirm", "RingTargets", "timeline_to_builtins",
]

# -- events: what happened to the call (inputs) ------------------------------------------------------


class LegProgressed(msgspec.Struct, frozen=True):
    """A provisional response (180/183) arrived on the leg to ``target``: it is reachable."""

    target: str


class LegFailed(msgspec.Struct, frozen=True):
    """The leg to ``target`` failed (final response, no registered contact, transport error, operator
    hung up before confirming...); see :func:`.model.cause_for_status`."""

    target: str
    cause: Cause
    detail: str = ""
    """Free text for the timeline, e.g. ``486 Busy Here``."""


class LegAnswered(msgspec.Struct, frozen=True):
    """``target`` answered (200 OK to the INVITE)."""

    target: str


class DigitReceived(msgspec.Struct, frozen=True):
    """``target`` pressed ``digit`` (RFC 4733 event or SIP INFO)."""

    target: str
    digit: str


class PromptFinished(msgspec.Struct, frozen=True):
    """The prompt or message finished playing to the caller."""

    prompt: str


class CallerHungUp(msgspec.Struct, frozen=True):
    """The help point sent CANCEL or BYE before an operator was bridged."""


Event = LegProgressed | LegFailed | LegAnswered | DigitReceived | PromptFinished | CallerHungUp
"""Anything :meth:`Plan.handle` accepts."""

# -- actions: what the call layer must do (outputs) --------------------------------------------------


class PlayPrompt(msgspec.Struct, frozen=True):
    """Start playing ``prompt`` to the caller as early media; the plan does not wait for it (no report)."""

    prompt: str


class PlayMessage(msgspec.Struct, frozen=True):
    """Play ``prompt`` to the caller and report :class:`PromptFinished`; ``final``: the plan ends after it.
    Also sent for a ``play`` step with ``wait: true`` (rule 8)."""

    prompt: str
    final: bool


class RingTargets(msgspec.Struct, frozen=True):
    """Place a leg to each position in ``targets`` (one at a time when sequential)."""

    targets: tuple[str, ...]
    name: str
    """Room id (or position list) being rung, for headers and logs."""
    strategy: Literal["parallel", "sequential"]
    ring_timeout: float
    connect_timeout: float
    attempt: int
    """1 for the first attempt of this step in this visit, 2 for its first retry..."""


class DialNumber(msgspec.Struct, frozen=True):
    """Place a leg to the last-resort ``number`` through the trunk."""

    number: str
    ring_timeout: float
    connect_timeout: float
    attempt: int


class CancelTargets(msgspec.Struct, frozen=True):
    """End these legs (rule 7); ``reason`` goes into the Reason header (RFC 3326)."""

    targets: tuple[str, ...]
    reason: Literal["timeout", "connect-timeout", "unconfirmed", "answered-elsewhere", "caller-hung-up"]


class RequireConfirm(msgspec.Struct, frozen=True):
    """``target`` answered: ask the operator to press ``digit`` within ``within`` seconds."""

    target: str
    digit: str
    within: float


class Bridge(msgspec.Struct, frozen=True):
    """Connect the caller to ``target``."""

    target: str


class Done(msgspec.Struct, frozen=True):
    """Routing is over: ``answered`` by ``target``, ``unanswered`` after a final message, or ``abandoned``."""

    outcome: Literal["answered", "unanswered", "abandoned"]
    target: str | None = None


Action = PlayPrompt | PlayMessage | RingTargets | DialNumber | CancelTargets | RequireConfirm | Bridge | Done
"""Anything the plan asks the call layer to do."""

# -- the plan -------------------------------------------------------------------------------------------

_CAUSE_ORDER: tuple[Cause, ...] = ("decline", "busy", "unconfirmed", "timeout", "server_error", "unreachable")


#: Seconds a plan waits at most for the end of a prompt it waits for (a message, a ``play`` with ``wait``):
#: longer than any prompt the media plane loads (600 s), so it only ends a wait whose report never came.
PROMPT_GUARD = 660.0


class _Phase(enum.Enum):
    IDLE = "idle"
    PROMPT = "prompt"  # waiting for PromptFinished
    PENDING = "pending"  # waiting for retry_interval before the next attempt
    RINGING = "ringing"
    DONE = "done"


class _Leg:
    """Mutable per-leg timers of the current attempt (private)."""

    __slots__ = ("connect_deadline", "ring_deadline", "confirm_deadline")

    def __init__(self, connect_deadline: float | None, ring_deadline: float) -> None:
        self.connect_deadline = connect_deadline
        self.ring_deadline = ring_deadline
        self.confirm_deadline: float | None = None


class Plan:
    """The routing state machine of one call; holds the :class:`Dialplan` it was created with, so a
    reload never changes a call in progress. Pass only dialplans that passed validation."""

    def __init__(self, dialplan: Dialplan, help_point: str, *, version: int = 0) -> None:
        self.dialplan = dialplan
        """The dialplan this call follows to the end."""
        self.help_point = help_point
        """Id of the calling help point."""
        self._version = version
        self._timeline: list[TimelineEntry] = []
        self._phase = _Phase.IDLE
        self._t0 = 0.0
        self._wall0 = datetime.datetime(1970, 1, 1, tzinfo=datetime.UTC)
        self._index = 0
        self._retries = 0
        self._awaited_prompt: str | None = None
        self._prompt_guard_at: float | None = None
        self._after_prompt = Route(0, 0)
        self._pending_at: float | None = None
        self._last_attempt: dict[int, float] = {}
        self._legs: dict[str, _Leg] = {}
        self._queue: list[str] = []
        self._causes: list[Cause] = []
        self.outcome: Done | None = None
        """The final :class:`Done`, once routing is over."""

    # -- public API ----------------------------------------------------------------------------------

    @property
    def timeline(self) -> tuple[TimelineEntry, ...]:
        """Everything that happened so far, in order."""
        return tuple(self._timeline)

    @property
    def done(self) -> bool:
        """Routing is over (bridged, unanswered after a final message, or abandoned)."""
        return self._phase is _Phase.DONE

    def start(self, now: float, wall: datetime.datetime) -> list[Action]:
        """Begin routing at monotonic ``now``; ``wall`` is the aware wall-clock time at ``now``."""
        if wall.tzinfo is None or wall.utcoffset() is None:
            raise ValueError("wall must be a timezone-aware datetime")
        if self._phase is not _Phase.IDLE or self._timeline:
            raise RuntimeError("Plan.start called twice")
        # In UTC: adding elapsed seconds to a wall time in a zone with DST would be wall-clock arithmetic.
        self._t0, self._wall0 = now, wall.astimezone(datetime.UTC)
        self._log(Offered(at=now, help_point=self.help_point, dialplan=self.dialplan.name, version=self._version))
        out: list[Action] = []
        self._advance(Route(0, 0), now, out)
        return out

    def handle(self, event: Event, now: float) -> list[Action]:
        """Feed one event; returns the actions it causes (rule 6: stale events give none)."""
        out: list[Action] = []
        if self._phase is _Phase.DONE:
            return out
        if isinstance(event, CallerHungUp):
            if self._legs:
                out.append(CancelTargets(tuple(self._legs), "caller-hung-up"))
                for target in list(self._legs):
                    self._end_leg(target, "cancelled", "caller-hung-up", now)
            self._finish(Done("abandoned"), now, out)
        elif isinstance(event, PromptFinished):
            if self._phase is _Phase.PROMPT and event.prompt == self._awaited_prompt:
                self._phase, self._awaited_prompt, self._prompt_guard_at = _Phase.IDLE, None, None
                self._advance(self._after_prompt, now, out)
        elif self._phase is not _Phase.RINGING or event.target not in self._legs:
            pass
        elif isinstance(event, LegProgressed):
            self._legs[event.target].connect_deadline = None
        elif isinstance(event, LegFailed):
            self._end_leg(event.target, event.cause, event.detail, now)
            self._after_leg_ended(now, out)
        elif isinstance(event, LegAnswered):
            self._answered(event.target, now, out)
        elif isinstance(event, DigitReceived):
            leg, confirm = self._legs[event.target], self._confirm_rule()
            if leg.confirm_deadline is not None and confirm is not None and event.digit == confirm.digit:
                self._log(Confirmed(at=now, target=event.target))
                self._bridge(event.target, now, out)
        return out

    def get_timer(self) -> float | None:
        """The earliest deadline at which :meth:`handle_timer` must be called, or None."""
        if self._phase is _Phase.PENDING:
            return self._pending_at
        if self._phase is _Phase.PROMPT:
            return self._prompt_guard_at
        if self._phase is not _Phase.RINGING:
            return None
        deadlines = [self._leg_deadline(leg) for leg in self._legs.values()]
        return min(deadlines) if deadlines else None

    def handle_timer(self, now: float) -> list[Action]:
        """Process every deadline at or before ``now``."""
        out: list[Action] = []
        if self._phase is _Phase.PENDING and self._pending_at is not None and now >= self._pending_at:
            self._pending_at = None
            self._advance(self._attempt(now, out), now, out)
        elif (self._phase is _Phase.PROMPT and self._prompt_guard_at is not None and now >= self._prompt_guard_at
              and self._awaited_prompt is not None):
            # The end of the prompt never came: go on, never leave the caller waiting in silence.
            self._log(PromptTimedOut(at=now, prompt=self._awaited_prompt))
            self._phase, self._awaited_prompt, self._prompt_guard_at = _Phase.IDLE, None, None
            self._advance(self._after_prompt, now, out)
        elif self._phase is _Phase.RINGING:
            expired: dict[str, list[tuple[str, Cause, str]]] = {}
            for target, leg in self._legs.items():
                if now < self._leg_deadline(leg):
                    continue
                if leg.confirm_deadline is not None:
                    expired.setdefault("unconfirmed", []).append((target, "unconfirmed", "no confirm digit"))
                elif leg.connect_deadline is not None and now >= leg.connect_deadline:
                    expired.setdefault("connect-timeout", []).append((target, "unreachable", "connect-timeout"))
                else:
                    expired.setdefault("timeout", []).append((target, "timeout", ""))
            for reason, legs in expired.items():
                out.append(CancelTargets(tuple(target for target, _, _ in legs), reason))  # type: ignore[arg-type]
                for target, cause, detail in legs:
                    self._end_leg(target, cause, detail, now)
            if expired:
                self._after_leg_ended(now, out)
        return out

    # -- stepping ------------------------------------------------------------------------------------

    def _advance(self, route: Route | None, now: float, out: list[Action]) -> None:
        """Follow routes through instantaneous steps until the plan waits for something."""
        hops = 0
        while route is not None:
            hops += 1
            if hops > 4 * len(self.dialplan.steps) + 8:
                raise DialplanLoopError(f"dialplan {self.dialplan.name!r} loops without ringing anyone")
            if route.message is not None:
                self._play_message(route.message, Route(route.index, 0), now, out)
                return
            route = self._enter(route, now, out)

    def _enter(self, route: Route, now: float, out: list[Action]) -> Route | None:
        steps = self.dialplan.steps
        if route.index >= len(steps):
            self._finish(Done("unanswered"), now, out)
            return None
        step = steps[route.index]
        self._index, self._retries = route.index, route.retries
        if step.play is not None:
            prompt = step.play.prompt  # type: ignore[union-attr]
            # A waited-for prompt must have its end reported (PlayPrompt is fire-and-forget): rule 8.
            out.append(PlayMessage(prompt, final=False) if step.play.wait else PlayPrompt(prompt))  # type: ignore[union-attr]
            self._log(PromptPlayed(at=now, prompt=prompt, message=False))
            if step.play.wait:  # type: ignore[union-attr]
                self._phase, self._awaited_prompt = _Phase.PROMPT, prompt
                self._prompt_guard_at = now + PROMPT_GUARD
                self._after_prompt = Route(route.index + 1, 0)
                return None
            return Route(route.index + 1, 0)
        if step.message is not None:
            self._play_message(step.message, Route(route.index + 1, 0), now, out)
            return None
        if step.goto is not None:
            return Route(self.dialplan.label_index(step.goto), 0)
        previous = self._last_attempt.get(route.index)
        if previous is not None and now < previous + self.dialplan.retry_interval:
            self._phase, self._pending_at = _Phase.PENDING, previous + self.dialplan.retry_interval
            return None
        return self._attempt(now, out)

    def _play_message(self, prompt: str, after: Route, now: float, out: list[Action]) -> None:
        out.append(PlayMessage(prompt, final=after.index >= len(self.dialplan.steps)))
        self._log(PromptPlayed(at=now, prompt=prompt, message=True))
        self._phase, self._awaited_prompt, self._after_prompt = _Phase.PROMPT, prompt, after
        self._prompt_guard_at = now + PROMPT_GUARD

    def _attempt(self, now: float, out: list[Action]) -> Route | None:
        """Start an attempt of the current ring or dial step; a closed room fails it at once."""
        step = self.dialplan.steps[self._index]
        leg = step.leg
        assert leg is not None
        attempt = self._retries + 1
        self._last_attempt[self._index] = now
        self._legs, self._queue, self._causes = {}, [], []
        if isinstance(leg, Dial):
            targets: tuple[str, ...] = (leg.number,)
            out.append(DialNumber(leg.number, leg.ring_timeout, leg.connect_timeout, attempt))
        else:
            room = self.dialplan.rooms.get(leg.room) if leg.room is not None else None
            if room is not None and room.schedule is not None and not is_open(room.schedule, self._wall(now)):
                self._log(RoomClosed(at=now, room=leg.name))
                return self._step_failed("closed", now)
            targets = leg.positions or (room.positions if room is not None else ())
            if leg.strategy == "sequential":
                self._queue = list(targets[1:])
                targets = targets[:1]
            out.append(RingTargets(targets, leg.name, leg.strategy, leg.ring_timeout, leg.connect_timeout, attempt))
        self._log(RingStarted(at=now, name=leg.name, targets=targets, attempt=attempt))
        for target in targets:
            self._legs[target] = _Leg(now + leg.connect_timeout, now + leg.ring_timeout)
        self._phase = _Phase.RINGING
        if not self._legs:
            return self._step_failed("unreachable", now)
        return None

    def _step_failed(self, cause: Cause, now: float) -> Route:
        leg = self.dialplan.steps[self._index].leg
        assert leg is not None
        self._phase = _Phase.IDLE
        route = route_after(self.dialplan, self._index, cause, self._retries)
        if route.retry:
            self._log(Retried(at=now, name=leg.name, cause=cause, attempt=route.retries + 1))
        else:
            self._log(FailedOver(at=now, from_name=leg.name, to_name=self._next_leg_name(route.index), cause=cause))
        return route

    def _next_leg_name(self, index: int) -> str | None:
        """Statically, the ring or dial reached from step ``index`` through plays, messages and gotos."""
        seen: set[int] = set()
        steps = self.dialplan.steps
        while index < len(steps) and index not in seen:
            seen.add(index)
            step = steps[index]
            if step.leg is not None:
                return step.leg.name
            index = self.dialplan.label_index(step.goto) if step.goto is not None else index + 1
        return None

    # -- legs ----------------------------------------------------------------------------------------

    def _leg_deadline(self, leg: _Leg) -> float:
        if leg.confirm_deadline is not None:
            return leg.confirm_deadline
        if leg.connect_deadline is not None:
            return min(leg.connect_deadline, leg.ring_deadline)
        return leg.ring_deadline

    def _confirm_rule(self) -> Confirm | None:
        leg = self.dialplan.steps[self._index].leg
        if isinstance(leg, Ring) and leg.room is not None and leg.room in self.dialplan.rooms:
            return self.dialplan.rooms[leg.room].confirm
        return None

    def _end_leg(self, target: str, result: str, detail: str, now: float) -> None:
        del self._legs[target]
        if result != "cancelled":
            self._causes.append(result)  # type: ignore[arg-type]
        self._log(LegEnded(at=now, target=target, result=result, detail=detail))

    def _after_leg_ended(self, now: float, out: list[Action]) -> None:
        if self._legs:
            return
        if self._queue:
            leg = self.dialplan.steps[self._index].leg
            assert isinstance(leg, Ring)
            target = self._queue.pop(0)
            out.append(RingTargets((target,), leg.name, leg.strategy, leg.ring_timeout, leg.connect_timeout,
                                   self._retries + 1))
            self._log(RingStarted(at=now, name=leg.name, targets=(target,), attempt=self._retries + 1))
            self._legs[target] = _Leg(now + leg.connect_timeout, now + leg.ring_timeout)
            return
        cause = next(c for c in _CAUSE_ORDER if c in self._causes) if self._causes else "unreachable"
        self._advance(self._step_failed(cause, now), now, out)

    def _answered(self, target: str, now: float, out: list[Action]) -> None:
        leg = self._legs[target]
        if leg.confirm_deadline is not None:
            return
        self._log(Answered(at=now, target=target))
        confirm = self._confirm_rule()
        if confirm is None:
            self._bridge(target, now, out)
            return
        leg.connect_deadline = None
        leg.confirm_deadline = now + confirm.within
        out.append(RequireConfirm(target, str(confirm.digit), confirm.within))

    def _bridge(self, target: str, now: float, out: list[Action]) -> None:
        others = tuple(other for other in self._legs if other != target)
        if others:
            out.append(CancelTargets(others, "answered-elsewhere"))
            for other in others:
                self._end_leg(other, "cancelled", "answered-elsewhere", now)
        self._legs, self._queue = {}, []
        out.append(Bridge(target))
        self._finish(Done("answered", target), now, out)

    def _finish(self, done: Done, now: float, out: list[Action]) -> None:
        self._phase, self.outcome = _Phase.DONE, done
        self._legs, self._queue, self._pending_at = {}, [], None
        out.append(done)
        self._log(Finished(at=now, outcome=done.outcome, target=done.target))

    def _wall(self, now: float) -> datetime.datetime:
        return self._wall0 + datetime.timedelta(seconds=now - self._t0)

    def _log(self, entry: TimelineEntry) -> None:
        self._timeline.append(entry)


def timeline_to_builtins(timeline: Sequence[TimelineEntry]) -> list[object]:
    """The timeline as JSON-ready builtins (each entry tagged with its ``type``), for the records layer."""
    return [msgspec.to_builtins(entry) for entry in timeline]
