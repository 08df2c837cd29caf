"""The one trainer every model shares (PROTOCOL.md, "Training" and "Early stopping").

``fit(config, dataset)`` trains with Adam on shuffled BPR batches, evaluates validation after
every epoch, stops after more than ``patience`` epochs without a strict improvement of
``valid_metric`` and returns the test metrics of the best validation epoch.

With a run directory it also writes, atomically:

- ``config.yaml``: the resolved flat config;
- ``log.jsonl``: one line per epoch (every loss term, metrics, seconds);
- ``checkpoint.pt``: model, optimizer, scheduler, RNG states, epoch, best so far;
- ``best.pt``: the model weights of the best validation epoch;
- ``result.json``: the final result.

``fit(..., resume=True)`` continues from ``checkpoint.pt`` and reaches the same result as an
uninterrupted run with the same seed: the sampler's stream depends only on (seed, epoch) and
torch's RNG state is restored.
"""

from __future__ import annotations

import json
import math
import platform
import random
import time
from collections.abc import Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch
import yaml

from mgnm.data.dataset import Dataset, load_dataset
from mgnm.data.inputs import build_inputs
from mgnm.data.sampler import BPRSampler
from mgnm.errors import CheckpointError, ConfigError, DataError, TrainingError
from mgnm.models import Recommender, get_model_class
from mgnm.train import io
from mgnm.train.config import RunConfig, resolve_config
from mgnm.train.evaluator import Evaluator

CHECKPOINT_VERSION = 1


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

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


class Callback:
    """Hooks for progress displays and experiment drivers (all optional)."""

    def on_start(self, info: dict[str, Any]) -> None: ...

    def on_batch(self, epoch: int, batch: int, n_batches: int) -> None: ...

    def on_epoch(self, record: EpochRecord) -> None: ...

    def on_end(self, result: Result) -> None: ...


def resolve_device(name: str) -> torch.device:
    if name == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    if name == "cuda" and not torch.cuda.is_available():
        raise ConfigError("device 'cuda' requested but torch sees no CUDA device")
    return torch.device(name)


def seed_everything(seed: int) -> None:
    random.seed(seed)
    np.random.seed(seed % 2**32)
    torch.manual_seed(seed)


def prepare_dataset(config: RunConfig, dataset: Dataset | None) -> Dataset:
    """The dataset of ``config`` (loaded when not given) restricted to its modalities."""
    if dataset is None:
        if config.data is None:
            raise ConfigError("no dataset given (set 'data' or pass a Dataset)")
        dataset = load_dataset(config.data)
    mods = config.train.modalities
    dataset = dataset.with_modalities(list(mods) if mods is not None else None)
    cls = get_model_class(config.model)
    if cls.needs_features and not dataset.features:
        raise DataError(
            f"{dataset.path or dataset.name}: model {config.model!r} needs at least one "
            f"modality (a <name>_feat.npy file) and this dataset has none"
        )
    return dataset


_M_TRIM_THRESHOLD, _M_TOP_PAD, _M_MMAP_THRESHOLD = -1, -2, -3  # glibc's mallopt parameters


def keep_freed_memory() -> bool:
    """Ask glibc's allocator to keep freed blocks of up to 32 MB instead of unmapping them.

    A training step on the CPU allocates and frees the same few-MB tensors hundreds of times;
    with glibc's defaults each is a fresh mmap whose pages fault in again (measured on TikTok:
    ~630k minor page faults in three MGNM epochs, ~150k with this, 5-8% of the epoch time).
    Only the process-wide allocator thresholds change. A no-op (False) off glibc.
    """
    if platform.system() != "Linux":
        return False
    try:
        import ctypes

        libc = ctypes.CDLL("libc.so.6")
        return bool(libc.mallopt(_M_MMAP_THRESHOLD, 32 << 20)
                    and libc.mallopt(_M_TRIM_THRESHOLD, 256 << 20)
                    and libc.mallopt(_M_TOP_PAD, 64 << 20))
    except (OSError, AttributeError):
        return False


def build_model(config: RunConfig, dataset: Dataset, device: torch.device) -> Recommender:
    cls = get_model_class(config.model)
    inputs = build_inputs(dataset, device, config.train.sparse_format)
    return cls(config.params, inputs).to(device)


