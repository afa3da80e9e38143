"""Loading and validating dialplan files, and the versioned :class:`DialplanSet` swapped on reload.

Rules:

1. YAML is read with YAML 1.2 core scalars: ``on``/``off``/``yes``/``no`` stay strings (``on:`` is a
   key here) and ``23:00`` is not the base-60 integer 1380.
2. Schema problems (types, unknown fields, ranges) come from msgspec with their ``$.`` path; semantic
   problems are collected with the same path style; every error names file, path and why.
3. Validation is a search over every outcome of every step (see :func:`.model.route_after`): a path
   that falls off the end without a message, a loop that never rings anyone, an unreachable step, or a
   dialplan that never rings anyone is rejected.
4. :func:`reload` builds a complete new set or raises: a bad file never replaces a good one. An
   unchanged digest keeps the old set (and its version). No files at all is an error, and so is a new set
   that serves no longer a help point the old set served (a deleted file, a rename half done): a help
   point without a dialplan turns every press away.
5. Input is bounded before it is parsed: at most :data:`MAX_FILE_BYTES` per file, :data:`MAX_DEPTH`
   levels of nesting and 100 steps (the outcome search grows with steps times retries), so no file can
   exhaust memory or the stack or stall the event loop that runs a reload. Aliases are never expanded
   (the schema has no nested lists for an alias bomb to grow in).
"""

from __future__ import annotations

import hashlib
import re
from collections import deque
from collections.abc import Callable, Iterable, Sequence
from pathlib import Path

import msgspec
import yaml  # type: ignore[import-untyped]

from .model import (
    CAUSES,
    Cause,
    Dialplan,
    DialplanConflictError,
    DialplanSyntaxError,
    DialplanValidationError,
    FailureAction,
    InvalidDialplanError,
    Inventory,
    OnAction,
    Problem,
    Ring,
    Room,
    route_after,
)

__all__ = [
    "DialplanSet",
    "dialplan_paths",
    "load_dialplan",
    "load_dialplan_set",
    "load_dialplans",
    "parse_dialplan",
    "reload",
    "served_help_points",
    "validate_dialplan",
]


MAX_FILE_BYTES = 256 * 1024
"""Largest dialplan file read (rule 5); pure-Python YAML parses about 250 KB a second."""
MAX_DEPTH = 32
"""Deepest nesting of YAML collections accepted (rule 5); a dialplan needs about 7."""


class _Loader(yaml.SafeLoader):  # type: ignore[misc]
    """SafeLoader with YAML 1.2 core bool/int/float resolution (rule 1) and a nesting limit (rule 5)."""

    _depth = 0

    def compose_node(self, parent: yaml.Node | None, index: object) -> yaml.Node:
        """The composer recurses once per level: refuse a deep document before Python's stack runs out."""
        if self._depth >= MAX_DEPTH:
            raise yaml.composer.ComposerError(None, None, f"nested more than {MAX_DEPTH} levels deep",
                                              self.peek_event().start_mark)
        self._depth += 1
        try:
            return super().compose_node(parent, index)  # type: ignore[no-any-return]
        finally:
            self._depth -= 1


_DROPPED = {"tag:yaml.org,2002:bool", "tag:yaml.org,2002:int", "tag:yaml.org,2002:float"}
_Loader.yaml_implicit_resolvers = {
    first: [(tag, regexp) for tag, regexp in resolvers if tag not in _DROPPED]
    for first, resolvers in yaml.SafeLoader.yaml_implicit_resolvers.items()
}
_Loader.add_implicit_resolver("tag:yaml.org,2002:bool", re.compile(r"^(?:true|True|TRUE|false|False|FALSE)$"),
                              list("tTfF"))
_Loader.add_implicit_resolver("tag:yaml.org,2002:int", re.compile(r"^[-+]?(?:0|[1-9][0-9]*)$"),
                              list("-+0123456789"))
_Loader.add_implicit_resolver("tag:yaml.org,2002:float",
                              re.compile(r"^[-+]?(?:[0-9]+\.[0-9]*|\.[0-9]+)(?:[eE][-+]?[0-9]+)?$"),
                              list("-+0123456789."))

_AT = re.compile(r"^(?P<why>.*?) - at `(?P<path>[^`]*)`(?: in `(?P<within>[^`]*)`)?$", re.S)


