"""Results out, on real peers: a flagged study's SC preview and TID 1500 SR reach Orthanc (by
C-STORE and by STOW-RS) under the source study and pass dciodvfy; its ORU reaches an HL7 peer
in its own process; with the PACS down or the RIS silent the messages wait and are delivered
once when the peer is back; refusals and unbuildable messages are visible failures."""

from __future__ import annotations

import threading
import time
from collections.abc import Iterator
from datetime import UTC, datetime
from pathlib import Path

import hl7
import numpy as np
import pydicom
import pytest
from django.db import transaction
from django.utils import timezone

from inference.models import InferenceRun
from inference.phantoms import phantom_generate, phantom_write
from inference.pipeline import heat_map_png
from tests.conftest import ARTIFACTS, PASSWORD, periodic_duties_start
from tests.factories import ready_study
from tests.interfaces import Hl7Peer, Orthanc, dciodvfy_errors
from tests.worklist.test_dicom_listener import wait_until
from tests.worklist.test_ingest_service import ingest_file
from triage.arrivals import study_ready_now
from triage.feedback import feedback_record
from triage.findings import Finding
from triage.models import AuditEvent, OutboundDestination, OutboundMessage
from triage.outbound.dicom_objects import (
    secondary_capture_build,
    source_header,
    structured_report_build,
)
from triage.outbound.hl7_messages import PatientFacts, ack_read, oru_build
from triage.outbound.result import ResultFacts
from triage.outbound.services import (
    destinations_seed,
    outbound_message_send,
    outbound_messages_send_due,
    outbound_results_enqueue,
)
from worklist.dicom.synthetic import StudySpec, write_study
from worklist.models import Instance, Series, Study

ICH_POSITIVE_SEED = 9_100_001  # held out; the demonstration ICH model flags it (see e2e test)
State = OutboundMessage.State


@pytest.fixture
def orthanc(tmp_path: Path) -> Iterator[Orthanc]:
    pacs = Orthanc(folder=tmp_path / "orthanc")
    pacs.start()
    yield pacs
    pacs.stop()


@pytest.fixture
def duties(tmp_path: Path) -> Iterator[None]:
    """The periodic duties beside the worker: they send due retries (as beat does)."""
    with open(tmp_path / "duties.log", "ab") as log:
        process = periodic_duties_start(log)
    yield
    process.terminate()
    process.wait(timeout=10)


def flagged_study_arrive(out: Path) -> Study:
    """An ICH-positive phantom ingested as the listener would, then made ready: the worker
    routes it, runs the model and records the (flagged) result with its outbox."""
    phantom = phantom_generate(
        Finding.INTRACRANIAL_HEMORRHAGE, positive=True, seed=ICH_POSITIVE_SEED
    )
    paths = [p for p in phantom_write(phantom, out_dir=out, seed=ICH_POSITIVE_SEED)]
    results = [ingest_file(path) for path in paths if path.suffix == ".dcm"]
    assert results and all(result.status == 0 for result in results)
    study_id = results[0].study_id
    assert study_id is not None
    study_ready_now(study_id=study_id)
    return Study.objects.get(pk=study_id)


def messages_settled(study: Study, *, count: int) -> list[OutboundMessage]:
    messages = list(OutboundMessage.objects.filter(study=study).order_by("kind"))
    done = len(messages) == count and all(m.state != State.WAITING for m in messages)
    return messages if done else []


def dicom_destination(pacs: Orthanc, **extra: object) -> OutboundDestination:
    return OutboundDestination.objects.create(
        name=f"pacs {pacs.dicom_port}",
        kind=OutboundDestination.Kind.DICOM,
        ae_title=pacs.ae_title,
        host="127.0.0.1",
        port=pacs.dicom_port,
        **extra,
    )


def hl7_destination(peer: Hl7Peer) -> OutboundDestination:
    return OutboundDestination.objects.create(
        name=f"ris {peer.port}", kind=OutboundDestination.Kind.HL7, host="127.0.0.1", port=peer.port
    )


