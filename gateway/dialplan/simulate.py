"""``gateway dialplan simulate`` and ``gateway dialplan check``: drive the engine with simulated time.

No network and no clock: simulated operator positions answer a :class:`.engine.Plan`'s actions with
scripted outcomes, and time jumps from one scheduled event or engine deadline to the next.

Outcome scripts (per room, position or dial number; a position's script beats its room's):

- ``answer`` - rings, answers after 3 s and, when the room asks, presses the digit 1 s later;
- ``answer-unconfirmed`` - rings, answers after 3 s, never presses the digit;
- ``timeout`` (the default) - rings and is never answered;
- ``no-response`` - no provisional response at all (the connect timer fires);
- ``busy``, ``decline``, ``server_error``, ``unreachable`` - that failure at once.

``@seconds`` sets the delay (``answer@12``, ``busy@5``); a comma list gives one script per attempt,
the last repeating (``timeout,answer``).
"""

from __future__ import annotations

import datetime
import heapq
import itertools
import math
import zoneinfo
from collections.abc import Iterable, Mapping, Sequence
from pathlib import Path

from .engine import (
    Action,
    CallerHungUp,
    CancelTargets,
    DialNumber,
    DigitReceived,
    Event,
    LegAnswered,
    LegFailed,
    LegProgressed,
    Plan,
    PlayMessage,
    PromptFinished,
    RequireConfirm,
    RingTargets,
)
from .load import DialplanSet, dialplan_paths, load_dialplan_set, served_help_points
from .model import (
    Answered,
    Cause,
    Confirmed,
    DialplanError,
    FailedOver,
    Finished,
    InvalidDialplanError,
    Inventory,
    LegEnded,
    Offered,
    PromptPlayed,
    PromptTimedOut,
    Retried,
    RingStarted,
    RoomClosed,
    TimelineEntry,
)
from .schedule import describe

__all__ = ["SimulationInputError", "check_command", "parse_outcome", "simulate", "simulate_command", "simulate_files"]

_FAILURES: dict[str, Cause] = {
    "busy": "busy", "decline": "decline", "server_error": "server_error", "unreachable": "unreachable",
}
_KINDS = ("answer", "answer-unconfirmed", "timeout", "no-response", *_FAILURES)
_DEFAULT_DELAY = {"answer": 3.0, "answer-unconfirmed": 3.0}
_CONFIRM_DELAY = 1.0
#: Years of ``at`` the simulator takes: a day's margin from the calendar's ends for zones and schedules.
_YEARS = (2, 9998)


class SimulationInputError(DialplanError):
    """A simulation argument the simulator cannot use, named so a caller can point at it.

    ``argument`` is ``help_point``, ``at`` or ``outcomes``; for ``outcomes``, ``keys`` are the offending
    rooms, positions or numbers (the one whose script is bad, or every unknown one, in the given order).
    ``unknown`` is true when the value is well formed but names nothing the dialplans know.
    """

    def __init__(self, argument: str, problem: str, keys: Sequence[str] = (), *, unknown: bool = False) -> None:
        super().__init__(problem)
        self.argument = argument
        self.problem = problem
        self.keys: tuple[str, ...] = tuple(keys)
        self.unknown = unknown


def parse_outcome(spec: str) -> tuple[tuple[str, float], ...]:
    """Parse ``timeout,answer@5`` into ``(("timeout", 0.0), ("answer", 5.0))``; ValueError when bad."""
    scripts = []
    for part in spec.split(","):
        kind, _, delay = part.strip().partition("@")
        if kind not in _KINDS:
            raise ValueError(f"unknown outcome `{kind}` (expected one of {', '.join(_KINDS)})")
        try:
            seconds = float(delay) if delay else _DEFAULT_DELAY.get(kind, 0.0)
        except ValueError:
            raise ValueError(f"bad delay `{delay}` in `{part}`") from None
        if not math.isfinite(seconds):  # nan would never compare due: the simulation would never end
            raise ValueError(f"bad delay `{delay}` in `{part}` (not a finite number of seconds)")
        if seconds < 0:
            raise ValueError(f"negative delay in `{part}`")
        scripts.append((kind, seconds))
    return tuple(scripts)


