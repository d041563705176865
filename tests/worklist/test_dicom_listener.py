"""The DICOM listener against real DCMTK peers: stored as received, once, durable; bad input
quarantined while the listener keeps serving."""

from __future__ import annotations

import time
from pathlib import Path

import pydicom
import pytest
from django.conf import settings
from pydicom.data import get_testdata_file
from pydicom.uid import ExplicitVRLittleEndian, ImplicitVRLittleEndian

from tests.dicom_peers import STORESCU_PROPOSE, echoscu, raw_store, storescu
from triage.models import AuditEvent
from worklist.dicom import status
from worklist.dicom.synthetic import StudySpec, write_study
from worklist.models import Instance, QuarantinedObject, Study

EXAMPLE_FILES = [
    "CT_small.dcm",  # explicit VR little endian
    "MR_small_implicit.dcm",  # implicit VR little endian
    "image_dfl.dcm",  # deflated
    "MR_small_RLE.dcm",  # RLE lossless
    "JPEG2000.dcm",  # JPEG 2000
    "MR_small_jp2klossless.dcm",  # JPEG 2000 lossless
    "MR_small_jpeg_ls_lossless.dcm",  # JPEG-LS lossless
    "SC_rgb_jpeg_dcmtk.dcm",  # JPEG baseline
    "JPGExtended.dcm",  # JPEG extended
]


def wait_until(predicate, *, timeout: float = 20.0, interval: float = 0.2):  # type: ignore[no-untyped-def]
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        value = predicate()
        if value:
            return value
        time.sleep(interval)
    raise AssertionError("condition not met in time")


def test_echo_answers(dicom_listener):
    result = echoscu(dicom_listener.port)
    assert result.returncode == 0, result.output


@pytest.mark.parametrize("name", EXAMPLE_FILES)
def test_example_file_is_stored_as_received(dicom_listener, name):
    source = Path(get_testdata_file(name))
    original = pydicom.dcmread(source)
    syntax = original.file_meta.TransferSyntaxUID

    result = storescu(dicom_listener.port, [source], propose=STORESCU_PROPOSE.get(syntax))

    assert result.returncode == 0, result.output
    instance = Instance.objects.get(sop_instance_uid=original.SOPInstanceUID)
    assert instance.transfer_syntax_uid == syntax
    stored = pydicom.dcmread(Path(settings.DICOM_STORAGE_DIR) / instance.relative_path)
    assert stored.file_meta.TransferSyntaxUID == syntax
    assert stored.PixelData == original.PixelData  # not decoded nor re-encoded on receipt


def test_ct_series_becomes_ready_and_is_routed(
    dicom_listener, celery_worker, tmp_path, client, users
):
    paths = write_study(StudySpec(slices=40), seed=11, out_dir=tmp_path / "ct")

    result = storescu(dicom_listener.port, paths)

    assert result.returncode == 0, result.output
    study = Study.objects.get()
    assert Instance.objects.filter(series__study=study).count() == 40
    wait_until(lambda: Study.objects.get(pk=study.pk).applicable_findings)
    study.refresh_from_db()
    assert study.state == Study.State.READY
    assert study.applicable_findings == ["intracranial_hemorrhage"]

    client.force_login(users.radiologist)
    listed = client.get("/api/worklist/").json()["results"]
    assert [row["study_instance_uid"] for row in listed] == [study.study_instance_uid]
    assert listed[0]["ai_state"] in ("pending", "complete")
    assert [finding["finding"] for finding in listed[0]["findings"]] == ["intracranial_hemorrhage"]
    assert listed[0]["findings"][0]["demonstration"] is True


def test_study_no_model_applies_to_is_not_eligible(dicom_listener, celery_worker):
    result = storescu(dicom_listener.port, [Path(get_testdata_file("MR_small.dcm"))])

    assert result.returncode == 0, result.output
    wait_until(lambda: Study.objects.filter(ai_state="not_eligible").exists())


