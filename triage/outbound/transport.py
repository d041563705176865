"""Sending to a peer and reading its answer: DICOM C-STORE (pynetdicom), DICOMweb STOW-RS
(HTTP), HL7 over MLLP (python-hl7's asyncio streams). Each send ends one of three ways:
returns (the peer took it), raises DeliveryDeferred (try again later: the peer is down, busy or
silent) or DeliveryRefused (the peer said no: a person must look)."""

from __future__ import annotations

import asyncio
import io
import ssl
import urllib.error
import urllib.request
import uuid
from collections.abc import Sequence

import hl7.mllp
from django.conf import settings
from pydicom import Dataset
from pydicom.filewriter import dcmwrite
from pydicom.uid import ExplicitVRLittleEndian, ImplicitVRLittleEndian
from pynetdicom import AE

from triage.outbound.errors import DeliveryDeferred, DeliveryRefused
from triage.outbound.hl7_messages import ack_read

CONNECT_SECONDS = 5.0


def _answer_seconds() -> float:
    return float(settings.OUTBOUND_ANSWER_SECONDS)


def dicom_store(
    *,
    datasets: Sequence[Dataset],
    host: str,
    port: int,
    called_ae: str,
    calling_ae: str,
    tls: ssl.SSLContext | None = None,
) -> None:
    """C-STORE the datasets over one association (over TLS with `tls`, the peer's certificate
    checked for `host`); every one must be stored."""
    ae = AE(ae_title=calling_ae)
    ae.acse_timeout = ae.dimse_timeout = ae.network_timeout = _answer_seconds()
    ae.connection_timeout = CONNECT_SECONDS
    for sop_class in sorted({str(ds.SOPClassUID) for ds in datasets}):
        ae.add_requested_context(sop_class, [ExplicitVRLittleEndian, ImplicitVRLittleEndian])
    assoc = ae.associate(
        host, port, ae_title=called_ae, tls_args=(tls, host) if tls is not None else None
    )
    if not assoc.is_established:
        if assoc.is_rejected:
            raise DeliveryRefused(f"{called_ae} rejected the association")
        raise DeliveryDeferred(f"no association with {called_ae} at {host}:{port}")
    try:
        for ds in datasets:
            response = assoc.send_c_store(ds)
            status = int(response.Status) if "Status" in response else None
            if status is None:
                raise DeliveryDeferred(f"{called_ae} did not answer the C-STORE")
            if status in (0x0000, 0xB000, 0xB007, 0xB006):
                continue  # success, or success with a coercion warning
            if 0xA700 <= status <= 0xA7FF:
                raise DeliveryDeferred(f"{called_ae} is out of resources (0x{status:04X})")
            raise DeliveryRefused(f"{called_ae} refused the object: status 0x{status:04X}")
    finally:
        if assoc.is_established:
            assoc.release()


def _part(ds: Dataset) -> bytes:
    buffer = io.BytesIO()
    dcmwrite(buffer, ds, enforce_file_format=True)
    return buffer.getvalue()


def dicomweb_store(*, datasets: Sequence[Dataset], url: str, token: str) -> None:
    """STOW-RS the datasets in one multipart request to `url`/studies."""
    boundary = uuid.uuid4().hex
    body = b"".join(
        b"--" + boundary.encode() + b"\r\nContent-Type: application/dicom\r\n\r\n" + _part(ds)
        + b"\r\n"
        for ds in datasets
    ) + b"--" + boundary.encode() + b"--\r\n"  # fmt: skip
    headers = {
        "Content-Type": f'multipart/related; type="application/dicom"; boundary={boundary}',
        "Accept": "application/dicom+json",
    }
    if token:
        headers["Authorization"] = f"Bearer {token}"
    request = urllib.request.Request(  # noqa: S310 - an administrator's configured http(s) URL
        url.rstrip("/") + "/studies", data=body, headers=headers, method="POST"
    )
    try:
        with urllib.request.urlopen(request, timeout=_answer_seconds()) as response:  # noqa: S310
            response.read()
    except urllib.error.HTTPError as exc:
        if exc.code >= 500 or exc.code in (408, 429):
            raise DeliveryDeferred(f"STOW-RS answered HTTP {exc.code}") from exc
        raise DeliveryRefused(f"STOW-RS answered HTTP {exc.code}") from exc
    except (urllib.error.URLError, TimeoutError, ConnectionError) as exc:
        raise DeliveryDeferred(f"STOW-RS not reached: {type(exc).__name__}") from exc


async def _mllp_exchange(*, message: str, host: str, port: int) -> str:
    reader, writer = await asyncio.wait_for(
        hl7.mllp.open_hl7_connection(host, port, encoding="utf-8"), CONNECT_SECONDS
    )
    try:
        writer.writemessage(hl7.parse(message))
        await writer.drain()
        answer = await asyncio.wait_for(reader.readmessage(), _answer_seconds())
        return str(answer)
    finally:
        writer.close()


def hl7_send(*, message: str, control_id: str, host: str, port: int) -> None:
    """Send one message over MLLP and read its ACK: AA delivered; AE / AR refused (with the
    receiver's reason); no answer, or an answer to another message, deferred."""
    try:
        raw = asyncio.run(_mllp_exchange(message=message, host=host, port=port))
    except (OSError, TimeoutError, asyncio.IncompleteReadError, hl7.mllp.InvalidBlockError) as exc:
        raise DeliveryDeferred(f"no ACK from {host}:{port}: {type(exc).__name__}") from exc
    try:
        ack = ack_read(raw)
    except ValueError as exc:
        raise DeliveryDeferred(str(exc)) from exc
    if ack.control_id != control_id:
        raise DeliveryDeferred("the ACK answers another message")
    if not ack.accepted:
        raise DeliveryRefused(f"the receiver answered {ack.code}: {ack.text or 'no reason given'}")
