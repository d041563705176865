"""Reads for administrators: per-finding alert and reading analytics over a period, and drift."""

from __future__ import annotations

import math
from collections import Counter
from dataclasses import dataclass
from datetime import datetime, timedelta
from statistics import median
from typing import Any

import numpy as np
from django.utils import timezone

from inference.models import InferenceRun
from inference.registry import registry_current
from triage.findings import CATALOGUE, Finding
from triage.models import Alert, AlertDelivery, Feedback, ReportLabel, ValidationRun
from triage.operating_points import ks_two_sample
from triage.selectors import validation_arrays
from worklist.models import Study, WorklistItem

DRIFT_P_VALUE = 0.01
MIX_ATTRIBUTES = ("manufacturer", "slice_thickness", "kvp")
MIX_MIN_LIVE = 20
PPV_MIN_WEEK = 10  # feedback in the latest week before its PPV is charted
PPV_MIN_BASELINE = 30


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
    acquisition_drift: str  # a warning, or "" (see acquisition_mix_drift)
    ppv_control: str  # a warning, or "" (see ppv_below_control_limit)
    # Against final reports (triage.reports): results whose study's report says present or
    # absent; uncertain and unmentioned ones are counted apart, never used as truth.
    report_cases: int
    report_uncertain: int
    report_agreement: float | None
    report_sensitivity: float | None
    report_ppv: float | None


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
    # The installed model version's own validation: another version's scores are on another
    # scale (before calibration, say), and drift against them would be the upgrade, not the site.
    installed = registry_current().for_finding(finding)
    validation = (
        ValidationRun.objects.filter(
            finding=finding,
            model_name__in=[card.name for card in installed],
            model_version__in=[card.version for card in installed],
        )
        .order_by("-created_at")
        .first()
    )
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
    acquisition_warning = ""
    if validation is not None:
        live_mix = [a for a in runs.values_list("acquisition", flat=True) if a]
        reference_mix = [a for a in validation.results.values_list("subgroups", flat=True) if a]
        acquisition_warning = acquisition_mix_drift(live_mix, reference_mix, validation=validation)
    weekly = _weekly_feedback(finding=finding, until=until, weeks=max(2, round(days / 7)))
    against = against_reports(finding=finding, runs=runs)
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
        acquisition_drift=acquisition_warning,
        ppv_control=ppv_below_control_limit(weekly),
        report_cases=against.cases,
        report_uncertain=against.uncertain,
        report_agreement=against.agreement,
        report_sensitivity=against.sensitivity,
        report_ppv=against.ppv,
    )


def simulated_studies(*, days: int, now: datetime | None = None) -> int:
    """How many of the period's studies are the demo's simulated history (triage.demo_history),
    which the page must say."""
    until = now or timezone.now()
    return Study.objects.filter(
        simulated=True, first_received_at__gte=until - timedelta(days=days)
    ).count()


def analytics(*, days: int, now: datetime | None = None) -> list[FindingAnalytics]:
    until = now or timezone.now()
    since = until - timedelta(days=days)
    return [finding_analytics(finding=f.value, since=since, until=until) for f in Finding]


# One labelled result: its acquisition subgroups, its truth and its score (as
# `triage.subgroups.subgroup_table` and the explorer take them).
LabelledCase = tuple[dict[str, str], bool, float]


def feedback_cases(*, finding: str, since: datetime, until: datetime) -> list[LabelledCase]:
    """Scores with radiologist truth (feedback: confirmed and missed are positives), each with
    the subgroups of the run it judged; the explorer's live source."""
    rows = Feedback.objects.filter(
        finding=finding, created_at__gte=since, created_at__lt=until, study__simulated=False
    ).values_list("run__acquisition", "verdict", "score")
    positive = (Feedback.Verdict.CONFIRMED, Feedback.Verdict.MISSED)
    return [
        (subgroups or {}, verdict in positive, float(score))
        for subgroups, verdict, score in rows
        if score is not None
    ]


def report_cases(
    *, finding: str, since: datetime, until: datetime, model_name: str | None = None
) -> list[LabelledCase]:
    """Scores with the final reports' truth (reports received in the period, "present" or
    "absent"; uncertain and unmentioned left out): the latest completed run of each reported
    study, live or shadow, so a model on trial in shadow mode is measured on the site's own
    studies without anyone giving feedback."""
    labels = dict(
        ReportLabel.objects.filter(
            finding=finding,
            study__simulated=False,
            received_at__gte=since,
            received_at__lt=until,
            label__in=[ReportLabel.Label.PRESENT, ReportLabel.Label.ABSENT],
        ).values_list("study_id", "label")
    )
    runs = InferenceRun.objects.filter(
        finding=finding, state=InferenceRun.State.COMPLETE, study_id__in=list(labels)
    )
    if model_name:
        runs = runs.filter(model_name=model_name)
    latest: dict[int, tuple[dict[str, str], float]] = {}
    for study_id, subgroups, score in runs.order_by("finished_at", "pk").values_list(
        "study_id", "acquisition", "score"
    ):
        if score is not None:
            latest[study_id] = (subgroups or {}, float(score))
    return [
        (subgroups, labels[study_id] == ReportLabel.Label.PRESENT, score)
        for study_id, (subgroups, score) in latest.items()
    ]