class Trainer:
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
            config = config.model_copy(update={"data": str(self.dataset.path.resolve())})
        self.config = config
        self.tc = config.train
        if len(self.dataset.valid) == 0:
            raise DataError(f"{self.dataset.path or self.dataset.name}: the validation split "
                            f"is empty (no row has x_label 1); early stopping needs it")
        self.run_dir = Path(run_dir) if run_dir is not None else None
        self.callbacks = list(callbacks)
        self.device = resolve_device(self.tc.device)
        keep_freed_memory()
        # process-wide: without it, the backward of a gather with repeated indices (every
        # batch repeats users) sums in thread order and reruns differ in the last bits
        torch.use_deterministic_algorithms(self.tc.deterministic, warn_only=True)
        seed_everything(self.tc.seed)
        self.model = build_model(config, self.dataset, self.device)
        self.optimizer = torch.optim.Adam(self.model.parameters(), lr=self.tc.learning_rate)
        gamma, period = self.tc.lr_decay, self.tc.lr_decay_epochs
        self.scheduler = torch.optim.lr_scheduler.LambdaLR(
            self.optimizer, lambda e: gamma ** (e / period)
        )
        self.sampler = BPRSampler(
            self.dataset.train.users, self.dataset.train.items, self.dataset.n_items,
            batch_size=self.tc.batch_size, seed=self.tc.seed,
            negatives=type(self.model).uses_negatives, device=self.device,
        )
        self.evaluator = Evaluator(self.dataset, ks=self.tc.topk,
                                   batch_size=self.tc.eval_batch_size, device=self.device)
        metric_k = int(self.tc.valid_metric.split("@")[1])
        if metric_k not in self.tc.topk:
            raise ConfigError(f"config key 'valid_metric' = {self.tc.valid_metric!r}: K must be "
                              f"one of topk {list(self.tc.topk)}")
        # training state (what a checkpoint holds)
        self.epoch = 0  # epochs completed
        self.best_epoch = 0
        self.best_value = -math.inf
        self.best_valid: dict[str, float] = {}
        self.best_test: dict[str, float] = {}
        self.bad_epochs = 0
        self.train_seconds = 0.0
        self.eval_seconds = 0.0
        self.eval_passes = 0
        self.finished = False

    # ------------------------------------------------------------------ run directory
    def _path(self, name: str) -> Path:
        assert self.run_dir is not None
        return self.run_dir / name

    def _start_run_dir(self) -> None:
        if self.run_dir is None:
            return
        self.run_dir.mkdir(parents=True, exist_ok=True)
        io.write_yaml(self._path("config.yaml"), self.config.flat())
        self._path("log.jsonl").unlink(missing_ok=True)

    def state_dict(self) -> dict[str, Any]:
        cuda_rng = torch.cuda.get_rng_state_all() if torch.cuda.is_available() else None
        return {
            "version": CHECKPOINT_VERSION,
            "model_name": self.config.model,
            "epoch": self.epoch,
            "model": self.model.state_dict(),
            "optimizer": self.optimizer.state_dict(),
            "scheduler": self.scheduler.state_dict(),
            "rng": {"torch": torch.get_rng_state(), "cuda": cuda_rng},
            "best": {"epoch": self.best_epoch, "value": self.best_value,
                     "valid": self.best_valid, "test": self.best_test},
            "bad_epochs": self.bad_epochs,
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
            self.optimizer.load_state_dict(state["optimizer"])
            self.scheduler.load_state_dict(state["scheduler"])
            torch.set_rng_state(state["rng"]["torch"])
            if state["rng"].get("cuda") is not None and torch.cuda.is_available():
                torch.cuda.set_rng_state_all(state["rng"]["cuda"])
            best = state["best"]
            self.epoch = int(state["epoch"])
            self.best_epoch, self.best_value = int(best["epoch"]), float(best["value"])
            self.best_valid, self.best_test = dict(best["valid"]), dict(best["test"])
            self.bad_epochs = int(state["bad_epochs"])
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
        ckpt = self._path("checkpoint.pt")
        state = io.load_torch(ckpt, map_location=self.device)
        self.load_state_dict(state, str(ckpt))
        # keep the log lines of the epochs the checkpoint covers, drop any later ones
        log = self._path("log.jsonl")
        if log.exists():
            kept = []
            for line in log.read_text(encoding="utf-8").splitlines():
                try:
                    if json.loads(line)["epoch"] <= self.epoch:
                        kept.append(line)
                except (json.JSONDecodeError, KeyError, TypeError):
                    break  # a torn last line from a kill
            io.atomic_write_text(log, "".join(f"{x}\n" for x in kept))

    def _save_checkpoint(self) -> None:
        if self.run_dir is not None:
            io.save_torch(self._path("checkpoint.pt"), self.state_dict())

    # ------------------------------------------------------------------ loop
    def train_epoch(self, epoch: int) -> dict[str, float]:
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

    @torch.no_grad()
    def evaluate(self, splits: Sequence[str] = ("valid", "test")) -> dict[str, dict[str, float]]:
        self.model.eval()
        user_emb, item_emb = self.model.embeddings()
        return {s: self.evaluator.evaluate(user_emb, item_emb, s) for s in splits}

    def run(self, resume: bool = False) -> Result:
        if resume:
            self.resume()
        else:
            self._start_run_dir()
        info = {"model": self.config.model, "dataset": self.dataset.name,
                "device": str(self.device), "n_batches": len(self.sampler),
                "max_epochs": self.tc.epochs, "start_epoch": self.epoch,
                "params": sum(p.numel() for p in self.model.parameters()),
                "run_dir": str(self.run_dir) if self.run_dir else None}
        for cb in self.callbacks:
            cb.on_start(info)
        metric = self.tc.valid_metric
        while not self.finished and self.epoch < self.tc.epochs:
            epoch = self.epoch
            lr = self.optimizer.param_groups[0]["lr"]
            t0 = time.perf_counter()
            losses = self.train_epoch(epoch)
            t1 = time.perf_counter()
            self.model.eval()
            with torch.no_grad():
                user_emb, item_emb = self.model.embeddings()
                valid = self.evaluator.evaluate(user_emb, item_emb, "valid")
                improved = valid[metric] > self.best_value
                test = self.evaluator.evaluate(user_emb, item_emb, "test") if improved else None
            del user_emb, item_emb
            t2 = time.perf_counter()
            self.train_seconds += t1 - t0
            self.eval_seconds += t2 - t1
            self.eval_passes += 1
            self.epoch = epoch + 1
            if improved:
                self.best_epoch, self.best_value = self.epoch, valid[metric]
                self.best_valid, self.best_test = valid, test or {}
                self.bad_epochs = 0
                if self.run_dir is not None:
                    io.save_torch(self._path("best.pt"), {"epoch": self.epoch,
                                                          "model": self.model.state_dict()})
            else:
                self.bad_epochs += 1
                if self.bad_epochs > self.tc.patience:
                    self.finished = True
            record = EpochRecord(
                epoch=self.epoch, lr=lr, losses=losses, valid=valid, test=test,
                train_seconds=t1 - t0, eval_seconds=t2 - t1, improved=improved,
                best_epoch=self.best_epoch, best_valid=self.best_value,
            )
            if self.run_dir is not None:
                with open(self._path("log.jsonl"), "a", encoding="utf-8") as f:
                    f.write(json.dumps(asdict(record)) + "\n")
            self._save_checkpoint()
            for cb in self.callbacks:
                cb.on_epoch(record)
        result = self.result()
        if self.run_dir is not None:
            io.write_json(self._path("result.json"), result.to_dict())
        for cb in self.callbacks:
            cb.on_end(result)
        return result

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
        )


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


def load_run_config(run_dir: str | Path) -> RunConfig:
    path = Path(run_dir) / "config.yaml"
    if not Path(run_dir).is_dir():
        raise CheckpointError(f"{run_dir}: run directory does not exist")
    if not path.is_file():
        raise CheckpointError(f"{path}: missing (is {run_dir} a run directory?)")
    try:
        flat = yaml.safe_load(path.read_text(encoding="utf-8"))
    except Exception as exc:
        raise CheckpointError(f"{path}: unreadable ({exc})") from None
    if not isinstance(flat, dict):
        raise CheckpointError(f"{path}: expected a mapping")
    return resolve_config(flat)


def resume(run_dir: str | Path, dataset: Dataset | None = None, *,
           callbacks: Sequence[Callback] = (), device: str | None = None) -> Result:
    """Continue the interrupted run in ``run_dir`` (its saved config is used as is)."""
    config = load_run_config(run_dir)
    if device is not None:
        config = config.replace(device=device)
    return Trainer(config, dataset, run_dir=run_dir, callbacks=callbacks).run(resume=True)
