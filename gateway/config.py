"""Typed, frozen configuration: ``sip-config/gateway.yaml`` and the inventory files.

Loading is two steps.  msgspec checks the *shape* (types, required and unknown fields) and reports a
``$.json.path``; then this module checks the *meaning* (ranges, duplicates, CIDRs, URLs) with the same kind
of path.  Every failure is a :class:`ConfigError` whose ``str`` is one line::

    sip-config/help-points.yaml: $.help_points[1].location.lat: must be between -90 and 90 (got 123.0)

Relative paths inside ``gateway.yaml`` are resolved against the *project root*: the parent of the directory
holding ``gateway.yaml`` (``sip-config/..``).  Environment overrides (``GATEWAY_SIP_LISTEN``,
``GATEWAY_HTTP_LISTEN``, ``GATEWAY_DATA_DIR``, ``GATEWAY_DB_URL``, ``GATEWAY_RTP_PORTS``) win over the file; a relative
``GATEWAY_DATA_DIR`` is resolved against the current directory.

The result is passed explicitly to whoever needs it (STYLE.md §6): no module-level configuration state.
"""

from __future__ import annotations

import ipaddress
import os
import re
from collections.abc import Iterator, Mapping
from pathlib import Path
from typing import Any, Literal, TypeVar
from urllib.parse import urlsplit

import msgspec
import yaml

from gateway.records.triage import CLASSIFICATIONS, OUTCOMES

__all__ = [
    "Config",
    "ConfigError",
    "DemoConfig",
    "HelpPoint",
    "HttpAddress",
    "HttpConfig",
    "Inventory",
    "InventoryFiles",
    "ListenAddress",
    "Location",
    "MediaConfig",
    "Position",
    "RegistrarConfig",
    "Room",
    "SipConfig",
    "load_config",
    "load_help_points",
    "load_inventory",
    "load_operators",
    "parse_http_listen",
    "parse_sip_listen",
    "prompt_names",
]

ENV_SIP_LISTEN = "GATEWAY_SIP_LISTEN"
ENV_HTTP_LISTEN = "GATEWAY_HTTP_LISTEN"
ENV_DATA_DIR = "GATEWAY_DATA_DIR"
ENV_DB_URL = "GATEWAY_DB_URL"
ENV_RTP_PORTS = "GATEWAY_RTP_PORTS"


# --------------------------------------------------------------------------------------------------- errors


class ConfigError(Exception):
    """A configuration file (or environment variable) is unusable.

    ``str(error)`` is one line naming the file, the key path (or line number) and the reason.
    """

    def __init__(
        self, file: str | os.PathLike[str], key_path: str | None, why: str, *, line: int | None = None
    ):
        self.file = _display_path(file)
        """The file as shown to the user: relative to the current directory when it lies below it."""
        self.key_path = key_path
        """A ``$.a.b[0]`` path into the document, or ``None`` when the error is about the whole file."""
        self.why = " ".join(why.split())
        """The reason, flattened to one line."""
        self.line = line
        """1-based line number, for YAML syntax errors."""
        super().__init__(str(self))

    def __str__(self) -> str:
        where = f"{self.file}:{self.line}" if self.line is not None else self.file
        if self.key_path:
            return f"{where}: {self.key_path}: {self.why}"
        return f"{where}: {self.why}"


def _display_path(file: str | os.PathLike[str]) -> str:
    path = Path(file)
    if not path.is_absolute():
        return str(path)
    try:
        return str(path.relative_to(Path.cwd()))
    except ValueError:
        return str(path)


# ----------------------------------------------------------------------------------------- listen addresses

_LISTEN_RE = re.compile(r"^(?:\[(?P<v6>[0-9A-Fa-f:.]+)\]|(?P<v4>[0-9.]+)):(?P<port>[0-9]{1,5})$")
SIP_TRANSPORTS = ("udp", "tcp")
"""Transports the gateway can listen on.  TLS is a later addition: its listener plugs in beside these."""


class ListenAddress:
    """A socket address to bind: ``transport`` (``udp``/``tcp``), an IP literal ``host`` and a ``port``.

    Written in the config as ``udp:0.0.0.0:5060`` or ``tcp:[::1]:5060`` (SIP), or ``127.0.0.1:8080``
    (HTTP, whose transport is always ``tcp``).  Port 0 asks the OS for a free port (tests).
    """

    __slots__ = ("transport", "host", "port")

    transport: str
    host: str
    port: int

    def __init__(self, transport: str, host: str, port: int) -> None:
        object.__setattr__(self, "transport", transport)
        object.__setattr__(self, "host", host)
        object.__setattr__(self, "port", port)

    def __setattr__(self, name: str, value: object) -> None:
        raise AttributeError(f"{type(self).__name__} is immutable")

    @property
    def host_port(self) -> str:
        """``host:port`` with IPv6 hosts in brackets, as in a Via sent-by or a URL."""
        host = f"[{self.host}]" if ":" in self.host else self.host
        return f"{host}:{self.port}"

    def __str__(self) -> str:
        return f"{self.transport}:{self.host_port}"

    def __repr__(self) -> str:
        return f"ListenAddress({self.transport!r}, {self.host!r}, {self.port!r})"

    def __eq__(self, other: object) -> bool:
        if not isinstance(other, ListenAddress):
            return NotImplemented
        return (self.transport, self.host, self.port) == (other.transport, other.host, other.port)

    def __hash__(self) -> int:
        return hash((self.transport, self.host, self.port))


