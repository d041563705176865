"""Reads for administrators: per-finding alert and reading analytics over a period, and drift."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime, timedelta
from statistics import median

import numpy as np
from django.db.models import Q
from django.utils import timezone

from inference.models import InferenceRun
from triage.findings import CATALOGUE, Finding
from triage.models import Alert, AlertDelivery, Feedback, ValidationRun
from triage.operating_points import ks_two_sample
from triage.selectors import validation_arrays
from worklist.models import WorklistItem

DRIFT_P_VALUE = 0.01


def _quantile(values: list[float], q: float) -> float | None:
    return float(np.quantile(values, q)) if values else None


@dataclass(frozen=True)
class FindingAnalytics:
    finding: str
    label: str
    alerts: int
    alerts_per_day: float
    confirmed: int
    false_positives: int
    missed: int
    ppv: float | None
    ack_median_s: float | None
    ack_p90_s: float | None
    escalations: int
    held_for_digest: int  # deliveries the per-recipient rate cap held back into a digest
    flagged_claim_median_min: float | None
    flagged_read_median_min: float | None
    unflagged_claim_median_min: float | None
    unflagged_read_median_min: float | None
    live_results: int
    drift_statistic: float | None
    drift_p_value: float | None
    drift_warning: str


def _minutes(items: list[WorklistItem], field: str) -> float | None:
    values = [
        (getattr(item, field) - item.received_at).total_seconds() / 60
        for item in items
        if getattr(item, field) is not None
    ]
    return float(median(values)) if values else None


def finding_analytics(*, finding: str, since: datetime, until: datetime) -> FindingAnalytics:
    days = max((until - since).total_seconds() / 86400, 1e-9)
    alerts = list(Alert.objects.filter(finding=finding, raised_at__gte=since, raised_at__lt=until))
    acks = [
        (alert.acknowledged_at - alert.raised_at).total_seconds()
        for alert in alerts
        if alert.acknowledged_at
    ]
    feedback = Feedback.objects.filter(finding=finding, created_at__gte=since, created_at__lt=until)
    confirmed = feedback.filter(verdict=Feedback.Verdict.CONFIRMED).count()
    false_positives = feedback.filter(verdict=Feedback.Verdict.FALSE_POSITIVE).count()
    runs = InferenceRun.objects.filter(
        finding=finding,
        current=True,
        state=InferenceRun.State.COMPLETE,
        finished_at__gte=since,
        finished_at__lt=until,
    )
    flagged_studies = set(runs.filter(flagged=True).values_list("study_id", flat=True))
    all_studies = set(runs.values_list("study_id", flat=True))
    items = list(WorklistItem.objects.filter(study_id__in=all_studies))
    flagged_items = [item for item in items if item.study_id in flagged_studies]
    unflagged_items = [item for item in items if item.study_id not in flagged_studies]

    live_scores = np.asarray([s for s in runs.values_list("score", flat=True) if s is not None])
    validation = ValidationRun.objects.filter(finding=finding).order_by("-created_at").first()
    statistic = p_value = None
    warning = ""
    if validation is not None and live_scores.size >= 20:
        reference, _ = validation_arrays(validation)
        statistic, p_value = ks_two_sample(live_scores, reference)
        if p_value < DRIFT_P_VALUE:
            warning = (
                f"Live scores differ from validation run #{validation.pk} "
                f"(two-sample Kolmogorov-Smirnov D={statistic:.2f}, p={p_value:.1g} < "
                f"{DRIFT_P_VALUE}). Check the population, the scanners and the model."
            )
    return FindingAnalytics(
        finding=finding,
        label=CATALOGUE[Finding(finding)].label,
        alerts=len(alerts),
        alerts_per_day=len(alerts) / days,
        confirmed=confirmed,
        false_positives=false_positives,
        missed=feedback.filter(verdict=Feedback.Verdict.MISSED).count(),
        ppv=confirmed / (confirmed + false_positives) if confirmed + false_positives else None,
        ack_median_s=float(median(acks)) if acks else None,
        ack_p90_s=_quantile(acks, 0.9),
        escalations=sum(1 for alert in alerts if alert.escalated_at is not None),
        held_for_digest=AlertDelivery.objects.filter(
            alert__in=alerts, mode=AlertDelivery.Mode.DIGEST
        ).count(),
        flagged_claim_median_min=_minutes(flagged_items, "claimed_at"),
        flagged_read_median_min=_minutes(flagged_items, "read_at"),
        unflagged_claim_median_min=_minutes(unflagged_items, "claimed_at"),
        unflagged_read_median_min=_minutes(unflagged_items, "read_at"),
        live_results=int(live_scores.size),
        drift_statistic=statistic,
        drift_p_value=p_value,
        drift_warning=warning,
    )


def analytics(*, days: int, now: datetime | None = None) -> list[FindingAnalytics]:
    until = now or timezone.now()
    since = until - timedelta(days=days)
    return [finding_analytics(finding=f.value, since=since, until=until) for f in Finding]


def live_scores_and_truth(
    *, finding: str, since: datetime, until: datetime
) -> tuple[np.ndarray, np.ndarray]:
    """Scores with radiologist truth (feedback) for the explorer's live source."""
    rows = (
        Feedback.objects.filter(finding=finding, created_at__gte=since, created_at__lt=until)
        .filter(~Q(score=None))
        .values_list("score", "verdict")
    )
    scores = np.asarray([score for score, _ in rows], dtype=np.float64)
    truth = np.asarray(
        [verdict in (Feedback.Verdict.CONFIRMED, Feedback.Verdict.MISSED) for _, verdict in rows],
        dtype=bool,
    )
    return scores, truth


def eligible_studies_per_day(*, finding: str, days: int = 14) -> float | None:
    since = timezone.now() - timedelta(days=days)
    count = (
        InferenceRun.objects.filter(finding=finding, queued_at__gte=since)
        .values("study_id")
        .distinct()
        .count()
    )
    return count / days if count else None
