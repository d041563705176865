"""The one check for identifiers a sender supplies (UIDs, AE titles), run before a value reaches a
path, a query or a log line.

pydicom checks a UID only when it is encoded with VR UI; a "UID" sent as LO or UT can hold
anything (`../../x`), so every ingest route calls `uid_check` whatever the VR was.
"""

from __future__ import annotations

import logging
import re
import threading

logger = logging.getLogger(__name__)

UID_MAX_LENGTH = 64  # PS3.5 9.1
AE_TITLE_MAX_LENGTH = 16  # PS3.5 6.2, AE
# Literal ASCII ranges: `\d` would also match digits of other scripts.
_UID = re.compile(r"[0-9]+(?:\.[0-9]+)*")
_LEADING_ZERO = re.compile(r"(?:^|\.)0[0-9]")
# AE: default character repertoire without backslash or control characters.
_AE_TITLE_OUTSIDE = re.compile(r"[^\x20-\x5b\x5d-\x7e]")


class InvalidIdentifier(ValueError):
    """`reason` names the attribute and what is wrong, and never quotes the value."""

    def __init__(self, reason: str) -> None:
        super().__init__(reason)
        self.reason = reason


_leading_zero_lock = threading.Lock()
_leading_zero_count = 0


def _leading_zero_note(attribute: str, uid: str) -> None:
    """Log a known defect of some real senders without refusing their studies: the 1st, 10th,
    100th... occurrence in this process, so a sender that does it on every slice cannot flood
    the log."""
    global _leading_zero_count
    with _leading_zero_lock:
        _leading_zero_count += 1
        count = _leading_zero_count
    if str(count).rstrip("0") == "1":
        # The value has passed the syntax check (digits and dots), so it is safe to log.
        logger.warning(
            "accepted %s with a leading zero in a component: %s (%d such UIDs so far)",
            attribute,
            uid,
            count,
        )


def uid_check(value: str, *, attribute: str) -> str:
    """Return `value` if it has the syntax of a DICOM UID, else raise InvalidIdentifier.

    Digits and dots only, no empty component, 1 to 64 characters. A component with a leading
    zero (forbidden by PS3.5, sent by some real devices) is accepted and logged.
    """
    if not value:
        raise InvalidIdentifier(f"{attribute} is empty")
    if len(value) > UID_MAX_LENGTH:
        raise InvalidIdentifier(
            f"{attribute} is {len(value)} characters long (a UID has at most {UID_MAX_LENGTH})"
        )
    if _UID.fullmatch(value) is None:
        raise InvalidIdentifier(
            f"{attribute} is not a UID (digits and dots only, no empty component)"
        )
    if _LEADING_ZERO.search(value):
        _leading_zero_note(attribute, value)
    return value


def uid_is_valid(value: str) -> bool:
    """True when `value` has the syntax of a UID (without logging anything)."""
    return 0 < len(value) <= UID_MAX_LENGTH and _UID.fullmatch(value) is not None


def ae_title_for_record(value: str) -> str:
    """A calling AE title fit for a log line and a database column.

    A title outside the AE repertoire (control characters, backslash, over 16 characters) can
    never be on the allowed list, so only an open (demo) listener sees one; each character
    outside the repertoire is recorded as "?" so the title cannot forge a log line.
    """
    title = _AE_TITLE_OUTSIDE.sub("?", value.strip())
    return title[:AE_TITLE_MAX_LENGTH]
