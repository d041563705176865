from __future__ import annotations

from typing import Any

from django.http import HttpRequest

from triage.roles import Role, user_has_role


def roles(request: HttpRequest) -> dict[str, Any]:
    user = getattr(request, "user", None)
    return {
        "is_administrator": user_has_role(user, Role.ADMINISTRATOR),
        "is_radiologist": user_has_role(user, Role.RADIOLOGIST),
    }