def ours_in_pacs(pacs: Orthanc, study: Study) -> dict[str, dict[str, str]]:
    """The instances we made, as Orthanc indexed them under the source study: modality -> tags."""
    found = pacs.instances_of_study(study.study_instance_uid)
    ours = {}
    for instance in found:
        series = pacs.get(f"/instances/{instance['ID']}/series")
        modality = series["MainDicomTags"].get("Modality")
        if modality in ("OT", "SR"):
            assert modality not in ours, f"two {modality} objects for one result"
            ours[modality] = {"id": instance["ID"], **instance["MainDicomTags"]}
    return ours


def test_flagged_result_reaches_pacs_as_preview_and_report_under_its_study(
    transactional_db, celery_worker, tmp_path, orthanc
):
    by_stow = Orthanc(folder=tmp_path / "orthanc-stow")
    by_stow.start()
    try:
        dicom_destination(orthanc)
        OutboundDestination.objects.create(
            name="stow",
            kind=OutboundDestination.Kind.STOW,
            url=f"http://127.0.0.1:{by_stow.http_port}/dicom-web",
        )
        study = flagged_study_arrive(tmp_path / "phantom")
        messages = wait_until(lambda: messages_settled(study, count=4), timeout=90)
        assert {(m.kind, m.state) for m in messages} == {("sc", "delivered"), ("sr", "delivered")}
        for pacs in (orthanc, by_stow):
            ours = ours_in_pacs(pacs, study)
            assert set(ours) == {"OT", "SR"}
            sc = pydicom.dcmread(pacs.instance_file(ours["OT"]["id"], tmp_path / "sc.dcm"))
            sr = pydicom.dcmread(pacs.instance_file(ours["SR"]["id"], tmp_path / "sr.dcm"))
            for path in (tmp_path / "sc.dcm", tmp_path / "sr.dcm"):
                assert dciodvfy_errors(path) == []
            source = study.series.get().instances.first()
            assert source is not None
            # Patient and study modules copied from the source; new series of our own.
            assert sc.PatientID == sr.PatientID == study.patient.patient_id
            assert sc.StudyInstanceUID == sr.StudyInstanceUID == study.study_instance_uid
            assert sc.AccessionNumber == study.accession_number
            assert sc.SeriesInstanceUID != sr.SeriesInstanceUID != source.series.series_instance_uid
            # "Not for diagnosis", the finding, the model and the demonstration notice, in tags.
            assert sc.BurnedInAnnotation == "YES"
            assert "NOT FOR DIAGNOSIS" in sc.ImageComments
            assert "Intracranial hemorrhage: suspected" in sc.ImageComments
            assert "demonstration model trained on synthetic phantoms" in sc.ImageComments
            run = InferenceRun.objects.get(study=study, flagged=True)
            assert run.model_name in sc.ImageComments and run.model_version in sc.ImageComments
            # The burned-in banner is there: the top rows are not the heat map's.
            assert sc.pixel_array[:40].mean() < sc.pixel_array[60:].mean()
            report = sr_text(sr)
            assert "1386000" in report and "415684004" in report  # ICH, suspected (SNOMED CT)
            assert run.score is not None
            assert sr_numbers(sr) == [pytest.approx(run.score, abs=1e-6)]  # the score
            assert run.model_name in report and "demonstration" in report
            references = sr_references(sr)
            assert sc.SOPInstanceUID in references and run.key_instance is not None
            assert run.key_instance.sop_instance_uid in references
    finally:
        by_stow.stop()


def sr_text(sr: pydicom.Dataset) -> str:
    """Every value in the report's content tree, as text."""
    return " ".join(str(element.value) for element in sr.iterall() if element.VR != "SQ")


def sr_numbers(sr: pydicom.Dataset) -> list[float]:
    """Every numeric value in the report's content tree."""
    found: list[float] = []

    def walk(items: pydicom.Sequence) -> None:
        for item in items:
            for measured in item.get("MeasuredValueSequence", []):
                found.append(float(measured.NumericValue))
            walk(item.get("ContentSequence", []))

    walk(sr.ContentSequence)
    return found


