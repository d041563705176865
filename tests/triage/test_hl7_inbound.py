"""HL7 in, on real processes: `manage.py hl7_listener` receiving from an HL7 sender in its own
process (tests/hl7_sender.py, python-hl7). Orders set a study's priority and location whether
they come before or after the images, ADT moves update the location shown, deadlines only move
earlier, and every bad message is answered AE / AR with its reason while the listener serves on."""

from __future__ import annotations

import json
import subprocess
import sys
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pydicom
import pytest
from django.db import connection

from tests.conftest import PASSWORD, ROOT, child_environment, free_port, wait_for_port
from tests.factories import ready_study
from tests.worklist.test_ingest_service import ingest_file
from triage.models import AuditEvent
from worklist.dicom.synthetic import StudySpec, write_study
from worklist.models import Hl7InboundMessage, Order, Study, WorklistItem
from worklist.services.studies import study_mark_ready_now


@dataclass
class Listener:
    port: int
    log: Path


def listener_start(tmp_path: Path, *, allowed: str = "127.0.0.1") -> Iterator[Listener]:
    port = free_port()
    log = tmp_path / "hl7-listener.log"
    env = {**child_environment(), "HL7_ALLOWED_PEERS": allowed}
    with open(log, "ab") as out:
        process = subprocess.Popen(
            [sys.executable, str(ROOT / "manage.py"), "hl7_listener", "--host", "127.0.0.1",
             "--port", str(port)],
            cwd=ROOT, env=env, stdout=out, stderr=subprocess.STDOUT,
        )  # fmt: skip
    try:
        wait_for_port(port, process=process)
        yield Listener(port=port, log=log)
    finally:
        process.terminate()
        process.wait(timeout=10)
        connection.close()


@pytest.fixture
def listener(transactional_db: None, tmp_path: Path) -> Iterator[Listener]:
    yield from listener_start(tmp_path)


def send(listener: Listener, tmp_path: Path, *messages: str | bytes) -> list[dict[str, str]]:
    """Send the messages in order over one connection from the sender process; its answers."""
    files = []
    for index, message in enumerate(messages):
        path = tmp_path / f"message-{len(list(tmp_path.glob('message-*')))}-{index}"
        if isinstance(message, bytes):
            path = path.with_suffix(".raw")
            path.write_bytes(message)
        else:
            path = path.with_suffix(".hl7")
            path.write_text(message)
        files.append(str(path))
    run = subprocess.run(
        [sys.executable, str(ROOT / "tests" / "hl7_sender.py"), "--port", str(listener.port),
         *files],
        capture_output=True, text=True, timeout=60,
    )  # fmt: skip
    assert run.returncode == 0, run.stderr
    return [json.loads(line) for line in run.stdout.splitlines()]


def orm(*, accession: str, mrn: str, priority: str = "S", location: str = "ED^RESUS^2",
        control: str = "NW", control_id: str = "ORM1") -> str:  # fmt: skip
    return "\n".join(
        [
            f"MSH|^~\\&|RIS|HOSP|ED_TRIAGE|HOSP|20261201120000||ORM^O01^ORM_O01|{control_id}|P|2.5",
            f"PID|1||{mrn}^^^HOSP^MR||Testperson^Alex||19700101|F",
            f"PV1|1|E|{location}",
            f"ORC|{control}|PLC{accession}",
            f"OBR|1|PLC{accession}|{accession}|CTHEAD^CT head without contrast|||||||||||"
            f"^Doctor^Ordering|||{accession}|||||||||^^^^^{priority}||||^Head injury, GCS 13",
        ]
    )


def adt(*, event: str, mrn: str, location: str, control_id: str = "ADT1") -> str:
    return "\n".join(
        [
            f"MSH|^~\\&|ADT|HOSP|ED_TRIAGE|HOSP|20261201120000||ADT^{event}^ADT_A01|{control_id}|P|2.5",
            f"EVN|{event}|20261201120000",
            f"PID|1||{mrn}^^^HOSP^MR||Testperson^Alex||19700101|F",
            f"PV1|1|E|{location}",
        ]
    )


