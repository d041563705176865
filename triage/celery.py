"""The Celery application: queues `default` (study bookkeeping) and `inference` (GPU workers)."""

from __future__ import annotations

import os
from typing import Any

from celery import Celery
from kombu import Queue

os.environ.setdefault("DJANGO_SETTINGS_MODULE", "triage.settings")

app = Celery("triage")


def _settings_config() -> dict[str, Any]:
    from django.conf import settings

    return dict(settings.CELERY_CONFIG)


app.add_defaults(_settings_config)
app.conf.task_queues = (Queue("default"), Queue("inference"))
app.conf.beat_schedule = {
    # Studies become ready after their quiet period; the sweep is cheap and idempotent.
    "stabilise-studies": {
        "task": "worklist.tasks.studies_stabilise",
        "schedule": 1.0,
        "options": {"expires": 5},
    },
    # Alerts nobody acknowledged in time escalate; the timer is the row's escalate_at.
    "escalate-alerts": {
        "task": "triage.tasks.alerts_escalate",
        "schedule": 5.0,
        "options": {"expires": 10},
    },
}
app.autodiscover_tasks(["worklist", "inference", "triage"])
