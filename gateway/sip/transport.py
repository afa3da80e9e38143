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

#: Inbound TCP connections accepted at once, in all and from one address.  Each holds a file descriptor
#: and up to ``max_message_size`` of framing buffer: unbounded, a connection flood exhausts descriptors
#: (no RTP sockets, no outbound TCP to a control room) or memory.  A site's intercoms behind one NAT
#: address each keep one connection.
MAX_INBOUND_STREAMS = 2048
MAX_INBOUND_STREAMS_PER_HOST = 32
#: An inbound connection that has not delivered one whole message after this long is closed
#: (64*T1: what any transaction would have waited).  Once it has, it may stay idle (RFC 5626 flows).
FIRST_MESSAGE_TIMEOUT = 32.0


class _Udp(asyncio.DatagramProtocol):
    def __init__(self, owner: SipTransport) -> None:
        self.owner = owner

    def datagram_received(self, data: bytes, addr: tuple) -> None:  # type: ignore[override]
        self.owner.received(data, ("UDP", addr[0], addr[1]))

    def error_received(self, exc: Exception) -> None:
        log.debug("UDP error: %s", exc)


class _Stream(asyncio.Protocol):
    """One TCP connection: framing by Content-Length, CRLF keep-alive pongs."""

    def __init__(self, owner: SipTransport, transport_name: str = "TCP", inbound: bool = False) -> None:
        self.owner = owner
        self.name = transport_name
        self.inbound = inbound
        self.framer = StreamFramer(owner.endpoint.config.max_message_size)
        self.transport: asyncio.Transport | None = None
        self.peer: Peer | None = None
        self.connected = asyncio.get_running_loop().create_future()
        #: Closes an inbound connection that sends no whole message in time (cancelled by the first one).
        self._first_message: asyncio.TimerHandle | None = None

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        # uvloop's transports are not asyncio.Transport subclasses: duck-typed on purpose.
        self.transport = transport  # type: ignore[assignment]
        host, port = transport.get_extra_info("peername")[:2]
        if not self.connected.done():
            self.connected.set_result(None)
        if self.inbound:
            if not self.owner.admit_stream(host):
                self.owner.endpoint_rejected((self.name, host, port), "too many TCP connections")
                transport.close()
                return
            self._first_message = self.owner.loop.call_later(self.owner.first_message_timeout, transport.close)
        self.peer = (self.name, host, port)
        self.owner.connections[self.peer] = self

    def data_received(self, data: bytes) -> None:
        if self.peer is None or self.transport is None:
            return  # refused in connection_made
        pings = self.framer.pings
        try:
            frames = self.framer.feed(data)
        except RemoteProtocolError as exc:
            self.owner.endpoint_rejected(self.peer, str(exc))
            self.transport.close()
            return
        if self.framer.pings != pings:
            self.transport.write(b"\r\n")  # RFC 5626 §4.4.1 pong
        if frames and self._first_message is not None:
            self._first_message.cancel()
            self._first_message = None
        for frame in frames:
            self.owner.received(frame, self.peer)

    def connection_lost(self, exc: Exception | None) -> None:
        if self._first_message is not None:
            self._first_message.cancel()
        if self.peer is not None:
            if self.owner.connections.get(self.peer) is self:
                del self.owner.connections[self.peer]
            if self.inbound:
                self.owner.release_stream(self.peer[1])
        if not self.connected.done():
            self.connected.set_result(None)


class SipTransport:
    """Owns the sockets and the timer of one shared endpoint."""

    def __init__(
        self,
        endpoint: SipEndpoint,
        on_event: EventHandler,
        *,
        max_inbound_streams: int = MAX_INBOUND_STREAMS,
        max_inbound_streams_per_host: int = MAX_INBOUND_STREAMS_PER_HOST,
        first_message_timeout: float = FIRST_MESSAGE_TIMEOUT,
    ) -> None:
        self.endpoint = endpoint
        self.on_event = on_event
        self.loop = asyncio.get_running_loop()
        self.connections: dict[Peer, _Stream] = {}
        self.max_inbound_streams = max_inbound_streams
        self.max_inbound_streams_per_host = max_inbound_streams_per_host
        self.first_message_timeout = first_message_timeout
        #: Open inbound connections per remote host.
        self._inbound: dict[str, int] = {}
        self._inbound_total = 0
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
            server = await self.loop.create_server(lambda: _Stream(self, inbound=True), host, port)
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

    def admit_stream(self, host: str) -> bool:
        """Count a new inbound connection from *host*; False (refuse it) when over a limit."""
        count = self._inbound.get(host, 0)
        if self._inbound_total >= self.max_inbound_streams or count >= self.max_inbound_streams_per_host:
            return False
        self._inbound[host] = count + 1
        self._inbound_total += 1
        return True

    def release_stream(self, host: str) -> None:
        """An inbound connection admitted by :meth:`admit_stream` has closed."""
        count = self._inbound.pop(host, 0) - 1
        if count > 0:
            self._inbound[host] = count
        self._inbound_total -= 1

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
