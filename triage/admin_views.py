"""Administrator pages: the operating-point explorer (thresholds) and analytics."""

from __future__ import annotations

import csv
import math
from datetime import datetime, timedelta
from typing import Any

import numpy as np
from django.conf import settings
from django.contrib import messages
from django.http import HttpRequest, HttpResponse, HttpResponseRedirect
from django.shortcuts import render
from django.urls import reverse
from django.utils import timezone

from inference.registry import ModelCard, registry_current
from triage import analytics as analytics_reads
from triage.findings import CATALOGUE, FINDINGS, Finding
from triage.model_modes import ModelModeRefused, model_inventory, model_mode_set, shadow_runs
from triage.models import ModelMode, ThresholdPolicy, ValidationRun
from triage.operating_points import (
    at_threshold,
    auc,
    curves,
    roc_points,
    threshold_for_alert_budget,
    threshold_for_sensitivity,
)
from triage.plots import Series, line_plot
from triage.roles import Role, role_required
from triage.subgroups import subgroup_table
from triage.thresholds import ThresholdChangeRefused, policy_for, threshold_set

# Typical ED prevalence among studies each model applies to: a starting point the administrator
# replaces with the site's own figure (the live feedback figure is offered when there is one).
DEFAULT_PREVALENCE = {
    Finding.INTRACRANIAL_HEMORRHAGE: 0.08,
    Finding.PULMONARY_EMBOLISM: 0.12,
    Finding.PNEUMOTHORAX: 0.03,
    Finding.FRACTURE: 0.04,
}
DEFAULT_STUDIES_PER_DAY = 40.0


def _float(raw: str | None, default: float, *, low: float, high: float) -> float:
    if raw is None or raw == "":
        return default
    try:
        value = float(raw)
    except ValueError:
        return default
    if not math.isfinite(value):  # "nan" and "inf" parse as floats
        return default
    return min(max(value, low), high)


PROBABILITY_LOW, PROBABILITY_HIGH = 1e-6, 1 - 1e-6


def _threshold_applied(raw: str | None) -> float:
    """The threshold an administrator applies, as typed: never clamped (0.99 for 0.9968 would
    have flooded the dashboards), refused with the reason unless a probability in (0, 1)."""
    try:
        value = float(raw or "")
    except ValueError:
        value = math.nan
    if not (math.isfinite(value) and PROBABILITY_LOW <= value <= PROBABILITY_HIGH):
        raise ThresholdChangeRefused("A threshold is a probability between 0 and 1, such as 0.88.")
    return value


def _date(raw: str | None, default: datetime) -> datetime:
    try:
        return (
            datetime.fromisoformat(raw).replace(tzinfo=timezone.get_current_timezone())
            if raw
            else default
        )
    except ValueError:
        return default


