"""The demo's simulated labelled history, so a newcomer sees the analytics with data at once.

`simulated_history_seed` writes days of simulated ED traffic before today: per study a patient,
a study marked `simulated` (no images: never listed, opened, retrieved or alerted on a dashboard),
its read worklist item, the installed model's completed result, an alert when it flagged (raised,
acknowledged, confirmed or dismissed), a radiologist's feedback on most flagged results and some
misses, and a final report's label for most studies. Scores are drawn from the finding's latest
validation run (the installed model's own scores on held-out phantoms, each with that phantom's
acquisition subgroups, by label) at that run's prevalence, so the drift checks against it have
nothing to find in ordinary days. (A real ED's lower prevalence would show in the live-score
check, which compares score distributions, prevalence included.)

In the last `shift_days` days the history changes on purpose, so each drift check has something
to show: one scanner ("PW Helix 16", station MAINCT3, 140 kV) takes most of the head CTs, and on
it a fifth of the negatives score like positives (an artefact the model falls for), which lowers
the PPV below the weekly control limit and moves the acquisition mix. Every patient is
"Simulated^History", every study description starts "SIMULATED", the calling AE is SIMULATED.
"""

from __future__ import annotations

import math
import random
import uuid
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

from django.db import transaction
from django.utils import timezone

from inference.models import InferenceRun
from inference.registry import registry_current
from triage.alerts import alert_seq_next
from triage.findings import Finding
from triage.models import Alert, Feedback, ReportLabel, ValidationRun
from worklist.models import Patient, Series, Study, WorklistItem

SIMULATED_AE = "SIMULATED"
# finding -> (share of the traffic, modality, body part, description)
MIX: dict[Finding, tuple[float, str, str, str]] = {
    Finding.INTRACRANIAL_HEMORRHAGE: (0.5, "CT", "HEAD", "CT HEAD WO CONTRAST"),
    Finding.PULMONARY_EMBOLISM: (0.2, "CT", "CHEST", "CTPA"),
    Finding.PNEUMOTHORAX: (0.15, "DX", "CHEST", "XR CHEST"),
    Finding.FRACTURE: (0.15, "CT", "CSPINE", "CT C-SPINE WO CONTRAST"),
}
# The scanner a software update breaks in the shifted days: manufacturer and model, station,
# kVp band, as the phantoms' writer and inference.acquisition name them.
SHIFTED_SCANNER = {
    "manufacturer": "Phantom Works PW Helix 16",
    "station": "MAINCT3",
    "kvp": "> 120 kV",
}

Case = tuple[float, dict[str, str]]  # a validation case's score and subgroups


@dataclass(frozen=True)
class _Cases:
    positives: list[Case]
    negatives: list[Case]

    @property
    def prevalence(self) -> float:
        return len(self.positives) / (len(self.positives) + len(self.negatives))


def _cases_by_label(finding: Finding) -> _Cases | None:
    """The finding's latest validation run, its cases split by label."""
    run = ValidationRun.objects.filter(finding=finding.value).order_by("-created_at").first()
    if run is None:
        return None
    rows = list(run.results.values_list("score", "label", "subgroups"))
    positives = [(float(score), dict(groups or {})) for score, label, groups in rows if label]
    negatives = [(float(score), dict(groups or {})) for score, label, groups in rows if not label]
    if not positives or not negatives:
        return None
    return _Cases(positives=positives, negatives=negatives)


def simulated_history_exists() -> bool:
    return Study.objects.filter(simulated=True).exists()


def simulated_history_seed(
    *,
    author: Any,
    days: int = 28,
    studies_per_day: int = 60,
    shift_days: int = 7,
    seed: int = 7,
    now: datetime | None = None,
) -> int:
    """Write the history, one transaction per simulated day (so the demo's live traffic, on
    SQLite, never waits on the whole history's write lock), newest day first; the number of
    studies written.
    Findings whose model has no validation run yet are left out."""
    now = now or timezone.now()
    rng = random.Random(seed)
    cards = {finding: registry_current().for_finding(finding) for finding in MIX}
    cases = {finding: _cases_by_label(finding) for finding in MIX}
    findings = [f for f in MIX if cards[f] and cases[f] is not None]
    if not findings:
        return 0
    weights = [MIX[f][0] for f in findings]
    today = now.replace(hour=0, minute=0, second=0, microsecond=0)
    written = 0
    for day in range(1, days + 1):  # newest first: a seeding cut short still has the last week
        with transaction.atomic():
            shifted = day <= shift_days
            start = today - timedelta(days=day)
            for _ in range(studies_per_day):
                finding = rng.choices(findings, weights)[0]
                card, pool = cards[finding][0], cases[finding]
                assert pool is not None
                positive = rng.random() < pool.prevalence
                _, modality, body_part, description = MIX[finding]
                # a case as validated (its score and subgroups together), unless on a shifted day
                # the broken scanner took the study: then a fifth of its negatives score like
                # positives (the artefact the model falls for)
                score, acquisition = rng.choice(pool.positives if positive else pool.negatives)
                if shifted and finding is Finding.INTRACRANIAL_HEMORRHAGE and rng.random() < 0.8:
                    acquisition = {**acquisition, **SHIFTED_SCANNER}
                    if not positive and rng.random() < 0.2:
                        score = rng.choice(pool.positives)[0]
                received = start + timedelta(seconds=rng.uniform(0, 86_400))
                _study_write(
                    rng,
                    finding=finding,
                    card=card,
                    positive=positive,
                    score=score,
                    received=received,
                    modality=modality,
                    body_part=body_part,
                    description=description,
                    acquisition=acquisition,
                    author=author,
                )
                written += 1
    return written


