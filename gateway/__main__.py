"""Command line: ``gateway`` / ``python -m gateway``.

Subcommands::

    gateway serve            [--config FILE]       run the gateway until SIGTERM
    gateway check-config     [--config FILE]       validate gateway.yaml and the inventory
    gateway credentials set USER [--realm R]       store USER's digest HA1s; password read from stdin
    gateway db upgrade       [--config FILE]       apply database migrations
    gateway dialplan check   [FILE ...]            validate dialplan files
    gateway dialplan simulate --help-point ID --at ISO [--outcome ROOM=CAUSE ...]

Every failure caused by input (bad config, bad arguments, unreachable database) is one line on stderr and a
non-zero exit status, never a traceback.  The heavy modules (service, store, dialplan tools) are imported
inside the handler that needs them, so ``check-config`` stays fast and independent of them.
"""

from __future__ import annotations

import argparse
import asyncio
import getpass
import importlib
import logging
import os
import sys
from collections.abc import Awaitable, Callable, Sequence
from datetime import datetime
from typing import Any, NoReturn

from gateway.config import Config, ConfigError, Inventory, load_config, load_inventory

__all__ = ["main"]

ENV_CONFIG = "GATEWAY_CONFIG"
ENV_LOG_LEVEL = "GATEWAY_LOG_LEVEL"
LOG_LEVELS = ("DEBUG", "INFO", "WARNING", "ERROR", "CRITICAL")
DEFAULT_CONFIG = "sip-config/gateway.yaml"
LOG_FORMAT = "%(asctime)s %(levelname)s %(name)s: %(message)s"

logger = logging.getLogger(__name__)


class CliError(Exception):
    """A command failed because of its input; ``str`` is the one line shown to the user."""


class _Parser(argparse.ArgumentParser):
    """ArgumentParser whose usage errors are one line (argparse's default prints the usage block too)."""

    def error(self, message: str) -> NoReturn:
        self.exit(2, f"{self.prog}: error: {message} (see --help)\n")


# ------------------------------------------------------------------------------------------------ helpers


def _load(args: argparse.Namespace) -> Config:
    return load_config(args.config)


def _load_with_inventory(args: argparse.Namespace) -> tuple[Config, Inventory]:
    config = _load(args)
    return config, load_inventory(config)


def _read_password(user: str) -> str:
    """The password from stdin: prompted twice without echo on a terminal, else the first line."""
    if sys.stdin is None:
        raise CliError("no standard input to read the password from")
    if sys.stdin.isatty():
        try:
            password = getpass.getpass(f"Password for {user}: ")
            if password and getpass.getpass("Repeat password: ") != password:
                raise CliError("the passwords do not match")
        except EOFError:
            password = ""
    else:
        password = sys.stdin.readline().removesuffix("\n").removesuffix("\r")
    if not password:
        raise CliError("refusing an empty password")
    return password


def _run_store(config: Config, operation: Callable[[Any], Awaitable[object] | None]) -> None:
    """Open the store at ``config.db_url``, migrate it, await ``operation(store)``, close it."""
    from gateway.store import Store, StoreError

    async def run() -> None:
        store = Store.create(config.db_url or "")
        try:
            await store.upgrade()
            pending = operation(store)
            if pending is not None:
                await pending
        finally:
            await store.close()

    try:
        asyncio.run(run())
    except (StoreError, OSError) as exc:
        logger.debug("database operation failed", exc_info=True)
        first_line = (str(exc).strip().splitlines() or [type(exc).__name__])[0]
        raise CliError(f"database error: {first_line}") from None


def _shown_url(url: str) -> str:
    """``url`` with any password masked, for messages."""
    from sqlalchemy.engine import make_url
    from sqlalchemy.exc import ArgumentError

    try:
        return make_url(url).render_as_string(hide_password=True)
    except ArgumentError:
        return "(unparsable database URL)"


def _dialplan_tools() -> Any:
    # By module name: `gateway.dialplan` re-exports a function called `simulate` that hides the submodule.
    try:
        return importlib.import_module("gateway.dialplan.simulate")
    except ImportError as exc:
        raise CliError(f"the dialplan tools are not available: {exc}") from None


