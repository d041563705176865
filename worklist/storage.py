"""Durable files under DICOM_STORAGE_DIR: staged, stored (write, fsync, rename) or quarantined.

A staged file may have its fsync run in the background (`stage_bytes(..., sync_later=True)`),
so the listener parses the header and writes the rows while the disk works; every step that
moves or drops a staged file waits for that fsync first (and raises its error), so nothing is
ever put in place, and no sender answered, before its bytes are durable.
"""

from __future__ import annotations

import contextlib
import os
import threading
import uuid
from collections.abc import Sequence
from concurrent.futures import Future, ThreadPoolExecutor
from functools import lru_cache
from pathlib import Path

from django.conf import settings

from worklist.dicom.identifiers import uid_is_valid


class UnsafeStoragePath(ValueError):
    """A path that would leave the storage root; the reason never quotes the path."""


def storage_root() -> Path:
    return Path(settings.DICOM_STORAGE_DIR)


@lru_cache(maxsize=4)
def _root_resolved(root: str) -> Path:
    return Path(root).resolve()


def storage_path(relative_path: str) -> Path:
    """The absolute path of a file under the storage root, the only way one is built.

    Refuses (UnsafeStoragePath) an absolute path, or one that resolves (`..`, symbolic links)
    anywhere but strictly under the root: defence in depth behind the UID check.
    """
    root = _root_resolved(str(settings.DICOM_STORAGE_DIR))
    candidate = Path(relative_path)
    if candidate.is_absolute():
        raise UnsafeStoragePath("storage path is absolute")
    resolved = (root / candidate).resolve()
    if resolved == root or not resolved.is_relative_to(root):
        raise UnsafeStoragePath("storage path resolves outside the storage folder")
    return resolved


def storage_paths(relative_paths: Sequence[str]) -> list[Path]:
    """`storage_path` for many files at once (a series retrieve), with the same refusals: each
    folder resolved once, each file name checked by itself and refused if it is a symbolic
    link. Resolving every path whole was a tenth of a 200-slice retrieve (bench/dicomweb.py)."""
    folders: dict[str, Path | None] = {}
    paths = []
    for relative_path in relative_paths:
        folder, _, name = relative_path.rpartition("/")
        if folder and name not in ("", ".", "..") and folder not in folders:
            try:
                folders[folder] = storage_path(folder)
            except UnsafeStoragePath:  # the root itself, or outside: the general rule decides
                folders[folder] = None
        resolved = folders.get(folder) if name not in ("", ".", "..") else None
        if resolved is None:
            paths.append(storage_path(relative_path))
            continue
        path = resolved / name
        if path.is_symlink():
            raise UnsafeStoragePath("storage path is a symbolic link")
        paths.append(path)
    return paths


def _incoming_dir() -> Path:
    path = storage_root() / "incoming"
    path.mkdir(parents=True, exist_ok=True)
    return path


def _fsync_dir(path: Path) -> None:
    fd = os.open(path, os.O_RDONLY | os.O_DIRECTORY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def staged_file_new() -> Path:
    """A fresh path in the staging area, on the same file system as the store."""
    return _incoming_dir() / f"{uuid.uuid4().hex}.part"


_sync_lock = threading.Lock()
_sync_pool: ThreadPoolExecutor | None = None
_syncs_pending: dict[Path, Future[None]] = {}  # staged path -> its background fsync


def _sync_pool_reset() -> None:
    """A forked listener process starts its own threads, and its own lock: one held by another
    thread at the fork would stay held in the child for good."""
    global _sync_pool, _sync_lock
    _sync_lock = threading.Lock()
    _sync_pool = None
    _syncs_pending.clear()


os.register_at_fork(after_in_child=_sync_pool_reset)


def _fsync_and_close(fd: int) -> None:
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def stage_bytes(*chunks: bytes | memoryview, sync_later: bool = False) -> Path:
    """Write the chunks, in order, to a new staged file and fsync it; with `sync_later`, the
    fsync runs in a background thread and `staged_file_synced` (which every move or discard
    of the file calls) waits for it.

    Chunks go straight to the file descriptor: a received dataset is written from the buffer it
    arrived in, without first being joined to its header in a copy.
    """
    global _sync_pool
    path = staged_file_new()
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o666)
    try:
        for chunk in chunks:
            view = memoryview(chunk)
            while view:
                view = view[os.write(fd, view) :]
        if not sync_later:
            os.fsync(fd)
    except BaseException:
        os.close(fd)
        path.unlink(missing_ok=True)
        raise
    if not sync_later:
        os.close(fd)
        return path
    try:
        with _sync_lock:
            if _sync_pool is None:
                _sync_pool = ThreadPoolExecutor(max_workers=8, thread_name_prefix="staged-fsync")
            _syncs_pending[path] = _sync_pool.submit(_fsync_and_close, fd)
    except RuntimeError as refused:
        if "shutdown" not in str(refused):
            # e.g. "can't start new thread": the job may already be queued and will close the
            # descriptor itself, so it is not touched here; the instance is refused
            path.unlink(missing_ok=True)
            raise
        try:  # the pool takes no more work (interpreter shutdown): nothing queued, fsync here
            _fsync_and_close(fd)
        except BaseException:
            path.unlink(missing_ok=True)
            raise
    return path


def staged_file_synced(staged: Path) -> None:
    """Wait for the staged file's background fsync, if it has one; raise what it raised."""
    with _sync_lock:
        pending = _syncs_pending.pop(staged, None)
    if pending is not None:
        pending.result()


def instance_relative_path(*, study_uid: str, series_uid: str, sop_uid: str) -> str:
    """Where an instance is stored, from UIDs already checked (checked again here: a path is
    never built from anything else)."""
    if not all(uid_is_valid(uid) for uid in (study_uid, series_uid, sop_uid)):
        raise UnsafeStoragePath("instance path from a value that is not a UID")
    # Resolved under the root when the file is written (staged_file_commit), once.
    return f"studies/{study_uid}/{series_uid}/{sop_uid}.dcm"


def result_relative_path(*, study_uid: str, run_id: int, suffix: str) -> str:
    """Where a product-made result file (a heat map, say) of a study is kept."""
    if not uid_is_valid(study_uid):
        raise UnsafeStoragePath("result path from a value that is not a UID")
    relative = f"results/{study_uid}/run-{run_id}{suffix}"
    storage_path(relative)
    return relative


def staged_file_commit(staged: Path, relative_path: str) -> Path:
    """Move a staged file into place atomically (once its fsync is done) and make the rename
    durable.

    An existing file at the destination comes from an earlier attempt that never registered (a
    crash between rename and commit); the new copy of the same SOP instance replaces it.
    """
    staged_file_synced(staged)
    final = storage_path(relative_path)
    parent = final.parent
    if not parent.is_dir():
        parent.mkdir(parents=True, exist_ok=True)
        _fsync_dir(parent.parent)
    os.replace(staged, final)
    _fsync_dir(parent)
    return final


def staged_file_quarantine(staged: Path) -> str:
    """Move refused bytes to the quarantine; return the path relative to the storage root."""
    staged_file_synced(staged)
    quarantine = storage_root() / "quarantine"
    quarantine.mkdir(parents=True, exist_ok=True)
    # Named by the server-made staging id, never by a value the sender supplied.
    relative = f"quarantine/{staged.stem}.bin"
    os.replace(staged, storage_path(relative))
    _fsync_dir(quarantine)
    return relative


def staged_file_discard(staged: Path) -> None:
    with contextlib.suppress(OSError):  # being dropped: its fsync's failure does not matter
        staged_file_synced(staged)
    staged.unlink(missing_ok=True)
