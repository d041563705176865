"""The demo's simulated labelled history (triage/demo_history.py): the analytics, subgroups and
drift checks have data on first start, the shifted last week shows in the drift checks and an
unshifted history does not, and none of it is ever shown as a study or an alert."""

from __future__ import annotations

import csv
import io
import random
from datetime import timedelta

import pytest
from django.utils import timezone

from inference.registry import registry_current
from triage.alerts import alert_changes_since, alerts_visible
from triage.analytics import analytics, analytics_daily, feedback_cases, simulated_studies
from triage.demo_history import simulated_history_exists, simulated_history_seed
from triage.findings import Finding
from triage.models import Alert
from triage.validation import validation_run_from_scores
from worklist.models import Study

ICH = Finding.INTRACRANIAL_HEMORRHAGE.value
SCANNERS = [
    {"manufacturer": "ED Triage Phantoms Phantom CT 64", "station": "EDCT01", "kvp": "101-120 kV"},
    {"manufacturer": "ED Triage Phantoms Phantom CT 128", "station": "EDCT02", "kvp": "<= 100 kV"},
    {"manufacturer": "Phantom Works PW Helix 16", "station": "MAINCT3", "kvp": "> 120 kV"},
]


def _validation_run() -> None:
    """A hemorrhage validation run as the demo seeds one: three scanners in turn, 95% of
    positives above the threshold, every negative below it."""
    card = registry_current().for_finding(ICH)[0]
    rng = random.Random(3)
    cases = []
    for n in range(240):
        positive = n % 2 == 0
        t = card.threshold
        score = (
            rng.uniform(t, 1.0) if positive and rng.random() < 0.95 else rng.uniform(0.0, t * 0.9)
        )
        groups = {**SCANNERS[n % 3], "slice_thickness": "3-5 mm", "age": "40-64 years",
                  "sex": "FM"[n % 2]}  # fmt: skip
        cases.append((f"case-{n}", positive, score, groups))
    validation_run_from_scores(card=card, cases=cases, dataset="test", description="test")


@pytest.fixture
def history(db, users):
    _validation_run()
    written = simulated_history_seed(author=users.radiologist, days=28, studies_per_day=40)
    return written


def test_the_history_fills_the_analytics_and_its_shifted_week_trips_the_drift_checks(history):
    assert history == 28 * 40 and simulated_history_exists()
    [ich] = [row for row in analytics(days=28) if row.finding == ICH]
    assert ich.alerts > 50 and ich.confirmed > 30 and ich.false_positives > 5
    assert (
        ich.ack_median_s is not None and ich.flagged_read_median_min < ich.unflagged_read_median_min
    )
    assert ich.report_cases > 100 and ich.report_sensitivity is not None
    # the broken scanner's false alarms, this week against the three before
    assert "PPV this week" in ich.ppv_control
    assert "manufacturer" in ich.acquisition_drift and "kvp" in ich.acquisition_drift
    days = [row for row in analytics_daily(days=14) if row.finding == ICH]
    assert sum(1 for row in days if row.alerts) >= 12  # every past day has alerts
    # the threshold explorer's live sources never take simulated feedback (it would propose
    # an operating point for real traffic from invented data)
    cases = feedback_cases(finding=ICH, since=timezone.now() - timedelta(days=28),
                           until=timezone.now())  # fmt: skip
    assert cases == []


def test_without_the_shift_no_drift_check_warns(db, users):
    _validation_run()
    simulated_history_seed(author=users.radiologist, days=28, studies_per_day=40, shift_days=0)
    [ich] = [row for row in analytics(days=28) if row.finding == ICH]
    assert ich.alerts > 50
    assert ich.ppv_control == "" and ich.acquisition_drift == "" and ich.drift_warning == ""


def test_simulated_studies_are_never_shown_as_studies_or_alerts(history, users, client):
    client.force_login(users.radiologist)
    assert alerts_visible(user=users.radiologist) == []
    simulated_alert = Alert.objects.filter(study__simulated=True).first()
    for action in ("ack", "confirm", "dismiss"):  # a 404 with its reason, not a server error
        acted = client.post(f"/api/alerts/{simulated_alert.pk}/{action}/")
        assert acted.status_code == 404 and acted.json()["detail"] == "No such alert."
    study = Study.objects.filter(simulated=True).first()
    assert client.get(f"/studies/{study.pk}/").status_code == 404
    qido = client.get(f"/dicomweb/studies?StudyInstanceUID={study.study_instance_uid}")
    assert qido.status_code == 204
    listed = client.get("/api/worklist/?status=read")
    assert listed.status_code == 200 and study.accession_number not in listed.content.decode()
    # a reconnecting socket's replay of missed pushes never carries them either
    assert alert_changes_since(timezone.now() - timedelta(days=60)) == []


def test_the_analytics_page_says_what_is_simulated(history, users, client):
    client.force_login(users.administrator)
    page = client.get("/manage/analytics/?days=28").content.decode()
    assert 'id="simulated-history"' in page
    assert "of this period's studies are the demo's simulated history" in page
    assert page.count("<svg") >= 4
    exported = client.get("/manage/analytics/?days=28&format=csv")
    assert exported.status_code == 200
    header, *rows = list(csv.reader(io.StringIO(exported.content.decode())))
    assert header[-1] == "simulated_studies_in_period" and rows
    assert {row[-1] for row in rows} == {str(simulated_studies(days=28))} != {"0"}


def test_no_validation_run_no_history(db, users):
    assert simulated_history_seed(author=users.radiologist, days=3) == 0
    assert not simulated_history_exists()
