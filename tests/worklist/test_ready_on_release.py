"""A study sent over DICOM is ready when the last association delivering it is released, not a
quiet period later: real `manage.py dicom_scp --processes 2`, DCMTK storescu and pynetdicom
senders. The listeners here run with a 600 s quiet period and no periodic duties, so nothing but
a release can make a study ready, except where a test says otherwise."""

from __future__ import annotations

import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path

import pytest
from django.db import connection
from pynetdicom import AE

from tests.conftest import ROOT, child_environment, free_port, periodic_duties_start, wait_for_port
from tests.dicom_peers import storescu
from tests.worklist.test_dicom_listener import wait_until
from triage.models import TriageDispatch
from worklist.dicom.synthetic import StudySpec, series_copy, write_study
from worklist.models import Instance, Series, Study, Transfer, WorklistItem

QUIET_AE = "TESTSCU"  # listed in DICOM_QUIET_PERIOD_AE_TITLES: one association per instance


@contextmanager
def _listener(tmp_path: Path, *, quiet_seconds: float, duties: bool) -> Iterator[int]:
    env = child_environment() | {
        "STUDY_STABLE_SECONDS": str(quiet_seconds),
        "DICOM_QUIET_PERIOD_AE_TITLES": QUIET_AE,
    }
    port = free_port()
    log_path = tmp_path / "dicom_scp.log"
    children: list[subprocess.Popen[bytes]] = []
    try:
        with open(log_path, "ab") as log:
            children.append(
                subprocess.Popen(
                    [sys.executable, str(ROOT / "manage.py"), "dicom_scp", "--host", "127.0.0.1"]
                    + ["--port", str(port), "--processes", "2"],
                    cwd=ROOT,
                    env=env,
                    stdout=log,
                    stderr=subprocess.STDOUT,
                )  # fmt: skip
            )
            if duties:
                children.append(periodic_duties_start(log, env=env))
        wait_for_port(port, process=children[0])
        deadline = time.monotonic() + 30
        while log_path.read_text().count("DICOM listener") < 2:
            assert time.monotonic() < deadline, "the listener processes did not start"
            time.sleep(0.1)
        yield port
    finally:
        for child in children:
            child.terminate()
        for child in children:
            child.wait(timeout=20)
        connection.close()


@pytest.fixture
def release_listener(transactional_db: None, tmp_path: Path) -> Iterator[int]:
    with _listener(tmp_path, quiet_seconds=600, duties=False) as port:
        yield port


def _study() -> Study:
    return Study.objects.get()


def _association(port: int, paths: list[Path], *, calling: str = "STORESCU") -> Callable[[], None]:
    """Open an association (pynetdicom), store `paths` over it, and leave it open; the release."""
    ae = AE(ae_title=calling)
    ae.add_requested_context("1.2.840.10008.5.1.4.1.1.2")  # CT Image Storage
    assoc = ae.associate("127.0.0.1", port, ae_title="TRIAGE")
    assert assoc.is_established
    for path in paths:
        assert assoc.send_c_store(path).Status == 0x0000
    return assoc.release


def test_a_released_association_makes_its_study_ready_and_queues_triage(
    release_listener, celery_worker, tmp_path
):
    paths = write_study(StudySpec(slices=40), seed=611, out_dir=tmp_path / "ct")

    assert storescu(release_listener, paths).returncode == 0

    wait_until(lambda: _study().state == Study.State.READY)  # the quiet period is 600 s
    study = _study()
    assert Instance.objects.filter(series__study=study).count() == 40
    assert WorklistItem.objects.filter(study=study).exists()
    assert TriageDispatch.objects.filter(study=study).exists()
    # Routed by a Celery worker, queued from the listener's release.
    wait_until(lambda: _study().applicable_findings == ["intracranial_hemorrhage"])
    assert not Transfer.objects.exists()  # the association's transfer ended with it


def test_a_study_another_open_association_still_delivers_waits_for_that_release(
    release_listener, tmp_path
):
    """One series over an association held open, the other over storescu (released): only
    the last release makes the study ready, whichever listener process holds it."""
    paths = write_study(StudySpec(slices=6, rows=64, columns=64), seed=612, out_dir=tmp_path / "ct")
    first = paths[:3]
    second = series_copy(paths[3:], tmp_path / "second", description="AXIAL 5MM", number=2)

    release = _association(release_listener, first)
    assert Transfer.objects.count() == 1  # written with the instances, before their answers
    assert storescu(release_listener, second).returncode == 0
    wait_until(lambda: Instance.objects.count() == 6)
    assert Series.objects.count() == 2
    time.sleep(0.5)  # had storescu's release made it ready, it would be by now
    assert _study().state == Study.State.RECEIVING

    release()

    wait_until(lambda: _study().state == Study.State.READY)
    assert not Transfer.objects.exists()


def test_an_aborted_association_leaves_its_study_to_the_quiet_period(release_listener, tmp_path):
    paths = write_study(StudySpec(slices=4, rows=64, columns=64), seed=613, out_dir=tmp_path / "ct")
    ae = AE(ae_title="STORESCU")
    ae.add_requested_context("1.2.840.10008.5.1.4.1.1.2")
    assoc = ae.associate("127.0.0.1", release_listener, ae_title="TRIAGE")
    for path in paths:
        assert assoc.send_c_store(path).Status == 0x0000
    assert Transfer.objects.count() == 1

    assoc.abort()

    wait_until(lambda: not Transfer.objects.exists())
    study = _study()
    assert study.state == Study.State.RECEIVING
    assert Instance.objects.filter(series__study=study).count() == 4  # nothing accepted is lost


def test_a_sender_of_one_association_per_instance_waits_out_the_quiet_period(
    transactional_db, tmp_path
):
    """Listed in DICOM_QUIET_PERIOD_AE_TITLES, its releases never make a study ready: the quiet
    period (2 s here, with the duties running) does, with every instance in it. An unlisted
    sender doing the same has its study made ready on the first slice and re-opened after."""
    listed = write_study(StudySpec(slices=6, rows=64, columns=64), seed=614, out_dir=tmp_path / "a")
    unlisted = write_study(
        StudySpec(slices=6, rows=64, columns=64), seed=615, out_dir=tmp_path / "b"
    )
    with _listener(tmp_path, quiet_seconds=2, duties=True) as port:
        for path in listed:
            assert storescu(port, [path], calling=QUIET_AE).returncode == 0
        study = Study.objects.get(calling_ae_title=QUIET_AE)
        assert study.state == Study.State.RECEIVING
        wait_until(lambda: Study.objects.get(pk=study.pk).state == Study.State.READY)
        study.refresh_from_db()
        assert study.reopened_count == 0  # never ready on part of the series
        assert Instance.objects.filter(series__study=study).count() == 6

        for path in unlisted:
            assert storescu(port, [path]).returncode == 0
            time.sleep(0.3)
        other = Study.objects.get(calling_ae_title="STORESCU")
        assert other.reopened_count >= 1  # why such a sender must be listed
