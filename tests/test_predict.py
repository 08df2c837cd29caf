"""The predictor: answers equal the model's full scores, fold-in and cold items against
independent computations, eligibility rules, ID maps and titles, export for every model."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch
from conftest import write_dataset

from mgnm import api
from mgnm.data.idmap import write_id_map
from mgnm.errors import UnsupportedError
from mgnm.models import MODELS
from mgnm.predict.predictor import Predictor, RequestError, UnknownIdError

FAST = {"epochs": 2, "batch_size": 64, "patience": 100, "device": "cpu", "topk": [5, 10],
        "valid_metric": "recall@10", "seed": 3}


@pytest.fixture(scope="module")
def data_root(tmp_path_factory) -> Path:
    return write_dataset(tmp_path_factory.mktemp("pred"))


@pytest.fixture(scope="module")
def trained(tmp_path_factory, data_root):
    """``trained(name, **overrides)``: a run directory, trained once per module and key."""
    cache: dict = {}

    def get(name: str, data: Path | None = None, **kw) -> Path:
        key = (name, str(data), tuple(sorted(kw.items())))
        if key not in cache:
            run = tmp_path_factory.mktemp(f"run-{name}")
            api.train(name, data or data_root, overrides={**FAST, **kw}, run_dir=run)
            cache[key] = run
        return cache[key]

    return get


def reference_topk(run_dir: Path, users, k: int, eligible: np.ndarray):
    """Top-k from the model's own full score matrix, training items and ineligible items
    removed by sorting (a slow, independent path)."""
    run = api.load_run(run_dir)
    u, i = run.model.final_embeddings()
    scores = (u @ i.T).numpy()
    out = []
    tr = run.dataset.train
    for usr in users:
        seen = set(tr.items[tr.users == usr].tolist())
        cand = [j for j in np.argsort(-scores[usr], kind="stable")
                if eligible[j] and j not in seen]
        out.append((cand[:k], scores[usr, cand[:k]]))
    return out


@pytest.mark.parametrize("name", list(MODELS))
def test_predictor_answers_equal_full_scores(name, trained):
    run = trained(name)
    pred = Predictor.load(run)
    users = [0, 7, 31]
    got = pred.recommend(users, 5)
    warm = np.bincount(api.load_run(run).dataset.train.items, minlength=45) > 0
    for rec, (items, scores) in zip(got, reference_topk(run, users, 5, warm), strict=True):
        assert rec.items == [int(j) for j in items]
        np.testing.assert_allclose(rec.scores, scores, rtol=1e-5, atol=1e-6)


def test_k_beyond_the_catalogue_returns_only_unseen_eligible_items(trained):
    pred = Predictor.load(trained("lightgcn"))
    rec = pred.recommend([4], 1000)[0]
    seen = set(pred.seen_items[pred.seen_ptr[4]:pred.seen_ptr[5]].tolist())
    assert len(rec.items) == 45 - len(seen) and not seen & set(rec.items)
    assert np.isfinite(rec.scores).all() and rec.scores == sorted(rec.scores, reverse=True)
    with pytest.raises(RequestError, match="k: must be at least 1"):
        pred.recommend([4], 0)


@pytest.fixture(scope="module")
def gappy(tmp_path_factory) -> Path:
    """Item 40 occurs in no split (a gap), item 41 only in the test split, user 59 only in
    validation/test."""
    root = write_dataset(tmp_path_factory.mktemp("gappy"))
    inter = root / "tiny.inter"
    rows = [line.split("\t") for line in inter.read_text().splitlines()[1:]]
    keep = []
    for u, i, lab in rows:
        if i == "40" or (u == "59" and lab == "0"):
            continue
        keep.append((u, i, "2" if i == "41" else lab))
    inter.write_text("userID\titemID\tx_label\n" + "".join(f"{u}\t{i}\t{x}\n" for u, i, x in keep))
    return root


@pytest.mark.parametrize(("name", "test_only_item_eligible"), [("lightgcn", False),
                                                               ("vbpr", True), ("mgnm", True)])
def test_never_seen_items_and_untrained_users(name, test_only_item_eligible, trained, gappy):
    pred = Predictor.load(trained(name, gappy))
    assert not pred.eligible[40] and bool(pred.eligible[41]) is test_only_item_eligible
    for rec in pred.recommend(list(range(10)), 1000):
        assert 40 not in rec.items and (41 in rec.items) is test_only_item_eligible
    with pytest.raises(UnknownIdError, match="user '59' has no training interaction"):
        pred.recommend(["59"], 3)
    with pytest.raises(UnknownIdError, match="unknown user 60: this dataset has no "
                                           "u_id_map.tsv, so users are indices 0..59"):
        pred.recommend([60], 3)


@pytest.mark.parametrize("name", ["lightgcn", "freedom", "mgnm", "lgmrec", "bm3"])
def test_graph_fold_in_of_a_training_user_is_its_row_without_ego(name, trained):
    """LightGCN's user row is ``(e_u^0 + sum_{l>=1} e_u^l) / (L + 1)`` and ``e_u^l`` depends on
    the item side alone, so folding in a user's training history must give its trained row
    less ``e_u^0 / (L + 1)`` (BM3: inside its predictor; MGNM: in the CGE part only)."""
    over = {"alpha": 0.3, "eval_gumbel": False} if name == "lgmrec" else {}
    run_dir = trained(name, **over)
    run = api.load_run(run_dir)
    pred = Predictor.from_run(run)
    model = run.model
    layers = {"lightgcn": "n_layers", "bm3": "n_layers"}.get(name, "n_ui_layers")
    n_layers = getattr(model.config, layers)
    with torch.no_grad():
        model.eval()
        if name == "bm3":
            pre, _ = model.propagate()
        else:
            pre, _ = model.final_embeddings()
        for u in (0, 13, 58):
            hist = run.dataset.train.items[run.dataset.train.users == u]
            expect = pre[u] - model.user_emb[u] / (n_layers + 1)
            if name == "bm3":
                expect = model.predictor(expect)
            torch.testing.assert_close(pred.fold_in(hist.tolist()), expect, rtol=1e-4,
                                       atol=1e-5)


def own_rows(name: str, model, u: int):
    """What a model knows of training user ``u`` beyond its history (the ``ego`` of fold-in)."""
    if name == "dualgnn":
        ego = {"preference": {m: model.preference[m][u] for m in model.modalities},
               "neighbours": (model.sample_index[u], model.sample_weight[u])}
        if len(model.modalities) > 1:
            ego["fusion"] = model.fusion[u]
        return ego
    if name == "mmgcn":
        return {"preference": {m: model.user_preference(m)[u] for m in model.modalities},
                "id": model.id_emb[u]}
    return model.user_emb[u]


GRAPH_FOLD_IN = ["lightgcn", "freedom", "bm3", "mgnm", "lgmrec", "lattice", "mgcn", "dualgnn",
                 "mmgcn"]


@pytest.mark.parametrize("name", GRAPH_FOLD_IN)
def test_fold_in_with_the_users_own_rows_is_its_trained_row(name, trained):
    """Every graph model's fold-in is its own forward for one new row of its graph: given a
    training user's history and its own ID rows (and DualGNN's sampled neighbours), it must
    give that user's trained row (MGNM with its purifier on; LGMRec without evaluation noise)."""
    over = {"alpha": 0.3, "eval_gumbel": False} if name == "lgmrec" else {}
    run = api.load_run(trained(name, **over))
    pred = Predictor.from_run(run)
    model = run.model
    if name == "mgnm":
        assert model.config.purifier
    model.eval()
    with torch.no_grad():
        users, _ = model.final_embeddings()
        for u in (0, 13, 58):
            hist = torch.as_tensor(run.dataset.train.items[run.dataset.train.users == u])
            got = pred.placement.fold_in(hist, own_rows(name, model, u))
            torch.testing.assert_close(got, users[u], rtol=1e-4, atol=1e-5)
            # a new user (no own rows) gets a finite row of the same width
            new = pred.fold_in(hist.tolist())
            assert new.shape == users[u].shape and torch.isfinite(new).all()


