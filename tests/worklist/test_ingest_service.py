"""The ingest service on its own, against the real PostgreSQL: idempotent on the SOP Instance UID
(also against a racing registration), late instances re-arm and re-open studies, and the
per-process memory of study and series ids never outlives the rows it names; and listener
processes sharing one port."""

from __future__ import annotations

import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from datetime import datetime, timedelta
from pathlib import Path
from types import SimpleNamespace

import psycopg
import pydicom
import pytest
from django.conf import settings
from django.db import connection
from django.utils import timezone
from pynetdicom import PYNETDICOM_IMPLEMENTATION_UID, PYNETDICOM_IMPLEMENTATION_VERSION
from pynetdicom.dsutils import create_file_meta, encode_file_meta

from tests.conftest import ROOT, child_environment, free_port, wait_for_port
from tests.dicom_peers import storescu
from triage.arrivals import studies_ready_sweep
from worklist import storage
from worklist.dicom import status
from worklist.dicom.header import part10_header
from worklist.dicom.synthetic import StudySpec, write_study
from worklist.models import Instance, Patient, QuarantinedObject, Series, Study
from worklist.services import ingest
from worklist.services.ingest import IngestResult, instance_ingest
from worklist.services.studies import studies_stabilise


def ingest_file(path: Path) -> IngestResult:
    """What the listener does with a received object: stage it durably, then ingest it."""
    return instance_ingest(
        staged_path=storage.stage_bytes(path.read_bytes()), source=Instance.Source.DICOM
    )


def stored_files() -> list[Path]:
    return sorted((Path(settings.DICOM_STORAGE_DIR) / "studies").rglob("*.dcm"))


def staged_leftovers() -> list[Path]:
    return list((Path(settings.DICOM_STORAGE_DIR) / "incoming").iterdir())


class Clock:
    """Stands in for the service's clock, so re-arming can be tested at chosen instants."""

    def __init__(self, start: datetime) -> None:
        self.now = start

    def __call__(self) -> datetime:
        return self.now


@pytest.fixture
def clock(monkeypatch: pytest.MonkeyPatch) -> Clock:
    fake = Clock(timezone.now())
    monkeypatch.setattr(ingest, "timezone", SimpleNamespace(now=fake))
    return fake


@pytest.fixture
def triage_queued(monkeypatch: pytest.MonkeyPatch) -> list[int]:
    """Studies whose triage would be queued (kept off the real broker in these tests)."""
    from triage.tasks import study_triage

    queued: list[int] = []
    monkeypatch.setattr(study_triage, "delay", queued.append)
    return queued


@pytest.fixture
def ct(tmp_path: Path) -> list[Path]:
    return write_study(StudySpec(slices=6, rows=32, columns=32), seed=71, out_dir=tmp_path / "ct")


def test_duplicate_is_answered_success_and_stored_once(db, ct):
    first = ingest_file(ct[0])
    again = ingest_file(ct[0])

    assert first.stored and not first.duplicate
    assert again.stored and again.duplicate
    assert again.study_id == first.study_id
    assert Instance.objects.count() == 1
    assert len(stored_files()) == 1
    assert staged_leftovers() == []


def test_duplicate_leaves_the_stored_copy_untouched(db, ct):
    ingest_file(ct[0])
    (stored,) = stored_files()
    before = stored.stat()

    assert ingest_file(ct[0]).duplicate

    after = stored.stat()
    assert (after.st_ino, after.st_mtime_ns) == (before.st_ino, before.st_mtime_ns)


def test_row_and_file_agree(db, ct):
    result = ingest_file(ct[0])

    instance = Instance.objects.select_related("series__study").get()
    assert instance.series.study.pk == result.study_id
    stored = Path(settings.DICOM_STORAGE_DIR) / instance.relative_path
    assert stored.read_bytes() == ct[0].read_bytes()
    assert instance.size_bytes == stored.stat().st_size


def test_first_instance_starts_the_quiet_period(db, ct, clock):
    arrival = clock.now

    ingest_file(ct[0])

    study = Study.objects.get()
    assert study.state == Study.State.RECEIVING
    assert study.first_received_at == arrival == study.last_instance_at


