"""The hospital's systems as real processes: Orthanc (Debian's, with its DICOMweb plugin) as the
PACS, the HL7 peer (tests/hl7_peer.py) as the RIS, and dciodvfy to check what we made."""

from __future__ import annotations

import json
import subprocess
import sys
import urllib.request
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from tests.conftest import ROOT, free_port, wait_for_port

ORTHANC_DICOMWEB_PLUGIN = Path("/usr/share/orthanc/plugins/libOrthancDicomWeb.so")


def dciodvfy_errors(path: Path) -> list[str]:
    """dciodvfy's error lines for one file (warnings are not errors)."""
    run = subprocess.run(["dciodvfy", str(path)], capture_output=True, text=True, timeout=60)
    return [line for line in (run.stdout + run.stderr).splitlines() if line.startswith("Error")]


@dataclass
class Orthanc:
    """One Orthanc with its own storage, stopped and started by the test (the PACS going down)."""

    folder: Path
    ae_title: str = "ORTHANC"
    dicom_port: int = field(default_factory=free_port)
    http_port: int = field(default_factory=free_port)
    process: subprocess.Popen[bytes] | None = None

    def start(self) -> None:
        config = {
            "Name": "test-pacs",
            "StorageDirectory": str(self.folder / "storage"),
            "IndexDirectory": str(self.folder / "storage"),
            "DicomAet": self.ae_title,
            "DicomPort": self.dicom_port,
            "HttpPort": self.http_port,
            "RemoteAccessAllowed": False,
            "AuthenticationEnabled": False,
            "HttpDescribeErrors": True,
            "Plugins": [str(ORTHANC_DICOMWEB_PLUGIN)],
            "DicomWeb": {"Enable": True, "Root": "/dicom-web/"},
        }
        self.folder.mkdir(parents=True, exist_ok=True)
        (self.folder / "orthanc.json").write_text(json.dumps(config))
        log = open(self.folder / "orthanc.log", "ab")  # noqa: SIM115 - lives with the process
        self.process = subprocess.Popen(
            ["Orthanc", str(self.folder / "orthanc.json")], stdout=log, stderr=subprocess.STDOUT
        )
        wait_for_port(self.http_port, process=self.process)
        wait_for_port(self.dicom_port, process=self.process)

    def stop(self) -> None:
        if self.process is not None:
            self.process.terminate()
            try:
                self.process.wait(timeout=15)
            except subprocess.TimeoutExpired:
                self.process.kill()
            self.process = None

    def get(self, path: str) -> Any:
        url = f"http://127.0.0.1:{self.http_port}{path}"
        with urllib.request.urlopen(url, timeout=10) as response:  # noqa: S310 - loopback
            body = response.read()
        return json.loads(body) if body[:1] in (b"{", b"[") else body

    def instances_of_study(self, study_uid: str) -> list[dict[str, Any]]:
        """Every instance Orthanc indexed under the study, with its main tags."""
        request = urllib.request.Request(  # noqa: S310 - loopback
            f"http://127.0.0.1:{self.http_port}/tools/find",
            data=json.dumps(
                {"Level": "Instance", "Query": {"StudyInstanceUID": study_uid}, "Expand": True}
            ).encode(),
            method="POST",
        )
        with urllib.request.urlopen(request, timeout=10) as response:  # noqa: S310
            found: list[dict[str, Any]] = json.loads(response.read())
        return found

    def instance_file(self, orthanc_id: str, out: Path) -> Path:
        out.write_bytes(self.get(f"/instances/{orthanc_id}/file"))
        return out


@dataclass
class Hl7Peer:
    """tests/hl7_peer.py on a free port; `answer` is aa, ae or silent."""

    folder: Path
    answer: str = "aa"
    port: int = field(default_factory=free_port)
    process: subprocess.Popen[bytes] | None = None

    @property
    def record(self) -> Path:
        return self.folder / "hl7-received.jsonl"

    def start(self) -> None:
        self.folder.mkdir(parents=True, exist_ok=True)
        log = open(self.folder / "hl7-peer.log", "ab")  # noqa: SIM115 - lives with the process
        self.process = subprocess.Popen(
            [sys.executable, str(ROOT / "tests" / "hl7_peer.py"), "--port", str(self.port),
             "--record", str(self.record), "--answer", self.answer],
            stdout=log, stderr=subprocess.STDOUT,
        )  # fmt: skip
        wait_for_port(self.port, process=self.process)

    def stop(self) -> None:
        if self.process is not None:
            self.process.terminate()
            self.process.wait(timeout=10)
            self.process = None

    def received(self) -> list[dict[str, Any]]:
        if not self.record.exists():
            return []
        return [json.loads(line) for line in self.record.read_text().splitlines() if line]
