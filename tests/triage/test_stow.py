"""DICOMweb STOW-RS: whole studies, partial failures, limits and authentication."""

from __future__ import annotations

import http.client
from pathlib import Path

import pydicom
import pytest
from rest_framework.authtoken.models import Token

from tests.conftest import asgi_server_start, process_stop
from worklist.dicom import status
from worklist.dicom.synthetic import StudySpec, write_study
from worklist.models import Instance, QuarantinedObject, Study, WorklistItem

BOUNDARY = "stow-test-boundary-3f9a"
CONTENT_TYPE = f'multipart/related; type="application/dicom"; boundary={BOUNDARY}'


def multipart(parts: list[bytes], *, part_type: str = "application/dicom") -> bytes:
    body = b""
    for part in parts:
        body += f"--{BOUNDARY}\r\nContent-Type: {part_type}\r\n\r\n".encode() + part + b"\r\n"
    return body + f"--{BOUNDARY}--\r\n".encode()


def post(
    client,
    body: bytes,
    *,
    token: Token | None = None,
    url: str = "/dicomweb/studies",
    content_type: str = CONTENT_TYPE,
):
    headers = {"HTTP_AUTHORIZATION": f"Token {token.key}"} if token else {}
    return client.generic("POST", url, body, content_type=content_type, **headers)


@pytest.fixture
def token(users) -> Token:
    return Token.objects.create(user=users.integration)


@pytest.fixture
def study_files(tmp_path: Path) -> list[Path]:
    return write_study(StudySpec(slices=3), seed=61, out_dir=tmp_path / "study")


def test_whole_study_is_stored_and_ready_at_once(client, token, study_files):
    response = post(client, multipart([path.read_bytes() for path in study_files]), token=token)

    assert response.status_code == 200, response.content
    assert response["Content-Type"] == "application/dicom+json"
    referenced = response.json()["00081199"]["Value"]
    sent = {pydicom.dcmread(path).SOPInstanceUID for path in study_files}
    assert {item["00081155"]["Value"][0] for item in referenced} == sent
    study = Study.objects.get()
    assert study.state == Study.State.READY  # no quiet period for a STOW-RS request
    assert WorklistItem.objects.filter(study=study).exists()
    assert Instance.objects.filter(source="stow").count() == 3


def test_partial_failure_reports_each_instance(client, token, study_files):
    parts = [study_files[0].read_bytes(), b"definitely not DICOM" * 20, study_files[1].read_bytes()]

    response = post(client, multipart(parts), token=token)

    assert response.status_code == 202
    body = response.json()
    assert len(body["00081199"]["Value"]) == 2
    failed = body["00081198"]["Value"]
    assert len(failed) == 1
    assert failed[0]["00081197"]["Value"] == [status.CANNOT_UNDERSTAND]
    assert Instance.objects.count() == 2
    assert QuarantinedObject.objects.get().source == "stow"


def test_instance_of_another_study_than_the_url_names_fails(client, token, study_files):
    response = post(
        client,
        multipart([study_files[0].read_bytes()]),
        token=token,
        url="/dicomweb/studies/1.2.3.4.5.999",
    )

    assert response.status_code == 409
    assert response.json()["00081198"]["Value"][0]["00081197"]["Value"] == [
        status.DATASET_DOES_NOT_MATCH_SOP_CLASS
    ]
    assert Instance.objects.count() == 0


def test_a_failure_entry_names_the_instance_when_its_uids_parsed(client, token, study_files):
    sent = pydicom.dcmread(study_files[0])

    response = post(
        client,
        multipart([study_files[0].read_bytes()]),
        token=token,
        url="/dicomweb/studies/1.2.3.4.5.999",
    )

    failed = response.json()["00081198"]["Value"][0]
    assert failed["00081155"]["Value"] == [sent.SOPInstanceUID]
    assert failed["00081150"]["Value"] == [sent.SOPClassUID]
    assert QuarantinedObject.objects.get().sop_instance_uid == sent.SOPInstanceUID


