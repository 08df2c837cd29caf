"""docs/model.md and docs/baselines.md list exactly the config keys the models have.

The key tables are read from the Markdown and compared with each model's ``Config`` class,
so a key added, renamed or removed in the code without the documents fails here.
"""

from __future__ import annotations

import re
from pathlib import Path

from mgnm.models import get_model_class

DOCS = Path(__file__).resolve().parents[1] / "docs"
SECTION = re.compile(r"^## .*\(`(\w+)`\)\s*$", re.M)


def table_keys(markdown: str) -> list[str]:
    """The backticked first cells of the Markdown table rows (header and rule excluded)."""
    return re.findall(r"^\| `(\w+)` \|", markdown, re.M)


def test_table_keys_parser() -> None:
    text = "| key | default |\n| --- | --- |\n| `n_layers` | 2 |\n| `reg_weight` | 1e-4 |\n"
    assert table_keys(text) == ["n_layers", "reg_weight"]


def test_model_md_lists_every_mgnm_key() -> None:
    text = (DOCS / "model.md").read_text(encoding="utf-8")
    switches = text.split("## Every switch", 1)[1].split("\n## ", 1)[0]
    keys = table_keys(switches)
    assert len(keys) == len(set(keys))
    assert set(keys) == set(get_model_class("mgnm").Config.model_fields)


def test_baselines_md_lists_every_key_of_each_model() -> None:
    text = (DOCS / "baselines.md").read_text(encoding="utf-8")
    starts = list(SECTION.finditer(text))
    checked = []
    for n, match in enumerate(starts):
        end = starts[n + 1].start() if n + 1 < len(starts) else len(text)
        keys = table_keys(text[match.end():end])
        if not keys:
            continue  # LGMRec's section points to model.md instead of a table
        fields = set(get_model_class(match.group(1)).Config.model_fields) - {"embedding_size"}
        assert set(keys) == fields, match.group(1)
        checked.append(match.group(1))
    assert set(checked) == {"bpr", "lightgcn", "vbpr", "mmgcn", "dualgnn", "lattice", "bm3",
                            "mgcn", "freedom"}
