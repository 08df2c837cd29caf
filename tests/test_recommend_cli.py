"""``mgnm recommend``, ``export``, ``cold-split`` and ``evaluate-cold`` as users run them."""

from __future__ import annotations

import json

import numpy as np
import pytest
from clitools import assert_user_error, run_mgnm
from conftest import write_dataset

from mgnm import api
from mgnm.data.dataset import load_dataset
from mgnm.data.idmap import write_id_map
from mgnm.predict.predictor import Predictor, Recommendation

FAST = {"epochs": 2, "batch_size": 64, "device": "cpu", "topk": [5, 10],
        "valid_metric": "recall@10", "seed": 2}


@pytest.fixture(scope="module")
def titled_run(tmp_path_factory):
    """A VBPR run on the tiny data with original IDs and item titles; user U059 has no
    training row."""
    root = write_dataset(tmp_path_factory.mktemp("cli"))
    inter = root / "tiny.inter"
    lines = inter.read_text().splitlines()
    kept = [ln for ln in lines[1:] if not (ln.split("\t")[0] == "59" and ln.endswith("\t0"))]
    inter.write_text("\n".join([lines[0], *kept]) + "\n")
    (root / "u_id_map.tsv").write_text(write_id_map(root, "user", [f"U{u:03d}" for u in range(60)]))
    (root / "i_id_map.tsv").write_text(write_id_map(
        root, "item", [f"m{i}" for i in range(45)], {"title": [f"Film {i}" for i in range(45)]}))
    run = tmp_path_factory.mktemp("run")
    api.train("vbpr", root, overrides=FAST, run_dir=run)
    return run


def test_recommend_prints_original_ids_and_titles(titled_run):
    res = run_mgnm("recommend", titled_run, "--users", "U003,U010", "-k", 3)
    assert res.code == 0, res.err
    header, *lines = res.out.strip().splitlines()
    assert header == "user\trank\titem\tscore\ttitle"  # as in the file written with -o
    rows = [line.split("\t") for line in lines]
    expect = Predictor.load(titled_run).recommend(["U003", "U010"], 3)
    assert [r[0] for r in rows] == ["U003"] * 3 + ["U010"] * 3
    assert [r[2] for r in rows] == expect[0].items + expect[1].items
    assert all(r[4] == "Film " + r[2][1:] for r in rows)


def test_api_recommend_answers_as_the_predictor_does(titled_run):
    """One shape: api.recommend returns the Predictor's Recommendation objects."""
    got = api.recommend(titled_run, ["U003", "U010"], k=3)
    expect = Predictor.load(titled_run).recommend(["U003", "U010"], 3)
    assert all(isinstance(r, Recommendation) for r in got) and got == expect
    assert got[0].user == "U003" and got[0].titles == ["Film " + i[1:] for i in got[0].items]


@pytest.mark.parametrize(("args", "fragments"), [
    (["-k", "0", "--users", "U001"], ["-k: must be at least 1 (got 0)"]),
    (["-k", "-3", "--users", "U001"], ["-k: must be at least 1 (got -3)"]),
    (["--users", ""], ["--users: no user IDs given"]),
    (["--users", "U059"], ["user 'U059' has no training interaction"]),
    (["--users", "U777"], ["unknown user 'U777'", "e.g. 'U000', 'U001', 'U002'"]),
    # an index where the dataset has a map: refused, with what the IDs look like
    (["--users", "0,U001"], ["unknown user '0': users are the original IDs of u_id_map.tsv, "
                             "e.g. 'U000', 'U001', 'U002' (indices are not accepted"]),
])
def test_recommend_refuses_bad_input_in_one_line(titled_run, args, fragments):
    assert_user_error(run_mgnm("recommend", titled_run, *args), "error:", *fragments)


def test_all_users_streams_a_tsv_file(titled_run, tmp_path):
    out = tmp_path / "recs.tsv"
    res = run_mgnm("recommend", titled_run, "--all-users", "-k", 44, "-o", out)
    assert res.code == 0 and "Traceback" not in res.err
    assert "1 user(s) without a training interaction skipped" in res.err
    lines = out.read_text().splitlines()
    assert lines[0] == "user\trank\titem\tscore\ttitle"
    rows = [ln.split("\t") for ln in lines[1:]]
    pred = Predictor.load(titled_run)
    users = sorted({r[0] for r in rows})
    assert len(users) == 59 and "U059" not in users
    per_user = {u: [r for r in rows if r[0] == u] for u in users}
    for u in ("U000", "U042"):
        expect = pred.recommend([u], 44)[0]
        assert [r[2] for r in per_user[u]] == expect.items
        n_seen = int(pred.seen_ptr[int(u[1:]) + 1] - pred.seen_ptr[int(u[1:])])
        assert len(expect.items) == 45 - n_seen < 44  # at most the unseen items
        assert all(np.isfinite(float(r[3])) for r in per_user[u])
    assert not list(tmp_path.glob(".recs.tsv*"))  # no temporary file left


