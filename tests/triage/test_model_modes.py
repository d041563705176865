"""Shadow mode and switching models off, as an administrator uses them: a model in shadow mode
runs on a real worker and its result is stored for administrators only (no flag, no deadline
change, no alert, nothing sent out, nothing on the readers' worklist); leaving shadow mode makes
the next study flag as usual; off means not run; every change needs an administrator and a
reason, and is audited."""

from __future__ import annotations

from pathlib import Path

import pytest
from django.urls import reverse

from inference.models import InferenceRun
from inference.registry import registry_current
from tests.factories import flagged_head_ct_files
from tests.worklist.test_dicom_listener import wait_until
from tests.worklist.test_ingest_service import ingest_file
from triage.arrivals import study_ready_now
from triage.model_modes import ModelModeRefused, model_mode_set, model_modes_for
from triage.models import Alert, AuditEvent, ModelMode, OutboundDestination, OutboundMessage
from triage.workflow import study_triage_run
from worklist.models import Study, WorklistItem
from worklist.services.studies import study_mark_ready_now

ICH = "intracranial_hemorrhage-demo"


def _ingested(folder: Path, *, copy: int, location: str | None = None) -> int:
    """The flagged head CT phantom as a new ED study, ingested as the listener would."""
    _, paths = flagged_head_ct_files(folder, copy=copy, location=location)
    results = [ingest_file(path) for path in paths]
    assert all(result.status == 0 for result in results)
    study_id = results[0].study_id
    assert study_id is not None
    return study_id


def _arrive(folder: Path, *, copy: int) -> Study:
    """... and made ready: the worker routes and scores it."""
    study_id = _ingested(folder, copy=copy)
    study_ready_now(study_id=study_id)
    return Study.objects.get(pk=study_id)


def _finished(study: Study, **lookup: object) -> InferenceRun | None:
    return InferenceRun.objects.filter(
        study=study, state=InferenceRun.State.COMPLETE, **lookup
    ).first()


def test_a_shadow_model_runs_and_shows_only_to_administrators_then_goes_live(
    transactional_db, celery_worker, users, client, tmp_path
):
    OutboundDestination.objects.create(
        name="ris", kind=OutboundDestination.Kind.HL7, host="127.0.0.1", port=9
    )  # a destination: a live flag would write a message for it
    model_mode_set(model_name=ICH, mode="shadow", user=users.administrator,
                   reason="trial on our scanners first")  # fmt: skip

    study = _arrive(tmp_path / "first", copy=1)
    run = wait_until(lambda: _finished(study, shadow=True), timeout=90)

    # Stored: the score and the flag it would have raised, for the administrators.
    assert run.flagged is True and run.threshold is not None and not run.current
    study.refresh_from_db()
    item = WorklistItem.objects.get(study=study)
    # Nothing else happened: no alert, no result out, no flag, no deadline moved forward.
    assert Alert.objects.filter(study=study).count() == 0
    assert OutboundMessage.objects.filter(study=study).count() == 0
    assert study.ai_state == Study.AIState.NOT_ELIGIBLE  # no live model applies
    client.force_login(users.radiologist)
    row = next(r for r in client.get("/api/worklist/").json()["results"] if r["id"] == item.pk)
    assert row["findings"] == []
    page = client.get("/worklist/").content.decode()
    label = registry_current().models[ICH].label  # "intracranial_hemorrhage-demo 1.1.0"
    assert 'id="shadow-notice"' in page and label in page
    # Nor through the heat-map API or the preview viewer (run ids are sequential).
    heatmap = reverse("worklist-api:api-heatmap", args=[study.pk, run.pk])
    assert client.get(heatmap).status_code == 404
    preview = client.get(reverse("worklist:preview", args=[study.pk]))
    assert preview.status_code == 200
    assert f"/runs/{run.pk}/" not in preview.content.decode()  # no heat map of it, no scores
    client.force_login(users.administrator)
    assert client.get(heatmap).status_code == 200  # administrators see the shadow result
    models_page = client.get("/manage/models/").content.decode()
    assert f'data-run="{run.pk}"' in models_page
    assert '<td class="would-flag">yes</td>' in models_page

    # Leaving shadow mode, with a reason: the next study flags and alerts as usual.
    response = client.post(
        "/manage/models/", {"model": ICH, "mode": "live", "reason": "trial reviewed: go live"}
    )
    assert response.status_code == 302
    second = _arrive(tmp_path / "second", copy=2)
    live = wait_until(lambda: _finished(second, current=True), timeout=90)
    assert live.flagged and not live.shadow
    assert Alert.objects.filter(study=second).count() == 1
    assert read_by_moved_forward(second, than=item)
    changes = AuditEvent.objects.filter(action="model.mode").order_by("at")
    assert [(e.detail["from"], e.detail["to"], e.detail["reason"]) for e in changes] == [
        ("live", "shadow", "trial on our scanners first"),
        ("shadow", "live", "trial reviewed: go live"),
    ]
    assert changes[1].actor == users.administrator