def _routing_inventory(config: Config, inventory: Inventory) -> Any:
    """The plain-data view of the inventory that the dialplan package validates against: the very one the
    running gateway uses (built-in prompts, the trunk), so `check` and a reload never disagree."""
    from gateway.service import dialplan_inventory

    return dialplan_inventory(config, inventory)


def _outcome(text: str) -> str:
    key, sep, script = text.partition("=")
    if not sep or not key.strip() or not script.strip():
        raise argparse.ArgumentTypeError(f"expected KEY=SCRIPT like council-cctv=busy, got {text!r}")
    return f"{key.strip()}={script.strip()}"


def _instant(text: str) -> str:
    try:
        datetime.fromisoformat(text)
    except ValueError:
        raise argparse.ArgumentTypeError(
            f"expected an ISO 8601 time like 2024-11-22T23:30:00 (Europe/London) or 2024-11-22T23:30:00+00:00, "
            f"got {text!r}"
        ) from None
    return text


# ----------------------------------------------------------------------------------------------- commands


def _cmd_serve(args: argparse.Namespace) -> int:
    config = _load(args)
    try:
        from gateway.service import serve
    except ModuleNotFoundError as exc:
        if exc.name != "gateway.service":
            raise
        raise CliError("the gateway service module is not available in this build") from None
    return serve(config)


def _cmd_check_config(args: argparse.Namespace) -> int:
    _, inventory = _load_with_inventory(args)
    positions = sum(len(room.positions) for room in inventory.rooms)
    print(f"OK: {_count(len(inventory.help_points), 'help point')}, {_count(positions, 'position')} in "
          f"{_count(len(inventory.rooms), 'room')}")
    return 0


def _count(n: int, noun: str) -> str:
    return f"{n} {noun}" if n == 1 else f"{n} {noun}s"


def _cmd_credentials_set(args: argparse.Namespace) -> int:
    config = _load(args)
    user: str = args.user
    if not user or any(ch.isspace() or ch in ':"' for ch in user):
        raise CliError(f"invalid SIP user {user!r}")
    realm: str = args.realm or config.sip.realm
    try:
        inventory = load_inventory(config)
    except ConfigError:
        inventory = None  # `check-config` reports it; setting a password must not depend on it
    if inventory is not None and user not in inventory.digest_users():
        logger.warning("%s is not a digest account in the inventory; storing its credentials anyway", user)
    password = _read_password(user)
    _run_store(config, lambda store: store.set_credentials(user, realm, password))
    print(f"credentials set for {user} in realm {realm}")
    return 0


def _cmd_db_upgrade(args: argparse.Namespace) -> int:
    config = _load(args)
    _run_store(config, lambda store: None)
    print(f"database is up to date: {_shown_url(config.db_url or '')}")
    return 0


def _cmd_tokens_create(args: argparse.Namespace) -> int:
    from gateway.records import ROLES
    from gateway.store import create_token

    if args.role not in ROLES:
        raise CliError(f"unknown role `{args.role}`: one of {', '.join(sorted(ROLES))}")
    config = _load(args)
    created: list[str] = []

    async def make(store: Any) -> None:
        created.append(await create_token(store, args.name, args.role))

    _run_store(config, make)
    print(created[0])
    print(f"token `{args.name}` ({args.role}) created: shown once, only its hash is stored", file=sys.stderr)
    return 0


def _cmd_recordings_verify(args: argparse.Namespace) -> int:
    from gateway.store import verify_recordings

    config = _load(args)
    found: list[Any] = []

    async def check(store: Any) -> None:
        found.extend(await verify_recordings(store))

    _run_store(config, check)
    for mismatch in found:
        print(f"MISMATCH {mismatch.activation_id} {mismatch.path}: {mismatch.problem} "
              f"(expected {mismatch.expected}, found {mismatch.actual})", file=sys.stderr)
    print(f"{len(found)} mismatch(es)" if found else "every recording matches its SHA-256")
    return 1 if found else 0


def _emit(result: tuple[int, Sequence[str]]) -> int:
    """Print a dialplan tool's lines: to stdout on success, to stderr on failure."""
    code, lines = result
    for line in lines:
        print(line, file=sys.stdout if code == 0 else sys.stderr)
    return code


