"""The evaluator's metrics end to end, groups, per-user files and `mgnm evaluate`'s options."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import numpy as np
import pytest
import torch
import yaml
from clitools import assert_user_error, run_mgnm
from conftest import write_dataset
from test_evaluator import random_dataset
from test_metrics import slow_metrics

from mgnm.evaluation.evaluator import Evaluator
from mgnm.evaluation.groups import (
    GroupError,
    Grouping,
    degree_groups,
    group_metrics,
    parse_grouping,
)
from mgnm.evaluation.metrics import short_head
from mgnm.evaluation.peruser import PER_USER_FILE, load_per_user


def slow_lists(ds, ue, ie, split, kmax, keep=None):
    """Users (ascending), their top-kmax lists and target sets, ranked in plain Python."""
    train, target = {}, {}
    for u, i in zip(ds.train.users, ds.train.items, strict=True):
        train.setdefault(int(u), set()).add(int(i))
    s = ds.split(split)
    for u, i in zip(s.users, s.items, strict=True):
        if keep is None or keep[i]:
            target.setdefault(int(u), set()).add(int(i))
    users, lists, targets = [], [], []
    for u, t in sorted(target.items()):
        if u not in train:
            continue
        scores = ue[u] @ ie.T
        ranked = [int(i) for i in np.argsort(-scores, kind="stable") if i not in train[u]]
        users.append(u)
        lists.append(ranked[:kmax])
        targets.append(t)
    return users, lists, targets


@pytest.fixture
def setup():
    ds = random_dataset(seed=3)
    rng = np.random.default_rng(4)
    ue = rng.standard_normal((ds.n_users, 8)).astype(np.float32)
    ie = rng.standard_normal((ds.n_items, 8)).astype(np.float32)
    pop = np.bincount(ds.train.items, minlength=ds.n_items).astype(float)
    return ds, ue, ie, pop


@pytest.mark.parametrize("split", ["valid", "test"])
def test_every_metric_equals_the_reference_end_to_end(setup, split):
    ds, ue, ie, pop = setup
    ev = Evaluator(ds, ks=(3, 10), batch_size=7)
    res = ev.evaluate_split(torch.as_tensor(ue), torch.as_tensor(ie), split)
    users, lists, targets = slow_lists(ds, ue, ie, split, 10)
    assert res.users.tolist() == users
    for k in (3, 10):
        ref = slow_metrics(lists, targets, list(pop), ds.n_users, k)
        for name, vals in ref.items():
            if isinstance(vals, list):
                np.testing.assert_allclose(res.per_user[f"{name}@{k}"], vals, rtol=1e-5,
                                           atol=1e-6, err_msg=f"{name}@{k}")
                assert res.means[f"{name}@{k}"] == pytest.approx(np.mean(vals), rel=1e-5)
            else:
                assert f"{name}@{k}" not in res.per_user  # list-set metrics: means only
                assert res.means[f"{name}@{k}"] == pytest.approx(vals), f"{name}@{k}"


def test_metrics_chooses_what_is_computed(setup):
    ds, ue, ie, _ = setup
    ev = Evaluator(ds, ks=(5,), metrics=["hit", "gini"])
    got = ev.evaluate(torch.as_tensor(ue), torch.as_tensor(ie), "test")
    assert sorted(got) == ["gini@5", "hit@5"]


def test_degree_groups_ties_go_to_the_higher_group():
    # quantiles of [1,1,1,2,3,4,5,5] at 1/4, 1/2, 3/4: 1, 2.5, 4.25 -> a degree equal to the
    # edge 1 goes up to group 1, leaving group 0 empty
    assert degree_groups(np.array([1, 1, 1, 2, 3, 4, 5, 5]), 4).tolist() == \
        [1, 1, 1, 1, 2, 2, 3, 3]
    # distinct degrees 1..8 in 4 groups: edges 2.75, 4.5, 6.25 -> two users each
    assert degree_groups(np.arange(1, 9), 4).tolist() == [0, 0, 1, 1, 2, 2, 3, 3]


def test_parse_grouping():
    assert parse_grouping("users:degree") == Grouping("users:degree", 4)
    assert parse_grouping("users:degree:3") == Grouping("users:degree", 3)
    for bad in ("users:degree:0", "users:degree:x", "items:degree", "users"):
        with pytest.raises(GroupError):
            parse_grouping(bad)


def test_groups_equal_the_reference(setup):
    ds, ue, ie, pop = setup
    ev = Evaluator(ds, ks=(5,))
    u, i = torch.as_tensor(ue), torch.as_tensor(ie)
    rows = group_metrics(ev, u, i, "test", Grouping("users:degree", 3))
    users, lists, targets = slow_lists(ds, ue, ie, "test", 5)
    deg = np.bincount(ds.train.users, minlength=ds.n_users)[users]
    edges = np.quantile(deg, [1 / 3, 2 / 3])
    assert sum(r.users for r in rows) == len(users)
    for g, row in enumerate(rows):
        sel = [j for j in range(len(users)) if sum(deg[j] >= e for e in edges) == g]
        assert row.users == len(sel)
        ref = slow_metrics([lists[j] for j in sel], [targets[j] for j in sel], list(pop),
                           ds.n_users, 5)
        for name in ("recall", "ndcg", "hit", "mrr", "arp", "novelty"):
            assert row.means[f"{name}@5"] == pytest.approx(np.mean(ref[name]), rel=1e-5)
    head = short_head(pop)
    rows = group_metrics(ev, u, i, "test", Grouping("items:popularity", 2))
    assert [r.group for r in rows] == ["head targets", "tail targets"]
    for row, keep in zip(rows, (head, ~head), strict=True):
        users, lists, targets = slow_lists(ds, ue, ie, "test", 5, keep)
        assert row.users == len(users)  # users without a target in the group are left out
        ref = slow_metrics(lists, targets, list(pop), ds.n_users, 5)
        for name in ("recall", "ndcg", "hit", "mrr", "map", "precision"):
            assert row.means[f"{name}@5"] == pytest.approx(np.mean(ref[name]), rel=1e-5)
        assert "arp@5" not in row.means


# --- the command line --------------------------------------------------------------------

TRAIN = ("--set", "epochs=2", "--set", "embedding_size=8", "--set", "topk=[5,10]", "-q")


@pytest.fixture(scope="module")
def trained(tmp_path_factory):
    root = tmp_path_factory.mktemp("evaluate")
    out = root / "run"
    res = run_mgnm("train", "--model", "lightgcn", "--data", write_dataset(root), *TRAIN,
                   "--set", "valid_metric=recall@10", "--out", out)
    assert res.code == 0, res.err
    return out


@pytest.fixture
def run_dir(trained, tmp_path):
    """A copy of the trained run, free to change."""
    return Path(shutil.copytree(trained, tmp_path / "run"))


def test_a_run_writes_its_best_epoch_per_user_values(run_dir):
    result = json.loads((run_dir / "result.json").read_text())
    saved = load_per_user(run_dir / PER_USER_FILE)
    for split in ("valid", "test"):
        for name, vals in saved[split].values.items():
            assert result[split][name] == pytest.approx(vals.mean(), rel=1e-6)
        assert {"hit@5", "mrr@10", "arp@5", "aplt@10", "novelty@5"} <= set(saved[split].values)
        assert "gini@5" not in saved[split].values and "gini@5" in result[split]
    # an older run without the file (and without the metrics key): --per-user writes it again
    (run_dir / PER_USER_FILE).unlink()
    cfg = run_dir / "config.yaml"
    flat = yaml.safe_load(cfg.read_text())
    del flat["metrics"]
    cfg.write_text(yaml.safe_dump(flat))
    res = run_mgnm("evaluate", run_dir, "--per-user", "--metric", "hit@5")
    assert res.code == 0, res.err
    assert f"wrote per-user values to {run_dir / PER_USER_FILE}" in res.out
    again = load_per_user(run_dir / PER_USER_FILE)
    for split in ("valid", "test"):
        np.testing.assert_array_equal(again[split].users, saved[split].users)
        for name, vals in saved[split].values.items():
            np.testing.assert_array_equal(again[split].values[name], vals)


def test_evaluate_by_groups_table_and_json(run_dir):
    res = run_mgnm("evaluate", run_dir, "--by", "users:degree:2", "--json")
    assert res.code == 0, res.err
    out = json.loads(res.out)
    n_test = len(load_per_user(run_dir / PER_USER_FILE)["test"].users)
    assert [g["group"][:2] for g in out["groups"]] == ["Q1", "Q2"]
    assert sum(g["users"] for g in out["groups"]) == n_test
    for g in out["groups"]:  # an empty group (all users tied on one degree) has no means
        assert ("recall@10" in g["metrics"]) == (g["users"] > 0)
    res = run_mgnm("evaluate", run_dir, "--by", "items:popularity", "--metric", "recall@10")
    assert res.code == 0, res.err
    assert "head targets" in res.out and "tail targets" in res.out and "K = 10" in res.out


@pytest.mark.parametrize(("args", "fragments"), [
    (("--metric", "recall@20"), ("--metric 'recall@20'", "topk [5, 10]")),
    (("--metric", "recal@5"), ("unknown metric 'recal'", "known metrics: recall")),
    (("--by", "users:age"), ("--by 'users:age'", "unknown grouping")),
    (("--by", "users:degree:0"), ("--by 'users:degree:0'", "at least 1")),
])
def test_bad_evaluate_input_is_one_line(run_dir, args, fragments):
    assert_user_error(run_mgnm("evaluate", run_dir, *args), *fragments)


def test_unknown_metric_in_config_is_one_line(tiny_dir, tmp_path):
    res = run_mgnm("train", "--model", "lightgcn", "--data", tiny_dir, *TRAIN,
                   "--set", "metrics=recall,ndcg,recal", "--out", tmp_path / "r")
    assert_user_error(res, "unknown metric 'recal'", "known metrics: recall")