def cases_arrays(cases: list[LabelledCase]) -> tuple[np.ndarray, np.ndarray]:
    """Scores and truth as arrays (float64, bool), for the operating-point curves."""
    scores = np.asarray([score for _, _, score in cases], dtype=np.float64)
    truth = np.asarray([label for _, label, _ in cases], dtype=bool)
    return scores, truth


def eligible_studies_per_day(*, finding: str, days: int = 14) -> float | None:
    since = timezone.now() - timedelta(days=days)
    count = (
        InferenceRun.objects.filter(finding=finding, queued_at__gte=since, study__simulated=False)
        .values("study_id")
        .distinct()
        .count()
    )
    return count / days if count else None


ALL_FINDINGS = "all"  # the day's row over every finding (latencies cannot be merged afterwards)


@dataclass(frozen=True, kw_only=True)
class DailyRow:
    """One day of one finding (UTC days), for the analytics page's time series and its CSV."""

    day: str  # YYYY-MM-DD
    finding: str
    alerts: int
    confirmed: int
    false_positives: int
    ack_median_s: float | None
    ack_p90_s: float | None
    flagged_read_median_min: float | None
    unflagged_read_median_min: float | None


def analytics_daily(*, days: int, now: datetime | None = None) -> list[DailyRow]:
    """Per UTC day and finding over the last `days` days (today included): alerts raised,
    feedback, acknowledgement latency, and time from receipt to read for studies with and
    without the finding flagged. Read in four queries and bucketed here."""
    until = now or timezone.now()
    first_day = (until - timedelta(days=days - 1)).date()
    since = datetime.combine(first_day, datetime.min.time(), tzinfo=until.tzinfo)
    keys = [(first_day + timedelta(days=n)).isoformat() for n in range(days)]
    buckets: dict[tuple[str, str], dict[str, list[float]]] = {
        (day, finding): {
            "alerts": [],
            "ack": [],
            "confirmed": [],
            "fp": [],
            "flag": [],
            "plain": [],
        }
        for day in keys
        for finding in [*(f.value for f in Finding), ALL_FINDINGS]
    }

    def bucket(at: datetime, finding: str) -> list[dict[str, list[float]]]:
        day = at.astimezone(until.tzinfo).date().isoformat()
        found = [buckets.get((day, finding)), buckets.get((day, ALL_FINDINGS))]
        return [entry for entry in found if entry is not None] if found[0] is not None else []

    for raised_at, finding, acknowledged_at in Alert.objects.filter(
        raised_at__gte=since, raised_at__lt=until
    ).values_list("raised_at", "finding", "acknowledged_at"):
        for entry in bucket(raised_at, finding):
            entry["alerts"].append(1)
            if acknowledged_at is not None:
                entry["ack"].append((acknowledged_at - raised_at).total_seconds())
    for created_at, finding, verdict in Feedback.objects.filter(
        created_at__gte=since, created_at__lt=until
    ).values_list("created_at", "finding", "verdict"):
        for entry in bucket(created_at, finding):
            if verdict == Feedback.Verdict.CONFIRMED:
                entry["confirmed"].append(1)
            elif verdict == Feedback.Verdict.FALSE_POSITIVE:
                entry["fp"].append(1)
    runs = InferenceRun.objects.filter(
        current=True, state=InferenceRun.State.COMPLETE, study__worklist_item__read_at__gte=since,
        study__worklist_item__read_at__lt=until,
    ).values_list("finding", "flagged", "study__worklist_item__received_at",
                  "study__worklist_item__read_at")  # fmt: skip
    for finding, flagged, received_at, read_at in runs:
        if read_at is None or received_at is None:
            continue
        for entry in bucket(read_at, finding):
            entry["flag" if flagged else "plain"].append(
                (read_at - received_at).total_seconds() / 60
            )
    rows = []
    for (day, finding), entry in buckets.items():
        rows.append(
            DailyRow(
                day=day,
                finding=finding,
                alerts=len(entry["alerts"]),
                confirmed=len(entry["confirmed"]),
                false_positives=len(entry["fp"]),
                ack_median_s=float(median(entry["ack"])) if entry["ack"] else None,
                ack_p90_s=_quantile(entry["ack"], 0.9),
                flagged_read_median_min=float(median(entry["flag"])) if entry["flag"] else None,
                unflagged_read_median_min=(
                    float(median(entry["plain"])) if entry["plain"] else None
                ),
            )
        )
    return rows


