"""The Django project configuration (settings, ASGI, Celery app, root URLs, WebSocket routing),
apart from the triage domain: importing a catalogue or a selector never starts a worker stack.

Loading the settings loads the Celery app, so that tasks bind to it in every Django process.
"""

from triage.config.celery import app as celery_app

__all__ = ["celery_app"]
