"""A streaming multipart/related reader: each part goes to a staged file, never all in memory."""

from __future__ import annotations

import os
from collections.abc import Iterator
from dataclasses import dataclass
from email.parser import BytesHeaderParser
from pathlib import Path
from typing import BinaryIO

from worklist import storage

CHUNK_BYTES = 1024 * 1024
MAX_HEADER_BYTES = 16 * 1024


class MalformedMultipart(Exception):
    pass


class RequestTooLarge(Exception):
    pass


@dataclass(frozen=True, kw_only=True)
class StagedPart:
    content_type: str
    path: Path | None  # None when the part was over the size limit (its bytes were dropped)
    size: int


class _Reader:
    def __init__(self, stream: BinaryIO, *, max_request_bytes: int) -> None:
        self.stream = stream
        self.buffer = bytearray(b"\r\n")  # so the first delimiter looks like every other one
        self.total = 0
        self.max_request_bytes = max_request_bytes
        self.eof = False

    def fill(self) -> bool:
        if self.eof:
            return False
        chunk = self.stream.read(CHUNK_BYTES)
        if not chunk:
            self.eof = True
            return False
        self.total += len(chunk)
        if self.total > self.max_request_bytes:
            raise RequestTooLarge
        self.buffer += chunk
        return True


def multipart_parts(
    stream: BinaryIO, *, boundary: str, max_request_bytes: int, max_part_bytes: int
) -> Iterator[StagedPart]:
    """Yield parts one at a time; the caller consumes each staged file before the next is read."""
    delimiter = b"\r\n--" + boundary.encode("latin-1")
    reader = _Reader(stream, max_request_bytes=max_request_bytes)

    # Preamble: everything before the first delimiter.
    while (start := reader.buffer.find(delimiter)) < 0:
        del reader.buffer[: max(0, len(reader.buffer) - len(delimiter))]
        if not reader.fill():
            raise MalformedMultipart("no multipart boundary found in the body")
    del reader.buffer[: start + len(delimiter)]

    while True:
        while len(reader.buffer) < 2 and reader.fill():
            pass
        if reader.buffer[:2] == b"--":
            return  # closing delimiter
        while (header_end := reader.buffer.find(b"\r\n\r\n")) < 0:
            if len(reader.buffer) > MAX_HEADER_BYTES or not reader.fill():
                raise MalformedMultipart("part headers are missing or too long")
        raw_headers = bytes(reader.buffer[:header_end]).lstrip(b" \t").removeprefix(b"\r\n")
        del reader.buffer[: header_end + 4]
        headers = BytesHeaderParser().parsebytes(raw_headers)
        content_type = (headers.get_content_type() if headers.get("Content-Type") else "").lower()
        yield _stage_body(
            reader, delimiter=delimiter, content_type=content_type, max_part_bytes=max_part_bytes
        )


def _stage_body(
    reader: _Reader, *, delimiter: bytes, content_type: str, max_part_bytes: int
) -> StagedPart:
    path = storage.staged_file_new()
    size = 0
    oversize = False
    with open(path, "wb") as handle:
        while True:
            end = reader.buffer.find(delimiter)
            if end >= 0:
                writable = end
            else:
                writable = max(0, len(reader.buffer) - len(delimiter) + 1)
            if writable:
                size += writable
                if size > max_part_bytes:
                    oversize = True
                if not oversize:
                    handle.write(reader.buffer[:writable])
                del reader.buffer[:writable]
            if end >= 0:
                del reader.buffer[: len(delimiter)]
                break
            if not reader.fill():
                handle.close()
                path.unlink(missing_ok=True)
                raise MalformedMultipart("body ended inside a part (no closing boundary)")
        handle.flush()
        os.fsync(handle.fileno())
    if oversize:
        path.unlink(missing_ok=True)
        return StagedPart(content_type=content_type, path=None, size=size)
    return StagedPart(content_type=content_type, path=path, size=size)
