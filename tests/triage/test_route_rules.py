"""Every route in the URL configuration has a rule here, and each rule holds: anonymous users
are sent to sign in (pages) or answered 401 (API, DICOMweb); users without one of the route's
roles are answered 403; users with one are let through (whatever the object's answer: 200,
400, 404...). The routes are read from the URLconf, so a new route without a rule fails."""

from __future__ import annotations

import re
from collections.abc import Iterator

import pytest
from django.test import Client
from django.urls import URLPattern, URLResolver, get_resolver

RAD, CLIN, ADMIN, INTEG, NOBODY = "rad", "clin", "admin", "modality", "nobody"
EVERY_ROLE = (RAD, CLIN, ADMIN, INTEG, NOBODY)
READERS = (RAD, ADMIN)
IMAGES = (RAD, ADMIN, CLIN)  # clinicians: their locations' studies (404 for the others)
ALERTS = (RAD, CLIN, ADMIN)

# route -> {method: roles let through}. PUBLIC routes are open by design.
PUBLIC = {"", "accounts/login/", "accounts/logout/"}
RULES: dict[str, dict[str, tuple[str, ...]]] = {
    "worklist/": {"GET": READERS},
    "worklist/rows/": {"GET": READERS},
    "worklist/studies/<int:study_id>/": {"GET": READERS},
    "worklist/studies/<int:study_id>/preview/": {"GET": IMAGES},
    "worklist/items/<int:item_id>/<str:action>/": {"POST": (RAD,)},
    "worklist/studies/<int:study_id>/feedback/": {"POST": (RAD,)},
    "api/worklist/": {"GET": READERS},
    "api/worklist/awaiting-images/": {"GET": READERS},
    "api/worklist/<int:item_id>/claim/": {"POST": (RAD,)},
    "api/worklist/<int:item_id>/release/": {"POST": (RAD,)},
    "api/worklist/<int:item_id>/read/": {"POST": (RAD,)},
    "api/studies/<int:study_id>/": {"GET": READERS},
    "api/studies/<int:study_id>/runs/<int:run_id>/heatmap.png": {"GET": IMAGES},
    "api/studies/<int:study_id>/runs/<int:run_id>/heatmaps/<str:instance_uid>.png": {"GET": IMAGES},
    "api/studies/<int:study_id>/feedback/": {"POST": (RAD,)},
    "api/quarantine/": {"GET": (ADMIN,)},
    "api/schema/": {"GET": EVERY_ROLE},  # signed-in users; not anonymous
    "api/alerts/": {"GET": ALERTS},
    "api/alerts/<int:alert_id>/ack/": {"POST": ALERTS},
    "api/alerts/<int:alert_id>/confirm/": {"POST": (RAD,)},
    "api/alerts/<int:alert_id>/dismiss/": {"POST": (RAD,)},
    "manage/thresholds/": {"GET": (ADMIN,)},
    "manage/analytics/": {"GET": (ADMIN,)},
    "manage/outbound/": {"GET": (ADMIN,)},
    "manage/models/": {"GET": (ADMIN,)},
    "alerts/": {"GET": ALERTS},
    "alerts/rows/": {"GET": ALERTS},
    "alerts/<int:alert_id>/ack/": {"POST": ALERTS},
    "dicomweb/studies": {"GET": IMAGES, "POST": (INTEG, ADMIN)},
    "dicomweb/studies/<str:study_uid>": {"GET": IMAGES, "POST": (INTEG, ADMIN)},
}
DICOMWEB_READ = (
    "/metadata", "/series", "/instances", "/series/<str:series_uid>",
    "/series/<str:series_uid>/metadata", "/series/<str:series_uid>/instances",
    "/series/<str:series_uid>/instances/<str:instance_uid>",
    "/series/<str:series_uid>/instances/<str:instance_uid>/metadata",
    "/series/<str:series_uid>/instances/<str:instance_uid>/rendered",
    "/series/<str:series_uid>/instances/<str:instance_uid>/frames/<str:frame>",
    "/series/<str:series_uid>/instances/<str:instance_uid>/frames/<str:frame>/rendered",
)  # fmt: skip
for tail in DICOMWEB_READ:
    RULES[f"dicomweb/studies/<str:study_uid>{tail}"] = {"GET": IMAGES}

