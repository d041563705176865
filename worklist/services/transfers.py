"""Transfers: which open DICOM associations are delivering which studies, so that a study is
ready as soon as the last association delivering it is released, without waiting out the
quiet period.

- Each listener association keeps an `AssociationTransfers`. The ingest transaction of its
  first instance of a study writes a `Transfer` row (and refreshes it about twice a second
  while instances keep coming), so the row is committed with the instance, never after it.
- When the association is released, each study it delivered becomes ready in a transaction
  that holds the study row (and so waits for ingest transactions under way), unless another
  association (in any listener process) is still delivering it: a transfer whose last instance
  came within the quiet period. An aborted association makes nothing ready.
- Calling AE titles listed in DICOM_QUIET_PERIOD_AE_TITLES (senders that spread one series over
  several associations, one per instance for example) are never made ready on release: a
  release there does not mean the series is whole. Their studies, and studies of senders that
  keep an association open, wait out the quiet period (`studies_stabilise`), as every study
  did before; a listener that dies leaves transfers that stop counting after a quiet period.

Ready studies are told to the apps above with `worklist.signals.studies_ready`, inside the
transaction that made them ready.
"""

from __future__ import annotations

import itertools
import logging
import os
import socket
import time
from dataclasses import dataclass, field
from datetime import datetime, timedelta

from django.conf import settings
from django.db import connection, transaction
from django.utils import timezone

from worklist.models import Study, Transfer
from worklist.services.studies import study_mark_ready
from worklist.signals import studies_ready

logger = logging.getLogger(__name__)

# How often an open transfer's row is refreshed while instances keep coming (seconds).
TRANSFER_REFRESH_SECONDS = 0.5
# Rows older than this are what a listener that died left behind: forgotten by the duties.
TRANSFER_FORGET_AFTER = timedelta(hours=1)

_associations = itertools.count(1)
_HOST = socket.gethostname()[:64]


@dataclass(kw_only=True)
class AssociationTransfers:
    """What one association has delivered: study id -> when (monotonic) its row was written."""

    key: str
    calling_ae_title: str
    written: dict[int, float] = field(default_factory=dict)

    def row_due(self, study_id: int) -> bool:
        last = self.written.get(study_id)
        return last is None or time.monotonic() - last >= TRANSFER_REFRESH_SECONDS


def association_transfers_open(*, calling_ae_title: str) -> AssociationTransfers:
    return AssociationTransfers(
        key=f"{_HOST}/{os.getpid()}/{next(_associations)}", calling_ae_title=calling_ae_title
    )


_ROW_WRITE = (
    "INSERT INTO worklist_transfer (association, study_id, last_instance_at) VALUES (%s, %s, %s)"
    " ON CONFLICT (association, study_id)"
    " DO UPDATE SET last_instance_at = excluded.last_instance_at"
)


def transfer_row_write(*, transfers: AssociationTransfers, study_id: int, at: datetime) -> None:
    """Record (or refresh) the association's transfer of the study; inside the ingest
    transaction of an instance of it, which holds the study row."""
    with connection.cursor() as cursor:
        cursor.execute(
            _ROW_WRITE, [transfers.key, study_id, connection.ops.adapt_datetimefield_value(at)]
        )


def association_transfers_end(
    *, transfers: AssociationTransfers, released: bool, now: datetime | None = None
) -> list[int]:
    """The association ended: its transfers are forgotten and, when it was released, each study
    it delivered that no other association is still delivering becomes ready. Their ids, once
    committed. Ending an association twice does nothing the second time."""
    now = now or timezone.now()
    quiet_only = transfers.calling_ae_title.upper() in settings.DICOM_QUIET_PERIOD_AE_TITLES
    fresh_after = now - timedelta(seconds=settings.STUDY_STABLE_SECONDS)
    ready: list[int] = []
    for study_id in sorted(transfers.written):
        with transaction.atomic():
            # Waits for this study's ingest transactions under way (they share-lock the row), so
            # their transfers are seen.
            study = Study.objects.select_for_update().filter(pk=study_id).first()
            Transfer.objects.filter(association=transfers.key, study_id=study_id).delete()
            if study is None or study.state != Study.State.RECEIVING or not released or quiet_only:
                continue
            others = Transfer.objects.filter(study_id=study_id, last_instance_at__gt=fresh_after)
            if others.exists():
                continue  # another association is still delivering it: its release decides
            study_mark_ready(study=study, now=now)
            studies_ready.send(sender=Transfer, study_ids=[study_id])
        ready.append(study_id)
    transfers.written.clear()
    if ready:
        logger.info("ready on release: studies=%s association=%s", ready, transfers.key)
    return ready


def transfers_forget_stale(*, now: datetime | None = None) -> int:
    """Delete the transfers a listener that died left behind; how many."""
    now = now or timezone.now()
    deleted, _ = Transfer.objects.filter(last_instance_at__lt=now - TRANSFER_FORGET_AFTER).delete()
    return deleted
