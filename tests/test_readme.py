"""The README and the documents under docs/ are true to the repository.

- every relative link (``[text](target)`` or ``[text](target#anchor)``) resolves to a file
  in the repository, and the anchor to a heading of that file;
- every Markdown document they name in the text (``MGNM-SPEC.md``, ``docs/model.md``) is a
  file of the repository;
- the README's Python API snippet runs, as written, on the bundled demo data.
"""

from __future__ import annotations

import functools
import os
import re
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
DOCS = sorted([ROOT / "README.md", *ROOT.glob("*.md"), *(ROOT / "docs").glob("*.md")])
DOCS = sorted(set(DOCS))

LINK = re.compile(r"\[[^\]]*\]\(([^)\s]+)\)")
NAMED_MD = re.compile(r"(?<![\w/.-])((?:\.\.?/)?[\w./-]*\w\.md)\b")
FENCE = re.compile(r"^```")
OUT_DIR = re.compile(r"--out[ =](\S+)")


def _text(path: Path) -> str:
    return path.read_text(encoding="utf-8")


@functools.cache
def _repo_files() -> frozenset[Path]:
    """Every file under the repository root, outside hidden, virtual-env and cache folders."""
    out = set()
    for dirpath, dirnames, filenames in os.walk(ROOT):
        dirnames[:] = [d for d in dirnames if not d.startswith(".") and d not in
                       ("__pycache__", "build", "dist", "runs") and not d.endswith(".egg-info")]
        out.update(Path(dirpath, f).resolve() for f in filenames)
    return frozenset(out)


@functools.cache
def package_outputs() -> frozenset[str]:
    """Markdown file names the package itself writes (string literals such as "summary.md")."""
    names: set[str] = set()
    for src in (ROOT / "src" / "mgnm").rglob("*.py"):
        names.update(re.findall(r"[\"']([\w.-]+\.md)[\"']", src.read_text(encoding="utf-8")))
    return frozenset(names)


def slug(heading: str) -> str:
    """GitHub's anchor for a heading: lower case, punctuation dropped, spaces to hyphens."""
    text = re.sub(r"[`*_]", "", heading.strip().lower())
    text = re.sub(r"[^\w\- ]", "", text)
    return text.replace(" ", "-")


def anchors(path: Path) -> set[str]:
    out, fenced = set(), False
    for line in _text(path).splitlines():
        if FENCE.match(line):
            fenced = not fenced
        elif not fenced and line.startswith("#"):
            out.add(slug(line.lstrip("#")))
    return out


def test_slug_follows_github() -> None:
    assert slug("Early stopping and the reported result") == "early-stopping-and-the-reported-result"
    assert slug("LGMRec is a special case") == "lgmrec-is-a-special-case"
    assert slug("BPR-MF (`bpr`)") == "bpr-mf-bpr"
    assert slug("1. The MGNM paper") == "1-the-mgnm-paper"


def test_the_documents_exist() -> None:
    for name in ("model.md", "protocol.md", "baselines.md", "reference-figures.md",
                 "datasets.md"):
        assert (ROOT / "docs" / name).is_file(), name


@pytest.mark.parametrize("doc", DOCS, ids=lambda p: str(p.relative_to(ROOT)))
def test_relative_links_resolve(doc: Path) -> None:
    files = _repo_files()
    bad = []
    for target in LINK.findall(_text(doc)):
        if re.match(r"[a-z]+:", target):  # http:, https:, mailto:
            continue
        path, _, anchor = target.partition("#")
        dest = (doc.parent / path).resolve() if path else doc.resolve()
        if dest not in files:
            bad.append(f"{target}: no such file in the repository")
        elif anchor and anchor not in anchors(dest):
            bad.append(f"{target}: {dest.name} has no heading with anchor #{anchor}")
    assert not bad, f"{doc.relative_to(ROOT)}: " + "; ".join(bad)


@pytest.mark.parametrize("doc", DOCS, ids=lambda p: str(p.relative_to(ROOT)))
def test_named_documents_are_in_the_repository(doc: Path) -> None:
    """A document named in the text (not only in a link) must be a file of the repository."""
    files = _repo_files()
    names = {f.name for f in files}
    text = _text(doc)
    outputs = tuple(d.rstrip("/") + "/" for d in OUT_DIR.findall(text))
    bad = []
    written = package_outputs()
    for name in set(NAMED_MD.findall(text)):
        if name.startswith(outputs) or Path(name).name in written:
            continue  # a file that a command writes (under --out DIR, or by the package)
        candidates = [(doc.parent / name).resolve(), (ROOT / name).resolve()]
        if any(c in files for c in candidates):
            continue
        if "/" not in name and name in names:
            continue  # a bare file name that the repository holds (e.g. each dataset's README.md)
        bad.append(name)
    assert not bad, f"{doc.relative_to(ROOT)} names documents outside the repository: {bad}"


