"""ASGI entry point: HTTP through Django (with the DICOMweb body limit), WebSockets through
Channels."""

from __future__ import annotations

import os
from typing import Any

os.environ.setdefault("DJANGO_SETTINGS_MODULE", "triage.config.settings")
# The pool is on in the ASGI server (see DATABASES in the settings): set while the settings load,
# then taken back out, so that processes this one starts do not inherit it.
_POOL_SET_HERE = "DATABASE_POOL" not in os.environ
if _POOL_SET_HERE:
    os.environ["DATABASE_POOL"] = "1"

import django  # noqa: E402
from channels.auth import AuthMiddlewareStack  # noqa: E402
from channels.routing import ProtocolTypeRouter, URLRouter  # noqa: E402
from django.core.handlers.asgi import ASGIHandler  # noqa: E402


class DjangoHttp(ASGIHandler):
    """Django's handler, sending a streamed body in 1 MiB messages instead of 64 KiB: a WADO-RS
    series retrieve is a hundred megabytes, and each message costs a trip through the server's
    event loop (measured in bench/dicomweb.py)."""

    chunk_size = 1 << 20


django.setup(set_prefix=False)
if _POOL_SET_HERE:
    del os.environ["DATABASE_POOL"]
django_http = DjangoHttp()
# Load the URL configuration (and every view module it imports) now, not on the first
# `reverse()`: that is inside the first alert frame a socket sends, which waited ~2 s for the
# imports (tests/triage/test_redis_restart.py found it).
from django.urls import get_resolver  # noqa: E402

get_resolver().url_patterns  # noqa: B018 - evaluated for its imports

from django.conf import settings  # noqa: E402

from triage.body_limit import RequestBodyLimit  # noqa: E402
from triage.config.routing import websocket_urlpatterns  # noqa: E402
from triage.socket_origin import SameOriginValidator  # noqa: E402

http_app: Any = RequestBodyLimit(django_http)
if settings.SERVE_STATIC:
    from django.contrib.staticfiles.handlers import ASGIStaticFilesHandler
    from django.core.exceptions import SuspiciousFileOperation
    from django.http import FileResponse, Http404, HttpRequest

    class StaticFiles(ASGIStaticFilesHandler):
        """A path that would leave the static folders (`..`) is a 404, not a server error."""

        def serve(self, request: HttpRequest) -> FileResponse:
            try:
                return super().serve(request)
            except SuspiciousFileOperation as outside:
                raise Http404("No such static file.") from outside

    http_app = StaticFiles(http_app)  # type: ignore[arg-type]

application = ProtocolTypeRouter(
    {
        "http": http_app,
        "websocket": SameOriginValidator(AuthMiddlewareStack(URLRouter(websocket_urlpatterns))),
    }
)
