"""The one trainer every model shares (docs/protocol.md, "Training" and "Early stopping").

``fit(config, dataset)`` trains with Adam on shuffled BPR batches, evaluates validation after
every epoch, stops after more than ``patience`` epochs without a strict improvement of
``valid_metric`` and returns the test metrics of the best validation epoch.

With a run directory it also writes, atomically:

- ``config.yaml``: the resolved flat config;
- ``log.jsonl``: one line per epoch (every loss term, metrics, seconds);
- ``checkpoint.pt``: model, optimizer, scheduler, RNG states, epoch, best so far;
- ``best.pt``: the model weights of the best validation epoch;
- ``per_user.npz``: that epoch's per-user validation and test values
  (:mod:`mgnm.evaluation.peruser`);
- ``result.json``: the final result.

``fit(..., resume=True)`` continues from ``checkpoint.pt`` and reaches the same result as an
uninterrupted run with the same seed: the sampler's stream depends only on (seed, epoch) and
torch's RNG state is restored.
"""

from __future__ import annotations

import contextlib
import math
import platform
import random
import time
from collections.abc import Callable, Iterator, Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch

from mgnm import runs, storage
from mgnm.config import RunConfig, resolve_config
from mgnm.data.dataset import Dataset
from mgnm.data.sampler import BPRSampler
from mgnm.errors import CheckpointError, ConfigError, DataError, TrainingError
from mgnm.evaluation.evaluator import Evaluator, SplitResult
from mgnm.evaluation.peruser import PER_USER_FILE, SplitValues, save_per_user
from mgnm.models import Recommender
from mgnm.runs import (
    build_model,
    isolated_process_state,
    prepare_dataset,
    resolve_device,
    warn_if_data_changed,
)
from mgnm.train.provenance import software
from mgnm.train.stopping import EarlyStopping

CHECKPOINT_VERSION = 2


@dataclass
class EpochRecord:
    epoch: int
    lr: float
    losses: dict[str, float]
    valid: dict[str, float]
    test: dict[str, float] | None
    train_seconds: float
    eval_seconds: float
    improved: bool
    best_epoch: int
    best_valid: float


@dataclass
class Result:
    model: str
    dataset: str
    seed: int
    best_epoch: int
    epochs_run: int
    valid: dict[str, float]
    test: dict[str, float]
    train_seconds_per_epoch: float
    eval_seconds: float
    stopped_early: bool
    device: str
    torch_version: str
    config: dict[str, Any] = field(default_factory=dict)
    run_dir: str | None = None
    mgnm_version: str | None = None
    git_commit: str | None = None  # of the checkout mgnm ran from, where it is one

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


class Callback:
    """Hooks for progress displays and experiment drivers (all optional)."""

    def on_start(self, info: dict[str, Any]) -> None: ...

    def on_batch(self, epoch: int, batch: int, n_batches: int) -> None: ...

    def on_epoch(self, record: EpochRecord) -> None: ...

    def on_end(self, result: Result) -> None: ...

    def on_abort(self, error: BaseException) -> None:
        """The run stopped before its end (an error, an interrupt, a pruner's
        ``TrialPruned``); called once, then ``error`` propagates."""


def seed_everything(seed: int) -> None:
    random.seed(seed)
    np.random.seed(seed % 2**32)
    torch.manual_seed(seed)


SPLIT_CODES = {"valid": 1, "test": 2}


def eval_generator(seed: int, epoch: int, split: str, device: torch.device) -> torch.Generator:
    """The generator of a model's evaluation noise (LGMRec's Gumbel draws) for one split.

    Seeded by (run seed, epoch, split) alone, so validation and test draw separately (as
    MMRec does) and ``mgnm evaluate`` redraws exactly what the run drew at its best epoch.
    """
    state = np.random.SeedSequence([int(seed), int(epoch), SPLIT_CODES[split]])
    gen = torch.Generator(device=device)
    gen.manual_seed(int(state.generate_state(1, dtype=np.uint64)[0] >> np.uint64(1)))
    return gen


