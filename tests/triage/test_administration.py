"""Thresholds, feedback, validation runs and the administrator pages."""

from __future__ import annotations

import numpy as np
import pytest
from django.db import transaction

from inference.models import InferenceRun
from inference.registry import SHIPPED_MODELS_DIR, registry_load
from tests.factories import ready_study
from triage.alerts import alert_raise
from triage.findings import Finding
from triage.models import Alert, AuditEvent, Feedback, ThresholdPolicy
from triage.thresholds import ThresholdChangeRefused, threshold_for, threshold_set
from triage.validation import validation_run_from_scores


@pytest.fixture
def ich_card():
    return registry_load([SHIPPED_MODELS_DIR]).for_finding(Finding.INTRACRANIAL_HEMORRHAGE)[0]


def test_only_administrators_change_thresholds(users):
    for user in (users.radiologist, users.clinician):
        with pytest.raises(ThresholdChangeRefused, match="administrators"):
            threshold_set(finding="pneumothorax", value=0.6, user=user, reason="fewer alarms")
    with pytest.raises(ThresholdChangeRefused, match="why"):
        threshold_set(finding="pneumothorax", value=0.6, user=users.administrator, reason=" ")
    assert ThresholdPolicy.objects.count() == 0


def test_a_threshold_change_applies_to_the_next_result_and_is_audited(users, ich_card):
    study = ready_study(location="ED-RESUS").study
    assert threshold_for(card=ich_card, study=study) == ich_card.threshold

    threshold_set(
        finding=ich_card.finding,
        value=0.91,
        user=users.administrator,
        reason="PPV too low in our ED",
    )
    assert threshold_for(card=ich_card, study=study) == 0.91
    threshold_set(
        finding=ich_card.finding,
        value=0.42,
        user=users.administrator,
        reason="resus only",
        location_prefix="ED-RESUS",
    )
    threshold_set(
        finding=ich_card.finding, value=0.88, user=users.administrator, reason="second thoughts"
    )

    assert threshold_for(card=ich_card, study=study) == 0.42  # the narrower scope wins
    assert threshold_for(card=ich_card, study=ready_study(location="WARD").study) == 0.88
    history = ThresholdPolicy.objects.filter(finding=ich_card.finding, location_prefix="")
    assert [(p.value, p.active) for p in history] == [(0.88, True), (0.91, False)]
    changes = AuditEvent.objects.filter(action="threshold.change").order_by("at")
    assert [event.detail["to"] for event in changes] == [0.91, 0.42, 0.88]
    assert changes.last().detail["from"] == 0.91


def _flagged_run(item, *, finding="intracranial_hemorrhage", flagged=True, score=0.93):
    from django.utils import timezone

    return InferenceRun.objects.create(
        study=item.study,
        finding=finding,
        model_name="m",
        model_version="1",
        model_sha256="x",
        series=item.study.series.create(series_instance_uid=f"9.{item.pk}"),
        series_set="s",
        state="complete",
        score=score,
        flagged=flagged,
        threshold=0.5,
        queued_at=timezone.now(),
    )


def test_feedback_confirms_or_rejects_a_flag_and_resolves_the_alert(client, users):
    item = ready_study()
    run = _flagged_run(item)
    with transaction.atomic():
        alert = alert_raise(study=item.study, finding=run.finding, run=run)
    client.force_login(users.radiologist)

    response = client.post(
        f"/api/studies/{item.study_id}/feedback/",
        {"finding": run.finding, "verdict": "false_positive", "reason": "artefact"},
        content_type="application/json",
    )

    assert response.status_code == 201, response.content
    feedback = Feedback.objects.get()
    assert (feedback.verdict, feedback.reason, feedback.score) == (
        "false_positive",
        "artefact",
        0.93,
    )
    assert Alert.objects.get(pk=alert.pk).state == "dismissed"
    assert AuditEvent.objects.filter(action="feedback.false_positive").exists()


def test_missed_finding_on_an_unflagged_study(client, users):
    item = ready_study()
    _flagged_run(item, flagged=False, score=0.12)
    client.force_login(users.radiologist)

    response = client.post(
        f"/api/studies/{item.study_id}/feedback/",
        {"finding": "intracranial_hemorrhage", "verdict": "missed"},
        content_type="application/json",
    )

    assert response.status_code == 201
    assert Feedback.objects.get().truth is True


