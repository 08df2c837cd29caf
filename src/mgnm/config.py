"""Run configuration: training settings plus one model's typed hyperparameters.

Users write configs flat, as MMRec does (``reg_weight: 1e-4``, ``--set n_layers=2``); each
key belongs either to :class:`TrainConfig` or to the chosen model's config, and a key that
belongs to neither is an error that names it and lists the valid ones. Sources are merged
in order: defaults < the model's training defaults < preset < config file < ``--set``.
"""

from __future__ import annotations

import difflib
from importlib import resources
from pathlib import Path
from typing import Any, Literal, get_args, get_origin

import yaml
from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator, model_validator

from mgnm.errors import ConfigError
from mgnm.evaluation.metrics import ACCURACY, known_metrics
from mgnm.models import ModelConfig, get_model_class


class TrainConfig(BaseModel):
    """Settings of the shared trainer and evaluator (docs/protocol.md)."""

    model_config = ConfigDict(extra="forbid", frozen=True, validate_default=True)

    epochs: int = Field(1000, gt=0, description="maximum number of training epochs")
    batch_size: int = Field(2048, gt=0, description="training (user, item) pairs per batch")
    learning_rate: float = Field(1e-3, gt=0, description="Adam's learning rate")
    lr_decay: float = Field(1.0, gt=0, le=1, description="gamma of lr_e = lr * gamma^(e/T)")
    lr_decay_epochs: float = Field(50.0, gt=0, description="T of lr_e = lr * gamma^(e/T)")
    patience: int = Field(20, ge=0, description="stop after more than this many epochs "
                                                "without a strict validation improvement")
    valid_metric: str = Field("recall@20", description="the early-stopping metric")
    topk: tuple[int, ...] = Field((5, 10, 20, 50), description="cut-offs K of every metric")
    metrics: tuple[str, ...] = Field(
        tuple(known_metrics()), description="metrics computed at every K (default: all; "
                                            "docs/evaluation.md)")
    eval_batch_size: int = Field(4096, gt=0, description="users per evaluation batch")
    seed: int = Field(999, ge=0, description="seeds initial weights, sampling and noise")
    device: Literal["auto", "cpu", "cuda"] = Field("auto", description="auto = cuda when "
                                                                     "torch sees one")
    sparse_format: Literal["auto", "csr", "coo"] = Field(
        "auto", description="sparse graph layout (auto: CSR on CPU, COO on CUDA)")
    deterministic: bool = Field(True, description="torch's deterministic algorithms (bit-identical "
                                                  "reruns and resumes; gathers with repeated "
                                                  "indices otherwise sum in thread order)")
    modalities: tuple[str, ...] | None = Field(
        None, description="feature files to use, by name (default: every *_feat.npy)"
    )
    threads: int = Field(
        1, ge=1, description="torch CPU threads while training and evaluating; a fixed number "
                             "(not guessed from the machine) so reruns and resumes are "
                             "bit-identical; see README, Performance, before raising it")
    keep_checkpoint: bool = Field(True, description="keep checkpoint.pt once the run has "
                                                    "finished (false deletes it; best.pt and "
                                                    "result.json stay)")
    stop_window: int = Field(1, ge=1, description="early stopping watches the moving average "
                                                  "of the validation metric over this many "
                                                  "epochs (1 = the raw curve); the best epoch "
                                                  "is still chosen on the raw curve")
    tracking: Literal["mlflow", "tensorboard"] | None = Field(
        None, description="send the run to MLflow or TensorBoard as it trains (extra 'track'; "
                          "docs/tracking.md); how a run is watched, not what it computes")

    @field_validator("topk")
    @classmethod
    def _positive_sorted(cls, v: tuple[int, ...]) -> tuple[int, ...]:
        if not v or any(k <= 0 for k in v):
            raise ValueError("topk must be a non-empty list of positive integers")
        return tuple(sorted(set(v)))

    @field_validator("valid_metric")
    @classmethod
    def _metric_name(cls, v: str) -> str:
        name, _, k = v.partition("@")
        if name not in ACCURACY or not k.isdigit():
            raise ValueError(f"valid_metric must look like recall@20 ({', '.join(ACCURACY)}, "
                             f"then @K)")
        return v

    @field_validator("metrics", mode="before")
    @classmethod
    def _metric_list(cls, v: Any) -> Any:
        if isinstance(v, str):
            v = [s.strip() for s in v.split(",") if s.strip()]
        if isinstance(v, (list, tuple)):
            known = known_metrics()
            for m in v:
                if m not in known:
                    raise ValueError(f"unknown metric {m!r}; known metrics: {', '.join(known)}")
            if not v:
                raise ValueError(f"give at least one metric ({', '.join(known)})")
        return v

    @model_validator(mode="after")
    def _valid_metric_computed(self) -> TrainConfig:
        name = self.valid_metric.partition("@")[0]
        if name not in self.metrics:
            raise ValueError(f"valid_metric {self.valid_metric!r} needs {name!r} in metrics "
                             f"(metrics = {', '.join(self.metrics)})")
        return self

    @field_validator("threads", mode="before")
    @classmethod
    def _null_threads(cls, v: Any) -> Any:
        return 1 if v is None else v  # run directories written while null meant "default"

    @field_validator("tracking", mode="before")
    @classmethod
    def _none_tracking(cls, v: Any) -> Any:
        return None if isinstance(v, str) and v.lower() == "none" else v

    @field_validator("modalities", mode="before")
    @classmethod
    def _str_to_list(cls, v: Any) -> Any:
        if isinstance(v, str):
            return [s.strip() for s in v.split(",") if s.strip()]
        return v