def test_instances_within_the_rearm_horizon_leave_the_study_row_alone(db, ct, clock):
    ingest_file(ct[0])
    clock.now += timedelta(milliseconds=100)
    ingest_file(ct[1])  # later than the anchor: moves it ahead of this arrival
    anchor = Study.objects.get().last_instance_at
    assert anchor == clock.now + ingest.REARM_AHEAD

    clock.now += ingest.REARM_AHEAD / 2
    ingest_file(ct[2])

    assert Study.objects.get().last_instance_at == anchor


def test_quiet_period_runs_from_the_last_instance_never_less(db, ct, clock):
    for index, path in enumerate(ct):
        clock.now += timedelta(milliseconds=150 * index)
        ingest_file(path)
    last_arrival = max(Instance.objects.values_list("received_at", flat=True))
    quiet = timedelta(seconds=settings.STUDY_STABLE_SECONDS)

    assert studies_stabilise(now=last_arrival + quiet - timedelta(milliseconds=1)) == []
    assert Study.objects.get().state == Study.State.RECEIVING
    ready_by = last_arrival + quiet + ingest.REARM_AHEAD
    assert studies_stabilise(now=ready_by) == [Study.objects.get().pk]


def test_late_instance_reopens_a_ready_study_once(db, ct, clock):
    ingest_file(ct[0])
    studies_stabilise(now=clock.now + timedelta(hours=1))
    assert Study.objects.get().state == Study.State.READY

    clock.now += timedelta(seconds=5)
    ingest_file(ct[1])
    ingest_file(ct[2])  # within the horizon of the re-arm: no second re-open

    study = Study.objects.get()
    assert study.state == Study.State.RECEIVING
    assert study.reopened_count == 1
    assert study.last_instance_at == clock.now + ingest.REARM_AHEAD


def test_duplicate_does_not_reopen_a_ready_study(db, ct, clock):
    ingest_file(ct[0])
    studies_stabilise(now=clock.now + timedelta(hours=1))
    clock.now += timedelta(seconds=5)

    assert ingest_file(ct[0]).duplicate

    study = Study.objects.get()
    assert study.state == Study.State.READY and study.reopened_count == 0


@pytest.mark.parametrize("known_to_this_process", [True, False])
def test_instance_of_another_patient_is_not_merged_into_the_study(
    db, ct, tmp_path, known_to_this_process
):
    first = ingest_file(ct[0])
    if not known_to_this_process:  # another listener process registered the study
        ingest._known_study_ids.clear()
        ingest._known_series_ids.clear()
    other = pydicom.dcmread(ct[1])
    other.PatientID = "MRN-SOMEONE-ELSE"
    other.PatientName = "Other^Patient"
    other.save_as(tmp_path / "other.dcm")

    result = ingest_file(tmp_path / "other.dcm")

    assert result.status == status.CANNOT_UNDERSTAND and not result.stored
    assert "Patient ID differs" in result.reason
    study = Study.objects.get()
    assert study.pk == first.study_id
    assert study.patient.patient_id == pydicom.dcmread(ct[0]).PatientID
    assert Instance.objects.count() == 1 and Patient.objects.count() == 1
    quarantined = QuarantinedObject.objects.get()
    assert "MRN-SOMEONE-ELSE" not in quarantined.reason  # the reason carries no identifier
    assert staged_leftovers() == []
    assert ingest_file(ct[2]).stored  # the right patient's next instance is still stored


def test_deleted_study_is_created_again_by_its_next_instance(db, ct):
    first = ingest_file(ct[0])  # the process now remembers the study's and series' ids
    Study.objects.filter(pk=first.study_id).delete()

    second = ingest_file(ct[1])

    assert second.stored and not second.duplicate
    study = Study.objects.get()
    assert study.pk == second.study_id != first.study_id
    assert Instance.objects.get().series.study == study


