"""pynetdicom's transport, read in bulk.

pynetdicom's `AssociationSocket.recv` reads a PDU in 4096-byte pieces, each appended to a
growing bytearray: a 512 KB CT slice is some 130 `recv` calls and as many copies. Here each PDU
is read into one buffer of its announced length with `recv_into`, as few calls as the kernel
needs (74 -> 31 us wall per 128 KB PDU over loopback; a small part of an instance's ~9 ms);
everything else (the state machine, the DIMSE layer, TLS) is pynetdicom's.
"""

from __future__ import annotations

import socket
from typing import TYPE_CHECKING, cast

from pynetdicom.transport import AssociationSocket, RequestHandler

if TYPE_CHECKING:
    from pynetdicom.association import Association


class BulkReadSocket(AssociationSocket):
    def recv(self, nr_bytes: int) -> bytearray:
        """Read `nr_bytes` from the socket (fewer only when the peer closed the connection),
        blocking as pynetdicom's own does."""
        sock = cast(socket.socket, self.socket)
        buffer = bytearray(nr_bytes)
        view = memoryview(buffer)
        read = 0
        while read < nr_bytes:
            count = sock.recv_into(view[read:], nr_bytes - read)
            if not count:  # closed: what was read, as pynetdicom returns it
                del view
                return buffer[:read]
            read += count
        return buffer


class ListenerRequestHandler(RequestHandler):
    """pynetdicom's handler for an accepted connection, with the bulk-reading socket."""

    def _create_association(self) -> Association:
        assoc = super()._create_association()
        # The socket pynetdicom made has queued the connection's first event: it is kept, and
        # reads with the method above (the subclass adds no state).
        assoc.dul.socket.__class__ = BulkReadSocket
        return assoc