def make_adam(model: torch.nn.Module, lr: float) -> torch.optim.Adam:
    """Adam over the model's parameters, as one fused kernel where torch has one.

    torch's default Adam runs seven element-wise operations per parameter table and step
    (``lerp_``, ``mul_``, ``addcmul_``, ``sqrt``, ``div_``, ``add_``, ``addcdiv_``, each a pass
    over the table); the fused one makes one pass. On Baby's LightGCN tables: 3.3 ms -> 1.6 ms
    per step on 2 CPU threads (``benchmarks/bench_kernels.py --only adam``), ~7% of a LightGCN
    step; ~1% of an MGNM one at the paper's widths, by the profiler. Same update, up to float rounding.
    Saved optimizer states load into either kind.
    """
    params = list(model.parameters())
    fused = bool(params) and all(p.is_floating_point() and p.device.type in ("cpu", "cuda")
                                 for p in params)
    return torch.optim.Adam(params, lr=lr, fused=fused or None)


def adam_state_for(optimizer: torch.optim.Adam, saved: dict[str, Any]) -> dict[str, Any]:
    """A saved Adam state with this optimizer's kernel choice (fused or not) in its groups:
    torch takes every group setting from the saved state, so a checkpoint written by a
    version or device without the fused kernel would otherwise switch it off (or on)."""
    kernel = {k: optimizer.param_groups[0][k] for k in ("fused", "foreach")}
    groups = [{**g, **kernel} for g in saved["param_groups"]]
    return {**saved, "param_groups": groups}


