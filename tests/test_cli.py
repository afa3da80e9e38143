"""The `gateway` command line, run as a real process: exit codes and one-line errors."""

from __future__ import annotations

import asyncio
import hashlib
import importlib
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parent.parent


def _store_available() -> bool:
    try:
        from gateway.store import Store  # noqa: F401
    except ImportError:
        return False
    return True


@pytest.fixture
def root(tmp_path: Path) -> Path:
    shutil.copytree(REPO / "sip-config", tmp_path / "sip-config")
    return tmp_path


def gateway(
    root: Path, *args: str, stdin: str = "", env: dict[str, str] | None = None
) -> subprocess.CompletedProcess[str]:
    clean = {k: v for k, v in os.environ.items() if not k.startswith("GATEWAY_")}
    return subprocess.run(
        [sys.executable, "-m", "gateway", *args],
        cwd=root,
        input=stdin,
        capture_output=True,
        text=True,
        env={**clean, **(env or {})},
        timeout=60,
    )


def one_line(text: str) -> str:
    lines = text.splitlines()
    assert len(lines) == 1, text
    return lines[0]


def test_check_config_ok(root: Path) -> None:
    result = gateway(root, "check-config")
    assert result.returncode == 0, result.stderr
    assert result.stdout == "OK: 3 help points, 3 positions in 2 rooms\n"


def test_check_config_broken_file_is_one_line(root: Path) -> None:
    hp = root / "sip-config" / "help-points.yaml"
    hp.write_text(hp.read_text().replace("lat: 53.12466", "lat: 123.0"))
    result = gateway(root, "check-config", "--config", "sip-config/gateway.yaml")
    assert result.returncode == 1
    assert result.stdout == ""
    assert one_line(result.stderr) == (
        "sip-config/help-points.yaml: $.help_points[1].location.lat: must be between -90 and 90 (got 123.0)"
    )


def test_check_config_yaml_syntax_error(root: Path) -> None:
    (root / "sip-config" / "gateway.yaml").write_text("sip:\n  listen: [udp:127.0.0.1:5060\n")
    result = gateway(root, "check-config")
    assert result.returncode == 1
    assert one_line(result.stderr).startswith("sip-config/gateway.yaml:3: invalid YAML: ")


def test_check_config_missing_file(root: Path) -> None:
    result = gateway(root, "check-config", "--config", "nope/gateway.yaml")
    assert result.returncode == 1
    assert one_line(result.stderr) == "nope/gateway.yaml: cannot read file: No such file or directory"


def test_config_from_environment(root: Path) -> None:
    result = gateway(root, "check-config", env={"GATEWAY_CONFIG": "nope.yaml"})
    assert result.returncode == 1
    assert one_line(result.stderr) == "nope.yaml: cannot read file: No such file or directory"


def test_bad_env_override_is_one_line(root: Path) -> None:
    result = gateway(root, "check-config", env={"GATEWAY_SIP_LISTEN": "udp:localhost:5060"})
    assert result.returncode == 1
    assert one_line(result.stderr) == (
        "environment: GATEWAY_SIP_LISTEN: invalid listen address `udp:localhost:5060`: "
        "expected an IP and a port like `udp:0.0.0.0:5060`"
    )


@pytest.mark.parametrize("level", ["LOUD", "verbose"])
def test_bad_log_level_in_environment_is_one_line(root: Path, level: str) -> None:
    # The variable is the default of --log-level; argparse never checks a default against `choices`.
    result = gateway(root, "check-config", env={"GATEWAY_LOG_LEVEL": level})
    assert result.returncode == 1
    assert "Traceback" not in result.stderr
    assert one_line(result.stderr) == (
        f"environment: GATEWAY_LOG_LEVEL: must be one of DEBUG, INFO, WARNING, ERROR, CRITICAL (got `{level}`)"
    )


def test_log_level_from_environment_any_case(root: Path) -> None:
    result = gateway(root, "check-config", env={"GATEWAY_LOG_LEVEL": "debug"})
    assert result.returncode == 0, result.stderr


