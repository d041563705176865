"""Django's error answers for a path no view matched (or a view's Http404 outside REST
framework) and for a view that failed: the product's HTML pages for people, `{"detail": ...}`
JSON for API and DICOMweb clients, as the API's own errors are. None says anything of the
failure or the configuration (the traceback goes to the log, not to the client)."""

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


def server_error(request: HttpRequest) -> HttpResponse:
    if request.path_info.startswith(MACHINE_PATHS):
        return JsonResponse({"detail": "Server error; it has been logged."}, status=500)
    return defaults.server_error(request)
