"""Drill: DICOM_STORAGE_DIR on a small file system made for the test (a tmpfs) fills up while
storescu sends a series. Every instance the listener cannot keep is answered Out of Resources
(0xA700), never success; no partial file is left in staging; every row has its file; the
listener keeps running; and once space is freed (the file system grown), the sender's retry
stores the rest."""

from __future__ import annotations

import subprocess
from pathlib import Path

import pytest

from tests.conftest import child_environment, dicom_scp_start, free_port, wait_for_port
from tests.dicom_peers import echoscu, storescu
from worklist.dicom.synthetic import StudySpec, write_study
from worklist.models import Instance

SLICES = 6  # 512x512 16-bit: about 0.5 MB each; the file system holds about two


def _mount(target: Path, size: str, *, remount: bool = False) -> None:
    options = f"remount,size={size}" if remount else f"size={size}"
    args = ["mount", "-o", options, str(target)] if remount else [
        "mount", "-t", "tmpfs", "-o", options, "tmpfs", str(target)]  # fmt: skip
    run = subprocess.run(args, capture_output=True, text=True)
    if run.returncode != 0:
        pytest.fail(f"this drill needs a tmpfs mount (root): {run.stderr.strip()}")


def _stored_files(store: Path) -> set[str]:
    return {str(path.relative_to(store)) for path in (store / "studies").rglob("*.dcm")}


@pytest.mark.drill
def test_a_full_store_answers_out_of_resources_and_recovers(transactional_db, tmp_path):
    store = tmp_path / "store"
    store.mkdir()
    _mount(store, "1200k")
    port = free_port()
    log_path = tmp_path / "dicom_scp.log"
    listener = None
    try:
        with open(log_path, "ab") as log:
            listener = dicom_scp_start(
                port, log, env={**child_environment(), "DICOM_STORAGE_DIR": str(store)}
            )
        wait_for_port(port, process=listener)
        paths = write_study(StudySpec(slices=SLICES, rows=512, columns=512), seed=71,
                            out_dir=tmp_path / "study")  # fmt: skip

        first = storescu(port, paths)
        successes = first.output.count("Received Store Response (Success)")
        assert "Refused: OutOfResources" in first.output, first.output[-2000:]  # 0xA700
        stored = set(Instance.objects.values_list("relative_path", flat=True))
        assert 0 < len(stored) < SLICES and successes == len(stored)
        assert _stored_files(store) == stored  # every row has its file, no file without a row
        assert not list((store / "incoming").glob("*")), "a partial file was left in staging"
        assert echoscu(port).returncode == 0  # still listening
        assert listener.poll() is None
        assert "storage full: refused an object from ae=STORESCU (0xA700)" in log_path.read_text()

        _mount(store, "16m", remount=True)  # space freed
        second = storescu(port, paths)
        assert second.output.count("Received Store Response (Success)") == SLICES, second.output
        stored = set(Instance.objects.values_list("relative_path", flat=True))
        assert len(stored) == SLICES and _stored_files(store) == stored
        assert not list((store / "incoming").glob("*"))
    finally:
        if listener is not None:
            listener.terminate()
            listener.wait(timeout=10)
        subprocess.run(["umount", "-l", str(store)], check=False)
