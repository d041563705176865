"""DICOMweb read side against a real server (uvicorn) with a real client (`dicomweb-client`),
and side by side with Orthanc's DICOMweb plugin on the same studies: same matches, same key
attributes. Bad queries are 400s with the reason; roles and the audit are checked."""

from __future__ import annotations

import os
import socket
import subprocess
import time
from pathlib import Path

import pydicom
import pytest
import requests
from dicomweb_client import DICOMwebClient
from rest_framework.authtoken.models import Token

from tests.conftest import asgi_server_start, process_stop
from tests.interfaces import Orthanc
from tests.worklist.test_ingest_service import ingest_file
from triage.models import AuditEvent, StaffProfile
from worklist import storage
from worklist.dicom.synthetic import StudySpec, write_study
from worklist.models import Instance, Study


def studies_write(tmp_path: Path) -> list[list[Path]]:
    """A head CT (ED) and a chest radiograph (ward), with study dates a range can tell apart."""
    specs = [
        (StudySpec(slices=4, location="ED-RESUS-1"), 21, "20261130"),
        (StudySpec(modality="CR", body_part="CHEST", description="CR CHEST", slices=1,
                   location="WARD 5"), 22, "20261201"),
    ]  # fmt: skip
    studies = []
    for spec, seed, date in specs:
        paths = write_study(spec, seed=seed, out_dir=tmp_path / f"study-{seed}")
        for path in paths:
            ds = pydicom.dcmread(path)
            ds.StudyDate, ds.StudyTime, ds.PatientID = date, "101500", f"DW{seed}"
            ds.save_as(path)
        studies.append(paths)
    return studies


@pytest.fixture
def served(transactional_db, tmp_path):
    process, port = asgi_server_start(tmp_path)
    yield process, port
    process_stop(process)


@pytest.fixture
def server(served):
    return served[1]


def client_for(port: int, user) -> DICOMwebClient:  # type: ignore[no-untyped-def]
    token, _ = Token.objects.get_or_create(user=user)
    return DICOMwebClient(
        url=f"http://127.0.0.1:{port}/dicomweb", headers={"Authorization": f"Token {token.key}"}
    )


def value(item: dict, tag: str):  # type: ignore[no-untyped-def, type-arg]
    values = item.get(tag, {}).get("Value", [])
    return values[0] if len(values) == 1 else values or None


def test_dicomweb_client_searches_and_retrieves_what_was_stored(server, users, tmp_path):
    ct, cr = studies_write(tmp_path)
    for path in ct + cr:
        assert ingest_file(path).status == 0
    client = client_for(server, users.radiologist)
    [study] = client.search_for_studies(search_filters={"PatientID": "DW21"})
    uid = value(study, "0020000D")
    assert value(study, "00080061") == "CT" and value(study, "00201208") == 4  # IS: a number
    assert value(study, "00080020") == "20261130" and value(study, "00201206") == 1
    assert study["00100010"]["Value"][0]["Alphabetic"] == str(pydicom.dcmread(ct[0]).PatientName)
    assert len(client.search_for_studies()) == 2
    assert len(client.search_for_studies(limit=1, offset=1)) == 1
    by_date = client.search_for_studies(search_filters={"StudyDate": "20261201-20261231"})
    assert [value(item, "00080061") for item in by_date] == ["CR"]
    [series] = client.search_for_series(uid)
    series_uid = value(series, "0020000E")
    instances = client.search_for_instances(uid, series_uid)
    assert len(instances) == 4
    retrieved = client.retrieve_study(uid)
    sent = {pydicom.dcmread(path).SOPInstanceUID: pydicom.dcmread(path) for path in ct}
    assert {ds.SOPInstanceUID for ds in retrieved} == set(sent)
    for ds in retrieved:
        assert ds.pixel_array.tobytes() == sent[ds.SOPInstanceUID].pixel_array.tobytes()
    one = client.retrieve_instance(uid, series_uid, value(instances[0], "00080018"))
    assert one.SOPInstanceUID == value(instances[0], "00080018")
    # Raw frames: uncompressed pixel data, the stored bytes of that frame.
    sop_uid = value(instances[0], "00080018")
    [frame] = client.retrieve_instance_frames(uid, series_uid, sop_uid, frame_numbers=[1])
    assert frame == sent[sop_uid].PixelData
    metadata = client.retrieve_series_metadata(uid, series_uid)
    assert len(metadata) == 4 and all("BulkDataURI" in item["7FE00010"] for item in metadata)
    assert all(value(item, "00100020") == "DW21" for item in metadata)
    # One audit record per request: the study retrieve is one, not one per instance.
    study_id = Study.objects.get(study_instance_uid=uid).pk
    retrieves = AuditEvent.objects.filter(action="dicomweb.retrieve", study_id=study_id)
    assert [event.detail for event in retrieves.order_by("pk")] == [
        {"level": "study", "instances": 4}, {"level": "instance", "instances": 1},
    ]  # fmt: skip
    assert all(event.actor_id == users.radiologist.pk for event in retrieves)
    assert AuditEvent.objects.filter(action="dicomweb.query").count() >= 6


