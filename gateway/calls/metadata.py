"""What the operator's phone is told about an activation (issue 3 item 4).

Every INVITE to an operator position carries:

* ``From: "<help point name>" <sip:<help point id>@<gateway>>`` so any softphone shows the place;
* ``Subject: Help point <name>``;
* ``Call-Info`` (RFC 3261 §20.9, in the RFC 7852 style of ``purpose`` parameters):
  ``<camera URL>;purpose=helppoint.camera`` (the CCTV stream to look at) and
  ``<record URL>;purpose=helppoint.record`` (the activation's record in the gateway API);
* ``X-Helppoint-Id``, ``X-Helppoint-Location`` (``lat,lon`` and the address) and ``X-Activation-Id``;
* after a failed attempt, ``History-Info`` (RFC 7044) with one entry per earlier failed target (the
  latest :data:`HISTORY_ENTRIES`, numbered by their place among all attempts, so a plan that keeps
  ringing the police room for hours never grows an INVITE past what UDP and softphones take) and
  ``Reason`` (RFC 3326) naming the last failure, so the police room knows the council room failed.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

#: At most this many History-Info entries (the latest, ~90 bytes each): a plan that rings the police room
#: again every half minute for hours must not grow its INVITE past what UDP and softphones take (PJSIP
#: drops messages over 4,000 bytes; RFC 3261 §18.1.1 already advises against UDP above 1,300).
HISTORY_ENTRIES = 8


@dataclass(frozen=True)
class HelpPointInfo:
    """The inventory facts a call needs about its help point."""

    id: str
    name: str
    sip_user: str
    lat: float
    lon: float
    address: str
    camera_url: str | None = None


def _quote(text: str) -> str:
    return '"' + text.replace("\\", "\\\\").replace('"', '\\"') + '"'


def operator_headers(
    hp: HelpPointInfo,
    activation_id: str,
    record_url: str,
    failures: list[tuple[str, str]],
    room_of: Callable[[str], str | None],
) -> list[tuple[str, str]]:
    """The metadata headers of an operator INVITE."""
    headers = [("Subject", f"Help point {hp.name}")]
    info = []
    if hp.camera_url:
        info.append(f"<{hp.camera_url}>;purpose=helppoint.camera")
    info.append(f"<{record_url}{activation_id}>;purpose=helppoint.record")
    headers.append(("Call-Info", ", ".join(info)))
    headers.append(("X-Helppoint-Id", hp.id))
    headers.append(("X-Helppoint-Location", f"{hp.lat:.6f},{hp.lon:.6f};address={_quote(hp.address)}"))
    headers.append(("X-Activation-Id", activation_id))
    if failures:
        entries = []
        first = max(0, len(failures) - HISTORY_ENTRIES)
        for index, (target, detail) in enumerate(failures[first:], start=first + 1):
            status = detail.split(" ", 1)[0]
            cause = status if status.isdigit() else "480"
            room = room_of(target) or target
            entries.append(
                f"<sip:{target}@gateway?Reason=SIP%3Bcause%3D{cause}>;index=1.{index};x-room={room}"
            )
        headers.append(("History-Info", ", ".join(entries)))
        last_target, last_detail = failures[-1]
        status, _, text = last_detail.partition(" ")
        cause = status if status.isdigit() else "480"
        room = room_of(last_target) or last_target
        headers.append(("Reason", f'SIP;cause={cause};text={_quote(f"{room}: {text or last_detail}")}'))
    return headers
