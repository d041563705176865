"""The one rule for "is this patient location within that location prefix": the prefix itself,
or the prefix followed by a separator. So `ED` covers `ED`, `ED-RESUS-2` and `ED 4`, never
`EDUCATION-CENTRE`. Used by ingest (is the patient in the ED), alert visibility (a clinician's
locations) and threshold scopes."""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any


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


def locations_q(field: str, prefixes: Iterable[str]) -> Any:
    """`location_within_any` as a database filter on `field` (the same rule, in SQL): the
    prefix itself or the prefix followed by a character that is not a letter or digit (`\\W`
    and `_` mean that in PostgreSQL's and Python's regular expressions alike), case and
    surrounding spaces ignored. No prefixes: matches nothing."""
    import re

    from django.db.models import Q

    condition = Q(pk__in=[])
    for prefix in prefixes:
        scope = prefix.strip()
        if not scope:
            continue
        condition |= Q(**{f"{field}__iregex": rf"^\s*{re.escape(scope)}(\s*$|\W|_)"})
    return condition
