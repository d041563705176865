"""pynetdicom's transport, read in bulk and woken by events instead of polled.

pynetdicom's `AssociationSocket.recv` reads a PDU in 4096-byte pieces, each appended to a
growing bytearray: a 512 KB CT slice is some 130 `recv` calls and as many copies. Here each PDU
is read into one buffer of its announced length with `recv_into`, as few calls as the kernel
needs (74 -> 31 us wall per 128 KB PDU over loopback).

pynetdicom runs two threads per association, and both poll: the DUL reactor sleeps 1 ms whenever
a turn found nothing to do, and the association reactor sleeps 1 ms before every look at its
queues. A C-STORE over one association therefore waits out up to three such sleeps (the request
read, the handler started, the response sent), about a third of an instance's time on this
machine. Here both reactors run pynetdicom's own loop bodies but wait on what they wait for: the
DUL blocks in `select` on the socket and a wake-up pipe written whenever another thread gives it
work (a primitive to send, an event, a stop), and the association blocks on an Event set when a
DIMSE message or a primitive is queued for it or the DUL stops. Both waits are bounded (50 ms),
so every check pynetdicom makes (ARTIM, the network timeout, kill flags) still runs.
Everything else (the state machine, the DIMSE layer, TLS) is pynetdicom's.
"""

from __future__ import annotations

import contextlib
import logging
import os
import queue
import select
import socket
import ssl
import threading
from collections.abc import Callable
from typing import Any, cast

from pynetdicom import evt
from pynetdicom.association import Association
from pynetdicom.dul import DULServiceProvider
from pynetdicom.pdu import A_ABORT_RQ
from pynetdicom.transport import AssociationSocket, RequestHandler

PYNETDICOM_LOGGER = logging.getLogger("pynetdicom")
WAIT_SECONDS = 0.05  # the longest either reactor sleeps before looking at its timers again


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


class EventDrivenDUL(DULServiceProvider):
    """pynetdicom's DUL reactor loop, waiting in `select` instead of sleeping."""

    _wake_read: int
    _wake_write: int

    def _wake(self) -> None:
        with contextlib.suppress(BlockingIOError, OSError):  # full: a wake-up is pending anyway
            os.write(self._wake_write, b"\0")

    def kill_dul(self) -> None:
        super().kill_dul()
        self._wake()

    def stop_dul(self) -> bool:
        stopping = self.state_machine.current_state == "Sta1"
        if stopping:
            self._kill_thread = True
            self._wake()
        return super().stop_dul()

    def _idle_wait(self) -> None:
        """Block until the socket has data, another thread gives work, or WAIT_SECONDS."""
        if self.to_provider_queue.qsize() or self.event_queue.qsize() or self._kill_thread:
            return
        wrapped = getattr(self.socket, "socket", None)
        if wrapped is None:
            threading.Event().wait(0.001)  # no connection yet: as pynetdicom would
            return
        if isinstance(wrapped, ssl.SSLSocket) and wrapped.pending():
            return
        try:
            select.select([wrapped, self._wake_read], [], [], WAIT_SECONDS)
        except (OSError, ValueError):  # closed under us: the next turn reads Evt17
            return
        with contextlib.suppress(BlockingIOError, OSError):
            os.read(self._wake_read, 4096)

    def run_reactor(self) -> None:
        """`DULServiceProvider.run_reactor` (pynetdicom 3.0), with `_idle_wait` for its sleep."""
        self._idle_timer.start()
        self.socket = cast("AssociationSocket", self.socket)
        try:
            while True:
                if not self.assoc._dul_ready.is_set():
                    self.assoc._dul_ready.set()
                if self._kill_thread:
                    break
                if self.artim_timer.expired:
                    self.event_queue.put("Evt18")
                try:
                    if self._process_recv_primitive():
                        pass
                    elif self._is_transport_event():
                        self._idle_timer.restart()
                except Exception:
                    # As pynetdicom does: log, bypass the state machine with an A-ABORT, stop.
                    PYNETDICOM_LOGGER.exception("Exception in DUL.run(), aborting association")
                    abort_pdu = A_ABORT_RQ()
                    abort_pdu.source = 0x02
                    abort_pdu.reason_diagnostic = 0x00
                    self.socket.send(abort_pdu.encode())
                    self.assoc.is_aborted = True
                    self.assoc.is_established = False
                    self.assoc._kill = True
                    self._kill_thread = True
                    return
                try:
                    event = self.event_queue.get(block=False)
                except queue.Empty:
                    self._idle_wait()
                    continue
                self.state_machine.do_action(event)
        finally:
            wake = getattr(self.assoc, "_wake", None)
            if wake is not None:
                wake.set()  # the association notices the DUL has stopped
            for fd in (self._wake_read, self._wake_write):
                with contextlib.suppress(OSError):
                    os.close(fd)


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
                self.is_released = True
                self.is_established = False
                evt.trigger(self, evt.EVT_RELEASED, {})
                self.kill()
                return
            if self.acse.is_aborted():
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
    """Make an acceptor association (not yet started) and its DUL wait on events."""
    dul = assoc.dul
    wake_read, wake_write = os.pipe()
    os.set_blocking(wake_read, False)
    os.set_blocking(wake_write, False)
    dul.__class__ = EventDrivenDUL
    dul = cast(EventDrivenDUL, dul)
    dul._wake_read, dul._wake_write = wake_read, wake_write
    assoc.__class__ = EventDrivenAssociation
    assoc = cast(EventDrivenAssociation, assoc)
    assoc._wake = threading.Event()
    _notifying(dul.to_provider_queue, dul._wake)
    _notifying(dul.event_queue, dul._wake)
    _notifying(dul.to_user_queue, assoc._wake.set)
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
