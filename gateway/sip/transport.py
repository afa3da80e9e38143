"""The asyncio shell around :class:`~gateway.sip.endpoint.SipEndpoint` (UDP and TCP).

The only asyncio module in ``gateway.sip`` (aioquic ``asyncio/protocol.py``):
sockets feed bytes into the endpoint, ``transmit()`` writes what it wants sent
and re-arms one timer at ``get_timer()``.  After the TU calls any ``send_*``
it calls :meth:`SipTransport.transmit_soon`.  TLS is a later transport behind
the same seam: a ``("TLS", host, port)`` peer served by another stream server.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import socket
from collections.abc import Callable

from .endpoint import SipEndpoint
from .errors import RemoteProtocolError
from .events import Event, MessageRejected, Peer
from .message import StreamFramer

log = logging.getLogger(__name__)

#: SO_RCVBUF asked for the SIP UDP socket (the kernel caps it at net.core.rmem_max).
UDP_RECEIVE_BUFFER = 4 * 1024 * 1024

#: Called with each endpoint event, synchronously, on the event loop thread.
EventHandler = Callable[[Event], None]


class _Udp(asyncio.DatagramProtocol):
    def __init__(self, owner: SipTransport) -> None:
        self.owner = owner

    def datagram_received(self, data: bytes, addr: tuple) -> None:  # type: ignore[override]
        self.owner.received(data, ("UDP", addr[0], addr[1]))

    def error_received(self, exc: Exception) -> None:
        log.debug("UDP error: %s", exc)


class _Stream(asyncio.Protocol):
    """One TCP connection: framing by Content-Length, CRLF keep-alive pongs."""

    def __init__(self, owner: SipTransport, transport_name: str = "TCP") -> None:
        self.owner = owner
        self.name = transport_name
        self.framer = StreamFramer(owner.endpoint.config.max_message_size)
        self.transport: asyncio.Transport | None = None
        self.peer: Peer | None = None
        self.connected = asyncio.get_running_loop().create_future()

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        # uvloop's transports are not asyncio.Transport subclasses: duck-typed on purpose.
        self.transport = transport  # type: ignore[assignment]
        host, port = transport.get_extra_info("peername")[:2]
        self.peer = (self.name, host, port)
        self.owner.connections[self.peer] = self
        if not self.connected.done():
            self.connected.set_result(None)

    def data_received(self, data: bytes) -> None:
        assert self.peer is not None and self.transport is not None
        pings = self.framer.pings
        try:
            frames = self.framer.feed(data)
        except RemoteProtocolError as exc:
            self.owner.endpoint_rejected(self.peer, str(exc))
            self.transport.close()
            return
        if self.framer.pings != pings:
            self.transport.write(b"\r\n")  # RFC 5626 §4.4.1 pong
        for frame in frames:
            self.owner.received(frame, self.peer)

    def connection_lost(self, exc: Exception | None) -> None:
        if self.peer is not None and self.owner.connections.get(self.peer) is self:
            del self.owner.connections[self.peer]
        if not self.connected.done():
            self.connected.set_result(None)


class SipTransport:
    """Owns the sockets and the timer of one shared endpoint."""

    def __init__(self, endpoint: SipEndpoint, on_event: EventHandler) -> None:
        self.endpoint = endpoint
        self.on_event = on_event
        self.loop = asyncio.get_running_loop()
        self.connections: dict[Peer, _Stream] = {}
        self._udp: dict[tuple[str, int], asyncio.DatagramTransport] = {}
        self._servers: list[asyncio.base_events.Server] = []
        self._timer: asyncio.TimerHandle | None = None
        self._timer_at: float | None = None
        self._soon: asyncio.Handle | None = None
        self._connecting: set[asyncio.Task[None]] = set()

    async def listen(self, transport: str, host: str, port: int) -> tuple[str, int]:
        """Open a UDP socket or TCP server; returns the bound ``(host, port)``."""
        if transport == "UDP":
            udp, _ = await self.loop.create_datagram_endpoint(lambda: _Udp(self), local_addr=(host, port))
            sock = udp.get_extra_info("socket")
            if sock is not None:
                # A burst of presses (or a reboot storm of intercoms) must queue, not be dropped by the kernel.
                with contextlib.suppress(OSError):
                    sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, UDP_RECEIVE_BUFFER)
            bound = udp.get_extra_info("sockname")[:2]
            self._udp[(bound[0], bound[1])] = udp
            return bound[0], bound[1]
        if transport == "TCP":
            server = await self.loop.create_server(lambda: _Stream(self), host, port)
            self._servers.append(server)
            bound = server.sockets[0].getsockname()[:2]
            return bound[0], bound[1]
        raise ValueError(f"unsupported transport {transport}")

    def stop_accepting(self) -> None:
        """Close the TCP listeners (existing connections stay for the drain)."""
        for server in self._servers:
            server.close()

    def close(self) -> None:
        """Close every socket and cancel the timer."""
        self.stop_accepting()
        for udp in self._udp.values():
            udp.close()
        for conn in list(self.connections.values()):
            if conn.transport is not None:
                conn.transport.close()
        for task in self._connecting:
            task.cancel()
        if self._timer is not None:
            self._timer.cancel()

    # -- input -------------------------------------------------------------------
    def received(self, data: bytes, peer: Peer) -> None:
        """Bytes arrived from *peer*: feed the endpoint, dispatch events, transmit."""
        self.endpoint.receive(data, peer, self.loop.time())
        self.dispatch()

    def endpoint_rejected(self, peer: Peer, reason: str) -> None:
        """A stream could not be framed (the connection is closed)."""
        self.on_event(MessageRejected(peer, 0, reason))

    def dispatch(self) -> None:
        """Hand every pending endpoint event to the TU, then transmit."""
        while (event := self.endpoint.next_event()) is not None:
            try:
                self.on_event(event)
            except Exception:  # the TU's bug must not kill the transport
                log.exception("event handler failed for %s", type(event).__name__)
        self.transmit()

    # -- output ------------------------------------------------------------------
    def transmit_soon(self) -> None:
        """Schedule :meth:`transmit` once, after the current callback."""
        if self._soon is None:
            self._soon = self.loop.call_soon(self._transmit_now)

    def _transmit_now(self) -> None:
        self._soon = None
        self.dispatch()

    def transmit(self) -> None:
        """Send what the endpoint queued and re-arm the single timer."""
        now = self.loop.time()
        for data, peer in self.endpoint.datagrams_to_send(now):
            self._send(data, peer)
        at = self.endpoint.get_timer()
        if at != self._timer_at:
            if self._timer is not None:
                self._timer.cancel()
            self._timer = self.loop.call_at(at, self._on_timer) if at is not None else None
            self._timer_at = at

    def _on_timer(self) -> None:
        self._timer = None
        self._timer_at = None
        self.endpoint.handle_timer(self.loop.time())
        self.dispatch()

    def _send(self, data: bytes, peer: Peer) -> None:
        transport, host, port = peer
        if transport == "UDP":
            udp = next(iter(self._udp.values()), None)
            if udp is None:
                self._failed(peer)
                return
            try:
                udp.sendto(data, (host, port))
            except OSError:
                self._failed(peer)
            return
        conn = self.connections.get(peer)
        if conn is not None and conn.transport is not None and not conn.transport.is_closing():
            conn.transport.write(data)
            return
        task = self.loop.create_task(self._connect_and_send(data, peer))
        self._connecting.add(task)
        task.add_done_callback(self._connecting.discard)

    async def _connect_and_send(self, data: bytes, peer: Peer) -> None:
        transport, host, port = peer
        try:
            _, proto = await asyncio.wait_for(
                self.loop.create_connection(lambda: _Stream(self, transport), host, port), timeout=5.0
            )
        except (TimeoutError, OSError):
            self._failed(peer)
            return
        # The connection is known under the address we dialled too (responses come back on it).
        self.connections[peer] = proto
        assert proto.transport is not None
        proto.transport.write(data)

    def _failed(self, peer: Peer) -> None:
        log.info("transport error towards %s:%s:%s", *peer)
        self.endpoint.transport_failed(peer, self.loop.time())
        self.dispatch()
