"""The Celery application: queues `default` (study bookkeeping), `inference` (GPU workers) and
`outbound` (results to PACS and RIS; a worker started without -Q consumes all three),
configured from the Django settings' CELERY_ namespace, and beat's one periodic entry."""

from __future__ import annotations

import os

from celery import Celery
from kombu import Queue

os.environ.setdefault("DJANGO_SETTINGS_MODULE", "triage.config.settings")

app = Celery("triage")
app.config_from_object("django.conf:settings", namespace="CELERY")
app.conf.task_queues = (Queue("default"), Queue("inference"), Queue("outbound"))
app.conf.beat_schedule = {
    # triage/duties.py: studies become ready after their quiet period, unacknowledged alerts
    # escalate, due digests go out. Cheap, idempotent and database-driven.
    "periodic-duties": {
        "task": "triage.tasks.periodic_duties",
        "schedule": 1.0,
        "options": {"expires": 5},
    },
}
app.autodiscover_tasks(["triage"])