def parse_dialplan(text: str | bytes, file: str = "<dialplan>") -> Dialplan:
    """Decode one document into a :class:`Dialplan` (schema only); raises :class:`DialplanSyntaxError`."""
    try:
        loader = _Loader(text)
        try:
            node = loader.get_single_node()
            duplicates = _duplicate_keys(node, file)
            if duplicates:
                raise DialplanSyntaxError(duplicates)
            document = None if node is None else loader.construct_document(node)
        finally:
            loader.dispose()
    except yaml.reader.ReaderError as exc:  # undecodable bytes, or a control character
        why = (f"character U+{exc.character:04X} at offset {exc.position}: {exc.reason}" if exc.encoding == "unicode"
               else f"not {exc.encoding.upper()} text: byte {exc.character:#04x} at offset {exc.position} ({exc.reason})")
        raise DialplanSyntaxError([Problem(file, "$", why)]) from None
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None)
        where = f" at line {mark.line + 1}, column {mark.column + 1}" if mark is not None else ""
        why = getattr(exc, "problem", None) or str(exc)
        raise DialplanSyntaxError([Problem(file, "$", f"invalid YAML{where}: {why}")]) from None
    try:
        return msgspec.convert(document, Dialplan, str_keys=True)
    except msgspec.ValidationError as exc:
        match = _AT.match(str(exc))
        if match is None:
            raise DialplanSyntaxError([Problem(file, "$", str(exc))]) from None
        path = match["path"] if match["within"] is None else f"{match['within']} (a {match['path']})"
        raise DialplanSyntaxError([Problem(file, _name_key(document, path), match["why"])]) from None


def _duplicate_keys(root: yaml.Node | None, file: str) -> list[Problem]:
    """Rule 2 for keys given twice in one mapping, which YAML loaders resolve silently to the last one
    (a second ``steps:`` would drop the first plan). Iterative, and each node once: aliases share nodes."""
    problems: list[tuple[int, int, Problem]] = []
    stack: list[tuple[yaml.Node, str]] = [] if root is None else [(root, "$")]
    seen: set[int] = set()
    while stack:
        node, path = stack.pop()
        if id(node) in seen:
            continue
        seen.add(id(node))
        children: list[tuple[yaml.Node, str]] = []
        if isinstance(node, yaml.MappingNode):
            first: dict[str, yaml.Node] = {}
            for key, value in node.value:
                if not isinstance(key, yaml.ScalarNode) or key.tag == "tag:yaml.org,2002:merge":
                    continue
                if key.value in first:
                    was, at = first[key.value].start_mark, key.start_mark
                    problems.append((at.line, at.column, Problem(
                        file, f"{path}.{key.value}", f"duplicate key `{key.value}` at line {at.line + 1}, column "
                        f"{at.column + 1} (first at line {was.line + 1}, column {was.column + 1}); YAML would "
                        "silently keep only the last")))
                first.setdefault(key.value, key)
                children.append((value, f"{path}.{key.value}"))
        elif isinstance(node, yaml.SequenceNode):
            children = [(item, f"{path}[{i}]") for i, item in enumerate(node.value)]
        stack.extend(reversed(children))
    return [problem for _, _, problem in sorted(problems, key=lambda found: found[:2])]


_ON_PATH = re.compile(r"^\$\.steps\[(\d+)\]\.(ring|dial)\.on\[\.\.\.\]")


def _name_key(document: object, path: str) -> str:
    """msgspec writes mapping keys as ``[...]``; find the key whose value fails (rooms, ``on``)."""
    kind: object
    try:
        if path.startswith("$.rooms[...]"):
            mapping, kind, prefix = document["rooms"], Room, "$.rooms"  # type: ignore[index]
        elif (match := _ON_PATH.match(path)) is not None:
            step = document["steps"][int(match[1])][match[2]]  # type: ignore[index]
            mapping, kind, prefix = step["on"], OnAction, match[0][: -len("[...]")]
        else:
            return path
        for key, value in mapping.items():
            try:
                msgspec.convert(value, kind, str_keys=True)
            except msgspec.ValidationError:
                return path.replace(f"{prefix}[...]", f"{prefix}.{key}", 1)
    except (KeyError, IndexError, TypeError, AttributeError):
        pass
    return path


def served_help_points(dialplan: Dialplan, inventory: Inventory) -> tuple[str, ...]:
    """Help point ids the dialplan serves: its explicit ids plus every help point with one of its tags."""
    tags = set(dialplan.serves.tags)
    served = set(dialplan.serves.help_points) | {
        hp for hp, hp_tags in inventory.help_points.items() if tags.intersection(hp_tags)
    }
    return tuple(sorted(served))


