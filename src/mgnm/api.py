"""The Python API: everything the CLI does, callable from a notebook or a sweep.

>>> from mgnm import api
>>> result = api.train("lightgcn", "path/to/baby", overrides={"n_layers": 2})
>>> result.test["recall@20"]
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np

from mgnm import storage
from mgnm.config import RunConfig, load_config_file, load_preset, resolve_config
from mgnm.data.dataset import Dataset
from mgnm.datasets import demo_path
from mgnm.evaluation.evaluator import Evaluator
from mgnm.evaluation.groups import GroupRow, group_metrics, parse_grouping
from mgnm.evaluation.peruser import PER_USER_FILE, SplitValues, save_per_user
from mgnm.predict.predictor import (  # re-exported: api.Predictor, api.Recommendation
    Predictor,
    Recommendation,
)
from mgnm.runs import LoadedRun as LoadedRun  # re-exported: api.LoadedRun, api.load_run
from mgnm.runs import (
    isolated_process_state,
    load_run,
    resolve_device,
)
from mgnm.train.trainer import Callback, Result, Trainer, eval_embeddings, evaluate_passes


def make_config(
    model: str | None = None,
    data: str | Path | None = None,
    *,
    preset: str | None = None,
    config_file: str | Path | None = None,
    overrides: dict[str, Any] | None = None,
) -> RunConfig:
    """Resolve a run config: defaults < preset < config file < overrides (flat keys)."""
    sources: list[dict[str, Any]] = []
    if preset:
        sources.append(load_preset(preset))
    if config_file:
        sources.append(load_config_file(config_file))
    sources.append(dict(overrides or {}))
    if data is not None:
        sources.append({"data": str(data)})
    cfg = resolve_config(*sources, model=model)
    if cfg.data is None:
        cfg = cfg.model_copy(update={"data": str(demo_path())})
    return cfg


def train(
    model: str | None = None,
    data: str | Path | Dataset | None = None,
    *,
    preset: str | None = None,
    config_file: str | Path | None = None,
    overrides: dict[str, Any] | None = None,
    run_dir: str | Path | None = None,
    callbacks: Sequence[Callback] = (),
) -> Result:
    """Train ``model`` on ``data`` (a directory or a loaded Dataset; default: the demo data)."""
    dataset = data if isinstance(data, Dataset) else None
    path = None if isinstance(data, Dataset) else data
    cfg = make_config(model, path, preset=preset, config_file=config_file, overrides=overrides)
    return Trainer(cfg, dataset, run_dir=run_dir, callbacks=callbacks).run()


def _run_evaluator(run: LoadedRun, device: str) -> Evaluator:
    tc = run.config.train
    return Evaluator(run.dataset, ks=tc.topk, metrics=tc.metrics,
                     batch_size=tc.eval_batch_size, device=resolve_device(device))

def evaluate_run(
    run_dir: str | Path, splits: Sequence[str] = ("valid", "test"),
    data: str | Path | Dataset | None = None, device: str = "cpu",
    *, per_user: bool = False,
) -> dict[str, dict[str, float]]:
    """Metrics of the best model of ``run_dir`` on ``splits``, recomputed from its weights
    with the evaluation noise the run drew at its best epoch and the run's thread count, so
    that they equal result.json exactly on the kind of device the run was trained on.
    ``per_user=True`` also writes the per-user values to ``RUN_DIR/per_user.npz``
    (:data:`mgnm.evaluation.peruser.PER_USER_FILE`), from the same passes."""
    run = load_run(run_dir, data, device)
    tc = run.config.train
    ev = _run_evaluator(run, device)
    # with the run's thread count, as training evaluated: torch splits a mean over more than
    # 32,768 users between its threads, and another split rounds the float32 sum differently
    with isolated_process_state(tc.threads, tc.deterministic):
        passes = evaluate_passes(run.model, ev, splits, tc.seed, run.best_epoch)
    if per_user:
        save_per_user(Path(run_dir) / PER_USER_FILE,
                      {s: SplitValues(r.users, r.per_user) for s, r in passes.items()})
    return {s: r.means for s, r in passes.items()}


def evaluate_groups(
    run_dir: str | Path, by: str, split: str = "test",
    data: str | Path | Dataset | None = None, device: str = "cpu",
) -> list[GroupRow]:
    """Metrics of the best model of ``run_dir`` on ``split`` by group (``by``:
    ``users:degree[:N]`` or ``items:popularity``; see :mod:`mgnm.evaluation.groups`)."""
    grouping = parse_grouping(by)
    run = load_run(run_dir, data, device)
    tc = run.config.train
    ev = _run_evaluator(run, device)
    with isolated_process_state(tc.threads, tc.deterministic):
        emb = eval_embeddings(run.model, tc.seed, run.best_epoch, ev.device)
        return group_metrics(ev, *emb(split), split, grouping)


def recommend(
    run_dir: str | Path, users: Sequence[int | str], k: int = 10, *,
    exclude_train: bool = True, data: str | Path | Dataset | None = None,
) -> list[Recommendation]:
    """Top-``k`` items per user from the best model, one :class:`Recommendation` per user
    (``user``, ``items``, ``scores``, ``titles``; ``to_dict()`` for JSON), as
    :meth:`Predictor.recommend` answers: this loads the run for one call, a Predictor keeps it
    for many (see it for which items are eligible; training items excluded by default). Users
    are original IDs where the dataset has ``u_id_map.tsv``, indices otherwise."""
    return Predictor.load(run_dir, data).recommend(users, k, exclude_train)


def export_embeddings(run_dir: str | Path, path: str | Path,
                      data: str | Path | Dataset | None = None) -> Path:
    """Write the best model's final user and item embeddings to an ``.npz`` file."""
    run = load_run(run_dir, data)
    u, i = run.embeddings()
    import io as _io

    buf = _io.BytesIO()
    arrays = {"user_embeddings": u.cpu().numpy(), "item_embeddings": i.cpu().numpy()}
    for key, id_map in (("user_ids", run.dataset.user_map), ("item_ids", run.dataset.item_map)):
        if id_map is not None:  # plain unicode arrays: they load without pickle
            arrays[key] = np.asarray(id_map.original, dtype=str)
    np.savez(buf, **arrays)
    storage.atomic_write_bytes(path, buf.getvalue())
    return Path(path)
