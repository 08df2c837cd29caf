"""The shared real datasets load with the statistics their README states (skipped elsewhere)."""

from __future__ import annotations

import numpy as np
from conftest import shared_dataset

from mgnm.config import resolve_config
from mgnm.data import load_dataset
from mgnm.train.trainer import Trainer


def test_tiktok_statistics():
    ds = load_dataset(shared_dataset("tiktok"))
    st = ds.stats()
    assert (st["users"], st["items"], st["interactions"]) == (9308, 6710, 68722)
    assert (st["train"], st["valid"], st["test"]) == (59541, 3051, 6130)
    assert st["modalities"] == {"audio": 128, "image": 128}
    dropped = st["users_dropped_from_eval"]
    cold = set(np.concatenate([ds.valid.users, ds.test.users])) - set(ds.train.users)
    assert len(cold) == 10 and dropped["valid"] + dropped["test"] >= 10


def test_baby_statistics():
    st = load_dataset(shared_dataset("baby")).stats()
    assert (st["users"], st["items"], st["interactions"]) == (19445, 7050, 160792)
    assert (st["train"], st["valid"], st["test"]) == (118551, 21682, 20559)
    assert st["modalities"] == {}


def test_one_mgnm_epoch_on_tiktok_learns():
    ds = load_dataset(shared_dataset("tiktok"))
    t = Trainer(resolve_config({"model": "mgnm", "device": "cpu", "epochs": 1}), ds)
    before = t.evaluate(["valid"])["valid"]["recall@20"]
    losses = t.train_epoch(0)
    after = t.evaluate(["valid"])["valid"]["recall@20"]
    assert np.isfinite(losses["loss"]) and after > before
