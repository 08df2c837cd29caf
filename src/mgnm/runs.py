"""A run directory: what its files are called, how each is written and read back, and how a
finished run's model is rebuilt from them.

A run directory holds, each written atomically:

- ``config.yaml``: the resolved flat config;
- ``data.json``: the dataset's absolute path and a fingerprint of its files;
- ``log.jsonl``: one line per epoch (every loss term, metrics, seconds);
- ``checkpoint.pt``: model, optimizer, scheduler, RNG states, epoch, best so far;
- ``best.pt``: the model weights of the best validation epoch;
- ``result.json``: the final result.

The trainer writes them; the API, prediction, experiments, searches and trackers read them
through this module.
"""

from __future__ import annotations

import contextlib
import json
import math
import random
import warnings
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch
import yaml

from mgnm import storage
from mgnm.config import RunConfig, resolve_config
from mgnm.data.dataset import Dataset, load_dataset
from mgnm.data.fingerprint import changed_files, fingerprint
from mgnm.data.inputs import build_inputs
from mgnm.errors import CheckpointError, ConfigError, DataError
from mgnm.models import Recommender, get_model_class

CONFIG = "config.yaml"
DATA_RECORD = "data.json"
LOG = "log.jsonl"
CHECKPOINT = "checkpoint.pt"
BEST = "best.pt"
RESULT = "result.json"


# ---------------------------------------------------------------------------- config
def write_config(run_dir: Path, config: RunConfig) -> None:
    storage.write_yaml(Path(run_dir) / CONFIG, config.flat())


def read_config(run_dir: str | Path) -> RunConfig:
    """The resolved config of the run in ``run_dir``; a missing directory or file, or one
    that is not a YAML mapping, is a :class:`CheckpointError` naming it."""
    path = Path(run_dir) / CONFIG
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


# ---------------------------------------------------------------------------- log
def read_log(run_dir: str | Path, *, missing_ok: bool = True) -> list[dict[str, Any]]:
    """The epoch records of the run's ``log.jsonl``: none when it does not exist (an error
    naming it with ``missing_ok=False``). A last line cut off by a kill is skipped with a
    warning; any other malformed line is an error naming the file and line."""
    path = Path(run_dir) / LOG
    try:
        lines = path.read_text(encoding="utf-8").splitlines()
    except FileNotFoundError:
        if missing_ok:
            return []
        raise CheckpointError(f"{path}: missing (is {run_dir} a run directory?)") from None
    except (OSError, UnicodeDecodeError) as exc:
        raise CheckpointError(f"{path}: cannot read ({getattr(exc, 'strerror', None) or exc})") \
            from None
    numbered = [(i, x) for i, x in enumerate(lines, 1) if x.strip()]
    records = []
    for pos, (i, line) in enumerate(numbered):
        try:
            rec = json.loads(line)
            if not isinstance(rec, dict) or not isinstance(rec.get("valid"), dict):
                raise ValueError("not an epoch record")
        except ValueError as exc:
            if pos == len(numbered) - 1 and isinstance(exc, json.JSONDecodeError):
                warnings.warn(f"{path}, line {i}: cut off (the run was interrupted?); skipped",
                              stacklevel=2)
                continue
            raise CheckpointError(f"{path}, line {i}: not an epoch record ({exc})") from None
        records.append(rec)
    return records


def append_log(run_dir: Path, record: dict[str, Any]) -> None:
    storage.append_text(Path(run_dir) / LOG, json.dumps(record) + "\n")


def truncate_log(run_dir: Path, epoch: float) -> None:
    """Keep the log lines of the epochs up to ``epoch``, drop any later ones."""
    kept = [json.dumps(r) for r in read_log(run_dir) if r.get("epoch", math.inf) <= epoch]
    storage.atomic_write_text(Path(run_dir) / LOG, "".join(f"{x}\n" for x in kept))


def clear_log(run_dir: Path) -> None:
    storage.remove(Path(run_dir) / LOG)


# ---------------------------------------------------------------------------- data
def write_data_record(run_dir: Path, data_path: str | Path) -> None:
    storage.write_json(Path(run_dir) / DATA_RECORD, fingerprint(data_path))


def read_data_record(run_dir: Path) -> dict[str, Any] | None:
    """The run's ``data.json``, or None when it has none."""
    path = Path(run_dir) / DATA_RECORD
    return storage.read_json(path) if path.is_file() else None


def warn_if_data_changed(run_dir: Path, dataset: Dataset) -> None:
    """Warn when the dataset's files differ from those the run was trained on."""
    record = Path(run_dir) / DATA_RECORD
    if dataset.path is None or not record.is_file():
        return
    saved = storage.read_json(record)
    diff = changed_files(saved, fingerprint(dataset.path))
    if diff:
        warnings.warn(f"{dataset.path}: the data changed since run {run_dir} was trained "
                      f"({', '.join(diff)}); its results may not be reproducible", stacklevel=2)


