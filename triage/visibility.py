"""Who may see an alert, and a study: the one rule the sockets, the inbox, the API, the preview,
DICOMweb and the deliveries apply.

Administrators see every alert; radiologists on duty at once and all of them once it escalates;
clinicians when told, for their locations. Imports neither `triage.alerts` nor
`triage.deliveries`: both build on it.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from django.contrib.auth import get_user_model
from django.contrib.auth.models import AbstractBaseUser, AnonymousUser
from django.db.models import QuerySet

from triage.models import Alert, StaffProfile
from triage.roles import Role, user_has_role
from worklist.locations import location_within_any, locations_q
from worklist.models import Study

ROLE_NAMES = (str(Role.RADIOLOGIST), str(Role.CLINICIAN), str(Role.ADMINISTRATOR))


@dataclass(frozen=True)
class Viewer:
    """What alert routing needs to know about a user (read once per socket)."""

    administrator: bool
    radiologist: bool
    clinician: bool
    on_duty: bool
    locations: tuple[str, ...]


def viewer_of(*, roles: set[str], profile: StaffProfile | None) -> Viewer:
    """A Viewer from the user's role names and staff profile (none: on duty, no locations)."""
    return Viewer(
        administrator=str(Role.ADMINISTRATOR) in roles,
        radiologist=str(Role.RADIOLOGIST) in roles,
        clinician=str(Role.CLINICIAN) in roles,
        on_duty=profile.on_duty if profile is not None else True,
        locations=tuple(profile.location_prefixes()) if profile is not None else (),
    )


def staff_profile_of(user: Any) -> StaffProfile | None:
    try:
        profile: StaffProfile | None = user.staff_profile
    except (StaffProfile.DoesNotExist, AttributeError):
        profile = None
    return profile


def viewer_for(user: Any) -> Viewer:
    roles = {
        str(role)
        for role in (Role.ADMINISTRATOR, Role.RADIOLOGIST, Role.CLINICIAN)
        if user_has_role(user, role)
    }
    return viewer_of(roles=roles, profile=staff_profile_of(user))


def alert_visible(viewer: Viewer, *, tier: int, clinicians_notified: bool, location: str) -> bool:
    """Administrators see every alert; radiologists on duty at once and all of them once it
    escalates; clinicians when told, for their locations."""
    if viewer.administrator:
        return True
    if viewer.radiologist:
        return tier >= 2 or viewer.on_duty
    if viewer.clinician and clinicians_notified:
        return location_within_any(location, viewer.locations)
    return False


def alert_visible_to_viewer(alert: Alert, viewer: Viewer) -> bool:
    """`alert_visible` for a loaded alert (its study joined in or fetched)."""
    return alert_visible(
        viewer,
        tier=alert.tier,
        clinicians_notified=alert.clinicians_notified,
        location=alert.study.patient_location,
    )


def alert_visible_to(alert: Alert, user: AbstractBaseUser | AnonymousUser | Any) -> bool:
    return alert_visible_to_viewer(alert, viewer_for(user))


def studies_visible_to(user: Any) -> QuerySet[Study]:
    """The studies `user` may look at (pages, previews, heat maps, DICOMweb): radiologists and
    administrators every study; clinicians the studies of their locations (the alert rule's
    location match, done in the database); anyone else none."""
    viewer = viewer_for(user)
    real = Study.objects.filter(simulated=False)  # the demo's simulated history has no images
    if viewer.administrator or viewer.radiologist:
        return real
    if viewer.clinician:
        return real.filter(locations_q("patient_location", viewer.locations))
    return Study.objects.none()


def study_visible_to(user: Any, *, study: Study) -> bool:
    viewer = viewer_for(user)
    if study.simulated:
        return False
    if viewer.administrator or viewer.radiologist:
        return True
    return viewer.clinician and location_within_any(study.patient_location, viewer.locations)


def alert_recipients(*, alert: Alert) -> list[Any]:
    """Active staff who may see `alert` now (the same rule the sockets apply)."""
    users = (
        get_user_model()
        .objects.filter(is_active=True, groups__name__in=ROLE_NAMES)
        .distinct()
        .select_related("staff_profile")
        .prefetch_related("groups")
        .order_by("pk")
    )
    return [
        user
        for user in users
        if alert_visible_to_viewer(
            alert,
            viewer_of(
                roles={group.name for group in user.groups.all()}, profile=staff_profile_of(user)
            ),
        )
    ]
