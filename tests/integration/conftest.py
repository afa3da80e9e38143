"""Integration harness: the real gateway process on loopback, driven by real SIP peers.

The machinery lives in ``sip_harness.py`` (also used by ``bench/register_bench.py``); this file holds the fixtures.

Fixtures
--------
``gateway_proc``  (module scope) a :class:`GatewayProcess`: ``python -m gateway serve`` on free loopback ports
                  with its own data directory; ``sip_port``, ``http_port``, ``data_dir``, ``restart()``,
                  ``stop()``, ``log_text()``, ``metrics()``.
``sipp``          path of the SIPp binary; skips the test, with the install command, when SIPp is missing.
``sipp_runner``   a :class:`SippRunner` bound to ``gateway_proc``: ``run(scenario, ...)`` -> :class:`SippResult`
                  (exit code, the messages from ``-trace_msg``, the rows of ``-trace_stat``).

Everything stays on 127.0.0.1, every SIPp run is bounded by ``-m``, ``-recv_timeout`` and coreutils ``timeout``.

SIPp 3.6.1 and RFC 7616 section 3.7
-----------------------------------
A registrar that offers SHA-256 and MD5 sends two WWW-Authenticate headers, the preferred (SHA-256) first; a
client must answer the first challenge whose algorithm it supports. SIPp 3.6.1 only implements MD5 and takes the
*first* challenge, failing with "createAuthHeader: authentication must use MD5 or AKAv1-MD5". When the gateway
offers a non-MD5 challenge first, :class:`Md5OnlyRelay` sits between SIPp and the gateway and removes the
challenges whose algorithm SIPp cannot compute: SIPp then behaves as the MD5-only client the RFC describes.
The relay records every message the gateway really sent (``relay.from_gateway``), so the tests still assert on
the gateway's own bytes (both WWW-Authenticate headers, in order). One test also runs SIPp straight at a
gateway configured with ``registrar.algorithms: [MD5, SHA-256]``, no relay.
"""

from __future__ import annotations

import shutil
from collections.abc import Iterator
from pathlib import Path

import pytest
from calls_harness import single_room_dialplan
from media_harness import MediaRig
from sip_harness import GatewayProcess, SippRunner


@pytest.fixture(scope="module")
def gateway_proc(tmp_path_factory: pytest.TempPathFactory) -> Iterator[GatewayProcess]:
    data_dir = tmp_path_factory.mktemp("gateway-data")
    gw = GatewayProcess(data_dir)
    try:
        gw.start()
    except Exception:
        gw.kill()
        raise
    yield gw
    code = gw.stop()
    if code not in (0, None):
        print(f"gateway exited {code} at teardown; log tail:\n{gw.log_tail()}")


@pytest.fixture(scope="session")
def sipp() -> str:
    path = shutil.which("sipp")
    if path is None:
        pytest.skip("SIPp not installed: these tests need it (apt-get install -y sip-tester)")
    return path


@pytest.fixture(scope="module")
def sipp_runner(
    sipp: str, gateway_proc: GatewayProcess, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[SippRunner]:
    runner = SippRunner(sipp, gateway_proc, tmp_path_factory.mktemp("sipp"))
    runner.md5_first()  # probe the challenge order now, so that tests' metric deltas do not see the probe
    yield runner
    runner.close()


@pytest.fixture
def rig(sipp: str, tmp_path: Path) -> Iterator[MediaRig]:
    """A gateway with the one-room test dialplan, a capture on lo and SIPp peers (the media tests)."""
    r = MediaRig(sipp, tmp_path, single_room_dialplan())
    try:
        yield r.start()
    finally:
        r.close()
