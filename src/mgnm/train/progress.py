"""Progress display: a live bar on a terminal, one plain line per epoch otherwise."""

from __future__ import annotations

import sys
from typing import Any, TextIO

from mgnm.train.trainer import Callback, EpochRecord, Result


def _fmt_losses(losses: dict[str, float]) -> str:
    return " ".join(f"{k}={v:.4g}" for k, v in losses.items())


def epoch_line(r: EpochRecord, metric: str = "recall@20") -> str:
    """One epoch: the loss and its weighted terms (they add up to it), validation only (the
    test metrics of the best epoch are shown once, at the end)."""
    star = " *" if r.improved else ""
    return (
        f"epoch {r.epoch:4d}  {_fmt_losses(r.losses)}  valid {metric} {r.valid[metric]:.4f}"
        f"{star}  [{r.train_seconds:.2f}s train, {r.eval_seconds:.2f}s eval]"
    )


class PlainProgress(Callback):
    """One line per epoch, for logs and pipes."""

    def __init__(self, stream: TextIO | None = None, metric: str = "recall@20") -> None:
        self.stream = stream or sys.stderr
        self.metric = metric

    def on_start(self, info: dict[str, Any]) -> None:
        where = f" -> {info['run_dir']}" if info.get("run_dir") else ""
        threads = info.get("threads", "?")
        print(f"training {info['model']} on {info['dataset']} ({info['device']}, "
              f"{threads} thread{'' if threads == 1 else 's'}, {info['params']:,} parameters, "
              f"{info['n_batches']} batch{'' if info['n_batches'] == 1 else 'es'}/epoch){where}",
              file=self.stream, flush=True)

    def on_epoch(self, record: EpochRecord) -> None:
        print(epoch_line(record, self.metric), file=self.stream, flush=True)

    def on_end(self, result: Result) -> None:
        m = self.metric
        print(f"done: best epoch {result.best_epoch} of {result.epochs_run}; test "
              f"{m} {result.test.get(m, float('nan')):.4f}", file=self.stream, flush=True)


class RichProgress(Callback):
    """A live progress bar (epochs and batches) with the latest metrics, for terminals."""

    def __init__(self, metric: str = "recall@20") -> None:
        from rich.console import Console
        from rich.progress import (
            BarColumn,
            MofNCompleteColumn,
            Progress,
            TextColumn,
            TimeElapsedColumn,
        )

        self.console = Console(stderr=True)
        self.metric = metric
        self.progress = Progress(
            TextColumn("[bold]{task.description}"), BarColumn(), MofNCompleteColumn(),
            TimeElapsedColumn(), TextColumn("{task.fields[status]}"), console=self.console,
            transient=False,
        )
        self._epoch_task = self._batch_task = None

    def on_start(self, info: dict[str, Any]) -> None:
        self.console.print(f"training [bold]{info['model']}[/] on {info['dataset']} "
                           f"({info['device']}, {info['params']:,} parameters)"
                           + (f" -> {info['run_dir']}" if info.get("run_dir") else ""))
        self.progress.start()
        self._epoch_task = self.progress.add_task(
            "epochs", total=info["max_epochs"], completed=info["start_epoch"], status="")
        self._batch_task = self.progress.add_task("batches", total=info["n_batches"],
                                                  status="")

    def on_batch(self, epoch: int, batch: int, n_batches: int) -> None:
        self.progress.update(self._batch_task, completed=batch + 1, total=n_batches)

    def on_epoch(self, record: EpochRecord) -> None:
        m = self.metric
        status = (f"loss {record.losses.get('loss', float('nan')):.4f}  valid {m} "
                  f"{record.valid[m]:.4f}  best {record.best_valid:.4f} @ {record.best_epoch}")
        self.progress.update(self._epoch_task, completed=record.epoch, status=status)
        self.progress.update(self._batch_task, completed=0)
        if record.improved:
            self.progress.console.print(epoch_line(record, m), style="dim")

    def on_end(self, result: Result) -> None:
        self.progress.stop()
        m = self.metric
        self.console.print(f"done: best epoch {result.best_epoch} of {result.epochs_run}; "
                           f"test {m} {result.test.get(m, float('nan')):.4f}")


def default_progress(metric: str = "recall@20", quiet: bool = False) -> list[Callback]:
    if quiet:
        return []
    if sys.stderr.isatty():
        return [RichProgress(metric)]
    return [PlainProgress(metric=metric)]