@pytest.mark.parametrize(
    "args",
    [
        (),
        ("bogus",),
        ("credentials",),
        ("credentials", "set"),
        ("dialplan", "simulate", "--help-point", "hp-outram-street", "--at", "yesterday"),
        (
            "dialplan",
            "simulate",
            "--help-point",
            "hp-outram-street",
            "--at",
            "2024-11-22T23:30:00",
            "--outcome",
            "486",
        ),
        ("check-config", "--log-level", "LOUD"),
    ],
)
def test_usage_errors_are_one_line(root: Path, args: tuple[str, ...]) -> None:
    result = gateway(root, *args)
    assert result.returncode == 2
    assert "error:" in one_line(result.stderr)
    assert "Traceback" not in result.stderr


def test_help_exits_zero(root: Path) -> None:
    result = gateway(root, "--help")
    assert result.returncode == 0
    assert "check-config" in result.stdout


def test_simulate_unknown_help_point(root: Path) -> None:
    result = gateway(
        root, "dialplan", "simulate", "--help-point", "hp-nowhere", "--at", "2024-11-22T23:30:00Z"
    )
    assert result.returncode == 1
    assert one_line(result.stderr).startswith("gateway: error: unknown help point 'hp-nowhere'")


def test_credentials_refuse_empty_password(root: Path) -> None:
    env = {"GATEWAY_DB_URL": f"sqlite+aiosqlite:///{root / 'creds.db'}"}
    result = gateway(root, "credentials", "set", "council-cctv-1", stdin="\n", env=env)
    assert result.returncode == 1
    assert one_line(result.stderr) == "gateway: error: refusing an empty password"


@pytest.mark.skipif(not _store_available(), reason="gateway.store.Store is not written yet")
def test_credentials_set_from_stdin(root: Path) -> None:
    db = root / "creds" / "gateway.db"
    env = {"GATEWAY_DB_URL": f"sqlite+aiosqlite:///{db}"}
    result = gateway(root, "credentials", "set", "council-cctv-1", stdin="s3cret-Passw0rd\n", env=env)
    assert result.returncode == 0, result.stderr
    assert result.stdout == "credentials set for council-cctv-1 in realm helppoint-gateway\n"
    assert result.stderr == ""
    assert b"s3cret-Passw0rd" not in db.read_bytes()  # HA1 hashes only

    from gateway.store import Store

    async def stored() -> object:
        store = Store.create(env["GATEWAY_DB_URL"])
        try:
            return await store.get_credentials("council-cctv-1", "helppoint-gateway")
        finally:
            await store.close()

    credentials = asyncio.run(stored())
    expected = hashlib.sha256(b"council-cctv-1:helppoint-gateway:s3cret-Passw0rd").hexdigest()
    assert getattr(credentials, "ha1_sha256", None) == expected


def test_credentials_realm_option(root: Path) -> None:
    if not _store_available():
        pytest.skip("gateway.store.Store is not written yet")
    env = {"GATEWAY_DB_URL": f"sqlite+aiosqlite:///{root / 'gateway.db'}"}
    result = gateway(root, "credentials", "set", "hp-outram-street", "--realm", "other", stdin="pw", env=env)
    assert result.returncode == 0, result.stderr
    assert result.stdout == "credentials set for hp-outram-street in realm other\n"


@pytest.mark.skipif(not _store_available(), reason="gateway.store.Store is not written yet")
def test_db_upgrade(root: Path) -> None:
    db = root / "var" / "gateway.db"
    result = gateway(root, "db", "upgrade", env={"GATEWAY_DATA_DIR": str(root / "var")})
    assert result.returncode == 0, result.stderr
    assert db.exists()
    assert result.stdout == f"database is up to date: sqlite+aiosqlite:///{db}\n"


def test_database_password_is_never_shown(root: Path) -> None:
    if not _store_available():
        pytest.skip("gateway.store.Store is not written yet")
    env = {"GATEWAY_DB_URL": "postgresql+asyncpg://gw:hunter2@127.0.0.1:1/gateway"}
    result = gateway(root, "db", "upgrade", env=env)
    assert result.returncode == 1
    assert one_line(result.stderr).startswith("gateway: error: database error: ")
    assert "hunter2" not in result.stderr + result.stdout


