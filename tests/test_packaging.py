"""The distribution states two licences: MIT for the code, GroupLens' terms for the demo data.

Checked on the source tree (the files exist, pyproject names them) and on the metadata that
setuptools actually writes for a wheel, built from a copy of the project's metadata files.
"""

from __future__ import annotations

import email
import shutil
import subprocess
import sys
import tomllib
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
DEMO = ROOT / "src" / "mgnm" / "datasets" / "movielens"
LICENCE_FILES = ("LICENSE", "LICENSE-DATA.md")


def _project() -> dict:
    return tomllib.loads((ROOT / "pyproject.toml").read_text(encoding="utf-8"))["project"]


def test_licence_files_exist_and_say_what_they_cover() -> None:
    code = (ROOT / "LICENSE").read_text(encoding="utf-8")
    data = (ROOT / "LICENSE-DATA.md").read_text(encoding="utf-8")
    assert code.startswith("MIT License")
    assert "LICENSE-DATA.md" in code  # the MIT file points away from the data
    assert "GroupLens" in data and "mgnm/datasets/movielens/" in data
    assert "https://doi.org/10.1145/2827872" in data  # the citation the terms ask for
    # the data directory the notice speaks of is the one the package ships, with its README
    assert (DEMO / "movielens.inter").is_file()
    assert "GroupLens" in (DEMO / "README.md").read_text(encoding="utf-8")


def test_pyproject_declares_both_licences_and_ships_the_files() -> None:
    project = _project()
    expression = project["license"]
    assert isinstance(expression, str), "license must be an SPDX expression, not a table"
    assert set(expression.split(" AND ")) == {"MIT", "LicenseRef-MovieLens"}
    assert set(project["license-files"]) == set(LICENCE_FILES)
    for name in project["license-files"]:
        assert (ROOT / name).is_file(), name
    package_data = tomllib.loads((ROOT / "pyproject.toml").read_text())["tool"]["setuptools"][
        "package-data"]["mgnm"]
    assert "datasets/*/*" in package_data  # the demo data and its README go into the wheel


def test_wheel_metadata_names_the_expression_and_the_files(tmp_path: Path) -> None:
    """setuptools' own metadata for a wheel, from a copy (nothing is written into the repo)."""
    src = tmp_path / "proj"
    (src / "src" / "mgnm").mkdir(parents=True)
    for name in ("pyproject.toml", "README.md", *LICENCE_FILES):
        shutil.copy(ROOT / name, src / name)
    (src / "src" / "mgnm" / "__init__.py").write_text("")
    out = tmp_path / "meta"
    out.mkdir()
    code = ("import sys; from setuptools import build_meta as b; "
            "print(b.prepare_metadata_for_build_wheel(sys.argv[1]))")
    proc = subprocess.run([sys.executable, "-c", code, str(out)], cwd=src, capture_output=True,
                          text=True, timeout=120)
    assert proc.returncode == 0, proc.stderr[-2000:]
    dist_info = out / proc.stdout.strip().splitlines()[-1]
    meta = email.message_from_string((dist_info / "METADATA").read_text(encoding="utf-8"))
    assert meta["License-Expression"] == "MIT AND LicenseRef-MovieLens"
    assert sorted(meta.get_all("License-File")) == sorted(LICENCE_FILES)
    for name in LICENCE_FILES:
        assert (dist_info / "licenses" / name).read_bytes() == (ROOT / name).read_bytes()


def test_sdist_manifest_carries_the_documents() -> None:
    """The README links to docs/*.md: the source distribution must carry them."""
    lines = [ln.split() for ln in (ROOT / "MANIFEST.in").read_text().splitlines()
             if ln.strip() and not ln.startswith("#")]
    assert ["graft", "docs"] in lines
    assert any(ln[0] == "include" and set(LICENCE_FILES) <= set(ln[1:]) for ln in lines)
    assert any((ROOT / "docs").glob("*.md"))
