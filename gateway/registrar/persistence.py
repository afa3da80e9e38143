"""Persisting registrar bindings: conversions to the store's rows and a write-behind queue.

The registrar decides in memory; this module makes its decisions durable without
ever making the SIP path wait for the database.
"""

from __future__ import annotations

import asyncio
import logging
from datetime import UTC, datetime

from gateway import metrics
from gateway.store import Store, StoredBinding

from .bindings import Binding, Source

log = logging.getLogger(__name__)


def to_stored(binding: Binding) -> StoredBinding:
    """A registrar binding as the store keeps it (UTC datetime expiry)."""
    return StoredBinding(
        aor=binding.aor,
        contact=binding.contact,
        expires_at=datetime.fromtimestamp(binding.expires_at, UTC),
        call_id=binding.call_id,
        cseq=binding.cseq,
        source_host=binding.source.host,
        source_port=binding.source.port,
        transport=binding.source.transport,
        user_agent=binding.user_agent,
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

    async def flush(self) -> None:
        """Write everything pending (retrying later on failure; nothing is dropped)."""
        while self._pending:
            aor, bindings = next(iter(self._pending.items()))
            try:
                await self.store.save_bindings(aor, [to_stored(b) for b in bindings])
            except Exception:
                metrics.DB_WRITE_FAILURES.inc()
                log.exception("saving bindings of %s failed; will retry", aor)
                await asyncio.sleep(1.0)
                continue
            if self._pending.get(aor) is bindings:
                del self._pending[aor]
            metrics.BINDING_QUEUE_DEPTH.set(len(self._pending))

    async def close(self) -> None:
        """Flush and stop."""
        if self._task is not None:
            self._task.cancel()
            try:
                await self._task
            except asyncio.CancelledError:
                pass
        await self.flush()
