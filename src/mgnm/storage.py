"""Atomic file writes and checked reads of run-directory files.

Every file of a run directory is written to a temporary sibling, flushed, fsynced and then
renamed over the target, so an interrupted run leaves either the old or the new file, never
a torn one.
"""

from __future__ import annotations

import io
import json
import os
import tempfile
from pathlib import Path
from typing import Any

import torch
import yaml

from mgnm.errors import CheckpointError, StorageError, os_error_message


def _read_umask() -> int:
    """The process's umask, read once at import: from ``/proc/self/status`` where the kernel
    shows it (Linux 4.7+), which changes nothing; elsewhere by setting and restoring it, once,
    while the module is imported (never around a write, where another thread could create a
    file in between)."""
    try:
        with open("/proc/self/status", encoding="ascii") as f:
            for line in f:
                if line.startswith("Umask:"):
                    return int(line.split()[1], 8)
    except (OSError, ValueError):
        pass
    mask = os.umask(0o022)
    os.umask(mask)
    return mask


_UMASK = _read_umask()


def make_dirs(path: str | Path) -> Path:
    """``mkdir -p`` whose failure is one :class:`StorageError` naming the path."""
    path = Path(path)
    try:
        path.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise StorageError(os_error_message(path, exc, "cannot create directory")) from None
    return path


def atomic_write_bytes(path: str | Path, data: bytes) -> None:
    """Write ``data`` to a temporary sibling, fsync, rename over ``path``.

    The file gets the permissions a plain ``open()`` would (0666 less the umask), not
    mkstemp's 0600. Any OS failure (no permission, disk full) is a :class:`StorageError`
    naming ``path``; the temporary file is removed and ``path`` is left as it was.
    """
    path = Path(path)
    make_dirs(path.parent)
    try:
        fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    except OSError as exc:
        raise StorageError(os_error_message(path, exc)) from None
    try:
        os.fchmod(fd, 0o666 & ~_UMASK)
        with os.fdopen(fd, "wb") as f:
            f.write(data)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except OSError as exc:
        Path(tmp).unlink(missing_ok=True)
        raise StorageError(os_error_message(path, exc)) from None
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


def append_text(path: str | Path, text: str) -> None:
    """Append ``text`` and flush (a log line); OS failures become a :class:`StorageError`."""
    try:
        with open(path, "a", encoding="utf-8") as f:
            f.write(text)
            f.flush()
    except OSError as exc:
        raise StorageError(os_error_message(path, exc)) from None


def remove(path: str | Path) -> None:
    """Delete a file if it exists; OS failures become a :class:`StorageError`."""
    try:
        Path(path).unlink(missing_ok=True)
    except OSError as exc:
        raise StorageError(os_error_message(path, exc, "cannot remove")) from None


def atomic_write_text(path: str | Path, text: str) -> None:
    atomic_write_bytes(path, text.encode("utf-8"))


def write_json(path: str | Path, obj: Any) -> None:
    atomic_write_text(path, json.dumps(obj, indent=2, sort_keys=False) + "\n")


def write_yaml(path: str | Path, obj: Any) -> None:
    atomic_write_text(path, yaml.safe_dump(obj, sort_keys=False))


def save_torch(path: str | Path, obj: Any) -> None:
    buf = io.BytesIO()
    torch.save(obj, buf)
    atomic_write_bytes(path, buf.getvalue())


def load_torch(path: str | Path, map_location: str | torch.device = "cpu") -> Any:
    path = Path(path)
    if not path.is_file():
        raise CheckpointError(f"{path}: checkpoint file does not exist")
    try:
        return torch.load(path, map_location=map_location, weights_only=True)
    except Exception as exc:  # torch raises many types for a damaged file
        raise CheckpointError(
            f"{path}: corrupt or unreadable checkpoint ({type(exc).__name__}: "
            f"{str(exc).splitlines()[0] if str(exc) else 'no detail'})"
        ) from None


def read_json(path: str | Path) -> Any:
    path = Path(path)
    try:
        return json.loads(path.read_text(encoding="utf-8"))
    except FileNotFoundError:
        raise CheckpointError(f"{path}: file does not exist") from None
    except (json.JSONDecodeError, UnicodeDecodeError) as exc:
        raise CheckpointError(f"{path}: not valid JSON ({exc})") from None