class Trainer:
    """Trains one model on one dataset; leaves the process's global state as it found it.

    Torch's thread count, its deterministic-algorithms flag and the global RNGs of Python,
    numpy and torch are set for the trainer's own work and restored after it (the trainer
    keeps its own torch RNG stream between calls, and in its checkpoints).
    """

    def __init__(
        self,
        config: RunConfig,
        dataset: Dataset | None = None,
        *,
        run_dir: str | Path | None = None,
        callbacks: Sequence[Callback] = (),
    ) -> None:
        self.dataset = prepare_dataset(config, dataset)
        if config.data is None and self.dataset.path is not None:
            config = config.model_copy(update={"data": str(self.dataset.path)})
        if config.data is not None:  # absolute, so the run works from any directory
            config = config.model_copy(update={"data": str(Path(config.data).resolve())})
        self.config = config
        self.tc = config.train
        if len(self.dataset.valid) == 0:
            raise DataError(f"{self.dataset.path or self.dataset.name}: the validation split "
                            f"is empty (no row has x_label 1); early stopping needs it")
        metric_k = int(self.tc.valid_metric.split("@")[1])
        if metric_k not in self.tc.topk:
            raise ConfigError(f"config key 'valid_metric' = {self.tc.valid_metric!r}: K must be "
                              f"one of topk {list(self.tc.topk)}")
        self.run_dir = Path(run_dir) if run_dir is not None else None
        self.callbacks = list(callbacks)
        self.device = resolve_device(self.tc.device)
        self.threads = self.tc.threads
        with self._own_state(initial=True):
            self.model = build_model(config, self.dataset, self.device)
        self.optimizer = make_adam(self.model, self.tc.learning_rate)
        gamma, period = self.tc.lr_decay, self.tc.lr_decay_epochs
        self.scheduler = torch.optim.lr_scheduler.LambdaLR(
            self.optimizer, lambda e: gamma ** (e / period)
        )
        self.sampler = BPRSampler(
            self.dataset.train.users, self.dataset.train.items, self.dataset.n_items,
            batch_size=self.tc.batch_size, seed=self.tc.seed,
            negatives=type(self.model).uses_negatives, device=self.device,
        )
        self.evaluator = Evaluator(self.dataset, ks=self.tc.topk, metrics=self.tc.metrics,
                                   batch_size=self.tc.eval_batch_size, device=self.device)
        # training state (what a checkpoint holds)
        self.epoch = 0  # epochs completed
        self.best_epoch = 0
        self.best_value = -math.inf
        self.best_valid: dict[str, float] = {}
        self.best_test: dict[str, float] = {}
        self.stopping = EarlyStopping(self.tc.patience, self.tc.stop_window)
        self.train_seconds = 0.0
        self.eval_seconds = 0.0
        self.eval_passes = 0
        self.finished = False

    @contextlib.contextmanager
    def _own_state(self, initial: bool = False) -> Iterator[None]:
        """Run the block with the trainer's threads, flags and torch RNG stream, then put the
        caller's back (:func:`isolated_process_state`)."""
        with isolated_process_state(self.threads, self.tc.deterministic):
            if initial:
                seed_everything(self.tc.seed)
            else:
                torch.set_rng_state(self._rng)
            try:
                yield
            finally:
                self._rng = torch.get_rng_state()

    # ------------------------------------------------------------------ run directory
    def _start_run_dir(self) -> None:
        if self.run_dir is None:
            return
        storage.make_dirs(self.run_dir)
        runs.write_config(self.run_dir, self.config)
        if self.dataset.path is not None:
            runs.write_data_record(self.run_dir, self.dataset.path)
        runs.clear_log(self.run_dir)

    def state_dict(self) -> dict[str, Any]:
        cuda_rng = torch.cuda.get_rng_state_all() if torch.cuda.is_available() else None
        return {
            "version": CHECKPOINT_VERSION,
            "model_name": self.config.model,
            "epoch": self.epoch,
            "model": self.model.state_dict(),
            "optimizer": self.optimizer.state_dict(),
            "scheduler": self.scheduler.state_dict(),
            "rng": {"torch": self._rng, "cuda": cuda_rng},
            "best": {"epoch": self.best_epoch, "value": self.best_value,
                     "valid": self.best_valid, "test": self.best_test},
            "stopping": self.stopping.state(),
            "seconds": {"train": self.train_seconds, "eval": self.eval_seconds,
                        "eval_passes": self.eval_passes},
            "finished": self.finished,
        }

    def load_state_dict(self, state: dict[str, Any], where: str) -> None:
        try:
            if state.get("version") != CHECKPOINT_VERSION:
                raise KeyError("version")
            if state["model_name"] != self.config.model:
                raise CheckpointError(f"{where}: checkpoint is of model {state['model_name']!r}, "
                                      f"config says {self.config.model!r}")
            self.model.load_state_dict(state["model"])
            self.optimizer.load_state_dict(adam_state_for(self.optimizer, state["optimizer"]))
            self.scheduler.load_state_dict(state["scheduler"])
            self._rng = state["rng"]["torch"]
            if state["rng"].get("cuda") is not None and torch.cuda.is_available():
                torch.cuda.set_rng_state_all(state["rng"]["cuda"])
            best = state["best"]
            self.epoch = int(state["epoch"])
            self.best_epoch, self.best_value = int(best["epoch"]), float(best["value"])
            self.best_valid, self.best_test = dict(best["valid"]), dict(best["test"])
            self.stopping = EarlyStopping.from_state(state["stopping"])
            secs = state["seconds"]
            self.train_seconds, self.eval_seconds = float(secs["train"]), float(secs["eval"])
            self.eval_passes = int(secs["eval_passes"])
            self.finished = bool(state["finished"])
        except CheckpointError:
            raise
        except (KeyError, TypeError, ValueError, RuntimeError) as exc:
            raise CheckpointError(f"{where}: checkpoint does not match this model or version "
                                  f"({type(exc).__name__}: {str(exc).splitlines()[0]})") from None

    def resume(self) -> None:
        if self.run_dir is None:
            raise CheckpointError("resume needs a run directory")
        state = runs.load_checkpoint(self.run_dir, self.device)
        self.load_state_dict(state, str(self.run_dir / runs.CHECKPOINT))
        warn_if_data_changed(self.run_dir, self.dataset)
        # keep the log lines of the epochs the checkpoint covers, drop any later ones
        runs.truncate_log(self.run_dir, self.epoch)

    def _save_checkpoint(self) -> None:
        if self.run_dir is not None:
            runs.save_checkpoint(self.run_dir, self.state_dict())

    # ------------------------------------------------------------------ loop
    def train_epoch(self, epoch: int) -> dict[str, float]:
        with self._own_state():
            return self._train_epoch(epoch)

    def _train_epoch(self, epoch: int) -> dict[str, float]:
        self.model.train()
        self.model.pre_epoch(epoch)
        sums: dict[str, torch.Tensor] = {}
        n_batches = len(self.sampler)
        for b, batch in enumerate(self.sampler.batches(epoch)):
            users, pos = batch[0], batch[1]
            neg = batch[2] if len(batch) > 2 else None
            losses = self.model.loss(users, pos, neg)
            total = losses["loss"]
            if not torch.isfinite(total):
                bad = {k: float(v) for k, v in losses.items()}
                raise TrainingError(
                    f"the loss became {float(total)} at epoch {epoch + 1}, batch {b + 1} "
                    f"(terms: {bad}); lower learning_rate or the loss weights"
                )
            self.optimizer.zero_grad(set_to_none=True)
            total.backward()
            self.optimizer.step()
            for k, v in losses.items():
                sums[k] = sums.get(k, 0.0) + v.detach()
            for cb in self.callbacks:
                cb.on_batch(epoch, b, n_batches)
        self.scheduler.step()
        return {k: float(v) / n_batches for k, v in sums.items()}

    def evaluate(self, splits: Sequence[str] = ("valid", "test"),
                 epoch: int | None = None) -> dict[str, dict[str, float]]:
        """Metrics of the model as it is now on ``splits``; evaluation noise (if the model
        draws any) as the run drew it after ``epoch`` (default: the epochs completed)."""
        with self._own_state():
            return evaluate_model(self.model, self.evaluator, splits, self.tc.seed,
                                  self.epoch if epoch is None else epoch)

    def run(self, resume: bool = False) -> Result:
        if resume:
            self.resume()
        else:
            self._start_run_dir()
        info = {"model": self.config.model, "dataset": self.dataset.name,
                "device": str(self.device), "n_batches": len(self.sampler),
                "max_epochs": self.tc.epochs, "start_epoch": self.epoch,
                "params": sum(p.numel() for p in self.model.parameters()),
                "threads": self.threads, "seed": self.tc.seed,
                "config": self.config.flat(),
                "run_dir": str(self.run_dir) if self.run_dir else None}
        for cb in self.callbacks:
            cb.on_start(info)
        try:
            result = self._loop()
        except BaseException as exc:
            for cb in self.callbacks:
                cb.on_abort(exc)
            raise
        for cb in self.callbacks:
            cb.on_end(result)
        return result

    def _loop(self) -> Result:
        metric = self.tc.valid_metric
        while not self.finished and self.epoch < self.tc.epochs:
            with self._own_state():
                record = self._one_epoch(metric)
            for cb in self.callbacks:
                cb.on_epoch(record)
        result = self.result()
        if self.run_dir is not None:
            runs.write_result(self.run_dir, result.to_dict())
            if not self.tc.keep_checkpoint:
                runs.remove_checkpoint(self.run_dir)
        return result

    def _one_epoch(self, metric: str) -> EpochRecord:
        epoch = self.epoch
        lr = self.optimizer.param_groups[0]["lr"]
        t0 = time.perf_counter()
        losses = self._train_epoch(epoch)
        t1 = time.perf_counter()
        emb = eval_embeddings(self.model, self.tc.seed, epoch + 1, self.device)
        valid_pass = self.evaluator.evaluate_split(*emb("valid"), "valid")
        valid = valid_pass.means
        improved = valid[metric] > self.best_value
        test_pass = self.evaluator.evaluate_split(*emb("test"), "test") if improved else None
        test = test_pass.means if test_pass is not None else None
        del emb
        t2 = time.perf_counter()
        self.train_seconds += t1 - t0
        self.eval_seconds += t2 - t1
        self.eval_passes += 1
        self.epoch = epoch + 1
        if improved:
            self.best_epoch, self.best_value = self.epoch, valid[metric]
            self.best_valid, self.best_test = valid, test or {}
            if self.run_dir is not None:
                # the best epoch's per-user values, written (atomically) before best.pt: a run
                # interrupted between the two reruns this epoch on resume and writes both again
                save_per_user(self.run_dir / PER_USER_FILE, {
                    "valid": SplitValues(valid_pass.users, valid_pass.per_user),
                    "test": SplitValues(test_pass.users, test_pass.per_user)})
                runs.save_best(self.run_dir, self.epoch, self.model.state_dict())
        if self.stopping.update(valid[metric]):
            self.finished = True
        record = EpochRecord(
            epoch=self.epoch, lr=lr, losses=losses, valid=valid, test=test,
            train_seconds=t1 - t0, eval_seconds=t2 - t1, improved=improved,
            best_epoch=self.best_epoch, best_valid=self.best_value,
        )
        if self.run_dir is not None:
            runs.append_log(self.run_dir, asdict(record))
        self._rng = torch.get_rng_state()
        self._save_checkpoint()
        return record

    def result(self) -> Result:
        return Result(
            model=self.config.model,
            dataset=self.dataset.name,
            seed=self.tc.seed,
            best_epoch=self.best_epoch,
            epochs_run=self.epoch,
            valid=self.best_valid,
            test=self.best_test,
            train_seconds_per_epoch=self.train_seconds / max(self.epoch, 1),
            eval_seconds=self.eval_seconds / max(self.eval_passes, 1),
            stopped_early=self.finished,
            device=str(self.device) + (f" ({torch.cuda.get_device_name(self.device)})"
                                       if self.device.type == "cuda" else
                                       f" ({platform.processor() or platform.machine()})"),
            torch_version=torch.__version__,
            config=self.config.flat(),
            run_dir=str(self.run_dir) if self.run_dir else None,
            **software(),
        )