@role_required(Role.ADMINISTRATOR)
def thresholds_page(request: HttpRequest) -> HttpResponse:
    params = request.POST if request.method == "POST" else request.GET
    finding = params.get("finding") or Finding.INTRACRANIAL_HEMORRHAGE.value
    if finding not in FINDINGS:
        finding = Finding.INTRACRANIAL_HEMORRHAGE.value
    cards = registry_current().for_finding(finding)
    card = cards[0] if cards else None
    current_policy = policy_for(finding=finding)
    current = current_policy.value if current_policy else (card.threshold if card else 0.5)

    if request.method == "POST" and params.get("apply"):
        try:
            threshold_set(
                finding=finding,
                value=_threshold_applied(params.get("proposed")),
                user=request.user,
                reason=params.get("reason", ""),
                location_prefix=params.get("location_prefix", ""),
                modality=params.get("modality", ""),
            )
            messages.success(request, "Threshold changed; it applies to the next result.")
        except ThresholdChangeRefused as refusal:
            messages.error(request, str(refusal))
        return HttpResponseRedirect(f"{reverse('admin-thresholds')}?finding={finding}")

    validations = list(ValidationRun.objects.filter(finding=finding)[:20])
    # By default the newest run of the model version now installed: an older version's scores
    # are on another scale (before calibration, say) than the thresholds applied now.
    current_version = [
        v for v in validations if card is not None and (v.model_name, v.model_version) ==
        (card.name, card.version)
    ]  # fmt: skip
    default = (current_version or validations)[0] if validations else None
    source = params.get("source") or (f"validation:{default.pk}" if default else "live")
    now = timezone.now()
    since = _date(params.get("since"), now - timedelta(days=30))
    until = _date(params.get("until"), now)
    cases: list[analytics_reads.LabelledCase] = []
    chosen = None
    if source.startswith("validation:"):
        chosen = next((v for v in validations if f"validation:{v.pk}" == source), None)
        if chosen is not None:
            cases = [(case.subgroups, case.label, case.score) for case in chosen.results.all()]
        source_label = f"validation run #{chosen.pk}: {chosen.dataset}" if chosen else "none"
    elif source == "reports":
        cases = analytics_reads.report_cases(
            finding=finding, since=since, until=until, model_name=card.name if card else None
        )
        source_label = (
            f"final reports {since:%Y-%m-%d} to {until:%Y-%m-%d} (live and shadow results)"
        )
    else:
        source = "live"
        cases = analytics_reads.feedback_cases(finding=finding, since=since, until=until)
        source_label = f"live radiologist feedback {since:%Y-%m-%d} to {until:%Y-%m-%d}"
    scores, labels = analytics_reads.cases_arrays(cases)
    # The site's own prevalence where the source is its own studies (feedback or reports).
    own = not source.startswith("validation:")
    live_prevalence = float(labels.mean()) if own and labels.size >= 30 else None
    prevalence = _float(
        params.get("prevalence"),
        live_prevalence or DEFAULT_PREVALENCE[Finding(finding)],
        low=0.001,
        high=0.999,
    )
    studies_per_day = _float(
        params.get("studies_per_day"),
        analytics_reads.eligible_studies_per_day(finding=finding) or DEFAULT_STUDIES_PER_DAY,
        low=0.1,
        high=100000,
    )
    # Any probability: a site's own uncalibrated model may sit near 1 (0.9968, 0.99992 raw).
    proposed = _float(params.get("proposed"), current, low=PROBABILITY_LOW, high=PROBABILITY_HIGH)
    target_sensitivity = _float(params.get("target_sensitivity"), math.nan, low=0.01, high=1.0)
    alert_budget = _float(params.get("alert_budget"), math.nan, low=0.01, high=100000)
    proposed_why = ""
    if scores.size and labels.any() and (~labels).any():
        # The operating point for what the site asks for, on the data shown; applying it stays
        # the administrator's act below (with a reason, audited).
        if math.isfinite(target_sensitivity):
            proposed = threshold_for_sensitivity(scores, labels, target=target_sensitivity)
            proposed_why = (
                f"the highest threshold flagging at least {target_sensitivity:.0%} of this "
                "data's positives, midway to the next negative below it"
            )
        elif math.isfinite(alert_budget):
            proposed = threshold_for_alert_budget(
                scores, labels, alerts_per_day=alert_budget, prevalence=prevalence,
                studies_per_day=studies_per_day,
            )  # fmt: skip
            proposed_why = (
                f"the most sensitive threshold expected to raise at most {alert_budget:g} "
                "alerts a day at the prevalence and volume above"
            )
        proposed = min(max(proposed, PROBABILITY_LOW), PROBABILITY_HIGH)
    context: dict[str, Any] = {
        "findings": [(f.value, CATALOGUE[f].label) for f in Finding],
        "finding": finding,
        "label": CATALOGUE[Finding(finding)].label,
        "card": card,
        "current": current,
        "current_policy": current_policy,
        "proposed": proposed,
        "proposed_why": proposed_why,
        "target_sensitivity": target_sensitivity if math.isfinite(target_sensitivity) else "",
        "alert_budget": alert_budget if math.isfinite(alert_budget) else "",
        "validations": validations,
        "source": source,
        "source_label": source_label,
        "prevalence": prevalence,
        "studies_per_day": studies_per_day,
        "since": since.date().isoformat(),
        "until": until.date().isoformat(),
        "history": ThresholdPolicy.objects.filter(finding=finding).select_related("changed_by")[
            :50
        ],
        "cases": int(scores.size),
        "positives": int(labels.sum()) if labels.size else 0,
        "floor": settings.VALIDATION_SENSITIVITY_FLOOR,
    }
    subgroup_rows = subgroup_table(
        cases, threshold=current, floor=settings.VALIDATION_SENSITIVITY_FLOOR
    )
    context["subgroups"] = subgroup_rows
    context["subgroups_flagged"] = sum(1 for row in subgroup_rows if row.flag)
    if scores.size and labels.any() and (~labels).any():
        result = curves(scores, labels, prevalence=prevalence, studies_per_day=studies_per_day)
        fpr, tpr = roc_points(scores, labels)
        x = result.thresholds
        context.update(
            auc=auc(scores, labels),
            at_current=at_threshold(result, current),
            at_proposed=at_threshold(result, proposed),
            roc_svg=line_plot(
                [Series("ROC", fpr, tpr)],
                title=f"ROC, AUC {auc(scores, labels):.3f}",
                x_label="1 - specificity",
                y_label="sensitivity",
                y_range=(0, 1),
                diagonal=True,
            ),
            rates_svg=line_plot(
                [
                    Series("sensitivity", x, *result.sensitivity),
                    Series("specificity", x, *result.specificity),
                    Series("PPV", x, *result.ppv),
                ],
                title="Sensitivity, specificity and PPV by threshold (95% bands)",
                x_label="threshold",
                y_label="proportion",
                y_range=(0, 1),
                marker_x=current,
            ),
            volume_svg=line_plot(
                [
                    Series("alerts per day", x, *result.alerts_per_day),
                    Series("missed per week", x, *result.missed_per_week),
                ],
                title="Alert volume and missed positives by threshold (95% bands)",
                x_label="threshold",
                y_label="studies",
                marker_x=current,
            ),
        )
    return render(request, "triage/thresholds.html", context)


