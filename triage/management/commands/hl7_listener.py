"""Receive ADT and orders over HL7 v2 MLLP (triage/hl7_listener.py)."""

from __future__ import annotations

import asyncio
from typing import Any

from django.conf import settings
from django.core.management.base import BaseCommand, CommandError, CommandParser

from triage.hl7_listener import hl7_listener_serve


class Command(BaseCommand):
    help = "Receive ADT (A01-A04, A08) and orders (ORM^O01, OMI^O23) over HL7 v2 MLLP."

    def add_arguments(self, parser: CommandParser) -> None:
        parser.add_argument("--host", default="0.0.0.0")  # noqa: S104 - a listener for the RIS
        parser.add_argument("--port", type=int, default=2575)

    def handle(self, *args: Any, **options: Any) -> None:
        if not settings.HL7_OPEN_ACCESS and not settings.HL7_ALLOWED_PEERS:
            raise CommandError(
                "HL7_ALLOWED_PEERS is empty: list the addresses that may send HL7 "
                "(comma-separated); only the demo accepts any peer."
            )
        self.stdout.write(f"HL7 listener on {options['host']}:{options['port']}")
        self.stdout.flush()
        try:
            asyncio.run(hl7_listener_serve(host=options["host"], port=options["port"]))
        except KeyboardInterrupt:
            pass
