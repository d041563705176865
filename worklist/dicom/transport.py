"""pynetdicom's transport, read in bulk and woken by events instead of polled.

pynetdicom's `AssociationSocket.recv` reads a PDU in 4096-byte pieces, each appended to a
growing bytearray: a 512 KB CT slice is some 130 `recv` calls and as many copies. Here each PDU
is read into one buffer of its announced length with `recv_into`, as few calls as the kernel
needs (74 -> 31 us wall per 128 KB PDU over loopback).

pynetdicom runs two threads per association, and both poll: the DUL reactor sleeps 1 ms whenever
a turn found nothing to do, and the association reactor sleeps 1 ms before every look at its
queues. Here the association reactor runs pynetdicom's own loop body but blocks on an Event set
when a DIMSE message or a primitive is queued for it, bounded at 50 ms so every check pynetdicom
makes (the DUL alive, the network timeout, kill flags) still runs. The DUL reactor is
pynetdicom's own (its thread's target is bound before any class swap could take effect; an
earlier select-and-pipe version of it never ran and leaked a pipe per association).

A C-STORE response is encoded here in a few struct calls (`store_response_command`) instead of
through a pydicom Dataset built, filled, measured and encoded for every instance; its bytes are
the same as pynetdicom's (a test compares them). Anything else, a response carrying an error
comment or offending element, or an association with its own DIMSE-sent handler bound, goes
through pynetdicom's `send_msg`. Everything else (the state machine, the rest of the DIMSE
layer, TLS) is pynetdicom's.
"""

from __future__ import annotations

import logging
import queue
import socket
import struct
import threading
from collections.abc import Callable
from typing import Any, cast

from pynetdicom import evt
from pynetdicom._handlers import standard_dimse_sent_handler
from pynetdicom.association import Association
from pynetdicom.dimse import DIMSEServiceProvider
from pynetdicom.dimse_primitives import C_STORE, DimsePrimitiveType
from pynetdicom.pdu_primitives import P_DATA
from pynetdicom.transport import AssociationSocket, RequestHandler

WAIT_SECONDS = 0.05  # the longest the association reactor waits before looking at its timers
LOGGER = logging.getLogger("pynetdicom.association")  # where pynetdicom's loop logs


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


class NotifyingQueue(queue.Queue):  # type: ignore[type-arg]
    """A queue that calls `_notify` after every put (set on the instance)."""

    _notify: Callable[[], None]

    def put(self, item: Any, block: bool = True, timeout: float | None = None) -> None:
        super().put(item, block, timeout)
        self._notify()


def _notifying(q: queue.Queue, notify: Callable[[], None]) -> None:  # type: ignore[type-arg]
    q.__class__ = NotifyingQueue
    cast(NotifyingQueue, q)._notify = notify


class EventDrivenAssociation(Association):
    """pynetdicom's acceptor reactor loop, waiting on an Event instead of sleeping 1 ms."""

    _wake: threading.Event

    def _run_reactor(self) -> None:
        """`Association._run_reactor` (pynetdicom 3.0) with the sleep replaced by a wait."""
        self._is_paused = False
        while not self._kill:
            self._wake.wait(WAIT_SECONDS)
            self._wake.clear()
            self._is_paused = True
            self._reactor_checkpoint.wait()
            self._is_paused = False
            context_id, msg = self.dimse.get_msg(block=False)
            if msg:
                self._serve_request(msg, cast(int, context_id))
                self._wake.set()  # look again at once: more may have queued meanwhile
            if self.is_established and self.acse.is_release_requested():
                self.acse.send_release(is_response=True)
                LOGGER.info("Association Released")
                self.is_released = True
                self.is_established = False
                evt.trigger(self, evt.EVT_RELEASED, {})
                self.kill()
                return
            if self.acse.is_aborted():
                LOGGER.info(
                    "Association Aborted"
                    + (" (A-P-ABORT)" if self.acse.is_aborted("a-p-abort") else "")
                )
                self.dul.receive_pdu(wait=False)
                self.is_aborted = True
                self.is_established = False
                evt.trigger(self, evt.EVT_ABORTED, {})
                self.kill()
                return
            if not self.dul.is_alive():
                self.kill()
                return
            if self.dul.idle_timer_expired():
                LOGGER.error("Network timeout reached")
                if self.network_timeout_response == "A-RELEASE":
                    self._is_paused = True
                    self._reactor_checkpoint.wait()
                    self.release()
                    self._is_paused = False
                else:
                    self.abort()
                self.kill()
                return


