"""Activation records benchmark: write throughput through ActivationWriter, and API list latency.

    .venv/bin/python bench/records_bench.py                      # SQLite file (WAL) and PostgreSQL
    .venv/bin/python bench/records_bench.py --backends sqlite --activations 2000 --api-rows 10000

1. Writes: ``--activations`` activations, each ``started`` + ``--events`` timeline events + ``ended``,
   pushed through the real :class:`gateway.store.ActivationWriter` as fast as the call layer could,
   timed until ``flush()`` returns (everything committed).
2. API: the database is filled to ``--api-rows`` activations, the real aiohttp application serves
   it on 127.0.0.1 (a real socket), and ``--requests`` authenticated ``GET /api/activations``
   requests (pages of 50: newest first, following cursors, and filtered by help point / outcome /
   time range) run with ``--concurrency`` clients; p50/p95/p99 are reported.

PostgreSQL is the server at 127.0.0.1:5432 (database ``test``); the run uses its own schema and
drops it.  Everything is bounded and loopback-only.
"""

from __future__ import annotations

import argparse
import asyncio
import logging
import random
import statistics
import sys
import tempfile
import time
import uuid
from pathlib import Path
from typing import Any

import aiohttp
import asyncpg
from aiohttp import web

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from gateway.api import Services, create_app  # noqa: E402
from gateway.store import ActivationWriter, Records, Store, create_token, default_url  # noqa: E402

PG = ("127.0.0.1", 5432, "test")
T0 = 1_793_534_400.0
HELP_POINTS = [f"hp-{i:02d}" for i in range(12)]
OUTCOMES = ("answered", "unanswered", "abandoned", "answered", "answered")


async def open_store(backend: str, workdir: Path) -> tuple[Store, Any]:
    """A migrated store and a cleanup coroutine function."""
    if backend == "sqlite":
        store = Store.create(default_url(workdir / f"bench-{uuid.uuid4().hex[:6]}"))
        await store.upgrade()
        return store, None
    for user in ("postgres", "root"):
        try:
            admin = await asyncpg.connect(host=PG[0], port=PG[1], user=user, database=PG[2], timeout=3)
            break
        except (OSError, asyncpg.PostgresError, TimeoutError):
            continue
    else:
        raise SystemExit(f"no PostgreSQL at {PG[0]}:{PG[1]}/{PG[2]}; run with --backends sqlite")
    schema = f"bench_{uuid.uuid4().hex[:10]}"
    await admin.execute(f'CREATE SCHEMA "{schema}"')
    store = Store.create(f"postgresql+asyncpg://{user}@{PG[0]}:{PG[1]}/{PG[2]}", schema=schema)
    await store.upgrade()

    async def cleanup() -> None:
        await admin.execute(f'DROP SCHEMA "{schema}" CASCADE')
        await admin.close()

    return store, cleanup


def push(writer: ActivationWriter, first: int, count: int, events: int, step: float) -> None:
    """What the call layer does for ``count`` calls (synchronous, as it would)."""
    for n in range(first, first + count):
        aid = f"a{n:07d}"
        hp = HELP_POINTS[n % len(HELP_POINTS)]
        at = T0 + n * step
        writer.started(aid, hp, at, "town-centre", 3, f"rtsp://cctv/{hp}", f"53.1,-1.2;address={hp}")
        timeline = [{"t": i * 1.5, "event": "ringing" if i else "offered", "leg": f"cctv-{i % 3}#1"}
                    for i in range(events)]
        for entry in timeline:
            writer.event(aid, entry)
        outcome = OUTCOMES[n % len(OUTCOMES)]
        writer.ended({"activation_id": aid, "help_point": hp, "started_at": at, "outcome": outcome,
                      "answered_by": "cctv-1" if outcome == "answered" else None,
                      "answered_room": ("council", "police")[n % 2] if outcome == "answered" else None,
                      "ended_by": "hp", "duration": 40.0, "talk_time": 25.0, "dialplan": "town-centre",
                      "dialplan_version": 3, "silent": False, "timeline": timeline})


async def bench_writes(store: Store, activations: int, events: int) -> dict[str, float]:
    """Activations/s and rows/s through the writer, start to committed."""
    writer = ActivationWriter(Records(store), max_queue=10_000_000, batch_size=1000, clock=lambda: T0)
    await writer.start()
    started = time.perf_counter()
    chunk = 1000
    for first in range(0, activations, chunk):  # yield between chunks, as calls would arrive
        push(writer, first, min(chunk, activations - first), events, 1.0)
        await asyncio.sleep(0)
    await writer.flush()
    elapsed = time.perf_counter() - started
    await writer.close()
    rows = activations * (1 + events)
    return {"activations_per_s": activations / elapsed, "rows_per_s": rows / elapsed, "seconds": elapsed}


