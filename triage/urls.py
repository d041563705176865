from django.contrib import admin
from django.contrib.auth import views as auth_views
from django.urls import include, path
from django.views.generic import RedirectView
from drf_spectacular.views import SpectacularAPIView

from worklist.urls import api_urls, dicomweb_urls, page_urls

urlpatterns = [
    path("", RedirectView.as_view(pattern_name="worklist:page", permanent=False)),
    path("accounts/login/", auth_views.LoginView.as_view(), name="login"),
    path("accounts/logout/", auth_views.LogoutView.as_view(), name="logout"),
    path("admin/", admin.site.urls),
    path("worklist/", include((page_urls, "worklist"))),
    path("api/", include((api_urls, "worklist-api"))),
    path("api/schema/", SpectacularAPIView.as_view(), name="schema"),
    path("dicomweb/", include((dicomweb_urls, "dicomweb"))),
]