class RunConfig(BaseModel):
    """Everything that defines one run: the model, its hyperparameters and the trainer's."""

    model_config = ConfigDict(frozen=True, arbitrary_types_allowed=True)

    model: str
    data: str | None = None
    train: TrainConfig
    params: ModelConfig

    def flat(self) -> dict[str, Any]:
        """The resolved config as one flat mapping (what ``config.yaml`` holds)."""
        out: dict[str, Any] = {"model": self.model, "data": self.data}
        out.update(self.train.model_dump(mode="json"))
        out.update(self.params.model_dump(mode="json"))
        return out

    def replace(self, **overrides: Any) -> RunConfig:
        """A copy with some flat keys changed (validated like any other source)."""
        flat = self.flat()
        flat.update(overrides)
        return resolve_config(flat)


def train_keys() -> set[str]:
    return set(TrainConfig.model_fields)


def _type_name(annotation: Any) -> str:
    if get_origin(annotation) is Literal:
        return "|".join(str(a) for a in get_args(annotation))
    text = str(annotation) if get_args(annotation) else getattr(annotation, "__name__", "?")
    return text.replace("typing.", "").replace("NoneType", "None")


def describe_keys(model_cls: Any) -> dict[str, list[tuple[str, str, str, str]]]:
    """``{"model keys": [(key, type, default, description)], "training keys": [...]}``:
    every config key a model accepts, its training defaults applied (``mgnm models NAME``)."""
    overrides = getattr(model_cls, "train_defaults", {})

    def rows(cls: type[BaseModel], defaults: dict[str, Any]) -> list[tuple[str, str, str, str]]:
        out = []
        for key, f in cls.model_fields.items():
            default = defaults.get(key, f.default)
            out.append((key, _type_name(f.annotation), repr(default) if isinstance(default, str)
                        else str(default), f.description or ""))
        return out

    return {f"{model_cls.name} keys": rows(model_cls.Config, {}),
            "training keys": rows(TrainConfig, overrides)}


