"""The one place a finding's alert threshold is read and changed.

The threshold is the most specific active policy an administrator set (finding + location
prefix + modality), else the model card's operating point. It is read at every result, so a
change applies to the next result on every worker without a restart.
"""

from __future__ import annotations

from typing import Any

from django.db import transaction

from inference.registry import ModelCard
from triage.audit import audit_record
from triage.findings import FINDINGS
from triage.models import ThresholdPolicy
from triage.roles import Role, user_has_role
from worklist.locations import location_within


class ThresholdChangeRefused(Exception):
    pass


def _matches(policy: ThresholdPolicy, *, location: str, modality: str) -> bool:
    if policy.location_prefix and not location_within(location, policy.location_prefix):
        return False
    return not (policy.modality and policy.modality.upper() != modality.upper())


def policy_for(*, finding: str, location: str = "", modality: str = "") -> ThresholdPolicy | None:
    candidates = [
        policy
        for policy in ThresholdPolicy.objects.filter(finding=finding, active=True)
        if _matches(policy, location=location, modality=modality)
    ]
    if not candidates:
        return None
    return max(candidates, key=lambda p: (bool(p.location_prefix) + bool(p.modality), p.changed_at))


def threshold_for(*, card: ModelCard, study: Any = None) -> float:
    policy = policy_for(
        finding=str(card.finding),
        location=getattr(study, "patient_location", "") or "",
        modality=getattr(study, "modality", "") or "",
    )
    return policy.value if policy is not None else card.threshold


def threshold_set(
    *,
    finding: str,
    value: float,
    user: Any,
    reason: str,
    location_prefix: str = "",
    modality: str = "",
) -> ThresholdPolicy:
    """Administrators only; a reason is required; the previous policy of that scope is retired."""
    if not user_has_role(user, Role.ADMINISTRATOR):
        raise ThresholdChangeRefused("Only administrators may change thresholds.")
    if not reason.strip():
        raise ThresholdChangeRefused("Say why the threshold changes.")
    if not 0.0 < value < 1.0:
        raise ThresholdChangeRefused("A threshold is a probability between 0 and 1.")
    if finding not in FINDINGS:
        raise ThresholdChangeRefused("Unknown finding.")
    if len(location_prefix.strip()) > 64 or len(modality.strip()) > 16:
        raise ThresholdChangeRefused(
            "A location prefix has at most 64 characters and a modality at most 16."
        )
    location_prefix, modality = location_prefix.strip(), modality.strip()
    with transaction.atomic():
        policy, previous = ThresholdPolicy.replace_active(
            scope={"finding": finding, "location_prefix": location_prefix.upper(),
                   "modality": modality.upper()},
            user=user,
            reason=reason,
            value=value,
        )  # fmt: skip
        audit_record(
            action="threshold.change",
            actor_id=user.pk,
            channel="page",
            detail={
                "finding": finding,
                "scope": {"location_prefix": policy.location_prefix, "modality": policy.modality},
                "from": previous.value if previous else None,
                "to": value,
                "reason": policy.reason,
            },
        )
    return policy