def eval_embeddings(model: Recommender, seed: int, epoch: int,
                    device: torch.device) -> Callable[[str], tuple[torch.Tensor, torch.Tensor]]:
    """``split -> (users, items)`` for one evaluation pass: a deterministic model is run once
    for every split; a model with evaluation noise once per split, its noise drawn from
    :func:`eval_generator` (seed, epoch, split)."""
    cache: dict[str | None, tuple[torch.Tensor, torch.Tensor]] = {}

    def get(split: str) -> tuple[torch.Tensor, torch.Tensor]:
        key = split if model.stochastic_eval else None
        if key not in cache:
            gen = eval_generator(seed, epoch, split, device) if key else None
            cache[key] = model.final_embeddings(gen)
        return cache[key]

    return get


def evaluate_model(model: Recommender, evaluator: Evaluator, splits: Sequence[str], seed: int,
                   epoch: int) -> dict[str, dict[str, float]]:
    """Metrics on ``splits`` (embeddings from :func:`eval_embeddings`)."""
    return {s: r.means for s, r in evaluate_passes(model, evaluator, splits, seed,
                                                   epoch).items()}


def evaluate_passes(model: Recommender, evaluator: Evaluator, splits: Sequence[str], seed: int,
                    epoch: int) -> dict[str, SplitResult]:
    """One evaluation pass per split (means and per-user values)."""
    emb = eval_embeddings(model, seed, epoch, evaluator.device)
    return {s: evaluator.evaluate_split(*emb(s), s) for s in splits}


def fit(
    config: RunConfig | dict[str, Any],
    dataset: Dataset | None = None,
    *,
    run_dir: str | Path | None = None,
    callbacks: Sequence[Callback] = (),
) -> Result:
    """Train one model to early stopping and return the best validation epoch's result."""
    if isinstance(config, dict):
        config = resolve_config(config)
    return Trainer(config, dataset, run_dir=run_dir, callbacks=callbacks).run()



def resume(run_dir: str | Path, dataset: Dataset | None = None, *,
           callbacks: Sequence[Callback] = (), device: str | None = None,
           threads: int | None = None) -> Result:
    """Continue the interrupted run in ``run_dir`` (its saved config is used as is; the
    device and thread count, which do not change the result, may be given anew)."""
    config = runs.read_config(run_dir)
    if device is not None:
        config = config.replace(device=device)
    if threads is not None:
        config = config.replace(threads=threads)
    return Trainer(config, dataset, run_dir=run_dir, callbacks=callbacks).run(resume=True)
