"""Simulated emergency-department traffic: the study mix, and sending a phantom over C-STORE.

`ed_mix` yields (finding, positive, per-study seed) in a realistic ED proportion;
`phantom_study_send` writes one phantom study and stores it on a DICOM listener.
"""

from __future__ import annotations

import random
import socket
import tempfile
from collections.abc import Iterator
from datetime import datetime
from pathlib import Path

import pydicom
from pydicom.uid import ExplicitVRLittleEndian
from pynetdicom import AE
from pynetdicom.association import Association

from inference.phantoms.study import PhantomStudy
from inference.phantoms.writer import phantom_write
from triage.findings import Finding

# share of ED imaging per kind of study (head CT also takes the remainder)
ED_MIX: tuple[tuple[Finding, float], ...] = (
    (Finding.INTRACRANIAL_HEMORRHAGE, 0.45),
    (Finding.PNEUMOTHORAX, 0.30),
    (Finding.PULMONARY_EMBOLISM, 0.15),
    (Finding.FRACTURE, 0.10),
)
STORED_STATUSES = frozenset({0x0000, 0xB000, 0xB006, 0xB007})


class StudySendError(Exception):
    """A study could not be stored completely (association refused or a C-STORE failed)."""

    def __init__(self, message: str, *, stored: int, attempted: int) -> None:
        super().__init__(message)
        self.stored = stored
        self.attempted = attempted


def ed_mix(seed: int, *, positive_fraction: float = 0.3) -> Iterator[tuple[Finding, bool, int]]:
    """An endless, seeded stream of (finding, positive, per-study seed) in ED proportions."""
    chooser = random.Random(f"ed-mix|{seed}")
    findings = [finding for finding, _ in ED_MIX]
    weights = [weight for _, weight in ED_MIX]
    while True:
        finding = chooser.choices(findings, weights=weights)[0]
        positive = chooser.random() < positive_fraction
        yield finding, positive, chooser.randrange(1, 2**31)


def no_delay(assoc: Association) -> None:
    """Disable Nagle: a C-STORE is several small writes, and Nagle plus delayed ACKs would
    add ~40 ms to every instance."""
    sock = getattr(getattr(assoc.dul, "socket", None), "socket", None)
    if sock is not None:
        sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)


def phantom_study_send(
    *,
    study: PhantomStudy,
    seed: int,
    host: str,
    port: int,
    called_ae: str,
    calling_ae: str,
    acquired: datetime | None = None,
    timeout: float = 10.0,
    associations: int = 3,
) -> int:
    """Write the study and C-STORE every instance, one association per study; returns the
    number stored. Raises StudySendError when an instance is refused or cannot be sent.

    An instance whose response never comes (the association is then aborted) is sent again on a
    new association, up to `associations` in all: a listener registers instances idempotently
    on their SOP Instance UID, and pynetdicom's requestor occasionally loses a fast response
    to its own reactor thread on a loaded machine."""
    with tempfile.TemporaryDirectory(prefix="phantom-send-") as folder:
        paths = phantom_write(study, out_dir=Path(folder), seed=seed, acquired=acquired)
        datasets = [pydicom.dcmread(path) for path in paths]
        ae = AE(ae_title=calling_ae)
        ae.acse_timeout = timeout
        ae.dimse_timeout = timeout
        ae.network_timeout = timeout
        contexts = {(str(ds.SOPClassUID), str(ds.file_meta.TransferSyntaxUID)) for ds in datasets}
        for sop_class in sorted({sop for sop, _ in contexts}):
            ae.add_requested_context(sop_class, ExplicitVRLittleEndian)
        for sop_class, syntax in sorted(contexts):
            if syntax != ExplicitVRLittleEndian:
                ae.add_requested_context(sop_class, syntax)
        pending = list(datasets)
        stored = 0
        refused: list[str] = []
        problem = "no association"
        for _ in range(max(associations, 1)):
            if not pending:
                break
            assoc = ae.associate(host, port, ae_title=called_ae)
            if not assoc.is_established:
                problem = f"association with {called_ae}@{host}:{port} was not established"
                continue
            try:
                no_delay(assoc)
                accepted = {
                    (str(cx.abstract_syntax), str(cx.transfer_syntax[0]))
                    for cx in assoc.accepted_contexts
                }
                while pending and assoc.is_established:
                    ds = pending[0]
                    key = (str(ds.SOPClassUID), str(ds.file_meta.TransferSyntaxUID))
                    if key not in accepted and ds.file_meta.TransferSyntaxUID.is_compressed:
                        ds.decompress(generate_instance_uid=False)
                    status = assoc.send_c_store(ds)
                    if not status or "Status" not in status:
                        problem = f"{ds.SOPInstanceUID}: no response"
                        break  # the association is aborted; go on with a new one
                    pending.pop(0)
                    code = int(status.Status)
                    if code in STORED_STATUSES:
                        stored += 1
                    else:
                        refused.append(f"{ds.SOPInstanceUID}: status 0x{code:04X}")
            finally:
                if assoc.is_established:
                    assoc.release()
        if refused or pending:
            reason = refused[0] if refused else problem
            raise StudySendError(
                f"{len(datasets) - stored} of {len(datasets)} instances not stored ({reason})",
                stored=stored,
                attempted=len(datasets),
            )
        return stored