SAMPLE = {"int": "987654", "str": "1.2.3.4", "path": "x"}
SAMPLE_BY_NAME = {"action": "claim", "frame": "1"}


def routes(patterns: list[URLPattern | URLResolver], prefix: str = "") -> Iterator[str]:
    for pattern in patterns:
        if isinstance(pattern, URLResolver):
            if str(pattern.pattern) == "admin/":
                continue  # Django admin: staff only, checked below
            yield from routes(pattern.url_patterns, prefix + str(pattern.pattern))
        else:
            yield prefix + str(pattern.pattern)


def concrete(route: str) -> str:
    def fill(match: re.Match[str]) -> str:
        kind, name = match.group(1), match.group(2)
        return SAMPLE_BY_NAME.get(name, SAMPLE[kind])

    return "/" + re.sub(r"<(\w+):(\w+)>", fill, route)


def test_every_route_has_a_rule():
    unruled = [route for route in routes(get_resolver().url_patterns)
               if route not in RULES and route not in PUBLIC]  # fmt: skip
    assert not unruled, f"routes without an access rule in this test: {unruled}"
    stale = [route for route in RULES if route not in set(routes(get_resolver().url_patterns))]
    assert not stale, f"rules for routes that no longer exist: {stale}"


def _ask(client: Client, method: str, url: str):  # type: ignore[no-untyped-def]
    if method == "GET":
        return client.get(url)
    return client.post(url, data=b"{}", content_type="application/json")


@pytest.mark.parametrize("route", sorted(RULES))
def test_the_rule_holds(route, db, users, settings):
    settings.DICOMWEB_INTEGRATION_READ = False
    url = concrete(route)
    by_name = {user.username: user for user in vars(users).values()}
    for method, allowed in RULES[route].items():
        anonymous = _ask(Client(), method, url)
        if route.startswith(("api/", "dicomweb/")):
            assert anonymous.status_code == 401, (method, url, anonymous.status_code)
        else:
            assert anonymous.status_code == 302, (method, url, anonymous.status_code)
            assert anonymous["Location"].startswith("/accounts/login/"), url
        for role in EVERY_ROLE:
            client = Client()
            client.force_login(by_name[role])
            answer = _ask(client, method, url)
            if role in allowed:
                assert answer.status_code not in (401, 403), (role, method, url)
                assert answer.status_code < 500, (role, method, url, answer.status_code)
            else:
                assert answer.status_code == 403, (role, method, url, answer.status_code)


def test_the_django_admin_is_for_staff_only(db, users, client):
    for user in (None, users.radiologist, users.administrator):
        if user is not None:
            client.force_login(user)
        answer = client.get("/admin/")
        assert answer.status_code == 302 and "/admin/login/" in answer["Location"]


# Socket route -> roles let through; every other signed-in role is closed with 4403, anonymous
# with 4401. The catch-all route (every other path) answers 4404, tested in test_alerts.py.
SOCKET_RULES: dict[str, tuple[str, ...]] = {
    "ws/worklist/": READERS,
    "ws/alerts/": ALERTS,
}
SOCKET_CATCH_ALL = ""


def socket_routes() -> list[str]:
    from triage.config.routing import websocket_urlpatterns

    return [str(pattern.pattern) for pattern in websocket_urlpatterns]


def test_every_socket_route_has_a_rule():
    known = set(SOCKET_RULES) | {SOCKET_CATCH_ALL}
    assert [route for route in socket_routes() if route not in known] == []
    assert [route for route in SOCKET_RULES if route not in socket_routes()] == []


@pytest.mark.parametrize("route", sorted(SOCKET_RULES))
@pytest.mark.django_db(transaction=True)
async def test_the_socket_rule_holds(route, users):
    from tests.triage.test_alerts import connect

    by_name = {user.username: user for user in vars(users).values()}
    communicator, connected, code = await connect(f"/{route}")
    assert (connected, code) == (False, 4401), route
    for role in EVERY_ROLE:
        communicator, connected, code = await connect(f"/{route}", by_name[role])
        if role in SOCKET_RULES[route]:
            assert connected, (role, route, code)
            await communicator.disconnect()
        else:
            assert (connected, code) == (False, 4403), (role, route, code)
