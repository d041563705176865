"""The periodic duties, in one place: studies become ready as their quiet period passes (the
fallback: a study sent over DICOM is normally ready on its association's release, in the
listener, `worklist.services.transfers`), transfers a dead listener left are forgotten, triage
and inference tasks whose worker died (or whose message was lost) are sent again,
unacknowledged alerts escalate, the rate cap's due digests go out, and outbound messages due
a retry are sent again (the environment's destinations are seeded on the first round).

All are database-driven and idempotent, so running them twice is harmless. Production
schedules them with Celery beat (`triage.tasks.periodic_duties`); the demo and
`manage.py periodic_duties` run `periodic_duties_loop`.
"""

from __future__ import annotations

import logging
import threading
from dataclasses import dataclass

from django.db import close_old_connections

from inference.services import inference_runs_redeliver_due
from triage.alerts import alerts_escalate_due
from triage.arrivals import studies_ready_sweep, studies_triage_resend_due
from triage.deliveries import alert_digests_send_due
from triage.outbound.services import destinations_seed, outbound_messages_send_due
from triage.queueing import task_queue
from worklist.services.transfers import transfers_forget_stale

logger = logging.getLogger(__name__)


@dataclass(frozen=True, kw_only=True)
class DutiesDone:
    studies_ready: int
    runs_sent_again: int
    alerts_escalated: int


_seeded = threading.Event()


def periodic_duties_run() -> DutiesDone:
    from triage.tasks import inference_run, outbound_send

    if not _seeded.is_set():
        destinations_seed()
        _seeded.set()

    # What needs no broker first: escalations and digests go out whatever the broker's state.
    escalated = alerts_escalate_due()
    alert_digests_send_due()
    ready = studies_ready_sweep()
    transfers_forget_stale()
    studies_triage_resend_due()
    stranded = inference_runs_redeliver_due()
    for run_id in stranded:
        if not task_queue(inference_run, run_id):
            break  # the broker is down: the rest are due again next round
    for message_id in outbound_messages_send_due():
        if not task_queue(outbound_send, message_id):
            break
    return DutiesDone(
        studies_ready=len(ready), runs_sent_again=len(stranded), alerts_escalated=len(escalated)
    )


def periodic_duties_loop(*, stop: threading.Event, interval: float = 1.0) -> None:
    """Run the duties every `interval` seconds until `stop` is set; a failure is logged and
    the next round tries again."""
    while not stop.is_set():
        try:
            periodic_duties_run()
        except Exception:
            logger.exception("periodic duties failed; retrying")
        finally:
            close_old_connections()
        stop.wait(interval)


def periodic_duties_start(*, interval: float = 1.0) -> threading.Event:
    """The loop in a background thread; set the returned event to stop it."""
    stop = threading.Event()
    threading.Thread(
        target=periodic_duties_loop,
        kwargs={"stop": stop, "interval": interval},
        name="periodic-duties",
        daemon=True,
    ).start()
    return stop