def sr_references(sr: pydicom.Dataset) -> set[str]:
    found = set()
    for study in sr.CurrentRequestedProcedureEvidenceSequence:
        for series in study.ReferencedSeriesSequence:
            found |= {item.ReferencedSOPInstanceUID for item in series.ReferencedSOPSequence}
    return found


def test_pacs_down_messages_wait_and_are_delivered_once_when_it_is_back(
    transactional_db, celery_worker, duties, tmp_path, orthanc
):
    dicom_destination(orthanc)
    orthanc.stop()
    study = flagged_study_arrive(tmp_path / "phantom")
    waiting = wait_until(
        lambda: [
            m
            for m in OutboundMessage.objects.filter(study=study, attempts__gte=2)
            if m.state == State.WAITING and "no association" in m.last_error
        ],
        timeout=90,
    )
    assert len(waiting) >= 1  # tried, failed, tried again: waiting, with the reason shown
    orthanc.start()
    messages = wait_until(lambda: messages_settled(study, count=2), timeout=60)
    assert {m.state for m in messages} == {State.DELIVERED}
    assert set(ours_in_pacs(orthanc, study)) == {"OT", "SR"}
    # Sent again (say a worker died after the PACS stored it): replaced, not duplicated.
    OutboundMessage.objects.filter(study=study).update(state=State.WAITING, lease_until=None)
    for message in messages:
        outbound_message_send(message_id=message.pk)
    wait_until(lambda: messages_settled(study, count=2))
    held = Instance.objects.filter(series__study=study).count()
    assert len(orthanc.instances_of_study(study.study_instance_uid)) == 2  # ours only
    assert held > 2


def field(message: hl7.Message, segment: str, index: int, occurrence: int = 0) -> str:
    return str(message.segments(segment)[occurrence](index))


def test_oru_reaches_the_ris_and_a_dismissal_sends_a_correction(
    transactional_db, celery_worker, tmp_path, users
):
    peer = Hl7Peer(folder=tmp_path / "ris")
    peer.start()
    try:
        hl7_destination(peer)
        study = flagged_study_arrive(tmp_path / "phantom")
        wait_until(lambda: messages_settled(study, count=1), timeout=90)
        [received] = peer.received()
        oru = hl7.parse(received["message"])
        assert field(oru, "MSH", 9) == "ORU^R01^ORU_R01"
        assert field(oru, "PID", 3).startswith(study.patient.patient_id)
        assert field(oru, "OBR", 3) == study.accession_number
        assert field(oru, "OBR", 25) == "P"
        assert field(oru, "OBX", 3, 0) == "1386000^Intracranial hemorrhage^SCT"
        assert field(oru, "OBX", 5, 0) == "415684004^Suspected^SCT"
        assert field(oru, "OBX", 11, 0) == "P"
        assert "demonstration model" in field(oru, "OBX", 5, 2)
        feedback_record(
            study_id=study.pk,
            finding="intracranial_hemorrhage",
            user=users.radiologist,
            verdict="false_positive",
            reason="artefact",
        )
        messages = wait_until(lambda: messages_settled(study, count=2), timeout=30)
        assert {(m.result_status, m.state) for m in messages} == {
            ("P", "delivered"),
            ("C", "delivered"),
        }
        first, correction = (hl7.parse(item["message"]) for item in peer.received())
        assert field(correction, "MSH", 10) != field(first, "MSH", 10)
        assert field(correction, "OBR", 25) == "C"
        assert field(correction, "OBX", 5, 0) == "260415000^Not detected^SCT"
        assert field(correction, "OBX", 11, 0) == "C"
    finally:
        peer.stop()