class _Peers:
    """The simulated far ends: turns actions into future events, dropping events of cancelled legs."""

    def __init__(self, outcomes: Mapping[str, str]) -> None:
        self.scripts = {key: parse_outcome(spec) for key, spec in outcomes.items()}
        self.queue: list[tuple[float, int, int, Event]] = []
        self.live: dict[str, int] = {}
        self.attempts: dict[str, int] = {}
        self.kinds: dict[str, str] = {}
        self.seq = itertools.count()
        self.legs = itertools.count(1)

    def push(self, at: float, generation: int, event: Event) -> None:
        heapq.heappush(self.queue, (at, next(self.seq), generation, event))

    def start_leg(self, target: str, name: str, now: float) -> None:
        generation = next(self.legs)
        self.live[target] = generation
        script = self.scripts.get(target) or self.scripts.get(name) or (("timeout", 0.0),)
        attempt = self.attempts.get(target, 0)
        self.attempts[target] = attempt + 1
        kind, delay = script[min(attempt, len(script) - 1)]
        self.kinds[target] = kind
        if kind == "no-response":
            return
        if kind != "unreachable" and (delay > 0 or kind in ("answer", "answer-unconfirmed", "timeout")):
            self.push(now, generation, LegProgressed(target))
        if kind in ("answer", "answer-unconfirmed"):
            self.push(now + delay, generation, LegAnswered(target))
        elif kind in _FAILURES:
            self.push(now + delay, generation, LegFailed(target, _FAILURES[kind], "simulated"))

    def apply(self, actions: Sequence[Action], now: float, prompt_seconds: Mapping[str, float]) -> None:
        for action in actions:
            if isinstance(action, RingTargets):
                for target in action.targets:
                    self.start_leg(target, action.name, now)
            elif isinstance(action, DialNumber):
                self.start_leg(action.number, action.number, now)
            elif isinstance(action, CancelTargets):
                for target in action.targets:
                    self.live.pop(target, None)
            elif isinstance(action, RequireConfirm):
                if self.kinds.get(action.target) == "answer" and action.target in self.live:
                    self.push(now + _CONFIRM_DELAY, self.live[action.target],
                              DigitReceived(action.target, action.digit))
            elif isinstance(action, PlayMessage):
                self.push(now + prompt_seconds.get(action.prompt, 3.0), 0, PromptFinished(action.prompt))

    def pop_due(self) -> tuple[float, Event] | None:
        """Next event still relevant (its leg not cancelled/ended), or None."""
        while self.queue:
            at, _, generation, event = heapq.heappop(self.queue)
            target = getattr(event, "target", None)
            if target is not None and self.live.get(target) != generation:
                continue
            if isinstance(event, LegFailed):
                self.live.pop(event.target, None)
            return at, event
        return None

    def peek(self) -> float | None:
        return self.queue[0][0] if self.queue else None


def simulate(dialplans: DialplanSet, help_point: str, at: datetime.datetime, outcomes: Mapping[str, str], *,
             prompt_seconds: Mapping[str, float] | None = None, horizon: float = 300.0,
             hang_up_at: float | None = None) -> list[str]:
    """The exact steps and timers the plan for ``help_point`` runs at wall time ``at`` (aware), given
    scripted ``outcomes`` (module docstring); one ``+S.mmms text`` line per timeline entry."""
    dialplan = dialplans.for_help_point(help_point)
    if dialplan is None:
        raise KeyError(f"help point `{help_point}` is not served by any dialplan")
    plan = Plan(dialplan, help_point, version=dialplans.version)
    peers = _Peers(outcomes)
    if hang_up_at is not None:
        peers.push(hang_up_at, 0, CallerHungUp())
    prompts = dict(prompt_seconds or {})
    lines: list[str] = []
    printed = 0

    def run(actions: list[Action], now: float) -> None:
        nonlocal printed
        peers.apply(actions, now, prompts)
        for entry in plan.timeline[printed:]:
            lines.append(f"+{entry.at:.3f}s {_format(entry, actions, plan, at)}")
        printed = len(plan.timeline)

    run(plan.start(0.0, at), 0.0)
    while not plan.done:
        event_at, timer = peers.peek(), plan.get_timer()
        if event_at is None and timer is None:
            lines.append("stuck: the plan waits for nothing (this is a bug)")
            break
        now = min(t for t in (event_at, timer) if t is not None)
        if now > horizon:
            lines.append(f"+{horizon:.3f}s stop: simulation horizon reached; the plan is still routing "
                         "(it keeps trying until answered or the caller hangs up)")
            break
        if event_at is not None and event_at <= now:
            due = peers.pop_due()
            if due is not None:
                run(plan.handle(due[1], due[0]), due[0])
        else:
            run(plan.handle_timer(now), now)
    return lines


