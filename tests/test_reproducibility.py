"""Results a user can trust: evaluate equals result.json for every model, runs leave the
process as they found it, absolute data paths, data-change warnings, smoothed stopping."""

from __future__ import annotations

import json
import random
import warnings
from pathlib import Path

import numpy as np
import pytest
import torch

from mgnm import api
from mgnm.config import resolve_config
from mgnm.models import MODELS
from mgnm.train.trainer import Callback, Trainer, fit


def cfg(**kw):
    base = {"model": "lightgcn", "epochs": 3, "batch_size": 64, "seed": 5, "device": "cpu",
            "threads": 1}
    base.update(kw)
    return resolve_config(base)


@pytest.mark.parametrize(("model", "extra"), [(m, {}) for m in MODELS] + [
    ("mmgcn", {"eval_fresh_forward": False}), ("dualgnn", {"eval_fresh_forward": False})])
def test_evaluate_reproduces_result_json_exactly(tiny, tmp_path, model, extra):
    run = tmp_path / model
    res = fit(cfg(model=model, epochs=3, **extra), tiny, run_dir=run)
    again = api.evaluate_run(run, data=tiny)
    assert again["valid"] == res.valid
    assert again["test"] == res.test


def test_lgmrec_draws_separate_seeded_noise_for_valid_and_test(tiny, tmp_path):
    """The evaluation noise of (seed, epoch, split): valid and test differ, and repeat."""
    from mgnm.train.trainer import eval_generator

    t = Trainer(cfg(model="lgmrec", epochs=1), tiny)
    t.run()
    emb = {s: t.model.final_embeddings(eval_generator(5, 1, s, t.device))[0]
           for s in ("valid", "test")}
    assert not torch.equal(emb["valid"], emb["test"])
    again = t.model.final_embeddings(eval_generator(5, 1, "valid", t.device))[0]
    assert torch.equal(emb["valid"], again)
    assert not torch.equal(emb["valid"],
                           t.model.final_embeddings(eval_generator(5, 2, "valid", t.device))[0])


def test_training_and_loading_leave_global_state_unchanged(tiny, tmp_path):
    random.seed(1)
    np.random.seed(2)
    torch.manual_seed(3)
    torch.use_deterministic_algorithms(False)
    before = (random.getstate(), np.random.get_state()[1].copy(), torch.get_rng_state(),
              torch.get_num_threads())
    fit(cfg(model="lgmrec", epochs=2, threads=1), tiny, run_dir=tmp_path / "r")
    api.load_run(tmp_path / "r", data=tiny)
    api.evaluate_run(tmp_path / "r", data=tiny)
    assert random.getstate() == before[0]
    assert np.array_equal(np.random.get_state()[1], before[1])
    assert torch.equal(torch.get_rng_state(), before[2])
    assert torch.get_num_threads() == before[3]
    assert not torch.are_deterministic_algorithms_enabled()


def test_trainer_keeps_its_own_stream_between_calls(tiny):
    """Drawing from torch's global RNG between epochs does not change the run."""
    a, b = Trainer(cfg(model="lgmrec"), tiny), Trainer(cfg(model="lgmrec"), tiny)
    a.train_epoch(0)
    b.train_epoch(0)
    torch.rand(1000)  # the caller's own use of the global stream
    la, lb = a.train_epoch(1), b.train_epoch(1)
    assert la == lb


@pytest.mark.parametrize("threads", [None, 2])
def test_threads_are_fixed_by_the_config_and_restored(tiny, threads):
    seen = set()

    class Watch(Callback):
        def on_batch(self, epoch, batch, n_batches):
            seen.add(torch.get_num_threads())

    before = torch.get_num_threads()
    c = resolve_config({"model": "bpr", "epochs": 2, "batch_size": 64,
                        **({} if threads is None else {"threads": threads})})
    assert c.train.threads == (threads or 1)  # the default is 1, whatever the machine's load
    fit(c, tiny, callbacks=[Watch()])
    assert seen == {threads or 1}
    assert torch.get_num_threads() == before


def test_config_stores_absolute_data_path_and_fingerprint(tiny_dir, tmp_path, monkeypatch):
    monkeypatch.chdir(tiny_dir.parent)
    run = tmp_path / "run"
    fit(resolve_config({"model": "bpr", "epochs": 1, "data": tiny_dir.name, "threads": 1}),
        run_dir=run)
    import yaml

    flat = yaml.safe_load((run / "config.yaml").read_text())
    assert flat["data"] == str(tiny_dir.resolve())
    record = json.loads((run / "data.json").read_text())
    assert set(record["files"]) == {"tiny.inter", "image_feat.npy", "text_feat.npy"}
    monkeypatch.chdir(tmp_path)  # elsewhere: the run still finds its data
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        api.evaluate_run(run)
    inter = tiny_dir / "tiny.inter"
    inter.write_text(inter.read_text() + "0\t44\t0\n")
    with pytest.warns(UserWarning, match=r"the data changed since run .* \(tiny.inter changed\)"):
        api.evaluate_run(run)