def test_the_same_queries_answered_by_orthanc_match(server, users, tmp_path):
    ct, cr = studies_write(tmp_path)
    pacs = Orthanc(folder=tmp_path / "orthanc")
    pacs.start()
    try:
        run = subprocess.run(
            ["storescu", "-aec", pacs.ae_title, "127.0.0.1", str(pacs.dicom_port),
             *map(str, ct + cr)],
            capture_output=True, text=True, timeout=60, env={**os.environ, "TCP_NODELAY": "1"},
        )  # fmt: skip
        assert run.returncode == 0, run.stderr
        for path in ct + cr:
            assert ingest_file(path).status == 0
        ours = client_for(server, users.radiologist)
        theirs = DICOMwebClient(url=f"http://127.0.0.1:{pacs.http_port}/dicom-web")
        study_keys = ("0020000D", "00100020", "00080050", "00080020", "00080061", "00201206",
                      "00201208")  # fmt: skip
        for filters in ({}, {"PatientID": "DW22"}, {"StudyDate": "20261130"},
                        {"ModalitiesInStudy": "CT"}, {"AccessionNumber": value(
                            ours.search_for_studies(search_filters={"PatientID": "DW21"})[0],
                            "00080050")}):  # fmt: skip
            mine = ours.search_for_studies(search_filters=filters)
            orthanc = theirs.search_for_studies(
                search_filters=filters, fields=["NumberOfStudyRelatedSeries",
                                                "NumberOfStudyRelatedInstances",
                                                "ModalitiesInStudy"],
            )  # fmt: skip

            def keyed(items):  # type: ignore[no-untyped-def]
                return sorted(tuple(str(value(item, key)) for key in study_keys) for item in items)

            assert keyed(mine) == keyed(orthanc), filters
        for study in ours.search_for_studies():
            uid = value(study, "0020000D")
            series_keys = ("0020000E", "00080060", "00201209")
            mine = ours.search_for_series(uid)
            orthanc = theirs.search_for_series(uid, fields=["NumberOfSeriesRelatedInstances"])
            assert sorted(tuple(str(value(s, k)) for k in series_keys) for s in mine) == sorted(
                tuple(str(value(s, k)) for k in series_keys) for s in orthanc
            )
            series_uid = value(mine[0], "0020000E")
            mine_sops = sorted(
                value(i, "00080018") for i in ours.search_for_instances(uid, series_uid)
            )
            their_sops = [
                value(i, "00080018") for i in theirs.search_for_instances(uid, series_uid)
            ]
            assert mine_sops == sorted(their_sops)
    finally:
        pacs.stop()


@pytest.mark.parametrize(
    ("query", "reason"),
    [
        ("PatientName=Smith", "PatientName is not a matching key here"),
        ("StudyDate=2026-12-01", "StudyDate must be a date"),
        ("StudyInstanceUID=1.2.3/../4", "StudyInstanceUID must be one or more UIDs"),
        ("limit=ten", "limit must be a whole number"),
    ],
)
def test_bad_queries_are_400_with_the_reason(db, users, client, query, reason):
    client.force_login(users.radiologist)
    response = client.get(f"/dicomweb/studies?{query}")
    assert response.status_code == 400
    assert reason in response.json()["detail"]


def test_a_bad_uid_in_the_path_is_400_and_an_unknown_one_404(db, users, client):
    client.force_login(users.radiologist)
    assert client.get("/dicomweb/studies/1.2.x/series").status_code == 400
    assert client.get("/dicomweb/studies/1.2.3/series").status_code == 404


def test_clinicians_read_their_locations_studies_only(db, users, client, tmp_path):
    ct, cr = studies_write(tmp_path)
    for path in ct + cr:
        ingest_file(path)
    StaffProfile.objects.create(user=users.clinician, locations="ED")
    client.force_login(users.clinician)
    found = client.get("/dicomweb/studies").json()
    assert [value(item, "00100020") for item in found] == ["DW21"]
    ward = Study.objects.get(patient__patient_id="DW22").study_instance_uid
    assert client.get(f"/dicomweb/studies/{ward}").status_code == 404
    for someone in (users.nobody, users.integration):
        client.force_login(someone)
        assert client.get("/dicomweb/studies").status_code == 403


