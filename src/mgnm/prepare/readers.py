"""Reading interaction logs and record files: CSV, TSV and JSON lines, plain or gzip.

Every input is read once, front to back, a line or record at a time: nothing holds a whole
file. While it is read its SHA-256 is computed (for ``prepare.json``) and the bytes consumed
drive the progress bar. A line that cannot be parsed is a :class:`~mgnm.errors.DataError`
naming the file and line.
"""

from __future__ import annotations

import ast
import csv
import gzip
import hashlib
import io
import json
import math
import os
import zlib
from array import array
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import numpy as np

from mgnm.errors import DataError
from mgnm.prepare.progress import Pass

FORMATS = ("csv", "tsv", "jsonl")
_SUFFIX_FORMAT = {".csv": "csv", ".tsv": "tsv", ".tab": "tsv", ".inter": "tsv", ".json": "jsonl",
                  ".jsonl": "jsonl", ".ndjson": "jsonl"}
PROGRESS_EVERY = 1 << 12  # records between progress-bar updates


class _Hashing(io.RawIOBase):
    """A raw reader that hashes and counts every byte it passes on."""

    def __init__(self, fh: io.BufferedIOBase | io.RawIOBase) -> None:
        self._fh = fh
        self.sha = hashlib.sha256()
        self.position = 0

    def readable(self) -> bool:
        return True

    def readinto(self, buf: Any) -> int:
        n = self._fh.readinto(buf)
        if n:
            self.sha.update(memoryview(buf)[:n])
            self.position += n
        return n or 0

    def close(self) -> None:
        self._fh.close()
        super().close()


class Source:
    """One input file, read once: its size, bytes consumed so far and SHA-256."""

    def __init__(self, path: str | Path) -> None:
        self.path = Path(path)
        try:
            raw = open(self.path, "rb")  # noqa: SIM115 - closed by close()
        except FileNotFoundError:
            raise DataError(f"{self.path}: file does not exist") from None
        except IsADirectoryError:
            raise DataError(f"{self.path}: is a directory, expected a file") from None
        except OSError as exc:
            raise DataError(f"{self.path}: cannot read ({exc.strerror})") from None
        self.size = os.fstat(raw.fileno()).st_size
        self._hashing = _Hashing(raw)
        self.binary = io.BufferedReader(self._hashing, buffer_size=1 << 20)
        self.gzipped = self.binary.peek(2)[:2] == b"\x1f\x8b"
        self.stream: io.BufferedIOBase = (
            gzip.GzipFile(fileobj=self.binary, mode="rb") if self.gzipped else self.binary)
        self._text: io.TextIOWrapper | None = None

    @property
    def position(self) -> int:
        return self._hashing.position

    def sha256(self) -> str:
        """The file's hash; reads whatever the consumer left unread."""
        while self.binary.read(1 << 20):
            pass
        return self._hashing.sha.hexdigest()

    def record(self) -> dict[str, Any]:
        return {"path": str(self.path), "bytes": self.size, "sha256": self.sha256()}

    def text(self) -> io.TextIOWrapper:
        # kept on self: a collected wrapper would close the streams below it
        if self._text is None:
            self._text = io.TextIOWrapper(self.stream, encoding="utf-8-sig", newline="")
        return self._text

    def close(self) -> None:
        self.stream.close()
        self.binary.close()

    def __enter__(self) -> Source:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


def detect_format(path: Path, fmt: str | None) -> str:
    """``fmt`` if given, else from the name (``.csv``, ``.tsv``, ``.jsonl``/``.json``, + ``.gz``)."""
    if fmt:
        if fmt not in FORMATS:
            raise DataError(f"{path}: unknown format {fmt!r} (choose from {', '.join(FORMATS)})")
        return fmt
    suffixes = [s.lower() for s in path.suffixes]
    if suffixes and suffixes[-1] == ".gz":
        suffixes.pop()
    if suffixes and suffixes[-1] in _SUFFIX_FORMAT:
        return _SUFFIX_FORMAT[suffixes[-1]]
    raise DataError(f"{path}: cannot tell the format from the name; pass --format "
                    f"{'|'.join(FORMATS)}")


def _lines(source: Source, bar: Pass) -> Iterator[tuple[int, str]]:
    """(line number, line) of a text file, with decoding and gzip errors named by line."""
    n = 0
    try:
        for n, line in enumerate(source.text(), start=1):  # noqa: B007 - n used after the loop
            if n % PROGRESS_EVERY == 0:
                bar.update(source.position)
            yield n, line
    except UnicodeDecodeError as exc:
        raise DataError(f"{source.path}, line {n + 1}: not UTF-8 text ({exc.reason})") from None
    except (EOFError, zlib.error, gzip.BadGzipFile) as exc:
        raise DataError(f"{source.path}, line {n + 1}: corrupt or truncated gzip data "
                        f"({exc})") from None
    bar.update(source.position)


