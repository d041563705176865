"""The hospital's systems as real processes (bench/peers.py: Orthanc as the PACS, the HL7 peer
as the RIS), and dciodvfy to check what we made."""

from __future__ import annotations

import subprocess
from pathlib import Path

from bench.peers import Hl7Peer, Orthanc

__all__ = ["Hl7Peer", "Orthanc", "dciodvfy_errors"]


def dciodvfy_errors(path: Path) -> list[str]:
    """dciodvfy's error lines for one file (warnings are not errors)."""
    run = subprocess.run(["dciodvfy", str(path)], capture_output=True, text=True, timeout=60)
    return [line for line in (run.stdout + run.stderr).splitlines() if line.startswith("Error")]
