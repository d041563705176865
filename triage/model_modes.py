"""The one place a model's mode is read and changed: live, shadow or off, for every location or
for those within a location prefix (a site trialling a model in one department first).

Shadow mode lets a site trial a model on live traffic before go-live: the model runs on every
study it applies to and its result (score, the flag it would have raised) is stored for
administrators, with no flag, no deadline change, no alert and nothing sent out. Off: the model
is not run. The mode is read when a study is routed, so a change applies to the next study on
every worker without a restart. Every change is an administrator's, with a reason, audited.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from django.db import transaction
from django.db.models import QuerySet

from inference.models import InferenceRun
from inference.registry import ModelCard, registry_current
from triage.audit import audit_record
from triage.models import ModelMode
from triage.roles import Role, user_has_role
from worklist.locations import location_within

Mode = ModelMode.Mode


class ModelModeRefused(Exception):
    pass


def mode_row_for(*, model_name: str, location: str = "") -> ModelMode | None:
    """The active row that decides the model's mode at `location`: the narrowest scope that
    contains it (the longest prefix; every location last), the later of equals."""
    candidates = [
        row
        for row in ModelMode.objects.filter(model_name=model_name, active=True)
        if not row.location_prefix or location_within(location, row.location_prefix)
    ]
    if not candidates:
        return None
    return max(candidates, key=lambda row: (len(row.location_prefix), row.changed_at, row.pk))


def model_modes_for(*, location: str) -> dict[str, str]:
    """Every registered model's mode for a study at `location` (live unless a row says)."""
    modes = {}
    for name in registry_current().models:
        row = mode_row_for(model_name=name, location=location)
        modes[name] = row.mode if row is not None else Mode.LIVE
    return modes


def model_mode_set(
    *, model_name: str, mode: str, user: Any, reason: str, location_prefix: str = ""
) -> ModelMode:
    """Administrators only; a reason is required; the previous row of that scope is retired."""
    if not user_has_role(user, Role.ADMINISTRATOR):
        raise ModelModeRefused("Only administrators may change how a model runs.")
    if model_name not in registry_current().models:
        raise ModelModeRefused("No such model is installed.")
    if mode not in Mode.values:
        raise ModelModeRefused("A mode is live, shadow or off.")
    if not reason.strip():
        raise ModelModeRefused("Say why the model's mode changes.")
    location_prefix = location_prefix.strip().upper()
    if len(location_prefix) > 64:
        raise ModelModeRefused("A location prefix has at most 64 characters.")
    with transaction.atomic():
        row, previous = ModelMode.replace_active(
            scope={"model_name": model_name, "location_prefix": location_prefix},
            user=user,
            reason=reason,
            mode=mode,
        )
        audit_record(
            action="model.mode",
            actor_id=user.pk,
            channel="page",
            detail={
                "model": model_name,
                "scope": {"location_prefix": location_prefix},
                "from": previous.mode if previous else Mode.LIVE,
                "to": mode,
                "reason": row.reason,
            },
        )
    return row


@dataclass(frozen=True, kw_only=True)
class InventoryEntry:
    """An installed model as the inventory page shows it."""

    card: ModelCard
    modes: list[ModelMode]  # active rows, every-location first
    shadow_results: int
    shadow_would_flag: int


def model_inventory() -> list[InventoryEntry]:
    entries = []
    for name, card in registry_current().models.items():
        rows = sorted(
            ModelMode.objects.filter(model_name=name, active=True).select_related("changed_by"),
            key=lambda row: (bool(row.location_prefix), row.location_prefix),
        )
        shadow = shadow_runs(model_name=name)
        entries.append(
            InventoryEntry(
                card=card,
                modes=rows,
                shadow_results=shadow.count(),
                shadow_would_flag=shadow.filter(flagged=True).count(),
            )
        )
    return entries


def shadow_runs(*, model_name: str | None = None) -> QuerySet[InferenceRun]:
    """Shadow results, newest first (administrators' eyes only)."""
    runs = InferenceRun.objects.filter(shadow=True, state=InferenceRun.State.COMPLETE)
    if model_name is not None:
        runs = runs.filter(model_name=model_name)
    return runs.select_related("study").order_by("-finished_at", "-id")


def models_in_shadow() -> list[tuple[str, str]]:
    """(model label, scope) of every active shadow row: what the worklist tells its readers."""
    cards = registry_current().models
    return [
        (cards[row.model_name].label if row.model_name in cards else row.model_name,
         row.location_prefix or "all locations")
        for row in ModelMode.objects.filter(active=True, mode=Mode.SHADOW).order_by("model_name")
    ]  # fmt: skip