def _format(entry: TimelineEntry, actions: Sequence[Action], plan: Plan, at: datetime.datetime) -> str:
    if isinstance(entry, Offered):
        return (f"offered by {entry.help_point}: dialplan {entry.dialplan} v{entry.version}, "
                f"at {at.isoformat(timespec='minutes')} ({at:%A})")
    if isinstance(entry, PromptPlayed):
        if not entry.message:
            waits = any(isinstance(a, PlayMessage) and a.prompt == entry.prompt for a in actions)
            return f"play {entry.prompt} (early media{', the next step waits for its end' if waits else ''})"
        final = any(isinstance(a, PlayMessage) and a.prompt == entry.prompt and a.final for a in actions)
        return f"message {entry.prompt}" + (" (final)" if final else "")
    if isinstance(entry, PromptTimedOut):
        return f"no end reported for {entry.prompt} within the guard: going on"
    if isinstance(entry, RoomClosed):
        room = plan.dialplan.rooms.get(entry.room)
        hours = f" (schedule {describe(room.schedule)})" if room is not None and room.schedule else ""
        return f"{entry.room} closed{hours}"
    if isinstance(entry, RingStarted):
        for action in actions:
            if isinstance(action, RingTargets) and action.targets == entry.targets:
                text = (f"ring {action.name} [{', '.join(action.targets)}] {action.strategy} "
                        f"ring_timeout={action.ring_timeout:g}s connect_timeout={action.connect_timeout:g}s")
                room = plan.dialplan.rooms.get(action.name)
                if room is not None and room.confirm is not None:
                    text += f" confirm={room.confirm.digit} within {room.confirm.within:g}s"
                break
            if isinstance(action, DialNumber):
                text = (f"dial {action.number} ring_timeout={action.ring_timeout:g}s "
                        f"connect_timeout={action.connect_timeout:g}s")
                break
        else:
            text = f"ring {entry.name} [{', '.join(entry.targets)}]"
        return text + (f" attempt={entry.attempt}" if entry.attempt > 1 else "")
    if isinstance(entry, LegEnded):
        return f"{entry.target}: {entry.result}" + (f" ({entry.detail})" if entry.detail else "")
    if isinstance(entry, Answered):
        for action in actions:
            if isinstance(action, RequireConfirm) and action.target == entry.target:
                return f"{entry.target} answered: waiting for digit {action.digit} within {action.within:g}s"
        return f"{entry.target} answered"
    if isinstance(entry, Confirmed):
        return f"{entry.target} confirmed"
    if isinstance(entry, Retried):
        return f"{entry.name}: {entry.cause} -> retry (attempt {entry.attempt})"
    if isinstance(entry, FailedOver):
        if entry.to_name is None:
            where = "no more rooms"
        elif entry.to_name == entry.from_name:
            where = f"next step, {entry.to_name} again"
        else:
            where = f"failover to {entry.to_name}"
        return f"{entry.from_name}: {entry.cause} -> {where}"
    assert isinstance(entry, Finished)
    if entry.outcome == "answered":
        return f"done: answered by {entry.target}"
    if entry.outcome == "unanswered":
        return "done: unanswered, after the final message (activation recorded)"
    return "done: abandoned by the caller"


def check_command(paths: Iterable[str | Path], inventory: Inventory) -> tuple[int, list[str]]:
    """``gateway dialplan check``: exit code (0 good, 1 problems) and lines to print."""
    files = dialplan_paths(paths)
    if not files:
        return 1, ["error: no dialplan files given or found"]
    try:
        dialplans = load_dialplan_set(files, inventory)
    except InvalidDialplanError as exc:
        count = len(exc.problems)
        return 1, [str(problem) for problem in exc.problems] + [f"{count} problem{'s' * (count != 1)} found"]
    lines = []
    for file, dialplan in zip(dialplans.sources, dialplans.dialplans, strict=True):
        served = served_help_points(dialplan, inventory)
        lines.append(f"ok: {file}: dialplan {dialplan.name} serves {', '.join(served) or 'no help point'}")
    for help_point in sorted(set(inventory.help_points) - set(dialplans.served)):
        lines.append(f"warning: help point {help_point} is not served by any dialplan")
    return 0, lines


