"""Validator: a search over every outcome; any path that can end in silence, or loop without ringing
anyone, is rejected with a witness path."""

from __future__ import annotations

from textwrap import dedent

import pytest
from test_dialplan_load import problems

F = "dialplans/sutton.yaml: "
HINT = "; end with a message, a ring with repeat: forever, or a dial"

ROOMS = """\
rooms:
  council-cctv:
    schedule: {open: [{hours: 07:00-23:00}]}
    confirm: {digit: 1}
"""


def test_last_step_a_plain_ring_ends_in_silence() -> None:
    assert problems("""\
    steps:
      - play: connecting
      - ring: {room: police-control}
    """) == [
        F + "$.steps[1]: a path of outcomes ends in silence: steps[0] (play) -> steps[1] (ring police-control) "
        "timeout -> end of steps" + HINT,
    ]


def test_forever_ring_with_busy_next_still_ends_in_silence() -> None:
    """The last element *is* a forever ring, but one cause leaves it: a last-element check would pass."""
    assert problems("""\
    steps:
      - ring: {room: police-control, repeat: forever, on: {busy: next}}
    """) == [
        F + "$.steps[0]: a path of outcomes ends in silence: steps[0] (ring police-control) busy -> end of steps"
        + HINT,
    ]


def test_finite_retries_run_out() -> None:
    assert problems("""\
    steps:
      - message: call-recorded
      - ring: {room: police-control, on: {default: {retry: 3}}}
    """) == [
        F + "$.steps[1]: a path of outcomes ends in silence: steps[0] (message) -> steps[1] (ring police-control) "
        "timeout -> steps[1] (ring police-control) timeout -> steps[1] (ring police-control) timeout -> "
        "steps[1] (ring police-control) timeout -> end of steps" + HINT,
    ]


def test_play_message_on_some_causes_only() -> None:
    assert problems("""\
    steps:
      - ring: {room: police-control, on: {timeout: {play: all-rooms-unavailable}}}
    """) == [
        F + "$.steps[0]: a path of outcomes ends in silence: steps[0] (ring police-control) busy -> end of steps"
        + HINT,
    ]
    assert problems("""\
    steps:
      - ring: {room: police-control, on: {default: {play: all-rooms-unavailable}}}
    """) == []


def test_goto_that_jumps_past_the_safe_step() -> None:
    assert problems("""\
    steps:
      - ring: {room: police-control, on: {busy: {goto: tail}}}
      - message: all-rooms-unavailable
      - label: tail
        ring: {room: council-cctv}
      - message: all-rooms-unavailable
    """) == []
    assert problems("""\
    steps:
      - ring: {room: police-control, on: {busy: {goto: tail}}}
      - message: all-rooms-unavailable
      - label: tail
        ring: {room: council-cctv, on: {unreachable: {goto: end}}}
      - message: all-rooms-unavailable
      - label: end
        play: connecting
    """) == [
        F + "$.steps[4]: a path of outcomes ends in silence: steps[0] (ring police-control) busy -> "
        "steps[2] (ring council-cctv) unreachable -> steps[4] (play) -> end of steps" + HINT,
    ]


def test_forever_ring_of_a_scheduled_room_loops_while_closed() -> None:
    assert problems(ROOMS + dedent("""\
    steps:
      - ring: {room: council-cctv, repeat: forever}
    """)) == [
        F + "$.steps[0]: loop without a safe exit, it never rings anyone: steps[0] (ring council-cctv) closed "
        "-> steps[0] (ring council-cctv)",
    ]


def test_goto_loop_through_messages_only() -> None:
    assert problems("""\
    steps:
      - ring: {room: police-control, on: {busy: {goto: sorry}}, repeat: forever}
      - label: sorry
        message: all-rooms-unavailable
      - goto: sorry
    """) == [
        F + "$.steps[1]: loop without a safe exit, it never rings anyone: steps[1] (message) -> "
        "steps[2] (goto) goto -> steps[1] (message)",
    ]


def test_loop_through_closed_rooms_and_gotos() -> None:
    """council closed -> goto back: both edges ring nobody; the timeout edge's loop would be fine."""
    assert problems(ROOMS + dedent("""\
    steps:
      - label: top
        ring: {room: council-cctv, on: {default: {goto: top}}}
    """)) == [
        F + "$.steps[0]: loop without a safe exit, it never rings anyone: steps[0] (ring council-cctv) closed "
        "-> steps[0] (ring council-cctv)",
    ]


def test_loops_that_ring_someone_are_safe() -> None:
    assert problems(ROOMS + dedent("""\
    steps:
      - label: top
        play: connecting
      - ring: {room: council-cctv}
      - ring: {room: police-control, repeat: 1}
      - message: all-rooms-unavailable
      - goto: top
    """)) == []