def test_ris_error_is_a_visible_failure_an_administrator_resends(
    transactional_db, celery_worker, tmp_path, users, client
):
    peer = Hl7Peer(folder=tmp_path / "ris", answer="ae")
    peer.start()
    try:
        destination = hl7_destination(peer)
        study = flagged_study_arrive(tmp_path / "phantom")
        [message] = wait_until(lambda: messages_settled(study, count=1), timeout=90)
        assert message.state == State.FAILED
        assert message.last_error == "the receiver answered AE: Unknown patient at this RIS"
        # A peer's words may quote a patient: on the row and the page, never in the worker's log.
        assert "Unknown patient" not in (ARTIFACTS / "celery-worker.log").read_text()
        client.login(username=users.administrator.username, password=PASSWORD)
        page = client.get("/manage/outbound/").content.decode()
        assert destination.name in page and "Unknown patient at this RIS" in page
        assert f'data-message="{message.pk}"' in page
        assert study.patient.name not in page and study.patient.patient_id not in page
        peer.stop()
        peer.answer = "aa"
        peer.start()
        response = client.post("/manage/outbound/", {"action": "resend", "message": message.pk})
        assert response.status_code == 302
        assert AuditEvent.objects.filter(
            action="outbound.resend", actor=users.administrator
        ).exists()
        [message] = wait_until(
            lambda: [m for m in messages_settled(study, count=1) if m.state == State.DELIVERED]
        )
        assert [item["answer"] for item in peer.received()] == ["ae", "aa"]
    finally:
        peer.stop()


def test_silent_ris_is_retried_until_it_answers_and_gets_the_message_once(
    transactional_db, celery_worker, duties, tmp_path
):
    peer = Hl7Peer(folder=tmp_path / "ris", answer="silent")
    peer.start()
    try:
        hl7_destination(peer)
        study = flagged_study_arrive(tmp_path / "phantom")
        wait_until(
            lambda: OutboundMessage.objects.filter(
                study=study, state=State.WAITING, last_error__startswith="no ACK"
            ).exists(),
            timeout=90,
        )
        peer.stop()
        peer.answer = "aa"
        peer.start()
        [message] = wait_until(lambda: messages_settled(study, count=1), timeout=30)
        assert message.state == State.DELIVERED
        answered = [item for item in peer.received() if item["answer"] == "aa"]
        assert len(answered) == 1
        assert {item["control_id"] for item in peer.received()} == {message.reference}
    finally:
        peer.stop()


def test_a_send_slower_than_its_lease_is_not_sent_again_meanwhile(
    transactional_db, settings, tmp_path, monkeypatch
):
    """The RIS answers after 2.5 s, the lease is 1 s: it is renewed while the send waits, so the
    duties (another worker's view) never find the message due, and the RIS gets it once. This
    test is the worker: the message's task is not queued (a Celery worker of another test, with
    its own settings, would otherwise take it)."""
    monkeypatch.setattr("triage.outbound.services._send_after_commit", lambda message_id: None)
    settings.OUTBOUND_LEASE_SECONDS = 1.0
    settings.OUTBOUND_ANSWER_SECONDS = 10.0
    peer = Hl7Peer(folder=tmp_path / "ris", delay=2.5)
    peer.start()
    try:
        hl7_destination(peer)
        item = ready_study()
        series = Series.objects.create(series_instance_uid="1.2.3.4.6", study=item.study)
        run = InferenceRun.objects.create(
            study=item.study, finding="intracranial_hemorrhage", model_name="ich",
            model_version="1", model_sha256="0" * 64, series=series, series_set="x",
            state="complete",
            score=0.9, threshold=0.5, flagged=True, queued_at=timezone.now(),
        )  # fmt: skip
        with transaction.atomic():
            assert outbound_results_enqueue(run=run) == 1
        [message] = OutboundMessage.objects.filter(run=run)
        found_due: list[int] = []
        sender = threading.Thread(target=outbound_message_send, kwargs={"message_id": message.pk})
        sender.start()
        while sender.is_alive():  # as the periodic duties would, every 0.2 s
            found_due += outbound_messages_send_due()
            time.sleep(0.2)
        sender.join()

        assert found_due == []
        message.refresh_from_db()
        assert message.state == State.DELIVERED and message.attempts == 1
        assert len(peer.received()) == 1
    finally:
        peer.stop()


