"""Search-space files for ``mgnm tune``.

A space file is a YAML mapping from config keys to one of::

    learning_rate: {low: 1.0e-4, high: 1.0e-2, log: true}   # float range (log scale)
    n_layers: {low: 1, high: 4}                               # int range (both ends ints)
    dropout: {low: 0.0, high: 0.5, step: 0.1}                 # stepped range
    purifier: {choices: [true, false]}                        # choice
    purifier_hidden: {choices: [32, 64], when: {purifier: true}}  # conditional

``when`` makes a key conditional: it is searched only in trials where each named key (an
earlier key of the space, or the base config) has the given value (or one of a list of
values); otherwise the key keeps its base value.

``modalities: {subsets: drop-one}`` searches the modalities themselves: all of the dataset's
(or of the base config's ``modalities``), or all but one, each choice a comma-separated
string (what config key ``modalities`` accepts).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from mgnm.config import load_config_file, resolve_config
from mgnm.errors import ConfigError

_FIELDS = {"low", "high", "log", "step", "choices", "when", "subsets"}
#: the values of field ``subsets`` (of key ``modalities`` only)
SUBSETS = ("drop-one",)


@dataclass(frozen=True)
class Param:
    name: str
    choices: tuple[Any, ...] | None = None
    low: float | int | None = None
    high: float | int | None = None
    log: bool = False
    step: float | int | None = None
    when: dict[str, tuple[Any, ...]] = field(default_factory=dict)

    @property
    def is_int(self) -> bool:
        return self.choices is None and all(
            isinstance(v, int) and not isinstance(v, bool) for v in (self.low, self.high))

    def grid_values(self) -> list[Any]:
        """Every value of this key, for the grid sampler (choices or an int/stepped range)."""
        if self.choices is not None:
            return list(self.choices)
        if self.is_int and not self.log:
            return list(range(int(self.low), int(self.high) + 1, int(self.step or 1)))
        if self.step:
            n = int(round((self.high - self.low) / self.step))
            return [self.low + i * self.step for i in range(n + 1)]
        raise ConfigError(f"space key {self.name!r}: the grid sampler needs choices, an int "
                          f"range or a step")

    def active(self, values: dict[str, Any]) -> bool:
        return all(values.get(k) in vs for k, vs in self.when.items())

    def suggest(self, trial: Any) -> Any:
        if self.choices is not None:
            return trial.suggest_categorical(self.name, list(self.choices))
        if self.is_int:
            return trial.suggest_int(self.name, int(self.low), int(self.high),
                                     step=int(self.step or 1), log=self.log)
        return trial.suggest_float(self.name, float(self.low), float(self.high),
                                   step=self.step, log=self.log)


def _number(v: Any, where: str) -> float | int:
    if isinstance(v, bool) or not isinstance(v, (int, float, str)):
        raise ConfigError(f"{where}: expected a number, got {v!r}")
    if isinstance(v, str):
        try:
            return float(v)  # YAML 1.1 reads 1e-3 (no dot) as a string
        except ValueError:
            raise ConfigError(f"{where}: expected a number, got {v!r}") from None
    return v


def modality_subsets(modalities: list[str]) -> list[str]:
    """All ``modalities``, then each with one left out (none for a single one), as the
    comma-separated strings config key ``modalities`` accepts."""
    subsets = [",".join(modalities)]
    if len(modalities) > 1:
        subsets += [",".join(m for m in modalities if m != drop) for drop in modalities]
    return subsets


def parse_space(raw: dict[str, Any], where: str,
                modalities: list[str] | None = None) -> list[Param]:
    """Validate a space mapping (``where`` names its file in errors); ``modalities`` are the
    dataset's, for a ``subsets`` key."""
    if not raw:
        raise ConfigError(f"{where}: the search space is empty")
    params = []
    for name, spec in raw.items():
        at = f"{where}, key {name!r}"
        if not isinstance(spec, dict):
            spec = {"choices": spec} if isinstance(spec, list) else None
            if spec is None:
                raise ConfigError(f"{at}: expected {{low, high[, log, step]}}, {{choices}} or a "
                                  f"list of choices")
        unknown = sorted(set(spec) - _FIELDS)
        if unknown:
            raise ConfigError(f"{at}: unknown field {unknown[0]!r} (fields: "
                              f"{', '.join(sorted(_FIELDS))})")
        when = spec.get("when") or {}
        if not isinstance(when, dict):
            raise ConfigError(f"{at}: 'when' must be a mapping of key: value")
        when = {str(k): tuple(v) if isinstance(v, list) else (v,) for k, v in when.items()}
        if "subsets" in spec:
            if name != "modalities" or spec["subsets"] not in SUBSETS or set(spec) - {
                    "subsets", "when"}:
                raise ConfigError(f"{at}: 'subsets' is for key 'modalities' only, alone, with "
                                  f"value {' or '.join(SUBSETS)}")
            if not modalities:
                raise ConfigError(f"{at}: 'subsets' needs a dataset with *_feat.npy modalities")
            params.append(Param(name, choices=tuple(modality_subsets(modalities)), when=when))
            continue
        if "choices" in spec:
            choices = spec["choices"]
            if not isinstance(choices, list) or not choices or set(spec) & {"low", "high"}:
                raise ConfigError(f"{at}: 'choices' must be a non-empty list (without low/high)")
            params.append(Param(name, choices=tuple(choices), when=when))
            continue
        if "low" not in spec or "high" not in spec:
            raise ConfigError(f"{at}: give 'low' and 'high', or 'choices'")
        low, high = _number(spec["low"], f"{at}, low"), _number(spec["high"], f"{at}, high")
        step = None if spec.get("step") is None else _number(spec["step"], f"{at}, step")
        log = bool(spec.get("log", False))
        if not low < high or (log and low <= 0) or (step is not None and step <= 0):
            raise ConfigError(f"{at}: need low < high (and low > 0 with log, step > 0)")
        if log and step is not None:
            raise ConfigError(f"{at}: 'log' and 'step' cannot be combined")
        params.append(Param(name, low=low, high=high, log=log, step=step, when=when))
    return params