class HttpAddress(ListenAddress):
    """The HTTP server's ``host:port``; a :class:`ListenAddress` whose transport is always ``tcp``."""

    __slots__ = ()

    def __init__(self, host: str, port: int) -> None:
        super().__init__("tcp", host, port)

    def __str__(self) -> str:
        return self.host_port

    def __repr__(self) -> str:
        return f"HttpAddress({self.host!r}, {self.port!r})"


def _parse_host_port(text: str, whole: str, example: str) -> tuple[str, int]:
    match = _LISTEN_RE.match(text)
    if match is None:
        raise ValueError(f"invalid listen address `{whole}`: expected an IP and a port like `{example}`")
    host = match["v6"] or match["v4"]
    try:
        ip = ipaddress.ip_address(host)
    except ValueError:
        raise ValueError(f"invalid listen address `{whole}`: `{host}` is not an IP address") from None
    if match["v4"] is None and ip.version == 4:
        raise ValueError(f"invalid listen address `{whole}`: brackets are only for IPv6 addresses")
    port = int(match["port"])
    if port > 65535:
        raise ValueError(f"invalid listen address `{whole}`: port must be between 0 and 65535 (got {port})")
    return str(ip), port


def parse_sip_listen(text: str) -> ListenAddress:
    """Parse ``udp:0.0.0.0:5060`` / ``tcp:[::]:5060``; raise ``ValueError`` with a one-line reason."""
    transport, sep, rest = text.strip().partition(":")
    if not sep or not rest:
        raise ValueError(
            f"invalid listen address `{text}`: expected transport:host:port like `udp:0.0.0.0:5060`"
        )
    transport = transport.lower()
    if transport not in SIP_TRANSPORTS:
        raise ValueError(
            f"invalid listen address `{text}`: transport must be one of {', '.join(SIP_TRANSPORTS)} (got `{transport}`)"
        )
    return ListenAddress(transport, *_parse_host_port(rest, text.strip(), f"{transport}:0.0.0.0:5060"))


def parse_http_listen(text: str) -> HttpAddress:
    """Parse ``127.0.0.1:8080`` / ``[::1]:8080``; raise ``ValueError`` with a one-line reason."""
    return HttpAddress(*_parse_host_port(text.strip(), text.strip(), "127.0.0.1:8080"))


# ---------------------------------------------------------------------------------- gateway.yaml structure
# Every Struct is frozen, and forbids unknown fields so that a misspelt key is an error, not ignored.


class SipConfig(msgspec.Struct, frozen=True, forbid_unknown_fields=True, kw_only=True):
    """The ``sip:`` section."""

    listen: tuple[ListenAddress, ...] = (
        ListenAddress("udp", "0.0.0.0", 5060),
        ListenAddress("tcp", "0.0.0.0", 5060),
    )
    """Addresses the SIP transports bind, each ``transport:host:port``.  Env: ``GATEWAY_SIP_LISTEN``
    (comma-separated)."""
    realm: str = "helppoint-gateway"
    """Digest authentication realm (RFC 7616).  Changing it invalidates every stored HA1."""
    max_message_size: int = 65536
    """Largest SIP message accepted, in bytes; larger ones get 513 (UDP) or close the TCP connection."""
    max_headers: int = 256
    """Most header fields accepted in one message; more is answered 400 (header flood)."""
    timer_t1: float = 0.5
    """RFC 3261 §17.1.1.1 T1, the RTT estimate, seconds."""
    timer_t2: float = 4.0
    """RFC 3261 §17.1.2.2 T2, the maximum non-INVITE retransmit interval, seconds."""
    timer_t4: float = 5.0
    """RFC 3261 §17.1.2.2 T4, how long a message may stay in the network, seconds."""
    user_agent: str = "helppoint-gateway"
    """Value of the Server / User-Agent header the gateway sends."""
    trusted_networks: tuple[str, ...] = ()
    """Source networks (CIDR) of infrastructure such as load balancers probing with OPTIONS: never counted
    as hostile scanners.  This is *not* an authentication bypass."""
    rate_limit: float = 20.0
    """Requests per second an unknown source (not trusted, not registered) may send; beyond it requests
    are dropped unanswered.  Never a ban: the budget refills by itself."""
    rate_burst: float = 60.0
    """Requests an unknown source may send at once before ``rate_limit`` applies."""
    trunk: str | None = None
    """Where a dialplan ``dial`` step with a number of digits goes: a sip: URI template in which
    ``{number}`` is replaced by the number, e.g. ``sip:{number}@192.0.2.50:5060`` (a SIP trunk or PBX
    that accepts calls from this gateway's address).  Without it, such steps are a validation error; a
    ``dial`` of a sip: URI needs no trunk."""


