"""The asyncio shell's TCP side on loopback: a connection flood is bounded, silent connections are closed.

No sleeps: each check waits for an event the shell must cause (EOF from the server, a response), under a
generous ``wait_for`` bound.
"""

from __future__ import annotations

import asyncio

from gateway.sip import events as ev
from gateway.sip.endpoint import EndpointConfig, SipEndpoint
from gateway.sip.transport import SipTransport


def invite(n: int) -> bytes:
    """An INVITE: the endpoint answers it 100 Trying by itself, so a response proves it was read."""
    return (
        f"INVITE sip:gw@127.0.0.1 SIP/2.0\r\n"
        f"Via: SIP/2.0/TCP 127.0.0.1:5999;branch=z9hG4bKtcp{n}\r\n"
        f"Max-Forwards: 70\r\nFrom: <sip:a@127.0.0.1>;tag={n}\r\nTo: <sip:gw@127.0.0.1>\r\n"
        f"Call-ID: tcp-{n}\r\nCSeq: 1 INVITE\r\nContent-Length: 0\r\n\r\n"
    ).encode()


async def start(**limits: float) -> tuple[SipTransport, list[ev.Event], int]:
    events: list[ev.Event] = []
    endpoint = SipEndpoint(EndpointConfig(local={"TCP": ("127.0.0.1", 5060)}))
    transport = SipTransport(endpoint, events.append, **limits)  # type: ignore[arg-type]
    _, port = await transport.listen("TCP", "127.0.0.1", 0)
    return transport, events, port


async def closed_by_server(reader: asyncio.StreamReader) -> bool:
    try:
        return await asyncio.wait_for(reader.read(), 5.0) == b""
    except ConnectionResetError:  # closed with our bytes unread: the kernel answers RST
        return True


async def inbound_count_reaches(transport: SipTransport, count: int) -> None:
    while sum(1 for c in transport.connections.values() if c.inbound) != count:
        await asyncio.sleep(0)  # one loop iteration: the server side sees the close


async def test_connections_over_the_per_host_limit_are_refused() -> None:
    transport, events, port = await start(max_inbound_streams_per_host=2)
    try:
        kept = [await asyncio.open_connection("127.0.0.1", port) for _ in range(2)]
        reader, writer = await asyncio.open_connection("127.0.0.1", port)
        assert await closed_by_server(reader)
        writer.close()
        assert any(isinstance(e, ev.MessageRejected) and "too many" in e.reason for e in events)
        # The two admitted connections still work.
        kept[0][1].write(invite(1))
        assert (await asyncio.wait_for(kept[0][0].readuntil(b"\r\n\r\n"), 5.0)).startswith(b"SIP/2.0 100 ")
        # A closed one frees its place.
        kept[1][1].close()
        await kept[1][1].wait_closed()
        await asyncio.wait_for(inbound_count_reaches(transport, 1), 5.0)
        again_reader, again_writer = await asyncio.open_connection("127.0.0.1", port)
        again_writer.write(invite(2))
        assert (await asyncio.wait_for(again_reader.readuntil(b"\r\n\r\n"), 5.0)).startswith(b"SIP/2.0 100 ")
        for _, w in (kept[0], (again_reader, again_writer)):
            w.close()
    finally:
        transport.close()


async def test_a_connection_that_sends_no_whole_message_is_closed() -> None:
    transport, _, port = await start(first_message_timeout=0.0)
    try:
        reader, writer = await asyncio.open_connection("127.0.0.1", port)
        writer.write(invite(3)[:40])  # a head that never ends
        assert await closed_by_server(reader)
        writer.close()
    finally:
        transport.close()


async def test_a_connection_that_delivered_a_message_may_stay_idle() -> None:
    transport, _, port = await start()
    try:
        reader, writer = await asyncio.open_connection("127.0.0.1", port)
        writer.write(invite(4))
        assert (await asyncio.wait_for(reader.readuntil(b"\r\n\r\n"), 5.0)).startswith(b"SIP/2.0 100 ")
        (conn,) = [c for c in transport.connections.values() if c.inbound]
        assert conn._first_message is None  # the first-message timer is gone: no idle close
        writer.close()
    finally:
        transport.close()
