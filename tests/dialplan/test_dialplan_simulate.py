"""Golden simulations of the demo dialplan, and the ``check``/``simulate`` command functions."""

from __future__ import annotations

import datetime

import pytest
from dialplan_fixtures import INVENTORY, SUTTON

from gateway.dialplan import (
    SimulationInputError,
    check_command,
    load_dialplan_set,
    simulate,
    simulate_command,
    simulate_files,
)
from gateway.dialplan.simulate import parse_outcome

POLICE = "ring police-control [police-control-1] parallel ring_timeout=30s connect_timeout=4s confirm=1 within 10s"
COUNCIL = ("ring council-cctv [council-cctv-1, council-cctv-2] parallel ring_timeout=20s connect_timeout=4s "
           "confirm=1 within 10s")


def run(at: str, *outcomes: str, horizon: float = 300.0) -> list[str]:
    code, lines = simulate_command([SUTTON], INVENTORY, help_point="hp-portland-square", at=at,
                                   outcomes=list(outcomes), horizon=horizon)
    assert code == 0, lines
    return lines


def test_golden_night_council_closed_police_never_answers() -> None:
    """The issue's exact command: at 02:10 the council room is closed, so its `busy` never matters."""
    assert run("2026-11-22T02:10", "council-cctv=busy", "police-control=timeout") == [
        "+0.000s offered by hp-portland-square: dialplan sutton v1, at 2026-11-22T02:10+00:00 (Sunday)",
        "+0.000s play connecting (early media)",
        "+0.000s council-cctv closed (schedule 07:00-23:00 every day Europe/London)",
        "+0.000s council-cctv: closed -> failover to police-control",
        f"+0.000s {POLICE}",
        "+30.000s police-control-1: timeout",
        "+30.000s police-control: timeout -> retry (attempt 2)",
        f"+30.000s {POLICE} attempt=2",
        "+60.000s police-control-1: timeout",
        "+60.000s police-control: timeout -> retry (attempt 3)",
        f"+60.000s {POLICE} attempt=3",
        "+90.000s police-control-1: timeout",
        "+90.000s police-control: timeout -> next step, police-control again",
        "+90.000s message all-rooms-unavailable",
        f"+93.000s {POLICE}",
        *[line for attempt in range(2, 8) for line in (
            f"+{93 + 30 * (attempt - 1)}.000s police-control-1: timeout",
            f"+{93 + 30 * (attempt - 1)}.000s police-control: timeout -> retry (attempt {attempt})",
            f"+{93 + 30 * (attempt - 1)}.000s {POLICE} attempt={attempt}",
        )],
        "+300.000s stop: simulation horizon reached; the plan is still routing (it keeps trying until answered "
        "or the caller hangs up)",
    ]


def test_golden_daytime_busy_council_police_answers_and_confirms() -> None:
    assert run("2026-11-23T09:30", "council-cctv=busy", "police-control=answer@6") == [
        "+0.000s offered by hp-portland-square: dialplan sutton v1, at 2026-11-23T09:30+00:00 (Monday)",
        "+0.000s play connecting (early media)",
        f"+0.000s {COUNCIL}",
        "+0.000s council-cctv-1: busy (simulated)",
        "+0.000s council-cctv-2: busy (simulated)",
        "+0.000s council-cctv: busy -> failover to police-control",
        f"+0.000s {POLICE}",
        "+6.000s police-control-1 answered: waiting for digit 1 within 10s",
        "+7.000s police-control-1 confirmed",
        "+7.000s done: answered by police-control-1",
    ]


def test_golden_summer_morning_bst_voicemail_then_retries() -> None:
    """07:05 BST is 06:05 UTC: open. An unconfirmed answer and a connect timeout fail over; retries are
    spaced by retry_interval (5 s from the previous attempt's start)."""
    assert run("2026-07-04T07:05", "council-cctv-1=answer-unconfirmed@2", "council-cctv-2=no-response",
               "police-control=unreachable,busy@2,answer") == [
        "+0.000s offered by hp-portland-square: dialplan sutton v1, at 2026-07-04T07:05+01:00 (Saturday)",
        "+0.000s play connecting (early media)",
        f"+0.000s {COUNCIL}",
        "+2.000s council-cctv-1 answered: waiting for digit 1 within 10s",
        "+4.000s council-cctv-2: unreachable (connect-timeout)",
        "+12.000s council-cctv-1: unconfirmed (no confirm digit)",
        "+12.000s council-cctv: unconfirmed -> failover to police-control",
        f"+12.000s {POLICE}",
        "+12.000s police-control-1: unreachable (simulated)",
        "+12.000s police-control: unreachable -> retry (attempt 2)",
        f"+17.000s {POLICE} attempt=2",
        "+19.000s police-control-1: busy (simulated)",
        "+19.000s police-control: busy -> retry (attempt 3)",
        f"+22.000s {POLICE} attempt=3",
        "+25.000s police-control-1 answered: waiting for digit 1 within 10s",
        "+26.000s police-control-1 confirmed",
        "+26.000s done: answered by police-control-1",
    ]


