"""The append-only store of catalogue changes made after training: items added (their IDs
and features, the inputs that place them) and items retired.

One file, ``items.log``, in the store's directory (by default ``RUN_DIR/catalogue``). It is a
sequence of records, each framed as::

    length  4 bytes, unsigned little-endian: the size of the payload in bytes
    crc32   4 bytes, unsigned little-endian: zlib.crc32 of the payload
    payload length bytes of UTF-8 JSON, one of
            {"op": "add", "items": [{"id": ID, "features": {modality: [numbers]}}]}
            {"op": "retire", "ids": [ID, ...]}

A record is written, flushed and fsynced before the write returns. A last record cut short
(a crash while it was written) is skipped with a warning and cut off before the next append;
a damaged record followed by more records is an error. Nothing is unpickled or evaluated.
"""

from __future__ import annotations

import json
import os
import struct
import threading
import zlib
from pathlib import Path
from typing import Any

from mgnm.errors import DataError

LOG_NAME = "items.log"
_HEADER = struct.Struct("<II")
MAX_RECORD = 1 << 30


class CatalogueError(DataError):
    """The catalogue store cannot be read or written."""


def _decode(path: Path, offset: int, payload: bytes) -> dict[str, Any]:
    try:
        record = json.loads(payload.decode("utf-8"))
    except (UnicodeDecodeError, ValueError) as exc:
        raise CatalogueError(f"{path}: record at byte {offset} is not JSON ({exc})") from None
    if not isinstance(record, dict) or record.get("op") not in ("add", "retire"):
        raise CatalogueError(f"{path}: record at byte {offset} has no op 'add' or 'retire'")
    return record


class Catalogue:
    """An opened store: :attr:`records` (what it held), :attr:`warning` (a torn last record
    that was skipped, or None), and :meth:`append` for new records."""

    def __init__(self, directory: str | Path) -> None:
        self.directory = Path(directory)
        self.path = self.directory / LOG_NAME
        self.warning: str | None = None
        self._lock = threading.Lock()
        self._file = None
        self.records, self._good = self._read()

    def _read(self) -> tuple[list[dict[str, Any]], int]:
        try:
            data = self.path.read_bytes()
        except FileNotFoundError:
            return [], 0
        except OSError as exc:
            raise CatalogueError(f"{self.path}: cannot read ({exc.strerror or exc})") from None
        records, pos = [], 0
        while pos < len(data):
            if len(data) - pos < _HEADER.size:
                self.warning = self._torn(pos, len(data), "its header is incomplete")
                break
            length, crc = _HEADER.unpack_from(data, pos)
            end = pos + _HEADER.size + length
            if length > MAX_RECORD or end > len(data):
                if length > MAX_RECORD or end < len(data):  # not a plain cut
                    raise CatalogueError(f"{self.path}: record at byte {pos} is damaged")
                self.warning = self._torn(pos, len(data), "it is cut short")
                break
            payload = data[pos + _HEADER.size:end]
            if zlib.crc32(payload) != crc:
                if end == len(data):
                    self.warning = self._torn(pos, len(data), "its checksum does not match")
                    break
                raise CatalogueError(f"{self.path}: record at byte {pos} fails its checksum "
                                     f"and more records follow (the file is damaged)")
            records.append(_decode(self.path, pos, payload))
            pos = end
        return records, pos

    def _torn(self, pos: int, size: int, why: str) -> str:
        return (f"{self.path}: skipped the last record (bytes {pos}..{size}): {why}, "
                f"a write that did not finish")

    def append(self, record: dict[str, Any]) -> None:
        """Write one record and make it durable (flush + fsync) before returning."""
        payload = json.dumps(record, separators=(",", ":"), allow_nan=False).encode("utf-8")
        with self._lock:
            try:
                if self._file is None:
                    self._open()
                self._file.write(_HEADER.pack(len(payload), zlib.crc32(payload)) + payload)
                self._file.flush()
                os.fsync(self._file.fileno())
            except OSError as exc:
                raise CatalogueError(f"{self.path}: cannot write ({exc.strerror or exc})") \
                    from None
        self.records.append(record)

    def _open(self) -> None:
        created = not self.directory.exists()
        self.directory.mkdir(parents=True, exist_ok=True)
        if created:
            _fsync_dir(self.directory.parent)
        new = not self.path.exists()
        f = open(self.path, "ab")  # noqa: SIM115 - kept open for appends
        if f.tell() != self._good:  # a torn tail: cut it off before appending
            f.truncate(self._good)
            f.seek(self._good)
            os.fsync(f.fileno())
        if new:
            _fsync_dir(self.directory)
        self._file = f

    def close(self) -> None:
        with self._lock:
            if self._file is not None:
                self._file.close()
                self._file = None


def _fsync_dir(path: Path) -> None:
    fd = os.open(path, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)