def study_arrives(tmp_path: Path, *, accession: str, mrn: str) -> Study:
    """A CT study whose tags say routine, ward 5 (the image tags' defaults the order beats)."""
    paths = write_study(StudySpec(slices=2, location="WARD 5"), seed=11, out_dir=tmp_path / "ct")
    for path in paths:
        ds = pydicom.dcmread(path)
        ds.AccessionNumber, ds.PatientID, ds.IssuerOfPatientID = accession, mrn, "HOSP"
        ds.RequestedProcedurePriority = "ROUTINE"
        ds.save_as(path)
    results = [ingest_file(path) for path in paths]
    assert all(result.status == 0 for result in results)
    study = Study.objects.get(pk=results[0].study_id)
    study_mark_ready_now(study_id=study.pk)
    return study


def test_an_order_before_its_images_sets_priority_and_location_and_awaits_images(
    listener, tmp_path, users, client
):
    [answer] = send(listener, tmp_path, orm(accession="ACC7001", mrn="MRN7001"))
    assert answer == {"code": "AA", "control_id": "ORM1", "text": ""}
    order = Order.objects.get(accession_number="ACC7001")
    assert (order.priority, order.patient_location, order.procedure) == (
        "STAT", "ED-RESUS-2", "CT head without contrast",
    )  # fmt: skip
    assert order.reason == "Head injury, GCS 13"
    client.login(username=users.radiologist.username, password=PASSWORD)
    awaiting = client.get("/api/worklist/awaiting-images/").json()
    assert [row["accession_number"] for row in awaiting["results"]] == ["ACC7001"]
    page = client.get("/worklist/?status=awaiting_images").content.decode()
    assert 'data-accession="ACC7001"' in page and "Awaiting images (1)" in page

    study = study_arrives(tmp_path, accession="ACC7001", mrn="MRN7001")
    assert (study.order_priority, study.patient_location, study.is_emergency) == (
        "STAT", "ED-RESUS-2", True,
    )  # fmt: skip
    assert Order.objects.get(accession_number="ACC7001").study_id == study.pk
    assert client.get("/api/worklist/awaiting-images/").json()["results"] == []


def test_an_omi_order_takes_its_accession_from_ipc_and_its_priority_from_tq1(listener, tmp_path):
    omi = "\n".join(
        [
            "MSH|^~\\&|RIS|HOSP|ED_TRIAGE|HOSP|20261201120000||OMI^O23^OMI_O23|OMI1|P|2.5",
            "PID|1||MRN7010^^^HOSP^MR||Testperson^Sam||19600101|M",
            "PV1|1|E|ED^RESUS^4",
            "ORC|NW|PLC9",
            "TQ1|1||||||||A",
            "OBR|1|PLC9||CTPA^CT pulmonary angiogram",
            "IPC|ACC7010|REQ1|1.2.3.4.5|SPS1|CT",
        ]
    )
    [answer] = send(listener, tmp_path, omi)
    assert answer["code"] == "AA", answer
    order = Order.objects.get()
    assert (order.accession_number, order.priority, order.patient_location) == (
        "ACC7010", "HIGH", "ED-RESUS-4",
    )  # fmt: skip


def test_an_order_after_its_images_brings_the_deadline_earlier_never_later(listener, tmp_path):
    item = ready_study(priority="ROUTINE", location="WARD 5")
    routine_deadline = item.read_by
    study = item.study
    mrn = study.patient.patient_id
    study.patient.issuer = "HOSP"
    study.patient.save()
    [answer] = send(listener, tmp_path, orm(accession=study.accession_number, mrn=mrn))
    assert answer["code"] == "AA"
    item.refresh_from_db()
    study.refresh_from_db()
    assert (study.order_priority, study.patient_location) == ("STAT", "ED-RESUS-2")
    assert item.read_by < routine_deadline
    stat_deadline = item.read_by
    [answer] = send(
        listener, tmp_path,
        orm(accession=study.accession_number, mrn=mrn, priority="R", control="XO", control_id="O2"),
    )  # fmt: skip
    assert answer["code"] == "AA"
    item.refresh_from_db()
    assert item.read_by == stat_deadline  # a later event never pushes the deadline back