def test_caller_hangs_up_during_simulation() -> None:
    dialplans = load_dialplan_set([SUTTON], INVENTORY)
    at = datetime.datetime(2026, 11, 23, 9, 30, tzinfo=datetime.UTC)
    assert simulate(dialplans, "hp-outram-street", at, {}, hang_up_at=8.0)[-3:] == [
        "+8.000s council-cctv-1: cancelled (caller-hung-up)",
        "+8.000s council-cctv-2: cancelled (caller-hung-up)",
        "+8.000s done: abandoned by the caller",
    ]


def test_parse_outcome() -> None:
    assert parse_outcome("timeout,answer@5") == (("timeout", 0.0), ("answer", 5.0))
    assert parse_outcome("answer") == (("answer", 3.0),)
    with pytest.raises(ValueError, match="unknown outcome `bizzy`"):
        parse_outcome("bizzy")
    with pytest.raises(ValueError, match="bad delay"):
        parse_outcome("busy@soon")


@pytest.mark.parametrize("delay", ["nan", "inf", "-inf", "NaN"])
def test_parse_outcome_refuses_delays_that_are_not_finite(delay: str) -> None:
    """`answer@nan` never compares due, so the simulation never ended (the API's event loop with it)."""
    with pytest.raises(ValueError, match="not a finite number of seconds"):
        parse_outcome(f"answer@{delay}")


@pytest.mark.parametrize(
    ("kwargs", "argument", "keys", "unknown", "problem"),
    [
        ({"at": datetime.datetime(1, 1, 1, tzinfo=datetime.UTC)}, "at", (), False,
         "must be in the years 2 to 9998 (got 1)"),
        ({"at": datetime.datetime(9999, 12, 31, 23, 59, tzinfo=datetime.UTC)}, "at", (), False,
         "must be in the years 2 to 9998 (got 9999)"),
        ({"outcomes": {"police-control": "busy", "council-cctv": "answer@nan"}}, "outcomes", ("council-cctv",), False,
         "bad delay `nan` in `answer@nan` (not a finite number of seconds)"),
        ({"outcomes": {"fire-control": "busy", "police-control": "busy", "coastguard": "timeout"}}, "outcomes",
         ("fire-control", "coastguard"), True,
         "not a room, position or dialled number of the dialplans (rooms: council-cctv, police-control)"),
        ({"help_point": "hp-blackwellgate"}, "help_point", (), True,
         "no dialplan serves help point 'hp-blackwellgate'"),
    ],
)
def test_simulate_files_names_the_argument_it_cannot_use(kwargs: dict[str, object], argument: str,
                                                         keys: tuple[str, ...], unknown: bool, problem: str) -> None:
    arguments: dict[str, object] = {"help_point": "hp-portland-square", "outcomes": {},
                                    "at": datetime.datetime(2026, 11, 22, 2, 10, tzinfo=datetime.UTC)} | kwargs
    with pytest.raises(SimulationInputError) as refused:
        simulate_files([SUTTON], INVENTORY, **arguments)  # type: ignore[arg-type]
    assert (refused.value.argument, refused.value.keys, refused.value.unknown) == (argument, keys, unknown)
    assert refused.value.problem == problem