def test_bad_database_url_is_one_line(root: Path) -> None:
    if not _store_available():
        pytest.skip("gateway.store.Store is not written yet")
    env = {"GATEWAY_DB_URL": "nosuchdialect://x/y"}
    result = gateway(root, "credentials", "set", "council-cctv-1", stdin="pw\n", env=env)
    assert result.returncode == 1
    assert one_line(result.stderr).startswith("gateway: error: database error: ")


def _dialplan_tools_available() -> bool:
    try:
        importlib.import_module("gateway.dialplan.simulate")
    except ImportError:
        return False
    return True


@pytest.fixture
def dialplan_root(root: Path) -> Path:
    if not _dialplan_tools_available():
        pytest.skip("gateway.dialplan.simulate is not written yet")
    shutil.copytree(REPO / "dialplans", root / "dialplans")
    (root / "prompts").mkdir()
    for name in ("connecting", "all-rooms-unavailable"):
        (root / "prompts" / f"{name}.wav").write_bytes(b"")
    return root


def test_dialplan_check(dialplan_root: Path) -> None:
    result = gateway(dialplan_root, "dialplan", "check")
    assert result.returncode == 0, result.stderr
    assert result.stdout.startswith("ok: ")


def test_dialplan_check_reports_missing_prompt(dialplan_root: Path) -> None:
    """An ops prompt that is in no prompts folder is an error; a built-in one (shipped in the repository's
    prompts/, which the media plane loads before the configured folder) is not, exactly as when the running
    gateway validates a reload: `check` and the gateway use the same inventory."""
    plan = dialplan_root / "dialplans" / "sutton.yaml"
    plan.write_text(plan.read_text().replace("- play: connecting", "- play: welcome"))
    result = gateway(dialplan_root, "dialplan", "check", "dialplans/sutton.yaml")
    assert result.returncode == 1
    assert "unknown prompt `welcome`" in result.stderr
    assert "Traceback" not in result.stderr
    (dialplan_root / "prompts" / "welcome.wav").write_bytes(b"")
    (dialplan_root / "prompts" / "connecting.wav").unlink()  # still shipped: fine
    plan.write_text(plan.read_text().replace("- play: welcome", "- play: connecting"))
    result = gateway(dialplan_root, "dialplan", "check", "dialplans/sutton.yaml")
    assert result.returncode == 0, result.stderr


def test_dialplan_simulate(dialplan_root: Path) -> None:
    args = (
        "--help-point",
        "hp-outram-street",
        "--at",
        "2024-11-22T23:30:00",
        "--outcome",
        "police-control=answer",
    )
    result = gateway(dialplan_root, "dialplan", "simulate", *args)
    assert result.returncode == 0, result.stderr
    assert result.stdout.splitlines()[-1].endswith("done: answered by police-control-1")


@pytest.mark.parametrize("first", [("--config", "sip-config/gateway.yaml"), ("--config=sip-config/gateway.yaml",),
                                   ("--log-level", "DEBUG")])
def test_an_option_before_the_command_says_where_it_goes(root: Path, first: tuple[str, ...]) -> None:
    """`gateway --config FILE check-config` is what many tools take; ours wants the option after the
    command, and says so instead of calling the file name an invalid command."""
    result = gateway(root, *first, "check-config")
    assert result.returncode == 2
    line = one_line(result.stderr)
    assert "after the command" in line and "gateway check-config " in line
    assert "invalid choice" not in result.stderr


def test_the_command_list_used_for_that_message_is_the_parsers() -> None:
    import argparse

    from gateway.__main__ import _COMMANDS, build_parser

    sub = next(a for a in build_parser()._actions if isinstance(a, argparse._SubParsersAction))
    assert tuple(sub.choices) == _COMMANDS


def test_check_config_counts_read_right_for_one() -> None:
    from gateway.__main__ import _count

    assert [_count(1, "help point"), _count(0, "room"), _count(3, "position")] == [
        "1 help point", "0 rooms", "3 positions"]
