"""Wiring of the activation records into the running gateway: start-up recovery and the HTTP API's services."""

from __future__ import annotations

import logging
import tempfile
import wave
from collections.abc import Callable, Collection
from datetime import UTC, datetime
from pathlib import Path
from typing import TYPE_CHECKING, Any

from gateway import metrics
from gateway.api import Services
from gateway.api.errors import ApiError, FieldError
from gateway.dialplan import DialplanSet, Inventory, SimulationInputError, check_command, simulate_files
from gateway.media.errors import MediaError
from gateway.media.ports import write_durably
from gateway.media.wav import repair_wav
from gateway.records import RetentionPolicy
from gateway.store import ActivationWriter, Records
from gateway.store.records import sha256_file

if TYPE_CHECKING:
    from gateway.service import Gateway

log = logging.getLogger(__name__)


async def start_records(gw: Gateway) -> None:
    """Open the activation records: sync the inventory, mark crashed calls interrupted, recover their audio."""
    config = gw.config
    retention = config.records.retention
    gw.records = Records(gw.store, retention=RetentionPolicy(
        by_classification=dict(retention.by_classification), by_outcome=dict(retention.by_outcome),
        unclassified_days=retention.unclassified_days))
    await gw.records.sync_inventory(gw.inventory.help_points, gw.inventory.rooms)
    gw.activations = ActivationWriter(gw.records, repeat_window=config.records.repeat_window,
                                      max_queue=config.records.write_queue_max)
    interrupted = await gw.activations.start()
    if interrupted:
        log.warning("%d activation(s) were in progress when the gateway stopped; marked interrupted: %s",
                    len(interrupted), ", ".join(interrupted))
    # With two gateways on one database (ops/ha: active/standby), the peer that took over after this node
    # died marked this node's calls interrupted at its own start: their ends (this node's journal) and their
    # recordings (this node's disk) can only be made up for here, now.
    fresh = set(interrupted)
    earlier = [aid for aid in await gw.records.interrupted_ids() if aid not in fresh]
    if interrupted or earlier:
        await replay_journal(gw, interrupted, earlier)
    await recover_recordings(gw, interrupted + earlier)


#: How much of the journal's end start-up reads for ends the database missed (a day of presses is far less).
JOURNAL_REPLAY_BYTES = 16 << 20


async def replay_journal(gw: Gateway, interrupted: list[str], earlier: Collection[str] = ()) -> list[str]:
    """Activations marked interrupted whose end the journal holds get that end written to the database.

    The journal line is written as the call ends; the database rows go through a queue.  When the gateway
    stops with ends still queued (a database outage, a crash), the database would otherwise say
    ``interrupted`` for a call whose real outcome (answered, by whom, its timeline) is on disk.

    ``interrupted``: the ids this start marked; ``earlier``: ids already ``interrupted`` in the database
    (marked by a peer gateway on the same database, or by an earlier start).  For those only an end that
    says more than ``interrupted`` is replayed, so that one is not written again at every start.  Returns the
    ids replayed.
    """
    assert gw.activations is not None and gw.records is not None
    fresh = set(interrupted)
    wanted = fresh | set(earlier)
    ends: dict[str, dict[str, Any]] = {}
    for doc in gw.summaries.read_tail(JOURNAL_REPLAY_BYTES):
        aid = doc.get("activation_id")
        outcome = doc.get("outcome")
        if aid in wanted and outcome not in (None, "in-progress") and (aid in fresh or outcome != "interrupted"):
            ends[aid] = doc
    for aid, doc in ends.items():
        try:
            detail = await gw.records.get_activation(aid)
            gw.activations.ended(doc, events_stored=len(detail.events) if detail is not None else 0)
        except Exception:
            log.exception("activation %s: its end could not be replayed from the journal", aid)
            continue
        log.warning("activation %s: end replayed from the journal (%s, the database had missed it)", aid,
                    doc.get("outcome"))
    return list(ends)


async def recover_recordings(gw: Gateway, interrupted: list[str]) -> None:
    """The recordings of activations a crash left in progress: repaired and sealed, or already sealed
    (the call had ended but its rows were still queued when the gateway died); linked unless they are.

    Only files on this node's disk count; the database is asked only about those (``interrupted`` may list
    every interrupted activation ever, most of whose recordings retention deleted or another node holds)."""
    assert gw.records is not None
    recordings = Path(gw.config.data_dir) / "recordings"
    for activation_id in interrupted:
        if not (recordings / f"{activation_id}.wav").exists():
            continue
        if await gw.records.get_recording(activation_id) is None:
            recover_recording(gw, activation_id)


