from django.urls import path

from triage import worklist_api as api
from triage import worklist_views as views
from triage.dicomweb import StowView

page_urls = [
    path("", views.worklist_page, name="page"),
    path("rows/", views.worklist_rows, name="rows"),
    path("studies/<int:study_id>/", views.study_page, name="study"),
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
    path("quarantine/", api.QuarantineView.as_view(), name="api-quarantine"),
]

dicomweb_urls = [
    path("studies", StowView.as_view(), name="stow"),
    path("studies/<str:study_instance_uid>", StowView.as_view(), name="stow-study"),
]
