"""Loader: parse errors and semantic errors name the file, the ``$.`` path and why; sets and reload."""

from __future__ import annotations

import textwrap
from pathlib import Path

import pytest
from dialplan_fixtures import INVENTORY, SUTTON

from gateway.dialplan import (
    DialplanConflictError,
    DialplanSyntaxError,
    DialplanValidationError,
    InvalidDialplanError,
    load_dialplan,
    load_dialplan_set,
    load_dialplans,
    parse_dialplan,
    reload,
    validate_dialplan,
)

FILE = "dialplans/sutton.yaml"

HEAD = """\
name: test
serves: {help_points: [hp-portland-square]}
"""


def problems(body: str, head: str = HEAD) -> list[str]:
    """Parse and validate a document; the problem lines, or [] when it is accepted."""
    try:
        validate_dialplan(parse_dialplan(head + textwrap.dedent(body), FILE), INVENTORY, FILE)
    except InvalidDialplanError as exc:
        return [str(problem) for problem in exc.problems]
    return []


def test_demo_dialplan_loads_and_resolves_rooms() -> None:
    dialplan = load_dialplan(SUTTON, INVENTORY)
    assert dialplan.name == "sutton"
    assert dialplan.rooms["council-cctv"].positions == ("council-cctv-1", "council-cctv-2")
    assert dialplan.rooms["police-control"].positions == ("police-control-1",)
    assert dialplan.rooms["council-cctv"].confirm is not None
    assert dialplan.rooms["council-cctv"].confirm.digit == "1"
    assert [step.kind for step in dialplan.steps] == ["play", "ring", "ring", "message", "ring"]


def test_ring_timeout_must_exceed_connect_timeout_exact_message() -> None:
    body = """\
    steps:
      - play: connecting
      - ring: {room: council-cctv}
      - ring: {room: police-control, ring_timeout: 30, connect_timeout: 45, repeat: forever}
    """
    assert problems(body) == [
        "dialplans/sutton.yaml: $.steps[2].ring.ring_timeout: must be > connect_timeout (30 <= 45)"
    ]


@pytest.mark.parametrize(
    ("body", "expected"),
    [
        (
            "steps:\n  - rign: {room: police-control}\n",
            "dialplans/sutton.yaml: $.steps[0]: Object contains unknown field `rign`",
        ),
        (
            "steps:\n  - ring: {room: police-control, ring_timeout: 900}\n",
            "dialplans/sutton.yaml: $.steps[0].ring.ring_timeout: Expected `float` <= 300.0",
        ),
        (
            "steps:\n  - ring: {room: police-control, connect_timeout: 0}\n",
            "dialplans/sutton.yaml: $.steps[0].ring.connect_timeout: Expected `float` >= 0.5",
        ),
        (
            "steps:\n  - ring: {room: police-control, strategy: random}\n",
            "dialplans/sutton.yaml: $.steps[0].ring.strategy: Invalid enum value 'random'",
        ),
        (
            "steps:\n  - ring: {room: police-control}\n    message: warning-1\n",
            "dialplans/sutton.yaml: $.steps[0]: a step needs exactly one of play, message, ring, dial, goto "
            "(got message, ring)",
        ),
        (
            "rooms:\n  council-cctv:\n    schedule: {open: [{hours: '7-23'}]}\nsteps: []\n",
            "dialplans/sutton.yaml: $.rooms.council-cctv.schedule.open[0]: hours must look like 07:00-23:00, got '7-23'",
        ),
        (
            "rooms:\n  council-cctv:\n    schedule: {timezone: Europe/Sutton, open: [{hours: 07:00-23:00}]}\n"
            "steps: []\n",
            "dialplans/sutton.yaml: $.rooms.council-cctv.schedule: unknown timezone 'Europe/Sutton'",
        ),
        (
            "rooms:\n  council-cctv:\n    confirm: {digit: 12}\nsteps: []\n",
            "dialplans/sutton.yaml: $.rooms.council-cctv.confirm.digit: Invalid enum value 12",
        ),
        (
            "steps:\n  - ring: {room: police-control, on: {busy: {retry: 2, goto: x}}}\n",
            "dialplans/sutton.yaml: $.steps[0].ring.on.busy: an action needs exactly one of retry, goto, play "
            "(got retry, goto)",
        ),
        (
            "steps:\n  - dial: {number: 'call the police'}\n",
            "dialplans/sutton.yaml: $.steps[0].dial.number: Expected `str` matching regex "
            "'^(\\\\+?[0-9]{3,15}|sips?:[^\\\\s]+)$'",
        ),
    ],
)
def test_schema_errors_have_file_path_and_why(body: str, expected: str) -> None:
    assert problems(body) == [expected]