@role_required(Role.ADMINISTRATOR)
def analytics_page(request: HttpRequest) -> HttpResponse:
    days = int(_float(request.GET.get("days"), 14, low=1, high=365))
    daily = analytics_reads.analytics_daily(days=days)
    if request.GET.get("format") == "csv":
        per_day = request.GET.get("series") == "daily"
        rows: list[Any] = daily if per_day else analytics_reads.analytics(days=days)
        name = f"triage-analytics-{'daily-' if per_day else ''}{days}d.csv"
        response = HttpResponse(content_type="text/csv")
        response["Content-Disposition"] = f'attachment; filename="{name}"'
        writer = csv.writer(response)
        fields = list(rows[0].__dataclass_fields__) if rows else []
        # every row says how much of the period is the demo's simulated history (0 on a site)
        writer.writerow([*fields, "simulated_studies_in_period"])
        simulated = analytics_reads.simulated_studies(days=days)
        for row in rows:
            writer.writerow([*(getattr(row, field) for field in fields), simulated])
        return response
    return render(
        request,
        "triage/analytics.html",
        {
            "rows": analytics_reads.analytics(days=days),
            "days": days,
            "simulated": analytics_reads.simulated_studies(days=days),
            "rate_cap": settings.ALERT_RATE_CAP,
            "rate_window": settings.ALERT_RATE_WINDOW_MINUTES,
            "time_series": _time_series_svgs(daily, days=days),
        },
    )