def test_rows_recreated_elsewhere_are_used_not_the_remembered_ids(db, ct):
    first = ingest_file(ct[0])
    study = Study.objects.get()
    series = Series.objects.get()
    # Another process deletes the study and registers it again, under new ids.
    study.delete()
    study.pk = None
    study.save()
    series.pk = None
    series.study = study
    series.save()

    second = ingest_file(ct[1])

    assert second.study_id == study.pk != first.study_id
    assert Instance.objects.get().series_id == series.pk
    assert Study.objects.count() == 1 and Series.objects.count() == 1


def test_rows_another_process_created_are_found_not_duplicated(db, ct, tmp_path):
    other = write_study(StudySpec(slices=2, rows=32, columns=32), seed=72, out_dir=tmp_path / "o")
    ingest_file(other[0])
    ingest._known_study_ids.clear()  # as in a process that has not seen this study
    ingest._known_series_ids.clear()

    result = ingest_file(other[1])

    assert result.stored and not result.duplicate
    assert Study.objects.count() == 1 and Series.objects.count() == 1
    assert Instance.objects.filter(series__study_id=result.study_id).count() == 2


def _other_connection() -> psycopg.Connection:
    """A second session on the test database: another listener process, say."""
    db = settings.DATABASES["default"]
    return psycopg.connect(
        host=db["HOST"] or "127.0.0.1",
        port=int(db["PORT"] or 5432),
        user=db["USER"],
        dbname=db["NAME"],
    )


def _register_elsewhere_uncommitted(other: psycopg.Connection, path: Path) -> None:
    """Register `path`'s instance in an open transaction of the other session."""
    import pydicom

    sop_uid = str(pydicom.dcmread(path, stop_before_pixels=True).SOPInstanceUID)
    series_id = Series.objects.get().pk
    other.execute(
        "INSERT INTO worklist_instance (sop_instance_uid, sop_class_uid, series_id,"
        " transfer_syntax_uid, relative_path, size_bytes, source, calling_ae_title, received_at)"
        " VALUES (%s, '1.2.840.10008.5.1.4.1.1.2', %s, '1.2.840.10008.1.2.1', 'elsewhere', 1,"
        " 'dicom', 'OTHER', now())",
        [sop_uid, series_id],
    )


def _ingest_in_thread(path: Path) -> tuple[threading.Thread, list[IngestResult]]:
    results: list[IngestResult] = []

    def run() -> None:
        try:
            results.append(ingest_file(path))
        finally:
            connection.close()

    thread = threading.Thread(target=run)
    thread.start()
    return thread, results


def test_racing_registration_of_the_same_uid_waits_and_answers_duplicate(transactional_db, ct):
    ingest_file(ct[0])
    with _other_connection() as other:
        _register_elsewhere_uncommitted(other, ct[1])
        thread, results = _ingest_in_thread(ct[1])
        thread.join(timeout=1.0)
        assert thread.is_alive()  # not answered while the other registration is undecided
        other.commit()
        thread.join(timeout=10)

    assert results and results[0].stored and results[0].duplicate
    assert Instance.objects.filter(relative_path="elsewhere").count() == 1
    assert Instance.objects.count() == 2
    assert len(stored_files()) == 1  # the racing copy was discarded, not moved into place
    assert staged_leftovers() == []


def test_racing_registration_that_rolls_back_leaves_the_instance_to_us(transactional_db, ct):
    ingest_file(ct[0])
    with _other_connection() as other:
        _register_elsewhere_uncommitted(other, ct[1])
        thread, results = _ingest_in_thread(ct[1])
        thread.join(timeout=1.0)
        other.rollback()
        thread.join(timeout=10)

    assert results and results[0].stored and not results[0].duplicate
    assert Instance.objects.count() == 2
    assert len(stored_files()) == 2


