"""The README's Layout section names every package and top-level module of src/mgnm, in an
order the import layers allow, and names nothing that is not there."""

from __future__ import annotations

import re
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
PACKAGE = ROOT / "src" / "mgnm"
ENTRY = re.compile(r"^  (\w+)(/|\.py)(?=\s)")


def layout_block() -> list[str]:
    text = (ROOT / "README.md").read_text(encoding="utf-8")
    section = text.split("\n## Layout\n", 1)[1].split("\n## ", 1)[0]
    block = section.split("```", 2)[1]
    return block.splitlines()


def entries() -> list[str]:
    """The top-level names the block lists under src/mgnm/, in order (``data/``, ``api.py``)."""
    return [m.group(1) + m.group(2) for line in layout_block() if (m := ENTRY.match(line))]


def on_disk() -> tuple[set[str], set[str]]:
    """Top-level packages and modules (``data/``, ``api.py``), and nested packages
    (``experiments/runners``)."""
    top = {p.name + "/" for p in PACKAGE.iterdir() if (p / "__init__.py").is_file()}
    top |= {p.name for p in PACKAGE.glob("*.py") if p.name != "__init__.py"}
    nested = {str(p.parent.relative_to(PACKAGE)) for p in PACKAGE.glob("*/*/**/__init__.py")}
    return top, nested


def test_every_package_and_module_is_in_the_layout():
    top, nested = on_disk()
    listed = entries()
    missing = sorted(top - set(listed))
    assert not missing, f"README's Layout section does not list {', '.join(missing)}"
    block = "\n".join(layout_block())
    for path in sorted(nested):  # a subpackage is named in its parent's lines
        assert f"{path.rsplit('/', 1)[-1]}/" in block, f"README's Layout does not name {path}/"


def test_the_layout_names_nothing_that_is_not_there():
    gone = [e for e in entries() if not (PACKAGE / e.rstrip("/")).exists()]
    assert not gone, f"README's Layout lists {', '.join(gone)}, not in src/mgnm"


def test_a_missing_package_is_caught(tmp_path, monkeypatch):
    """The check itself: a package the README does not name is reported by name."""
    fake = tmp_path / "mgnm"
    for name in ("data", "newthing"):
        (fake / name).mkdir(parents=True)
        (fake / name / "__init__.py").write_text("")
    monkeypatch.setattr(__import__(__name__), "PACKAGE", fake)
    top, _ = on_disk()
    assert top == {"data/", "newthing/"}
    assert "newthing/" not in entries() and "data/" in entries()