class HttpConfig(msgspec.Struct, frozen=True, forbid_unknown_fields=True, kw_only=True):
    """The ``http:`` section: health, metrics, API and operator console."""

    listen: HttpAddress = HttpAddress("127.0.0.1", 8080)
    """``host:port`` of the HTTP server.  Env: ``GATEWAY_HTTP_LISTEN``."""


class RegistrarConfig(msgspec.Struct, frozen=True, forbid_unknown_fields=True, kw_only=True):
    """The ``registrar:`` section (RFC 3261 §10, digest per RFC 7616/8760)."""

    min_expires: int = 60
    """Shortest registration accepted; shorter requests get 423 with ``Min-Expires``."""
    max_expires: int = 3600
    """Longest registration granted; longer requests are shortened to this."""
    default_expires: int = 3600
    """Expiry used when a REGISTER has neither an ``Expires`` header nor an ``expires`` parameter."""
    nonce_lifetime: float = 300.0
    """Seconds a digest nonce stays valid; after that the client is challenged again with ``stale=true``."""
    algorithms: tuple[Literal["SHA-256", "MD5"], ...] = ("SHA-256", "MD5")
    """Digest algorithms offered, one challenge each, in order of preference."""


class MediaConfig(msgspec.Struct, frozen=True, forbid_unknown_fields=True, kw_only=True):
    """The ``media:`` section."""

    rtp_port_min: int = 30000
    """First UDP port of the RTP range (even; RTP uses even ports)."""
    rtp_port_max: int = 30999
    """Last UDP port of the RTP range, inclusive."""
    address: str | None = None
    """IP address RTP binds to and SDP advertises; default: the host of the first SIP listener
    (set it when SIP listens on 0.0.0.0 or behind NAT)."""
    silence_timeout: float = 10.0
    """Seconds without audio from a side before the call's timeline notes it went silent (never a hang-up)."""


class InventoryFiles(msgspec.Struct, frozen=True, forbid_unknown_fields=True, kw_only=True):
    """The ``inventory:`` section: where the help points and operator positions are described."""

    help_points: Path = Path("sip-config/help-points.yaml")
    """Help-point inventory file."""
    operators: Path = Path("sip-config/operators.yaml")
    """Control rooms and their operator positions."""


class RetentionConfig(msgspec.Struct, frozen=True, forbid_unknown_fields=True, kw_only=True):
    """The ``records.retention:`` section: how long recordings and personal data are kept, in days."""

    by_classification: dict[str, int] = msgspec.field(default_factory=lambda: {
        "genuine": 365, "false": 31, "prank": 31, "accidental": 31, "silent": 31, "test": 31, "fault": 31})
    """Days per operator classification (UK CCTV guidance: 31 days for routine footage)."""
    by_outcome: dict[str, int] = msgspec.field(default_factory=dict)
    """Days per outcome for activations nobody classified (e.g. ``answered: 90``)."""
    unclassified_days: int = 31
    """Days for an unclassified activation whose outcome is not in ``by_outcome``.  A hold keeps forever."""


class RecordsConfig(msgspec.Struct, frozen=True, forbid_unknown_fields=True, kw_only=True):
    """The ``records:`` section: activation records, retention and the API's public address."""

    repeat_window: float = 120.0
    """Seconds within which a new press of the same help point is linked to the first (repeat presses)."""
    retention: RetentionConfig = RetentionConfig()
    """Retention periods."""
    retention_interval: float = 3600.0
    """Seconds between two runs of the retention job."""
    write_queue_max: int = 100_000
    """Bound of the activation write queue (a full queue is logged loudly and counted)."""
    public_url: str | None = None
    """Base URL operators' phones link to (``Call-Info ...;purpose=helppoint.record``); default: the HTTP
    listen address."""


class DemoConfig(msgspec.Struct, frozen=True, forbid_unknown_fields=True, kw_only=True):
    """The ``demo:`` section.  DEMO ONLY: a real deployment leaves the whole section out."""

    password_prefix: str = "demo-"
    """On start, every inventory account *without* stored credentials gets the password
    ``password_prefix + sip_user`` (for example ``demo-council-cctv-1``)."""