def test_worklist_is_in_deadline_order(dicom_listener, tmp_path, client, users):
    routine = write_study(
        StudySpec(description="CT ABDOMEN", body_part="ABDOMEN", slices=4, location="WARD 7"),
        seed=21,
        out_dir=tmp_path / "routine",
    )
    stat = write_study(StudySpec(slices=4, priority="STAT"), seed=22, out_dir=tmp_path / "stat")
    emergency = write_study(
        StudySpec(slices=4, location="ED-RESUS-2"), seed=23, out_dir=tmp_path / "ed"
    )

    for paths in (routine, emergency, stat):  # the most urgent arrives last
        assert storescu(dicom_listener.port, paths).returncode == 0

    client.force_login(users.radiologist)
    wait_until(lambda: len(client.get("/api/worklist/").json()["results"]) == 3)
    rows = client.get("/api/worklist/").json()["results"]
    assert [row["order_priority"] for row in rows] == ["STAT", "ROUTINE", "ROUTINE"]
    assert [row["is_emergency"] for row in rows] == [False, True, False]
    deadlines = [row["read_by"] for row in rows]
    assert deadlines == sorted(deadlines)
    ed_only = client.get("/api/worklist/?location=ed").json()["results"]
    assert [row["patient_location"] for row in ed_only] == ["ED-RESUS-2"]


def test_resend_is_stored_once_and_answered_success(dicom_listener, tmp_path):
    paths = write_study(StudySpec(slices=10), seed=31, out_dir=tmp_path / "ct")

    first = storescu(dicom_listener.port, paths)
    second = storescu(dicom_listener.port, paths)

    assert first.returncode == 0 and second.returncode == 0, second.output
    assert Instance.objects.count() == 10
    stored_files = list((Path(settings.DICOM_STORAGE_DIR) / "studies").rglob("*.dcm"))
    assert len(stored_files) == 10


def test_late_instance_reopens_a_ready_study(dicom_listener, tmp_path):
    paths = write_study(StudySpec(slices=6), seed=41, out_dir=tmp_path / "ct")
    assert storescu(dicom_listener.port, paths[:5]).returncode == 0
    wait_until(lambda: Study.objects.filter(state="ready").exists())

    assert storescu(dicom_listener.port, paths[5:]).returncode == 0

    wait_until(lambda: Study.objects.filter(state="ready", reopened_count=1).exists())
    assert Instance.objects.count() == 6


def _meta_then(tmp_path: Path, body: bytes, *, sop_class: str) -> Path:
    """A file with a valid preamble and meta header followed by `body` as the dataset."""
    source = pydicom.dcmread(get_testdata_file("CT_small.dcm"))
    source.file_meta.MediaStorageSOPClassUID = sop_class
    source.file_meta.TransferSyntaxUID = ExplicitVRLittleEndian
    header_only = tmp_path / "meta.dcm"
    empty = pydicom.Dataset()
    empty.file_meta = source.file_meta
    empty.preamble = b"\0" * 128
    empty.save_as(header_only, enforce_file_format=False, implicit_vr=False, little_endian=True)
    path = tmp_path / "crafted.dcm"
    path.write_bytes(header_only.read_bytes() + body)
    return path


def test_garbage_bytes_are_refused_and_quarantined(dicom_listener, tmp_path):
    garbage = _meta_then(tmp_path, b"\xde\xad\xbe\xef" * 300, sop_class="1.2.840.10008.5.1.4.1.1.2")

    code = raw_store(dicom_listener.port, garbage)

    assert code & 0xF000 in (0xA000, 0xC000), hex(code)
    quarantined = QuarantinedObject.objects.get()
    assert quarantined.status_code == code
    assert (Path(settings.DICOM_STORAGE_DIR) / quarantined.relative_path).stat().st_size > 0
    assert echoscu(dicom_listener.port).returncode == 0
    assert Instance.objects.count() == 0


