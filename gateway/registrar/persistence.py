"""Persisting registrar bindings: conversions to the store's rows and a write-behind queue.

The registrar decides in memory; this module makes its decisions durable without
ever making the SIP path wait for the database.  An AOR whose set the database refuses is
retried after the others, never in front of them, and text longer than the store's columns
(255 characters for ``Call-ID`` and ``User-Agent``) is clipped rather than refused.
"""

from __future__ import annotations

import asyncio
import logging
from datetime import UTC, datetime

from gateway import metrics
from gateway.store import Store, StoredBinding

from .bindings import Binding, Source

log = logging.getLogger(__name__)

#: Width of the store's ``call_id`` and ``user_agent`` columns (PostgreSQL refuses longer values).
_TEXT_COLUMN = 255


def to_stored(binding: Binding) -> StoredBinding:
    """A registrar binding as the store keeps it (UTC datetime expiry)."""
    return StoredBinding(
        aor=binding.aor,
        contact=binding.contact,
        expires_at=datetime.fromtimestamp(binding.expires_at, UTC),
        # A clipped Call-ID only makes the device's next refresh count as a new Call-ID after a restart.
        call_id=binding.call_id[:_TEXT_COLUMN],
        cseq=binding.cseq,
        source_host=binding.source.host,
        source_port=binding.source.port,
        transport=binding.source.transport,
        user_agent=None if binding.user_agent is None else binding.user_agent[:_TEXT_COLUMN],
        q=binding.q,
    )


def from_stored(row: StoredBinding) -> Binding:
    """A stored binding back as the registrar's value."""
    return Binding(
        aor=row.aor,
        contact=row.contact,
        expires_at=row.expires_at.timestamp(),
        call_id=row.call_id,
        cseq=row.cseq,
        source=Source(row.source_host, row.source_port, row.transport),
        user_agent=row.user_agent,
        q=row.q,
    )


class BindingWriter:
    """Write-behind for binding sets: coalesces per AOR, never blocks the SIP path."""

    def __init__(self, store: Store) -> None:
        self.store = store
        self._pending: dict[str, tuple[Binding, ...]] = {}
        self._wake = asyncio.Event()
        self._task: asyncio.Task[None] | None = None
        #: Seconds between passes over sets the database refused.
        self.retry_delay = 1.0

    def submit(self, aor: str, bindings: tuple[Binding, ...]) -> None:
        """Queue the AOR's complete new binding set."""
        self._pending[aor] = bindings
        metrics.BINDING_QUEUE_DEPTH.set(len(self._pending))
        self._wake.set()

    def start(self) -> None:
        """Start the writer task."""
        self._task = asyncio.get_running_loop().create_task(self._run(), name="binding-writer")

    async def _run(self) -> None:
        while True:
            await self._wake.wait()
            self._wake.clear()
            await self.flush()

    async def flush(self, deadline: float | None = None) -> bool:
        """Write everything pending, the latest set of each AOR; True once nothing is pending.

        A set that fails stays pending and is retried after every other AOR was tried (one AOR
        the database refuses never holds back the rest); nothing is dropped.  With ``deadline``
        (loop time) it gives up then and returns False.
        """
        loop = asyncio.get_running_loop()
        while self._pending:
            failed = False
            for aor in list(self._pending):
                bindings = self._pending.get(aor)
                if bindings is None:
                    continue
                if deadline is not None and loop.time() >= deadline:
                    return False
                try:
                    await self.store.save_bindings(aor, [to_stored(b) for b in bindings])
                except Exception:
                    failed = True
                    metrics.DB_WRITE_FAILURES.inc()
                    log.exception("saving bindings of %s failed; will retry", aor)
                    continue
                if self._pending.get(aor) is bindings:
                    del self._pending[aor]
                metrics.BINDING_QUEUE_DEPTH.set(len(self._pending))
            if failed:
                delay = self.retry_delay
                if deadline is not None:
                    delay = min(delay, max(0.0, deadline - loop.time()))
                await asyncio.sleep(delay)
        return True

    async def close(self, timeout: float = 5.0) -> None:
        """Flush and stop; gives up after ``timeout`` seconds when the database is unavailable."""
        if self._task is not None:
            self._task.cancel()
            try:
                await self._task
            except asyncio.CancelledError:
                pass
        try:  # the deadline bounds the passes, wait_for a save the database never answers
            done = await asyncio.wait_for(self.flush(deadline=asyncio.get_running_loop().time() + timeout), timeout)
        except TimeoutError:
            done = False
        if not done:
            log.error("database unavailable: bindings of %d AOR(s) not saved (%s)", len(self._pending),
                      ", ".join(sorted(self._pending)))
