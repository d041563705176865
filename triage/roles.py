"""Roles are Django groups. Every page and endpoint names the roles it serves."""

from __future__ import annotations

from collections.abc import Callable
from enum import StrEnum
from functools import wraps
from typing import Any

from django.contrib.auth.decorators import login_required
from django.contrib.auth.models import AbstractBaseUser, AnonymousUser, Group
from django.core.exceptions import PermissionDenied
from django.http import HttpRequest, HttpResponse
from rest_framework.permissions import BasePermission

View = Callable[..., HttpResponse]


class Role(StrEnum):
    RADIOLOGIST = "radiologist"
    CLINICIAN = "clinician"
    ADMINISTRATOR = "administrator"
    INTEGRATION = "integration"  # machine accounts that push studies over DICOMweb


def user_has_role(user: AbstractBaseUser | AnonymousUser | Any, *roles: Role) -> bool:
    if not getattr(user, "is_authenticated", False) or not getattr(user, "is_active", False):
        return False
    return not role_names_of(user).isdisjoint(str(role) for role in roles)


def role_names_of(user: Any) -> frozenset[str]:
    """The user's group names, read once per user object (a request's, a socket's), as Django
    caches permissions on it (`_perm_cache`): a page asks several role questions."""
    cached: frozenset[str] | None = getattr(user, "_role_names_cache", None)
    if cached is None:
        groups = getattr(user, "groups", None)
        cached = (
            frozenset(groups.values_list("name", flat=True)) if groups is not None else frozenset()
        )
        user._role_names_cache = cached
    return cached


def roles_ensure() -> None:
    for role in Role:
        Group.objects.get_or_create(name=str(role))


def acting_user_id(user: AbstractBaseUser | AnonymousUser | Any) -> int:
    """The id of an authenticated user (the permission check has already run)."""
    if user.pk is None:
        raise PermissionError("an authenticated user is required")
    return int(user.pk)


def role_required(*roles: Role) -> Callable[[View], View]:
    """A page for users holding any of `roles` (sign-in first; 403 otherwise)."""

    def decorator(view: View) -> View:
        @login_required
        @wraps(view)
        def wrapped(request: HttpRequest, *args: Any, **kwargs: Any) -> HttpResponse:
            if not user_has_role(request.user, *roles):
                raise PermissionDenied("Your role does not give access to this page.")
            return view(request, *args, **kwargs)

        return wrapped

    return decorator


def roles_permission(*roles: Role, message: str) -> type[BasePermission]:
    """A REST framework permission admitting users holding any of `roles`; `message` is the
    403's reason."""

    class HasRole(BasePermission):
        def has_permission(self, request: Any, view: Any) -> bool:
            return user_has_role(request.user, *roles)

    HasRole.message = message  # type: ignore[attr-defined]
    HasRole.__name__ = HasRole.__qualname__ = "Has" + "Or".join(r.title() for r in roles)
    return HasRole
