"""Loading and validating an MMRec-format dataset directory.

A directory ``<name>/`` holds ``<name>.inter`` (tab-separated, header row, columns
``userID``, ``itemID``, ``x_label`` with 0 = train, 1 = validation, 2 = test; other columns
are ignored) and any number of ``<modality>_feat.npy`` files (row i = item i).
Everything a user can get wrong raises :class:`~mgnm.errors.DataError` naming the file and
line; nothing is silently repaired except duplicate (user, item) rows, which are dropped
with a warning (the first occurrence is kept).
"""

from __future__ import annotations

import warnings
from dataclasses import dataclass, field, replace
from pathlib import Path

import numpy as np

from mgnm.data.idmap import IdMap, load_id_map
from mgnm.data.text import read_lines
from mgnm.errors import DataError

REQUIRED_COLUMNS = ("userID", "itemID", "x_label")
SPLIT_NAMES = ("train", "valid", "test")


@dataclass(frozen=True)
class Split:
    """The (user, item) pairs of one split, as parallel int64 arrays."""

    users: np.ndarray
    items: np.ndarray

    def __len__(self) -> int:
        return int(self.users.shape[0])


@dataclass(frozen=True)
class Dataset:
    """A validated dataset: integer interactions per split and float32 item features."""

    name: str
    n_users: int
    n_items: int
    train: Split
    valid: Split
    test: Split
    features: dict[str, np.ndarray] = field(default_factory=dict)
    path: Path | None = None
    duplicates_dropped: int = 0
    user_map: IdMap | None = None  # original IDs (u_id_map.tsv), when the directory has one
    item_map: IdMap | None = None  # original IDs and attributes (i_id_map.tsv)

    @property
    def modalities(self) -> list[str]:
        return list(self.features)

    def split(self, name: str) -> Split:
        if name not in SPLIT_NAMES:
            raise ValueError(f"unknown split {name!r}; expected one of {SPLIT_NAMES}")
        return getattr(self, name)

    def with_modalities(self, names: list[str] | tuple[str, ...] | None) -> Dataset:
        """The same data with only the named modalities (``None`` keeps all), in that order."""
        if names is None:
            return self
        unknown = [n for n in names if n not in self.features]
        if unknown:
            raise DataError(
                f"{self._where()}: no modality {', '.join(map(repr, unknown))}; "
                f"this dataset has {self.modalities or 'none'} (files <modality>_feat.npy)"
            )
        return replace(self, features={n: self.features[n] for n in names})

    def eval_users(self, split: str) -> np.ndarray:
        """Sorted users of ``split`` that have at least one training interaction."""
        users = np.unique(self.split(split).users)
        has_train = np.zeros(self.n_users, dtype=bool)
        has_train[self.train.users] = True
        return users[has_train[users]]

    def stats(self) -> dict:
        """Summary statistics, as printed by ``mgnm info``."""
        total = len(self.train) + len(self.valid) + len(self.test)
        train_items = np.unique(self.train.items)
        dropped = {
            s: int(np.unique(self.split(s).users).size - self.eval_users(s).size)
            for s in ("valid", "test")
        }
        return {
            "name": self.name,
            "path": str(self.path) if self.path else None,
            "users": self.n_users,
            "items": self.n_items,
            "interactions": total,
            "train": len(self.train),
            "valid": len(self.valid),
            "test": len(self.test),
            "sparsity": 1.0 - total / (self.n_users * self.n_items),
            "items_in_train": int(train_items.size),
            "modalities": {m: int(f.shape[1]) for m, f in self.features.items()},
            "users_dropped_from_eval": dropped,
            "duplicates_dropped": self.duplicates_dropped,
        }

    def _where(self) -> str:
        return str(self.path) if self.path else self.name


def load_dataset(path: str | Path, modalities: list[str] | None = None) -> Dataset:
    """Load and validate the MMRec-format directory ``path``.

    ``modalities`` selects feature files by name (``["image", "audio"]``); ``None`` loads every
    ``*_feat.npy`` in the directory, sorted by name.
    """
    root = Path(path)
    if not root.exists():
        raise DataError(f"{root}: dataset directory does not exist")
    if not root.is_dir():
        raise DataError(f"{root}: not a directory (expected an MMRec-format dataset directory)")
    inter_path = _find_inter_file(root)
    users, items, labels, n_dup = _read_inter(inter_path)
    n_users = int(users.max()) + 1
    n_items = int(items.max()) + 1
    splits = {}
    for code, name in enumerate(SPLIT_NAMES):
        mask = labels == code
        splits[name] = Split(users[mask].copy(), items[mask].copy())
    if len(splits["train"]) == 0:
        raise DataError(f"{inter_path}: the train split is empty (no row has x_label 0)")

    feat_files = sorted(root.glob("*_feat.npy"))
    available = {p.name[: -len("_feat.npy")]: p for p in feat_files}
    if modalities is not None:
        missing = [m for m in modalities if m not in available]
        if missing:
            raise DataError(
                f"{root}: no feature file for modality {', '.join(map(repr, missing))}; "
                f"found {sorted(available) or 'none'}"
            )
        chosen = list(modalities)
    else:
        chosen = sorted(available)
    features = {m: _load_feature(available[m], n_items) for m in chosen}
    return Dataset(
        name=root.resolve().name,
        n_users=n_users,
        n_items=n_items,
        features=features,
        path=root,
        duplicates_dropped=n_dup,
        user_map=load_id_map(root, "user", n_users),
        item_map=load_id_map(root, "item", n_items),
        **splits,
    )


