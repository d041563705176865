"""Roles are Django groups. Every page and endpoint names the roles it serves."""

from __future__ import annotations

from enum import StrEnum
from typing import Any

from django.contrib.auth.models import AbstractBaseUser, AnonymousUser, Group


class Role(StrEnum):
    RADIOLOGIST = "radiologist"
    CLINICIAN = "clinician"
    ADMINISTRATOR = "administrator"
    INTEGRATION = "integration"  # machine accounts that push studies over DICOMweb


def user_has_role(user: AbstractBaseUser | AnonymousUser | Any, *roles: Role) -> bool:
    if not getattr(user, "is_authenticated", False) or not getattr(user, "is_active", False):
        return False
    names = {str(role) for role in roles}
    groups = getattr(user, "groups", None)
    return groups is not None and bool(groups.filter(name__in=names).exists())


def roles_ensure() -> None:
    for role in Role:
        Group.objects.get_or_create(name=str(role))


def acting_user_id(user: AbstractBaseUser | AnonymousUser | Any) -> int:
    """The id of an authenticated user (the permission check has already run)."""
    if user.pk is None:
        raise PermissionError("an authenticated user is required")
    return int(user.pk)
