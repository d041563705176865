"""Measure a model on the "other hospital" (inference/other_site): data it was never shaped by."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from django.core.management.base import BaseCommand, CommandError, CommandParser

from inference.registry import SHIPPED_MODELS_DIR
from inference.training.other_site import SUPPORTED, other_site_evaluate


class Command(BaseCommand):
    help = (
        "Write studies from the other-site generator of the model's finding as DICOM, score "
        "them as a worker would, and print AUC, sensitivity and specificity at the shipped "
        "threshold with 95% intervals; --record writes them into the card."
    )

    def add_arguments(self, parser: CommandParser) -> None:
        parser.add_argument("--finding", default="intracranial_hemorrhage", choices=SUPPORTED)
        parser.add_argument("--folder", type=Path, default=None, help="default: the shipped one")
        parser.add_argument("--studies", type=int, default=200)
        parser.add_argument(
            "--work", type=Path, default=None, help="keep the data set here (reused when written)"
        )
        parser.add_argument("--record", action="store_true", help="write the result to the card")

    def handle(self, *args: Any, **options: Any) -> None:
        if options["studies"] < 10:
            raise CommandError("--studies: at least 10 (5 positive, 5 negative)")

        def log(line: str) -> None:
            self.stdout.write(line)
            self.stdout.flush()

        try:
            other_site_evaluate(
                folder=options["folder"] or SHIPPED_MODELS_DIR / options["finding"],
                studies=options["studies"],
                work=options["work"],
                record=options["record"],
                log=log,
            )
        except ValueError as refusal:
            raise CommandError(str(refusal)) from refusal