@pytest.mark.parametrize("name", ["bpr", "vbpr"])
def test_mf_fold_in_is_ridge_least_squares(name, trained):
    """Against numpy's lstsq on the augmented system ``[Q; sqrt(lambda) I] u = [r; 0]``."""
    run = api.load_run(trained(name))
    pred = Predictor.from_run(run)
    _, items = run.model.final_embeddings()
    warm = np.unique(run.dataset.train.items)
    q = items.numpy().astype(np.float64)[warm]
    lam = 0.1 * np.trace(q.T @ q) / q.shape[1]
    hist = [3, 17, 22]
    r = np.isin(warm, hist).astype(np.float64)
    a = np.vstack([q, np.sqrt(lam) * np.eye(q.shape[1])])
    b = np.concatenate([r, np.zeros(q.shape[1])])
    expect = np.linalg.lstsq(a, b, rcond=None)[0]
    np.testing.assert_allclose(pred.fold_in(hist).numpy(), expect, rtol=1e-4, atol=1e-6)
    rec = pred.recommend_for_history(hist, 5)
    assert not {3, 17, 22} & set(rec.items) and len(rec.items) == 5


def kernel_borrow(table: np.ndarray, query: dict, feats: dict, warm: np.ndarray, tau: float,
                  k: int = 50) -> np.ndarray:
    """Rows borrowed in numpy: mean per-modality cosine to the warm items, softmax at ``tau``
    over the k nearest, weighted mean of their rows rescaled to their weighted mean norm."""
    sim = 0
    for m, q in query.items():
        f = feats[m].astype(np.float64)[warm]
        qq = q.astype(np.float64)
        sim = sim + (qq / np.linalg.norm(qq, axis=1, keepdims=True)) @ (
            f / np.linalg.norm(f, axis=1, keepdims=True)).T
    sim = sim / len(query)
    k = min(k, warm.size)
    out = []
    for r in range(sim.shape[0]):
        top = np.argsort(-sim[r], kind="stable")[:k]
        z = sim[r, top] / tau
        w = np.exp(z - z.max())
        w /= w.sum()
        rows = table[warm[top]].astype(np.float64)
        mean = (w[:, None] * rows).sum(0)
        out.append(mean / np.linalg.norm(mean) * (w * np.linalg.norm(rows, axis=1)).sum())
    return np.asarray(out)


