"""The run directories of ``mgnm experiment`` are laid out as the README says:
``OUT/<setting>-<digest>/seed<N>``, and for table1 ``OUT/<model>/<setting>-<digest>/seed<N>``."""

from __future__ import annotations

import re

from mgnm.experiments.sweep import plan


def _relative(specs, out):
    return [spec.run_dir.relative_to(out.absolute()).as_posix() for spec in specs]


def test_table1_puts_each_model_in_its_own_folder(tiny_dir, tmp_path):
    _, specs = plan("table1", tiny_dir, tmp_path / "exp", [1, 2], {},
                    models=["lightgcn", "bpr"])
    paths = _relative(specs, tmp_path / "exp")
    assert len(paths) == 4
    for path, model, seed in zip(paths, ["lightgcn"] * 2 + ["bpr"] * 2, [1, 2, 1, 2],
                                 strict=True):
        assert re.fullmatch(rf"{model}/{model}-[0-9a-f]+/seed{seed}", path), path


def test_a_grid_names_each_setting_by_its_keys(tiny_dir, tmp_path):
    _, specs = plan("grid", tiny_dir, tmp_path / "exp", [3], {}, model="lightgcn",
                    grid={"n_layers": [1, 2]})
    paths = _relative(specs, tmp_path / "exp")
    assert [p.split("-")[0] for p in paths] == ["lightgcn_n_layers=1", "lightgcn_n_layers=2"]
    assert all(re.fullmatch(r"lightgcn_n_layers=[12]-[0-9a-f]+/seed3", p) for p in paths)