class Config(msgspec.Struct, frozen=True, forbid_unknown_fields=True, kw_only=True):
    """Everything in ``gateway.yaml``, with paths absolute and environment overrides applied."""

    sip: SipConfig = SipConfig()
    """SIP transports, realm and protocol limits."""
    http: HttpConfig = HttpConfig()
    """HTTP server."""
    registrar: RegistrarConfig = RegistrarConfig()
    """Registration and digest authentication."""
    media: MediaConfig = MediaConfig()
    """RTP."""
    inventory: InventoryFiles = InventoryFiles()
    """Inventory file locations; load them with :func:`load_inventory`."""
    data_dir: Path = Path("var")
    """Writable directory for the embedded database and recordings.  Env: ``GATEWAY_DATA_DIR``."""
    db_url: str | None = None
    """SQLAlchemy async URL.  Default (``null``): ``sqlite+aiosqlite:///<data_dir>/gateway.db``.
    Env: ``GATEWAY_DB_URL``.  Always set after loading."""
    dialplans_dir: Path = Path("dialplans")
    """Directory of dialplan YAML files."""
    prompts_dir: Path = Path("prompts")
    """Directory of audio prompts (WAV) played to callers."""
    drain_timeout: float = 32.0
    """On SIGTERM, seconds to let transactions and calls finish before cancelling them (64*T1 by default)."""
    records: RecordsConfig = RecordsConfig()
    """Activation records, retention, API address."""
    demo: DemoConfig | None = None
    """DEMO ONLY: seed demo credentials on start.  Absent in production."""


# ------------------------------------------------------------------------------------ inventory structure


class Location(msgspec.Struct, frozen=True, forbid_unknown_fields=True, kw_only=True):
    """Where a help point stands."""

    lat: float
    """WGS84 latitude, degrees."""
    lon: float
    """WGS84 longitude, degrees."""
    address: str
    """Human-readable address shown to operators."""


class HelpPoint(msgspec.Struct, frozen=True, forbid_unknown_fields=True, kw_only=True):
    """One help-point unit (button, speaker, microphone, camera above it)."""

    id: str
    """Stable identifier, e.g. ``hp-outram-street``; used in logs, metrics and call records."""
    name: str
    """Short name shown to operators."""
    sip_user: str
    """SIP user the unit registers and calls as."""
    location: Location
    """Position and address."""
    camera_url: str | None = None
    """Stream URL of the camera above the unit (``rtsp://``, ``rtsps://``, ``http://``, ``https://``)."""
    tags: tuple[str, ...] = ()
    """Free-form labels for dialplan matching and reporting (``town-centre``)."""
    allowed_networks: tuple[str, ...] = ()
    """If not empty, the unit is admitted by source network (CIDR) *instead of* digest authentication."""
    options_interval: float = 60.0
    """Seconds between OPTIONS probes of the unit (reachability); 0 disables probing."""
    static_uri: str | None = None
    """Where to call a unit that does not register (fixed address, e.g. ``sip:hp-7@192.0.2.7:5060``): a
    talk-down uses its registered contact when it has one, else this."""

    def admits_source(self, host: str) -> bool:
        """True when ``host`` (an IP literal) lies in one of :attr:`allowed_networks`."""
        try:
            address = ipaddress.ip_address(host)
        except ValueError:
            return False
        return any(address in ipaddress.ip_network(net) for net in self.allowed_networks)


class Position(msgspec.Struct, frozen=True, forbid_unknown_fields=True, kw_only=True):
    """An operator position in a control room: a softphone or desk phone."""

    id: str
    """Stable identifier, e.g. ``council-cctv-1``."""
    name: str
    """Name shown in reports."""
    sip_user: str
    """SIP user the position registers as."""
    static_uri: str | None = None
    """``sip:`` URI to call for a position that does not register (fixed desk phone)."""


class Room(msgspec.Struct, frozen=True, forbid_unknown_fields=True, kw_only=True):
    """A control room: a group of positions rung together."""

    id: str
    """Stable identifier used by dialplans: ``council-cctv``, ``police-control``."""
    name: str
    """Human-readable name."""
    positions: tuple[Position, ...]
    """Operator positions, in order."""


class _HelpPointsFile(msgspec.Struct, frozen=True, forbid_unknown_fields=True, kw_only=True):
    help_points: tuple[HelpPoint, ...]


class _OperatorsFile(msgspec.Struct, frozen=True, forbid_unknown_fields=True, kw_only=True):
    rooms: tuple[Room, ...]


