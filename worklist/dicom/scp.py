"""The C-STORE / C-ECHO listener: handlers parse the event, call the ingest service, and return
a status. A released association makes the studies it delivered ready at once
(`worklist.services.transfers`); the quiet period and the alert duties are `triage.duties`.

Handlers never raise: an unexpected error becomes a failure status and a log line, and the
association loop keeps serving.
"""

from __future__ import annotations

import errno
import logging
import socket
import socketserver
import ssl
import threading
import time
import warnings
from collections.abc import Sequence
from io import BytesIO
from pathlib import Path
from typing import Any, cast

from django.conf import settings
from django.db import close_old_connections
from pynetdicom import (
    AE,
    PYNETDICOM_IMPLEMENTATION_UID,
    PYNETDICOM_IMPLEMENTATION_VERSION,
    _config,
    evt,
)
from pynetdicom.dimse_primitives import C_STORE
from pynetdicom.events import Event
from pynetdicom.sop_class import Verification  # type: ignore[attr-defined]
from pynetdicom.transport import ThreadedAssociationServer

from worklist import storage
from worklist.dicom import status
from worklist.dicom.header import part10_header
from worklist.dicom.identifiers import ae_title_for_record
from worklist.dicom.sop_classes import STORAGE_SOP_CLASSES, TRANSFER_SYNTAXES
from worklist.dicom.tls import listener_tls_context
from worklist.dicom.transport import ListenerRequestHandler
from worklist.models import Instance
from worklist.services.ingest import instance_ingest
from worklist.services.transfers import (
    AssociationTransfers,
    association_transfers_end,
    association_transfers_open,
)
from worklist.signals import access_denied

logger = logging.getLogger(__name__)

# Big PDUs mean fewer PDUs per instance from peers that use them (DCMTK's storescu sends at
# most 131060 bytes per PDV whatever is offered, so a 0.5 MB CT slice arrives in 5).
MAXIMUM_PDU_SIZE = 4 * 1024 * 1024
LISTEN_BACKLOG = 64
TLS_HANDSHAKE_SECONDS = 30  # a sender that says nothing holds only its own thread, this long


def handle_store(event: Event) -> int:
    request = cast(C_STORE, event.request)
    calling_ae = ae_title_for_record(event.assoc.requestor.ae_title)
    peer = f"{event.assoc.requestor.address}:{event.assoc.requestor.port}"
    staged = None
    try:
        staged = _stage_as_received(event, request)
        result = instance_ingest(
            staged_path=staged,
            source=Instance.Source.DICOM,
            calling_ae_title=calling_ae,
            peer_address=peer,
            expected_sop_class_uid=str(request.AffectedSOPClassUID),
            expected_sop_instance_uid=str(request.AffectedSOPInstanceUID),
            transfers=_transfers_of(event.assoc, calling_ae=calling_ae),
        )
        return result.status
    except OSError as failure:
        if failure.errno in (errno.ENOSPC, errno.EDQUOT):  # expected, and said once per object
            logger.error("storage full: refused an object from ae=%s (0xA700)", calling_ae)
        else:
            logger.exception("cannot write received object from ae=%s", calling_ae)
        if staged is not None:
            storage.staged_file_discard(staged)
        return status.OUT_OF_RESOURCES
    except Exception:
        logger.exception("unexpected error storing an object from ae=%s", calling_ae)
        if staged is not None:
            storage.staged_file_discard(staged)
        return status.PROCESSING_FAILURE
    finally:
        close_old_connections()


def _stage_as_received(event: Event, request: C_STORE) -> Path:
    """Stage the dataset as received (never decoded nor re-encoded) as a Part 10 file.

    What `event.encoded_dataset()` returns, written without joining the two into a new copy.
    """
    prefix = part10_header(
        sop_class_uid=str(request.AffectedSOPClassUID),
        sop_instance_uid=str(request.AffectedSOPInstanceUID),
        transfer_syntax_uid=str(event.context.transfer_syntax),
        implementation_class_uid=PYNETDICOM_IMPLEMENTATION_UID,
        implementation_version_name=PYNETDICOM_IMPLEMENTATION_VERSION,
    )
    with cast(BytesIO, request.DataSet).getbuffer() as dataset:
        # fsync in the background, overlapped with the header parse and the insert; the move
        # into place (and so the answer) waits for it
        return storage.stage_bytes(prefix, dataset, sync_later=True)


def handle_echo(event: Event) -> int:
    return status.SUCCESS


_TRANSFERS = "triage_transfers"  # the attribute of an association that holds its transfers


def _transfers_of(assoc: Any, *, calling_ae: str) -> AssociationTransfers:
    transfers = getattr(assoc, _TRANSFERS, None)
    if transfers is None:
        transfers = association_transfers_open(calling_ae_title=calling_ae)
        setattr(assoc, _TRANSFERS, transfers)
    return cast(AssociationTransfers, transfers)