def parse_object(text: str, where: str, json_only: bool = False) -> dict[str, Any]:
    """One JSON object, or (unless ``json_only``) a Python literal dict (the 2014 Amazon
    metadata), never evaluated."""
    try:
        obj = json.loads(text)
    except ValueError:
        if json_only:
            raise DataError(f"{where}: not a JSON object: {text.strip()[:60]!r}") from None
        try:
            obj = ast.literal_eval(text.strip())
        except (ValueError, SyntaxError, TypeError, MemoryError, RecursionError):
            snippet = text.strip()[:60]
            raise DataError(f"{where}: not a JSON object or Python literal: {snippet!r}") from None
    if not isinstance(obj, dict):
        raise DataError(f"{where}: expected an object ({{...}}), found {type(obj).__name__}")
    return obj


def iter_objects(source: Source, bar: Pass,
                 json_only: bool = False) -> Iterator[tuple[int, dict[str, Any]]]:
    """(line number, object) for every non-blank line of a JSON-lines file."""
    for n, line in _lines(source, bar):
        if line.strip():
            yield n, parse_object(line, f"{source.path}, line {n}", json_only)


def first_object(path: str | Path, json_only: bool = False) -> tuple[int, dict[str, Any]]:
    """(line number, object) of the first non-blank line of a JSON-lines file (read no
    further); an empty file is an error."""
    with Source(path) as src, Pass("peek", src.size, quiet=True) as bar:
        for n, obj in iter_objects(src, bar, json_only):
            return n, obj
    raise DataError(f"{path}: empty file (expected one JSON object per line)")


def iter_fields(source: Source, fmt: str, fields: Sequence[str], bar: Pass,
                json_only: bool = False) -> Iterator[tuple[int, list[Any]]]:
    """(line number, values of ``fields``) per record; a missing or empty value is ``None``."""
    if fmt == "jsonl":
        for n, obj in iter_objects(source, bar, json_only):
            yield n, [_present(obj.get(f)) for f in fields]
        return
    reader = csv.reader(_only_text(_lines(source, bar)), delimiter="," if fmt == "csv" else "\t")
    try:
        header = next(reader)
    except StopIteration:
        raise DataError(f"{source.path}: empty file (expected a header row naming the "
                        f"columns {', '.join(fields)})") from None
    except csv.Error as exc:
        raise DataError(f"{source.path}, line 1: {exc}") from None
    header = [h.strip() for h in header]
    missing = [f for f in fields if f not in header]
    if missing:
        hint = f" (is it {'tab' if fmt == 'csv' else 'comma'}-separated? pass --format)" \
            if len(header) == 1 else ""
        raise DataError(f"{source.path}, line 1: no column {', '.join(map(repr, missing))}; "
                        f"the header has {header}{hint}")
    idx = [header.index(f) for f in fields]
    width = len(header)
    while True:
        try:
            row = next(reader)
        except StopIteration:
            return
        except csv.Error as exc:
            raise DataError(f"{source.path}, line {reader.line_num}: {exc}") from None
        if not row or (len(row) == 1 and not row[0].strip()):
            continue
        if len(row) != width:
            raise DataError(f"{source.path}, line {reader.line_num}: {len(row)} fields, the "
                            f"header has {width}")
        yield reader.line_num, [_present(row[i]) for i in idx]


def _only_text(lines: Iterator[tuple[int, str]]) -> Iterator[str]:
    for _, line in lines:
        yield line


def _present(value: Any) -> Any:
    if value is None or (isinstance(value, str) and not value.strip()):
        return None
    return value


def parse_number(value: Any, what: str, where: str) -> float:
    """A finite number from a JSON number or a numeric string."""
    if isinstance(value, bool):
        raise DataError(f"{where}: {what} {value!r} is not a number")
    try:
        x = float(value)
    except (TypeError, ValueError):
        raise DataError(f"{where}: {what} {value!r} is not a number") from None
    if not math.isfinite(x):
        raise DataError(f"{where}: {what} {value!r} is not finite")
    return x


