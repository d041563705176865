"""Server-rendered pages: the worklist and the study page (audited)."""

from __future__ import annotations

from typing import Any

from django.contrib import messages
from django.core.exceptions import PermissionDenied
from django.http import Http404, HttpRequest, HttpResponse, HttpResponseRedirect
from django.shortcuts import get_object_or_404, render
from django.urls import reverse
from django.utils.http import url_has_allowed_host_and_scheme
from django.views.decorators.http import require_POST

from inference.models import InferenceRun
from triage import selectors
from triage.audit import audit_location_denied, audit_study_view
from triage.findings import FINDINGS, finding_spec
from triage.model_modes import models_in_shadow
from triage.reading import (
    ClaimConflict,
    worklist_item_claim,
    worklist_item_mark_read,
    worklist_item_release,
)
from triage.roles import Role, acting_user_id, role_required, user_has_role
from triage.serializers import findings_of, viewer_url
from triage.visibility import study_visible_to
from worklist.models import Study, WorklistItem

AWAITING_IMAGES = "awaiting_images"


def _worklist_context(request: HttpRequest) -> dict[str, Any]:
    status_filter = request.GET.get("status") or None
    if status_filter not in (None, AWAITING_IMAGES, *WorklistItem.Status.values):
        status_filter = None
    awaiting_only = status_filter == AWAITING_IMAGES
    items = [] if awaiting_only else list(selectors.worklist_items(status=status_filter)[:200])
    return {
        "rows": [{"item": item, "viewer_url": viewer_url(item.study)} for item in items],
        "awaiting": (
            list(selectors.orders_awaiting_images()[:200])
            if status_filter in (None, AWAITING_IMAGES)
            else []
        ),
        "awaiting_only": awaiting_only,
        "status_filter": status_filter or "",
        "statuses": [*WorklistItem.Status.choices, (AWAITING_IMAGES, "Awaiting images")],
        "can_read": user_has_role(request.user, Role.RADIOLOGIST),
    }


@role_required(Role.RADIOLOGIST, Role.ADMINISTRATOR)
def worklist_page(request: HttpRequest) -> HttpResponse:
    # The shadow notice is the page's, not the rows' (re-fetched on every live change).
    context = {**_worklist_context(request), "in_shadow": models_in_shadow()}
    return render(request, "worklist/worklist.html", context)


@role_required(Role.RADIOLOGIST, Role.ADMINISTRATOR)
def worklist_rows(request: HttpRequest) -> HttpResponse:
    """The table body alone: the live dashboard swaps it in when the worklist changes."""
    return render(request, "worklist/_rows.html", _worklist_context(request))


@role_required(Role.RADIOLOGIST, Role.ADMINISTRATOR)
def study_page(request: HttpRequest, study_id: int) -> HttpResponse:
    try:
        study = selectors.study_detail(study_id=study_id)
    except Study.DoesNotExist as missing:
        raise Http404("No such study.") from missing
    audit_study_view(request=request, study_id=study.pk, channel="page")
    return render(
        request,
        "worklist/study.html",
        {
            "study": study,
            "item": getattr(study, "worklist_item", None),
            "viewer_url": viewer_url(study),
            "findings": findings_of(study),
            "can_read": user_has_role(request.user, Role.RADIOLOGIST),
        },
    )


# Window presets per finding (center, width in HU); CT only, radiographs use the file's window.
WINDOW_PRESETS: dict[str, list[tuple[str, int, int]]] = {
    "intracranial_hemorrhage": [("Brain", 40, 80), ("Subdural", 75, 215), ("Stroke", 32, 8)],
    "pulmonary_embolism": [("PE", 100, 700), ("Mediastinum", 50, 350), ("Lung", -600, 1500)],
    "pneumothorax": [("Lung", -600, 1500), ("Mediastinum", 50, 350)],
    "fracture": [("Bone", 500, 2000), ("Soft tissue", 50, 400)],
}
DEFAULT_PRESETS = [("Soft tissue", 50, 400), ("Lung", -600, 1500), ("Bone", 500, 2000)]