def simulate_command(paths: Iterable[str | Path], inventory: Inventory, *, help_point: str, at: str,
                     outcomes: Sequence[str] = (), timezone: str = "Europe/London",
                     horizon: float = 300.0) -> tuple[int, list[str]]:
    """``gateway dialplan simulate``: ``at`` is ISO 8601, naive meaning ``timezone``; ``outcomes`` are
    ``key=script`` strings. Exit code 0, 1 (bad dialplans, unserved help point) or 2 (bad arguments)."""
    try:
        when = datetime.datetime.fromisoformat(at)
    except ValueError:
        return 2, [f"error: --at {at!r} is not an ISO 8601 date and time"]
    if when.tzinfo is None:
        when = when.replace(tzinfo=zoneinfo.ZoneInfo(timezone))
    scripts: dict[str, str] = {}
    for item in outcomes:
        key, sep, spec = item.partition("=")
        if not sep or not key:
            return 2, [f"error: --outcome {item!r} must look like room-or-position=busy"]
        scripts[key] = spec
    try:
        return simulate_files(paths, inventory, help_point=help_point, at=when, outcomes=scripts, horizon=horizon)
    except SimulationInputError as exc:
        if exc.argument == "help_point":
            return 1, [f"error: help point {help_point} is not served by any dialplan"]
        if exc.argument == "at":
            return 2, [f"error: --at {at!r}: {exc.problem}"]
        if exc.unknown:
            return 2, [f"error: --outcome for unknown room, position or number: {', '.join(exc.keys)}"]
        item = f"{exc.keys[0]}={scripts[exc.keys[0]]}"
        return 2, [f"error: --outcome {item!r}: {exc.problem}"]


def simulate_files(paths: Iterable[str | Path], inventory: Inventory, *, help_point: str,
                   at: datetime.datetime, outcomes: Mapping[str, str],
                   horizon: float = 300.0) -> tuple[int, list[str]]:
    """Simulate a press of ``help_point`` at ``at`` (aware) through the dialplan files at ``paths``.

    Returns ``(0, lines)``, or ``(1, problems)`` when the files are not a valid dialplan set.  Raises
    :class:`SimulationInputError` naming the first argument it cannot use, checked in this order: ``at``,
    each outcome script, the outcome keys (rooms, positions and dialled numbers), the help point.
    """
    if not _YEARS[0] <= at.year <= _YEARS[1]:
        raise SimulationInputError("at", f"must be in the years {_YEARS[0]} to {_YEARS[1]} (got {at.year})")
    for key, spec in outcomes.items():
        try:
            parse_outcome(spec)
        except ValueError as exc:
            raise SimulationInputError("outcomes", str(exc), [key]) from None
    try:
        dialplans = load_dialplan_set(dialplan_paths(paths), inventory)
    except InvalidDialplanError as exc:
        return 1, [str(problem) for problem in exc.problems]
    known = set(inventory.rooms) | inventory.known_positions | {
        step.dial.number for dp in dialplans.dialplans for step in dp.steps if step.dial is not None
    } | {room for dp in dialplans.dialplans for room in dp.rooms}
    unknown = [key for key in outcomes if key not in known]
    if unknown:
        rooms = sorted(set(inventory.rooms) | {room for dp in dialplans.dialplans for room in dp.rooms})
        raise SimulationInputError("outcomes", "not a room, position or dialled number of the dialplans "
                                   f"(rooms: {', '.join(rooms[:20])}{', ...' if len(rooms) > 20 else ''})",
                                   unknown, unknown=True)
    if dialplans.for_help_point(help_point) is None:
        raise SimulationInputError("help_point", f"no dialplan serves help point {help_point!r}", unknown=True)
    return 0, simulate(dialplans, help_point, at, outcomes, horizon=horizon)