def validate_dialplan(dialplan: Dialplan, inventory: Inventory, file: str = "<dialplan>") -> Dialplan:
    """Check ``dialplan`` against the inventory and search its outcomes (rule 3).

    Returns the dialplan with every rung room in ``rooms`` and its positions filled in from the
    inventory (what the engine needs); raises :class:`DialplanValidationError` listing every problem.
    """
    problems = _check_references(dialplan, inventory, file)
    if problems:
        raise DialplanValidationError(problems)
    resolved = _resolve_rooms(dialplan, inventory)
    problems = _search(resolved, file)
    if problems:
        raise DialplanValidationError(problems)
    return resolved


def load_dialplan(path: str | Path, inventory: Inventory) -> Dialplan:
    """Read, parse and validate one file; raises :class:`InvalidDialplanError` subclasses."""
    file = str(path)
    return validate_dialplan(parse_dialplan(_read(file), file), inventory, file)


def dialplan_paths(paths: Iterable[str | Path]) -> list[Path]:
    """Expand directories to their ``*.yaml``/``*.yml`` files (sorted); files are kept as given."""
    out: list[Path] = []
    for path in map(Path, paths):
        if path.is_dir():
            out.extend(sorted(p for p in path.iterdir() if p.suffix in (".yaml", ".yml") and p.is_file()))
        else:
            out.append(path)
    return out


def load_dialplans(paths: Iterable[str | Path], inventory: Inventory) -> tuple[Dialplan, ...]:
    """Load several files (or directories) as one consistent set; every problem of every file is
    reported together."""
    return load_dialplan_set(paths, inventory).dialplans


class DialplanSet(msgspec.Struct, frozen=True, kw_only=True):
    """An immutable, versioned set of validated dialplans: what a new call picks its dialplan from."""

    version: int
    """1 for the first load, +1 per reload that changed anything."""
    digest: str
    """SHA-256 over the files' names and bytes and the inventory: equal digests, equal sets."""
    dialplans: tuple[Dialplan, ...]
    """Validated, room-resolved dialplans."""
    sources: tuple[str, ...]
    """The file of each dialplan, index for index."""
    served: dict[str, str]
    """Help point id to the name of the dialplan serving it."""

    def for_help_point(self, help_point: str) -> Dialplan | None:
        """The dialplan serving ``help_point``, or None."""
        name = self.served.get(help_point)
        return None if name is None else self.by_name(name)

    def by_name(self, name: str) -> Dialplan | None:
        """The dialplan called ``name``, or None."""
        return next((d for d in self.dialplans if d.name == name), None)


def load_dialplan_set(paths: Iterable[str | Path], inventory: Inventory, *, version: int = 1) -> DialplanSet:
    """Load, validate and cross-check files into a :class:`DialplanSet`; raises on any problem."""
    paths = list(paths)
    files = dialplan_paths(paths)
    if not files:
        where = ", ".join(map(str, paths)) or "<no path>"
        raise InvalidDialplanError([Problem(where, "$", "no dialplan files (*.yaml, *.yml) found")])
    digest = hashlib.sha256(msgspec.json.encode(inventory, order="sorted"))
    problems: list[Problem] = []
    kinds: set[type[InvalidDialplanError]] = set()
    loaded: list[tuple[str, Dialplan]] = []
    for path in files:
        file = str(path)
        try:
            data = _read(file)
            digest.update(file.encode() + b"\0" + data + b"\0")
            loaded.append((file, validate_dialplan(parse_dialplan(data, file), inventory, file)))
        except InvalidDialplanError as exc:
            problems.extend(exc.problems)
            kinds.add(type(exc))
    conflicts = _check_conflicts(loaded, inventory)
    if conflicts:
        problems.extend(conflicts)
        kinds.add(DialplanConflictError)
    if problems:
        raise (kinds.pop() if len(kinds) == 1 else InvalidDialplanError)(problems)
    served = {hp: dp.name for _, dp in loaded for hp in served_help_points(dp, inventory)}
    return DialplanSet(
        version=version,
        digest=digest.hexdigest(),
        dialplans=tuple(dp for _, dp in loaded),
        sources=tuple(file for file, _ in loaded),
        served=dict(sorted(served.items())),
    )