def handle_released(event: Event) -> None:
    """Released: the studies it delivered are ready now, unless another association is still
    delivering them (or the sender is one that spreads a series over several associations)."""
    _association_end(event, released=True)


def handle_association_closed(event: Event) -> None:
    """Aborted (by either side, or the connection dropped): its transfers end, and the quiet
    period decides."""
    _association_end(event, released=False)


def _association_end(event: Event, *, released: bool) -> None:
    transfers = vars(event.assoc).pop(_TRANSFERS, None)  # atomic: ended once
    try:
        if transfers is not None and transfers.written:
            association_transfers_end(transfers=transfers, released=released)
    except Exception:  # the quiet period makes them ready instead; the listener keeps serving
        logger.exception("could not end the transfers of an association (quiet period applies)")
    finally:
        close_old_connections()


def handle_rejected(event: Event) -> None:
    """An association refused (calling AE not allowed, called AE not ours, too many at once):
    audited with the reason and the calling AE title (made fit for a record)."""
    assoc = event.assoc
    calling = str(assoc.requestor.ae_title).strip()
    request = assoc.requestor.primitive  # the A-ASSOCIATE-RQ as received
    called = str(getattr(request, "called_ae_title", "") or "").strip()
    allowed = assoc.ae.require_calling_aet
    if called != str(assoc.acceptor.ae_title).strip():
        reason = "called AE title is not this listener's"
    elif allowed and calling not in allowed:
        reason = "calling AE title not allowed"
    else:
        reason = "association refused"
    _denied(
        (assoc.requestor.address, assoc.requestor.port),
        {"reason": reason, "calling_ae": ae_title_for_record(calling)},
    )


def _denied(client_address: Any, detail: dict[str, str]) -> None:
    address = client_address[0] if isinstance(client_address, tuple) else None
    try:
        access_denied.send(sender=ListenerServer, channel="dicom", remote_addr=address,
                           detail=detail)  # fmt: skip
    except Exception:  # the audit must not take the listener down (the database may be away)
        logger.exception("could not record a refused DICOM connection")
    finally:
        close_old_connections()


class ListenerServer(ThreadedAssociationServer):
    """The association server, on a socket of its own or on one shared by several processes.

    On its own socket (one `dicom_scp` process) SO_REUSEPORT is set, so that separately started
    listeners can share a port; the kernel then spreads connections by a hash of the peer's
    address and port, which lands 4 associations 2-2 on 2 processes only 3 times in 8.
    `dicom_scp --processes N` instead opens one listening socket and hands it to its N processes,
    which accept in turn: a blocking accept() waits in the socket's queue, and the kernel gives
    each new connection to the process that has waited longest.
    """

    def __init__(
        self, *args: Any, shared_socket: socket.socket | None = None, **kwargs: Any
    ) -> None:
        self.shared_socket = shared_socket
        kwargs.setdefault("request_handler", ListenerRequestHandler)
        super().__init__(*args, **kwargs)

    def get_request(self) -> tuple[socket.socket, tuple[str, int]]:
        """Accept; over TLS, wrap without the handshake: it happens on the association's first
        read, in its own thread, so a slow or silent client never holds up the accept loop."""
        client, address = cast(socket.socket, self.socket).accept()
        if self.ssl_context is not None:
            client = self.ssl_context.wrap_socket(
                client, server_side=True, do_handshake_on_connect=False
            )
        return client, address

    def finish_request(self, request: Any, client_address: Any) -> None:
        """Over TLS, the handshake first (in the association's own thread, bounded in time):
        a sender that fails it (no certificate of the client CA, plain TCP, an old protocol)
        is audited, with OpenSSL's reason, and dropped."""
        if isinstance(request, ssl.SSLSocket):
            before = request.gettimeout()
            try:
                request.settimeout(TLS_HANDSHAKE_SECONDS)
                request.do_handshake()
                request.settimeout(before)
            except ssl.SSLEOFError:
                # Closed before or during the handshake (a port probe, a health check): not a
                # refusal, and a load balancer's probes would flood the audit.
                logger.debug("DICOM TLS connection closed before its handshake")
                return
            except (ssl.SSLError, OSError) as failed:
                reason = getattr(failed, "reason", None) or type(failed).__name__
                logger.warning("DICOM TLS handshake refused: %s", reason)
                _denied(client_address, {"reason": "TLS handshake failed", "tls": str(reason)})
                return
        super().finish_request(request, client_address)

    def server_bind(self) -> None:
        if self.shared_socket is not None:
            cast(socket.socket, self.socket).close()  # the base class's; the shared one is bound
            self.socket = self.shared_socket
            self.server_address = self.socket.getsockname()
            return
        if hasattr(socket, "SO_REUSEPORT") and self.socket is not None:
            self.socket.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEPORT, 1)
        super().server_bind()

    def server_activate(self) -> None:
        if self.shared_socket is None:
            super().server_activate()

    def serve(self) -> None:
        """Accept associations until shut down (run in a thread of its own)."""
        if self.shared_socket is None:
            self.serve_forever()
            return
        while True:
            try:
                # Blocking, and never given a timeout: that would make the socket non-blocking
                # for every process sharing it, and accept() would stop taking turns.
                request, client_address = self.get_request()
            except OSError:
                if cast(socket.socket, self.socket).fileno() < 0:
                    return  # shut down
                logger.exception("cannot accept a DICOM connection")
                time.sleep(0.5)
                continue
            try:
                self.process_request(request, client_address)
            except Exception:
                self.handle_error(request, client_address)
                self.shutdown_request(request)

    def server_close(self) -> None:
        if self.shared_socket is None:
            super().server_close()
        else:
            # Close this process's handle only: the other processes keep listening. Associations
            # under way finish before the process exits (their threads are not daemons).
            cast(socket.socket, self.socket).close()

    def shutdown(self) -> None:
        if self.shared_socket is None:
            # The base class also unregisters from the AE, which only start_server() registers.
            socketserver.BaseServer.shutdown(self)
        self.server_close()


