"""The paper's experiments as plans of runs (Tables I, III, IV-VI, and the component ablation).

Each function returns ``(title, specs)``; :func:`mgnm.experiments.report.summarise` turns the
finished runs into the table. Every plan works on any MMRec-format directory and any set of
modalities (the paper's image + text, or TikTok's image + audio).
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import Any

from mgnm.config import load_preset, preset_names
from mgnm.data.dataset import load_dataset
from mgnm.experiments.grid import RunSpec, expand_grid, plan_runs
from mgnm.models import MODELS, get_model_class

#: Table I's columns (the paper's order), then the two models this project adds.
TABLE1_MODELS = ("bpr", "lightgcn", "vbpr", "mmgcn", "dualgnn", "lattice", "bm3", "mgcn",
                 "freedom", "lgmrec", "mgnm")
#: The paper's sensitivity grids (Tables IV-VI): beta with delta fixed, delta with beta fixed.
BETA_GRID = (1e-1, 1e-2, 1e-3, 1e-4, 1e-5)
DELTA_GRID = (1e-2, 1e-3, 1e-4, 1e-5, 1e-6)


def _modalities(data: str | Path, base: dict[str, Any]) -> list[str]:
    mods = base.get("modalities")
    if mods:
        return [m.strip() for m in mods.split(",")] if isinstance(mods, str) else list(mods)
    return load_dataset(data).modalities


def table1(data: str | Path, out: Path, seeds: Sequence[int], base: dict[str, Any],
           models: Sequence[str] = TABLE1_MODELS, use_grid: bool = False,
           preset_suffix: str | None = None) -> tuple[str, list[RunSpec]]:
    """Every model on one dataset; with ``use_grid`` each model's reference grid, the winner
    chosen on validation. With ``preset_suffix`` (e.g. ``tiktok``), each model starts from
    its preset ``<model>-<suffix>`` where one exists; ``base`` still overrides it."""
    specs: list[RunSpec] = []
    presets = set(preset_names())
    for name in models:
        cls = get_model_class(name)
        settings = expand_grid(cls.grid) if use_grid else [{}]
        model_base = {k: v for k, v in base.items()
                      if k in cls.Config.model_fields or k not in _all_model_keys()}
        if preset_suffix and f"{name}-{preset_suffix}" in presets:
            preset = {k: v for k, v in load_preset(f"{name}-{preset_suffix}").items()
                      if k != "model"}
            model_base = {**preset, **model_base}
        specs += plan_runs(name, {**model_base, "data": str(data)}, settings, seeds,
                           out / name, labels=None)
    return "Table I: all models", specs


def _all_model_keys() -> set[str]:
    return {k for cls in MODELS.values() for k in cls.Config.model_fields}


def modality_ablation(data: str | Path, out: Path, seeds: Sequence[int], base: dict[str, Any],
                      model: str = "mgnm") -> tuple[str, list[RunSpec]]:
    """Table III: the model on all modalities and without each one."""
    mods = _modalities(data, base)
    settings = [{"modalities": mods}] + [
        {"modalities": [m for m in mods if m != drop]} for drop in mods]
    labels = [model.upper()] + [f"w/o {drop}" for drop in mods]
    return ("Table III: modalities",
            plan_runs(model, {**base, "data": str(data)}, settings, seeds, out, labels))


def component_ablation(data: str | Path, out: Path, seeds: Sequence[int], base: dict[str, Any]
                       ) -> tuple[str, list[RunSpec]]:
    """MGNM with each component removed: DDR, the purifier, each modality, the global part."""
    mods = _modalities(data, base)
    settings: list[dict[str, Any]] = [{}, {"ddr_weight": 0.0, "ddr_mm_weight": 0.0},
                                      {"purifier": False}]
    labels = ["full", "w/o DDR (beta = delta = 0)", "w/o purifier"]
    if len(mods) > 1:
        for drop in mods:
            settings.append({"modalities": [m for m in mods if m != drop]})
            labels.append(f"w/o {drop}")
    settings.append({"alpha": 0.0})
    labels.append("w/o global (alpha = 0)")
    return ("Ablation of MGNM's components",
            plan_runs("mgnm", {**base, "data": str(data)}, settings, seeds, out, labels))


def sensitivity(data: str | Path, out: Path, seeds: Sequence[int], base: dict[str, Any],
                betas: Sequence[float] = BETA_GRID, deltas: Sequence[float] = DELTA_GRID
                ) -> tuple[str, list[RunSpec]]:
    """Tables IV-VI: beta over its grid with delta fixed, then delta with beta fixed."""
    cfg = get_model_class("mgnm").Config(**{k: v for k, v in base.items()
                                            if k in get_model_class("mgnm").Config.model_fields})
    fixed_delta, fixed_beta = cfg.ddr_mm_weight, cfg.ddr_weight
    settings: list[dict[str, Any]] = []
    labels = []
    for b in betas:
        settings.append({"ddr_weight": float(b), "ddr_mm_weight": fixed_delta})
        labels.append(f"beta={b:g} (delta={fixed_delta:g})")
    for d in deltas:
        s = {"ddr_weight": fixed_beta, "ddr_mm_weight": float(d)}
        if s not in settings:
            settings.append(s)
            labels.append(f"delta={d:g} (beta={fixed_beta:g})")
    return ("Sensitivity to beta and delta",
            plan_runs("mgnm", {**base, "data": str(data)}, settings, seeds, out, labels))


def custom_grid(model: str, data: str | Path, out: Path, seeds: Sequence[int],
                base: dict[str, Any], grid: dict[str, list]) -> tuple[str, list[RunSpec]]:
    """Any grid of any model (selection on validation)."""
    return (f"Grid of {model}",
            plan_runs(model, {**base, "data": str(data)}, expand_grid(grid), seeds, out))


EXPERIMENTS = {
    "table1": table1,
    "modalities": modality_ablation,
    "ablation": component_ablation,
    "sensitivity": sensitivity,
}
