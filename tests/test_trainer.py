"""The shared trainer: learning, run-directory files, early stopping, resume after a kill."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import textwrap
import time

import pytest
import torch

from mgnm import storage
from mgnm.config import resolve_config
from mgnm.errors import CheckpointError, StorageError
from mgnm.models import MODELS
from mgnm.train.trainer import Callback, Trainer, fit, resume

RESULT_KEYS = {"model", "dataset", "seed", "best_epoch", "epochs_run", "valid", "test",
               "train_seconds_per_epoch", "eval_seconds"}


def cfg(**kw):
    base = {"model": "lightgcn", "epochs": 6, "batch_size": 64, "patience": 50,
            "learning_rate": 0.01, "device": "cpu"}
    base.update(kw)
    return resolve_config(base)


def test_training_lowers_the_loss_and_writes_the_run_directory(tiny, tmp_path):
    run = tmp_path / "run"
    result = fit(cfg(epochs=15), tiny, run_dir=run)
    log = [json.loads(x) for x in (run / "log.jsonl").read_text().splitlines()]
    assert [r["epoch"] for r in log] == list(range(1, 16))
    assert log[-1]["losses"]["loss"] < log[0]["losses"]["loss"]
    saved = json.loads((run / "result.json").read_text())
    assert RESULT_KEYS <= set(saved)
    from mgnm.evaluation.metrics import known_metrics

    assert set(saved["test"]) == {f"{m}@{k}" for m in known_metrics() for k in (5, 10, 20, 50)}
    # the reported test metrics are those logged at the best validation epoch
    best = max(log, key=lambda r: r["valid"]["recall@20"])
    assert saved["best_epoch"] == result.best_epoch == best["epoch"]
    assert saved["test"] == best["test"]
    assert {p.name for p in run.iterdir()} >= {"config.yaml", "log.jsonl", "checkpoint.pt",
                                                "best.pt", "per_user.npz", "result.json"}


def test_early_stopping_ends_after_patience_plus_one_bad_epochs(tiny):
    seen = []

    class Rec(Callback):
        def on_epoch(self, r):
            seen.append((r.epoch, r.improved))

    result = fit(cfg(epochs=200, patience=2, learning_rate=0.05), tiny, callbacks=[Rec()])
    assert result.stopped_early
    last_best = max(e for e, imp in seen if imp)
    assert result.epochs_run == last_best + 3  # the run ends on the 3rd epoch without gain
    assert all(not imp for e, imp in seen if e > last_best)


class Interrupt(Callback):
    def __init__(self, after):
        self.after = after

    def on_epoch(self, r):
        if r.epoch == self.after:
            raise KeyboardInterrupt


def strip_times(lines):
    out = []
    for line in lines:
        rec = json.loads(line)
        rec.pop("train_seconds"), rec.pop("eval_seconds")
        out.append(rec)
    return out


@pytest.mark.parametrize("model", list(MODELS))
def test_interrupted_then_resumed_equals_uninterrupted(tiny, tmp_path, model):
    """Per-epoch state (FREEDOM's pruned graph, DualGNN's neighbour sample, LATTICE's
    learned graph) must come back from the checkpoint or be redrawn from the restored RNG."""
    c = cfg(model=model, epochs=7)
    full = fit(c, tiny, run_dir=tmp_path / "full")
    with pytest.raises(KeyboardInterrupt):
        fit(c, tiny, run_dir=tmp_path / "cut", callbacks=[Interrupt(3)])
    assert not (tmp_path / "cut" / "result.json").exists()
    resumed = resume(tmp_path / "cut", tiny)
    assert resumed.test == full.test and resumed.best_epoch == full.best_epoch
    a = strip_times((tmp_path / "full" / "log.jsonl").read_text().splitlines())
    b = strip_times((tmp_path / "cut" / "log.jsonl").read_text().splitlines())
    assert a == b
    wa = torch.load(tmp_path / "full" / "best.pt")["model"]
    wb = torch.load(tmp_path / "cut" / "best.pt")["model"]
    assert wa.keys() == wb.keys()
    torch.testing.assert_close(wa, wb, rtol=0, atol=0)  # tensors and extra state, bit for bit


KILL_SCRIPT = textwrap.dedent("""
    import sys, time
    from mgnm.data import load_dataset
    from mgnm.config import resolve_config
    from mgnm.train.trainer import Callback, Trainer

    class Slow(Callback):
        def on_epoch(self, r):
            print(r.epoch, flush=True)
            time.sleep(0.3)

    data, run, resume = sys.argv[1], sys.argv[2], sys.argv[3] == "1"
    cfg = resolve_config({"model": "lightgcn", "epochs": 8, "batch_size": 64, "patience": 50,
                          "learning_rate": 0.01, "device": "cpu"})
    Trainer(cfg, load_dataset(data), run_dir=run, callbacks=[Slow()]).run(resume=resume)