@pytest.mark.parametrize(
    ("kwargs", "expected"),
    [
        ({"at": "yesterday"}, (2, ["error: --at 'yesterday' is not an ISO 8601 date and time"])),
        ({"outcomes": ["council-cctv"]}, (2, ["error: --outcome 'council-cctv' must look like "
                                              "room-or-position=busy"])),
        ({"outcomes": ["council-cctv=bizzy"]}, (2, ["error: --outcome 'council-cctv=bizzy': unknown outcome "
                                                    "`bizzy` (expected one of answer, answer-unconfirmed, "
                                                    "timeout, no-response, busy, decline, server_error, "
                                                    "unreachable)"])),
        ({"outcomes": ["fire-control=busy"]}, (2, ["error: --outcome for unknown room, position or number: "
                                                   "fire-control"])),
        ({"help_point": "hp-blackwellgate"}, (1, ["error: help point hp-blackwellgate is not served by any "
                                                  "dialplan"])),
        ({"at": "0001-01-01T00:00"}, (2, ["error: --at '0001-01-01T00:00': must be in the years 2 to 9998 (got 1)"])),
        ({"outcomes": ["police-control=answer@nan"]}, (2, ["error: --outcome 'police-control=answer@nan': bad delay "
                                                           "`nan` in `answer@nan` (not a finite number of seconds)"])),
        ({"outcomes": ["fire-control=busy", "coastguard=busy"]}, (2, [
            "error: --outcome for unknown room, position or number: fire-control, coastguard"])),
    ],
)
def test_simulate_command_errors(kwargs: dict[str, object], expected: tuple[int, list[str]]) -> None:
    arguments: dict[str, object] = {"help_point": "hp-portland-square", "at": "2026-11-22T02:10"} | kwargs
    assert simulate_command([SUTTON], INVENTORY, **arguments) == expected  # type: ignore[arg-type]


def test_simulate_command_reports_bad_dialplans(write) -> None:  # type: ignore[no-untyped-def]
    bad = write("bad.yaml", "name: bad\nserves: {tags: [darlington]}\nsteps: [{ring: {room: police-control}}]\n")
    code, lines = simulate_command([bad], INVENTORY, help_point="hp-blackwellgate", at="2026-11-22T02:10")
    assert code == 1
    assert lines == [f"{bad}: $.steps[0]: a path of outcomes ends in silence: steps[0] (ring police-control) "
                     "timeout -> end of steps; end with a message, a ring with repeat: forever, or a dial"]


def test_check_command_ok_and_warnings() -> None:
    assert check_command([SUTTON.parent], INVENTORY) == (0, [
        f"ok: {SUTTON}: dialplan sutton serves hp-old-market-place, hp-outram-street, hp-portland-square",
        "warning: help point hp-blackwellgate is not served by any dialplan",
    ])


def test_check_command_problems(write) -> None:  # type: ignore[no-untyped-def]
    bad = write("bad.yaml", "name: bad\nserves: {tags: [sutton]}\nsteps: [{ring: {room: police-control}}]\n")
    code, lines = check_command([SUTTON, bad], INVENTORY)
    assert code == 1
    assert lines == [
        f"{bad}: $.steps[0]: a path of outcomes ends in silence: steps[0] (ring police-control) timeout -> "
        "end of steps; end with a message, a ring with repeat: forever, or a dial",
        "1 problem found",
    ]
    bad.write_text(bad.read_text().replace("ring: {room: police-control}", "ring: {room: police-control, "
                                                                           "repeat: forever}"))
    code, lines = check_command([SUTTON, bad], INVENTORY)
    assert (code, lines[-1]) == (1, "3 problems found")
    assert lines[0] == (f"{bad}: $.serves.tags: help point `hp-old-market-place` is already served by dialplan "
                        f"`sutton` ({SUTTON})")
    empty = bad.parent / "empty"
    empty.mkdir()
    assert check_command([empty], INVENTORY) == (1, ["error: no dialplan files given or found"])


def test_play_with_wait_is_simulated_to_its_end(write) -> None:  # type: ignore[no-untyped-def]
    path = write("wait.yaml", SUTTON.read_text().replace("  - play: connecting ",
                                                         "  - play: {prompt: call-recorded, wait: true}"))
    dialplans = load_dialplan_set([path], INVENTORY)
    at = datetime.datetime(2026, 11, 23, 9, 30, tzinfo=datetime.UTC)
    assert simulate(dialplans, "hp-outram-street", at, {"council-cctv": "answer"})[1:4] == [
        "+0.000s play call-recorded (early media, the next step waits for its end)",
        f"+3.000s {COUNCIL}",
        "+6.000s council-cctv-1 answered: waiting for digit 1 within 10s",
    ]