class Inventory(msgspec.Struct, frozen=True, forbid_unknown_fields=True, kw_only=True):
    """Help points and control rooms, cross-checked (every SIP user unique across both files)."""

    help_points: tuple[HelpPoint, ...]
    """All help points, in file order."""
    rooms: tuple[Room, ...]
    """All control rooms, in file order."""

    def help_point(self, hp_id: str) -> HelpPoint | None:
        """The help point with this id."""
        return next((hp for hp in self.help_points if hp.id == hp_id), None)

    def help_point_for_user(self, sip_user: str) -> HelpPoint | None:
        """The help point calling as this SIP user."""
        return next((hp for hp in self.help_points if hp.sip_user == sip_user), None)

    def room(self, room_id: str) -> Room | None:
        """The control room with this id."""
        return next((room for room in self.rooms if room.id == room_id), None)

    def positions(self) -> Iterator[tuple[Room, Position]]:
        """Every (room, position) pair."""
        for room in self.rooms:
            for position in room.positions:
                yield room, position

    def position_for_user(self, sip_user: str) -> Position | None:
        """The operator position registering as this SIP user."""
        return next((p for _, p in self.positions() if p.sip_user == sip_user), None)

    def help_point_tags(self) -> dict[str, tuple[str, ...]]:
        """Help point id to its tags: what dialplans match on."""
        return {hp.id: hp.tags for hp in self.help_points}

    def room_positions(self) -> dict[str, tuple[str, ...]]:
        """Room id to its position ids, in order: what dialplans ring."""
        return {room.id: tuple(p.id for p in room.positions) for room in self.rooms}

    def digest_users(self) -> tuple[str, ...]:
        """SIP users that authenticate with digest: help points without ``allowed_networks`` and
        positions without ``static_uri``."""
        users = [hp.sip_user for hp in self.help_points if not hp.allowed_networks]
        users += [p.sip_user for _, p in self.positions() if p.static_uri is None]
        return tuple(users)


# --------------------------------------------------------------------------------------------- YAML input


class _UniqueKeyLoader(getattr(yaml, "CSafeLoader", yaml.SafeLoader)):  # type: ignore[misc]
    """Safe loader that rejects duplicate mapping keys (PyYAML silently keeps the last one)."""

    def construct_mapping(self, node: yaml.MappingNode, deep: bool = False) -> dict[Any, Any]:
        seen: set[Any] = set()
        for key_node, _ in node.value:
            key = self.construct_object(key_node, deep=True)
            try:
                duplicate = key in seen
                seen.add(key)
            except TypeError:
                continue
            if duplicate:
                raise yaml.constructor.ConstructorError(
                    None, None, f"duplicate key `{key}`", key_node.start_mark
                )
        return super().construct_mapping(node, deep)  # type: ignore[no-any-return]


def _read_yaml(path: Path) -> Any:
    try:
        text = path.read_bytes()
    except OSError as exc:
        raise ConfigError(path, None, f"cannot read file: {exc.strerror or exc}") from None
    try:
        return yaml.load(text, Loader=_UniqueKeyLoader)  # noqa: S506 - a SafeLoader subclass
    except yaml.MarkedYAMLError as exc:
        mark = exc.problem_mark or exc.context_mark
        why = f"invalid YAML: {exc.problem or exc.context}"
        raise ConfigError(path, None, why, line=mark.line + 1 if mark else None) from None
    except yaml.YAMLError as exc:
        raise ConfigError(path, None, f"invalid YAML: {exc}") from None


_AT_RE = re.compile(r"^(?P<why>.*?)(?: - at `(?P<path>\$[^`]*)`)?$", re.DOTALL)

T = TypeVar("T")


def _dec_hook(tp: type, obj: Any) -> Any:
    if tp is ListenAddress:
        if not isinstance(obj, str):
            raise TypeError(f"expected a string like `udp:0.0.0.0:5060`, got `{type(obj).__name__}`")
        return parse_sip_listen(obj)
    if tp is HttpAddress:
        if not isinstance(obj, str):
            raise TypeError(f"expected a string like `127.0.0.1:8080`, got `{type(obj).__name__}`")
        return parse_http_listen(obj)
    if tp is Path:
        if not isinstance(obj, str) or not obj:
            raise TypeError(f"expected a path string, got `{type(obj).__name__}`")
        return Path(obj)
    raise NotImplementedError(tp)


def _convert(path: Path, data: Any, tp: type[T]) -> T:
    try:
        return msgspec.convert(data, type=tp, dec_hook=_dec_hook)
    except msgspec.ValidationError as exc:
        match = _AT_RE.match(str(exc))
        assert match is not None  # the pattern matches any string
        why = match["why"]
        raise ConfigError(path, match["path"] or "$", why[:1].lower() + why[1:]) from None


# --------------------------------------------------------------------------------------------- validation


class _Checker:
    """Collects the first semantic error of one file as a ConfigError."""

    def __init__(self, file: Path) -> None:
        self.file = file

    def fail(self, key_path: str, why: str) -> ConfigError:
        return ConfigError(self.file, key_path, why)

    def range(self, key_path: str, value: float, low: float, high: float, unit: str = "") -> None:
        if not low <= value <= high:
            raise self.fail(key_path, f"must be between {low:g} and {high:g}{unit} (got {value!r})")

    def text(self, key_path: str, value: str) -> None:
        if not value.strip():
            raise self.fail(key_path, "must not be empty")

    def pattern(self, key_path: str, value: str, regex: re.Pattern[str], what: str) -> None:
        if not regex.fullmatch(value):
            raise self.fail(key_path, f"`{value}` is not a valid {what}")

    def unique(self, seen: dict[str, str], key_path: str, value: str, what: str) -> None:
        if value in seen:
            raise self.fail(key_path, f"duplicate {what} `{value}` (first at {seen[value]})")
        seen[value] = key_path

    def networks(self, key_path: str, values: tuple[str, ...]) -> tuple[str, ...]:
        normalised = []
        for i, value in enumerate(values):
            try:
                normalised.append(str(ipaddress.ip_network(value, strict=True)))
            except ValueError as exc:
                raise self.fail(f"{key_path}[{i}]", f"not a valid network `{value}`: {exc}") from None
        return tuple(normalised)


