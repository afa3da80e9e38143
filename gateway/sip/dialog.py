"""RFC 3261 §12 dialogs: identity, route set, CSeq, and in-dialog requests.

Rules:

* A dialog is identified by Call-ID, local tag and remote tag (§12), never by
  Call-ID alone.  :attr:`Dialog.id` is that triple.
* The UAC builds its dialog from a 2xx (or 1xx with a To tag) response
  (§12.1.2): route set = Record-Route reversed, remote target = Contact.
  The UAS builds it from the request (§12.1.1): route set = Record-Route in
  order, remote target = the request's Contact.
* In-dialog requests (§12.2.1.1) take the remote target as Request-URI, the
  route set as Route headers (loose routing), and a local CSeq that increases
  by one per request (ACK and CANCEL reuse the INVITE's number).
* Remote CSeq must increase (§12.2.2): a lower one gets a 500.
* Dialog values are frozen; updating returns a new value (no hidden mutation).
"""

from __future__ import annotations

from dataclasses import dataclass, replace

from .errors import LocalProtocolError, RemoteProtocolError
from .message import Headers, Request, Response
from .uri import Uri, parse_name_addr

DialogId = tuple[str, str, str]


@dataclass(frozen=True, slots=True)
class Dialog:
    """The state of one dialog as seen from our side."""

    call_id: str
    local_tag: str
    remote_tag: str
    #: Our From (UAC) or To (UAS) header value, with our tag.
    local_uri: str
    #: The peer's header value, with its tag.
    remote_uri: str
    #: Where in-dialog requests go (the peer's Contact URI).
    remote_target: str
    #: Route set, in the order Route headers are written.
    route_set: tuple[str, ...] = ()
    #: Last CSeq number we sent.
    local_cseq: int = 0
    #: Last CSeq number the peer sent (None until it sends one).
    remote_cseq: int | None = None
    #: Our Contact URI for target refreshes.
    local_contact: str = ""

    @property
    def id(self) -> DialogId:
        """``(Call-ID, local tag, remote tag)``."""
        return (self.call_id, self.local_tag, self.remote_tag)

    @classmethod
    def from_uac(cls, request: Request, response: Response, local_contact: str = "") -> Dialog:
        """The UAC's dialog, from the INVITE it sent and a response with a To tag (§12.1.2)."""
        remote_tag = response.to.tag
        local_tag = request.from_.tag
        if not remote_tag or not local_tag:
            raise RemoteProtocolError("dialog-creating response without tags")
        contacts = response.contacts
        if not contacts or contacts[0].uri == "*":
            raise RemoteProtocolError("dialog-creating response without Contact")
        routes = tuple(reversed(response.headers.get_all("Record-Route")))
        return cls(
            call_id=request.call_id,
            local_tag=local_tag,
            remote_tag=remote_tag,
            local_uri=request.headers.get("From") or "",
            remote_uri=response.headers.get("To") or "",
            remote_target=str(contacts[0].uri),
            route_set=routes,
            local_cseq=request.cseq[0],
            local_contact=local_contact,
        )

    @classmethod
    def from_uas(cls, request: Request, local_tag: str, local_contact: str = "") -> Dialog:
        """The UAS's dialog, from the dialog-creating request and our To tag (§12.1.1)."""
        remote_tag = request.from_.tag
        if not remote_tag:
            raise RemoteProtocolError("dialog-creating request without From tag")
        contacts = request.contacts
        if not contacts or contacts[0].uri == "*":
            raise RemoteProtocolError("dialog-creating request without Contact")
        to_value = request.headers.get("To") or ""
        if request.to.tag is None:
            to_value = f"{to_value};tag={local_tag}"
        return cls(
            call_id=request.call_id,
            local_tag=local_tag,
            remote_tag=remote_tag,
            local_uri=to_value,
            remote_uri=request.headers.get("From") or "",
            remote_target=str(contacts[0].uri),
            route_set=tuple(request.headers.get_all("Record-Route")),
            local_cseq=0,
            remote_cseq=request.cseq[0],
            local_contact=local_contact,
        )

    def matches(self, message: Request | Response, *, incoming: bool = True) -> bool:
        """True when *message* belongs to this dialog (tags per direction)."""
        if message.call_id != self.call_id:
            return False
        if isinstance(message, Request) and incoming:
            return message.from_.tag == self.remote_tag and message.to.tag == self.local_tag
        return message.from_.tag == self.local_tag and message.to.tag == self.remote_tag

    def receive_request(self, request: Request) -> Dialog:
        """Check and record the peer's CSeq (§12.2.2); raise 500 on an out-of-order request."""
        number = request.cseq[0]
        if request.method in ("ACK", "CANCEL"):
            return self
        if self.remote_cseq is not None and number <= self.remote_cseq:
            raise RemoteProtocolError(f"CSeq {number} not above {self.remote_cseq}", 500, "Server Internal Error")
        dialog = replace(self, remote_cseq=number)
        if request.method in ("INVITE", "UPDATE") and request.contacts:
            dialog = replace(dialog, remote_target=str(request.contacts[0].uri))
        return dialog

    def create_request(
        self,
        method: str,
        extra_headers: tuple[tuple[str, str], ...] = (),
        body: bytes = b"",
        *,
        cseq: int | None = None,
    ) -> tuple[Dialog, Request]:
        """A request inside the dialog (§12.2.1.1) and the dialog with its new local CSeq.

        ACK reuses the INVITE's CSeq number: pass it as *cseq*.
        """
        if method in ("ACK", "CANCEL"):
            if cseq is None:
                raise LocalProtocolError(f"{method} needs the CSeq number of its INVITE")
            number, dialog = cseq, self
        else:
            number = self.local_cseq + 1 if cseq is None else cseq
            dialog = replace(self, local_cseq=number)
        uri = self.remote_target
        routes = list(self.route_set)
        strict = _strict_route_uri(routes[0]) if routes else None
        if strict is not None:
            # §12.2.1.1 strict router: its URI becomes the Request-URI.
            uri = strict
            routes = routes[1:] + [f"<{self.remote_target}>"]
        headers: list[tuple[str, str]] = [("Route", r) for r in routes]
        headers += [
            ("Max-Forwards", "70"),
            ("From", self.local_uri),
            ("To", self.remote_uri),
            ("Call-ID", self.call_id),
            ("CSeq", f"{number} {method}"),
        ]
        if self.local_contact and method not in ("ACK", "CANCEL", "BYE"):
            headers.append(("Contact", f"<{self.local_contact}>"))
        headers.extend(extra_headers)
        return dialog, Request(method, uri, Headers(headers), body)


def _strict_route_uri(route: str) -> str | None:
    """The URI of a Route value when it names a strict router (no ``lr`` parameter, any case, §19.1.1),
    else None.  A value that does not parse is taken as loose: the Request-URI stays the remote target."""
    try:
        uri = parse_name_addr(route).uri
    except RemoteProtocolError:
        return None
    if not isinstance(uri, Uri) or uri.param("lr") is not None:
        return None
    return str(uri)
