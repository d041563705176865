"""The one rule for "is this patient location within that location prefix": the prefix itself,
or the prefix followed by a separator. So `ED` covers `ED`, `ED-RESUS-2` and `ED 4`, never
`EDUCATION-CENTRE`. Used by ingest (is the patient in the ED), alert visibility (a clinician's
locations) and threshold scopes."""

from __future__ import annotations

from collections.abc import Iterable


def location_within(location: str, prefix: str) -> bool:
    normalised, scope = location.strip().upper(), prefix.strip().upper()
    if not scope or not normalised.startswith(scope):
        return False
    return len(normalised) == len(scope) or not normalised[len(scope)].isalnum()


def location_within_any(location: str, prefixes: Iterable[str]) -> bool:
    return any(location_within(location, prefix) for prefix in prefixes)


def location_is_emergency(location: str) -> bool:
    """Is a patient at `location` in the emergency department (WORKLIST_ED_LOCATIONS)?"""
    from django.conf import settings

    return location_within_any(location, settings.WORKLIST_ED_LOCATIONS)