_ID_RE = re.compile(r"[A-Za-z0-9][A-Za-z0-9._-]*")
# RFC 3261 §25.1 `user` restricted to unreserved characters: what softphones and intercoms accept everywhere.
_SIP_USER_RE = re.compile(r"[A-Za-z0-9][A-Za-z0-9._~+-]*")
_SIP_URI_RE = re.compile(
    r"sips?:(?:[^@\s;?]+@)?(?:[A-Za-z0-9.-]+|\[[0-9A-Fa-f:.]+\])(?::[0-9]{1,5})?(?:[;?]\S*)?"
)
_DB_URL_RE = re.compile(r"[A-Za-z][A-Za-z0-9+]*://\S*")
_CAMERA_SCHEMES = ("rtsp", "rtsps", "http", "https")


def _check_config(file: Path, cfg: Config) -> None:
    c = _Checker(file)
    if not cfg.sip.listen:
        raise c.fail("$.sip.listen", "must list at least one address")
    seen_listen: dict[str, str] = {}
    for i, addr in enumerate(cfg.sip.listen):
        c.unique(seen_listen, f"$.sip.listen[{i}]", str(addr), "listen address")
    c.text("$.sip.realm", cfg.sip.realm)
    if any(ch == '"' or ch == "\\" or not ch.isprintable() for ch in cfg.sip.realm):
        raise c.fail("$.sip.realm", "must not contain quotes, backslashes or control characters")
    c.range("$.sip.max_message_size", cfg.sip.max_message_size, 1024, 1048576, " bytes")
    c.range("$.sip.max_headers", cfg.sip.max_headers, 16, 10000)
    c.range("$.sip.timer_t1", cfg.sip.timer_t1, 0.01, 60, " seconds")
    c.range("$.sip.timer_t2", cfg.sip.timer_t2, cfg.sip.timer_t1, 600, " seconds")
    c.range("$.sip.timer_t4", cfg.sip.timer_t4, 0.01, 600, " seconds")
    c.networks("$.sip.trusted_networks", cfg.sip.trusted_networks)
    if cfg.sip.trunk is not None:
        if "{number}" not in cfg.sip.trunk or not _SIP_URI_RE.fullmatch(trunk_uri(cfg.sip.trunk, "999")):
            raise c.fail("$.sip.trunk", f"`{cfg.sip.trunk}` is not a sip: URI template with {{number}}, like "
                         "`sip:{number}@192.0.2.50:5060`")

    reg = cfg.registrar
    c.range("$.registrar.min_expires", reg.min_expires, 1, 86400, " seconds")
    c.range("$.registrar.max_expires", reg.max_expires, reg.min_expires, 604800, " seconds")
    c.range("$.registrar.default_expires", reg.default_expires, reg.min_expires, reg.max_expires, " seconds")
    c.range("$.registrar.nonce_lifetime", reg.nonce_lifetime, 1, 86400, " seconds")
    if not reg.algorithms:
        raise c.fail("$.registrar.algorithms", "must list at least one algorithm")
    if len(set(reg.algorithms)) != len(reg.algorithms):
        raise c.fail("$.registrar.algorithms", "must not repeat an algorithm")

    c.range("$.media.rtp_port_min", cfg.media.rtp_port_min, 1024, 65534)
    if cfg.media.rtp_port_min % 2:
        raise c.fail("$.media.rtp_port_min", f"must be even (got {cfg.media.rtp_port_min})")
    c.range("$.media.rtp_port_max", cfg.media.rtp_port_max, cfg.media.rtp_port_min + 1, 65535)

    if cfg.db_url is not None and not _DB_URL_RE.fullmatch(cfg.db_url):
        raise c.fail("$.db_url", f"`{cfg.db_url}` is not a database URL like `postgresql+asyncpg://host/db`")
    c.range("$.drain_timeout", cfg.drain_timeout, 0, 3600, " seconds")
    _check_retention(c, cfg.records.retention)
    if cfg.demo is not None:
        c.text("$.demo.password_prefix", cfg.demo.password_prefix)


#: Outcomes an ended activation can have (``in-progress`` is never subject to retention).
_RETAINED_OUTCOMES = tuple(outcome for outcome in OUTCOMES if outcome != "in-progress")