def _time_series_svgs(daily: list[analytics_reads.DailyRow], *, days: int) -> list[str]:
    """The analytics page's time series, drawn like the explorer's plots: x is days before
    today (0 = today)."""
    x = np.arange(-(days - 1), 1, dtype=float)
    by: dict[str, list[analytics_reads.DailyRow]] = {}
    for row in sorted(daily, key=lambda r: r.day):
        by.setdefault(row.finding, []).append(row)

    def values(rows: list[analytics_reads.DailyRow], field: str, scale: float = 1.0) -> np.ndarray:
        return np.array([np.nan if getattr(r, field) is None else getattr(r, field) * scale
                         for r in rows])  # fmt: skip

    def ppv_week(rows: list[analytics_reads.DailyRow]) -> np.ndarray:
        """PPV over the 7 days ending each day (a day alone has too little feedback)."""
        out = []
        for n in range(len(rows)):
            window = rows[max(0, n - 6) : n + 1]
            tp, fp = sum(r.confirmed for r in window), sum(r.false_positives for r in window)
            out.append(tp / (tp + fp) if tp + fp else np.nan)
        return np.array(out)

    everything = by.get(analytics_reads.ALL_FINDINGS, [])
    findings = [(f, CATALOGUE[f].label) for f in Finding if by.get(f.value)]
    x_range = (float(x[0]) if days > 1 else -1.0, 0.0)
    common: dict[str, Any] = {"x_label": "days before today", "x_range": x_range}
    return [
        line_plot(
            [Series(label, x, values(by[f.value], "alerts")) for f, label in findings],
            title="Alerts per day", y_label="alerts", **common,
        ),
        line_plot(
            [Series(label, x, ppv_week(by[f.value])) for f, label in findings],
            title="PPV from radiologist feedback (7 days ending each day)",
            y_label="PPV", y_range=(0, 1), **common,
        ),
        line_plot(
            [Series("median", x, values(everything, "ack_median_s")),
             Series("p90", x, values(everything, "ack_p90_s"))],
            title="Time to acknowledge an alert (seconds)", y_label="seconds", **common,
        ),
        line_plot(
            [Series("flagged", x, values(everything, "flagged_read_median_min")),
             Series("not flagged", x, values(everything, "unflagged_read_median_min"))],
            title="Received to read, median (minutes), per AI result",
            y_label="minutes", **common,
        ),
    ]  # fmt: skip


@role_required(Role.ADMINISTRATOR)
def models_page(request: HttpRequest) -> HttpResponse:
    """The model inventory: every installed model with its card's facts and checksum, how it
    runs (live, shadow, off) and who chose that, when and why; shadow results; the form that
    changes a mode."""
    if request.method == "POST":
        try:
            row = model_mode_set(
                model_name=request.POST.get("model", ""),
                mode=request.POST.get("mode", ""),
                user=request.user,
                reason=request.POST.get("reason", ""),
                location_prefix=request.POST.get("location_prefix", ""),
            )
            messages.success(
                request,
                f"{row.model_name} is now {row.get_mode_display()} for "
                f"{row.location_prefix or 'all locations'}; it applies to the next study.",
            )
        except ModelModeRefused as refusal:
            messages.error(request, str(refusal))
        return HttpResponseRedirect(reverse("admin-models"))
    entries = model_inventory()
    context = {
        "entries": entries,
        "reliability": [(entry.card, _reliability_svg(entry.card)) for entry in entries],
        "modes": ModelMode.Mode.choices,
        "shadow_results": list(shadow_runs()[:50]),
    }
    return render(request, "triage/models.html", context)


def _reliability_svg(card: ModelCard) -> str | None:
    """The card's reliability diagram on its held-out split: observed positive rate against the
    mean score of each score bin, raw and calibrated (None for a card without calibration)."""
    block = card.raw.get("calibration") if card.calibration is not None else None
    report = block.get("held_out") if isinstance(block, dict) else None
    if not isinstance(report, dict):
        return None
    series = []
    for key, label in (("reliability_raw", "raw"), ("reliability_calibrated", "calibrated")):
        points = [b for b in report.get(key, []) if b.get("count")]
        series.append(
            Series(
                f"{label} (ECE {report.get('ece_' + label, float('nan')):.3f})",
                np.array([b["mean_score"] for b in points]),
                np.array([b["observed"] for b in points]),
            )
        )
    return line_plot(
        series,
        title=f"{card.label}: reliability on {report.get('studies')} held-out phantom studies",
        x_label="mean score in the bin",
        y_label="observed positive rate",
        y_range=(0, 1),
        diagonal=True,
    )
