"""Typed configs: unknown keys and bad values are errors naming the key; merging order."""

from __future__ import annotations

import pytest

from mgnm.config import (
    TrainConfig,
    load_config_file,
    load_preset,
    parse_set,
    preset_names,
    resolve_config,
)
from mgnm.errors import ConfigError
from mgnm.models import MODELS


def test_defaults_follow_the_protocol():
    cfg = resolve_config({"model": "lightgcn"})
    t = cfg.train
    assert (t.batch_size, t.learning_rate, t.patience, t.valid_metric) == (2048, 1e-3, 20,
                                                                           "recall@20")
    assert t.topk == (5, 10, 20, 50) and cfg.params.embedding_size == 64


def test_misspelt_key_names_it_suggests_and_lists_valid_keys():
    with pytest.raises(ConfigError) as info:
        resolve_config({"model": "lightgcn", "n_layer": 3})
    msg = str(info.value)
    assert "'n_layer'" in msg and "did you mean 'n_layers'" in msg and "reg_weight" in msg


def test_out_of_range_and_wrong_type_name_the_key():
    with pytest.raises(ConfigError, match=r"'reg_weight' = -1.0.*greater than or equal to 0"):
        resolve_config({"model": "bpr", "reg_weight": -1.0})
    with pytest.raises(ConfigError, match=r"'batch_size' = 'big'"):
        resolve_config({"model": "bpr", "batch_size": "big"})
    with pytest.raises(ConfigError, match=r"'valid_metric'"):
        resolve_config({"model": "bpr", "valid_metric": "auc"})


def test_unknown_model_lists_models():
    with pytest.raises(ConfigError, match=r"unknown model 'lightgnc'.*known models: bpr"):
        resolve_config({"model": "lightgnc"})


def test_later_sources_win_and_scientific_strings_coerce():
    cfg = resolve_config({"model": "bpr", "reg_weight": "1e-4"}, {"reg_weight": 0.5},
                         parse_set(["learning_rate=1e-2", "topk=[20, 5]"]))
    assert cfg.params.reg_weight == 0.5 and cfg.train.learning_rate == 0.01
    assert cfg.train.topk == (5, 20)
    assert cfg.replace(seed=3).train.seed == 3


def test_parse_set_errors():
    with pytest.raises(ConfigError, match="expected key=value"):
        parse_set(["reg_weight"])
    assert parse_set(["modalities=image,audio"]) == {"modalities": "image,audio"}
    cfg = resolve_config({"model": "bpr"}, parse_set(["modalities=image,audio"]))
    assert cfg.train.modalities == ("image", "audio")


@pytest.mark.parametrize("name", list(MODELS))
def test_model_keys_never_shadow_training_keys(name):
    overlap = set(MODELS[name].Config.model_fields) & set(TrainConfig.model_fields)
    assert not overlap, f"{name}: keys in both configs: {overlap}"


@pytest.mark.parametrize("name", list(MODELS))
def test_every_model_grid_names_real_keys(name):
    cls = MODELS[name]
    valid = set(cls.Config.model_fields) | set(TrainConfig.model_fields)
    assert set(cls.grid) <= valid


def test_config_file_errors(tmp_path):
    p = tmp_path / "c.yaml"
    p.write_text("reg_weight: [1, 2\n")
    with pytest.raises(ConfigError, match=r"c.yaml, line \d+: not valid YAML"):
        load_config_file(p)
    p.write_text("- a\n- b\n")
    with pytest.raises(ConfigError, match="expected a mapping"):
        load_config_file(p)
    with pytest.raises(ConfigError, match="does not exist"):
        load_config_file(tmp_path / "missing.yaml")


def test_presets_resolve():
    for name in preset_names():
        flat = load_preset(name)
        resolve_config(flat, model=flat.get("model", "bpr"))
    with pytest.raises(ConfigError, match="unknown preset"):
        load_preset("no-such-preset")
