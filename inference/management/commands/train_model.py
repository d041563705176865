"""Reproduce a shipped demonstration model: generate phantoms, train, export, check, evaluate."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from django.core.management.base import BaseCommand, CommandError, CommandParser

from triage.findings import Finding


class Command(BaseCommand):
    help = (
        "Train one finding's demonstration model on synthetic phantoms and write model.onnx and "
        "card.json (default: the shipped folder inference/models/<finding>). Needs torch."
    )

    def add_arguments(self, parser: CommandParser) -> None:
        parser.add_argument("--finding", required=True, choices=[f.value for f in Finding])
        parser.add_argument("--seed", type=int, default=None, help="default: the shipped seed")
        parser.add_argument("--epochs", type=int, default=None, help="default: the shipped value")
        parser.add_argument(
            "--train-studies", type=int, default=None, help="default: the shipped value"
        )
        parser.add_argument(
            "--validation-studies", type=int, default=None, help="default: the shipped value"
        )
        parser.add_argument(
            "--test-studies", type=int, default=None, help="default: the shipped value (>= 500)"
        )
        parser.add_argument("--out", type=Path, default=None, help="output model folder")

    def handle(self, *args: Any, **options: Any) -> None:
        try:
            from inference.training.build import model_build
            from inference.training.specs import DEFAULT_SEED
        except ImportError as exc:
            raise CommandError(
                f"training needs the train extras (pip install -e '.[train]'): {exc}"
            ) from exc

        def log(line: str) -> None:
            self.stdout.write(line)
            self.stdout.flush()

        card = model_build(
            finding=options["finding"],
            seed=DEFAULT_SEED if options["seed"] is None else options["seed"],
            epochs=options["epochs"],
            train_studies=options["train_studies"],
            validation_studies=options["validation_studies"],
            test_studies=options["test_studies"],
            out=options["out"],
            log=log,
        )
        metrics = card["metrics"]
        point = card["operating_point"]
        self.stdout.write(
            self.style.SUCCESS(
                f"{card['name']}: held-out {metrics['held_out_studies']} studies "
                f"(seeds {metrics['seeds']}), aggregation {card['aggregation']}\n"
                f"  AUC {metrics['auc']:.4f} [{metrics['auc_ci95'][0]:.4f}, "
                f"{metrics['auc_ci95'][1]:.4f}]\n"
                f"  threshold {point['threshold']:.4g}: sensitivity {metrics['sensitivity']:.4f} "
                f"[{metrics['sensitivity_ci95'][0]:.4f}, {metrics['sensitivity_ci95'][1]:.4f}], "
                f"specificity {metrics['specificity']:.4f} [{metrics['specificity_ci95'][0]:.4f}, "
                f"{metrics['specificity_ci95'][1]:.4f}]\n"
                f"  training {card['training']['seconds']}s, parity max |logit diff| "
                f"{card['training']['parity_max_abs_diff']['logit']:.2e}"
            )
        )
