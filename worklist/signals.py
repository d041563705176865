"""What the worklist tells the apps above it, without importing them (imports between the apps
go one way): triage audits each `access_denied`, and announces and triages each study in
`studies_ready`."""

from __future__ import annotations

from django.dispatch import Signal

# Sent with channel (str), remote_addr (str | None) and detail (dict): a refused DICOM
# association or TLS handshake. Every value in it is checked or one of ours, never raw.
access_denied = Signal()

# Sent with study_ids (list[int]) inside the transaction that made the studies ready (their
# worklist items ranked), by a path that is not triage's own: an association's release
# (`worklist.services.transfers`). Receivers defer what they fan out to the commit.
studies_ready = Signal()