@pytest.mark.parametrize(
    ("payload", "message"),
    [
        ({"finding": "intracranial_hemorrhage", "verdict": "confirmed"}, "no AI flag"),
        ({"finding": "appendicitis", "verdict": "missed"}, "finding must be"),
        ({"finding": "intracranial_hemorrhage", "verdict": "maybe"}, "verdict must be"),
    ],
)
def test_bad_feedback_is_refused_with_a_reason(client, users, payload, message):
    item = ready_study()
    client.force_login(users.radiologist)

    response = client.post(
        f"/api/studies/{item.study_id}/feedback/", payload, content_type="application/json"
    )

    assert response.status_code == 400 and message in response.json()["detail"]


def test_clinicians_do_not_record_feedback(client, users):
    client.force_login(users.clinician)
    response = client.post("/api/studies/1/feedback/", {}, content_type="application/json")
    assert response.status_code == 403


def _validation(card, n=200, seed=0):
    rng = np.random.default_rng(seed)
    labels = rng.random(n) < 0.5
    scores = np.where(labels, rng.beta(5, 2, n), rng.beta(2, 5, n))
    return validation_run_from_scores(
        card=card,
        cases=[
            (f"case{i}", bool(label), float(score))
            for i, (label, score) in enumerate(zip(labels, scores, strict=True))
        ],
        dataset="test set",
        description="hand-made",
    )


def test_explorer_is_for_administrators_and_draws_its_plots(client, users, ich_card):
    _validation(ich_card)
    client.force_login(users.radiologist)
    assert client.get("/manage/thresholds/").status_code == 403

    client.force_login(users.administrator)
    page = client.get(
        "/manage/thresholds/?finding=intracranial_hemorrhage&proposed=0.7"
    ).content.decode()

    assert page.count("<svg") == 3 and "ROC, AUC" in page
    assert "current threshold" in page and "Proposed 0.70" in page
    assert "demonstration model trained on synthetic phantoms" in page


def test_applying_a_threshold_from_the_explorer(client, users, ich_card):
    client.force_login(users.administrator)

    response = client.post(
        "/manage/thresholds/",
        {
            "finding": "intracranial_hemorrhage",
            "apply": "1",
            "proposed": "0.8",
            "reason": "trial",
        },
    )

    assert response.status_code == 302
    assert ThresholdPolicy.objects.get().value == 0.8
    assert threshold_for(card=ich_card) == 0.8


def test_analytics_page_and_csv(client, users):
    item = ready_study()
    run = _flagged_run(item)
    with transaction.atomic():
        alert_raise(study=item.study, finding=run.finding, run=run)
    client.force_login(users.administrator)

    page = client.get("/manage/analytics/?days=7").content.decode()
    csv_text = client.get("/manage/analytics/?days=7&format=csv").content.decode()

    assert "Intracranial hemorrhage" in page and "Kolmogorov" in page
    header, *rows = csv_text.strip().splitlines()
    assert header.startswith("finding,label,alerts,alerts_per_day")
    ich = next(row for row in rows if row.startswith("intracranial_hemorrhage"))
    assert ich.split(",")[2] == "1"


@pytest.mark.parametrize("days", ["nan", "inf", "-inf", "1e999", "seven"])
def test_analytics_page_takes_any_days_value_without_error(client, users, days):
    client.force_login(users.administrator)

    response = client.get(f"/manage/analytics/?days={days}")

    assert response.status_code == 200
    assert "Intracranial hemorrhage" in response.content.decode()


def test_an_over_long_threshold_scope_is_refused_with_a_reason(client, users, ich_card):
    client.force_login(users.administrator)

    response = client.post(
        "/manage/thresholds/",
        {
            "finding": "intracranial_hemorrhage",
            "apply": "1",
            "proposed": "0.8",
            "reason": "trial",
            "location_prefix": "X" * 300,
        },
        follow=True,
    )

    assert response.status_code == 200
    assert "at most 64 characters" in response.content.decode()
    assert not ThresholdPolicy.objects.exists()
    assert threshold_for(card=ich_card) == ich_card.threshold