def test_missing_required_field_and_bad_yaml() -> None:
    assert problems("steps: []\n", head="name: test\n") == [
        "dialplans/sutton.yaml: $: Object missing required field `serves`"
    ]
    assert problems("steps: [{play: connecting\n") == [
        "dialplans/sutton.yaml: $: invalid YAML at line 4, column 1: expected ',' or '}', but got '<stream end>'"
    ]
    assert problems("", head="") == ["dialplans/sutton.yaml: $: Expected `object`, got `null`"]


def test_yaml_1_1_traps_are_defused() -> None:
    """``on:`` stays a key (not True) and 23:00 stays a string (not the base-60 integer 1380)."""
    dialplan = parse_dialplan(HEAD + textwrap.dedent("""\
        rooms:
          council-cctv:
            schedule: {open: [{hours: 07:00-23:00}]}
        steps:
          - ring: {room: council-cctv, on: {busy: next}}
    """), FILE)
    assert dialplan.steps[0].ring is not None
    assert dialplan.steps[0].ring.on == {"busy": "next"}
    assert dialplan.rooms["council-cctv"].schedule is not None
    assert dialplan.rooms["council-cctv"].schedule.open[0].span == (7 * 60, 23 * 60)


def test_unknown_references_are_all_reported() -> None:
    head = "name: test\nserves: {help_points: [hp-nowhere], tags: [kirkby]}\n"
    body = """\
    rooms:
      control-room-9: {}
      council-cctv: {positions: [council-cctv-3]}
    steps:
      - label: a
        play: welcome
      - label: a
        ring: {room: fire-control, on: {bsy: next, busy: {goto: nowhere}, timeout: {play: goodbye}}}
      - ring: {positions: [police-control-1, pc-99]}
      - ring: {room: police-control, positions: [council-cctv-1]}
      - message: all-rooms-gone
      - goto: b
    """
    assert problems(body, head) == [
        "dialplans/sutton.yaml: $.serves.help_points[0]: unknown help point `hp-nowhere`",
        "dialplans/sutton.yaml: $.serves.tags[0]: tag `kirkby` matches no help point",
        "dialplans/sutton.yaml: $.rooms.control-room-9: unknown room `control-room-9`: not in the inventory "
        "and no positions given",
        "dialplans/sutton.yaml: $.rooms.council-cctv.positions[0]: position `council-cctv-3` is not in room "
        "`council-cctv`",
        "dialplans/sutton.yaml: $.steps[1].label: duplicate label `a` (also steps[0])",
        "dialplans/sutton.yaml: $.steps[0].play: unknown prompt `welcome`",
        "dialplans/sutton.yaml: $.steps[1].ring.room: unknown room `fire-control`",
        "dialplans/sutton.yaml: $.steps[1].ring.on.bsy: unknown cause `bsy` (expected default or one of "
        "timeout, busy, decline, server_error, unreachable, unconfirmed, closed)",
        "dialplans/sutton.yaml: $.steps[1].ring.on.busy.goto: unknown label `nowhere`",
        "dialplans/sutton.yaml: $.steps[1].ring.on.timeout.play: unknown prompt `goodbye`",
        "dialplans/sutton.yaml: $.steps[2].ring.positions[1]: unknown position `pc-99`",
        "dialplans/sutton.yaml: $.steps[3].ring.positions[0]: position `council-cctv-1` is not in room "
        "`police-control`",
        "dialplans/sutton.yaml: $.steps[4].message: unknown prompt `all-rooms-gone`",
        "dialplans/sutton.yaml: $.steps[5].goto: unknown label `b`",
    ]