def test_recommend_unwritable_output_is_one_line(titled_run, tmp_path):
    (tmp_path / "f").write_text("x")
    assert_user_error(run_mgnm("recommend", titled_run, "--all-users", "-o", tmp_path / "f" / "r"),
                      "cannot write")


def test_export_bpr_subprocess(tmp_path):
    root = write_dataset(tmp_path / "d")
    run = tmp_path / "bpr"
    api.train("bpr", root, overrides=FAST, run_dir=run)
    res = run_mgnm("export", run, "-o", tmp_path / "e.npz")
    assert res.code == 0 and "Traceback" not in res.err
    with np.load(tmp_path / "e.npz", allow_pickle=False) as f:
        assert f["user_embeddings"].shape == (60, 64) and f["item_embeddings"].shape == (45, 64)


def test_cold_split_and_cold_evaluation(tmp_path):
    root = write_dataset(tmp_path / "d", n_users=90, n_items=60)
    out = tmp_path / "cold"
    res = run_mgnm("cold-split", root, "--fraction", 0.2, "--seed", 4, "--out", out)
    assert res.code == 0, res.err
    ds, orig = load_dataset(out), load_dataset(root)
    cold_v, cold_t = np.unique(ds.valid.items), np.unique(ds.test.items)
    assert cold_v.size == 6 and cold_t.size == 6 and not set(cold_v) & set(cold_t)
    assert not (set(cold_v) | set(cold_t)) & set(ds.train.items.tolist())
    # every interaction is kept; a cold item's rows all leave training
    assert len(ds.train) + len(ds.valid) + len(ds.test) == (
        len(orig.train) + len(orig.valid) + len(orig.test))
    for it in cold_t:
        n = sum(int(np.sum(getattr(orig, s).items == it)) for s in ("train", "valid", "test"))
        assert np.sum(ds.test.items == it) == n
    again = tmp_path / "cold2"
    run_mgnm("cold-split", root, "--fraction", 0.2, "--seed", 4, "--out", again)
    assert (again / "cold2.inter").read_text() == (out / "cold.inter").read_text()

    knn = run_mgnm("evaluate-cold", "--content-knn", "--data", out, "--catalogue", "cold", "--json")
    assert knn.code == 0, knn.err
    r = json.loads(knn.out)
    assert r["cold_items"] == 6 and 0 <= r["metrics"]["recall@20"] <= 1
    assert r["metrics"]["ndcg@10"] == pytest.approx(knn_ndcg_reference(ds), abs=1e-6)
    run = tmp_path / "run"
    api.train("vbpr", out, overrides=FAST, run_dir=run)
    res = run_mgnm("evaluate-cold", run, "--json")
    assert res.code == 0, res.err
    assert json.loads(res.out)["scorer"] == "vbpr"
    bpr = tmp_path / "bpr"
    api.train("bpr", out, overrides=FAST, run_dir=bpr)
    assert_user_error(run_mgnm("evaluate-cold", bpr), "cannot embed items", "ID-only")
    assert_user_error(run_mgnm("evaluate-cold", bpr, "--split", "valid"), "ID-only")
    assert_user_error(run_mgnm("cold-split", root, "--fraction", 1.5, "--out", tmp_path / "x"),
                      "--fraction 1.5")


def knn_ndcg_reference(ds) -> float:
    """Mean NDCG@10 of the content kNN on the test split's cold items, computed in numpy."""
    unit = [f.astype(np.float64) / np.linalg.norm(f.astype(np.float64), axis=1, keepdims=True)
            for f in ds.features.values()]
    sim = sum(u @ u.T for u in unit) / len(unit)  # mean per-modality cosine
    cold = np.unique(ds.test.items)
    vals = []
    for user in np.unique(ds.test.users):
        hist = ds.train.items[ds.train.users == user]
        if hist.size == 0:
            continue
        rel = set(ds.test.items[ds.test.users == user].tolist())
        scores = sim[np.ix_(cold, hist)].mean(1)
        ranked = cold[np.argsort(-scores, kind="stable")][:10]
        dcg = sum(1 / np.log2(r + 2) for r, it in enumerate(ranked) if it in rel)
        ideal = sum(1 / np.log2(r + 2) for r in range(min(len(rel), 10)))
        vals.append(dcg / ideal)
    return float(np.mean(vals))