def test_vbpr_cold_item_is_projection_plus_borrowed_gamma(trained, data_root):
    run = api.load_run(trained("vbpr"))
    pred = Predictor.from_run(run)
    ds, model = run.dataset, run.model
    rng = np.random.default_rng(0)
    new = {m: f[[2, 9]].astype(np.float32) + 0.05 * rng.standard_normal((2, f.shape[1]))
           .astype(np.float32) for m, f in ds.features.items()}
    ids = pred.add_items(new)
    assert ids == [45, 46] and pred.n_items == 47 and bool(pred.eligible[45:].all())
    vec = pred.item_table[45:].numpy()
    d = model.config.embedding_size
    warm = np.unique(ds.train.items)
    tau = pred.placement.calibration.tau
    gamma = kernel_borrow(model.item_emb.detach().numpy(), new, ds.features, warm, tau)
    np.testing.assert_allclose(vec[:, :d], gamma, rtol=1e-4, atol=1e-5)
    concat = np.concatenate([new[m] for m in ds.features], axis=1)
    w = model.projection.weight.detach().numpy()
    b = model.projection.bias.detach().numpy()
    np.testing.assert_allclose(vec[:, d:], concat @ w.T + b, rtol=1e-4, atol=1e-5)
    # recommendable from now on: a user's top list over all items may include them
    scores = pred.user_emb[0] @ pred.item_table.T
    best_new = 45 + int(torch.argmax(scores[45:]))
    rec = pred.recommend([0], 1000)[0]
    assert best_new in rec.items


@pytest.mark.parametrize("name", ["freedom", "mmgcn", "bm3"])
def test_cold_item_borrows_whole_final_rows(name, trained):
    """The models whose rows have no part computed from an item's own features: the whole
    final item row, borrowed at the run's calibrated temperature (numpy reference)."""
    run = api.load_run(trained(name))
    pred = Predictor.from_run(run)
    ds = run.dataset
    feats = {m: f[[5, 20]].astype(np.float32) for m, f in ds.features.items()}
    final = pred.item_table[:45].numpy().copy()
    pred.add_items(feats)
    warm = np.unique(ds.train.items)
    expect = kernel_borrow(final, feats, ds.features, warm, pred.placement.calibration.tau)
    np.testing.assert_allclose(pred.item_table[45:].numpy(), expect, rtol=1e-4, atol=1e-5)
    assert f"tau {pred.placement.calibration.tau:g}" in pred.info()["cold_items"]


def test_id_only_models_refuse_new_items_and_bad_features(trained):
    pred = Predictor.load(trained("bpr"))
    with pytest.raises(UnsupportedError, match="ID-only"):
        pred.add_items({"image": np.zeros((1, 8)), "text": np.zeros((1, 5))})
    mg = Predictor.load(trained("mgnm"))
    with pytest.raises(RequestError, match=r"items.features.text: expected rows of 5"):
        mg.add_items({"image": np.zeros((1, 8)), "text": np.zeros((1, 4))})
    with pytest.raises(RequestError, match="NaN"):
        mg.add_items({"image": np.full((1, 8), np.nan), "text": np.zeros((1, 5))})
    with pytest.raises(RequestError, match="history: must hold at least one item"):
        mg.recommend_for_history([], 3)
    with pytest.raises(UnknownIdError, match="unknown item 99: this dataset has no "
                                           "i_id_map.tsv, so items are indices 0..44"):
        mg.recommend_for_history([1, 99], 3)


