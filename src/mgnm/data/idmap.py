"""Original-ID maps of a dataset: ``u_id_map.tsv`` and ``i_id_map.tsv``.

A dataset built from a raw log (``mgnm prepare``) keeps the original user and item IDs beside
the 0-based indices of the ``.inter`` file, so that recommendations, exports and the HTTP
service speak the IDs a user knows. Each file is tab-separated with a header row:

- ``i_id_map.tsv``: a column ``itemID`` (the index) and a column ``id`` (the original ID, any
  string); further columns (``title``, ...) are item attributes, shown where useful;
- ``u_id_map.tsv``: ``userID`` and ``id`` likewise.

Both are optional. Where a map exists it must cover every index exactly once.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from mgnm.data.text import read_lines
from mgnm.errors import DataError

MAP_FILES = {"user": "u_id_map.tsv", "item": "i_id_map.tsv"}
INDEX_COLUMNS = {"user": "userID", "item": "itemID"}
ORIGINAL_COLUMN = "id"


@dataclass(frozen=True)
class IdMap:
    """Original IDs of the users or items of a dataset, in index order."""

    kind: str  # "user" or "item"
    original: tuple[str, ...]  # original[i] = the original ID of index i
    attributes: dict[str, tuple[str, ...]] = field(default_factory=dict)  # e.g. "title"
    path: Path | None = None

    def __post_init__(self) -> None:
        object.__setattr__(self, "_index", {o: i for i, o in enumerate(self.original)})

    def __len__(self) -> int:
        return len(self.original)

    def index_of(self, ids: Iterable[str]) -> np.ndarray:
        """Indices of original IDs; an unknown one raises :class:`KeyError` naming it."""
        lookup: dict[str, int] = self._index  # type: ignore[attr-defined]
        out = []
        for raw in ids:
            key = str(raw)
            if key not in lookup:
                raise KeyError(key)
            out.append(lookup[key])
        return np.asarray(out, dtype=np.int64)

    def contains(self, original_id: str) -> bool:
        return str(original_id) in self._index  # type: ignore[attr-defined]

    def original_of(self, indices: Sequence[int] | np.ndarray) -> list[str]:
        return [self.original[int(i)] for i in indices]

    def extended(self, new_ids: Sequence[str]) -> IdMap:
        """A map with ``new_ids`` appended as the next indices (for items added later)."""
        attrs = {k: v + ("",) * len(new_ids) for k, v in self.attributes.items()}
        return IdMap(self.kind, self.original + tuple(str(x) for x in new_ids), attrs, self.path)


def write_id_map(path: str | Path, kind: str, original: Sequence[str],
                 attributes: dict[str, Sequence[str]] | None = None) -> str:
    """The text of an ID map file (the caller writes it atomically)."""
    attributes = attributes or {}
    cols = [ORIGINAL_COLUMN, INDEX_COLUMNS[kind], *attributes]
    lines = ["\t".join(cols)]
    for i, orig in enumerate(original):
        extra = [_clean(str(attributes[c][i])) for c in attributes]
        lines.append("\t".join([_clean(str(orig)), str(i), *extra]))
    return "\n".join(lines) + "\n"


def _clean(value: str) -> str:
    return value.replace("\t", " ").replace("\r", " ").replace("\n", " ")


def load_id_map(root: Path, kind: str, n: int) -> IdMap | None:
    """The ``kind`` map of dataset directory ``root`` (``None`` when it has none)."""
    path = root / MAP_FILES[kind]
    if not path.is_file():
        return None
    lines = read_lines(path)
    if not lines:
        raise DataError(f"{path}: empty file (expected a header row with "
                        f"{ORIGINAL_COLUMN}, {INDEX_COLUMNS[kind]})")
    header = lines[0].split("\t")
    index_col = INDEX_COLUMNS[kind]
    missing = [c for c in (ORIGINAL_COLUMN, index_col) if c not in header]
    if missing:
        raise DataError(f"{path}, line 1: missing column {', '.join(map(repr, missing))}; "
                        f"header has {header}")
    oi, ii = header.index(ORIGINAL_COLUMN), header.index(index_col)
    extra = [(j, c) for j, c in enumerate(header) if j not in (oi, ii)]
    original: list[str | None] = [None] * n
    attrs: dict[str, list[str]] = {c: [""] * n for _, c in extra}
    seen: dict[str, int] = {}
    for ln, line in enumerate(lines[1:], start=2):
        if not line.strip():
            continue
        parts = line.split("\t")
        if len(parts) < len(header):
            parts += [""] * (len(header) - len(parts))
        try:
            idx = int(parts[ii])
        except ValueError:
            raise DataError(f"{path}, line {ln}: {index_col} {parts[ii]!r} is not an "
                            f"integer") from None
        if not 0 <= idx < n:
            raise DataError(f"{path}, line {ln}: {index_col} {idx} is out of range (the "
                            f"dataset has {kind}s 0..{n - 1})")
        orig = parts[oi]
        if original[idx] is not None:
            raise DataError(f"{path}, line {ln}: {index_col} {idx} appears twice")
        if orig in seen:
            raise DataError(f"{path}, line {ln}: {ORIGINAL_COLUMN} {orig!r} appears twice "
                            f"(first at line {seen[orig]})")
        seen[orig] = ln
        original[idx] = orig
        for j, c in extra:
            attrs[c][idx] = parts[j]
    absent = [i for i, o in enumerate(original) if o is None]
    if absent:
        raise DataError(f"{path}: no row for {index_col} {absent[0]} ({len(absent)} of {n} "
                        f"{kind}s have no original ID)")
    return IdMap(kind, tuple(o for o in original if o is not None),
                 {c: tuple(v) for c, v in attrs.items()}, path)
