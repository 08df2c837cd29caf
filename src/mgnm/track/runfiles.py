"""What a tracker is sent about a run, derived from the run's own records.

``log.jsonl`` stays the source of truth: a tracker shows a view of it. The same functions
turn a live :class:`~mgnm.train.trainer.EpochRecord` (as the line it is written as) and a
line read back from the file into the same metrics, so a run sent as it trains and a run
pushed afterwards from its files look the same.

Names: ``train/<term>`` (the loss and its weighted terms), ``valid/<metric>``,
``seconds/train``, ``seconds/eval`` and ``lr`` per epoch; once, at the best epoch,
``test/<metric>`` and ``best_valid/<metric>``. Trackers do not take ``@`` in a metric name,
so ``recall@20`` is sent as ``recall_at_20``.
"""

from __future__ import annotations

import hashlib
import json
import os
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import yaml

from mgnm import runs, storage
from mgnm.errors import CheckpointError

#: Directories a search for run directories does not enter.
SKIP_DIRS = frozenset({"tensorboard", "mlartifacts", "mlruns", "__pycache__"})


def metric_key(name: str) -> str:
    """A metric's name as trackers take it: ``recall@20`` -> ``recall_at_20``."""
    return name.replace("@", "_at_")


def epoch_metrics(record: dict[str, Any]) -> dict[str, float]:
    """The metrics of one epoch record (a ``log.jsonl`` line): losses, validation, seconds."""
    out = {f"train/{k}": float(v) for k, v in record["losses"].items()}
    out.update({f"valid/{metric_key(k)}": float(v) for k, v in record["valid"].items()})
    out["seconds/train"] = float(record["train_seconds"])
    out["seconds/eval"] = float(record["eval_seconds"])
    out["lr"] = float(record["lr"])
    return out


def end_metrics(result: dict[str, Any]) -> dict[str, float]:
    """The test metrics of the best validation epoch, and its validation metrics."""
    out = {f"test/{metric_key(k)}": float(v) for k, v in result["test"].items()}
    out.update({f"best_valid/{metric_key(k)}": float(v) for k, v in result["valid"].items()})
    return out


def param_value(value: Any) -> str:
    """A config value as a tracker parameter: strings as they are, anything else as JSON
    (``null``, ``true``, ``[5, 10, 20, 50]``, ``0.001``)."""
    return value if isinstance(value, str) else json.dumps(value)


def params(config: dict[str, Any]) -> dict[str, str]:
    return {str(k): param_value(v) for k, v in config.items()}


def data_digest(record: dict[str, Any] | None) -> str | None:
    """A short digest of a dataset's file fingerprints (``data.json``), without its path, so
    the same data moved elsewhere has the same digest."""
    if not record or not isinstance(record.get("files"), dict):
        return None
    text = json.dumps(record["files"], sort_keys=True)
    return hashlib.sha256(text.encode("utf-8")).hexdigest()[:12]


def run_key(path: Path | str, suffix: str = "") -> str:
    """How a tracker finds a run again: a digest of its directory's absolute path."""
    text = str(Path(path).resolve()) + suffix
    return hashlib.sha256(text.encode("utf-8")).hexdigest()[:20]


def run_tags(config: dict[str, Any], dataset: str | None, data: dict[str, Any] | None,
             software: dict[str, Any] | None) -> dict[str, str]:
    """Model, dataset, seed, data fingerprint, mgnm version and commit (where known)."""
    tags = {"model": str(config.get("model")), "seed": str(config.get("seed"))}
    if dataset:
        tags["dataset"] = dataset
    digest = data_digest(data)
    if digest:
        tags["data_fingerprint"] = digest
    software = software or {}
    if software.get("mgnm_version"):
        tags["mgnm_version"] = str(software["mgnm_version"])
    if software.get("git_commit"):
        tags["git_commit"] = str(software["git_commit"])
    return tags


def dataset_name(config: dict[str, Any]) -> str | None:
    data = config.get("data")
    return Path(str(data)).name if data else None


@dataclass
class RunFiles:
    """A run directory as its files record it (finished, interrupted or in progress)."""

    run_dir: Path
    config: dict[str, Any]
    epochs: list[dict[str, Any]]
    result: dict[str, Any] | None
    data: dict[str, Any] | None

    @classmethod
    def read(cls, run_dir: Path) -> RunFiles:
        """Read ``config.yaml``, ``log.jsonl``, ``result.json`` and ``data.json``; a
        malformed file is a :class:`CheckpointError` naming it."""
        run_dir = Path(run_dir)
        path = run_dir / runs.CONFIG
        try:
            config = yaml.safe_load(path.read_text(encoding="utf-8"))
        except FileNotFoundError:
            raise CheckpointError(f"{path}: missing (is {run_dir} a run directory?)") from None
        except (OSError, UnicodeDecodeError, yaml.YAMLError) as exc:
            raise CheckpointError(f"{path}: unreadable ({str(exc).splitlines()[0]})") from None
        if not isinstance(config, dict):
            raise CheckpointError(f"{path}: expected a mapping of config keys")
        result = storage.read_json(run_dir / runs.RESULT) if (run_dir / runs.RESULT).is_file() \
            else None
        if result is not None and not (isinstance(result, dict) and "test" in result
                                       and "valid" in result):
            raise CheckpointError(f"{run_dir / runs.RESULT}: not a run result")
        return cls(run_dir, config, runs.read_log(run_dir), result, runs.read_data_record(run_dir))

    @property
    def finished(self) -> bool:
        return self.result is not None

    def tags(self) -> dict[str, str]:
        software = ({k: self.result.get(k) for k in ("mgnm_version", "git_commit")}
                    if self.result else None)
        name = self.result.get("dataset") if self.result else dataset_name(self.config)
        return run_tags(self.config, name, self.data, software)

    def started_ms(self) -> int | None:
        """When the run started, as its ``config.yaml`` was written (milliseconds)."""
        return _mtime_ms(self.run_dir / runs.CONFIG)

    def epoch_times_ms(self) -> list[int]:
        """When each epoch ended, as far as the files tell: the start plus the seconds the
        log records for training and evaluation (time spent elsewhere is not in the log)."""
        t = float(self.started_ms() or 0)
        out = []
        for rec in self.epochs:
            t += 1000 * (float(rec["train_seconds"]) + float(rec["eval_seconds"]))
            out.append(int(t))
        return out

    def ended_ms(self) -> int | None:
        return _mtime_ms(self.run_dir / runs.RESULT) if self.finished else None


def _mtime_ms(path: Path) -> int | None:
    try:
        return int(path.stat().st_mtime * 1000)
    except OSError:
        return None


def is_run_dir(path: Path) -> bool:
    return (path / runs.CONFIG).is_file() and ((path / runs.LOG).is_file()
                                               or (path / runs.RESULT).is_file())


def is_tune_dir(path: Path) -> bool:
    """A ``mgnm tune`` output directory: its trials are the children of its study's run."""
    return (path / "trials").is_dir() and ((path / "tune.json").is_file()
                                           or (path / "study.db").is_file())


def find_run_dirs(root: Path) -> Iterator[Path]:
    """Run directories at or under ``root``, in sorted order (hidden directories, tracker
    output and run directories' insides are not searched)."""
    root = Path(root)
    if is_run_dir(root):
        yield root
        return
    for dirpath, dirnames, _ in os.walk(root):
        here = Path(dirpath)
        if here != root and is_run_dir(here):
            dirnames[:] = []
            yield here
            continue
        dirnames[:] = sorted(d for d in dirnames if not d.startswith(".") and d not in SKIP_DIRS)