# ---------------------------------------------------------------------------- checkpoints
def save_checkpoint(run_dir: Path, state: dict[str, Any]) -> None:
    storage.save_torch(Path(run_dir) / CHECKPOINT, state)


def load_checkpoint(run_dir: Path, device: str | torch.device = "cpu") -> dict[str, Any]:
    """The run's ``checkpoint.pt``; a finished run whose checkpoint was not kept is an error
    saying so."""
    run_dir = Path(run_dir)
    ckpt = run_dir / CHECKPOINT
    if not ckpt.is_file() and (run_dir / RESULT).is_file():
        raise CheckpointError(f"{run_dir}: the run has finished (result.json) and its "
                              f"checkpoint.pt was not kept; there is nothing to resume")
    return storage.load_torch(ckpt, map_location=device)


def remove_checkpoint(run_dir: Path) -> None:
    storage.remove(Path(run_dir) / CHECKPOINT)


def save_best(run_dir: Path, epoch: int, model_state: dict[str, Any]) -> None:
    storage.save_torch(Path(run_dir) / BEST, {"epoch": epoch, "model": model_state})


def write_result(run_dir: Path, result: dict[str, Any]) -> None:
    storage.write_json(Path(run_dir) / RESULT, result)


# ---------------------------------------------------------------------------- a run's model
def resolve_device(name: str) -> torch.device:
    if name == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    if name == "cuda" and not torch.cuda.is_available():
        raise ConfigError("device 'cuda' requested but torch sees no CUDA device")
    return torch.device(name)


@contextlib.contextmanager
def isolated_process_state(threads: int, deterministic: bool) -> Iterator[None]:
    """Torch's thread count and deterministic-algorithms flag, and the global RNGs of Python,
    numpy and torch, as they were before the block: a library call leaves them unchanged."""
    saved_threads = torch.get_num_threads()
    saved_det = torch.are_deterministic_algorithms_enabled()
    saved_warn = torch.is_deterministic_algorithms_warn_only_enabled()
    saved_py, saved_np = random.getstate(), np.random.get_state()
    saved_torch = torch.get_rng_state()
    saved_cuda = torch.cuda.get_rng_state_all() if torch.cuda.is_initialized() else None
    torch.set_num_threads(threads)
    # without it, the backward of a gather with repeated indices (every batch repeats users)
    # sums in thread order and reruns differ in the last bits
    torch.use_deterministic_algorithms(deterministic, warn_only=True)
    try:
        yield
    finally:
        torch.set_num_threads(saved_threads)
        torch.use_deterministic_algorithms(saved_det, warn_only=saved_warn)
        random.setstate(saved_py)
        np.random.set_state(saved_np)
        torch.set_rng_state(saved_torch)
        if saved_cuda is not None:
            torch.cuda.set_rng_state_all(saved_cuda)


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


def build_model(config: RunConfig, dataset: Dataset, device: torch.device) -> Recommender:
    cls = get_model_class(config.model)
    inputs = build_inputs(dataset, device, config.train.sparse_format)
    return cls(config.params, inputs).to(device)


@dataclass
class LoadedRun:
    """A finished (or interrupted) run's config, data and best model, ready to score."""

    config: RunConfig
    dataset: Dataset
    model: Recommender
    best_epoch: int
    run_dir: Path

    def embeddings(self) -> tuple[torch.Tensor, torch.Tensor]:
        """The best model's final user and item tables (detached, no gradient)."""
        return self.model.final_embeddings()


def load_run(
    run_dir: str | Path, data: str | Path | Dataset | None = None, device: str = "cpu"
) -> LoadedRun:
    """Rebuild the model of ``run_dir`` with the weights of its best validation epoch."""
    run_dir = Path(run_dir)
    config = read_config(run_dir)
    if isinstance(data, Dataset):
        dataset = data
    else:
        source = data if data is not None else config.data
        if source is None:
            raise CheckpointError(f"{run_dir}: the run does not record its data; pass --data")
        if not Path(source).exists():
            raise DataError(f"{source}: the run's dataset directory does not exist "
                            f"(pass --data to point at it)")
        dataset = load_dataset(source)
        warn_if_data_changed(run_dir, dataset)
    dataset = prepare_dataset(config, dataset)
    dev = resolve_device(device)
    # building draws initial weights (then replaced by best.pt): leave the caller's RNGs as
    # they were
    with isolated_process_state(torch.get_num_threads(),
                                torch.are_deterministic_algorithms_enabled()):
        torch.manual_seed(config.train.seed)
        model = build_model(config, dataset, dev)
    best = storage.load_torch(run_dir / BEST, map_location=dev)
    try:
        model.load_state_dict(best["model"])
        epoch = int(best["epoch"])
    except (KeyError, TypeError, RuntimeError) as exc:
        raise CheckpointError(f"{run_dir / 'best.pt'}: does not match model "
                              f"{config.model!r} ({str(exc).splitlines()[0]})") from None
    return LoadedRun(config, dataset, model, epoch, run_dir)
