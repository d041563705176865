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

from inference.registry import registry_current
from triage import analytics as analytics_reads
from triage.findings import CATALOGUE, FINDINGS, Finding
from triage.models import ThresholdPolicy, ValidationRun
from triage.operating_points import at_threshold, auc, curves, roc_points
from triage.plots import Series, line_plot
from triage.roles import Role, role_required
from triage.selectors import validation_arrays
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
                value=_float(params.get("proposed"), current, low=0.01, high=0.99),
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
    source = params.get("source") or (f"validation:{validations[0].pk}" if validations else "live")
    now = timezone.now()
    since = _date(params.get("since"), now - timedelta(days=30))
    until = _date(params.get("until"), now)
    if source.startswith("validation:"):
        chosen = next((v for v in validations if f"validation:{v.pk}" == source), None)
        scores, labels = validation_arrays(chosen) if chosen else (np.array([]), np.array([], bool))
        source_label = f"validation run #{chosen.pk}: {chosen.dataset}" if chosen else "none"
    else:
        scores, labels = analytics_reads.live_scores_and_truth(
            finding=finding, since=since, until=until
        )
        source_label = f"live radiologist feedback {since:%Y-%m-%d} to {until:%Y-%m-%d}"
    live_prevalence = float(labels.mean()) if source == "live" and labels.size >= 30 else None
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
    proposed = _float(params.get("proposed"), current, low=0.01, high=0.99)
    context: dict[str, Any] = {
        "findings": [(f.value, CATALOGUE[f].label) for f in Finding],
        "finding": finding,
        "label": CATALOGUE[Finding(finding)].label,
        "card": card,
        "current": current,
        "current_policy": current_policy,
        "proposed": proposed,
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
    }
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
    rows = analytics_reads.analytics(days=days)
    if request.GET.get("format") == "csv":
        response = HttpResponse(content_type="text/csv")
        response["Content-Disposition"] = f'attachment; filename="triage-analytics-{days}d.csv"'
        writer = csv.writer(response)
        fields = list(rows[0].__dataclass_fields__) if rows else []
        writer.writerow(fields)
        for row in rows:
            writer.writerow([getattr(row, field) for field in fields])
        return response
    return render(
        request,
        "triage/analytics.html",
        {
            "rows": rows,
            "days": days,
            "rate_cap": settings.ALERT_RATE_CAP,
            "rate_window": settings.ALERT_RATE_WINDOW_MINUTES,
        },
    )