def readme_python_snippet() -> str:
    """The fenced ``python`` block of the README's "Python API" section."""
    text = _text(ROOT / "README.md")
    section = text.split("\n## Python API", 1)[1].split("\n## ", 1)[0]
    match = re.search(r"```python\n(.*?)```", section, re.S)
    assert match, "the README's Python API section has no ```python block"
    return match.group(1)


def test_readme_python_snippet_runs_on_the_demo(tmp_path: Path) -> None:
    code = readme_python_snippet()
    assert "path/to" not in code, "the snippet must run as written (on the bundled demo)"
    env = {**os.environ, "OMP_NUM_THREADS": "1", "MKL_NUM_THREADS": "1"}
    proc = subprocess.run([sys.executable, "-c", code], cwd=tmp_path, env=env,
                          capture_output=True, text=True, timeout=600)
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert "Traceback" not in proc.stderr
    printed = proc.stdout.split()
    recall, best_epoch = float(printed[0]), int(printed[1])
    assert 0.0 <= recall <= 1.0 and best_epoch >= 1
    # the run the snippet trained is where it says, and the snippet's last line read it back
    assert any(tmp_path.rglob("result.json")) and any(tmp_path.rglob("best.pt"))


def test_recommend_examples_name_users_of_the_demo() -> None:
    """The command lines follow the quick start, which trains on the bundled demo: the users
    they ask for exist there (its users are MovieLens userIds, from 2) and were trained."""
    demo = ROOT / "src" / "mgnm" / "datasets" / "movielens"
    rows = [line.split("\t") for line in (demo / "u_id_map.tsv").read_text().splitlines()[1:]]
    index = {orig: int(i) for orig, i in rows}
    inter = [line.split("\t") for line in (demo / "movielens.inter").read_text().splitlines()]
    col = inter[0].index("userID"), inter[0].index("x_label")
    trained = {int(r[col[0]]) for r in inter[1:] if r[col[1]] == "0"}
    users = re.findall(r"mgnm recommend RUN\w* --users ([\w,]+)",
                       _text(ROOT / "README.md") + _text(ROOT / "docs" / "serving.md"))
    assert users, "no `mgnm recommend RUN --users ...` example found"
    for spec in users:
        for u in spec.split(","):
            assert u in index and index[u] in trained, (spec, u)


# What a user's document must not carry: the history of how the code was made.
HISTORY = [
    (re.compile(r"\b(?:this|previous|earlier|next) stop\b|\bstop \d", re.I), "a work 'stop'"),
    (re.compile(r"\bissue \d", re.I), "an issue number"),
    (re.compile(r"\b(?=[0-9a-f]*[a-f])(?=[0-9a-f]*\d)[0-9a-f]{7,40}\b"), "a commit hash"),
    (re.compile(r"\bworktree\b", re.I), "a git worktree recipe"),
    (re.compile(r"\.\./shared/|/work/"), "a path of the machine it was measured on"),
]


def history_marks(text: str) -> list[str]:
    return [f"{what}: {m.group(0)!r}" for rx, what in HISTORY for m in rx.finditer(text)]


def test_history_marks_are_found() -> None:
    """The patterns catch what they are for, and pass plain measurements and file names."""
    assert len(history_marks("as in the previous stop (commit 7011fe4), see issue 10")) == 3
    assert history_marks("git worktree add /tmp/x; --data ../shared/data/tiktok") != []
    assert history_marks("`B000123.jpg`, 0.38685283, --valid-from 1628643414042, "
                         "early stop at epoch 52, `git_commit` tag") == []


@pytest.mark.parametrize("doc", DOCS, ids=lambda p: str(p.relative_to(ROOT)))
def test_documents_speak_to_users(doc: Path) -> None:
    """Docs say what the software does, how to run it and what it measured: no commit hashes,
    issue numbers, work sessions or the measuring machine's own paths (examples use DATA_DIR)."""
    marks = history_marks(_text(doc))
    assert not marks, f"{doc.relative_to(ROOT)}: {marks}"


def test_readme_starts_with_the_demo_run_then_the_tests() -> None:
    """The first command sets up and runs MGNM on the bundled demo; the second runs the tests."""
    blocks = re.findall(r"```bash\n(.*?)```", _text(ROOT / "README.md"), re.S)
    assert len(blocks) >= 2
    first, second = blocks[0].strip(), blocks[1].strip()
    assert "pip install" in first and first.endswith("mgnm train --model mgnm"), first
    assert "--data" not in first  # no --data: the bundled demo
    assert "pip install" in second and second.endswith("python -m pytest -q"), second