def recover_recording(gw: Gateway, activation_id: str) -> None:
    """A crash left a partial recording: repair its WAV sizes, seal it with a SHA-256, link it.

    A recording sealed before the crash (``<file>.sha256`` exists) is linked with its seal as it is.
    """
    path = Path(gw.config.data_dir) / "recordings" / f"{activation_id}.wav"
    if not path.exists() or gw.activations is None:
        return
    seal = Path(f"{path}.sha256")
    if seal.exists():
        link_sealed_recording(gw, activation_id, path, seal)
        return
    try:
        data_bytes = repair_wav(path)
        digest, size = sha256_file(str(path))
        write_durably(Path(f"{path}.sha256"), f"{digest}  {path.name}\n".encode())
    except (OSError, MediaError) as exc:
        metrics.RECORDINGS_FAILED.inc()
        log.error("activation %s: partial recording %s could not be repaired: %s", activation_id, path, exc)
        return
    duration = data_bytes / (8000 * 2 * 2)
    gw.activations.recording(activation_id, str(path), duration, digest, size)
    gw.summaries.append_recording(activation_id, str(path), duration, digest)
    log.warning("activation %s: partial recording recovered after a crash (%.1f s, sha256 %s)", activation_id,
                duration, digest)


def link_sealed_recording(gw: Gateway, activation_id: str, path: Path, seal: Path) -> None:
    """Link a recording sealed before a crash whose database row the crash lost; the file is not touched."""
    assert gw.activations is not None
    try:
        digest = seal.read_text(encoding="ascii").split()[0].lower()
        size = path.stat().st_size
        with wave.open(str(path), "rb") as wav:
            duration = wav.getnframes() / wav.getframerate()
    except (OSError, IndexError, UnicodeDecodeError, EOFError, wave.Error) as exc:
        metrics.RECORDINGS_FAILED.inc()
        log.error("activation %s: sealed recording %s could not be linked: %s", activation_id, path, exc)
        return
    gw.activations.recording(activation_id, str(path), duration, digest, size)
    log.warning("activation %s: recording sealed before the crash linked (%.1f s, sha256 %s)", activation_id,
                duration, digest)


def api_services(gw: Gateway) -> Services:
    """What the HTTP API may call into."""

    def talkdown(help_point: str, warning: int, times: int) -> str:
        try:
            return gw.start_talkdown(help_point, warning, times)
        except LookupError as exc:
            problem = str(exc.args[0]) if exc.args else "help point unavailable"
            if gw.draining or gw.media is None or gw.media_factory is None:
                raise ApiError(503, f"talk-down not started: {problem}") from exc
            known = any(hp.id == help_point for hp in gw.inventory.help_points)
            # Unknown: 404; known but unreachable (not registered, no static_uri): 409.
            raise FieldError("help_point", problem, 409 if known else 404) from exc
        except ValueError as exc:  # the route's schema bounds `times`: what is left is a missing warning prompt
            raise FieldError("warning", str(exc)) from exc
        except MediaError as exc:  # every RTP port in use: try again shortly, not an internal error
            raise ApiError(503, f"talk-down not started: {exc}") from exc

    def check(text: str | None) -> dict[str, Any]:
        if text is None:
            code, lines = check_command([gw.config.dialplans_dir], gw.dialplan_inventory)
            return {"ok": code == 0, "lines": lines}
        with tempfile.TemporaryDirectory() as folder:
            candidate = Path(folder) / "candidate.yaml"
            candidate.write_text(text, encoding="utf-8")
            code, lines = check_command([candidate], gw.dialplan_inventory)
        return {"ok": code == 0, "lines": [line.replace(str(candidate), "<posted>") for line in lines]}

    return Services(
        health=gw.health, records=gw.records, play_warning=gw.calls.play_warning, start_talkdown=talkdown,
        help_point_status=gw.help_point_status, check_dialplans=check,
        simulate_dialplan=dialplan_simulator(gw.config.dialplans_dir, gw.dialplan_inventory, lambda: gw.dialplans),
        reload_dialplans=gw.reload_dialplans_report,
    )


def dialplan_simulator(dialplans_dir: str | Path, inventory: Inventory, in_force: Callable[[], DialplanSet | None],
                       ) -> Callable[[str, str | None, dict[str, str]], dict[str, Any]]:
    """The API's ``simulate_dialplan``: the files in ``dialplans_dir`` simulated for a help point that the
    dialplans ``in_force`` serve; each argument it cannot use is a :class:`FieldError` naming it."""

    def simulate(help_point: str, at: str | None, outcomes: dict[str, str]) -> dict[str, Any]:
        dialplans = in_force()
        if dialplans is None or dialplans.for_help_point(help_point) is None:
            raise FieldError("help_point", f"no dialplan serves help point {help_point!r}", 404)
        when = datetime.fromisoformat(at) if at else datetime.now(UTC).replace(second=0, microsecond=0)
        try:
            code, lines = simulate_files([dialplans_dir], inventory, help_point=help_point, at=when,
                                         outcomes=outcomes)
        except SimulationInputError as exc:
            if exc.argument == "help_point":
                raise FieldError("help_point", exc.problem, 404) from exc
            field = f"outcomes.{exc.keys[0]}" if exc.keys else exc.argument
            raise FieldError(field, exc.problem) from exc
        return {"ok": code == 0, "lines": lines}

    return simulate
