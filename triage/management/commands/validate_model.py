"""Run a model over a labelled DICOM data set and store every score as a validation run."""

from __future__ import annotations

import time
from pathlib import Path
from typing import Any

from django.conf import settings
from django.core.management.base import BaseCommand, CommandError, CommandParser

from inference.registry import registry_current
from inference.training.metrics import sensitivity, specificity
from triage.findings import Finding
from triage.operating_points import auc, threshold_for_sensitivity
from triage.selectors import validation_arrays
from triage.validation import DatasetError, validation_run_create


class Command(BaseCommand):
    help = "Validate a model on a labelled data set (one folder per study + labels.csv)."

    def add_arguments(self, parser: CommandParser) -> None:
        parser.add_argument("--finding", required=True, choices=[f.value for f in Finding])
        parser.add_argument("--dataset", required=True, type=Path)
        parser.add_argument("--model", help="model name (default: the finding's first model)")
        parser.add_argument("--description", default="")
        parser.add_argument(
            "--target-sensitivity",
            type=float,
            help="also print the operating point reaching this sensitivity on the data set "
            "(apply it on the thresholds page, with a reason)",
        )

    def handle(self, *args: Any, **options: Any) -> None:
        target = options["target_sensitivity"]
        if target is not None and not 0.0 < target <= 1.0:  # said before a long run, not after
            raise CommandError("--target-sensitivity is a fraction in (0, 1], such as 0.9")
        cards = registry_current().for_finding(options["finding"])
        if options["model"]:
            cards = [card for card in cards if card.name == options["model"]]
        if not cards:
            raise CommandError(f"no model serves {options['finding']} (see the registry)")
        card = cards[0]
        started = time.monotonic()

        def progress(done: int, total: int, study: str) -> None:
            width = 30
            filled = int(width * done / total)
            elapsed = time.monotonic() - started
            self.stdout.write(
                f"\r[{'#' * filled}{'.' * (width - filled)}] {done}/{total} "
                f"{elapsed:5.1f}s {study[:30]:<30}",
                ending="",
            )
            self.stdout.flush()

        try:
            run = validation_run_create(
                card=card,
                dataset=options["dataset"],
                description=options["description"],
                threads=settings.INFERENCE_THREADS,
                progress=progress,
            )
        except DatasetError as problem:
            raise CommandError(str(problem)) from problem
        scores, labels = validation_arrays(run)
        self.stdout.write("")
        self.stdout.write(
            f"validation run #{run.pk}: {card.label} on {run.cases} studies "
            f"({int(labels.sum())} positive, {run.failures} skipped), AUC {auc(scores, labels):.3f}"
        )
        if target is not None:
            if not labels.any() or labels.all():
                raise CommandError("an operating point needs positives and negatives")
            threshold = threshold_for_sensitivity(scores, labels, target=target)
            self.stdout.write(
                f"operating point for sensitivity >= {target:g}: threshold {threshold:.6f} "
                f"(here: sensitivity {sensitivity(scores, labels, threshold=threshold):.3f}, "
                f"specificity {specificity(scores, labels, threshold=threshold):.3f}; shipped "
                f"{card.threshold:.6f}: sensitivity "
                f"{sensitivity(scores, labels, threshold=card.threshold):.3f})"
            )