def reload(old: DialplanSet | None, paths: Iterable[str | Path], inventory: Inventory) -> DialplanSet:
    """Rule 4: the next set, or raise and leave ``old`` in force. Calls keep the Dialplan they hold."""
    new = load_dialplan_set(paths, inventory, version=1 if old is None else old.version + 1)
    if old is not None and old.digest == new.digest:
        return old
    if old is not None:
        source = {dp.name: file for dp, file in zip(old.dialplans, old.sources, strict=True)}
        dropped = [Problem(source[name], "$.serves", f"help point `{hp}` would be served by no dialplan after "
                           "this reload (file deleted or renamed?); every press from it would be turned away")
                   for hp, name in old.served.items() if hp in inventory.help_points and hp not in new.served]
        if dropped:
            raise DialplanConflictError(dropped)
    return new


# -- references -------------------------------------------------------------------------------------


def _read(file: str) -> bytes:
    try:
        with open(file, "rb") as handle:
            data = handle.read(MAX_FILE_BYTES + 1)
    except OSError as exc:
        raise DialplanSyntaxError([Problem(file, "$", f"cannot read: {exc.strerror or exc}")]) from None
    if len(data) > MAX_FILE_BYTES:
        raise DialplanSyntaxError([Problem(file, "$", f"file too large: more than {MAX_FILE_BYTES} bytes "
                                           "(a dialplan is a few kilobytes)")])
    return data


def _fmt(value: float) -> str:
    return f"{value:g}"


def _check_references(dp: Dialplan, inv: Inventory, file: str) -> list[Problem]:
    problems: list[Problem] = []

    def bad(path: str, why: str) -> None:
        problems.append(Problem(file, path, why))

    if not dp.serves.help_points and not dp.serves.tags:
        bad("$.serves", "serves no help point: give help_points or tags")
    for i, hp in enumerate(dp.serves.help_points):
        if hp not in inv.help_points:
            bad(f"$.serves.help_points[{i}]", f"unknown help point `{hp}`")
    for i, tag in enumerate(dp.serves.tags):
        if not any(tag in tags for tags in inv.help_points.values()):
            bad(f"$.serves.tags[{i}]", f"tag `{tag}` matches no help point")
    known = inv.known_positions
    for room_id, room in dp.rooms.items():
        if not room.positions and room_id not in inv.rooms:
            bad(f"$.rooms.{room_id}", f"unknown room `{room_id}`: not in the inventory and no positions given")
        _check_positions(room.positions, inv.rooms.get(room_id), room_id, known, f"$.rooms.{room_id}", bad)
    labels: dict[str, int] = {}
    for i, step in enumerate(dp.steps):
        if step.label is not None:
            if step.label in labels:
                bad(f"$.steps[{i}].label", f"duplicate label `{step.label}` (also steps[{labels[step.label]}])")
            labels.setdefault(step.label, i)
    for i, step in enumerate(dp.steps):
        at = f"$.steps[{i}]"
        if step.play is not None and step.play.prompt not in inv.prompts:  # type: ignore[union-attr]
            bad(f"{at}.play", f"unknown prompt `{step.play.prompt}`")  # type: ignore[union-attr]
        if step.message is not None and step.message not in inv.prompts:
            bad(f"{at}.message", f"unknown prompt `{step.message}`")
        if step.goto is not None and step.goto not in labels:
            bad(f"{at}.goto", f"unknown label `{step.goto}`")
        leg = step.leg
        if leg is None:
            continue
        at = f"{at}.{step.kind}"
        if isinstance(leg, Ring):
            if leg.room is None and not leg.positions:
                bad(at, "needs a room or positions")
            if leg.room is not None and leg.room not in dp.rooms and leg.room not in inv.rooms:
                bad(f"{at}.room", f"unknown room `{leg.room}`")
            room_positions = None
            if leg.room is not None:
                defined = dp.rooms.get(leg.room)
                room_positions = (defined.positions if defined is not None and defined.positions else None) or (
                    inv.rooms.get(leg.room))
            if room_positions is not None and not room_positions and not leg.positions:
                bad(f"{at}.room", f"room `{leg.room}` has no positions in the inventory: ringing it would reach nobody")
            _check_positions(leg.positions, room_positions, leg.room, known, at, bad)
        elif not leg.number.startswith("sip") and not inv.trunk:
            bad(f"{at}.number", f"`{leg.number}` can only be dialled through a trunk, and none is configured "
                "(sip.trunk in the gateway config); or dial a sip: URI")
        if leg.ring_timeout <= leg.connect_timeout:
            bad(f"{at}.ring_timeout", f"must be > connect_timeout "
                f"({_fmt(leg.ring_timeout)} <= {_fmt(leg.connect_timeout)})")
        for key, action in leg.on.items():
            if key not in CAUSES and key != "default":
                bad(f"{at}.on.{key}", f"unknown cause `{key}` (expected default or one of {', '.join(CAUSES)})")
            if isinstance(action, FailureAction):
                if action.goto is not None and action.goto not in labels:
                    bad(f"{at}.on.{key}.goto", f"unknown label `{action.goto}`")
                if action.play is not None and action.play not in inv.prompts:
                    bad(f"{at}.on.{key}.play", f"unknown prompt `{action.play}`")
        if "default" in leg.on and leg.repeat != (0 if isinstance(leg, Ring) else "forever"):
            bad(f"{at}.repeat", "has no effect because on.default is given")
    return problems