@role_required(Role.RADIOLOGIST, Role.ADMINISTRATOR, Role.CLINICIAN)
def preview_page(request: HttpRequest, study_id: int) -> HttpResponse:
    """The preview viewer: the flagged (else the first) series as a stack of rendered frames,
    the key slice first, window presets for the finding, the model's heat map on every slice.
    For radiologists and administrators, and for clinicians the studies of their locations
    (opened from their inbox). Labelled "preview - not for diagnosis"; opening it is a view of
    the study (audited)."""
    try:
        study = selectors.study_detail(study_id=study_id)
    except Study.DoesNotExist as missing:
        raise Http404("No such study.") from missing
    if not study_visible_to(request.user, study=study):
        audit_location_denied(request=request, study_id=study.pk, channel="viewer")
        raise Http404("No such study among your locations'.")
    # The study's latest routing only: never a shadow run (administrators' eyes only, on
    # /manage/models/) nor one a re-routing superseded.
    current: list[InferenceRun] = getattr(study, "current_runs", [])  # study_detail's prefetch
    runs = [run for run in current if run.state == "complete"]
    run = max(runs, key=lambda r: (bool(r.flagged), r.score or 0.0), default=None)
    series = run.series if run is not None else study.series.order_by("series_number").first()
    instances = (
        list(series.instances.order_by("instance_number", "pk").values_list(
            "sop_instance_uid", flat=True))
        if series is not None else []
    )  # fmt: skip
    key = run.key_instance.sop_instance_uid if run is not None and run.key_instance else None
    by_uid = {uid: score for uid, score in (run.slice_scores if run is not None else [])}
    # The slices the model scored highest (up to 5, at or above the run's threshold), in
    # stack order: marked on the slider and stepped through by "Next suspicious slice".
    threshold = run.threshold if run is not None and run.threshold is not None else 0.5
    ranked = sorted(
        (i for i, uid in enumerate(instances) if by_uid.get(uid, 0.0) >= threshold),
        key=lambda i: -by_uid[instances[i]],
    )[:5]
    audit_study_view(request=request, study_id=study.pk, channel="viewer")
    finding = run.finding if run is not None else ""
    return render(
        request,
        "worklist/preview.html",
        {
            "study": study,
            "series": series,
            "instances": instances,
            "key_index": instances.index(key) if key in instances else 0,
            "run": run,
            "finding_label": finding_spec(finding).label if finding in FINDINGS else "",
            # Each slice's overlay is `heat_base` + its SOP Instance UID + ".png".
            "heat_base": (
                reverse(
                    "worklist-api:api-slice-heatmap", args=[study.pk, run.pk, "0"]
                ).removesuffix("0.png")
                if run is not None and run.slice_scores
                else ""
            ),
            "back_to_inbox": not user_has_role(request.user, Role.RADIOLOGIST, Role.ADMINISTRATOR),
            "presets": WINDOW_PRESETS.get(finding, DEFAULT_PRESETS),
            "suspicious": sorted(ranked),
            "suspicious_scores": {i: by_uid[instances[i]] for i in ranked},
        },
    )


_ACTIONS = {
    "claim": worklist_item_claim,
    "release": worklist_item_release,
    "read": worklist_item_mark_read,
}


@require_POST
@role_required(Role.RADIOLOGIST)
def worklist_action(request: HttpRequest, item_id: int, action: str) -> HttpResponse:
    service = _ACTIONS.get(action)
    if service is None:
        raise PermissionDenied("Unknown action.")
    item = get_object_or_404(WorklistItem, pk=item_id)
    try:
        service(item_id=item.pk, user_id=acting_user_id(request.user), channel="page")
    except ClaimConflict as conflict:
        messages.error(request, str(conflict))
    return HttpResponseRedirect(_safe_next(request))


def _safe_next(request: HttpRequest) -> str:
    """The posted `next` when it stays on this site, else the worklist (no open redirect)."""
    target = request.POST.get("next", "")
    if target and url_has_allowed_host_and_scheme(
        target, allowed_hosts={request.get_host()}, require_https=request.is_secure()
    ):
        return target
    return reverse("worklist:page")
