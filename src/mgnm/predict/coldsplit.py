"""``mgnm cold-split``: turn any MMRec dataset into a cold-start one.

A seeded fraction of the items that occur in the data leaves training entirely: the first half
of them (in a seeded order), with every interaction they have, becomes the validation split and
the other half the test split. Every other interaction (the warm items' train, validation and
test rows alike) becomes training, so users keep all their warm rows and the evaluation ranks
cold items only. Feature files are copied whole (a cold item keeps its content) and so are the
ID maps.
"""

from __future__ import annotations

import shutil
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from mgnm.data.dataset import load_dataset
from mgnm.data.idmap import MAP_FILES
from mgnm.errors import DataError
from mgnm.storage import atomic_write_text


@dataclass(frozen=True)
class ColdSplitSummary:
    out: Path
    cold_valid_items: int
    cold_test_items: int
    train_rows: int
    valid_rows: int
    test_rows: int


def cold_split(data: str | Path, out: str | Path, fraction: float = 0.1,
               seed: int = 0) -> ColdSplitSummary:
    """Write the cold-start version of dataset ``data`` to directory ``out``."""
    if not 0.0 < fraction < 1.0:
        raise DataError(f"--fraction {fraction}: must be between 0 and 1 (exclusive)")
    ds = load_dataset(data)
    out = Path(out)
    if out.resolve() == Path(data).resolve():
        raise DataError(f"{out}: the output directory must differ from the input")
    if out.exists() and any(out.iterdir()):
        raise DataError(f"{out}: already exists and is not empty")
    users = np.concatenate([ds.train.users, ds.valid.users, ds.test.users])
    items = np.concatenate([ds.train.items, ds.valid.items, ds.test.items])
    present = np.unique(items)
    n_cold = int(round(fraction * present.size))
    if n_cold < 2:
        raise DataError(f"--fraction {fraction}: {present.size} items give {n_cold} cold "
                        f"item(s); need at least 2 (one for validation, one for test)")
    cold = np.random.default_rng(seed).permutation(present)[:n_cold]
    label_of = np.zeros(ds.n_items, dtype=np.int64)
    label_of[cold[: n_cold // 2]] = 1
    label_of[cold[n_cold // 2:]] = 2
    labels = label_of[items]
    if not np.any(labels == 0):
        raise DataError(f"--fraction {fraction}: no training interaction would remain")
    order = np.lexsort((items, users))
    lines = ["userID\titemID\tx_label"]
    lines += [f"{u}\t{i}\t{x}" for u, i, x in zip(users[order], items[order], labels[order],
                                                   strict=True)]
    try:
        out.mkdir(parents=True, exist_ok=True)
        atomic_write_text(out / f"{out.resolve().name}.inter", "\n".join(lines) + "\n")
        assert ds.path is not None
        for src in sorted(ds.path.glob("*_feat.npy")):
            shutil.copyfile(src, out / src.name)
        for name in MAP_FILES.values():
            if (ds.path / name).is_file():
                shutil.copyfile(ds.path / name, out / name)
    except OSError as exc:
        raise DataError(f"{exc.filename or out}: cannot write ({exc.strerror})") from None
    return ColdSplitSummary(out, n_cold // 2, n_cold - n_cold // 2, int(np.sum(labels == 0)),
                            int(np.sum(labels == 1)), int(np.sum(labels == 2)))