def test_truncated_file_is_refused_and_quarantined(dicom_listener, tmp_path):
    whole = Path(get_testdata_file("CT_small.dcm")).read_bytes()
    truncated = tmp_path / "truncated.dcm"
    truncated.write_bytes(whole[: len(whole) // 2])

    code = raw_store(dicom_listener.port, truncated)

    assert code == status.CANNOT_UNDERSTAND_TRUNCATED
    assert "truncated" in QuarantinedObject.objects.get().reason
    assert echoscu(dicom_listener.port).returncode == 0
    assert Instance.objects.count() == 0


def test_file_without_study_uid_is_refused(dicom_listener, tmp_path):
    ds = pydicom.dcmread(get_testdata_file("CT_small.dcm"))
    del ds.StudyInstanceUID
    del ds.SeriesInstanceUID
    path = tmp_path / "no-uids.dcm"
    ds.save_as(path)

    result = storescu(dicom_listener.port, [path])

    assert result.returncode != 0 or "0xc002" in result.output.lower()
    quarantined = QuarantinedObject.objects.get()
    assert quarantined.status_code == status.MISSING_UIDS
    assert (
        "StudyInstanceUID" not in quarantined.reason or "study_instance_uid" in quarantined.reason
    )
    assert "study_instance_uid" in quarantined.reason
    assert echoscu(dicom_listener.port).returncode == 0


def test_dataset_that_does_not_match_its_sop_class_is_refused(dicom_listener, tmp_path):
    ds = pydicom.dcmread(get_testdata_file("CT_small.dcm"))
    ds.file_meta.MediaStorageSOPClassUID = "1.2.840.10008.5.1.4.1.1.4"  # negotiated as MR
    ds.file_meta.TransferSyntaxUID = ImplicitVRLittleEndian
    path = tmp_path / "mismatch.dcm"
    ds.save_as(path, implicit_vr=True, little_endian=True)

    code = raw_store(dicom_listener.port, path)

    assert code == status.DATASET_DOES_NOT_MATCH_SOP_CLASS
    assert QuarantinedObject.objects.get().status_code == code


def _denials() -> list[tuple[str, dict]]:  # type: ignore[type-arg]
    return [(event.channel, event.detail) for event in
            AuditEvent.objects.filter(action="access.denied").order_by("at")]  # fmt: skip


def test_unknown_calling_ae_title_is_rejected_at_association(dicom_listener, tmp_path):
    result = echoscu(dicom_listener.port, calling="INTRUDER")

    assert result.returncode != 0
    assert "reject" in result.output.lower()
    assert echoscu(dicom_listener.port).returncode == 0
    assert _denials() == [
        ("dicom", {"reason": "calling AE title not allowed", "calling_ae": "INTRUDER"})
    ]
    assert AuditEvent.objects.get(action="access.denied").remote_addr == "127.0.0.1"


def test_association_addressed_to_another_ae_title_is_rejected(dicom_listener):
    result = echoscu(dicom_listener.port, called="NOT-TRIAGE")

    assert result.returncode != 0
    assert "reject" in result.output.lower()
    assert echoscu(dicom_listener.port).returncode == 0
    assert _denials() == [
        ("dicom", {"reason": "called AE title is not this listener's", "calling_ae": "ECHOSCU"})
    ]


def test_patient_identity_never_reaches_the_listener_log(dicom_listener, tmp_path):
    paths = write_study(StudySpec(slices=3), seed=51, out_dir=tmp_path / "ct")
    ds = pydicom.dcmread(paths[0])
    assert storescu(dicom_listener.port, paths).returncode == 0
    wait_until(lambda: Study.objects.filter(state="ready").exists())

    log = dicom_listener.log()
    assert f"study ready study={Study.objects.get().pk}" in log  # the log does carry ids
    assert str(ds.PatientName) not in log and ds.PatientID not in log


def test_native_pixel_data_shorter_than_its_image_is_refused_at_receipt(dicom_listener, tmp_path):
    [path] = write_study(StudySpec(slices=1, rows=64, columns=64), seed=81, out_dir=tmp_path / "s")
    ds = pydicom.dcmread(path)
    assert len(ds.PixelData) == 64 * 64 * 2
    ds.PixelData = ds.PixelData[:3192]  # 16 bits allocated: 8192 bytes are needed
    ds.save_as(path)

    code = raw_store(dicom_listener.port, path)

    assert code == status.CANNOT_UNDERSTAND, hex(code)
    quarantined = QuarantinedObject.objects.get()
    assert "3192 bytes" in quarantined.reason and "8192" in quarantined.reason
    assert Instance.objects.count() == 0
    assert echoscu(dicom_listener.port).returncode == 0


def test_encapsulated_pixel_data_with_a_cut_fragment_is_refused(dicom_listener, tmp_path):
    ds = pydicom.dcmread(get_testdata_file("MR_small_RLE.dcm"))
    ds.PixelData = ds.PixelData[:-100]  # the last fragment item declares 100 bytes more
    path = tmp_path / "cut-fragment.dcm"
    ds.save_as(path)

    code = raw_store(dicom_listener.port, path)

    assert code == status.CANNOT_UNDERSTAND, hex(code)
    assert "fragment" in QuarantinedObject.objects.get().reason
    assert Instance.objects.count() == 0