def _check_positions(positions: Sequence[str], room_positions: Sequence[str] | None, room_id: str | None,
                     known: frozenset[str], at: str, bad: Callable[[str, str], None]) -> None:
    seen: set[str] = set()
    for j, position in enumerate(positions):
        where = f"{at}.positions[{j}]"
        if position in seen:
            bad(where, f"duplicate position `{position}`")
        seen.add(position)
        if room_positions is not None and position not in room_positions:
            bad(where, f"position `{position}` is not in room `{room_id}`")
        elif room_positions is None and position not in known:
            bad(where, f"unknown position `{position}`")


def _resolve_rooms(dp: Dialplan, inv: Inventory) -> Dialplan:
    rooms: dict[str, Room] = {}
    for room_id, room in dp.rooms.items():
        rooms[room_id] = room if room.positions else msgspec.structs.replace(room, positions=inv.rooms[room_id])
    for step in dp.steps:
        if step.ring is not None and step.ring.room is not None and step.ring.room not in rooms:
            rooms[step.ring.room] = Room(positions=inv.rooms[step.ring.room])
    return msgspec.structs.replace(dp, rooms=rooms)


def _check_conflicts(loaded: Sequence[tuple[str, Dialplan]], inv: Inventory) -> list[Problem]:
    problems: list[Problem] = []
    names: dict[str, str] = {}
    owners: dict[str, tuple[str, str]] = {}
    for file, dp in loaded:
        if dp.name in names:
            problems.append(Problem(file, "$.name", f"dialplan name `{dp.name}` is also used by {names[dp.name]}"))
        names.setdefault(dp.name, file)
        for hp in served_help_points(dp, inv):
            if hp in owners and owners[hp][0] != dp.name:
                owner, owner_file = owners[hp]
                path = (f"$.serves.help_points[{dp.serves.help_points.index(hp)}]"
                        if hp in dp.serves.help_points else "$.serves.tags")
                problems.append(Problem(file, path, f"help point `{hp}` is already served by dialplan "
                                        f"`{owner}` ({owner_file})"))
            owners.setdefault(hp, (dp.name, file))
    return problems


# -- the outcome search (rule 3) --------------------------------------------------------------------

_Node = tuple[int, int]  # (step index, retries used in this visit); index == len(steps) is the end
_BASE_CAUSES: tuple[Cause, ...] = ("timeout", "busy", "decline", "server_error", "unreachable")
_HINT = "end with a message, a ring with repeat: forever, or a dial"


def _causes(dp: Dialplan, index: int) -> tuple[Cause, ...]:
    """Causes step ``index`` can fail with: ``closed`` needs a schedule, ``unconfirmed`` a confirm rule."""
    ring = dp.steps[index].ring
    room = dp.rooms.get(ring.room) if ring is not None and ring.room is not None else None
    extra: tuple[Cause, ...] = ()
    if room is not None and room.confirm is not None:
        extra += ("unconfirmed",)
    if room is not None and room.schedule is not None:
        extra += ("closed",)
    return _BASE_CAUSES + extra


def _retry_cap(dp: Dialplan, index: int) -> int:
    """Retries beyond the largest finite retry count of a step behave alike; cap the counter there."""
    leg = dp.steps[index].leg
    assert leg is not None
    counts = [leg.repeat] + [a.retry for a in leg.on.values() if isinstance(a, FailureAction)]
    counts += [1 for a in leg.on.values() if a == "retry"]
    return max((c for c in counts if isinstance(c, int)), default=0)


class _Edge(msgspec.Struct, frozen=True):
    label: str  # cause, "goto", "" (plain next)
    dest: _Node
    rings: bool  # someone was actually rung on the way (not a closed skip, not a prompt)
    safe_end: bool  # reaching the end this way comes straight after a message