def _check_retention(c: _Checker, retention: RetentionConfig) -> None:
    # A misspelt key would be ignored (that classification falling back to unclassified_days), and a
    # period < 1 would only fail when `serve` builds the policy: both are caught here instead.
    at = "$.records.retention"
    for section, names, what in (("by_classification", CLASSIFICATIONS, "classification"),
                                 ("by_outcome", _RETAINED_OUTCOMES, "outcome")):
        for name, days in getattr(retention, section).items():
            if name not in names:
                raise c.fail(f"{at}.{section}.{name}",
                             f"unknown {what} `{name}` (expected one of {', '.join(names)})")
            _check_days(c, f"{at}.{section}.{name}", days)
    _check_days(c, f"{at}.unclassified_days", retention.unclassified_days)


def _check_days(c: _Checker, key_path: str, days: int) -> None:
    if days < 1:
        raise c.fail(key_path, f"must be a whole number of days >= 1 (got {days})")


def _resolve(base: Path, path: Path) -> Path:
    return Path(os.path.normpath(path if path.is_absolute() else base / path))


def _apply_env(cfg: Config, env: Mapping[str, str]) -> Config:
    sip, http, data_dir, db_url, media = cfg.sip, cfg.http, cfg.data_dir, cfg.db_url, cfg.media
    if value := env.get(ENV_RTP_PORTS, "").strip():
        low, dash, high = value.partition("-")
        if not (dash and low.isdigit() and high.isdigit() and 1024 <= int(low) < int(high) <= 65535):
            raise ConfigError("environment", ENV_RTP_PORTS, f"`{value}` is not a port range like 30000-30999")
        media = msgspec.structs.replace(media, rtp_port_min=int(low), rtp_port_max=int(high))
    if value := env.get(ENV_SIP_LISTEN, "").strip():
        try:
            listen = tuple(parse_sip_listen(part) for part in value.split(",") if part.strip())
        except ValueError as exc:
            raise ConfigError("environment", ENV_SIP_LISTEN, str(exc)) from None
        if len(set(listen)) != len(listen):
            raise ConfigError("environment", ENV_SIP_LISTEN, f"duplicate listen address in `{value}`")
        sip = msgspec.structs.replace(sip, listen=listen)
    if value := env.get(ENV_HTTP_LISTEN, "").strip():
        try:
            http = msgspec.structs.replace(http, listen=parse_http_listen(value))
        except ValueError as exc:
            raise ConfigError("environment", ENV_HTTP_LISTEN, str(exc)) from None
    if value := env.get(ENV_DATA_DIR, "").strip():
        data_dir = _resolve(Path.cwd(), Path(value))
    if value := env.get(ENV_DB_URL, "").strip():
        if not _DB_URL_RE.fullmatch(value):
            raise ConfigError("environment", ENV_DB_URL, f"`{value}` is not a database URL")
        db_url = value
    return msgspec.structs.replace(cfg, sip=sip, http=http, data_dir=data_dir, db_url=db_url, media=media)


def load_config(path: str | os.PathLike[str], env: Mapping[str, str] = os.environ) -> Config:
    """Load and validate ``gateway.yaml``; apply environment overrides; make every path absolute.

    Raises :class:`ConfigError`.
    """
    file = Path(path)
    data = _read_yaml(file)
    cfg = _convert(file, {} if data is None else data, Config)
    _check_config(file, cfg)
    root = file.absolute().parent.parent
    cfg = msgspec.structs.replace(
        cfg,
        inventory=InventoryFiles(
            help_points=_resolve(root, cfg.inventory.help_points),
            operators=_resolve(root, cfg.inventory.operators),
        ),
        data_dir=_resolve(root, cfg.data_dir),
        dialplans_dir=_resolve(root, cfg.dialplans_dir),
        prompts_dir=_resolve(root, cfg.prompts_dir),
        sip=msgspec.structs.replace(
            cfg.sip, trusted_networks=_Checker(file).networks("", cfg.sip.trusted_networks)
        ),
    )
    cfg = _apply_env(cfg, env)
    if cfg.db_url is None:
        cfg = msgspec.structs.replace(cfg, db_url=f"sqlite+aiosqlite:///{cfg.data_dir / 'gateway.db'}")
    return cfg


def _check_help_point(c: _Checker, at: str, hp: HelpPoint) -> HelpPoint:
    c.pattern(f"{at}.id", hp.id, _ID_RE, "id (letters, digits, `.`, `_`, `-`)")
    c.text(f"{at}.name", hp.name)
    c.pattern(
        f"{at}.sip_user", hp.sip_user, _SIP_USER_RE, "SIP user (letters, digits, `.`, `_`, `~`, `+`, `-`)"
    )
    c.range(f"{at}.location.lat", hp.location.lat, -90, 90)
    c.range(f"{at}.location.lon", hp.location.lon, -180, 180)
    c.text(f"{at}.location.address", hp.location.address)
    if hp.camera_url is not None:
        url = urlsplit(hp.camera_url)
        if url.scheme not in _CAMERA_SCHEMES or not url.hostname or any(ch.isspace() for ch in hp.camera_url):
            raise c.fail(
                f"{at}.camera_url",
                f"`{hp.camera_url}` is not a valid camera URL (expected {', '.join(_CAMERA_SCHEMES)} with a host)",
            )
    for i, tag in enumerate(hp.tags):
        c.text(f"{at}.tags[{i}]", tag)
    networks = c.networks(f"{at}.allowed_networks", hp.allowed_networks)
    if hp.static_uri is not None and not _SIP_URI_RE.fullmatch(hp.static_uri):
        raise c.fail(f"{at}.static_uri", f"`{hp.static_uri}` is not a valid sip: or sips: URI")
    if hp.options_interval != 0:
        try:
            c.range(f"{at}.options_interval", hp.options_interval, 5, 3600, " seconds")
        except ConfigError:
            raise c.fail(
                f"{at}.options_interval",
                f"must be 0 (no probing) or between 5 and 3600 seconds (got {hp.options_interval!r})",
            ) from None
    return msgspec.structs.replace(hp, allowed_networks=networks)


