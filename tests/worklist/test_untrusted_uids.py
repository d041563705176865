"""UIDs are untrusted sender values: a "UID" that is not one (a path traversal, whatever VR it is
encoded with, or one over 64 characters) is refused over C-STORE and STOW-RS, quarantined, and
never reaches a path; nothing is written outside the storage folder and no stored file is
overwritten."""

from __future__ import annotations

import logging
import os
import time
import warnings
from pathlib import Path

import pydicom
import pytest
from django.conf import settings
from pydicom.dataelem import DataElement
from rest_framework.authtoken.models import Token

from tests.dicom_peers import echoscu, raw_store, storescu
from tests.triage.test_stow import multipart, post
from worklist import storage
from worklist.dicom import identifiers, status
from worklist.dicom.identifiers import InvalidIdentifier, ae_title_for_record, uid_check
from worklist.dicom.synthetic import StudySpec, write_study
from worklist.models import Instance, QuarantinedObject

UID_TAGS = {
    "StudyInstanceUID": 0x0020000D,
    "SeriesInstanceUID": 0x0020000E,
    "SOPInstanceUID": 0x00080018,
}
ESCAPE_NAME = "escaped-by-uid"
# From studies/{study}/{series}/{sop}.dcm, each lands in the storage folder's parent.
TRAVERSALS = {
    "StudyInstanceUID": f"../../{ESCAPE_NAME}",
    "SeriesInstanceUID": f"../../../{ESCAPE_NAME}",
    "SOPInstanceUID": f"../../../../{ESCAPE_NAME}",
}
# The test process's pynetdicom warns reading the crafted files it sends.
pytestmark = pytest.mark.filterwarnings("ignore:Invalid value for VR UI", "ignore:The value length")

ROUTES_AND_VRS = [(attribute, vr) for attribute in UID_TAGS for vr in ("LO", "UT", "UI")]


def crafted(source: Path, out: Path, **values: tuple[str, str]) -> Path:
    """A copy of `source` with the given attributes re-encoded as (VR, value), unchecked."""
    ds = pydicom.dcmread(source)
    for attribute, (vr, value) in values.items():
        ds[UID_TAGS[attribute]] = DataElement(UID_TAGS[attribute], vr, value)
        if attribute == "SOPInstanceUID":
            # The C-STORE request carries it too (pynetdicom sends what the file meta says).
            ds.file_meta.MediaStorageSOPInstanceUID = value
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # pydicom warns on an invalid UI value, and writes it
        ds.save_as(out)
    return out


def storage_root() -> Path:
    return Path(settings.DICOM_STORAGE_DIR).resolve()


def files_outside_storage(since: float) -> list[Path]:
    """Files created since `since` in the storage folder's parent, outside the storage folder."""
    root = storage_root()
    found = []
    for path in root.parent.rglob("*"):
        if path.is_relative_to(root) or not path.is_file():
            continue
        if path.stat().st_mtime >= since:
            found.append(path)
    return found


def assert_refused_and_contained(since: float, attribute: str) -> None:
    escaped = storage_root().parent / ESCAPE_NAME
    assert not escaped.exists() and not escaped.with_suffix(".dcm").exists()
    assert files_outside_storage(since) == []
    assert Instance.objects.filter(relative_path__contains="..").count() == 0
    quarantined = QuarantinedObject.objects.get()
    assert quarantined.status_code == status.CANNOT_UNDERSTAND
    assert attribute in quarantined.reason or "UID" in quarantined.reason
    # Quarantined under a server-made name, nothing left in staging.
    assert quarantined.relative_path.startswith("quarantine/")
    assert ".." not in quarantined.relative_path
    assert (storage_root() / quarantined.relative_path).is_file()
    assert list((storage_root() / "incoming").glob("*")) == []


@pytest.fixture
def three_slices(tmp_path: Path) -> list[Path]:
    return write_study(StudySpec(slices=3), seed=71, out_dir=tmp_path / "study")


@pytest.fixture
def token(users) -> Token:
    return Token.objects.create(user=users.integration)


@pytest.mark.parametrize(("attribute", "vr"), ROUTES_AND_VRS)
def test_c_store_refuses_a_traversal_uid(dicom_listener, tmp_path, three_slices, attribute, vr):
    since = time.time() - 1
    bad = crafted(three_slices[0], tmp_path / "bad.dcm", **{attribute: (vr, TRAVERSALS[attribute])})

    code = raw_store(dicom_listener.port, bad)

    assert code == status.CANNOT_UNDERSTAND, hex(code)
    assert_refused_and_contained(since, attribute)
    # The listener keeps serving: the rest of the study is stored.
    assert echoscu(dicom_listener.port).returncode == 0
    assert storescu(dicom_listener.port, three_slices[1:]).returncode == 0
    assert Instance.objects.count() == 2
    assert ESCAPE_NAME not in dicom_listener.log()  # nor did the value reach a log line