def read_by_moved_forward(study: Study, *, than: WorklistItem) -> bool:
    """The flagged study's read-by deadline is sooner after arrival than the shadow one's."""
    item = WorklistItem.objects.get(study=study)
    return (item.read_by - study.first_received_at) < (than.read_by - than.study.first_received_at)


def test_a_model_switched_off_for_a_location_is_not_run_there(db, users, tmp_path):
    """Routed in this test (no worker: in `db` tests nothing is queued after commit)."""
    model_mode_set(model_name=ICH, mode="off", user=users.administrator,
                   reason="scanner upgrade in resus", location_prefix="ED-RESUS")  # fmt: skip
    resus = _ingested(tmp_path / "resus", copy=1, location="ED-RESUS-1")
    majors = _ingested(tmp_path / "majors", copy=2, location="ED-RESUSCITATION")
    for study_id in (resus, majors):
        study_mark_ready_now(study_id=study_id)

    assert study_triage_run(study_id=resus) == []
    assert len(study_triage_run(study_id=majors)) == 1  # the same study elsewhere: run

    assert not InferenceRun.objects.filter(study_id=resus).exists()
    assert InferenceRun.objects.get(study_id=majors).model_name == ICH
    assert Study.objects.get(pk=resus).ai_state == Study.AIState.NOT_ELIGIBLE
    assert model_modes_for(location="ED-RESUS-1")[ICH] == "off"
    assert model_modes_for(location="ED-RESUSCITATION")[ICH] == "live"  # exact, not a prefix


@pytest.mark.parametrize(
    ("who", "changes", "refusal"),
    [
        ("radiologist", {}, "Only administrators"),
        ("administrator", {"reason": "  "}, "Say why"),
        ("administrator", {"model_name": "no-such-model"}, "No such model"),
        ("administrator", {"mode": "loud"}, "live, shadow or off"),
        ("administrator", {"location_prefix": "X" * 65}, "at most 64"),
    ],
)
def test_a_mode_change_is_refused_with_its_reason(db, users, who, changes, refusal):
    arguments = {"model_name": ICH, "mode": "shadow", "reason": "trial",
                 "location_prefix": "", **changes}  # fmt: skip
    with pytest.raises(ModelModeRefused, match=refusal):
        model_mode_set(user=getattr(users, who), **arguments)
    assert not ModelMode.objects.exists()
    assert not AuditEvent.objects.filter(action="model.mode").exists()


def test_the_models_page_lists_every_model_and_names_a_refusal(db, users, client):
    client.force_login(users.administrator)

    page = client.get("/manage/models/").content.decode()
    refused = client.post("/manage/models/", {"model": ICH, "mode": "shadow", "reason": ""},
                          follow=True).content.decode()  # fmt: skip

    for name in ("intracranial_hemorrhage", "pulmonary_embolism", "pneumothorax", "fracture"):
        assert f'data-model="{name}-demo"' in page
    assert "demonstration, synthetic phantoms" in page
    # Each calibrated card's reliability diagram, drawn.
    assert page.count('<figure class="plot" data-reliability=') == 4
    assert page.count("<svg") >= 4 and "calibrated (ECE" in page
    # The other site's figures, from each card (all four are measured).
    for card in registry_current().models.values():
        other = card.other_site
        assert f'<td class="other-site">{other["auc"]} [{other["auc_ci95"][0]}' in page
    assert '<td class="other-site">not measured</td>' not in page
    assert "Say why the model" in refused


def test_the_narrowest_scope_decides_whatever_was_set_later(db, users):
    model_mode_set(model_name=ICH, mode="off", user=users.administrator,
                   reason="resus scanner replaced", location_prefix="ED-RESUS")  # fmt: skip
    model_mode_set(model_name=ICH, mode="shadow", user=users.administrator,
                   reason="trial in the whole ED", location_prefix="ED")  # fmt: skip

    assert model_modes_for(location="ED-RESUS-2")[ICH] == "off"  # set earlier, narrower
    assert model_modes_for(location="ED-MAJORS-2")[ICH] == "shadow"
    assert model_modes_for(location="WARD-5")[ICH] == "live"