def test_repeat_with_on_default_is_dead_config() -> None:
    body = """\
    steps:
      - ring: {room: police-control, repeat: 3, on: {default: {retry: forever}}}
    """
    assert problems(body) == [
        "dialplans/sutton.yaml: $.steps[0].ring.repeat: has no effect because on.default is given"
    ]


def test_unreadable_file(tmp_path: Path) -> None:
    with pytest.raises(DialplanSyntaxError) as info:
        load_dialplan(tmp_path / "missing.yaml", INVENTORY)
    assert str(info.value) == f"{tmp_path / 'missing.yaml'}: $: cannot read: No such file or directory"


SIMPLE = """\
name: {name}
serves: {serves}
steps:
  - ring: {{room: police-control, repeat: forever}}
"""


def test_help_point_served_twice_is_a_conflict(write) -> None:  # type: ignore[no-untyped-def]
    a = write("a.yaml", SIMPLE.format(name="a", serves="{tags: [sutton]}"))
    b = write("b.yaml", SIMPLE.format(name="b", serves="{help_points: [hp-blackwellgate, hp-outram-street]}"))
    with pytest.raises(DialplanConflictError) as info:
        load_dialplans([a, b], INVENTORY)
    assert [str(p) for p in info.value.problems] == [
        f"{b}: $.serves.help_points[1]: help point `hp-outram-street` is already served by dialplan `a` ({a})"
    ]


def test_duplicate_names_and_mixed_errors_across_files(write) -> None:  # type: ignore[no-untyped-def]
    a = write("a.yaml", SIMPLE.format(name="same", serves="{help_points: [hp-outram-street]}"))
    b = write("b.yaml", SIMPLE.format(name="same", serves="{help_points: [hp-blackwellgate]}"))
    c = write("c.yaml", "name: c\n")
    with pytest.raises(InvalidDialplanError) as info:
        load_dialplans([a.parent], INVENTORY)
    assert type(info.value) is InvalidDialplanError
    assert [str(p) for p in info.value.problems] == [
        f"{c}: $: Object missing required field `serves`",
        f"{b}: $.name: dialplan name `same` is also used by {a}",
    ]


def test_directory_expansion_and_lookup(write) -> None:  # type: ignore[no-untyped-def]
    write("darlington.yaml", SIMPLE.format(name="darlington", serves="{help_points: [hp-blackwellgate]}"))
    write("notes.txt", "not a dialplan")
    tmp = write("sutton.yaml", SUTTON.read_text()).parent
    loaded = load_dialplan_set([tmp], INVENTORY)
    assert [dp.name for dp in loaded.dialplans] == ["darlington", "sutton"]
    assert loaded.served == {
        "hp-blackwellgate": "darlington",
        "hp-old-market-place": "sutton",
        "hp-outram-street": "sutton",
        "hp-portland-square": "sutton",
    }
    dialplan = loaded.for_help_point("hp-portland-square")
    assert dialplan is not None and dialplan.name == "sutton"
    assert loaded.for_help_point("hp-unknown") is None


def test_reload_bad_file_never_replaces_a_good_set(write) -> None:  # type: ignore[no-untyped-def]
    path = write("sutton.yaml", SUTTON.read_text())
    first = reload(None, [path], INVENTORY)
    assert first.version == 1 and len(first.digest) == 64
    assert reload(first, [path], INVENTORY) is first  # unchanged files: same set, same version

    path.write_text(SUTTON.read_text().replace("ring_timeout: 20", "ring_timeout: 2"))
    with pytest.raises(DialplanValidationError) as info:
        reload(first, [path], INVENTORY)
    assert str(info.value) == f"{path}: $.steps[1].ring.ring_timeout: must be > connect_timeout (2 <= 4)"

    path.write_text(SUTTON.read_text().replace("ring_timeout: 20", "ring_timeout: 25"))
    second = reload(first, [path], INVENTORY)
    assert second.version == 2 and second.digest != first.digest
    old, new = first.for_help_point("hp-outram-street"), second.for_help_point("hp-outram-street")
    assert old is not None and new is not None
    assert old.steps[1].ring is not None and old.steps[1].ring.ring_timeout == 20  # the old value object is intact
    assert new.steps[1].ring is not None and new.steps[1].ring.ring_timeout == 25