def test_unconfirmed_is_searched_only_where_a_room_confirms() -> None:
    assert problems(ROOMS + dedent("""\
    steps:
      - ring: {room: police-control, repeat: forever, on: {unconfirmed: next}}
    """)) == []  # police-control has no confirm rule here: the cause cannot happen
    assert problems(ROOMS + dedent("""\
    steps:
      - ring: {room: council-cctv, on: {closed: {goto: police}, default: {retry: forever}, unconfirmed: next}}
      - label: police
        ring: {room: police-control, repeat: forever}
    """)) == []
    assert problems(ROOMS + dedent("""\
    steps:
      - ring: {room: police-control, repeat: forever}
      - label: council
        ring: {room: council-cctv, on: {closed: {goto: council}, default: {retry: forever}, unconfirmed: next}}
    """)) == [
        F + "$.steps[1]: unreachable: no outcome of an earlier step leads here",
    ]
    assert problems(ROOMS + dedent("""\
    steps:
      - ring: {room: police-control, on: {busy: {goto: council}}, repeat: forever}
      - label: council
        ring: {room: council-cctv, on: {closed: {goto: start}, default: {retry: forever}, unconfirmed: next}}
    """).replace("goto: start", "goto: council")) == [
        F + "$.steps[1]: a path of outcomes ends in silence: steps[0] (ring police-control) busy -> "
        "steps[1] (ring council-cctv) unconfirmed -> end of steps" + HINT,
        F + "$.steps[1]: loop without a safe exit, it never rings anyone: steps[1] (ring council-cctv) closed "
        "-> steps[1] (ring council-cctv)",
    ]


def test_last_resort_dial_is_safe_unless_limited() -> None:
    assert problems("""\
    steps:
      - ring: {room: council-cctv}
      - dial: {number: "+441623000000"}
    """) == []
    assert problems("""\
    steps:
      - dial: {number: "+441623000000", repeat: 2}
    """) == [
        F + "$.steps[0]: a path of outcomes ends in silence: steps[0] (dial +441623000000) timeout -> "
        "steps[0] (dial +441623000000) timeout -> steps[0] (dial +441623000000) timeout -> end of steps" + HINT,
    ]


def test_unreachable_steps_and_plans_that_never_ring() -> None:
    assert problems("""\
    steps:
      - ring: {room: police-control, repeat: forever}
      - message: all-rooms-unavailable
    """) == [F + "$.steps[1]: unreachable: no outcome of an earlier step leads here"]
    assert problems("""\
    steps:
      - message: all-rooms-unavailable
    """) == [F + "$.steps: never rings anyone: add a ring or dial step"]


def test_empty_steps() -> None:
    assert problems("steps: []\n") == [F + "$.steps: never rings anyone: add a ring or dial step"]


@pytest.mark.parametrize("cause", ["timeout", "busy", "decline", "server_error", "unreachable", "unconfirmed",
                                   "closed"])
def test_the_demo_is_safe_for_every_first_failure(cause: str) -> None:
    from dialplan_fixtures import INVENTORY, SUTTON

    from gateway.dialplan import load_dialplan
    from gateway.dialplan.model import route_after

    dialplan = load_dialplan(SUTTON, INVENTORY)
    route = route_after(dialplan, 1, cause, 0)  # type: ignore[arg-type]
    assert (route.index, route.retry) == (2, False)


def test_dial_of_digits_needs_a_trunk_a_sip_uri_does_not() -> None:
    """Without ``sip.trunk`` a dial of digits can never be placed: it would fail every time, so a plan that
    relies on it as its last resort ends in silence.  A sip: URI is dialled directly."""
    import msgspec
    from dialplan_fixtures import INVENTORY

    from gateway.dialplan.load import parse_dialplan, validate_dialplan
    from gateway.dialplan.model import InvalidDialplanError

    no_trunk = msgspec.structs.replace(INVENTORY, trunk=False)
    head = "name: sutton\nserves: {help_points: [hp-portland-square]}\nsteps:\n"

    def check(step: str) -> list[str]:
        try:
            validate_dialplan(parse_dialplan(head + step, "dialplans/sutton.yaml"), no_trunk, "dialplans/sutton.yaml")
        except InvalidDialplanError as exc:
            return [str(p) for p in exc.problems]
        return []

    assert check('  - dial: {number: "+441623000000"}\n') == [
        F + "$.steps[0].dial.number: `+441623000000` can only be dialled through a trunk, and none is configured "
        "(sip.trunk in the gateway config); or dial a sip: URI"]
    assert check('  - dial: {number: "sip:duty@192.0.2.60:5060"}\n') == []
