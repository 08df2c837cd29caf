"""``mgnm evaluate`` reproduces result.json exactly, whatever the shell's thread count.

Torch splits a mean over more than 32,768 values between its threads, and another split
rounds the float32 sum differently (1e-9 differences on a 35,000-user test split). Training
evaluates with the run's ``threads``; re-evaluation must too.
"""

from __future__ import annotations

import json

import numpy as np
from clitools import run_mgnm

N_USERS, N_ITEMS = 40_000, 60  # more evaluated users than torch's 32,768 grain


def write_many_users(root):
    """Each user: 3 training rows, 2 validation and 2 test rows of a random 7 of 60 items."""
    rng = np.random.default_rng(5)
    d = root / "many"
    d.mkdir()
    picks = np.argsort(rng.random((N_USERS, N_ITEMS)), axis=1)[:, :7]
    labels = np.array([0, 0, 0, 1, 1, 2, 2])
    users = np.repeat(np.arange(N_USERS), 7)
    rows = [f"{u}\t{i}\t{x}" for u, i, x in zip(users, picks.ravel(), np.tile(labels, N_USERS),
                                                strict=True)]
    (d / "many.inter").write_text("userID\titemID\tx_label\n" + "\n".join(rows) + "\n")
    return d


def test_evaluate_equals_result_json_on_more_threads(tmp_path):
    data = write_many_users(tmp_path)
    run = tmp_path / "run"
    res = run_mgnm("train", "--model", "bpr", "--data", data, "--set", "epochs=1",
                   "--set", "batch_size=8192", "--set", "embedding_size=16", "--threads", "1",
                   "-q", "--out", run)
    assert res.code == 0, res.err
    # the user's shell: torch would use 2 threads by default
    res = run_mgnm("evaluate", run, "--json", env={"OMP_NUM_THREADS": "2",
                                                    "MKL_NUM_THREADS": "2"})
    assert res.code == 0 and "Traceback" not in res.err, res.err
    again = json.loads(res.out)
    saved = json.loads((run / "result.json").read_text())
    assert saved["test"] and saved["valid"]
    for split in ("valid", "test"):
        assert again[split] == saved[split], split  # exactly, every metric