@pytest.mark.parametrize(("attribute", "vr"), ROUTES_AND_VRS)
def test_stow_refuses_a_traversal_uid(client, token, tmp_path, three_slices, attribute, vr, caplog):
    caplog.set_level(logging.DEBUG)
    since = time.time() - 1
    bad = crafted(three_slices[0], tmp_path / "bad.dcm", **{attribute: (vr, TRAVERSALS[attribute])})
    parts = [bad.read_bytes(), *(path.read_bytes() for path in three_slices[1:])]

    response = post(client, multipart(parts), token=token)

    assert response.status_code == 202, response.content
    failed = response.json()["00081198"]["Value"]
    assert [item["00081197"]["Value"][0] for item in failed] == [status.CANNOT_UNDERSTAND]
    assert ".." not in response.content.decode()  # the bad value is not echoed back
    assert len(response.json()["00081199"]["Value"]) == 2
    assert_refused_and_contained(since, attribute)
    # The web app keeps serving.
    again = post(client, multipart([three_slices[1].read_bytes()]), token=token)
    assert again.status_code == 200
    assert ESCAPE_NAME not in caplog.text  # nor did the value reach a log line


def test_c_store_refuses_an_over_long_uid(dicom_listener, tmp_path, three_slices):
    bad = crafted(three_slices[0], tmp_path / "long.dcm", StudyInstanceUID=("UI", "1." * 32 + "9"))

    code = raw_store(dicom_listener.port, bad)

    assert code == status.CANNOT_UNDERSTAND, hex(code)
    quarantined = QuarantinedObject.objects.get()
    assert "StudyInstanceUID" in quarantined.reason or "UID" in quarantined.reason
    assert Instance.objects.count() == 0
    assert list((storage_root() / "incoming").glob("*")) == []  # no staged file left
    assert echoscu(dicom_listener.port).returncode == 0


def test_stow_refuses_an_over_long_uid(client, token, tmp_path, three_slices):
    bad = crafted(three_slices[0], tmp_path / "long.dcm", SOPInstanceUID=("UI", "1." * 32 + "9"))

    response = post(client, multipart([bad.read_bytes()]), token=token)

    assert response.status_code == 409
    failed = response.json()["00081198"]["Value"]
    assert failed[0]["00081197"]["Value"] == [status.CANNOT_UNDERSTAND]
    assert "00081155" not in failed[0]  # not a UID: not echoed as one
    assert "65 characters" in QuarantinedObject.objects.get().reason
    assert Instance.objects.count() == 0
    assert list((storage_root() / "incoming").glob("*")) == []  # no staged file left


def test_stow_refuses_a_study_url_that_is_not_a_uid(client, token, three_slices):
    response = post(
        client,
        multipart([three_slices[0].read_bytes()]),
        token=token,
        url="/dicomweb/studies/1.2.%2E%2E",
    )

    assert response.status_code == 400
    assert "not a UID" in response.json()["detail"]
    assert Instance.objects.count() == 0


def _victim(tmp_path: Path, source: Path) -> Path:
    """An instance with short UIDs, so that `x/../<its SOP Instance UID>` fits in 64."""
    ds = pydicom.dcmread(source)
    ds.StudyInstanceUID, ds.SeriesInstanceUID = "1.2.3", "1.2.3.4"
    ds.SOPInstanceUID = ds.file_meta.MediaStorageSOPInstanceUID = "1.2.3.4.5"
    path = tmp_path / "victim.dcm"
    ds.save_as(path)
    return path


def _overwrites(tmp_path: Path, victim: Path, other_patient: Path) -> list[Path]:
    """Another patient's object aimed at the victim's file: by traversal, and by its UID."""
    ds = pydicom.dcmread(other_patient)
    ds.StudyInstanceUID, ds.SeriesInstanceUID = "1.2.3", "1.2.3.4"
    ds.PatientName = "Intruder^Other"
    ds.SOPInstanceUID = ds.file_meta.MediaStorageSOPInstanceUID = "1.2.3.4.5"
    same_uid = tmp_path / "same-uid.dcm"
    ds.save_as(same_uid)
    traversal = crafted(
        same_uid, tmp_path / "traversal.dcm", SOPInstanceUID=("LO", "x/../1.2.3.4.5")
    )
    return [traversal, same_uid]


def _stored_state() -> tuple[bytes, dict[str, object]]:
    instance = Instance.objects.get(sop_instance_uid="1.2.3.4.5")
    row = {
        field: getattr(instance, field)
        for field in ("series_id", "relative_path", "size_bytes", "received_at", "source")
    }
    return (storage_root() / instance.relative_path).read_bytes(), row


