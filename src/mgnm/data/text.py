"""Reading a dataset's text files with errors that name the file."""

from __future__ import annotations

from pathlib import Path

from mgnm.errors import DataError


def read_lines(path: Path) -> list[str]:
    """The lines of a UTF-8 text file; undecodable or unreadable files are a DataError."""
    try:
        text = path.read_bytes().decode("utf-8")
    except UnicodeDecodeError as exc:
        raise DataError(f"{path}: not UTF-8 text ({exc.reason} at byte {exc.start})") from None
    except OSError as exc:
        raise DataError(f"{path}: cannot read ({exc.strerror})") from None
    return text.splitlines()