def test_study_being_marked_ready_elsewhere_is_reopened_by_an_instance_meanwhile(
    transactional_db, ct
):
    ingest_file(ct[0])
    study_id = Study.objects.get().pk
    with _other_connection() as other:
        # The stabiliser of another process holds the study while marking it ready.
        other.execute("SELECT id FROM worklist_study WHERE id = %s FOR UPDATE", [study_id])
        other.execute("UPDATE worklist_study SET state = 'ready' WHERE id = %s", [study_id])
        thread, results = _ingest_in_thread(ct[1])
        thread.join(timeout=1.0)
        other.commit()
        thread.join(timeout=10)

    assert results and results[0].stored
    study = Study.objects.get()
    assert study.state == Study.State.RECEIVING and study.reopened_count == 1


def test_study_in_the_middle_of_an_ingest_is_skipped_by_the_stabiliser(
    transactional_db, ct, triage_queued
):
    ingest_file(ct[0])
    study_id = Study.objects.get().pk
    with _other_connection() as other:
        # What an ingest transaction holds on the study from its first statement to commit.
        other.execute("SELECT id FROM worklist_study WHERE id = %s FOR KEY SHARE", [study_id])

        assert studies_stabilise(now=timezone.now() + timedelta(hours=1)) == []
        other.rollback()
    assert studies_ready_sweep(now=timezone.now() + timedelta(hours=1)) == [study_id]
    assert triage_queued == [study_id]


@pytest.mark.parametrize(
    ("sop_class_uid", "sop_instance_uid", "transfer_syntax_uid"),
    [
        ("1.2.840.10008.5.1.4.1.1.2", "1.2.826.0.1.3680043.10.1453.1.2.3", "1.2.840.10008.1.2.1"),
        ("1.2.840.10008.5.1.4.1.1.4", "1.2.3.44", "1.2.840.10008.1.2"),
        ("1.2.840.10008.5.1.4.1.1.7", "1.2.3.4", "1.2.840.10008.1.2.4.90"),
    ],
)
def test_part10_header_is_what_pynetdicom_writes(
    sop_class_uid, sop_instance_uid, transfer_syntax_uid
):
    theirs = encode_file_meta(
        create_file_meta(
            sop_class_uid=sop_class_uid,
            sop_instance_uid=sop_instance_uid,
            transfer_syntax=transfer_syntax_uid,
        )
    )

    ours = part10_header(
        sop_class_uid=sop_class_uid,
        sop_instance_uid=sop_instance_uid,
        transfer_syntax_uid=transfer_syntax_uid,
        implementation_class_uid=PYNETDICOM_IMPLEMENTATION_UID,
        implementation_version_name=PYNETDICOM_IMPLEMENTATION_VERSION,
    )

    assert ours == b"\0" * 128 + b"DICM" + theirs


@pytest.fixture
def listener_processes(transactional_db, tmp_path: Path) -> Iterator[int]:
    """`manage.py dicom_scp --processes 2`: two processes on one shared listening socket."""
    port = free_port()
    with open(tmp_path / "dicom_scp.log", "wb") as log:
        process = subprocess.Popen(
            [sys.executable, str(ROOT / "manage.py"), "dicom_scp", "--host", "127.0.0.1"]
            + ["--port", str(port), "--processes", "2"],
            cwd=ROOT,
            env=child_environment(),
            stdout=log,
            stderr=subprocess.STDOUT,
        )
    try:
        wait_for_port(port, process=process)
        deadline = time.monotonic() + 30
        while (tmp_path / "dicom_scp.log").read_text().count("DICOM listener") < 2:
            assert time.monotonic() < deadline, "the listener processes did not start"
            time.sleep(0.1)
        yield port
    finally:
        process.terminate()
        process.wait(timeout=20)  # its processes stop with it
        connection.close()


def test_listener_processes_sharing_a_port_store_concurrent_associations_once(
    listener_processes, tmp_path
):
    paths = write_study(StudySpec(slices=12, rows=32, columns=32), seed=73, out_dir=tmp_path / "c")
    groups = [paths[index::4] for index in range(4)]

    with ThreadPoolExecutor(max_workers=4) as pool:
        results = list(pool.map(lambda group: storescu(listener_processes, group), groups))

    assert all(result.returncode == 0 for result in results), results
    assert Instance.objects.count() == 12
    assert Study.objects.count() == 1 and Series.objects.count() == 1
    assert len(stored_files()) == 12