def test_inventory_change_changes_digest(write) -> None:  # type: ignore[no-untyped-def]
    import msgspec

    path = write("sutton.yaml", SUTTON.read_text())
    first = reload(None, [path], INVENTORY)
    rooms = dict(INVENTORY.rooms, **{"police-control": ("police-control-1", "police-control-2")})
    second = reload(first, [path], msgspec.structs.replace(INVENTORY, rooms=rooms))
    assert second.version == 2
    dialplan = second.for_help_point("hp-outram-street")
    assert dialplan is not None and dialplan.rooms["police-control"].positions == (
        "police-control-1", "police-control-2")


def test_reload_never_leaves_a_served_help_point_without_a_dialplan(write) -> None:  # type: ignore[no-untyped-def]
    """A deleted file (or one half-way through a non-atomic rename) must not turn presses away."""
    darlington = write("darlington.yaml", SIMPLE.format(name="darlington", serves="{help_points: [hp-blackwellgate]}"))
    sutton = write("sutton.yaml", SUTTON.read_text())
    first = reload(None, [sutton.parent], INVENTORY)
    darlington.unlink()
    with pytest.raises(InvalidDialplanError) as info:
        reload(first, [sutton.parent], INVENTORY)
    assert [str(p) for p in info.value.problems] == [
        f"{darlington}: $.serves: help point `hp-blackwellgate` would be served by no dialplan after this reload "
        "(file deleted or renamed?); every press from it would be turned away",
    ]
    sutton.unlink()
    with pytest.raises(InvalidDialplanError) as info:
        reload(first, [sutton.parent], INVENTORY)
    assert [str(p) for p in info.value.problems] == [
        f"{sutton.parent}: $: no dialplan files (*.yaml, *.yml) found",
    ]
    write("kirkby.yaml", SIMPLE.format(name="kirkby", serves="{help_points: [hp-blackwellgate]}"))
    write("sutton.yaml", SUTTON.read_text())
    second = reload(first, [sutton.parent], INVENTORY)  # renamed: every help point still served
    assert second.version == 2 and second.served["hp-blackwellgate"] == "kirkby"


def test_first_load_of_an_empty_directory_is_refused(tmp_path: Path) -> None:
    with pytest.raises(InvalidDialplanError) as info:
        reload(None, [tmp_path], INVENTORY)
    assert str(info.value) == f"{tmp_path}: $: no dialplan files (*.yaml, *.yml) found"


def test_duplicate_keys_are_errors_not_silently_the_last_one() -> None:
    """YAML loaders keep the last of two equal keys: a second ``steps:`` would silently drop the first plan."""
    body = """\
    steps:
      - ring: {room: police-control, repeat: forever}
    rooms:
      police-control: {confirm: {digit: 1}}
      police-control: {}
    steps:
      - message: all-rooms-unavailable
      - ring: {room: police-control, repeat: forever, repeat: 0}
    """
    assert problems(body) == [
        "dialplans/sutton.yaml: $.rooms.police-control: duplicate key `police-control` at line 7, column 3 "
        "(first at line 6, column 3); YAML would silently keep only the last",
        "dialplans/sutton.yaml: $.steps: duplicate key `steps` at line 8, column 1 (first at line 3, column 1); "
        "YAML would silently keep only the last",
        "dialplans/sutton.yaml: $.steps[1].ring.repeat: duplicate key `repeat` at line 10, column 51 "
        "(first at line 10, column 34); YAML would silently keep only the last",
    ]


def test_merge_keys_and_aliases_are_not_duplicates() -> None:
    body = """\
    steps:
      - ring: &police {room: police-control, repeat: forever}
      - ring: {<<: *police, repeat: 2}
    """
    assert problems(body) == ["dialplans/sutton.yaml: $.steps[1]: unreachable: no outcome of an earlier step leads here"]


