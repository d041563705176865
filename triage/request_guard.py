"""Refuses, before any view, a request whose path, query or form carries a NUL character: no text
column can hold one (PostgreSQL refuses it, and the query failed as a server error), no
identifier, date or filter value contains one, and a log line should not. Answered 400 with the
reason, as JSON (`{"detail": ...}`, the API's error shape, documented by `triage.openapi`)."""

from __future__ import annotations

from collections.abc import Callable

from django.http import HttpRequest, HttpResponse, JsonResponse

NUL = "\x00"


def _carries_nul(request: HttpRequest) -> bool:
    if NUL in request.path:
        return True
    fields = list(request.GET.lists())
    # A form's fields too (the CSRF check reads them anyway); other bodies are their parsers'
    # (REST framework's CharField refuses NUL, DICOM is validated by its own reader).
    if request.content_type in ("application/x-www-form-urlencoded", "multipart/form-data"):
        fields += list(request.POST.lists())
    return any(NUL in key or any(NUL in value for value in values) for key, values in fields)


class NulRefused:
    def __init__(self, get_response: Callable[[HttpRequest], HttpResponse]) -> None:
        self.get_response = get_response

    def __call__(self, request: HttpRequest) -> HttpResponse:
        if _carries_nul(request):
            return JsonResponse(
                {"detail": "A NUL character (%00) is not allowed in the path, query or form."},
                status=400,
            )
        return self.get_response(request)
