"""Calibrate a shipped model's scores on its validation phantoms (see inference/calibration.py)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from django.core.management.base import BaseCommand, CommandError, CommandParser

from triage.findings import Finding


class Command(BaseCommand):
    help = (
        "Fit a Platt calibration of one finding's model on its validation phantoms and write it "
        "into the card (thresholds on the calibrated scale, ECE and reliability diagrams on the "
        "validation and held-out splits, minor version up). The model file is not changed."
    )

    def add_arguments(self, parser: CommandParser) -> None:
        parser.add_argument("--finding", required=True, choices=[f.value for f in Finding])
        parser.add_argument("--folder", type=Path, default=None, help="default: the shipped one")
        parser.add_argument("--validation-studies", type=int, default=None)
        parser.add_argument("--test-studies", type=int, default=None)

    def handle(self, *args: Any, **options: Any) -> None:
        from inference.training.calibrate import model_calibrate

        def log(line: str) -> None:
            self.stdout.write(line)
            self.stdout.flush()

        try:
            model_calibrate(
                finding=options["finding"],
                folder=options["folder"],
                validation_studies=options["validation_studies"],
                test_studies=options["test_studies"],
                log=log,
            )
        except ValueError as refusal:
            raise CommandError(str(refusal)) from refusal