def test_a_200_slice_series_is_streamed_with_bounded_memory(served, users, tmp_path):
    process, server = served
    paths = write_study(StudySpec(slices=200, rows=512, columns=512), seed=31, out_dir=tmp_path)
    for path in paths:
        assert ingest_file(path).status == 0
    total = sum(path.stat().st_size for path in paths)
    uid = str(pydicom.dcmread(paths[0], stop_before_pixels=True).StudyInstanceUID)
    token, _ = Token.objects.get_or_create(user=users.radiologist)
    pid = process.pid  # the server's own (a pgrep on "--port N" could match "--port N5" too)

    def peak_kib() -> int:
        for line in Path(f"/proc/{pid}/status").read_text().splitlines():
            if line.startswith("VmHWM:"):
                return int(line.split()[1])
        raise AssertionError("no VmHWM")

    headers = {"Authorization": f"Token {token.key}"}
    series_uid = str(pydicom.dcmread(paths[0], stop_before_pixels=True).SeriesInstanceUID)
    first = str(pydicom.dcmread(paths[0], stop_before_pixels=True).SOPInstanceUID)
    warm = f"http://127.0.0.1:{server}/dicomweb/studies/{uid}/series/{series_uid}/instances/{first}"
    assert requests.get(warm, headers=headers, timeout=60).status_code == 200  # imports, caches
    before = peak_kib()
    received = 0
    with requests.get(
        f"http://127.0.0.1:{server}/dicomweb/studies/{uid}",
        headers={"Authorization": f"Token {token.key}", "Accept": "multipart/related; "
                 'type="application/dicom"'},
        stream=True, timeout=120,
    ) as response:  # fmt: skip
        assert response.status_code == 200
        for chunk in response.iter_content(1 << 20):
            received += len(chunk)
        assert int(response.headers["Content-Length"]) == received  # exact, not chunked
    assert received > total  # every file, with the multipart framing
    grown_mib = (peak_kib() - before) / 1024
    assert grown_mib < total / (1 << 20) / 4, f"server peak grew {grown_mib:.0f} MiB"

    # Again with the files out of the page cache (read in a worker thread, not on the event
    # loop): every part is the stored file, byte for byte, in order.
    stored = [
        storage.storage_path(relative)
        for relative in Instance.objects.order_by("instance_number").values_list(
            "relative_path", flat=True
        )
    ]
    for path in stored:
        descriptor = os.open(path, os.O_RDONLY)
        os.posix_fadvise(descriptor, 0, 0, os.POSIX_FADV_DONTNEED)
        os.close(descriptor)
    response = requests.get(
        f"http://127.0.0.1:{server}/dicomweb/studies/{uid}/series/{series_uid}",
        headers={**headers, "Accept": 'multipart/related; type="application/dicom"'}, timeout=120,
    )  # fmt: skip
    assert response.status_code == 200
    boundary = response.headers["Content-Type"].rpartition("boundary=")[2].encode()
    parts = response.content.split(b"--" + boundary)
    assert parts[0] == b"" and parts[-1] == b"--\r\n"
    assert [part.partition(b"\r\n\r\n")[2][:-2] for part in parts[1:-1]] == [
        path.read_bytes() for path in stored
    ]

    # A client that leaves mid-retrieve leaves no stored file open in the server.
    with requests.get(
        f"http://127.0.0.1:{server}/dicomweb/studies/{uid}",
        headers={**headers, "Accept": 'multipart/related; type="application/dicom"'},
        stream=True, timeout=120,
    ) as response:  # fmt: skip
        next(response.iter_content(1 << 20))
        # Gone for good: the connection closed now, not when the test process's garbage
        # collector gets to the response (until then the server, its writes not refused, keeps
        # reading ahead for a client that no longer reads).
        sock = response.raw._fp.fp.raw._sock
        sock.shutdown(socket.SHUT_RDWR)
        os.close(sock.detach())

    def stored_files_open() -> list[str]:
        links = []
        for fd in Path(f"/proc/{pid}/fd").iterdir():
            try:
                links.append(os.readlink(fd))
            except FileNotFoundError:  # closed while we looked
                continue
        return [link for link in links if link.endswith(".dcm")]

    left_at = time.monotonic()
    while stored_files_open() and time.monotonic() < left_at + 30:
        time.sleep(0.1)
    still = stored_files_open()
    assert still == [], f"{len(still)} open {time.monotonic() - left_at:.0f} s after: {still}"
    assert requests.get(warm, headers=headers, timeout=60).status_code == 200


