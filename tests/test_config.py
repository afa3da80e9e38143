"""gateway.config: the demo configuration loads; every kind of mistake gives one exact line."""

from __future__ import annotations

import shutil
from pathlib import Path

import pytest

from gateway.config import (
    Config,
    ConfigError,
    HttpAddress,
    ListenAddress,
    load_config,
    load_inventory,
    parse_http_listen,
    parse_sip_listen,
)

REPO = Path(__file__).resolve().parent.parent


@pytest.fixture
def root(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """A copy of the demo sip-config/ in a temporary project root, which is also the current directory."""
    shutil.copytree(REPO / "sip-config", tmp_path / "sip-config")
    monkeypatch.chdir(tmp_path)
    return tmp_path


def edit(path: Path, old: str, new: str, count: int = 1) -> None:
    text = path.read_text()
    assert text.count(old) >= count, f"{old!r} not in {path}"
    path.write_text(text.replace(old, new, count))


def load_all(root: Path, env: dict[str, str] | None = None) -> Config:
    config = load_config(root / "sip-config" / "gateway.yaml", env=env or {})
    load_inventory(config)
    return config


def error_of(root: Path, env: dict[str, str] | None = None) -> str:
    with pytest.raises(ConfigError) as info:
        load_all(root, env)
    message = str(info.value)
    assert "\n" not in message
    return message


# ------------------------------------------------------------------------------------------------- good


def test_demo_config_loads_with_absolute_paths() -> None:
    config = load_config(REPO / "sip-config" / "gateway.yaml", env={})
    assert config.sip.listen == (
        ListenAddress("udp", "127.0.0.1", 5060),
        ListenAddress("tcp", "127.0.0.1", 5060),
    )
    assert config.http.listen == HttpAddress("127.0.0.1", 8080)
    assert config.sip.realm == "helppoint-gateway"
    assert (config.sip.max_message_size, config.sip.max_headers) == (65536, 256)
    reg = config.registrar
    assert (reg.min_expires, reg.max_expires, reg.default_expires, reg.nonce_lifetime) == (
        60,
        3600,
        3600,
        300.0,
    )
    assert reg.algorithms == ("SHA-256", "MD5")
    assert config.inventory.help_points == REPO / "sip-config" / "help-points.yaml"
    assert config.data_dir == REPO / "var"
    assert config.dialplans_dir == REPO / "dialplans"
    assert config.db_url == f"sqlite+aiosqlite:///{REPO / 'var' / 'gateway.db'}"
    assert config.demo is not None and config.demo.password_prefix == "demo-"


def test_demo_inventory() -> None:
    inventory = load_inventory(load_config(REPO / "sip-config" / "gateway.yaml", env={}))
    assert [hp.id for hp in inventory.help_points] == [
        "hp-outram-street",
        "hp-portland-square",
        "hp-old-market-place",
    ]
    outram = inventory.help_point("hp-outram-street")
    assert outram is not None
    assert outram.name == "Outram Street"
    assert outram.camera_url == "rtsp://cctv.example.invalid/cam/outram-street"
    assert outram.tags == ("sutton", "town-centre")
    assert 53.0 < outram.location.lat < 53.2 and -1.4 < outram.location.lon < -1.1
    assert [room.id for room in inventory.rooms] == ["council-cctv", "police-control"]
    assert [p.id for _, p in inventory.positions()] == [
        "council-cctv-1",
        "council-cctv-2",
        "police-control-1",
    ]
    assert inventory.position_for_user("police-control-1") is not None
    assert inventory.help_point_for_user("hp-old-market-place") is not None
    assert set(inventory.digest_users()) == {
        "hp-outram-street",
        "hp-portland-square",
        "hp-old-market-place",
        "council-cctv-1",
        "council-cctv-2",
        "police-control-1",
    }


def test_config_is_frozen() -> None:
    config = load_config(REPO / "sip-config" / "gateway.yaml", env={})
    with pytest.raises(AttributeError):
        config.data_dir = Path("/")  # type: ignore[misc]
    with pytest.raises(AttributeError):
        config.sip.listen[0].port = 1  # type: ignore[misc]


def test_empty_file_means_defaults(root: Path) -> None:
    (root / "sip-config" / "gateway.yaml").write_text("# nothing\n")
    config = load_config(root / "sip-config" / "gateway.yaml", env={})
    assert [str(a) for a in config.sip.listen] == ["udp:0.0.0.0:5060", "tcp:0.0.0.0:5060"]
    assert str(config.http.listen) == "127.0.0.1:8080"
    assert config.demo is None
    assert config.data_dir == root / "var"


def test_allowed_networks_admit_by_source(root: Path) -> None:
    edit(
        root / "sip-config/help-points.yaml",
        "    options_interval: 60\n",
        "    allowed_networks: [192.0.2.0/24, '2001:db8::/32']\n",
    )
    inventory = load_inventory(load_config(root / "sip-config/gateway.yaml", env={}))
    hp = inventory.help_points[0]
    assert hp.admits_source("192.0.2.17") and hp.admits_source("2001:db8::5")
    assert not hp.admits_source("198.51.100.1") and not hp.admits_source("not-an-ip")
    assert "hp-outram-street" not in inventory.digest_users()


def test_static_uri_position_is_not_a_digest_user(root: Path) -> None:
    edit(
        root / "sip-config/operators.yaml",
        "        sip_user: police-control-1\n",
        "        sip_user: police-control-1\n        static_uri: sip:desk@192.0.2.40:5060;transport=tcp\n",
    )
    inventory = load_inventory(load_config(root / "sip-config/gateway.yaml", env={}))
    assert "police-control-1" not in inventory.digest_users()


# ------------------------------------------------------------------------------------------ environment


def test_env_overrides(root: Path) -> None:
    env = {
        "GATEWAY_SIP_LISTEN": "udp:127.0.0.1:0, tcp:[::1]:5070",
        "GATEWAY_HTTP_LISTEN": "0.0.0.0:9090",
        "GATEWAY_DATA_DIR": "elsewhere",
        "GATEWAY_DB_URL": "postgresql+asyncpg://gw@db.example.invalid/gateway",
    }
    config = load_config(root / "sip-config" / "gateway.yaml", env=env)
    assert config.sip.listen == (ListenAddress("udp", "127.0.0.1", 0), ListenAddress("tcp", "::1", 5070))
    assert str(config.sip.listen[1]) == "tcp:[::1]:5070"
    assert config.http.listen == HttpAddress("0.0.0.0", 9090)
    assert config.data_dir == root / "elsewhere"  # relative to the current directory
    assert config.db_url == "postgresql+asyncpg://gw@db.example.invalid/gateway"


def test_default_db_url_follows_data_dir_override(root: Path) -> None:
    config = load_config(root / "sip-config" / "gateway.yaml", env={"GATEWAY_DATA_DIR": "/srv/gw"})
    assert config.db_url == "sqlite+aiosqlite:////srv/gw/gateway.db"


def test_empty_env_values_are_ignored(root: Path) -> None:
    env = dict.fromkeys(
        ["GATEWAY_SIP_LISTEN", "GATEWAY_HTTP_LISTEN", "GATEWAY_DATA_DIR", "GATEWAY_DB_URL"], ""
    )
    assert load_config(root / "sip-config" / "gateway.yaml", env=env) == load_config(
        root / "sip-config" / "gateway.yaml", env={}
    )


@pytest.mark.parametrize(
    ("env", "message"),
    [
        (
            {"GATEWAY_SIP_LISTEN": "udp:127.0.0.1:5060,sctp:0.0.0.0:5060"},
            "environment: GATEWAY_SIP_LISTEN: invalid listen address `sctp:0.0.0.0:5060`: "
            "transport must be one of udp, tcp (got `sctp`)",
        ),
        (
            {"GATEWAY_SIP_LISTEN": "udp:127.0.0.1:5060,udp:127.0.0.1:5060"},
            "environment: GATEWAY_SIP_LISTEN: duplicate listen address in `udp:127.0.0.1:5060,udp:127.0.0.1:5060`",
        ),
        (
            {"GATEWAY_HTTP_LISTEN": "localhost:8080"},
            "environment: GATEWAY_HTTP_LISTEN: invalid listen address `localhost:8080`: "
            "expected an IP and a port like `127.0.0.1:8080`",
        ),
        ({"GATEWAY_DB_URL": "gateway.db"}, "environment: GATEWAY_DB_URL: `gateway.db` is not a database URL"),
    ],
)
def test_env_errors(root: Path, env: dict[str, str], message: str) -> None:
    assert error_of(root, env) == message


# ----------------------------------------------------------------------------------------- listen specs


@pytest.mark.parametrize(
    ("text", "why"),
    [
        ("udp", "expected transport:host:port like `udp:0.0.0.0:5060`"),
        ("tls:0.0.0.0:5061", "transport must be one of udp, tcp (got `tls`)"),
        ("udp:0.0.0.0", "expected an IP and a port like `udp:0.0.0.0:5060`"),
        ("udp:999.0.0.1:5060", "`999.0.0.1` is not an IP address"),
        ("udp:[127.0.0.1]:5060", "brackets are only for IPv6 addresses"),
        ("tcp:::1:5060", "expected an IP and a port like `tcp:0.0.0.0:5060`"),
        ("udp:0.0.0.0:70000", "port must be between 0 and 65535 (got 70000)"),
    ],
)
def test_bad_sip_listen(text: str, why: str) -> None:
    with pytest.raises(ValueError) as info:
        parse_sip_listen(text)
    assert str(info.value) == f"invalid listen address `{text}`: {why}"


def test_listen_parsing() -> None:
    assert parse_sip_listen("UDP:[::]:5060") == ListenAddress("udp", "::", 5060)
    assert parse_http_listen("[::1]:8080").host_port == "[::1]:8080"


# ------------------------------------------------------------------------------------------------- errors

GW = "sip-config/gateway.yaml"
HP = "sip-config/help-points.yaml"
OPS = "sip-config/operators.yaml"


@pytest.mark.parametrize(
    ("file", "old", "new", "message"),
    [
        pytest.param(
            HP,
            "lat: 53.12466",
            "lat: 123.0",
            f"{HP}: $.help_points[1].location.lat: must be between -90 and 90 (got 123.0)",
            id="latitude",
        ),
        pytest.param(
            HP,
            "lon: -1.26184",
            "lon: -181",
            f"{HP}: $.help_points[2].location.lon: must be between -180 and 180 (got -181.0)",
            id="longitude",
        ),
        pytest.param(
            HP,
            "id: hp-old-market-place",
            "id: hp-outram-street",
            f"{HP}: $.help_points[2].id: duplicate id `hp-outram-street` (first at $.help_points[0].id)",
            id="duplicate-id",
        ),
        pytest.param(
            HP,
            "sip_user: hp-portland-square",
            "sip_user: hp-outram-street",
            f"{HP}: $.help_points[1].sip_user: duplicate SIP user `hp-outram-street` (first at $.help_points[0].sip_user)",
            id="duplicate-sip-user",
        ),
        pytest.param(
            OPS,
            "sip_user: police-control-1",
            "sip_user: hp-portland-square",
            f"{OPS}: $.rooms[1].positions[0].sip_user: SIP user `hp-portland-square` is already used by "
            f"help point `hp-portland-square` in {HP}",
            id="sip-user-across-files",
        ),
        pytest.param(
            HP,
            "    options_interval: 60\n",
            "    allowed_networks: [192.0.2.0/24, 10.0.0.1/8]\n",
            f"{HP}: $.help_points[0].allowed_networks[1]: not a valid network `10.0.0.1/8`: 10.0.0.1/8 has host bits set",
            id="cidr-host-bits",
        ),
        pytest.param(
            HP,
            "    options_interval: 60\n",
            "    allowed_networks: [192.0.2.0/33]\n",
            f"{HP}: $.help_points[0].allowed_networks[0]: not a valid network `192.0.2.0/33`: "
            "'192.0.2.0/33' does not appear to be an IPv4 or IPv6 network",
            id="cidr-prefix",
        ),
        pytest.param(
            HP,
            "rtsp://cctv.example.invalid/cam/portland-square",
            "cctv.example.invalid/cam/portland-square",
            f"{HP}: $.help_points[1].camera_url: `cctv.example.invalid/cam/portland-square` is not a valid camera URL "
            "(expected rtsp, rtsps, http, https with a host)",
            id="camera-url",
        ),
        pytest.param(
            HP,
            "options_interval: 60",
            "options_interval: 1",
            f"{HP}: $.help_points[0].options_interval: must be 0 (no probing) or between 5 and 3600 seconds (got 1.0)",
            id="options-interval",
        ),
        pytest.param(
            HP,
            "id: hp-portland-square",
            "id: hp portland square",
            f"{HP}: $.help_points[1].id: `hp portland square` is not a valid id (letters, digits, `.`, `_`, `-`)",
            id="id-syntax",
        ),
        pytest.param(
            HP,
            "      address: Old Market Place, Sutton-in-Ashfield, Nottinghamshire\n",
            "",
            f"{HP}: $.help_points[2].location: object missing required field `address`",
            id="missing-field",
        ),
        pytest.param(
            HP,
            "    camera_url: rtsp://cctv.example.invalid/cam/outram-street",
            "    camera: rtsp://x",
            f"{HP}: $.help_points[0]: object contains unknown field `camera`",
            id="unknown-field",
        ),
        pytest.param(
            HP,
            "help_points:",
            "helppoints:",
            f"{HP}: $: object contains unknown field `helppoints`",
            id="unknown-top-level",
        ),
        pytest.param(
            HP,
            "lat: 53.12395",
            "lat: north",
            f"{HP}: $.help_points[0].location.lat: expected `float`, got `str`",
            id="wrong-type",
        ),
        pytest.param(
            OPS,
            "id: police-control\n",
            "id: council-cctv\n",
            f"{OPS}: $.rooms[1].id: duplicate room id `council-cctv` (first at $.rooms[0].id)",
            id="duplicate-room",
        ),
        pytest.param(
            OPS,
            "id: council-cctv-2",
            "id: council-cctv-1",
            f"{OPS}: $.rooms[0].positions[1].id: duplicate position id `council-cctv-1` (first at $.rooms[0].positions[0].id)",
            id="duplicate-position",
        ),
        pytest.param(
            OPS,
            "        sip_user: council-cctv-2\n",
            "        sip_user: council-cctv-2\n        static_uri: http://desk\n",
            f"{OPS}: $.rooms[0].positions[1].static_uri: `http://desk` is not a valid sip: or sips: URI",
            id="static-uri",
        ),
        pytest.param(
            GW,
            "    - tcp:127.0.0.1:5060",
            "    - sctp:0.0.0.0:5060",
            f"{GW}: $.sip.listen[1]: invalid listen address `sctp:0.0.0.0:5060`: transport must be one of udp, tcp (got `sctp`)",
            id="sip-listen",
        ),
        pytest.param(
            GW,
            "    - tcp:127.0.0.1:5060",
            "    - udp:127.0.0.1:5060",
            f"{GW}: $.sip.listen[1]: duplicate listen address `udp:127.0.0.1:5060` (first at $.sip.listen[0])",
            id="sip-listen-duplicate",
        ),
        pytest.param(
            GW,
            "listen: 127.0.0.1:8080",
            "listen: 8080",
            f"{GW}: $.http.listen: expected a string like `127.0.0.1:8080`, got `int`",
            id="http-listen-type",
        ),
        pytest.param(
            GW,
            "  listen:\n",
            "  listne:\n",
            f"{GW}: $.sip: object contains unknown field `listne`",
            id="typo",
        ),
        pytest.param(
            GW,
            "min_expires: 60",
            "min_expires: sixty",
            f"{GW}: $.registrar.min_expires: expected `int`, got `str`",
            id="expires-type",
        ),
        pytest.param(
            GW,
            "default_expires: 3600",
            "default_expires: 7200",
            f"{GW}: $.registrar.default_expires: must be between 60 and 3600 seconds (got 7200)",
            id="default-expires",
        ),
        pytest.param(
            GW,
            "algorithms: [SHA-256, MD5]",
            "algorithms: [SHA-256, SHA-1]",
            f"{GW}: $.registrar.algorithms[1]: invalid enum value 'SHA-1'",
            id="algorithm",
        ),
        pytest.param(
            GW,
            "rtp_port_min: 30000",
            "rtp_port_min: 30001",
            f"{GW}: $.media.rtp_port_min: must be even (got 30001)",
            id="rtp-odd",
        ),
        pytest.param(
            GW,
            "trusted_networks: []",
            "trusted_networks: [lb.example]",
            f"{GW}: $.sip.trusted_networks[0]: not a valid network `lb.example`: "
            "'lb.example' does not appear to be an IPv4 or IPv6 network",
            id="trusted-networks",
        ),
        pytest.param(
            GW,
            "db_url: null",
            "db_url: gateway.db",
            f"{GW}: $.db_url: `gateway.db` is not a database URL like `postgresql+asyncpg://host/db`",
            id="db-url",
        ),
        # A misspelt retention key used to be kept silently (genuine activations then fell to the 31-day
        # default, deleting evidence early), and a period < 1 passed check-config but crashed `serve`.
        pytest.param(
            GW,
            "genuine: 365",
            "genuin: 365",
            f"{GW}: $.records.retention.by_classification.genuin: unknown classification `genuin` "
            "(expected one of genuine, false, prank, accidental, silent, test, fault)",
            id="retention-classification-typo",
        ),
        pytest.param(
            GW,
            "genuine: 365",
            "genuine: 0",
            f"{GW}: $.records.retention.by_classification.genuine: must be a whole number of days >= 1 (got 0)",
            id="retention-classification-days",
        ),
        pytest.param(
            GW,
            "by_outcome: {}",
            "by_outcome: {answerd: 90}",
            f"{GW}: $.records.retention.by_outcome.answerd: unknown outcome `answerd` "
            "(expected one of answered, unanswered, abandoned, failed, interrupted, talkdown-played, "
            "talkdown-unanswered, talkdown-failed, talkdown-interrupted)",
            id="retention-outcome-typo",
        ),
        pytest.param(
            GW,
            "unclassified_days: 31",
            "unclassified_days: -1",
            f"{GW}: $.records.retention.unclassified_days: must be a whole number of days >= 1 (got -1)",
            id="retention-unclassified-days",
        ),
        pytest.param(
            GW,
            "help_points: sip-config/help-points.yaml",
            "help_points: sip-config/missing.yaml",
            "sip-config/missing.yaml: cannot read file: No such file or directory",
            id="missing-inventory",
        ),
    ],
)
def test_one_line_errors(root: Path, file: str, old: str, new: str, message: str) -> None:
    edit(root / file, old, new)
    assert error_of(root) == message


def test_brief_example_verbatim(root: Path) -> None:
    edit(root / HP, "lat: 53.12466", "lat: 123.0")
    assert error_of(root) == (
        "sip-config/help-points.yaml: $.help_points[1].location.lat: must be between -90 and 90 (got 123.0)"
    )


def test_yaml_syntax_error_names_the_line(root: Path) -> None:
    (root / GW).write_text(
        "sip:\n  realm: a\n  listen: [udp:127.0.0.1:5060\nhttp:\n  listen: 127.0.0.1:8080\n"
    )
    message = error_of(root)
    assert message.startswith(f"{GW}:4: invalid YAML: ")
    assert message == f"{GW}:4: invalid YAML: did not find expected ',' or ']'"


def test_duplicate_yaml_key_names_the_line(root: Path) -> None:
    edit(root / HP, "      lat: 53.12466\n", "      lat: 53.12466\n      lat: 53.2\n")
    assert error_of(root) == f"{HP}:27: invalid YAML: duplicate key `lat`"


def test_missing_config_file(root: Path) -> None:
    (root / GW).unlink()
    assert error_of(root) == f"{GW}: cannot read file: No such file or directory"


def test_top_level_must_be_a_mapping(root: Path) -> None:
    (root / HP).write_text("- just\n- a list\n")
    assert error_of(root) == f"{HP}: $: expected `object`, got `array`"


def test_path_outside_cwd_is_absolute(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    shutil.copytree(REPO / "sip-config", tmp_path / "proj" / "sip-config")
    (tmp_path / "elsewhere").mkdir()
    monkeypatch.chdir(tmp_path / "elsewhere")
    gw = tmp_path / "proj" / "sip-config" / "gateway.yaml"
    edit(gw, "realm: helppoint-gateway", 'realm: "a\\"b"')
    with pytest.raises(ConfigError) as info:
        load_config(gw, env={})
    assert str(info.value) == f"{gw}: $.sip.realm: must not contain quotes, backslashes or control characters"
    assert (info.value.file, info.value.key_path) == (str(gw), "$.sip.realm")