def _edges(dp: Dialplan, node: _Node) -> list[_Edge]:
    index, retries = node
    step = dp.steps[index]
    if step.kind == "play":
        return [_Edge("", (index + 1, 0), False, False)]
    if step.kind == "message":
        return [_Edge("", (index + 1, 0), False, True)]
    if step.goto is not None:
        return [_Edge("goto", (dp.label_index(step.goto), 0), False, False)]
    edges = []
    for cause in _causes(dp, index):
        route = route_after(dp, index, cause, retries)
        dest = (route.index, min(route.retries, _retry_cap(dp, index)) if route.retry else 0)
        edges.append(_Edge(cause, dest, cause != "closed", route.message is not None))
    return edges


def _describe(dp: Dialplan, index: int) -> str:
    if index >= len(dp.steps):
        return "end of steps"
    step = dp.steps[index]
    leg = step.leg
    what = f"{step.kind} {leg.name}" if leg is not None else step.kind
    return f"steps[{index}] ({what})"


def _path_text(dp: Dialplan, path: Sequence[tuple[_Node, str]], last: _Node) -> str:
    parts = [f"{_describe(dp, node[0])}{' ' + label if label else ''}" for node, label in path]
    return " -> ".join([*parts, _describe(dp, last[0])])


def _search(dp: Dialplan, file: str) -> list[Problem]:
    """Breadth-first search over (step, retries) from the first step; shortest witnesses for each problem."""
    problems: list[Problem] = []
    end = len(dp.steps)
    start: _Node = (0, 0)
    parent: dict[_Node, tuple[_Node, str] | None] = {start: None}
    order: list[_Node] = []
    queue: deque[_Node] = deque([start])
    silent_from: set[int] = set()
    graph: dict[_Node, list[_Edge]] = {}

    def trail(node: _Node) -> list[tuple[_Node, str]]:
        out: list[tuple[_Node, str]] = []
        link = parent[node]
        while link is not None:
            out.append(link)
            link = parent[link[0]]
        return out[::-1]

    while queue:
        node = queue.popleft()
        if node[0] >= end:
            continue
        order.append(node)
        graph[node] = _edges(dp, node)
        for edge in graph[node]:
            if edge.dest[0] >= end and not edge.safe_end and node[0] not in silent_from:
                silent_from.add(node[0])
                witness = _path_text(dp, [*trail(node), (node, edge.label)], edge.dest)
                problems.append(Problem(file, f"$.steps[{node[0]}]",
                                        f"a path of outcomes ends in silence: {witness}; {_HINT}"))
            if edge.dest not in parent:
                parent[edge.dest] = (node, edge.label)
                queue.append(edge.dest)
    problems.extend(_silent_loops(dp, file, graph))
    reached = {node[0] for node in order}
    for index in range(end):
        if index not in reached:
            problems.append(Problem(file, f"$.steps[{index}]", "unreachable: no outcome of an earlier step leads here"))
    if not any(dp.steps[index].leg is not None for index in reached):
        problems.append(Problem(file, "$.steps", "never rings anyone: add a ring or dial step"))
    return problems


def _silent_loops(dp: Dialplan, file: str, graph: dict[_Node, list[_Edge]]) -> list[Problem]:
    """Cycles made only of edges that ring nobody (prompts, gotos, closed rooms): the call would spin
    without ever reaching an operator. Iterative DFS with colours over the non-ringing subgraph."""
    colour: dict[_Node, int] = {}
    problems: list[Problem] = []
    for root in graph:
        if root in colour:
            continue
        stack: list[tuple[_Node, int]] = [(root, 0)]
        path: list[tuple[_Node, str]] = []
        colour[root] = 1
        while stack:
            node, i = stack[-1]
            quiet = [e for e in graph.get(node, []) if not e.rings and e.dest in graph]
            if i < len(quiet):
                stack[-1] = (node, i + 1)
                edge = quiet[i]
                if colour.get(edge.dest) == 1:
                    start = next(k for k, (n, _) in enumerate([*path, (node, "")]) if n == edge.dest)
                    loop = [*path, (node, edge.label)][start:]
                    problems.append(Problem(file, f"$.steps[{edge.dest[0]}]", "loop without a safe exit, it never "
                                            f"rings anyone: {_path_text(dp, loop, edge.dest)}"))
                    return problems
                if edge.dest not in colour:
                    colour[edge.dest] = 1
                    path.append((node, edge.label))
                    stack.append((edge.dest, 0))
            else:
                colour[node] = 2
                stack.pop()
                if path:
                    path.pop()
    return problems
