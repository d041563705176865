"""Thresholds, feedback, validation runs and the administrator pages."""

from __future__ import annotations

import json

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
from worklist.templatetags.worklist_tags import score


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


def test_thresholds_near_one_show_their_digits_and_apply_unchanged(client, users, ich_card):
    """The shipped hemorrhage operating point is 0.9968...: two decimals showed it as 1.00, and
    applying the pre-filled form would have set 1.00 (nothing flagged)."""
    assert (score(0.9968046602756683), score(0.99992), score(0.7), score(1.0)) == (
        "0.996805", "0.99992", "0.70", "1.00")  # fmt: skip
    client.force_login(users.administrator)
    page = client.get("/manage/thresholds/?finding=intracranial_hemorrhage").content.decode()

    shown = score(ich_card.threshold)
    assert f'id="current-threshold">{shown}<' in page
    assert f'name="proposed" value="{shown}"' in page and "1.00" not in shown
    form = {"finding": "intracranial_hemorrhage", "apply": "1", "proposed": shown,
            "reason": "same point, re-stated"}  # fmt: skip
    response = client.post("/manage/thresholds/", form)
    assert response.status_code == 302
    assert abs(threshold_for(card=ich_card) - ich_card.threshold) < 1e-6
    # Out of range or not a number: refused with the reason, never clamped to 0.99 or 0.01.
    for typed in ("1.5", "0", "nan", "high"):
        refused = client.post("/manage/thresholds/", {**form, "proposed": typed}, follow=True)
        assert "probability between 0 and 1" in refused.content.decode(), typed
    assert ThresholdPolicy.objects.count() == 1


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


def test_changes_made_in_the_django_admin_are_audited_with_their_author(client, users):
    """Django's own admin pages (users, roles, destinations): each change is in the audit log,
    naming who made it and which fields, never the values (a password hash, say)."""
    from django.contrib.auth.models import Group, User

    it = User.objects.create_superuser("it-admin", password="it-admin-pass-1")
    client.force_login(it)
    target = users.clinician
    form = {
        "username": target.username,
        "first_name": "",
        "last_name": "",
        "email": "",
        "is_active": "on",
        "groups": [str(Group.objects.get(name="radiologist").pk)],
        "date_joined_0": "2026-01-01",
        "date_joined_1": "00:00:00",
        "initial-date_joined_0": "2026-01-01",
        "initial-date_joined_1": "00:00:00",
    }
    answer = client.post(f"/admin/auth/user/{target.pk}/change/", form)
    assert answer.status_code == 302, answer.content[:500]
    created = client.post("/admin/auth/group/add/", {"name": "night-readers"})
    assert created.status_code == 302

    changed = AuditEvent.objects.get(action="admin.change", actor=it)
    assert changed.channel == "admin"
    assert changed.detail["model"] == "auth.user"
    assert changed.detail["object_id"] == str(target.pk)
    assert changed.detail["fields"] == ["Groups"]  # Django's field label: the role changed
    added = AuditEvent.objects.get(action="admin.add", actor=it)
    assert added.detail["model"] == "auth.group"
    assert "pbkdf2" not in json.dumps([changed.detail, added.detail])


def test_analytics_time_series_per_day_with_their_csv(client, users):
    """Three alerts two days ago (acknowledged after 60, 120 and 600 s), one yesterday; feedback
    two days ago: 2 confirmed, 1 false positive; a flagged study read 30 min after receipt and
    an unflagged one read after 90 min, yesterday. The daily CSV holds those figures on those
    days, and the page draws the four time series with them."""
    from datetime import timedelta

    from django.utils import timezone

    now = timezone.now()
    two_days_ago, yesterday = now - timedelta(days=2), now - timedelta(days=1)
    for n, (raised, ack) in enumerate([(two_days_ago, 60), (two_days_ago, 120),
                                       (two_days_ago, 600), (yesterday, None)]):  # fmt: skip
        item = ready_study(received_at=raised - timedelta(minutes=30))
        run = _flagged_run(item)
        with transaction.atomic():
            alert = alert_raise(study=item.study, finding=run.finding, run=run)
        assert alert is not None
        Alert.objects.filter(pk=alert.pk).update(
            raised_at=raised,
            acknowledged_at=raised + timedelta(seconds=ack) if ack else None,
        )
        if n < 3:
            Feedback.objects.create(
                study=item.study, finding=run.finding, run=run, author=users.radiologist,
                verdict="false_positive" if n == 2 else "confirmed", created_at=raised,
            )  # fmt: skip
    for flagged, minutes in ((True, 30), (False, 90)):
        item = ready_study(received_at=yesterday - timedelta(minutes=minutes))
        _flagged_run(item, flagged=flagged)
        type(item).objects.filter(pk=item.pk).update(
            received_at=yesterday - timedelta(minutes=minutes), read_at=yesterday
        )
    client.force_login(users.administrator)

    page = client.get("/manage/analytics/?days=7").content.decode()
    daily = client.get("/manage/analytics/?days=7&format=csv&series=daily").content.decode()

    header, *lines = daily.strip().splitlines()
    fields = header.split(",")
    rows = {(r["day"], r["finding"]): r for r in (dict(zip(fields, line.split(","), strict=True))
                                                 for line in lines)}  # fmt: skip
    assert len(rows) == 7 * 5  # every day, each finding and all of them
    first = rows[(two_days_ago.date().isoformat(), "intracranial_hemorrhage")]
    assert (first["alerts"], first["confirmed"], first["false_positives"]) == ("3", "2", "1")
    assert float(first["ack_median_s"]) == 120.0
    assert float(first["ack_p90_s"]) == pytest.approx(504.0)  # numpy's linear p90 of 60/120/600
    second = rows[(yesterday.date().isoformat(), "all")]
    assert second["alerts"] == "1" and second["ack_median_s"] == ""
    assert float(second["flagged_read_median_min"]) == 30.0
    assert float(second["unflagged_read_median_min"]) == 90.0
    series = page[page.index('id="time-series"') :]
    assert series.count("<svg") == 4
    for title in ("Alerts per day", "PPV from radiologist feedback", "Time to acknowledge",
                  "Received to read"):  # fmt: skip
        assert title in series
    assert 'data-label="Intracranial hemorrhage"' in series