def _dialplan_paths(config: Config, files: Sequence[str]) -> list[str]:
    return list(files) or [str(config.dialplans_dir)]


def _cmd_dialplan_check(args: argparse.Namespace) -> int:
    config, inventory = _load_with_inventory(args)
    tools = _dialplan_tools()
    return _emit(
        tools.check_command(_dialplan_paths(config, args.files), _routing_inventory(config, inventory))
    )


def _cmd_dialplan_simulate(args: argparse.Namespace) -> int:
    config, inventory = _load_with_inventory(args)
    if inventory.help_point(args.help_point) is None:
        raise CliError(f"unknown help point {args.help_point!r} (see {config.inventory.help_points})")
    tools = _dialplan_tools()
    return _emit(
        tools.simulate_command(
            _dialplan_paths(config, args.dialplan),
            _routing_inventory(config, inventory),
            help_point=args.help_point,
            at=args.at,
            outcomes=args.outcome,
        )
    )


# ------------------------------------------------------------------------------------------------- parser


#: The subcommands (an option given before one of them is pointed after it).
_COMMANDS = ("serve", "check-config", "credentials", "db", "tokens", "recordings", "dialplan")


def build_parser() -> argparse.ArgumentParser:
    """The full argument parser (exposed for tests and documentation)."""
    common = _Parser(add_help=False)
    common.add_argument(
        "--config",
        default=os.environ.get(ENV_CONFIG) or DEFAULT_CONFIG,
        metavar="FILE",
        help=f"gateway configuration (default: ${ENV_CONFIG} or {DEFAULT_CONFIG})",
    )
    common.add_argument(
        "--log-level",
        default=os.environ.get(ENV_LOG_LEVEL) or None,
        type=str.upper,
        choices=LOG_LEVELS,
        help="logging threshold (default: $GATEWAY_LOG_LEVEL, else INFO for serve and WARNING otherwise)",
    )

    parser = _Parser(prog="gateway", description="Help-point SIP gateway.")
    commands = parser.add_subparsers(dest="command", metavar="COMMAND", parser_class=_Parser, required=True)

    serve = commands.add_parser("serve", parents=[common], help="run the gateway until SIGTERM")
    serve.set_defaults(handler=_cmd_serve)

    check = commands.add_parser(
        "check-config", parents=[common], help="validate the configuration and inventory"
    )
    check.set_defaults(handler=_cmd_check_config)

    credentials = commands.add_parser("credentials", help="manage digest credentials")
    cred_commands = credentials.add_subparsers(
        dest="action", metavar="ACTION", parser_class=_Parser, required=True
    )
    cred_set = cred_commands.add_parser(
        "set",
        parents=[common],
        help="store a user's HA1 hashes; the password is read from stdin",
        description="Read the password from stdin (no echo on a terminal; the trailing newline is stripped) "
        "and store its HA1 hashes (SHA-256 and MD5).  The password itself is never stored.",
    )
    cred_set.add_argument("user", help="SIP user, as in the inventory")
    cred_set.add_argument("--realm", help="digest realm (default: sip.realm of the configuration)")
    cred_set.set_defaults(handler=_cmd_credentials_set)

    db = commands.add_parser("db", help="database maintenance")
    db_commands = db.add_subparsers(dest="action", metavar="ACTION", parser_class=_Parser, required=True)
    upgrade = db_commands.add_parser("upgrade", parents=[common], help="apply database migrations")
    upgrade.set_defaults(handler=_cmd_db_upgrade)

    tokens = commands.add_parser("tokens", help="HTTP API bearer tokens")
    tok_commands = tokens.add_subparsers(dest="action", metavar="ACTION", parser_class=_Parser, required=True)
    tok_create = tok_commands.add_parser(
        "create", parents=[common], help="create a token (printed once on stdout; only its hash is stored)")
    tok_create.add_argument("--name", required=True, help="who the token is for, e.g. council-cctv-desk-1")
    tok_create.add_argument("--role", required=True, help="operator, ops, auditor or admin")
    tok_create.set_defaults(handler=_cmd_tokens_create)

    recordings = commands.add_parser("recordings", help="evidential recordings")
    rec_commands = recordings.add_subparsers(dest="action", metavar="ACTION", parser_class=_Parser, required=True)
    rec_verify = rec_commands.add_parser(
        "verify", parents=[common], help="re-hash every recording; exit 1 and list any mismatch")
    rec_verify.set_defaults(handler=_cmd_recordings_verify)

    dialplan = commands.add_parser("dialplan", help="dialplan tools")
    dp_commands = dialplan.add_subparsers(
        dest="action", metavar="ACTION", parser_class=_Parser, required=True
    )
    dp_check = dp_commands.add_parser("check", parents=[common], help="validate dialplan files")
    dp_check.add_argument(
        "files", nargs="*", metavar="FILE", help="dialplan files (default: every *.yaml in dialplans_dir)"
    )
    dp_check.set_defaults(handler=_cmd_dialplan_check)
    dp_sim = dp_commands.add_parser(
        "simulate", parents=[common], help="show which control rooms a press would ring, and in what order"
    )
    dp_sim.add_argument(
        "--help-point", required=True, metavar="ID", help="help point id, e.g. hp-outram-street"
    )
    dp_sim.add_argument(
        "--at",
        required=True,
        type=_instant,
        metavar="ISO",
        help="time of the press, ISO 8601; without an offset it is Europe/London time",
    )
    dp_sim.add_argument(
        "--outcome",
        action="append",
        default=[],
        type=_outcome,
        metavar="KEY=SCRIPT",
        help="how a room, position or dialled number behaves when rung: answer, answer-unconfirmed, timeout "
        "(default), no-response, busy, decline, server_error, unreachable; `@SECONDS` sets the delay "
        "(answer@12); a comma list gives one script per attempt (timeout,answer); repeatable",
    )
    dp_sim.add_argument(
        "--dialplan",
        action="append",
        default=[],
        metavar="FILE",
        help="dialplan file (default: dialplans_dir)",
    )
    dp_sim.set_defaults(handler=_cmd_dialplan_simulate)
    return parser