def resolve_config(*sources: dict[str, Any], model: str | None = None) -> RunConfig:
    """Merge flat config mappings (later wins) into a validated :class:`RunConfig`.

    The model name comes from ``model`` or from a source's ``model`` key.
    """
    merged: dict[str, Any] = {}
    for src in sources:
        merged.update(src)
    if model is not None:
        merged["model"] = model
    name = merged.pop("model", None)
    if not name:
        raise ConfigError("no model given (use --model NAME or a 'model:' key in the config)")
    cls = get_model_class(str(name))
    data = merged.pop("data", None)
    base = dict(cls.train_defaults)
    base.update(merged)
    merged = base
    tkeys, mkeys = train_keys(), set(cls.Config.model_fields)
    unknown = sorted(k for k in merged if k not in tkeys and k not in mkeys)
    if unknown:
        valid = sorted(tkeys | mkeys)
        msgs = []
        for k in unknown:
            close = difflib.get_close_matches(k, valid, n=1)
            msgs.append(f"{k!r}" + (f" (did you mean {close[0]!r}?)" if close else ""))
        raise ConfigError(
            f"unknown config key {', '.join(msgs)} for model {name!r}; valid keys: "
            f"{', '.join(valid)}"
        )
    train = _validate(TrainConfig, {k: v for k, v in merged.items() if k in tkeys}, name)
    params = _validate(cls.Config, {k: v for k, v in merged.items() if k in mkeys}, name)
    return RunConfig(model=str(name), data=None if data is None else str(data), train=train,
                     params=params)


def _validate(cls: type[BaseModel], values: dict[str, Any], model: str) -> Any:
    try:
        return cls(**values)
    except ValidationError as exc:
        lines = []
        for err in exc.errors():
            if not err["loc"]:  # a rule across keys (a model validator): its message names them
                lines.append(err["msg"].removeprefix("Value error, "))
                continue
            key = ".".join(str(p) for p in err["loc"])
            lines.append(f"config key {key!r} = {values.get(err['loc'][0])!r}: {err['msg']}")
        raise ConfigError(f"invalid config for model {model!r}: " + "; ".join(lines)) from None


def parse_set(items: list[str] | tuple[str, ...]) -> dict[str, Any]:
    """``["k=v", ...]`` from ``--set`` into a mapping; values are parsed as YAML scalars/lists."""
    out: dict[str, Any] = {}
    for item in items:
        key, sep, raw = item.partition("=")
        key = key.strip()
        if not sep or not key:
            raise ConfigError(f"--set {item!r}: expected key=value")
        try:
            out[key] = yaml.safe_load(raw) if raw.strip() else None
        except yaml.YAMLError:
            out[key] = raw
    return out


def load_config_file(path: str | Path) -> dict[str, Any]:
    """A flat YAML mapping from a file, with errors that name the file."""
    p = Path(path)
    try:
        text = p.read_text(encoding="utf-8")
    except FileNotFoundError:
        raise ConfigError(f"{p}: config file does not exist") from None
    except (OSError, UnicodeDecodeError) as exc:
        raise ConfigError(f"{p}: cannot read config file ({exc})") from None
    return _parse_yaml_mapping(text, str(p))


def _parse_yaml_mapping(text: str, where: str) -> dict[str, Any]:
    try:
        data = yaml.safe_load(text)
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None)
        at = f", line {mark.line + 1}" if mark is not None else ""
        raise ConfigError(f"{where}{at}: not valid YAML ({getattr(exc, 'problem', exc)})") \
            from None
    if data is None:
        return {}
    if not isinstance(data, dict):
        raise ConfigError(f"{where}: expected a mapping of config keys, got {type(data).__name__}")
    return {str(k): v for k, v in data.items()}


def flat_sources(preset: str | None = None, config_file: str | Path | None = None,
                 sets: list[str] | tuple[str, ...] = ()) -> dict[str, Any]:
    """Flat keys from a preset, then a config file, then ``--set`` items (later wins)."""
    merged: dict[str, Any] = {}
    if preset:
        merged.update(load_preset(preset))
    if config_file:
        merged.update(load_config_file(config_file))
    merged.update(parse_set(sets))
    return merged


def preset_names() -> list[str]:
    root = resources.files("mgnm") / "configs"
    return sorted(p.name[:-5] for p in root.iterdir() if p.name.endswith(".yaml"))


def load_preset(name: str) -> dict[str, Any]:
    """A named preset shipped with the package (``mgnm presets`` lists them)."""
    names = preset_names()
    if name not in names:
        close = difflib.get_close_matches(name, names, n=1)
        hint = f" (did you mean {close[0]!r}?)" if close else ""
        raise ConfigError(f"unknown preset {name!r}{hint}; presets: {', '.join(names)}")
    res = resources.files("mgnm") / "configs" / f"{name}.yaml"
    return _parse_yaml_mapping(res.read_text(encoding="utf-8"), f"preset {name}")
