"""A lease kept alive while its holder works: the heartbeat a run and an outbound message share.

A row leased to a worker (`lease_until`) is taken over by another only once the lease has run
out; the holder renews it from a thread of its own every third of its length, so a slow but
live piece of work is never done twice, and one whose worker died is taken over within a lease.
"""

from __future__ import annotations

import threading
from collections.abc import Callable, Iterator
from contextlib import contextmanager

from django.db import connection


@contextmanager
def lease_renewed(renew: Callable[[], object], *, every: float, name: str) -> Iterator[None]:
    """Call `renew` every `every` seconds, from a thread of its own (with its own database
    connection, closed at the end), while the body runs."""
    done = threading.Event()

    def heartbeat() -> None:
        try:
            while not done.wait(every):
                renew()
        finally:
            connection.close()  # this thread's own connection

    thread = threading.Thread(target=heartbeat, name=name, daemon=True)
    thread.start()
    try:
        yield
    finally:
        done.set()
        thread.join()
