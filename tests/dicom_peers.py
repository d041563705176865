"""Drive real DICOM peers: DCMTK's storescu / echoscu, and pynetdicom for raw malformed bytes."""

from __future__ import annotations

import os
import subprocess
from dataclasses import dataclass
from pathlib import Path

from pydicom.uid import (
    JPEG2000,
    DeflatedExplicitVRLittleEndian,
    JPEG2000Lossless,
    JPEGBaseline8Bit,
    JPEGExtended12Bit,
    JPEGLossless,
    JPEGLosslessSV1,
    JPEGLSLossless,
    JPEGLSNearLossless,
    RLELossless,
)
from pynetdicom import AE, _config
from pynetdicom.dsutils import split_dataset

# storescu proposes uncompressed syntaxes unless told which compressed one to offer.
STORESCU_PROPOSE = {
    DeflatedExplicitVRLittleEndian: "-xd",
    JPEGBaseline8Bit: "-xy",
    JPEGExtended12Bit: "-xx",
    JPEGLossless: "-xs",
    JPEGLosslessSV1: "-xs",
    JPEGLSLossless: "-xt",
    JPEGLSNearLossless: "-xu",
    JPEG2000Lossless: "-xv",
    JPEG2000: "-xw",
    RLELossless: "-xr",
}


@dataclass
class PeerResult:
    returncode: int
    output: str


def _dcmtk_env() -> dict[str, str]:
    return {**os.environ, "TCP_NODELAY": "1"}  # without it DCMTK waits on delayed ACKs


def echoscu(port: int, *, called: str = "TRIAGE", calling: str = "ECHOSCU") -> PeerResult:
    run = subprocess.run(
        ["echoscu", "-aet", calling, "-aec", called, "127.0.0.1", str(port)],
        capture_output=True,
        text=True,
        timeout=30,
        env=_dcmtk_env(),
    )
    return PeerResult(run.returncode, run.stdout + run.stderr)


def storescu(
    port: int,
    paths: list[Path],
    *,
    called: str = "TRIAGE",
    calling: str = "STORESCU",
    propose: str | None = None,
) -> PeerResult:
    args = ["storescu", "-v", "-aet", calling, "-aec", called]
    if propose:
        args.append(propose)
    args += ["127.0.0.1", str(port), *[str(path) for path in paths]]
    run = subprocess.run(args, capture_output=True, text=True, timeout=120, env=_dcmtk_env())
    return PeerResult(run.returncode, run.stdout + run.stderr)


def raw_store(port: int, path: Path, *, called: str = "TRIAGE", calling: str = "TESTSCU") -> int:
    """Send a file's dataset bytes as they are, undecoded (so malformed bytes reach the wire):
    the C-STORE status, or -1 when the association failed."""
    file_meta, _ = split_dataset(path)
    ae = AE(ae_title=calling)
    ae.add_requested_context(file_meta.MediaStorageSOPClassUID, file_meta.TransferSyntaxUID)
    assoc = ae.associate("127.0.0.1", port, ae_title=called)
    if not assoc.is_established:
        return -1
    _config.STORE_SEND_CHUNKED_DATASET = True  # send the bytes after the meta header verbatim
    try:
        response = assoc.send_c_store(path)
        return int(response.Status) if "Status" in response else -1
    finally:
        _config.STORE_SEND_CHUNKED_DATASET = False
        assoc.release()
