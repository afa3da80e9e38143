"""The Sutton inventory and dialplan path shared by the dialplan tests (importable by name)."""

from __future__ import annotations

from pathlib import Path

from gateway.dialplan import Inventory

REPO = Path(__file__).resolve().parents[2]
SUTTON = REPO / "dialplans" / "sutton.yaml"

INVENTORY = Inventory(
    help_points={
        "hp-outram-street": ("sutton", "town-centre"),
        "hp-portland-square": ("sutton", "town-centre"),
        "hp-old-market-place": ("sutton",),
        "hp-blackwellgate": ("darlington",),
    },
    rooms={
        "council-cctv": ("council-cctv-1", "council-cctv-2"),
        "police-control": ("police-control-1",),
    },
    prompts=frozenset({"connecting", "call-recorded", "all-rooms-unavailable", "warning-1", "warning-2"}),
    positions=frozenset({"duty-manager"}),
    trunk=True,  # `dial` of digits is allowed (test_dialplan_validate checks a gateway without a trunk)
)
