"""A staged file whose fsync runs in the background (worklist/storage.py) is never moved into
place, nor its instance registered, before that fsync is done; an fsync that fails is the
sender's failure status, not a stored instance."""

from __future__ import annotations

import errno
import os
import threading

import pytest

from worklist import storage

UID = "1.2.826.0.1.3680043.10.1453.99"


@pytest.fixture
def slow_fsync(monkeypatch, settings, tmp_path):
    settings.DICOM_STORAGE_DIR = str(tmp_path)
    storage._root_resolved.cache_clear()
    release = threading.Event()
    real = os.fsync
    staged_fds: set[int] = set()

    def fsync(fd: int) -> None:
        if fd in staged_fds:
            assert release.wait(10)
        real(fd)

    def opened(path, flags, mode=0o777, **kwargs):
        fd = real_open(path, flags, mode, **kwargs)
        if str(path).endswith(".part"):
            staged_fds.add(fd)
        return fd

    real_open = os.open
    monkeypatch.setattr(storage.os, "fsync", fsync)
    monkeypatch.setattr(storage.os, "open", opened)
    yield release
    release.set()
    storage._root_resolved.cache_clear()


def test_the_move_into_place_waits_for_the_background_fsync(slow_fsync):
    staged = storage.stage_bytes(b"DICM", b"x" * 1000, sync_later=True)
    relative = storage.instance_relative_path(
        study_uid=UID, series_uid=UID + ".1", sop_uid=UID + ".2"
    )
    done = threading.Event()
    mover = threading.Thread(
        target=lambda: (storage.staged_file_commit(staged, relative), done.set()), daemon=True
    )
    mover.start()
    assert not done.wait(0.5)  # the fsync is held: nothing in place yet
    assert staged.exists() and not storage.storage_path(relative).exists()
    slow_fsync.set()
    assert done.wait(5)
    assert storage.storage_path(relative).read_bytes() == b"DICM" + b"x" * 1000
    assert not staged.exists()


def test_a_failed_background_fsync_refuses_the_move(monkeypatch, settings, tmp_path):
    settings.DICOM_STORAGE_DIR = str(tmp_path)
    storage._root_resolved.cache_clear()
    real = os.fsync

    def failing(fd: int) -> None:
        if os.readlink(f"/proc/self/fd/{fd}").endswith(".part"):
            raise OSError(errno.EIO, "Input/output error")
        real(fd)

    monkeypatch.setattr(storage.os, "fsync", failing)
    staged = storage.stage_bytes(b"DICM", sync_later=True)
    relative = storage.instance_relative_path(
        study_uid=UID, series_uid=UID + ".1", sop_uid=UID + ".3"
    )
    with pytest.raises(OSError, match="Input/output"):
        storage.staged_file_commit(staged, relative)
    assert not storage.storage_path(relative).exists()
    storage.staged_file_discard(staged)
    assert not staged.exists()
    storage._root_resolved.cache_clear()


def test_when_no_fsync_thread_can_start_the_file_is_synced_at_once(monkeypatch, settings, tmp_path):
    settings.DICOM_STORAGE_DIR = str(tmp_path)
    storage._root_resolved.cache_clear()

    class Refusing:
        def submit(self, *args, **kwargs):
            raise RuntimeError("cannot schedule new futures after interpreter shutdown")

    synced: list[int] = []
    real = os.fsync
    monkeypatch.setattr(storage, "_sync_pool", Refusing())
    monkeypatch.setattr(storage.os, "fsync", lambda fd: (synced.append(fd), real(fd)))
    before = len(os.listdir("/proc/self/fd"))
    staged = storage.stage_bytes(b"DICM" * 10, sync_later=True)
    assert synced and staged.read_bytes() == b"DICM" * 10
    assert staged not in storage._syncs_pending
    assert len(os.listdir("/proc/self/fd")) == before  # its descriptor closed
    storage.staged_file_synced(staged)  # nothing pending: returns at once


def test_a_forked_child_gets_a_fresh_lock_and_pool():
    held = storage._sync_lock
    held.acquire()  # as if another thread held it at the fork
    try:
        pid = os.fork()
        if pid == 0:  # the child: the lock must be free and the pool not inherited
            ok = storage._sync_lock.acquire(timeout=2) and storage._sync_pool is None
            os._exit(0 if ok else 1)
        _, status = os.waitpid(pid, 0)
        assert os.waitstatus_to_exitcode(status) == 0
    finally:
        held.release()


def test_when_the_fsync_pool_fails_otherwise_the_instance_is_refused(
    monkeypatch, settings, tmp_path
):
    settings.DICOM_STORAGE_DIR = str(tmp_path)
    storage._root_resolved.cache_clear()

    class Failing:
        def submit(self, *args, **kwargs):
            raise RuntimeError("can't start new thread")

    monkeypatch.setattr(storage, "_sync_pool", Failing())
    with pytest.raises(RuntimeError, match="new thread"):
        storage.stage_bytes(b"DICM", sync_later=True)
    assert not [p for p in (tmp_path / "incoming").glob("*.part")]  # nothing left staged