def test_a_message_that_cannot_be_built_is_a_visible_failure(transactional_db, tmp_path):
    item = ready_study()
    series = Series.objects.create(series_instance_uid="1.2.3.4.5", study=item.study)
    key = Instance.objects.create(
        sop_instance_uid="1.2.3.4.5.6",
        sop_class_uid="1.2.840.10008.5.1.4.1.1.2",
        series=series,
        transfer_syntax_uid="1.2.840.10008.1.2.1",
        relative_path="studies/1.2.3/1.2.3.4.5/1.2.3.4.5.6.dcm",  # never written
        size_bytes=0,
        source="dicom",
        received_at=timezone.now(),
    )
    run = InferenceRun.objects.create(
        study=item.study, finding="intracranial_hemorrhage", model_name="ich", model_version="1",
        model_sha256="0" * 64, series=series, series_set="x", state="complete", score=0.9,
        threshold=0.5, flagged=True, key_instance=key, queued_at=timezone.now(),
    )  # fmt: skip
    OutboundDestination.objects.create(
        name="pacs", kind="dicom", ae_title="PACS", host="127.0.0.1", port=9
    )
    with transaction.atomic():
        assert outbound_results_enqueue(run=run) == 2
    for message in OutboundMessage.objects.filter(run=run):
        outbound_message_send(message_id=message.pk)  # a running worker may race: same end
    failed = wait_until(
        lambda: [m for m in OutboundMessage.objects.filter(run=run) if m.state == State.FAILED]
    )
    assert {m.last_error for m in failed} == {"the key image cannot be read: FileNotFoundError"}
    assert len(failed) == 2


def test_the_environment_seeds_destinations_and_names_a_bad_entry(db, settings):
    settings.OUTBOUND_DICOM = ["PACS@pacs.hospital.example:104"]
    settings.OUTBOUND_STOW = ["https://pacs.hospital.example/dicom-web"]
    settings.OUTBOUND_STOW_TOKEN = "secret"
    settings.OUTBOUND_HL7 = ["ris.hospital.example:2575"]
    first = destinations_seed()
    again = destinations_seed()
    assert [d.pk for d in first] == [d.pk for d in again]
    by_kind = {d.kind: d for d in OutboundDestination.objects.all()}
    assert (by_kind["dicom"].ae_title, by_kind["dicom"].port) == ("PACS", 104)
    assert by_kind["stow"].token == "secret"
    assert (by_kind["hl7"].host, by_kind["hl7"].port) == ("ris.hospital.example", 2575)
    # The PACS moved to TLS: the plain destination stops sending, the TLS one is new.
    settings.OUTBOUND_DICOM = ["tls:PACS@pacs.hospital.example:2762"]
    destinations_seed()
    dicom = OutboundDestination.objects.filter(kind="dicom")
    assert {(d.port, d.tls, d.active) for d in dicom} == {(104, False, False), (2762, True, True)}
    settings.OUTBOUND_HL7 = ["ris.hospital.example"]
    with pytest.raises(ValueError, match="ris.hospital.example"):
        destinations_seed()


# ------------------------------------------------------------ builders on their own


def facts(**changes: object) -> ResultFacts:
    values: dict[str, object] = {
        "run_id": 1, "study_instance_uid": "1.2.3", "series_set": "s", "finding": "pneumothorax",
        "finding_label": "Pneumothorax", "flagged": True, "score": 0.97,
        "model_name": "ptx-demo", "model_version": "1.0.0", "demonstration": True,
    }  # fmt: skip
    values.update(changes)
    return ResultFacts(**values)  # type: ignore[arg-type]


