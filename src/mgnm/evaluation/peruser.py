"""Per-user results of a run: ``RUN_DIR/per_user.npz``.

One plain ``.npz`` (no pickled objects), written atomically. For each evaluated split
(``valid``, ``test``) it holds ``<split>.users``, the evaluated users' indices in ascending
order (int64), and one float64 array ``<split>.<metric>@<K>`` per metric, aligned with them.
Comparisons of runs (paired tests) read these files, so they never retrain or rescore.
"""

from __future__ import annotations

import io as _bytes_io
import zipfile
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from mgnm import storage
from mgnm.errors import MgnmError

PER_USER_FILE = "per_user.npz"


class PerUserError(MgnmError):
    """A per-user file that is missing or malformed."""


@dataclass
class SplitValues:
    """One split's per-user values: ``users`` ascending, ``values[name]`` aligned with them."""

    users: np.ndarray
    values: dict[str, np.ndarray] = field(default_factory=dict)


def save_per_user(path: str | Path, splits: dict[str, SplitValues]) -> Path:
    """Write ``splits`` to ``path`` (atomically); users are sorted, values reordered with them."""
    arrays: dict[str, np.ndarray] = {}
    for split, sv in splits.items():
        users = np.asarray(sv.users, dtype=np.int64)
        order = np.argsort(users, kind="stable")
        arrays[f"{split}.users"] = users[order]
        for name, vals in sv.values.items():
            vals = np.asarray(vals, dtype=np.float64)
            if vals.shape != users.shape:
                raise ValueError(f"{split}.{name}: {vals.shape[0] if vals.ndim else 0} values "
                                 f"for {users.size} users")
            arrays[f"{split}.{name}"] = vals[order]
    buf = _bytes_io.BytesIO()
    np.savez(buf, **arrays)
    storage.atomic_write_bytes(path, buf.getvalue())
    return Path(path)


def load_per_user(path: str | Path) -> dict[str, SplitValues]:
    """Read a per-user file written by :func:`save_per_user` (never unpickles)."""
    path = Path(path)
    try:
        with np.load(path, allow_pickle=False) as npz:
            arrays = {k: npz[k] for k in npz.files}
    except FileNotFoundError:
        raise PerUserError(f"{path}: no per-user results (write them with "
                           f"`mgnm evaluate {path.parent} --per-user`)") from None
    except (ValueError, OSError, zipfile.BadZipFile, EOFError) as exc:
        raise PerUserError(f"{path}: not a per-user results file ({exc})") from None
    splits: dict[str, SplitValues] = {}
    for key, arr in arrays.items():
        split, _, name = key.partition(".")
        if name == "users":
            if arr.dtype.kind not in "iu" or arr.ndim != 1:
                raise PerUserError(f"{path}: {key} is not a vector of user indices")
            splits.setdefault(split, SplitValues(np.empty(0, np.int64))).users = arr.astype(np.int64)
    for key, arr in arrays.items():
        split, _, name = key.partition(".")
        if name == "users":
            continue
        if split not in splits or not name:
            raise PerUserError(f"{path}: {key} has no '{split}.users' beside it")
        if arr.dtype.kind != "f" or arr.shape != splits[split].users.shape:
            raise PerUserError(f"{path}: {key} is not one float per user of {split}.users")
        splits[split].values[name] = arr.astype(np.float64)
    return splits
