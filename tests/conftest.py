"""Shared fixtures: a tiny deterministic multimodal dataset written in MMRec format."""

from __future__ import annotations

import importlib
import importlib.util
import os
from pathlib import Path

import numpy as np
import pytest
import torch

#: set by CI (.ci/run): a test that needs a missing optional extra fails instead of skipping
REQUIRE_EXTRAS = os.environ.get("MGNM_REQUIRE_EXTRAS") == "1"


def need(*modules: str, extra: str):
    """Import the optional modules a test needs (returns the first). Without them the test
    (or, at module level, the module) is skipped, naming the extra; under
    ``MGNM_REQUIRE_EXTRAS=1`` it fails instead, so CI cannot pass by skipping."""
    missing = [m for m in modules if importlib.util.find_spec(m) is None]
    if missing:
        reason = f"needs the extra {extra!r} ({', '.join(missing)} not installed)"
        if REQUIRE_EXTRAS:
            pytest.fail(f"MGNM_REQUIRE_EXTRAS=1: {reason}", pytrace=False)
        pytest.skip(reason, allow_module_level=True)
    return importlib.import_module(modules[0])


SHARED_DATA = Path(__file__).resolve().parents[1].parent / "shared" / "data"


def write_dataset(
    root: Path,
    name: str = "tiny",
    n_users: int = 60,
    n_items: int = 45,
    seed: int = 0,
    modalities: dict[str, int] | None = None,
) -> Path:
    """Users in 3 taste groups, items in 3 groups; a user mostly picks items of its group.

    Features of an item are a noisy one-hot of its group, so content carries real signal.
    Every user has >= 4 train rows, 1 validation and 1 test row.
    """
    rng = np.random.default_rng(seed)
    modalities = {"image": 8, "text": 5} if modalities is None else modalities
    d = root / name
    d.mkdir(parents=True)
    item_group = np.arange(n_items) % 3
    rows: dict[tuple[int, int], int] = {}
    for u in range(n_users):
        g = u % 3
        own = np.flatnonzero(item_group == g)
        other = np.flatnonzero(item_group != g)
        picks = list(rng.choice(own, size=5, replace=False)) + list(rng.choice(other, 1))
        rng.shuffle(picks)
        for it, lab in zip(picks, [1, 2, 0, 0, 0, 0], strict=True):
            rows[(u, int(it))] = lab
    # every item occurs in train at least once
    train_items = {i for (_, i), lab in rows.items() if lab == 0}
    for it in range(n_items):
        u = it % n_users
        while it not in train_items and (u, it) in rows:
            u = (u + 1) % n_users
        if it not in train_items:
            rows[(u, it)] = 0
    lines = ["userID\titemID\tx_label"] + [f"{u}\t{i}\t{lab}" for (u, i), lab in rows.items()]
    (d / f"{name}.inter").write_text("\n".join(lines) + "\n")
    for m, dim in modalities.items():
        f = np.zeros((n_items, dim), dtype=np.float32)
        f[np.arange(n_items), item_group % dim] = 1.0
        f += 0.1 * rng.standard_normal(f.shape).astype(np.float32)
        np.save(d / f"{m}_feat.npy", f.astype(np.float16))
    return d


@pytest.fixture
def tiny_dir(tmp_path: Path) -> Path:
    return write_dataset(tmp_path)


@pytest.fixture
def tiny(tiny_dir: Path):
    from mgnm.data import load_dataset

    return load_dataset(tiny_dir)


def dense_norm_adj(users, items, n_users: int, n_items: int,
                   dtype=None) -> torch.Tensor:
    """``D^-1/2 A D^-1/2`` of the bipartite training graph as a dense matrix (test reference)."""
    a = torch.zeros(n_users + n_items, n_users + n_items, dtype=dtype or torch.float32)
    u = torch.as_tensor(users)
    i = torch.as_tensor(items) + n_users
    a[u, i] = 1
    a[i, u] = 1
    deg = a.sum(1)
    d = torch.where(deg > 0, deg.clamp_min(1e-12).rsqrt(), torch.zeros_like(deg))
    return d[:, None] * a * d[None, :]


def shared_dataset(name: str) -> Path:
    path = SHARED_DATA / name
    if not path.is_dir():
        pytest.skip(f"{path} is absent (the shared data exists only on the project's machines)")
    return path