@pytest.mark.parametrize("modality", ["CT", "CR"])
def test_objects_for_unflagged_and_radiograph_results_pass_dciodvfy(tmp_path, modality):
    [path] = write_study(StudySpec(modality=modality, slices=1), seed=3, out_dir=tmp_path)
    source = source_header(pydicom.dcmread(path))
    result = facts(study_instance_uid=source.StudyInstanceUID)
    png = heat_map_png(np.full((64, 64), 0.5), np.eye(8))
    sc = secondary_capture_build(source=source, heat_map_png=png, facts=result)
    flagged = structured_report_build(source=source, preview=sc.dataset, facts=result)
    unflagged = structured_report_build(source=source, preview=None, facts=facts(flagged=False))
    for name, built in (("sc", sc), ("sr", flagged), ("sr-unflagged", unflagged)):
        built.dataset.save_as(tmp_path / f"{name}.dcm", enforce_file_format=True)
        assert dciodvfy_errors(tmp_path / f"{name}.dcm") == [], name
    assert "260415000" in sr_text(unflagged.dataset)  # not detected
    # Deterministic: the same result gives the same UIDs (a re-send replaces).
    assert (
        secondary_capture_build(source=source, heat_map_png=png, facts=result).sop_instance_uid
        == sc.sop_instance_uid
    )


def test_oru_escapes_what_a_sender_put_in_the_names():
    message = oru_build(
        control_id="EDT7P",
        facts=facts(),
        patient=PatientFacts(
            patient_id="MRN|7^x",
            issuer="H",
            name="O'Brien&Co^Ann~Marie",
            birth_date="19800101",
            sex="F",
        ),  # fmt: skip
        accession_number="ACC\r7",
        study_description="CT|CHEST",
        observed_at=datetime(2026, 12, 1, tzinfo=UTC),
    )
    parsed = hl7.parse(message)
    assert len(parsed.segments("OBX")) == 3 and len(parsed.segments("PID")) == 1
    assert str(parsed.segment("PID")(3)).startswith("MRN\\F\\7\\S\\x")
    assert str(parsed.segment("OBR")(3)) == "ACC 7"


def test_ack_reading():
    ack = ack_read("MSH|^~\\&|RIS||ED_TRIAGE||20261201||ACK^R01^ACK|9|P|2.5\rMSA|AR|EDT1P|no")
    assert (ack.code, ack.control_id, ack.text, ack.accepted) == ("AR", "EDT1P", "no", False)
    with pytest.raises(ValueError):
        ack_read("this is not HL7")


def test_results_out_page_is_for_administrators_and_checks_what_it_is_given(db, users, client):
    client.login(username=users.radiologist.username, password=PASSWORD)
    assert client.get("/manage/outbound/").status_code == 403
    client.login(username=users.administrator.username, password=PASSWORD)
    empty = client.get("/manage/outbound/").content.decode()
    assert "No destination is configured" in empty
    bad = client.post(
        "/manage/outbound/",
        {"action": "add", "name": "pacs", "kind": "dicom", "host": "127.0.0.1", "port": "104",
         "ae_title": "BAD\\TITLE"},
    )  # fmt: skip
    assert bad.status_code == 400 and b"AE title" in bad.content
    assert not OutboundDestination.objects.exists()
    added = client.post(
        "/manage/outbound/",
        {"action": "add", "name": "pacs", "kind": "dicom", "host": "127.0.0.1", "port": "104",
         "ae_title": "PACS", "findings": ["pneumothorax"]},
    )  # fmt: skip
    assert added.status_code == 302
    destination = OutboundDestination.objects.get()
    assert destination.findings == ["pneumothorax"]
    client.post("/manage/outbound/", {"action": "pause", "destination": destination.pk})
    destination.refresh_from_db()
    assert not destination.active
    actions = set(AuditEvent.objects.values_list("action", flat=True))
    assert {"outbound.destination_add", "outbound.destination_pause"} <= actions
    assert client.post("/manage/outbound/", {"action": "resend", "message": "x"}).status_code == 302
