"""Putting a task on the broker, the one way: after the transaction that made its work commits,
and never letting a broker outage turn that committed work into an error.

The database is the truth for every task's work (the triage dispatch row, the run's lease, the
outbox): a message the broker cannot take now, or loses in a restart, is sent again by the
periodic duties (`triage.duties`). So a failed send is logged (ids only) and swallowed: the
C-STORE or STOW-RS that stored the instance still answers success, the worker that recorded a
result still commits it, and the duties' other work (escalations) still runs that round."""

from __future__ import annotations

import logging
from functools import partial
from typing import Any

from django.db import transaction
from kombu.exceptions import OperationalError as KombuOperationalError

logger = logging.getLogger(__name__)

# What a broker that cannot take a message raises (anything else, a bug, is raised).
BROKER_ERRORS = (KombuOperationalError, ConnectionError, OSError, TimeoutError)


def task_queue(task: Any, *args: int) -> bool:
    """Send `task(*args)` now; False (logged) when the broker cannot take it."""
    try:
        task.delay(*args)
    except BROKER_ERRORS as error:
        logger.warning(
            "broker unreachable, %s%s not queued; the periodic duties send it again (%s)",
            task.name, list(args), type(error).__name__,
        )  # fmt: skip
        return False
    return True


def task_queue_after_commit(task: Any, *args: int) -> None:
    """Send `task(*args)` once the current transaction commits (never if it rolls back)."""
    transaction.on_commit(partial(task_queue, task, *args))