def test_keep_checkpoint_false_removes_it_when_finished(tiny, tmp_path):
    fit(cfg(keep_checkpoint=False), tiny, run_dir=tmp_path / "r")
    assert {p.name for p in (tmp_path / "r").iterdir()} >= {"best.pt", "result.json"}
    assert not (tmp_path / "r" / "checkpoint.pt").exists()
    fit(cfg(), tiny, run_dir=tmp_path / "kept")
    assert (tmp_path / "kept" / "checkpoint.pt").is_file()


def simulate_stop(values: list[float], patience: int, window: int) -> int:
    """The epoch at which training stops, by the rule written out plainly."""
    best, bad = -np.inf, 0
    for e in range(window, len(values) + 1):  # from the first full window on
        smoothed = float(np.mean(values[e - window:e]))
        if smoothed > best:
            best, bad = smoothed, 0
        else:
            bad += 1
            if bad > patience:
                return e
    return len(values)


@pytest.mark.parametrize("window", [1, 3])
def test_smoothed_stopping_follows_the_moving_average(tiny, tmp_path, window):
    curve = []

    class Rec(Callback):
        def on_epoch(self, r):
            curve.append(r.valid["recall@20"])

    res = fit(cfg(model="bpr", epochs=60, patience=2, stop_window=window, learning_rate=0.05),
              tiny, run_dir=tmp_path / "r", callbacks=[Rec()])
    assert res.epochs_run == simulate_stop(curve, 2, window)
    assert res.best_epoch == int(np.argmax(curve)) + 1  # the best epoch: the raw curve
    assert res.valid["recall@20"] == max(curve)


def test_smoothed_stopping_survives_resume(tiny, tmp_path):
    class Stop(Callback):
        def on_epoch(self, r):
            if r.epoch == 4:
                raise KeyboardInterrupt

    c = cfg(model="bpr", epochs=40, patience=2, stop_window=3, learning_rate=0.05)
    full = fit(c, tiny, run_dir=tmp_path / "full")
    with pytest.raises(KeyboardInterrupt):
        fit(c, tiny, run_dir=tmp_path / "cut", callbacks=[Stop()])
    from mgnm.train.trainer import resume

    again = resume(tmp_path / "cut", tiny)
    assert (again.epochs_run, again.best_epoch, again.test) == (full.epochs_run,
                                                                full.best_epoch, full.test)


def test_loss_terms_add_up_to_the_loss_for_every_model(tiny):
    """Progress lines show the weighted terms: what is optimised, so they sum to the loss."""
    for name in MODELS:
        t = Trainer(cfg(model=name), tiny)
        losses = t.train_epoch(0)
        terms = sum(v for k, v in losses.items() if k != "loss")
        assert terms == pytest.approx(losses["loss"], rel=1e-4, abs=1e-7), (name, losses)


def test_progress_shows_no_test_metric_before_the_end(tiny):
    import io as _io

    from mgnm.train.progress import PlainProgress

    buf = _io.StringIO()
    fit(cfg(epochs=3), tiny, callbacks=[PlainProgress(buf)])
    lines = buf.getvalue().splitlines()
    epoch_lines = [x for x in lines if x.startswith("epoch")]
    assert len(epoch_lines) == 3 and all("test" not in x for x in epoch_lines)
    assert "valid recall@20" in epoch_lines[0]
    assert lines[-1].startswith("done:") and "test recall@20" in lines[-1]


def test_written_files_respect_the_umask(tiny_dir, tmp_path):
    """A process started with umask 027 (as a shell would start it) writes 0640 files; the
    umask is read once, never set around a write."""
    import os

    from clitools import run_mgnm

    res = run_mgnm("train", "--model", "bpr", "--data", tiny_dir, "--set", "epochs=1",
                   "--out", tmp_path / "r", "-q", preexec_fn=lambda: os.umask(0o027))
    assert res.code == 0, res.err
    modes = {p.name: p.stat().st_mode & 0o777 for p in Path(tmp_path / "r").iterdir()}
    assert modes and all(m == 0o640 for m in modes.values()), modes


@pytest.mark.parametrize("window", [1, 4])
def test_replaying_a_long_log_equals_running_with_the_rule(tiny, tmp_path, window):
    """Training does not depend on when it stops: the replayed stop of a long run is the
    stop of a run made with the rule, with the same best epoch and test metrics."""
    from mgnm.runs import read_log
    from mgnm.train.stopping import replay

    long = fit(cfg(model="bpr", epochs=40, patience=1000, learning_rate=0.05), tiny,
               run_dir=tmp_path / "long")
    assert long.epochs_run == 40
    short = fit(cfg(model="bpr", epochs=40, patience=3, stop_window=window, learning_rate=0.05),
                tiny, run_dir=tmp_path / "short")
    got = replay(read_log(tmp_path / "long"), "recall@20", 3, window)
    assert got["stop_epoch"] == short.epochs_run < 40
    assert got["best_epoch"] == short.best_epoch
    assert got["test"] == short.test and got["valid"] == short.valid
