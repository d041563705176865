"""Django's error answers for a path no view matched (or a view's Http404 outside REST
framework): the product's HTML pages for people, `{"detail": ...}` JSON for API and DICOMweb
clients, as the API's own errors are."""

from __future__ import annotations

from django.http import HttpRequest, HttpResponse, JsonResponse
from django.views import defaults

MACHINE_PATHS = ("/api/", "/dicomweb/")


def not_found(request: HttpRequest, exception: Exception) -> HttpResponse:
    if request.path_info.startswith(MACHINE_PATHS):
        return JsonResponse({"detail": "Not found."}, status=404)
    return defaults.page_not_found(request, exception)


def bad_request(request: HttpRequest, exception: Exception) -> HttpResponse:
    if request.path_info.startswith(MACHINE_PATHS):
        return JsonResponse({"detail": "Bad request."}, status=400)
    return defaults.bad_request(request, exception)