def acquisition_mix_drift(
    live: list[dict[str, str]], reference: list[dict[str, str]], *, validation: ValidationRun
) -> str:
    """Does the live acquisition mix (manufacturer, slice thickness band, kVp band of the series
    scored) differ from the validation run's? Per attribute, a chi-square test of the 2 x k
    table of counts (live, validation) by value, warning at p < DRIFT_P_VALUE with at least
    MIX_MIN_LIVE live results; a value the validation never saw is named."""
    from scipy.stats import chi2_contingency

    if len(live) < MIX_MIN_LIVE or not reference:
        return ""
    warnings = []
    for attribute in MIX_ATTRIBUTES:
        live_counts = Counter(entry.get(attribute, "unknown") for entry in live)
        reference_counts = Counter(entry.get(attribute, "unknown") for entry in reference)
        values = sorted(set(live_counts) | set(reference_counts))
        if len(values) < 2:
            continue
        table = [[live_counts[v] for v in values], [reference_counts[v] for v in values]]
        _, p_value, _, _ = chi2_contingency(table)
        if p_value < DRIFT_P_VALUE:
            unseen = [v for v in values if not reference_counts[v]]
            warnings.append(
                f"{attribute.replace('_', ' ')} (chi-square p={p_value:.1g}"
                + (f"; not in validation: {', '.join(unseen)}" if unseen else "")
                + ")"
            )
    if not warnings:
        return ""
    return (
        f"Acquisition mix differs from validation run #{validation.pk}: "
        + "; ".join(warnings)
        + ". Validate on the new scanners or protocols before trusting the operating point."
    )


@dataclass(frozen=True, kw_only=True)
class WeekFeedback:
    confirmed: int
    false_positives: int


def _weekly_feedback(*, finding: str, until: datetime, weeks: int) -> list[WeekFeedback]:
    """Confirmed and false-positive feedback per 7-day window, oldest first, the last ending
    `until`."""
    since = until - timedelta(days=7 * weeks)
    counts = [[0, 0] for _ in range(weeks)]
    for created_at, verdict in Feedback.objects.filter(
        finding=finding, created_at__gte=since, created_at__lt=until,
        verdict__in=[Feedback.Verdict.CONFIRMED, Feedback.Verdict.FALSE_POSITIVE],
    ).values_list("created_at", "verdict"):  # fmt: skip
        week = min(weeks - 1, int((created_at - since).total_seconds() // (7 * 86400)))
        counts[week][0 if verdict == Feedback.Verdict.CONFIRMED else 1] += 1
    return [WeekFeedback(confirmed=tp, false_positives=fp) for tp, fp in counts]


def ppv_below_control_limit(weeks: list[WeekFeedback]) -> str:
    """A p-chart of PPV by week: the latest week's PPV against the earlier weeks' pooled PPV,
    warning when it falls under the lower 3-sigma control limit p - 3 sqrt(p (1 - p) / n) for
    its n feedbacks (at least PPV_MIN_WEEK that week and PPV_MIN_BASELINE before)."""
    if len(weeks) < 2:
        return ""
    *earlier, latest = weeks
    tp = sum(week.confirmed for week in earlier)
    n_base = tp + sum(week.false_positives for week in earlier)
    n = latest.confirmed + latest.false_positives
    if n < PPV_MIN_WEEK or n_base < PPV_MIN_BASELINE:
        return ""
    baseline = tp / n_base
    # Its spread from a baseline kept off 0 and 1, where the p-chart's limit collapses onto
    # the baseline itself (a PPV of 1.0 so far would warn at one false positive).
    spread = min(max(baseline, 0.05), 0.95)
    limit = baseline - 3 * math.sqrt(spread * (1 - spread) / n)
    observed = latest.confirmed / n
    if observed >= limit:
        return ""
    return (
        f"PPV this week {observed:.2f} ({latest.confirmed}/{n}) is under the control limit "
        f"{max(limit, 0):.2f} of the earlier weeks' {baseline:.2f} ({tp}/{n_base}): more false "
        "alarms than before. Check the thresholds, the scanners and the model."
    )


@dataclass(frozen=True, kw_only=True)
class AgainstReports:
    cases: int
    uncertain: int
    agreement: float | None
    sensitivity: float | None
    ppv: float | None


def against_reports(*, finding: str, runs: Any) -> AgainstReports:
    """The AI's flags (the runs given) against the final reports' labels for the same finding."""
    flags = dict(runs.values_list("study_id", "flagged"))
    labels = dict(
        ReportLabel.objects.filter(finding=finding, study_id__in=list(flags)).values_list(
            "study_id", "label"
        )
    )
    pairs = [
        (bool(flags[study]), label == ReportLabel.Label.PRESENT)
        for study, label in labels.items()
        if label in (ReportLabel.Label.PRESENT, ReportLabel.Label.ABSENT)
    ]
    uncertain = sum(1 for label in labels.values() if label == ReportLabel.Label.UNCERTAIN)
    tp = sum(1 for flagged, present in pairs if flagged and present)
    positives = sum(1 for _, present in pairs if present)
    flagged_count = sum(1 for flagged, _ in pairs if flagged)
    return AgainstReports(
        cases=len(pairs),
        uncertain=uncertain,
        agreement=sum(1 for f, p in pairs if f == p) / len(pairs) if pairs else None,
        sensitivity=tp / positives if positives else None,
        ppv=tp / flagged_count if flagged_count else None,
    )