def _find_inter_file(root: Path) -> Path:
    preferred = root / f"{root.resolve().name}.inter"
    if preferred.is_file():
        return preferred
    candidates = sorted(root.glob("*.inter"))
    if len(candidates) == 1:
        return candidates[0]
    if not candidates:
        raise DataError(f"{root}: no interaction file (expected {preferred.name})")
    names = ", ".join(p.name for p in candidates)
    raise DataError(f"{root}: several .inter files ({names}) and none named {preferred.name}")


def _read_inter(path: Path) -> tuple[np.ndarray, np.ndarray, np.ndarray, int]:
    lines = read_lines(path)
    if not lines or not lines[0].strip():
        raise DataError(f"{path}: empty file (expected a header row with {_cols()})")
    header = [h.strip() for h in lines[0].split("\t")]
    missing = [c for c in REQUIRED_COLUMNS if c not in header]
    if missing:
        hint = " (the file must be tab-separated)" if len(header) == 1 else ""
        raise DataError(
            f"{path}, line 1: missing column {', '.join(map(repr, missing))}; "
            f"header has {header}{hint}"
        )
    col_idx = [header.index(c) for c in REQUIRED_COLUMNS]
    needed = max(col_idx) + 1

    line_no: list[int] = []
    fields: list[list[str]] = []
    for n, line in enumerate(lines[1:], start=2):
        if not line.strip():
            continue
        parts = line.split("\t")
        if len(parts) < needed:
            raise DataError(
                f"{path}, line {n}: {len(parts)} field(s), expected {len(header)} "
                f"(tab-separated: {', '.join(header)})"
            )
        line_no.append(n)
        fields.append(parts)
    if not fields:
        raise DataError(f"{path}: no interaction rows after the header")
    lines_arr = np.asarray(line_no)
    cols = [_int_column([r[j] for r in fields], name, lines_arr, path)
            for j, name in zip(col_idx, REQUIRED_COLUMNS, strict=True)]
    users, items, labels = cols
    bad = np.flatnonzero((labels < 0) | (labels > 2))
    if bad.size:
        k = bad[0]
        raise DataError(
            f"{path}, line {lines_arr[k]}: x_label {labels[k]} is not 0 (train), "
            f"1 (validation) or 2 (test)"
        )
    users, items, labels, n_dup, first_dup = _drop_duplicates(users, items, labels)
    if n_dup:
        warnings.warn(
            f"{path}: {n_dup} duplicate (userID, itemID) row(s), the first at line "
            f"{lines_arr[first_dup]}; kept the first occurrence of each pair",
            stacklevel=3,
        )
    return users, items, labels, n_dup


def _cols() -> str:
    return ", ".join(REQUIRED_COLUMNS)


def _int_column(values: list[str], name: str, lines: np.ndarray, path: Path) -> np.ndarray:
    try:
        arr = np.array(values).astype(np.int64)
    except (ValueError, OverflowError):
        for k, v in enumerate(values):
            try:
                int(v.strip())
            except ValueError:
                raise DataError(
                    f"{path}, line {lines[k]}: {name} {v.strip()!r} is not an integer"
                ) from None
        raise DataError(f"{path}: column {name} holds values that are not integers") from None
    neg = np.flatnonzero(arr < 0)
    if neg.size:
        k = neg[0]
        raise DataError(
            f"{path}, line {lines[k]}: {name} {arr[k]} is negative (IDs are 0-based integers)"
        )
    return arr


def _drop_duplicates(
    users: np.ndarray, items: np.ndarray, labels: np.ndarray
) -> tuple[np.ndarray, np.ndarray, np.ndarray, int, int]:
    keys = users * (int(items.max()) + 1) + items
    _, first = np.unique(keys, return_index=True)
    n_dup = users.size - first.size
    if n_dup == 0:
        return users, items, labels, 0, -1
    keep = np.zeros(users.size, dtype=bool)
    keep[first] = True
    first_dup = int(np.flatnonzero(~keep)[0])
    return users[keep], items[keep], labels[keep], n_dup, first_dup


def _load_feature(path: Path, n_items: int) -> np.ndarray:
    try:
        arr = np.load(path, allow_pickle=False)
    except ValueError as exc:
        if "allow_pickle" in str(exc):
            raise DataError(
                f"{path}: holds pickled Python objects; save a plain numeric array "
                f"(np.save(path, np.asarray(x, dtype=np.float32)))"
            ) from None
        raise DataError(f"{path}: not a valid .npy file ({exc})") from None
    except (OSError, EOFError) as exc:
        raise DataError(f"{path}: not a valid .npy file ({exc})") from None
    if not isinstance(arr, np.ndarray):
        if hasattr(arr, "close"):
            arr.close()
        raise DataError(f"{path}: is an .npz archive, expected a single .npy array")
    if arr.dtype.kind not in "fiu":
        raise DataError(f"{path}: dtype {arr.dtype} is not numeric (expected float16/float32)")
    if arr.ndim != 2:
        raise DataError(f"{path}: shape {arr.shape}, expected 2 dimensions (items x features)")
    if arr.shape[0] != n_items:
        raise DataError(
            f"{path}: {arr.shape[0]} rows but the interactions have {n_items} items "
            f"(max itemID + 1); row i must hold the features of item i"
        )
    if arr.shape[1] == 0:
        raise DataError(f"{path}: has zero feature columns")
    out = arr.astype(np.float32)
    finite = np.isfinite(out)
    if not finite.all():
        row, col = np.argwhere(~finite)[0]
        raise DataError(
            f"{path}: non-finite value ({arr[row, col]}) at row {row} (item {row}), "
            f"column {col}"
        )
    return out