def test_rendered_frames_follow_the_window_and_viewport_asked_for(db, users, client, tmp_path):
    import io

    from PIL import Image

    ct, _ = studies_write(tmp_path)
    for path in ct:
        ingest_file(path)
    ds = pydicom.dcmread(ct[0])
    url = (
        f"/dicomweb/studies/{ds.StudyInstanceUID}/series/{ds.SeriesInstanceUID}"
        f"/instances/{ds.SOPInstanceUID}"
    )
    client.force_login(users.radiologist)

    def picture(query: str, accept: str = "image/png") -> Image.Image:
        response = client.get(f"{url}/rendered?{query}", HTTP_ACCEPT=accept)
        assert response.status_code == 200, response.content
        assert response["Content-Type"] == accept
        return Image.open(io.BytesIO(response.content))

    brain = picture("window=40,80")
    bone = picture("window=600,2800")
    assert brain.size == (ds.Columns, ds.Rows) and brain.mode == "L"
    assert brain.tobytes() != bone.tobytes()  # the window changes the pixels
    assert max(picture("window=40,80&viewport=64,64").size) == 64
    assert picture("", accept="image/jpeg").format == "JPEG"
    by_query = client.get(f"{url}/rendered?accept=image/jpeg", HTTP_ACCEPT="image/webp,*/*")
    assert by_query["Content-Type"] == "image/jpeg"  # what an <img> element can ask for
    assert client.get(f"{url}/rendered?accept=image/gif").status_code == 406
    frame = client.get(f"{url}/frames/1/rendered?window=40,80")
    assert (
        frame.status_code == 200
        and frame.content == client.get(f"{url}/rendered?window=40,80").content
    )
    assert client.get(f"{url}/frames/2/rendered").status_code == 404
    assert "window must be" in client.get(f"{url}/rendered?window=wide").json()["detail"]
    assert client.get(f"{url}/rendered?viewport=0,10").status_code == 400
    # Frames of one series are one view: one audit record stands for them all.
    assert AuditEvent.objects.filter(action="dicomweb.rendered").count() == 1


def test_frames_come_uncompressed_or_as_stored_on_request(db, users, client, tmp_path):
    """An RLE-compressed two-frame instance: decoded to uncompressed bytes by default, the
    stored fragments with `transfer-syntax=*`; frame lists and bad frame numbers."""
    import numpy as np
    from pydicom.encaps import generate_frames
    from pydicom.uid import RLELossless

    ct, _ = studies_write(tmp_path)
    ds = pydicom.dcmread(ct[0])
    pixels = np.stack([ds.pixel_array, ds.pixel_array[::-1]])
    ds.NumberOfFrames = 2
    ds.compress(RLELossless, pixels)
    ds.save_as(ct[0])
    assert ingest_file(ct[0]).status == 0
    url = (
        f"/dicomweb/studies/{ds.StudyInstanceUID}/series/{ds.SeriesInstanceUID}"
        f"/instances/{ds.SOPInstanceUID}/frames"
    )
    client.force_login(users.radiologist)

    def parts(response) -> list[bytes]:  # type: ignore[no-untyped-def]
        assert response.status_code == 200, response.content
        boundary = response["Content-Type"].split("boundary=")[1].encode()
        chunks = response.content.split(b"--" + boundary)[1:-1]
        return [chunk.split(b"\r\n\r\n", 1)[1][:-2] for chunk in chunks]

    plain = client.get(
        f"{url}/2,1", HTTP_ACCEPT='multipart/related; type="application/octet-stream"'
    )
    assert 'type="application/octet-stream"' in plain["Content-Type"]
    assert parts(plain) == [pixels[1].astype("<u2").tobytes(), pixels[0].astype("<u2").tobytes()]
    stored = client.get(
        f"{url}/1", HTTP_ACCEPT='multipart/related; type="image/dicom-rle"; transfer-syntax=*'
    )
    assert 'type="image/dicom-rle"' in stored["Content-Type"]
    assert parts(stored) == [next(generate_frames(ds.PixelData, number_of_frames=2))]
    assert client.get(f"{url}/3").status_code == 404
    assert "frame numbers" in client.get(f"{url}/0").json()["detail"]
    assert "frame numbers" in client.get(f"{url}/\u00b2").json()["detail"]  # a digit, not ASCII
    assert parts(client.get(f"{url}/1,1,1", HTTP_ACCEPT="multipart/related")) == [
        pixels[0].astype("<u2").tobytes()
    ]  # a frame asked for twice is sent once
    assert "frame numbers" in client.get(f"{url}/1;2").json()["detail"]


def test_includefield_takes_keywords_and_tags_and_refuses_the_unknown(db, users, client):
    client.force_login(users.radiologist)
    for good in ("all", "StudyDescription", "00081030,PatientAge"):
        assert client.get(f"/dicomweb/studies?includefield={good}").status_code == 204
    refused = client.get("/dicomweb/studies?includefield=NotAnAttribute")
    assert refused.status_code == 400 and "NotAnAttribute" in refused.json()["detail"]
