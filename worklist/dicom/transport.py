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
Everything else (the state machine, the DIMSE layer, TLS) is pynetdicom's.
"""

from __future__ import annotations

import logging
import queue
import socket
import threading
from collections.abc import Callable
from typing import Any, cast

from pynetdicom import evt
from pynetdicom.association import Association
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


class ListenerRequestHandler(RequestHandler):
    """pynetdicom's handler for an accepted connection: the bulk-reading socket, and reactors
    that wait on events."""

    def _create_association(self) -> Association:
        assoc = super()._create_association()
        # The socket pynetdicom made has queued the connection's first event: it is kept, and
        # reads with the method above (the subclass adds no state).
        assoc.dul.socket.__class__ = BulkReadSocket
        event_driven(assoc)
        return assoc
