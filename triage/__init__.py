"""The Django project package and the triage domain (findings, alerts, audit)."""

from triage.celery import app as celery_app

__all__ = ["celery_app"]
