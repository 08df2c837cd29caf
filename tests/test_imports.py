"""Imports flow one way: no import circle between packages or between modules, and no
package imports one of a higher layer. Every import counts, at a module's top or deferred
into a function (a lazy import still ties the two together); ``if TYPE_CHECKING:`` imports
count for the layers but not for module circles (they never run).

The layers, lowest first (a package may import only from lower layers):

     0  errors
     1  storage, datasets
     2  data
     3  models, prepare, evaluation
     4  config
     5  runs
     6  train
     7  plots, predict
     8  api, serve, track
     9  experiments
    10  tune
    11  benchmark
    12  cli

``python scripts/import_graph.py`` prints the package graph this test checks.
"""

from __future__ import annotations

import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "scripts"))
import import_graph as ig  # noqa: E402

LAYERS = [
    {"mgnm.errors"},
    {"mgnm.storage", "mgnm.datasets"},
    {"mgnm.data"},
    {"mgnm.models", "mgnm.prepare", "mgnm.evaluation"},
    {"mgnm.config"},
    {"mgnm.runs"},
    {"mgnm.train"},
    {"mgnm.plots", "mgnm.predict"},
    {"mgnm.api", "mgnm.serve", "mgnm.track"},
    {"mgnm.experiments"},
    {"mgnm.tune"},
    {"mgnm.benchmark"},
    {"mgnm.cli"},
]
TIER = {p: i for i, layer in enumerate(LAYERS) for p in layer}


def layer_violations(src: Path, tier: dict[str, int]) -> list[str]:
    """Each package import that does not go to a lower layer, with the imports behind it."""
    bad = []
    for (a, b), why in sorted(ig.package_edges(src).items()):
        if tier[b] >= tier[a]:
            bad.append(f"{a} (layer {tier[a]}) imports {b} (layer {tier[b]}): {'; '.join(why)}")
    return bad


def packages(src: Path) -> set[str]:
    return {ig.package_of(ig.module_name(p, src)) for p in (src / "mgnm").rglob("*.py")} - {"mgnm"}


def test_every_package_has_a_layer():
    unknown = sorted(packages(ROOT / "src") - set(TIER))
    assert not unknown, f"packages with no layer in tests/test_imports.py: {', '.join(unknown)}"


def test_no_package_circle():
    cycle = ig.find_cycle(ig.package_edges(ROOT / "src"))
    assert cycle is None, "import circle: " + " -> ".join(cycle)


def test_no_module_circle():
    cycle = ig.find_cycle(ig.module_edges(ROOT / "src"))
    assert cycle is None, "import circle: " + " -> ".join(cycle)


def test_no_import_climbs_to_a_higher_layer():
    bad = layer_violations(ROOT / "src", TIER)
    assert not bad, "\n".join(bad)


def test_the_experiment_planner_imports_no_runner():
    """Planning and selecting runs (experiments/grid.py) does not know how they are run."""
    grid = ROOT / "src" / "mgnm" / "experiments" / "grid.py"
    runners = {m for m in ig.imported_modules(grid, ROOT / "src")
               if m.startswith("mgnm.experiments.runners") or m.startswith("mgnm.train")}
    assert not runners, f"experiments/grid.py imports {', '.join(sorted(runners))}"


def test_the_readme_layout_lists_packages_in_layer_order():
    from test_readme_layout import entries

    listed = ["mgnm." + e.removesuffix("/").removesuffix(".py") for e in entries()]
    tiers = [(p, TIER[p]) for p in listed if p in TIER]
    for (p, t), (q, u) in zip(tiers, tiers[1:], strict=False):
        assert t <= u, f"README's Layout lists {p} (layer {t}) before {q} (layer {u})"


def write_tree(root: Path, files: dict[str, str]) -> Path:
    for rel, text in files.items():
        path = root / "mgnm" / rel
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(text)
    return root


@pytest.fixture
def toy(tmp_path):
    """A small package: data (low), train (high); train imports data at the top."""
    return {"__init__.py": "", "data/__init__.py": "", "train/__init__.py": "",
            "data/load.py": "X = 1\n",
            "train/fit.py": "from mgnm.data.load import X\n"}


def test_the_checks_find_a_lazy_upward_import_and_its_circle(tmp_path, toy):
    """The checks themselves, on a toy tree: an import deferred into a function is found,
    named, and closes a circle."""
    toy["data/load.py"] = "def f():\n    from mgnm.train import fit\n    return fit\n"
    src = write_tree(tmp_path, toy)
    tier = {"mgnm.data": 0, "mgnm.train": 1}
    # ``from mgnm.train import fit`` imports the package and its module fit
    assert ig.package_edges(src) == {
        ("mgnm.train", "mgnm.data"): ["mgnm.train.fit -> mgnm.data.load"],
        ("mgnm.data", "mgnm.train"): ["mgnm.data.load -> mgnm.train",
                                      "mgnm.data.load -> mgnm.train.fit"]}
    assert layer_violations(src, tier) == [
        "mgnm.data (layer 0) imports mgnm.train (layer 1): mgnm.data.load -> mgnm.train; "
        "mgnm.data.load -> mgnm.train.fit"]
    cycle = ig.find_cycle(ig.package_edges(src))
    assert cycle is not None and set(cycle) == {"mgnm.data", "mgnm.train"}
    assert cycle[0] == cycle[-1]
    modules = ig.find_cycle(ig.module_edges(src))
    assert modules is not None and set(modules) == {"mgnm.data.load", "mgnm.train.fit"}


def test_relative_imports_and_type_checking_imports(tmp_path, toy):
    toy["train/fit.py"] = "from ..data import load\n"
    toy["data/load.py"] = ("from typing import TYPE_CHECKING\nif TYPE_CHECKING:\n"
                           "    from mgnm.train.fit import Y\n")
    src = write_tree(tmp_path, toy)
    edges = ig.package_edges(src)
    assert edges[("mgnm.train", "mgnm.data")] == ["mgnm.train.fit -> mgnm.data",
                                                  "mgnm.train.fit -> mgnm.data.load"]
    assert ("mgnm.data", "mgnm.train") in edges  # counts for the layers
    assert ig.find_cycle(ig.module_edges(src)) is None  # but never runs: no circle


def test_a_clean_tree_passes(tmp_path, toy):
    src = write_tree(tmp_path, toy)
    assert ig.find_cycle(ig.package_edges(src)) is None
    assert layer_violations(src, {"mgnm.data": 0, "mgnm.train": 1}) == []