def parse_time(value: Any, where: str) -> float:
    """Seconds: a number as given, or an ISO-8601 date/time (UTC unless it says otherwise)."""
    if isinstance(value, str):
        text = value.strip()
        try:
            return parse_number(text, "time", where)
        except DataError:
            pass
        try:
            stamp = datetime.fromisoformat(text)
        except ValueError:
            raise DataError(f"{where}: time {value!r} is neither a number nor an ISO-8601 "
                            f"date") from None
        if stamp.tzinfo is None:
            stamp = stamp.replace(tzinfo=UTC)
        return stamp.timestamp()
    return parse_number(value, "time", where)


def id_text(value: Any, what: str, where: str) -> str:
    """An ID as text: strings as they are (stripped), integers in decimal."""
    if isinstance(value, str):
        return value.strip()
    if isinstance(value, bool) or not isinstance(value, int | float):
        raise DataError(f"{where}: {what} {value!r} is not a string or number")
    if isinstance(value, float) and value.is_integer():
        return str(int(value))
    return str(value)


@dataclass
class Log:
    """The interactions read from a log, as codes into the original-ID lists."""

    path: Path
    users: np.ndarray  # int64 codes into user_ids
    items: np.ndarray  # int64 codes into item_ids
    times: np.ndarray | None
    ratings: np.ndarray | None
    user_ids: list[str]
    item_ids: list[str]
    input: dict[str, Any]
    counts: dict[str, int] = field(default_factory=dict)


def read_interactions(path: str | Path, user: str, item: str, time: str | None = None,
             rating: str | None = None, fmt: str | None = None,
             min_rating: float | None = None, label: str | None = None,
             quiet: bool = False, *, required: str | None = None,
             numeric_time: bool = False, json_only: bool = False) -> Log:
    """Read (user, item[, time][, rating]) from a log, dropping rows with a missing field and,
    with ``min_rating``, rows rated below it.

    ``required``: what the records are (``"an Amazon 2023 review"``); a record with a missing
    field is then an error naming it, not a dropped row. ``numeric_time``: times must be
    numbers (no ISO dates). ``json_only``: JSON lines must be JSON (no Python literals).
    Rows are kept in file order: row ``r`` of the result is the ``r``-th row kept."""
    path = Path(path)
    fmt = detect_format(path, fmt)
    if min_rating is not None and rating is None:
        raise DataError("--min-rating needs --rating (the column holding the rating)")
    fields = [user, item] + ([time] if time else []) + ([rating] if rating else [])
    u_code: dict[str, int] = {}
    i_code: dict[str, int] = {}
    users, items = array("q"), array("q")
    times, ratings = array("d"), array("d")
    seen = [0] * len(fields)
    read = missing = low = 0
    with Source(path) as src, Pass(f"read {label or path.name}", src.size, quiet=quiet) as bar:
        for n, values in iter_fields(src, fmt, fields, bar, json_only):
            read += 1
            bar.count = read
            where = f"{path}, line {n}"
            if any(v is None for v in values):
                if required:
                    absent = [f for f, v in zip(fields, values, strict=True) if v is None]
                    raise DataError(f"{where}: no {', '.join(map(repr, absent))} ({required} "
                                    f"has {', '.join(map(repr, fields))})")
                missing += 1
                for j, v in enumerate(values):
                    seen[j] += v is not None
                continue
            for j in range(len(fields)):
                seen[j] += 1
            r = parse_number(values[-1], f"rating {rating!r}", where) if rating else None
            if min_rating is not None and r is not None and r < min_rating:
                low += 1
                continue
            u = id_text(values[0], f"user {user!r}", where)
            i = id_text(values[1], f"item {item!r}", where)
            users.append(u_code.setdefault(u, len(u_code)))
            items.append(i_code.setdefault(i, len(i_code)))
            if time:
                times.append(parse_number(values[2], f"time {time!r}", where) if numeric_time
                             else parse_time(values[2], where))
            if r is not None:
                ratings.append(r)
        bar.update(src.position, read)
        if read and missing == read:
            absent = [f for f, s in zip(fields, seen, strict=True) if s == 0]
            if absent:
                raise DataError(f"{path}: no record has the field "
                                f"{', '.join(map(repr, absent))}")
        info = src.record()
    return Log(path, np.frombuffer(users, dtype=np.int64).copy(),
               np.frombuffer(items, dtype=np.int64).copy(),
               np.frombuffer(times, dtype=np.float64).copy() if time else None,
               np.frombuffer(ratings, dtype=np.float64).copy() if rating else None,
               list(u_code), list(i_code), info,
               {"records": read, "missing_field": missing, "below_min_rating": low})