def test_c_store_cannot_overwrite_a_stored_instance(dicom_listener, tmp_path, three_slices):
    victim = _victim(tmp_path, three_slices[0])
    assert storescu(dicom_listener.port, [victim]).returncode == 0
    before = _stored_state()
    traversal, same_uid = _overwrites(tmp_path, victim, three_slices[1])

    assert raw_store(dicom_listener.port, traversal) == status.CANNOT_UNDERSTAND
    assert raw_store(dicom_listener.port, same_uid) == status.SUCCESS  # a re-send: stored once

    assert _stored_state() == before  # byte for byte, and the row
    assert Instance.objects.count() == 1
    assert echoscu(dicom_listener.port).returncode == 0


def test_stow_cannot_overwrite_a_stored_instance(client, token, tmp_path, three_slices):
    victim = _victim(tmp_path, three_slices[0])
    assert post(client, multipart([victim.read_bytes()]), token=token).status_code == 200
    before = _stored_state()
    traversal, same_uid = _overwrites(tmp_path, victim, three_slices[1])

    response = post(client, multipart([traversal.read_bytes(), same_uid.read_bytes()]), token=token)

    assert response.status_code == 202
    failed = response.json()["00081198"]["Value"]
    assert [item["00081197"]["Value"][0] for item in failed] == [status.CANNOT_UNDERSTAND]
    assert _stored_state() == before
    assert Instance.objects.count() == 1


def test_storage_path_refuses_anything_outside_the_root(tmp_path):
    (storage_root() / "studies").mkdir(parents=True, exist_ok=True)
    os.symlink(tmp_path, storage_root() / "studies" / "link")

    (storage_root() / "studies" / "1.2").mkdir(exist_ok=True)
    os.symlink(tmp_path / "elsewhere.dcm", storage_root() / "studies" / "1.2" / "leaf.dcm")

    refused = ("../x.dcm", "studies/../../x.dcm", "/etc/passwd", "", "studies/link/x.dcm",
               "studies/1.2/leaf.dcm", "x/..", "studies/1.2/leaf.dcm/")  # fmt: skip
    for relative in refused:
        with pytest.raises(storage.UnsafeStoragePath):
            storage.storage_path(relative)
        with pytest.raises(storage.UnsafeStoragePath):  # the many-at-once form, the same rules
            storage.storage_paths(["studies/1.2/3.4/5.6.dcm", relative])
    assert (
        storage.storage_path("studies/1.2/3.4/5.6.dcm")
        == storage_root() / "studies/1.2/3.4/5.6.dcm"
    )
    allowed = ["studies/1.2/3.4/5.6.dcm", "studies/1.2/3.4/5.7.dcm", "x.dcm", "a/../y.dcm",
               "studies/1.2/..", "studies/1.2/"]  # fmt: skip
    assert storage.storage_paths(allowed) == [storage.storage_path(item) for item in allowed]
    with pytest.raises(storage.UnsafeStoragePath):
        storage.instance_relative_path(study_uid="1.2", series_uid="3.4", sop_uid="x/../5.6")
    with pytest.raises(storage.UnsafeStoragePath):
        storage.result_relative_path(study_uid="..", run_id=1, suffix=".png")


@pytest.mark.parametrize(
    "value",
    ["", "1..2", ".1.2", "1.2.", "1.2.a", "1.2/3", "1.2 3", "1.\u0663", "1." * 32 + "9", "../1"],
)
def test_uid_check_refuses_what_is_not_a_uid(value):
    with pytest.raises(InvalidIdentifier) as refused:
        uid_check(value, attribute="StudyInstanceUID")
    assert "StudyInstanceUID" in refused.value.reason
    if value:
        assert value not in refused.value.reason  # never quotes the sender's value


def test_uid_with_a_leading_zero_is_accepted_and_logged(caplog, monkeypatch):
    monkeypatch.setattr(identifiers, "_leading_zero_count", 0)  # the first in a process is logged
    with caplog.at_level(logging.WARNING, logger="worklist.dicom.identifiers"):
        assert uid_check("1.2.840.0113654.1", attribute="SOPInstanceUID") == "1.2.840.0113654.1"
    assert uid_check("1.0.2", attribute="SOPInstanceUID") == "1.0.2"  # a lone 0 is no defect
    assert "leading zero" in caplog.text


def test_calling_ae_title_cannot_forge_a_log_line():
    assert ae_title_for_record(" STORESCU ") == "STORESCU"
    forged = ae_title_for_record("A\nINFO fake\\x")
    assert "\n" not in forged and "\\" not in forged and len(forged) <= 16