def load_space(path: str | Path, model: str, base: dict[str, Any]) -> list[Param]:
    """Read and check a space file: every key must be a config key of ``model`` and the
    lowest (first) value of every key must give a valid config."""
    params = parse_space(load_config_file(path), str(path), dataset_modalities(base))
    trial = {p.name: (p.choices[0] if p.choices is not None else p.low) for p in params}
    try:
        resolve_config({**base, **trial, "model": model})
    except ConfigError as exc:
        raise ConfigError(f"{path}: {exc}") from None
    names = {p.name for p in params}
    for p in params:
        for k in p.when:
            if k not in names and k not in base and k not in resolve_config(
                    {**base, "model": model}).flat():
                raise ConfigError(f"{path}, key {p.name!r}: 'when' names unknown key {k!r}")
    return params


def dataset_modalities(base: dict[str, Any]) -> list[str]:
    """The base config's ``modalities``, else the dataset's (its ``*_feat.npy`` by name)."""
    mods = base.get("modalities")
    if mods:
        return [m.strip() for m in mods.split(",")] if isinstance(mods, str) else list(mods)
    if base.get("data") is None:
        return []
    return [p.name[: -len("_feat.npy")] for p in sorted(Path(base["data"]).glob("*_feat.npy"))]


def suggest_all(trial: Any, params: list[Param], base: dict[str, Any]) -> dict[str, Any]:
    """The trial's values of the active keys, in file order (conditionals see earlier keys)."""
    values: dict[str, Any] = dict(base)
    chosen: dict[str, Any] = {}
    for p in params:
        if p.active(values):
            chosen[p.name] = values[p.name] = p.suggest(trial)
    return chosen