""")


def test_sigkill_mid_run_then_resume_matches(tiny_dir, tmp_path):
    script = tmp_path / "train.py"
    script.write_text(KILL_SCRIPT)
    env = {**os.environ, "PYTHONWARNINGS": "ignore"}
    full = tmp_path / "full"
    subprocess.run([sys.executable, script, tiny_dir, full, "0"], check=True, env=env,
                   capture_output=True)
    cut = tmp_path / "cut"
    proc = subprocess.Popen([sys.executable, script, tiny_dir, cut, "0"], env=env,
                            stdout=subprocess.PIPE, text=True)
    for line in proc.stdout:
        if int(line) >= 3:
            break
    time.sleep(0.1)
    proc.send_signal(signal.SIGKILL)
    proc.wait()
    assert proc.returncode == -signal.SIGKILL
    assert not (cut / "result.json").exists()
    done = int(torch.load(cut / "checkpoint.pt", weights_only=True)["epoch"])
    assert 3 <= done < 8
    subprocess.run([sys.executable, script, tiny_dir, cut, "1"], check=True, env=env,
                   capture_output=True)
    a = json.loads((full / "result.json").read_text())
    b = json.loads((cut / "result.json").read_text())
    for key in ("best_epoch", "epochs_run", "valid", "test"):
        assert a[key] == b[key]


def test_corrupt_or_missing_checkpoint_is_a_clear_error(tiny, tmp_path):
    run = tmp_path / "r"
    fit(cfg(epochs=2), tiny, run_dir=run)
    (run / "checkpoint.pt").write_bytes(b"not a checkpoint at all")
    with pytest.raises(CheckpointError, match=r"checkpoint.pt: corrupt or unreadable"):
        resume(run, tiny)
    (run / "checkpoint.pt").unlink()
    with pytest.raises(CheckpointError, match="has finished .* checkpoint.pt was not kept"):
        resume(run, tiny)
    (run / "result.json").unlink()
    with pytest.raises(CheckpointError, match="checkpoint file does not exist"):
        resume(run, tiny)
    with pytest.raises(CheckpointError, match="run directory does not exist"):
        resume(tmp_path / "nowhere", tiny)


def test_checkpoint_of_another_model_is_rejected(tiny, tmp_path):
    fit(cfg(model="bpr", epochs=1), tiny, run_dir=tmp_path / "a")
    t = Trainer(cfg(epochs=1), tiny, run_dir=tmp_path / "a")
    with pytest.raises(CheckpointError, match="of model 'bpr'"):
        t.resume()


def test_atomic_write_leaves_old_file_when_interrupted(tmp_path, monkeypatch):
    p = tmp_path / "f.json"
    storage.write_json(p, {"a": 1})

    def boom(*a, **k):
        raise OSError("disk full")

    monkeypatch.setattr(os, "replace", boom)
    with pytest.raises(StorageError, match=r"f\.json: cannot write \(disk full\)"):
        storage.write_json(p, {"a": 2})
    assert json.loads(p.read_text()) == {"a": 1}
    assert [x.name for x in tmp_path.iterdir()] == ["f.json"]


def test_lr_schedule_is_continuous_exponential(tiny):
    lrs = []

    class Rec(Callback):
        def on_epoch(self, r):
            lrs.append(r.lr)

    fit(cfg(epochs=4, lr_decay=0.5, lr_decay_epochs=2.0, learning_rate=0.1), tiny,
        callbacks=[Rec()])
    assert lrs == pytest.approx([0.1 * 0.5 ** (e / 2) for e in range(4)])


def test_reruns_with_large_repeating_batches_are_bit_identical(tmp_path):
    """A 2048-row batch repeats users; their gradients must not sum in thread order."""
    from conftest import write_dataset

    from mgnm.data import load_dataset

    ds = load_dataset(write_dataset(tmp_path, n_users=600, n_items=300, seed=4))
    c = cfg(model="bpr", epochs=2, batch_size=2048)
    runs = [Trainer(c, ds) for _ in range(2)]
    for t in runs:
        t.run()
    for k, v in runs[0].model.state_dict().items():
        assert torch.equal(v, runs[1].model.state_dict()[k]), k


def test_fused_adam_takes_the_same_steps_as_the_loop_implementation():
    """make_adam's fused kernel against torch's per-parameter loop Adam (a separate code path),
    over several steps with changing gradients: equal up to float rounding."""
    from mgnm.train.trainer import make_adam

    torch.manual_seed(0)
    a = torch.nn.Linear(7, 5)
    b = torch.nn.Linear(7, 5)
    b.load_state_dict(a.state_dict())
    start = [p.detach().clone() for p in a.parameters()]
    fused = make_adam(a, 0.01)
    loop = torch.optim.Adam(b.parameters(), lr=0.01, foreach=False)
    assert fused.param_groups[0]["fused"] is True
    for _step in range(5):
        x = torch.randn(11, 7)
        for model, opt in ((a, fused), (b, loop)):
            opt.zero_grad()
            (model(x) ** 2).sum().backward()
            opt.step()
    for p, q in zip(a.parameters(), b.parameters(), strict=True):
        torch.testing.assert_close(p, q, rtol=1e-5, atol=1e-6)
    assert all((p - s).abs().min() > 1e-3 for p, s in zip(a.parameters(), start, strict=True))


def test_checkpoint_of_unfused_adam_resumes_with_the_fused_kernel(tiny, tmp_path):
    """A checkpoint written by a version without the fused kernel (its groups say fused=None)
    loads, keeps its moments, and the resumed trainer steps with the fused kernel."""
    c = cfg(epochs=2)
    with pytest.raises(KeyboardInterrupt):
        fit(c, tiny, run_dir=tmp_path / "run", callbacks=[Interrupt(1)])
    path = tmp_path / "run" / "checkpoint.pt"
    state = storage.load_torch(path)
    for g in state["optimizer"]["param_groups"]:
        g["fused"], g["foreach"] = None, None
    storage.save_torch(path, state)
    t = Trainer(c, tiny, run_dir=tmp_path / "run")
    t.load_state_dict(storage.load_torch(path), str(path))
    assert t.optimizer.param_groups[0]["fused"] is True
    saved = state["optimizer"]["state"]
    for i, p in enumerate(t.model.parameters()):
        assert torch.equal(t.optimizer.state[p]["exp_avg"], saved[i]["exp_avg"])
    result = t.run(resume=True)
    assert result.epochs_run == 2