def add_id_maps(root: Path, n_users: int = 60, n_items: int = 45) -> None:
    (root / "u_id_map.tsv").write_text(write_id_map(root / "u_id_map.tsv", "user",
                                                    [f"U{u:03d}" for u in range(n_users)]))
    (root / "i_id_map.tsv").write_text(write_id_map(
        root / "i_id_map.tsv", "item", [f"film-{i}" for i in range(n_items)],
        {"title": [f"Title {i}" for i in range(n_items)]}))


def test_original_ids_and_titles(trained, tmp_path):
    root = write_dataset(tmp_path)
    add_id_maps(root)
    pred = Predictor.load(trained("vbpr", root))
    rec = pred.recommend(["U007"], 3)[0]
    assert rec.user == "U007" and all(x.startswith("film-") for x in rec.items)
    assert rec.titles == [f"Title {x.split('-')[1]}" for x in rec.items]
    hist = pred.recommend_for_history(["film-1", "film-4"], 4)
    assert hist.user is None and not {"film-1", "film-4"} & set(hist.items)
    feats = {m: np.ones((1, d)) for m, d in pred.feature_dims.items()}
    assert pred.add_items(feats, ["film-new"]) == ["film-new"]
    with pytest.raises(RequestError, match="already exists"):
        pred.add_items(feats, ["film-new"])
    with pytest.raises(RequestError, match="needs an 'id'"):
        pred.add_items(feats)
    with pytest.raises(UnknownIdError, match="unknown user '7'"):
        pred.recommend(["7"], 3)


def test_export_works_for_every_model(trained, tmp_path):
    for name in MODELS:
        out = api.export_embeddings(trained(name), tmp_path / f"{name}.npz")
        with np.load(out, allow_pickle=False) as f:
            u, i = f["user_embeddings"], f["item_embeddings"]
        ref_u, ref_i = api.load_run(trained(name)).model.final_embeddings()
        np.testing.assert_allclose(u, ref_u.numpy(), rtol=1e-6)
        np.testing.assert_allclose(i, ref_i.numpy(), rtol=1e-6)


def test_export_writes_id_maps(trained, tmp_path):
    root = write_dataset(tmp_path / "ids")
    add_id_maps(root)
    out = api.export_embeddings(trained("bpr", root), tmp_path / "e.npz")
    with np.load(out, allow_pickle=False) as f:
        assert f["user_ids"][7] == "U007" and f["item_ids"][44] == "film-44"


@pytest.mark.parametrize("purifier", [False, True])
def test_mgnm_cold_item_borrows_what_interactions_made(trained, purifier):
    """MGNM/LGMRec: the CGE layer mean and each modality's last MGE layer are borrowed (numpy
    reference); the global part comes from the item's own features. A new item with a trained
    item's exact features and (without the purifier, which also reads the borrowed ego row)
    gets that item's own global part, as the model's forward computes it."""
    run = api.load_run(trained("mgnm", purifier=purifier))
    pred = Predictor.from_run(run)
    model, ds = run.model, run.dataset
    j = [5, 20]
    feats = {m: f[j] for m, f in ds.features.items()}
    model.eval()
    with torch.no_grad():
        out = model.forward_all(training=False)
    cge = (sum(i for _, i in out.cge_layers) / len(out.cge_layers)).detach().numpy()
    warm, tau = np.unique(ds.train.items), pred.placement.calibration.tau
    local = kernel_borrow(cge, feats, ds.features, warm, tau)
    for m in model.modalities:
        mge = kernel_borrow(out.mge_layers[m][-1][1].detach().numpy(), feats, ds.features, warm,
                            tau)
        local = local + mge / np.linalg.norm(mge, axis=1, keepdims=True)
    pred.add_items(feats)
    glob = pred.item_table[45:].numpy() - local
    glob_norm = np.linalg.norm(glob, axis=1)
    if not purifier:
        trained_global = out.items.numpy()[j] - (
            cge[j] + sum(torch.nn.functional.normalize(out.mge_layers[m][-1][1][j], dim=1)
                         .detach().numpy() for m in model.modalities))
        np.testing.assert_allclose(glob, trained_global, rtol=1e-4, atol=1e-5)
    np.testing.assert_allclose(glob_norm, model.config.alpha, rtol=1e-4)  # alpha * a unit row
