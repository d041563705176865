"""`manage.py synth_study`: write one synthetic phantom study (DICOM files + labels.json)."""

from __future__ import annotations

import logging
from pathlib import Path
from typing import Any

from django.core.management.base import BaseCommand, CommandError, CommandParser

from triage.findings import Finding

LABELS = ("positive", "negative")
SYNTAXES = ("explicit", "rle", "jpegls", "jpeg2000")


class Command(BaseCommand):
    help = "Write one deterministic synthetic phantom study as DICOM files plus labels.json."

    def add_arguments(self, parser: CommandParser) -> None:
        # validated in handle, so a wrong value is a CommandError naming the allowed ones
        parser.add_argument("--finding", required=True, help=", ".join(f.value for f in Finding))
        parser.add_argument("--label", required=True, help=" or ".join(LABELS))
        parser.add_argument("--seed", type=int, required=True)
        parser.add_argument("--out", type=Path, required=True, help="output folder")
        parser.add_argument(
            "--transfer-syntax",
            default=None,
            help=f"{', '.join(SYNTAXES)} or a UID (default: chosen by the seed)",
        )

    def handle(self, *args: Any, **options: Any) -> None:
        logging.getLogger("openjpeg").setLevel(logging.WARNING)  # one INFO line per slice
        from inference.phantoms import phantom_generate, phantom_write

        allowed = [finding.value for finding in Finding]
        if options["finding"] not in allowed:
            raise CommandError(
                f"unknown finding {options['finding']!r}; allowed: {', '.join(allowed)}"
            )
        if options["label"] not in LABELS:
            raise CommandError(f"unknown label {options['label']!r}; allowed: {', '.join(LABELS)}")
        study = phantom_generate(
            options["finding"], positive=options["label"] == "positive", seed=options["seed"]
        )
        try:
            paths = phantom_write(
                study,
                out_dir=options["out"],
                seed=options["seed"],
                transfer_syntax=options["transfer_syntax"],
            )
        except ValueError as exc:
            raise CommandError(str(exc)) from exc
        label = "positive" if study.positive else "negative"
        self.stdout.write(
            f"{study.finding} {label} {study.subtype}"
            f"{f' ({study.size})' if study.size else ''}: {len(paths)} files in {options['out']}"
        )