def listening_socket_open(*, host: str, port: int) -> socket.socket:
    """The socket `dicom_scp --processes N` opens once, for its processes to share."""
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    sock = socket.socket(family, socket.SOCK_STREAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    sock.bind((host, port))
    sock.listen(LISTEN_BACKLOG)
    return sock


def application_entity(*, ae_title: str, allowed_calling_aes: Sequence[str]) -> AE:
    ae = AE(ae_title=ae_title)
    ae.maximum_pdu_size = MAXIMUM_PDU_SIZE
    ae.maximum_associations = 32
    ae.network_timeout = 60
    ae.dimse_timeout = 60
    ae.acse_timeout = 30
    for sop_class_uid in STORAGE_SOP_CLASSES.values():
        ae.add_supported_context(sop_class_uid, TRANSFER_SYNTAXES)
    ae.add_supported_context(Verification)
    ae.require_called_aet = True  # an association addressed to another AE title is refused
    if allowed_calling_aes:
        ae.require_calling_aet = list(allowed_calling_aes)
    return ae


def allowed_calling_ae_titles() -> list[str]:
    allowed = list(settings.DICOM_ALLOWED_AE_TITLES)
    if not allowed and not settings.DICOM_OPEN_ACCESS:
        raise RuntimeError(
            "DICOM_ALLOWED_AE_TITLES is empty: list the calling AE titles that may send studies "
            "(an open listener is allowed in the embedded demo only)."
        )
    return allowed


def listener_start(
    *, host: str, port: int, ae_title: str, shared_socket: socket.socket | None = None
) -> ListenerServer:
    """Start the listener in background threads and return its server.

    With `shared_socket` (from `listening_socket_open`, in the parent process), accept on it
    in turn with the other processes given the same socket; `host` and `port` are then its own.
    """
    # pynetdicom's standard event logging formats every PDU and DIMSE message (and copies each
    # received dataset to see whether it is empty) even with its logger at WARNING, as ours is.
    _config.LOG_HANDLER_LEVEL = "none"
    # pydicom warns, quoting the value, when pynetdicom decodes a command whose UID is not one;
    # the sender's value must not reach the log (header_read refuses the object itself).
    warnings.filterwarnings("ignore", category=UserWarning, module=r"pydicom\b")
    ae = application_entity(ae_title=ae_title, allowed_calling_aes=allowed_calling_ae_titles())
    handlers: list[Any] = [
        (evt.EVT_C_STORE, handle_store),
        (evt.EVT_C_ECHO, handle_echo),
        (evt.EVT_RELEASED, handle_released),
        (evt.EVT_ABORTED, handle_association_closed),
        (evt.EVT_REJECTED, handle_rejected),
    ]
    server = cast(
        ListenerServer,
        ae.make_server(
            (host, port),
            evt_handlers=handlers,
            server_class=ListenerServer,
            shared_socket=shared_socket,
            ssl_context=listener_tls_context(),
        ),
    )
    thread = threading.Thread(target=server.serve, name="dicom-listener", daemon=True)
    thread.start()
    logger.info(
        "DICOM listener %s on %s:%s%s", ae_title, host, port, " (TLS)" if server.ssl_context else ""
    )
    return server


def wait_forever(stop: threading.Event) -> None:
    while not stop.is_set():
        time.sleep(0.5)
