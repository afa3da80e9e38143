"""RFC 4733 telephone-events: payload encode/decode and a digit detector.

Pure.  A telephone-event payload is 4 octets: event (8 bits), End bit,
reserved bit, volume (6 bits), duration (16 bits, timestamp units).  All the
packets of one event share the RTP timestamp of its start (RFC 4733 §2.5.1.2)
and the final packet (End bit set) is usually sent three times (§2.5.1.4).
"""

from __future__ import annotations

import struct
from collections import deque
from dataclasses import dataclass

from .errors import RtpError

#: Event codes 0-16 (RFC 4733 §3.2) and their digits.
EVENT_DIGITS = "0123456789*#ABCD!"  # 16 = flash, shown as "!"
_PAYLOAD = struct.Struct("!BBH")


@dataclass(frozen=True, slots=True)
class TelephoneEvent:
    """One telephone-event payload (RFC 4733 §2.3)."""

    event: int
    end: bool = False
    volume: int = 10
    duration: int = 0

    @property
    def digit(self) -> str | None:
        """The DTMF digit for events 0-16, else None."""
        return EVENT_DIGITS[self.event] if self.event < len(EVENT_DIGITS) else None

    def __bytes__(self) -> bytes:
        if not 0 <= self.volume <= 63:
            raise RtpError("telephone-event volume must be 0..63")
        return _PAYLOAD.pack(self.event, (0x80 if self.end else 0) | self.volume, self.duration & 0xFFFF)

    @classmethod
    def unpack(cls, payload: bytes) -> TelephoneEvent:
        """Parse the first event of a payload (redundant trailing events are ignored)."""
        if len(payload) < 4:
            raise RtpError(f"telephone-event payload too short ({len(payload)} octets)")
        event, flags, duration = _PAYLOAD.unpack_from(payload)
        return cls(event, bool(flags & 0x80), flags & 0x3F, duration)

    @classmethod
    def from_digit(cls, digit: str, **kwargs: object) -> TelephoneEvent:
        """The event for a DTMF digit ``0-9 * # A-D``."""
        index = EVENT_DIGITS.find(digit.upper())
        if index < 0 or digit == "!":
            raise RtpError(f"not a DTMF digit: {digit!r}")
        return cls(index, **kwargs)  # type: ignore[arg-type]


class DtmfDetector:
    """Reports each digit exactly once.

    A digit is reported on its first End packet; further End packets with the
    same RTP timestamp (the retransmissions) are ignored, also when they arrive
    after the next event started (reordered): the timestamps of the last few
    reported events are kept.  If an event's End packets were all lost, the
    digit is reported when the next event (a new timestamp) starts, or by
    :meth:`flush`.

    A key held longer than 0xFFFF timestamp units (8.2 s at 8 kHz) arrives as
    segments (RFC 4733 §2.5.1.3): the same event code at the previous segment's
    timestamp plus 0xFFFF, with no End bit on the earlier segments.  A new
    segment continues the current event: one held key is one digit.
    """

    #: Reported events remembered, so a late packet of one is not taken for a new event.
    REMEMBERED = 8

    def __init__(self) -> None:
        self._current_ts: int | None = None
        self._current: TelephoneEvent | None = None
        self._reported: deque[int] = deque(maxlen=self.REMEMBERED)

    def receive(self, timestamp: int, payload: bytes) -> list[str]:
        """Feed one telephone-event packet; returns the digits completed by it (usually 0 or 1)."""
        try:
            event = TelephoneEvent.unpack(payload)
        except RtpError:
            return []
        if timestamp in self._reported:
            return []  # a retransmitted End or a late packet of an event already reported
        digits: list[str] = []
        previous = self._current_ts
        if timestamp != previous:
            if previous is not None and self._continues(previous, timestamp, event):
                # The next segment of a long event: still the same key.  The old segment's timestamp is
                # remembered with the reported ones, so a late packet of it is not taken for a new event.
                self._reported.append(previous)
            else:
                digits.extend(self.flush())
            self._current_ts = timestamp
        self._current = event
        if event.end:
            self._reported.append(timestamp)
            if event.digit is not None:
                digits.append(event.digit)
        return digits

    def _continues(self, previous: int, timestamp: int, event: TelephoneEvent) -> bool:
        """Whether *timestamp* starts the next segment of the current, not yet ended, event."""
        current = self._current
        return (current is not None and not current.end and current.event == event.event
                and (timestamp - previous) & 0xFFFFFFFF == 0xFFFF)

    def flush(self) -> list[str]:
        """Report the current event if it never saw an End packet (e.g. they were lost)."""
        event, ts = self._current, self._current_ts
        self._current = None
        if event is None or ts is None or ts in self._reported or event.digit is None:
            return []
        self._reported.append(ts)
        return [event.digit]
