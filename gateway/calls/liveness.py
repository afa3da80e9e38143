"""Help-point liveness: is each unit reachable right now, and why not (pure).

Rules:

* Evidence comes from two places: a REGISTER (refresh) from the unit, and the
  answer (any response, even 4xx: the unit is alive) or silence after an OPTIONS
  probe the gateway sends every ``interval`` seconds.
* A unit is **down** after ``fail_threshold`` consecutive probes failed, or
  when for ``interval + grace`` seconds (grace 60 s, issue 5 §6) it has not
  registered and no probe of it came to an outcome (answered or failed): the
  silence rule catches units never seen and probes that never conclude, while
  a failed probe is judged by the threshold alone, so one lost OPTIONS does
  not page anybody.  It comes back **up** after ``ok_threshold`` consecutive
  good probes or any REGISTER.  Thresholds stop a flaky 4G link from flapping
  the alert.
* ``interval`` 0 means the unit is never probed; its silence limit is then the
  expiry of its last registration plus ``grace`` when the shell tells it.
* Every change returns a :class:`StateChanged` with the reason in words, which
  the shell logs and counts.  Nothing here reads a clock: ``now`` is passed in.
"""

from __future__ import annotations

import enum
from dataclasses import dataclass, field


class State(enum.Enum):
    """Liveness of one help point."""

    UNKNOWN = "unknown"
    UP = "up"
    DOWN = "down"


@dataclass(frozen=True)
class StateChanged:
    """``help_point`` went from ``old`` to ``new`` because of ``reason``."""

    help_point: str
    old: State
    new: State
    reason: str


@dataclass
class _Unit:
    interval: float
    state: State = State.UNKNOWN
    last_seen: float | None = None
    failures: int = 0
    successes: int = 0
    reason: str = "no evidence yet"
    next_probe: float = 0.0
    probing: bool = False
    last_outcome: float | None = None
    """When a probe last came to an outcome, answered or failed."""
    registered_for: float = 0.0
    """Expiry granted to the last REGISTER (seconds), when the shell gave it."""

    @property
    def probed(self) -> bool:
        """False for ``options_interval: 0``: no OPTIONS at all."""
        return self.interval > 0

    def silence_limit(self, grace: float) -> float:
        """Seconds without evidence before the silence rule says down."""
        return (self.interval if self.probed else max(self.interval, self.registered_for)) + grace

    def silent_since(self, started: float) -> float:
        """Start of the current silence: last REGISTER, answer or probe outcome (else start-up)."""
        times = [t for t in (self.last_seen, self.last_outcome) if t is not None]
        return max(times) if times else started


@dataclass
class Liveness:
    """Tracks every help point; the shell feeds it evidence and asks it whom to probe."""

    grace: float = 60.0
    fail_threshold: int = 3
    ok_threshold: int = 2
    units: dict[str, _Unit] = field(default_factory=dict)
    started: float = 0.0

    def add(self, help_point: str, interval: float, now: float) -> None:
        """Start tracking a help point probed every ``interval`` seconds."""
        self.units.setdefault(help_point, _Unit(interval=interval, next_probe=now))
        if not self.started:
            self.started = now

    def state(self, help_point: str) -> tuple[State, str, float | None]:
        """``(state, reason, last_seen)`` of one unit."""
        unit = self.units[help_point]
        return unit.state, unit.reason, unit.last_seen

    def _set(self, hp: str, unit: _Unit, new: State, reason: str) -> StateChanged | None:
        unit.reason = reason
        if unit.state is new:
            return None
        old, unit.state = unit.state, new
        return StateChanged(hp, old, new, reason)

    def registered(self, help_point: str, now: float, expires: float | None = None) -> StateChanged | None:
        """The unit sent a REGISTER that we accepted (``expires``: the seconds granted, if known)."""
        unit = self.units.get(help_point)
        if unit is None:
            return None
        unit.last_seen = now
        if expires is not None:
            unit.registered_for = expires
        unit.failures = 0
        unit.successes = self.ok_threshold
        return self._set(help_point, unit, State.UP, "registered")

    def due(self, now: float) -> list[str]:
        """Help points whose probe is due now (each returned once until its outcome is reported)."""
        out = []
        for hp, unit in self.units.items():
            if unit.probed and not unit.probing and now >= unit.next_probe:
                unit.probing = True
                out.append(hp)
        return out

    def probe_answered(self, help_point: str, now: float, status: int) -> StateChanged | None:
        """The unit answered an OPTIONS probe (any status proves it is alive)."""
        unit = self.units[help_point]
        unit.probing = False
        unit.next_probe = now + unit.interval
        unit.last_seen = unit.last_outcome = now
        unit.failures = 0
        unit.successes += 1
        if unit.state is not State.UP and unit.successes >= self.ok_threshold:
            return self._set(help_point, unit, State.UP, f"answered OPTIONS ({status})")
        if unit.state is State.UP:
            unit.reason = f"answered OPTIONS ({status})"
        return None

    def probe_failed(self, help_point: str, now: float, why: str) -> StateChanged | None:
        """The probe timed out, could not be sent, or the unit has no address."""
        unit = self.units[help_point]
        unit.probing = False
        unit.next_probe = now + unit.interval
        unit.last_outcome = now
        unit.failures += 1
        unit.successes = 0
        if unit.failures >= self.fail_threshold:
            return self._set(help_point, unit, State.DOWN, f"{unit.failures} probes failed: {why}")
        return self.check(help_point, now)

    def check(self, help_point: str, now: float) -> StateChanged | None:
        """Apply the silence rule: no REGISTER and no probe outcome within interval + grace -> down."""
        unit = self.units[help_point]
        since = unit.silent_since(self.started)
        limit = unit.silence_limit(self.grace)
        if now - since >= limit:
            what = "never seen" if unit.last_seen is None else f"silent for {now - since:.0f} s"
            return self._set(help_point, unit, State.DOWN, f"{what} (limit {limit:.0f} s)")
        return None

    def check_all(self, now: float) -> list[StateChanged]:
        """:meth:`check` every unit."""
        return [c for hp in self.units if (c := self.check(hp, now)) is not None]

    def next_deadline(self) -> float | None:
        """When the shell must call :meth:`due`/:meth:`check_all` next."""
        times = [u.next_probe for u in self.units.values() if u.probed and not u.probing]
        times += [u.silent_since(self.started) + u.silence_limit(self.grace)
                  for u in self.units.values() if u.state is not State.DOWN]
        return min(times) if times else None
