"""The C-STORE / C-ECHO listener: handlers parse the event, call the ingest service, and return
a status.

Handlers never raise: an unexpected error becomes a failure status and a log line, and the
association loop keeps serving.
"""

from __future__ import annotations

import logging
import socket
import socketserver
import threading
import time
from collections.abc import Sequence
from typing import Any, cast

from django.conf import settings
from django.db import close_old_connections
from pynetdicom import AE, evt
from pynetdicom.dimse_primitives import C_STORE
from pynetdicom.events import Event
from pynetdicom.sop_class import Verification  # type: ignore[attr-defined]
from pynetdicom.transport import ThreadedAssociationServer

from triage.alerts import alerts_escalate_due
from worklist import storage
from worklist.dicom import status
from worklist.dicom.sop_classes import STORAGE_SOP_CLASSES, TRANSFER_SYNTAXES
from worklist.models import Instance
from worklist.services.ingest import instance_ingest
from worklist.services.studies import studies_stabilise

logger = logging.getLogger(__name__)

# Big PDUs mean fewer round trips per instance; DCMTK and most modalities honour it.
MAXIMUM_PDU_SIZE = 4 * 1024 * 1024


def handle_store(event: Event) -> int:
    request = cast(C_STORE, event.request)
    calling_ae = event.assoc.requestor.ae_title.strip()
    peer = f"{event.assoc.requestor.address}:{event.assoc.requestor.port}"
    staged = None
    try:
        staged = storage.stage_bytes(event.encoded_dataset(include_meta=True))
        result = instance_ingest(
            staged_path=staged,
            source=Instance.Source.DICOM,
            calling_ae_title=calling_ae,
            peer_address=peer,
            expected_sop_class_uid=str(request.AffectedSOPClassUID),
            expected_sop_instance_uid=str(request.AffectedSOPInstanceUID),
        )
        return result.status
    except OSError:
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


def handle_echo(event: Event) -> int:
    return status.SUCCESS


def handle_association_closed(event: Event) -> None:
    close_old_connections()


class ReusePortServer(ThreadedAssociationServer):
    """Several listener processes can share one port (the kernel spreads associations)."""

    def server_bind(self) -> None:
        if hasattr(socket, "SO_REUSEPORT") and self.socket is not None:
            self.socket.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEPORT, 1)
        super().server_bind()

    def shutdown(self) -> None:
        # The base class also unregisters from the AE, which only start_server() registers with.
        socketserver.BaseServer.shutdown(self)
        self.server_close()


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


def listener_start(*, host: str, port: int, ae_title: str) -> ThreadedAssociationServer:
    """Start the listener in background threads and return its server."""
    ae = application_entity(ae_title=ae_title, allowed_calling_aes=allowed_calling_ae_titles())
    handlers: list[Any] = [
        (evt.EVT_C_STORE, handle_store),
        (evt.EVT_C_ECHO, handle_echo),
        (evt.EVT_RELEASED, handle_association_closed),
        (evt.EVT_ABORTED, handle_association_closed),
    ]
    server = ae.make_server((host, port), evt_handlers=handlers, server_class=ReusePortServer)
    thread = threading.Thread(target=server.serve_forever, name="dicom-listener", daemon=True)
    thread.start()
    logger.info("DICOM listener %s on %s:%s", ae_title, host, port)
    return server


def stabiliser_loop(*, stop: threading.Event, interval: float = 1.0) -> None:
    """The periodic duties beside the listener: studies become ready as their quiet period
    passes, and unacknowledged alerts escalate (Celery beat runs the same in production)."""
    while not stop.is_set():
        try:
            studies_stabilise()
            alerts_escalate_due()
        except Exception:
            logger.exception("periodic duties failed; retrying")
        finally:
            close_old_connections()
        stop.wait(interval)


def stabiliser_start(*, interval: float = 1.0) -> threading.Event:
    stop = threading.Event()
    threading.Thread(
        target=stabiliser_loop,
        kwargs={"stop": stop, "interval": interval},
        name="study-stabiliser",
        daemon=True,
    ).start()
    return stop


def wait_forever(stop: threading.Event) -> None:
    while not stop.is_set():
        time.sleep(0.5)
