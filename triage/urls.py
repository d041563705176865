from typing import Any

from django.http import HttpRequest
from django.http.response import HttpResponseBase
from django.urls import path
from django.views.decorators.csrf import csrf_exempt

from triage import dicomweb_read as read
from triage import worklist_api as api
from triage import worklist_views as views
from triage.dicomweb import StowView

page_urls = [
    path("", views.worklist_page, name="page"),
    path("rows/", views.worklist_rows, name="rows"),
    path("studies/<int:study_id>/", views.study_page, name="study"),
    path("studies/<int:study_id>/preview/", views.preview_page, name="preview"),
    path("items/<int:item_id>/<str:action>/", views.worklist_action, name="action"),
]

api_urls = [
    path("worklist/", api.WorklistView.as_view(), name="api-worklist"),
    path("worklist/awaiting-images/", api.AwaitingImagesView.as_view(), name="api-awaiting"),
    path("worklist/<int:item_id>/claim/", api.ClaimView.as_view(), name="api-claim"),
    path("worklist/<int:item_id>/release/", api.ReleaseView.as_view(), name="api-release"),
    path("worklist/<int:item_id>/read/", api.MarkReadView.as_view(), name="api-read"),
    path("studies/<int:study_id>/", api.StudyDetailView.as_view(), name="api-study"),
    path(
        "studies/<int:study_id>/runs/<int:run_id>/heatmap.png",
        api.HeatmapView.as_view(),
        name="api-heatmap",
    ),
    path(
        "studies/<int:study_id>/runs/<int:run_id>/heatmaps/<str:instance_uid>.png",
        api.SliceHeatmapView.as_view(),
        name="api-slice-heatmap",
    ),
    path("quarantine/", api.QuarantineView.as_view(), name="api-quarantine"),
]

_stow = StowView.as_view()


@csrf_exempt  # each view checks CSRF itself for session requests (REST framework)
def _studies(request: HttpRequest, **kwargs: Any) -> HttpResponseBase:
    """/studies and /studies/{uid}: POST stores (STOW-RS), GET searches or retrieves."""
    if request.method == "POST":
        return _stow(request, study_instance_uid=kwargs.get("study_uid"))  # type: ignore[no-any-return]
    view = read.WadoRetrieve.as_view() if "study_uid" in kwargs else read.QidoStudies.as_view()
    return view(request, **kwargs)  # type: ignore[no-any-return]


_S, _SE, _I = "studies/<str:study_uid>", "/series/<str:series_uid>", "/instances/<str:instance_uid>"
dicomweb_urls = [
    path("studies", _studies, name="studies"),
    path(_S, _studies, name="study"),
    path(f"{_S}/metadata", read.WadoMetadata.as_view()),
    path(f"{_S}/series", read.QidoSeries.as_view()),
    path(f"{_S}/instances", read.QidoInstances.as_view()),
    path(f"{_S}{_SE}", read.WadoRetrieve.as_view()),
    path(f"{_S}{_SE}/metadata", read.WadoMetadata.as_view()),
    path(f"{_S}{_SE}/instances", read.QidoInstances.as_view()),
    path(f"{_S}{_SE}{_I}", read.WadoRetrieve.as_view()),
    path(f"{_S}{_SE}{_I}/metadata", read.WadoMetadata.as_view()),
    path(f"{_S}{_SE}{_I}/rendered", read.WadoRendered.as_view()),
    path(f"{_S}{_SE}{_I}/frames/<str:frame>", read.WadoFrames.as_view()),
    path(f"{_S}{_SE}{_I}/frames/<str:frame>/rendered", read.WadoRendered.as_view()),
]
