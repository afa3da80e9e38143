"""The activation journal: JSON lines beside the database, written by a thread of its own."""

from __future__ import annotations

import concurrent.futures
import contextlib
import json
import logging
import os
import threading
from pathlib import Path
from typing import Any

from gateway.media import fast
from gateway.media.ports import name_native_thread

from .events import CallSummary

log = logging.getLogger(__name__)

#: Open, append, fsync (cut back on failure) and close in one call that releases the GIL once (C), or None:
#: each system call made in Python hands the GIL over to the event loop's thread and waits to take it back.
_APPEND_DURABLY = getattr(fast.load(), "append_durably", None)


class SummaryLog:
    """Append-only JSON-lines journal of ended activations and sealed recordings, beside the database.

    Lines are written and fsync'd by one dedicated thread, in order, so the event loop never waits
    for the disk; lines queued while a write is in progress go out together in the next write (one
    fsync for many lines).  :meth:`close` waits for every line to be on disk.
    """

    def __init__(self, path: Path) -> None:
        self.path = path
        self._thread = concurrent.futures.ThreadPoolExecutor(max_workers=1, thread_name_prefix="journal",
                                                             initializer=name_native_thread,
                                                             initargs=("gw-journal",))
        self._lock = threading.Lock()
        #: Lines queued for the writer thread, in order (lines whose write failed wait here for the next one).
        self._pending: list[str] = []
        #: A write is scheduled on the thread and has not taken the pending lines yet.
        self._scheduled = False

    def append(self, summary: CallSummary | dict[str, Any]) -> None:
        """Write one activation (a summary, or its :meth:`~CallSummary.as_dict`)."""
        self._write(summary if isinstance(summary, dict) else summary.as_dict())

    def append_recording(self, activation_id: str, path: str, duration: float, sha256: str | None) -> None:
        """Journal a sealed recording."""
        self._write({"recording": {"activation_id": activation_id, "path": path, "duration": duration,
                                   "sha256": sha256}})

    def _write(self, doc: dict[str, Any]) -> None:
        line = json.dumps(doc, separators=(",", ":"), default=str)
        with self._lock:
            self._pending.append(line)
            first, self._scheduled = not self._scheduled, True
        if first:
            try:
                self._thread.submit(self._append)
            except RuntimeError:
                with self._lock:
                    self._pending.remove(line)
                    self._scheduled = False
                raise

    def _append(self) -> None:
        # Group commit: every line queued by now goes out in one write and one fsync, in order.
        with self._lock:
            lines, self._pending = self._pending, []
            self._scheduled = False
        if not lines:
            return
        data = ("\n".join(lines) + "\n").encode("utf-8")
        try:
            if _APPEND_DURABLY is not None:
                path = os.fsencode(self.path)
                try:
                    _APPEND_DURABLY(path, data)
                except FileNotFoundError:  # the folder is gone (or never was): made, and tried once more
                    self.path.parent.mkdir(parents=True, exist_ok=True)
                    _APPEND_DURABLY(path, data)
                return
            self.path.parent.mkdir(parents=True, exist_ok=True)
            with open(self.path, "ab", buffering=0) as fh:
                start = fh.seek(0, os.SEEK_END)
                try:
                    view = memoryview(data)
                    while view:
                        view = view[fh.write(view):]
                    os.fsync(fh.fileno())
                except OSError:
                    # A full disk may have taken part of it: cut the torn line off, or the next line would
                    # be glued onto it (two records unreadable, and every reader failing there).
                    fh.truncate(start)
                    raise
        except OSError:
            with self._lock:
                self._pending[:0] = lines  # retried, in order, with the next write (or at close)
            log.exception("activation journal %s: write failed, %d line(s) kept for the next write "
                          "(the database still has the records)", self.path, len(lines))

    def close(self) -> None:
        """Wait until every queued line is written (lines that failed to write are tried once more)."""
        with self._lock:
            retry = bool(self._pending) and not self._scheduled
            self._scheduled = self._scheduled or retry
        if retry:
            with contextlib.suppress(RuntimeError):  # closed already
                self._thread.submit(self._append)
        self._thread.shutdown(wait=True)
        if self._pending:
            log.error("activation journal %s: %d line(s) could not be written", self.path, len(self._pending))

    def read_tail(self, max_bytes: int) -> list[dict[str, Any]]:
        """The documents of the journal's last ``max_bytes`` (whole lines only; a line that does not parse,
        such as one a crash tore, is skipped): what start-up replays."""
        try:
            with open(self.path, "rb") as fh:
                size = fh.seek(0, os.SEEK_END)
                start = max(0, size - max_bytes)
                fh.seek(start)
                data = fh.read()
        except OSError:
            return []
        lines = data.split(b"\n")
        if start > 0:
            lines = lines[1:]  # the first one is cut
        docs: list[dict[str, Any]] = []
        for line in lines:
            try:
                doc = json.loads(line)
            except ValueError:
                continue
            if isinstance(doc, dict):
                docs.append(doc)
        return docs

    def read(self) -> list[dict[str, Any]]:
        """Every activation written so far (tests, CLI)."""
        if not self.path.exists():
            return []
        return [json.loads(line) for line in self.path.read_text(encoding="utf-8").splitlines() if line]
