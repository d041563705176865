from django.contrib import admin
from django.contrib.auth import views as auth_views
from django.urls import include, path
from drf_spectacular.views import SpectacularAPIView

from triage import admin_views
from triage import api as alert_api
from triage import views as alert_views
from triage.outbound.pages import outbound_page
from triage.signin import ThrottledAdminAuthenticationForm, ThrottledAuthenticationForm
from triage.urls import api_urls, dicomweb_urls, page_urls

admin.site.login_form = ThrottledAdminAuthenticationForm

urlpatterns = [
    path("", alert_views.home, name="home"),
    path(
        "accounts/login/",
        auth_views.LoginView.as_view(authentication_form=ThrottledAuthenticationForm),
        name="login",
    ),
    path("accounts/logout/", auth_views.LogoutView.as_view(), name="logout"),
    path("admin/", admin.site.urls),
    path("worklist/", include((page_urls, "worklist"))),
    path("api/", include((api_urls, "worklist-api"))),
    path("api/schema/", SpectacularAPIView.as_view(), name="schema"),
    path("api/alerts/", alert_api.AlertListView.as_view(), name="api-alerts"),
    path(
        "api/alerts/<int:alert_id>/ack/", alert_api.AcknowledgeView.as_view(), name="api-alert-ack"
    ),
    path(
        "api/alerts/<int:alert_id>/confirm/",
        alert_api.ConfirmView.as_view(),
        name="api-alert-confirm",
    ),
    path(
        "api/alerts/<int:alert_id>/dismiss/",
        alert_api.DismissView.as_view(),
        name="api-alert-dismiss",
    ),
    path("manage/thresholds/", admin_views.thresholds_page, name="admin-thresholds"),
    path("manage/analytics/", admin_views.analytics_page, name="admin-analytics"),
    path("manage/outbound/", outbound_page, name="admin-outbound"),
    path("manage/models/", admin_views.models_page, name="admin-models"),
    path(
        "api/studies/<int:study_id>/feedback/",
        alert_api.FeedbackView.as_view(),
        name="api-feedback",
    ),
    path(
        "worklist/studies/<int:study_id>/feedback/",
        alert_views.study_feedback,
        name="study-feedback",
    ),
    path("alerts/", alert_views.inbox_page, name="inbox"),
    path("alerts/rows/", alert_views.inbox_rows, name="inbox-rows"),
    path("alerts/<int:alert_id>/ack/", alert_views.inbox_acknowledge, name="inbox-ack"),
    path("dicomweb/", include((dicomweb_urls, "dicomweb"))),
]

handler404 = "triage.error_pages.not_found"
handler400 = "triage.error_pages.bad_request"
handler500 = "triage.error_pages.server_error"
