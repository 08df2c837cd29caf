"""Figures of runs: learning curves (``mgnm plot``, an experiment's ``curves.png``, the
picture a tracker is sent), and the helpers every figure of mgnm is drawn and written with.
Needs matplotlib (``pip install 'mgnm[plot]'``)."""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import Any

import yaml

from mgnm import runs
from mgnm.errors import ConfigError, MgnmError


def figure(width: float, height: float) -> Any:
    """A matplotlib figure that pyplot does not hold: no process-wide figure registry, so
    a plot can be drawn in any thread (a tracker's sends the learning curves)."""
    try:
        from matplotlib.figure import Figure
    except ImportError as exc:
        raise MgnmError("plotting needs matplotlib: pip install 'mgnm[plot]'") from exc
    return Figure(figsize=(width, height))


def _run_metric(run_dir: Path) -> str:
    """The ``valid_metric`` in a run's ``config.yaml`` (recall@20 when unreadable)."""
    try:
        cfg = yaml.safe_load((Path(run_dir) / runs.CONFIG).read_text(encoding="utf-8"))
        return str(cfg["valid_metric"])
    except (OSError, yaml.YAMLError, KeyError, TypeError):
        return "recall@20"


def save_figure(fig: Any, out: Path) -> Path:
    """Write a figure, creating missing directories; OS errors name the path."""
    try:
        out.parent.mkdir(parents=True, exist_ok=True)
        fig.savefig(out, dpi=120)
    except OSError as exc:
        blocker = next((p for p in out.parents if p.exists() and not p.is_dir()), None)
        why = f"{blocker} is a file, not a directory" if blocker else (exc.strerror or exc)
        raise MgnmError(f"{exc.filename or out}: cannot write the plot ({why})") from None
    except ValueError as exc:  # an image format matplotlib does not know
        raise ConfigError(f"{out}: {str(exc).splitlines()[0]}") from None
    return out


def plot_curves(run_dirs: Sequence[Path], out: Path, metric: str | None = None) -> Path:
    """Validation ``metric`` (default: the first run's ``valid_metric``) and training loss
    per epoch of one or more runs, as an image (the suffix of ``out`` names its format)."""
    metric = metric or _run_metric(run_dirs[0])
    logs = [(Path(d), runs.read_log(d, missing_ok=False)) for d in run_dirs]
    for d, recs in logs:
        have = sorted({k for r in recs for k in r["valid"]})
        if recs and metric not in have:
            raise ConfigError(f"metric {metric!r} is not in {d / 'log.jsonl'}; available: "
                              f"{', '.join(have)}")
    fig = figure(10, 4)
    ax1, ax2 = fig.subplots(1, 2)
    for d, recs in logs:
        epochs = [r["epoch"] for r in recs]
        ax1.plot(epochs, [r["valid"][metric] for r in recs], label=d.name)
        ax2.plot(epochs, [r["losses"]["loss"] for r in recs], label=d.name)
    ax1.set(xlabel="epoch", ylabel=f"validation {metric}")
    ax2.set(xlabel="epoch", ylabel="training loss", yscale="log")
    ax1.legend(fontsize=7)
    fig.tight_layout()
    return save_figure(fig, out)