def _study_write(
    rng: random.Random,
    *,
    finding: Finding,
    card: Any,
    positive: bool,
    score: float,
    received: datetime,
    modality: str,
    body_part: str,
    description: str,
    acquisition: dict[str, str],
    author: Any,
) -> None:
    flagged = score >= card.threshold
    serial = uuid.UUID(int=rng.getrandbits(128))
    sex = acquisition.get("sex", "")
    if sex not in ("F", "M"):
        sex = rng.choice("FM")
    age = rng.randint(18, 90)
    patient = Patient.objects.create(
        patient_id=f"SIM{serial.hex[:10].upper()}",
        name="Simulated^History",
        sex=sex,
        birth_date=f"{received.year - age}0101",
    )
    study = Study.objects.create(
        study_instance_uid=f"2.25.{serial.int}",
        patient=patient,
        accession_number=f"SIM{serial.hex[10:20].upper()}",
        modality=modality,
        body_part=body_part,
        description=f"SIMULATED {description}",
        study_date=received.strftime("%Y%m%d"),
        order_priority="STAT",
        patient_location=rng.choice(["ED-RESUS-1", "ED-MAJORS-3", "ED-MAJORS-7", "ED-MINORS-2"]),
        is_emergency=True,
        calling_ae_title=SIMULATED_AE,
        first_received_at=received,
        last_instance_at=received + timedelta(seconds=20),
        state=Study.State.READY,
        ready_at=received + timedelta(seconds=20),
        ai_state=Study.AIState.COMPLETE,
        applicable_findings=[finding.value],
        simulated=True,
    )
    series = Series.objects.create(
        series_instance_uid=f"2.25.{serial.int}.1",
        study=study,
        modality=modality,
        body_part=body_part,
        description="SIMULATED",
    )
    finished = received + timedelta(seconds=rng.uniform(20.3, 21.5))
    run = InferenceRun.objects.create(
        study=study,
        finding=finding.value,
        model_name=card.name,
        model_version=card.version,
        model_sha256=card.sha256,
        demonstration=card.demonstration,
        series=series,
        series_set="simulated",
        state=InferenceRun.State.COMPLETE,
        score=score,
        threshold=card.threshold,
        flagged=flagged,
        acquisition=acquisition,
        queued_at=received + timedelta(seconds=20),
        started_at=received + timedelta(seconds=20.1),
        finished_at=finished,
    )
    # Flagged studies are read sooner (the ranking), unflagged ones wait their turn.
    wait = rng.lognormvariate(math.log(9 if flagged else 38), 0.6)
    claimed = finished + timedelta(minutes=wait)
    read = claimed + timedelta(minutes=rng.uniform(3, 12))
    WorklistItem.objects.create(
        study=study,
        status=WorklistItem.Status.READ,
        received_at=received,
        read_by=received + timedelta(minutes=15 if flagged else 60),
        claimed_by=author,
        claimed_at=claimed,
        read_at=read,
    )
    if flagged:
        acknowledged = finished + timedelta(seconds=rng.lognormvariate(math.log(70), 0.7))
        Alert.objects.create(
            seq=alert_seq_next(),
            study=study,
            finding=finding.value,
            run=run,
            score=score,
            state=Alert.State.CONFIRMED if positive else Alert.State.DISMISSED,
            raised_at=finished,
            escalate_at=finished + timedelta(minutes=3),
            acknowledged_at=acknowledged,
            acknowledged_by=author,
            acknowledged_from="simulated",
            resolved_at=read,
            resolved_by=author,
        )
    verdict = None
    if flagged and rng.random() < 0.8:
        verdict = Feedback.Verdict.CONFIRMED if positive else Feedback.Verdict.FALSE_POSITIVE
    elif positive and not flagged and rng.random() < 0.6:
        verdict = Feedback.Verdict.MISSED
    if verdict is not None:
        Feedback.objects.create(
            study=study,
            finding=finding.value,
            run=run,
            verdict=verdict,
            comment="simulated history",
            score=score,
            flagged=flagged,
            author=author,
            created_at=read,
        )
    if rng.random() < 0.85:
        ReportLabel.objects.create(
            study=study,
            finding=finding.value,
            label=ReportLabel.Label.PRESENT if positive else ReportLabel.Label.ABSENT,
            status="F",
            control_id="SIMULATED",
            received_at=read + timedelta(minutes=rng.uniform(10, 40)),
        )