def load_help_points(path: str | os.PathLike[str]) -> tuple[HelpPoint, ...]:
    """Load and validate the help-point inventory file.  Raises :class:`ConfigError`."""
    file = Path(path)
    doc = _convert(file, _read_yaml(file), _HelpPointsFile)
    c = _Checker(file)
    ids: dict[str, str] = {}
    users: dict[str, str] = {}
    checked = []
    for i, hp in enumerate(doc.help_points):
        at = f"$.help_points[{i}]"
        checked.append(_check_help_point(c, at, hp))
        c.unique(ids, f"{at}.id", hp.id, "id")
        c.unique(users, f"{at}.sip_user", hp.sip_user, "SIP user")
    return tuple(checked)


def load_operators(path: str | os.PathLike[str]) -> tuple[Room, ...]:
    """Load and validate the control rooms and operator positions.  Raises :class:`ConfigError`."""
    file = Path(path)
    doc = _convert(file, _read_yaml(file), _OperatorsFile)
    c = _Checker(file)
    room_ids: dict[str, str] = {}
    position_ids: dict[str, str] = {}
    users: dict[str, str] = {}
    for i, room in enumerate(doc.rooms):
        at = f"$.rooms[{i}]"
        c.pattern(f"{at}.id", room.id, _ID_RE, "id (letters, digits, `.`, `_`, `-`)")
        c.unique(room_ids, f"{at}.id", room.id, "room id")
        c.text(f"{at}.name", room.name)
        if not room.positions:
            raise c.fail(f"{at}.positions", "must list at least one position")
        for j, pos in enumerate(room.positions):
            pat = f"{at}.positions[{j}]"
            c.pattern(f"{pat}.id", pos.id, _ID_RE, "id (letters, digits, `.`, `_`, `-`)")
            c.unique(position_ids, f"{pat}.id", pos.id, "position id")
            c.text(f"{pat}.name", pos.name)
            c.pattern(
                f"{pat}.sip_user",
                pos.sip_user,
                _SIP_USER_RE,
                "SIP user (letters, digits, `.`, `_`, `~`, `+`, `-`)",
            )
            c.unique(users, f"{pat}.sip_user", pos.sip_user, "SIP user")
            if pos.static_uri is not None and not _SIP_URI_RE.fullmatch(pos.static_uri):
                raise c.fail(f"{pat}.static_uri", f"`{pos.static_uri}` is not a valid sip: or sips: URI")
    return doc.rooms


PROMPT_SUFFIXES = (".wav",)
"""Audio files in ``prompts_dir`` that count as prompts; a prompt's name is the file name without suffix."""


def trunk_uri(template: str, number: str) -> str:
    """The URI a ``dial`` of ``number`` (digits, maybe with a leading +) goes to through the trunk."""
    return template.replace("{number}", number)


def prompt_names(config: Config) -> frozenset[str]:
    """Names of the prompts in ``config.prompts_dir`` (``connecting.wav`` -> ``connecting``); empty if the
    directory does not exist."""
    try:
        entries = list(config.prompts_dir.iterdir())
    except OSError:
        return frozenset()
    return frozenset(p.stem for p in entries if p.suffix.lower() in PROMPT_SUFFIXES and p.is_file())


def load_inventory(config: Config) -> Inventory:
    """Load both inventory files named by ``config`` and check that no SIP user is used twice across them.

    Raises :class:`ConfigError`.
    """
    help_points = load_help_points(config.inventory.help_points)
    rooms = load_operators(config.inventory.operators)
    owners = {hp.sip_user: hp.id for hp in help_points}
    for i, room in enumerate(rooms):
        for j, pos in enumerate(room.positions):
            if pos.sip_user in owners:
                raise ConfigError(
                    config.inventory.operators,
                    f"$.rooms[{i}].positions[{j}].sip_user",
                    f"SIP user `{pos.sip_user}` is already used by help point `{owners[pos.sip_user]}` "
                    f"in {_display_path(config.inventory.help_points)}",
                )
    return Inventory(help_points=help_points, rooms=rooms)
