"""Thresholds set before the shipped models' scores were calibrated are on the raw scale: each
active one is replaced by its value through the finding's current card's calibration (a new
row, as every threshold change is, naming why), so a site's operating point keeps flagging the
same studies. A finding whose card has no calibration keeps its rows."""

from __future__ import annotations

from django.db import migrations
from django.utils import timezone


def forwards(apps, schema_editor):  # type: ignore[no-untyped-def]
    from inference.registry import registry_current

    ThresholdPolicy = apps.get_model("triage", "ThresholdPolicy")
    AuditEvent = apps.get_model("triage", "AuditEvent")
    registry = registry_current()
    now = timezone.now()
    for policy in ThresholdPolicy.objects.filter(active=True):
        cards = [c for c in registry.models.values() if str(c.finding) == policy.finding]
        card = cards[0] if cards else None
        if card is None or card.calibration is None:
            continue
        value = card.calibration.value(policy.value)
        policy.active = False
        policy.save(update_fields=["active"])
        ThresholdPolicy.objects.create(
            finding=policy.finding,
            location_prefix=policy.location_prefix,
            modality=policy.modality,
            value=value,
            changed_by_id=policy.changed_by_id,
            changed_at=now,
            reason=f"mapped from {policy.value:.6g} (raw) to the calibrated scale of {card.label}",
            replaces=policy,
        )
        AuditEvent.objects.create(
            action="threshold.change", actor_id=None, channel="system",
            detail={"finding": policy.finding, "from": policy.value, "to": value,
                    "reason": "scores calibrated", "model": card.label},
        )  # fmt: skip


class Migration(migrations.Migration):
    dependencies = [("triage", "0012_report_labels")]

    operations = [migrations.RunPython(forwards, migrations.RunPython.noop)]
