"""`make demo`: the whole product in one process on embedded defaults.

Same code paths as production with the backing services swapped: SQLite, the in-memory channel
layer, and an in-memory Celery broker served by a worker in this process.
"""

from __future__ import annotations

import logging
import threading
from typing import Any

from django.conf import settings
from django.contrib.auth.models import Group, User
from django.core.management import call_command
from django.core.management.base import BaseCommand, CommandError, CommandParser
from rest_framework.authtoken.models import Token

from triage.models import StaffProfile
from triage.roles import Role, roles_ensure

logger = logging.getLogger(__name__)

DEMO_USERS = [
    ("radiologist", Role.RADIOLOGIST, False),
    ("clinician", Role.CLINICIAN, False),
    ("admin", Role.ADMINISTRATOR, True),
    ("modality", Role.INTEGRATION, False),
]


class Command(BaseCommand):
    help = "Run the demo: web app, DICOM listener, in-process worker and simulated ED traffic."

    def add_arguments(self, parser: CommandParser) -> None:
        parser.add_argument("--host", default="127.0.0.1")
        parser.add_argument("--port", type=int, default=8000)
        parser.add_argument("--dicom-port", type=int, default=11112)
        parser.add_argument("--ae-title", default="TRIAGE")
        parser.add_argument(
            "--studies-per-minute",
            type=float,
            default=6.0,
            help="simulated ED arrival rate (0 for none)",
        )
        parser.add_argument("--seed", type=int, default=1)

    def handle(self, *args: Any, **options: Any) -> None:
        if not settings.EMBEDDED:
            raise CommandError("run_demo is for the embedded demo (DEBUG=1) only.")
        call_command("migrate", interactive=False, verbosity=0)
        logging.getLogger("openjpeg").setLevel(logging.WARNING)  # one line per encoded slice
        logins = self._demo_users()

        from triage.duties import periodic_duties_start
        from worklist.dicom.scp import listener_start

        listener_start(
            host=options["host"], port=options["dicom_port"], ae_title=options["ae_title"]
        )
        stop = periodic_duties_start()  # Celery beat's part in production
        threading.Thread(target=seed_validation_runs, name="demo-validation", daemon=True).start()
        self._start_web(host=options["host"], port=options["port"])
        if options["studies_per_minute"] > 0:
            threading.Thread(
                target=traffic_loop,
                kwargs={
                    "host": options["host"],
                    "port": options["dicom_port"],
                    "called_ae": options["ae_title"],
                    "studies_per_minute": options["studies_per_minute"],
                    "seed": options["seed"],
                    "stop": stop,
                },
                name="demo-traffic",
                daemon=True,
            ).start()

        address = f"http://{options['host']}:{options['port']}/"
        self.stdout.write("")
        self.stdout.write(self.style.SUCCESS(f"ED triage worklist demo: open {address}"))
        for username, password, role in logins:
            self.stdout.write(f"  {role:<14} login: {username} / {password}")
        self.stdout.write(
            f"  DICOM listener: AE {options['ae_title']} on {options['host']}:"
            f"{options['dicom_port']} (send with: storescu -aec {options['ae_title']} "
            f"{options['host']} {options['dicom_port']} FILES)"
        )
        self.stdout.write(
            "  Simulated ED traffic: synthetic studies with invented identities. Any AI output "
            "comes from demonstration models trained on synthetic phantoms (no clinical validity)."
        )
        self.stdout.write("  Stop with Ctrl-C.\n")
        self.stdout.flush()
        self._run_worker()
        stop.set()

    def _demo_users(self) -> list[tuple[str, str, str]]:
        roles_ensure()
        logins = []
        for username, role, staff in DEMO_USERS:
            password = f"demo-{username}"
            user, created = User.objects.get_or_create(username=username)
            if created:
                user.set_password(password)
                user.is_staff = user.is_superuser = staff
                user.save()
            user.groups.add(Group.objects.get(name=str(role)))
            if role == Role.CLINICIAN:
                StaffProfile.objects.get_or_create(user=user, defaults={"locations": "ED"})
            logins.append((username, password, str(role)))
        token, _ = Token.objects.get_or_create(user=User.objects.get(username="modality"))
        logins.append(("Authorization: Token", token.key, "STOW-RS"))
        return logins

    def _start_web(self, *, host: str, port: int) -> None:
        import asyncio

        import uvicorn

        from triage import broadcast
        from triage.config.asgi import application

        config = uvicorn.Config(
            application,
            host=host,
            port=port,
            log_level="warning",
            lifespan="off",
            ws_max_size=131072,  # as deploy/ runs uvicorn: frames are at most 64 KiB of JSON
        )
        server = uvicorn.Server(config)
        loop = asyncio.new_event_loop()
        # The in-memory channel layer lives in the web server's loop: broadcasts go there.
        broadcast.use_server_loop(loop)
        threading.Thread(
            target=loop.run_until_complete, args=(server.serve(),), name="web", daemon=True
        ).start()

    def _run_worker(self) -> None:
        from triage.config.celery import app

        worker = app.Worker(
            pool="solo",
            queues=["default", "inference", "outbound"],
            loglevel="INFO",
            without_heartbeat=True,
            without_mingle=True,
            without_gossip=True,
            quiet=True,
        )
        worker.start()


def traffic_loop(
    *,
    host: str,
    port: int,
    called_ae: str,
    studies_per_minute: float,
    seed: int,
    stop: threading.Event,
) -> None:
    """Phantom studies in an ED mix, Poisson arrivals, until stopped."""
    import random
    from datetime import UTC, datetime

    from inference.phantoms import phantom_generate
    from inference.phantoms.traffic import ed_mix, phantom_study_send

    arrivals = random.Random(seed)
    for finding, positive, study_seed in ed_mix(seed, positive_fraction=0.4):
        if stop.is_set():
            return
        try:
            study = phantom_generate(finding, positive=positive, seed=study_seed)
            stored = phantom_study_send(
                study=study,
                seed=study_seed,
                host=host,
                port=port,
                called_ae=called_ae,
                calling_ae="DEMO_MODALITY",
                acquired=datetime.now(UTC),
            )
            logger.info("demo traffic: sent %s phantom (%s instances)", finding, stored)
        except Exception:
            logger.exception("demo traffic: sending failed; going on with the next study")
        stop.wait(arrivals.expovariate(studies_per_minute / 60.0))


def seed_validation_runs() -> None:
    """Give the threshold explorer data on first start (held-out phantoms per finding), then
    the analytics a simulated history scored like those phantoms (triage/demo_history.py)."""
    from django.db import close_old_connections

    from inference.registry import registry_current
    from triage.demo_history import simulated_history_exists, simulated_history_seed
    from triage.models import ValidationRun
    from triage.validation import validation_run_from_phantoms

    try:
        for card in registry_current().models.values():
            if ValidationRun.objects.filter(finding=str(card.finding)).exists():
                continue
            run = validation_run_from_phantoms(card=card, seeds=range(9_500_000, 9_500_080))
            logger.info(
                "demo: validation run #%s for %s (%s phantoms)", run.pk, card.name, run.cases
            )
        if not simulated_history_exists():
            written = simulated_history_seed(author=User.objects.get(username="radiologist"))
            logger.info("demo: simulated history of %s studies (analytics, drift checks)", written)
    except Exception:
        logger.exception("demo: seeding validation runs failed; the explorer will be empty")
    finally:
        close_old_connections()