async def fill(store: Store, total: int, already: int) -> None:
    """Top the database up to ``total`` activations (2 events each) through the writer."""
    writer = ActivationWriter(Records(store), max_queue=10_000_000, batch_size=2000, clock=lambda: T0)
    await writer.start()
    for first in range(already, total, 5000):
        push(writer, first, min(5000, total - first), 2, 30.0)
        await asyncio.sleep(0)
    await writer.close()


async def bench_api(store: Store, requests: int, concurrency: int) -> dict[str, float]:
    """Latency of GET /api/activations over a real loopback socket."""
    token = await create_token(store, "bench", "operator")
    app = create_app(Services(health=lambda: {"status": "ok"}, records=Records(store)))
    runner = web.AppRunner(app, access_log=None)
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", 0)
    await site.start()
    port = site._server.sockets[0].getsockname()[1]  # type: ignore[union-attr]
    base = f"http://127.0.0.1:{port}/api/activations"
    rng = random.Random(5)
    latencies: list[float] = []
    statuses: dict[int, int] = {}
    day = 86400.0

    def params() -> dict[str, str]:
        kind = rng.randrange(4)
        if kind == 0:
            return {}
        if kind == 1:
            return {"help_point": rng.choice(HELP_POINTS)}
        if kind == 2:
            return {"outcome": rng.choice(("answered", "unanswered", "abandoned"))}
        start = T0 + rng.uniform(0, 30) * day
        return {"from": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(start)),
                "to": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(start + day))}

    async def client(count: int) -> None:
        async with aiohttp.ClientSession(headers={"Authorization": f"Bearer {token}"}) as session:
            cursor = None
            for _ in range(count):
                query = params() if cursor is None else {"cursor": cursor}
                t = time.perf_counter()
                async with session.get(base, params=query) as response:
                    body = await response.json()
                latencies.append(time.perf_counter() - t)
                statuses[response.status] = statuses.get(response.status, 0) + 1
                cursor = body.get("next_cursor") if rng.random() < 0.5 else None

    try:
        await asyncio.gather(*(client(requests // concurrency) for _ in range(concurrency)))
    finally:
        await runner.cleanup()
    latencies.sort()

    def pct(p: float) -> float:
        return latencies[min(len(latencies) - 1, int(p * len(latencies)))] * 1000

    return {"requests": len(latencies), "p50_ms": pct(0.50), "p95_ms": pct(0.95), "p99_ms": pct(0.99),
            "mean_ms": statistics.fmean(latencies) * 1000, "non_200": sum(v for k, v in statuses.items() if k != 200)}


async def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--backends", default="sqlite,postgresql")
    parser.add_argument("--activations", type=int, default=20_000)
    parser.add_argument("--events", type=int, default=10)
    parser.add_argument("--api-rows", type=int, default=100_000)
    parser.add_argument("--requests", type=int, default=2_000)
    parser.add_argument("--concurrency", type=int, default=4)
    args = parser.parse_args()
    logging.basicConfig(level=logging.WARNING)
    rows = []
    with tempfile.TemporaryDirectory() as tmp:
        for backend in args.backends.split(","):
            store, cleanup = await open_store(backend, Path(tmp))
            try:
                print(f"[{backend}] writing {args.activations} activations x {args.events} events ...", flush=True)
                writes = await bench_writes(store, args.activations, args.events)
                print(f"[{backend}] filling to {args.api_rows} activations ...", flush=True)
                await fill(store, args.api_rows, args.activations)
                print(f"[{backend}] {args.requests} API requests, {args.concurrency} concurrent ...", flush=True)
                api = await bench_api(store, args.requests, args.concurrency)
                rows.append((backend, writes, api))
            finally:
                await store.close()
                if cleanup is not None:
                    await cleanup()
    print()
    print(f"{'backend':<11} {'activations/s':>14} {'rows/s':>10} {'write s':>8} | {'API reqs':>8} {'p50 ms':>7} "
          f"{'p95 ms':>7} {'p99 ms':>7} {'non-200':>7}")
    for backend, w, a in rows:
        print(f"{backend:<11} {w['activations_per_s']:>14,.0f} {w['rows_per_s']:>10,.0f} {w['seconds']:>8.1f} | "
              f"{a['requests']:>8} {a['p50_ms']:>7.1f} {a['p95_ms']:>7.1f} {a['p99_ms']:>7.1f} {a['non_200']:>7}")
    print(f"(writes: {args.activations} activations, each started + {args.events} events + ended, through "
          f"ActivationWriter; API: GET /api/activations pages of 50 over {args.api_rows} rows, loopback)")
    return 0


if __name__ == "__main__":
    raise SystemExit(asyncio.run(main()))