def event_driven(assoc: Association) -> None:
    """Make an acceptor association (not yet started) wait on an Event for its DIMSE messages
    and primitives instead of polling."""
    assoc.__class__ = EventDrivenAssociation
    assoc = cast(EventDrivenAssociation, assoc)
    assoc._wake = threading.Event()
    _notifying(assoc.dul.to_user_queue, assoc._wake.set)
    _notifying(assoc.dimse.msg_queue, assoc._wake.set)


def _element(group: int, element: int, value: bytes) -> bytes:
    """One implicit VR little endian element."""
    return struct.pack("<HHI", group, element, len(value)) + value


def _uid_bytes(uid: str) -> bytes:
    raw = uid.encode("ascii")
    return raw + b"\0" if len(raw) % 2 else raw


def store_response_command(primitive: C_STORE) -> bytes:
    """The command set of a C-STORE-RSP (implicit VR little endian), as pynetdicom encodes it:
    Affected SOP Class UID, Command Field 8001H, Message ID Being Responded To, Command Data Set
    Type 0101H (no data set), Status and Affected SOP Instance UID, after the group length."""
    body = b""
    if primitive.AffectedSOPClassUID:
        body += _element(0, 0x0002, _uid_bytes(str(primitive.AffectedSOPClassUID)))
    body += _element(0, 0x0100, struct.pack("<H", 0x8001))
    body += _element(0, 0x0120, struct.pack("<H", primitive.MessageIDBeingRespondedTo))
    body += _element(0, 0x0800, struct.pack("<H", 0x0101))
    body += _element(0, 0x0900, struct.pack("<H", primitive.Status))
    if primitive.AffectedSOPInstanceUID:
        body += _element(0, 0x1000, _uid_bytes(str(primitive.AffectedSOPInstanceUID)))
    return _element(0, 0x0000, struct.pack("<I", len(body))) + body


class StoreResponseDIMSE(DIMSEServiceProvider):
    """pynetdicom's DIMSE provider, with C-STORE responses encoded directly."""

    def send_msg(self, primitive: DimsePrimitiveType, context_id: int) -> None:
        if (
            isinstance(primitive, C_STORE)
            and primitive.MessageIDBeingRespondedTo is not None
            and primitive.Status is not None
            and primitive.ErrorComment is None
            and primitive.OffendingElement is None
            # pynetdicom's standard handler logs nothing for a C-STORE-RSP; any other one
            # bound to EVT_DIMSE_SENT wants the message, so it gets pynetdicom's path
            and all(
                handler is standard_dimse_sent_handler
                for handler, _ in cast(list[Any], self.assoc.get_handlers(evt.EVT_DIMSE_SENT))
            )
        ):
            try:
                command = store_response_command(primitive)
            except (UnicodeEncodeError, struct.error):  # a UID pydicom writes as Latin-1, say
                command = b""
            # one fragment only when it fits the peer's maximum PDU (6 bytes of PDV header)
            if command and not 0 < self.maximum_pdu_size < len(command) + 7:
                pdata = P_DATA()
                pdata.presentation_data_value_list.append(
                    (context_id, b"\x03" + command)  # the last (only) command fragment
                )
                self.dul.send_pdu(pdata)
                return
        super().send_msg(primitive, context_id)


class ListenerRequestHandler(RequestHandler):
    """pynetdicom's handler for an accepted connection: the bulk-reading socket, and reactors
    that wait on events."""

    def _create_association(self) -> Association:
        assoc = super()._create_association()
        # The socket pynetdicom made has queued the connection's first event: it is kept, and
        # reads with the method above (the subclass adds no state).
        assoc.dul.socket.__class__ = BulkReadSocket
        assoc.dimse.__class__ = StoreResponseDIMSE  # the subclass adds no state
        event_driven(assoc)
        return assoc
