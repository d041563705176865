"""`manage.py periodic_duties`: run the periodic duties in a loop, where Celery beat does not."""

from __future__ import annotations

import signal
import threading
from typing import Any

from django.core.management.base import BaseCommand, CommandParser

from triage.duties import periodic_duties_loop


class Command(BaseCommand):
    help = (
        "Make studies ready after their quiet period, escalate overdue alerts and send due "
        "digests, every INTERVAL seconds (production schedules the same with Celery beat)."
    )

    def add_arguments(self, parser: CommandParser) -> None:
        parser.add_argument("--interval", type=float, default=1.0)

    def handle(self, *args: Any, **options: Any) -> None:
        stop = threading.Event()
        signal.signal(signal.SIGTERM, lambda *_: stop.set())
        signal.signal(signal.SIGINT, lambda *_: stop.set())
        self.stdout.write(f"periodic duties every {options['interval']} s")
        self.stdout.flush()
        periodic_duties_loop(stop=stop, interval=options["interval"])
