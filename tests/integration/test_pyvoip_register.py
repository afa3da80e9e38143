"""An independent SIP stack, pyVoIP 1.6.8, registers with the real gateway as a softphone.

pyVoIP answers digest challenges with MD5 (no qop; it keeps the *last* WWW-Authenticate it parsed, the MD5 one),
registers with ``REGISTER sip:<server>`` and ``Expires: 120``, and de-registers (``Expires: 0``) in ``stop()``.
Its ``start()`` and ``stop()`` block on sockets and may retry forever: both run in daemon threads with timeouts.
"""

from __future__ import annotations

import threading
from collections.abc import Callable, Iterator

import pytest
from sip_harness import (
    LOOPBACK,
    GatewayProcess,
    contact_expires,
    demo_password,
    free_port,
    query_bindings,
    wait_for,
)

pytestmark = pytest.mark.integration

pyVoIP = pytest.importorskip("pyVoIP", reason="pyVoIP not installed (pip install 'pyVoIP==1.6.8')")
from pyVoIP.VoIP import PhoneStatus, VoIPPhone  # noqa: E402

USER = "council-cctv-1"


def in_thread(fn: Callable[[], object], timeout: float) -> tuple[bool, BaseException | None]:
    """Run ``fn`` in a daemon thread; (finished in time, exception raised)."""
    box: list[BaseException | None] = [None]

    def target() -> None:
        try:
            fn()
        except BaseException as exc:  # noqa: BLE001 - reported to the test
            box[0] = exc

    t = threading.Thread(target=target, daemon=True, name=f"pyvoip-{getattr(fn, '__name__', 'call')}")
    t.start()
    t.join(timeout)
    return not t.is_alive(), box[0]


def binding_uris(gw: GatewayProcess, user: str) -> dict[str, int | None]:
    resp = query_bindings(gw, user)
    assert resp.status == 200, f"query REGISTER for {user}: {resp.text}"
    return {c.split("<", 1)[1].split(">", 1)[0]: contact_expires(c) for c in resp.contacts}


@pytest.fixture
def phone(gateway_proc: GatewayProcess) -> Iterator[VoIPPhone]:
    sip_port = free_port()
    rtp = free_port() & ~1
    ph = VoIPPhone(
        LOOPBACK,
        gateway_proc.sip_port,
        USER,
        demo_password(USER),
        myIP=LOOPBACK,
        sipPort=sip_port,
        rtpPortLow=rtp,
        rtpPortHigh=rtp + 10,
    )
    ph.test_sip_port = sip_port  # type: ignore[attr-defined]
    yield ph
    if ph.get_status() not in (PhoneStatus.INACTIVE, PhoneStatus.FAILED):
        in_thread(ph.stop, 10)
    in_thread(ph.sip._close_sockets, 2)  # a hung stop() must not leave its socket bound


def test_pyvoip_registers_and_deregisters(gateway_proc: GatewayProcess, phone: VoIPPhone) -> None:
    ok_before = gateway_proc.metric("gateway_register_total", result="ok")
    done, exc = in_thread(phone.start, 20)
    assert done, f"pyVoIP start() still blocked after 20 s; gateway log:\n{gateway_proc.log_tail()}"
    assert exc is None, f"pyVoIP start() raised {exc!r}; gateway log:\n{gateway_proc.log_tail()}"
    assert wait_for(lambda: phone.get_status() == PhoneStatus.REGISTERED, 10, step=0.1), (
        f"pyVoIP status {phone.get_status()}; gateway log:\n{gateway_proc.log_tail()}"
    )

    # The binding is visible to another client (query-only REGISTER) and in the metrics.
    contact = f"sip:{USER}@{LOOPBACK}:{phone.test_sip_port};transport=UDP"  # type: ignore[attr-defined]
    bindings = binding_uris(gateway_proc, USER)
    assert contact in bindings, f"{contact} not among {bindings}"
    assert bindings[contact] is not None and 0 < bindings[contact] <= 120, bindings
    assert gateway_proc.metric("gateway_register_total", result="ok") >= ok_before + 1
    assert gateway_proc.running

    # stop() de-registers (Contact + Expires: 0); it may hang on a registrar that ignores it.
    done, exc = in_thread(phone.stop, 15)
    assert done, "pyVoIP stop() (de-REGISTER) did not return within 15 s"
    assert exc is None, f"pyVoIP stop() raised {exc!r}"
    assert contact not in binding_uris(gateway_proc, USER), "de-REGISTER (Expires: 0) left the binding"
