"""`manage.py simulate_er`: stream a realistic ED mix of phantom studies to a DICOM listener."""

from __future__ import annotations

import logging
import time
from datetime import datetime
from typing import Any

import numpy as np
from django.core.management.base import BaseCommand, CommandError, CommandParser


class Command(BaseCommand):
    help = (
        "Send synthetic phantom studies (invented identities) to a DICOM listener over C-STORE, "
        "one association per study, with Poisson arrivals."
    )

    def add_arguments(self, parser: CommandParser) -> None:
        parser.add_argument("--host", required=True)
        parser.add_argument("--port", type=int, required=True)
        parser.add_argument("--count", type=int, required=True, help="studies to send")
        parser.add_argument("--seed", type=int, required=True)
        parser.add_argument("--ae-title", default="TRIAGE", help="called AE title")
        parser.add_argument("--calling-ae", default="DEMO_MODALITY")
        parser.add_argument(
            "--rate", type=float, default=6.0, help="studies per minute (0: back to back)"
        )
        parser.add_argument("--speedup", type=float, default=1.0, help="divides the waits")
        parser.add_argument("--positive-fraction", type=float, default=0.3)

    def handle(self, *args: Any, **options: Any) -> None:
        logging.getLogger("openjpeg").setLevel(logging.WARNING)  # one INFO line per slice
        from inference.phantoms import phantom_generate
        from inference.phantoms.traffic import StudySendError, ed_mix, phantom_study_send

        if options["count"] < 0 or options["rate"] < 0 or options["speedup"] <= 0:
            raise CommandError("--count and --rate must be >= 0 and --speedup > 0")
        if not 0.0 <= options["positive_fraction"] <= 1.0:
            raise CommandError("--positive-fraction must be between 0 and 1")
        arrivals = np.random.default_rng(options["seed"])
        mix = ed_mix(options["seed"], positive_fraction=options["positive_fraction"])
        failed = 0
        for index in range(1, options["count"] + 1):
            finding, positive, seed = next(mix)
            if index > 1 and options["rate"] > 0:
                wait = float(arrivals.exponential(60.0 / options["rate"])) / options["speedup"]
                time.sleep(wait)
            started = time.monotonic()
            study = phantom_generate(finding, positive=positive, seed=seed)
            label = "positive" if positive else "negative"
            try:
                stored = phantom_study_send(
                    study=study,
                    seed=seed,
                    host=options["host"],
                    port=options["port"],
                    called_ae=options["ae_title"],
                    calling_ae=options["calling_ae"],
                    acquired=datetime.now().astimezone(),
                )
            except (StudySendError, OSError) as exc:
                failed += 1
                self.stderr.write(
                    f"{index:4d} {finding} {label} {study.subtype}: FAILED "
                    f"after {time.monotonic() - started:.1f}s: {exc}"
                )
                continue
            self.stdout.write(
                f"{index:4d} {finding} {label} {study.subtype}: {stored} instances stored "
                f"in {time.monotonic() - started:.1f}s"
            )
            self.stdout.flush()
        if failed:
            raise CommandError(f"{failed} of {options['count']} studies were not stored completely")