def test_non_utf8_file_is_a_syntax_error(tmp_path: Path) -> None:
    path = tmp_path / "latin1.yaml"
    path.write_bytes(HEAD.encode() + b"description: caf\xe9\nsteps:\n  - ring: {room: police-control, repeat: forever}\n")
    with pytest.raises(DialplanSyntaxError) as info:
        load_dialplan(path, INVENTORY)
    assert str(info.value) == f"{path}: $: not UTF-8 text: byte 0xe9 at offset 71 (invalid continuation byte)"
    assert problems("description: bell\x07\nsteps: []\n") == [
        "dialplans/sutton.yaml: $: character U+0007 at offset 72: special characters are not allowed"]


def test_deep_nesting_is_a_syntax_error_not_a_recursion_error() -> None:
    """PyYAML composes nodes recursively: 5000 nested ``[`` raised RecursionError (a traceback in the CLI,
    a dead file watcher in the gateway)."""
    assert problems("steps: " + "[" * 5000 + "]" * 5000 + "\n") == [
        "dialplans/sutton.yaml: $: invalid YAML at line 3, column 39: nested more than 32 levels deep",
    ]


def test_alias_bombs_are_rejected_without_expanding() -> None:
    laughs = "".join(f"  l{i}: &l{i} [{', '.join([f'*l{i - 1}'] * 9)}]\n" for i in range(1, 10))
    assert problems("bomb:\n  l0: &l0 [lol, lol]\n" + laughs + "steps: []\n") == [
        "dialplans/sutton.yaml: $: Object contains unknown field `bomb`"]
    assert problems("description: &d [a, b]\nsteps: [*d, *d]\n") == [
        "dialplans/sutton.yaml: $.description: Expected `str`, got `array`"]


def test_huge_files_and_plans_are_refused_before_they_stall_the_gateway(tmp_path: Path) -> None:
    """Pure-Python YAML parses about 250 KB a second and the outcome search grows with steps x retries;
    a reload runs on the event loop, so an oversized file would stall every call for seconds."""
    path = tmp_path / "huge.yaml"
    path.write_text(SUTTON.read_text() + "# padding\n" * 30000)
    with pytest.raises(DialplanSyntaxError) as info:
        load_dialplan(path, INVENTORY)
    assert str(info.value) == f"{path}: $: file too large: more than 262144 bytes (a dialplan is a few kilobytes)"
    steps = "".join(f"  - ring: {{room: police-control, on: {{busy: {{goto: s{i}}}}}}}\n    label: s{i}\n"
                    for i in range(101))
    assert problems("steps:\n" + steps) == ["dialplans/sutton.yaml: $.steps: Expected `array` of length <= 100"]


@pytest.mark.parametrize(
    ("schedule", "why"),
    [
        ("{open: [{days: [], hours: 07:00-23:00}]}",
         "$.rooms.council-cctv.schedule.open[0]: days must list at least one day (a window with no days never opens)"),
        ("{open: [{days: [bank-holiday], hours: 07:00-23:00}]}",
         "$.rooms.council-cctv.schedule: never open: its windows are for bank holidays only and bank_holidays "
         "lists none"),
    ],
)
def test_a_schedule_that_can_never_open_is_an_error(schedule: str, why: str) -> None:
    """The room would be skipped as closed on every press, silently, instead of ringing."""
    assert problems(f"""\
    rooms:
      council-cctv: {{schedule: {schedule}}}
    steps:
      - ring: {{room: council-cctv}}
      - ring: {{room: police-control, repeat: forever}}
    """) == [f"dialplans/sutton.yaml: {why}"]


def test_ringing_a_room_without_positions_is_an_error() -> None:
    """Its ring fails at once as unreachable: `repeat: forever` passed the search yet never rang anybody."""
    import msgspec

    inventory = msgspec.structs.replace(INVENTORY, rooms=dict(INVENTORY.rooms, **{"night-desk": ()}))
    text = HEAD + "steps:\n  - ring: {room: council-cctv}\n  - ring: {room: night-desk, repeat: forever}\n"
    with pytest.raises(DialplanValidationError) as info:
        validate_dialplan(parse_dialplan(text, FILE), inventory, FILE)
    assert str(info.value) == ("dialplans/sutton.yaml: $.steps[1].ring.room: room `night-desk` has no positions "
                               "in the inventory: ringing it would reach nobody")