def test_an_adt_move_updates_the_location_shown(listener, tmp_path, users, client):
    study = study_arrives(tmp_path, accession="ACC7002", mrn="MRN7002")
    assert study.patient_location == "WARD 5"
    [answer] = send(listener, tmp_path, adt(event="A02", mrn="MRN7002", location="ED^MAJORS^3"))
    assert answer["code"] == "AA"
    study.refresh_from_db()
    assert (study.patient_location, study.is_emergency) == ("ED-MAJORS-3", True)
    client.login(username=users.radiologist.username, password=PASSWORD)
    rows = client.get("/api/worklist/").json()["results"]
    assert [row["patient_location"] for row in rows if row["study_id"] == study.pk] == [
        "ED-MAJORS-3"
    ]
    [answer] = send(listener, tmp_path, adt(event="A03", mrn="MRN7002", location=""))
    assert answer["code"] == "AA"  # discharged: stored, and the study keeps where it was read


def test_bad_messages_get_ae_or_ar_with_the_reason_and_the_listener_serves_on(listener, tmp_path):
    answers = send(
        listener,
        tmp_path,
        "this is not HL7 at all",
        orm(accession="", mrn="MRN7003", control_id="NOACC"),
        adt(event="A02", mrn="", location="ED", control_id="NOPID"),
        "MSH|^~\\&|RIS|H|ED_TRIAGE|H|20261201||SIU^S12^SIU_S12|SIU1|P|2.5\nPID|1||X",
        b"no framing at all\x1c\r",
        "x" * 1_100_000,
        adt(event="A01", mrn="MRN7003", location="ED^RESUS^1", control_id="GOOD"),
    )
    codes = [(answer["code"], answer.get("control_id")) for answer in answers]
    assert codes == [
        ("AR", ""), ("AE", "NOACC"), ("AE", "NOPID"), ("AE", "SIU1"), ("AR", ""), ("AR", ""),
        ("AA", "GOOD"),
    ]  # fmt: skip
    reasons = [answer["text"] for answer in answers]
    assert "no MSH segment" in reasons[0]
    assert reasons[1] == "the order carries no accession number"
    assert reasons[2] == "PID-3 carries no patient identifier"
    assert "SIU S12 is not handled" in reasons[3]  # delimiters in a reason are spaced
    assert "<VT>" in reasons[4] and "over" in reasons[5]
    stored = list(Hl7InboundMessage.objects.order_by("pk").values_list("ack_code", flat=True))
    assert stored == ["AR", "AE", "AE", "AE", "AA"]  # broken frames never became a message
    assert not Order.objects.exists()
    log = listener.log.read_text()
    assert "MRN7003" not in log and "Testperson" not in log  # no PHI in the listener's log


def test_an_oversized_frame_is_skipped_to_its_end_and_the_next_is_read(listener, tmp_path):
    answers = send(
        listener,
        tmp_path,
        b"\x0b" + b"x" * 4_500_000 + b"\x1c\r",
        adt(event="A01", mrn="MRN7005", location="ED", control_id="AFTER"),
    )
    assert answers[0]["code"] == "AR" and "over" in answers[0]["text"]
    assert answers[1:] == [{"code": "AA", "control_id": "AFTER", "text": ""}]


def test_a_peer_not_on_the_allowed_list_is_closed_and_audited(transactional_db, tmp_path):
    for listener in listener_start(tmp_path, allowed="127.0.0.9"):
        answers = send(listener, tmp_path, adt(event="A01", mrn="MRN7004", location="ED"))
        assert answers == [{"code": None}]
    assert not Hl7InboundMessage.objects.exists()
    assert AuditEvent.objects.filter(action="hl7.peer_refused", remote_addr="127.0.0.1").exists()
    assert not WorklistItem.objects.exists()