def _setup_logging(level: str) -> None:
    # The format names no source file, thread or process: skip computing them on every record.
    logging.logThreads = logging.logProcesses = logging.logMultiprocessing = False
    logging._srcfile = None  # type: ignore[attr-defined]  # no findCaller() stack walk per record
    logging.basicConfig(level=level, format=LOG_FORMAT, stream=sys.stderr, force=True)
    if level != "DEBUG":
        logging.getLogger("alembic.runtime.plugins").setLevel(logging.WARNING)  # one line per plugin at INFO


def main(argv: Sequence[str] | None = None) -> int:
    """Run the CLI; return the process exit status."""
    parser = build_parser()
    given = list(sys.argv[1:] if argv is None else argv)
    if given and given[0].split("=", 1)[0] in ("--config", "--log-level"):
        # `gateway --config FILE check-config`: argparse would call FILE an invalid command.
        command = next((a for a in given if a in _COMMANDS), "COMMAND")
        print(f"gateway: error: {given[0].split('=', 1)[0]} goes after the command: "
              f"gateway {command} {' '.join(a for a in given if a != command)}", file=sys.stderr)
        return 2
    try:
        args = parser.parse_args(argv)
    except SystemExit as exc:  # --help, or a usage error already printed on one line
        return exc.code if isinstance(exc.code, int) else 2
    if args.log_level is not None and args.log_level not in LOG_LEVELS:
        # Only the environment's default gets here: argparse checks `choices` for a given option only.
        print(ConfigError("environment", ENV_LOG_LEVEL, f"must be one of {', '.join(LOG_LEVELS)} "
                          f"(got `{os.environ.get(ENV_LOG_LEVEL, args.log_level)}`)"), file=sys.stderr)
        return 1
    _setup_logging(args.log_level or ("INFO" if args.command == "serve" else "WARNING"))
    try:
        return int(args.handler(args))
    except ConfigError as exc:
        print(exc, file=sys.stderr)
        return 1
    except CliError as exc:
        print(f"gateway: error: {exc}", file=sys.stderr)
        return 1
    except KeyboardInterrupt:
        print("gateway: interrupted", file=sys.stderr)
        return 130


if __name__ == "__main__":
    sys.exit(main())