def test_a_signed_in_administrator_stores_with_a_session_and_its_csrf_token(users, study_files):
    from django.test import Client

    browser = Client(enforce_csrf_checks=True)
    browser.force_login(users.administrator)
    browser.get("/accounts/login/")  # any page sets the CSRF cookie
    body = multipart([study_files[0].read_bytes()])

    without_token = browser.generic("POST", "/dicomweb/studies", body, content_type=CONTENT_TYPE)
    with_token = browser.generic(
        "POST",
        "/dicomweb/studies",
        body,
        content_type=CONTENT_TYPE,
        HTTP_X_CSRFTOKEN=browser.cookies["csrftoken"].value,
    )

    assert without_token.status_code == 403
    assert "CSRF" in without_token.json()["detail"]
    assert with_token.status_code == 200, with_token.content
    assert Instance.objects.count() == 1


def test_resent_instances_are_stored_once(client, token, study_files):
    body = multipart([path.read_bytes() for path in study_files])
    assert post(client, body, token=token).status_code == 200
    assert post(client, body, token=token).status_code == 200
    assert Instance.objects.count() == 3


def test_oversize_request_is_refused_with_413(client, token, study_files, settings):
    settings.STOW_MAX_REQUEST_BYTES = 10_000
    response = post(client, multipart([path.read_bytes() for path in study_files]), token=token)

    assert response.status_code == 413
    assert "exceeds" in response.json()["detail"]
    assert Instance.objects.count() == 0


def test_oversize_part_fails_alone(client, token, study_files, settings):
    settings.STOW_MAX_PART_BYTES = 1_000  # each synthetic slice is ~33 kB
    response = post(client, multipart([path.read_bytes() for path in study_files]), token=token)

    assert response.status_code == 409
    assert len(response.json()["00081198"]["Value"]) == 3


def test_unauthenticated_request_is_refused(client, study_files, db):
    response = post(client, multipart([study_files[0].read_bytes()]))

    assert response.status_code == 401
    assert Instance.objects.count() == 0


def test_clinician_may_not_store(client, users, study_files):
    clinician_token = Token.objects.create(user=users.clinician)

    response = post(client, multipart([study_files[0].read_bytes()]), token=clinician_token)

    assert response.status_code == 403
    assert "integration" in response.json()["detail"]


def test_wrong_media_type_is_refused(client, token):
    response = post(client, b"{}", token=token, content_type="application/json")

    assert response.status_code == 415


def test_body_without_boundary_is_a_bad_request(client, token):
    response = post(client, b"no parts at all", token=token)

    assert response.status_code == 400
    assert "boundary" in response.json()["detail"]


@pytest.fixture
def small_limit_server(transactional_db, tmp_path):
    """The production ASGI app under uvicorn, with a small request limit."""
    process, port = asgi_server_start(tmp_path, extra_env={"STOW_MAX_REQUEST_BYTES": "50000"})
    yield port
    process_stop(process)


def test_asgi_server_refuses_oversize_before_reading_the_body(small_limit_server, users):
    token = Token.objects.create(user=users.integration)
    connection = http.client.HTTPConnection("127.0.0.1", small_limit_server, timeout=10)
    connection.putrequest("POST", "/dicomweb/studies")
    connection.putheader("Content-Type", CONTENT_TYPE)
    connection.putheader("Content-Length", str(10 * 1024**3))  # 10 GiB announced, none sent
    connection.putheader("Authorization", f"Token {token.key}")
    connection.endheaders()

    response = connection.getresponse()

    assert response.status == 413
    assert b"exceeds" in response.read()


def test_asgi_server_stores_a_study(asgi_server, users, study_files):
    token = Token.objects.create(user=users.integration)
    body = multipart([path.read_bytes() for path in study_files[:1]])
    connection = http.client.HTTPConnection("127.0.0.1", asgi_server, timeout=10)

    connection.request(
        "POST",
        "/dicomweb/studies",
        body=body,
        headers={"Content-Type": CONTENT_TYPE, "Authorization": f"Token {token.key}"},
    )

    response = connection.getresponse()
    assert response.status == 200, response.read()
    assert Instance.objects.count() == 1
