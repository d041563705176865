"""Which pages may open the product's WebSockets: the product's own origin only.

Channels' AllowedHostsOriginValidator compares the Origin's host with ALLOWED_HOSTS and ignores
its scheme and port, so a page on `http://localhost:9999` could open a socket on the product at
`http://localhost:8000` with the user's cookie. Here the Origin must be exactly the socket's own
origin (the scheme the socket came in on, ws -> http and wss -> https, and the Host header with
its port), with a host in ALLOWED_HOSTS, or be listed in CSRF_TRUSTED_ORIGINS (a site whose
proxy changes the scheme or port). Anything else is refused at the handshake (HTTP 403).
"""

from __future__ import annotations

from typing import Any
from urllib.parse import urlsplit

from channels.db import database_sync_to_async
from channels.security.websocket import WebsocketDenier
from django.conf import settings
from django.http.request import split_domain_port, validate_host

from triage.audit import audit_record, ip_or_none

DEFAULT_PORTS = {"http": 80, "https": 443}


def _origin_tuple(value: str) -> tuple[str, str, int] | None:
    try:
        parts = urlsplit(value)
        port = parts.port
    except ValueError:
        return None
    scheme = (parts.scheme or "").lower()
    if scheme not in DEFAULT_PORTS or not parts.hostname:
        return None
    return scheme, parts.hostname.lower(), port or DEFAULT_PORTS[scheme]


def origin_allowed(*, origin: str, host: str, secure: bool) -> bool:
    """Is a socket from a page at `origin` allowed, the socket having come to `host` (the Host
    header) over TLS or not?"""
    theirs = _origin_tuple(origin)
    if theirs is None:
        return False
    trusted = {_origin_tuple(item) for item in settings.CSRF_TRUSTED_ORIGINS}
    if theirs in trusted:
        return True
    name, port = split_domain_port(host)
    if not name or not validate_host(name, settings.ALLOWED_HOSTS):
        return False
    scheme = "https" if secure else "http"
    bare = name.lower().removeprefix("[").removesuffix("]")  # urlsplit's hostname has no []
    ours = (scheme, bare, int(port) if port.isascii() and port.isdigit() else DEFAULT_PORTS[scheme])
    return theirs == ours


class SameOriginValidator:
    """ASGI middleware for the websocket router: refuse a handshake whose Origin is not the
    product's own (see the module)."""

    def __init__(self, application: Any) -> None:
        self.application = application

    async def __call__(self, scope: dict[str, Any], receive: Any, send: Any) -> Any:
        headers = dict(scope.get("headers") or [])
        origin = headers.get(b"origin", b"").decode("latin-1")
        host = headers.get(b"host", b"").decode("latin-1")
        if origin_allowed(origin=origin, host=host, secure=scope.get("scheme") == "wss"):
            return await self.application(scope, receive, send)
        client = scope.get("client") or ("", 0)
        await database_sync_to_async(audit_record)(
            action="access.denied",
            actor_id=None,
            channel="socket",
            remote_addr=ip_or_none(str(client[0] or "")),
            detail={"path": str(scope.get("path", ""))[:200], "status": 403,
                    "reason": "origin", "origin": origin[:200]},
        )  # fmt: skip
        denier = WebsocketDenier()
        return await denier(scope, receive, send)
