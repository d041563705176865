"""The hospital's systems as processes, for the benchmarks and the tests alike: Orthanc
(Debian's, with its DICOMweb plugin) as the PACS and tests/hl7_peer.py (python-hl7) as the RIS.
Standard library only, like bench/harness.py."""

from __future__ import annotations

import json
import socket
import subprocess
import sys
import time
import urllib.request
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parent.parent
ORTHANC_DICOMWEB_PLUGIN = Path("/usr/share/orthanc/plugins/libOrthancDicomWeb.so")


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


def port_wait(port: int, *, process: subprocess.Popen[bytes], timeout: float = 30) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if process.poll() is not None:
            raise RuntimeError(f"process exited early with {process.returncode}")
        try:
            with socket.create_connection(("127.0.0.1", port), timeout=0.5):
                return
        except OSError:
            time.sleep(0.1)
    raise TimeoutError(f"nothing listening on {port}")


@dataclass
class Orthanc:
    """One Orthanc with its own storage, stopped and started at will (the PACS going down)."""

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
        port_wait(self.http_port, process=self.process)
        port_wait(self.dicom_port, process=self.process)

    def stop(self) -> None:
        if self.process is not None:
            self.process.terminate()
            try:
                self.process.wait(timeout=15)
            except subprocess.TimeoutExpired:
                self.process.kill()
            self.process = None

    def version(self) -> str:
        return str(self.get("/system").get("Version", "unknown"))

    def get(self, path: str) -> Any:
        url = f"http://127.0.0.1:{self.http_port}{path}"
        with urllib.request.urlopen(url, timeout=30) as response:  # noqa: S310 - loopback
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
        with urllib.request.urlopen(request, timeout=30) as response:  # noqa: S310
            found: list[dict[str, Any]] = json.loads(response.read())
        return found

    def instance_file(self, orthanc_id: str, out: Path) -> Path:
        out.write_bytes(self.get(f"/instances/{orthanc_id}/file"))
        return out


@dataclass
class Hl7Peer:
    """tests/hl7_peer.py on a free port; `answer` is aa, ae or silent, given `delay` seconds
    after each message arrives."""

    folder: Path
    answer: str = "aa"
    delay: float = 0.0
    port: int = field(default_factory=free_port)
    process: subprocess.Popen[bytes] | None = None

    @property
    def record(self) -> Path:
        return self.folder / "hl7-received.jsonl"

    def start(self) -> None:
        self.folder.mkdir(parents=True, exist_ok=True)
        log = open(self.folder / "hl7-peer.log", "ab")  # noqa: SIM115 - lives with the process
        self.process = subprocess.Popen(
            [sys.executable, str(REPO / "tests" / "hl7_peer.py"), "--port", str(self.port),
             "--record", str(self.record), "--answer", self.answer, "--delay", str(self.delay)],
            stdout=log, stderr=subprocess.STDOUT,
        )  # fmt: skip
        port_wait(self.port, process=self.process)

    def stop(self) -> None:
        if self.process is not None:
            self.process.terminate()
            self.process.wait(timeout=10)
            self.process = None

    def received(self) -> list[dict[str, Any]]:
        if not self.record.exists():
            return []
        return [json.loads(line) for line in self.record.read_text().splitlines() if line]


class PrivateRedis:
    """A redis-server of the run's own on a free port (never the machine's shared one), with
    nothing kept on disk: `kill` is a crash, `start` again an empty server with a new run id."""

    def __init__(self, folder: Path) -> None:
        self.port = free_port()
        self.folder = folder
        self.process: subprocess.Popen[bytes] | None = None

    @property
    def url(self) -> str:
        return f"redis://127.0.0.1:{self.port}/0"

    def start(self) -> None:
        self.process = subprocess.Popen(
            ["redis-server", "--port", str(self.port), "--bind", "127.0.0.1", "--save", "",
             "--appendonly", "no", "--dir", str(self.folder)],
            stdout=subprocess.DEVNULL, stderr=subprocess.STDOUT,
        )  # fmt: skip
        port_wait(self.port, process=self.process)

    def kill(self) -> None:
        if self.process is not None and self.process.poll() is None:
            self.process.kill()
            self.process.wait(timeout=10)
