"""Fingerprints of a dataset directory's files, to notice data that changed under a run."""

from __future__ import annotations

import hashlib
from pathlib import Path
from typing import Any

from mgnm.errors import DataError

#: the files that define a dataset (interactions, features, ID maps)
PATTERNS = ("*.inter", "*_feat.npy", "*_id_map.tsv")


def file_sha256(path: Path, chunk: int = 1 << 20) -> str:
    h = hashlib.sha256()
    try:
        with open(path, "rb") as f:
            while block := f.read(chunk):
                h.update(block)
    except OSError as exc:
        raise DataError(f"{path}: cannot read ({exc.strerror})") from None
    return h.hexdigest()


def fingerprint(root: str | Path) -> dict[str, Any]:
    """``{"path": absolute path, "files": {name: {"size", "sha256"}}}`` of a dataset."""
    root = Path(root).resolve()
    files = sorted({p for pattern in PATTERNS for p in root.glob(pattern) if p.is_file()})
    return {"path": str(root),
            "files": {p.name: {"size": p.stat().st_size, "sha256": file_sha256(p)}
                      for p in files}}


def changed_files(saved: dict[str, Any], current: dict[str, Any]) -> list[str]:
    """Names of files added, removed or changed between two fingerprints."""
    a, b = saved.get("files", {}), current.get("files", {})
    out = []
    for name in sorted(set(a) | set(b)):
        if name not in b:
            out.append(f"{name} removed")
        elif name not in a:
            out.append(f"{name} added")
        elif a[name] != b[name]:
            out.append(f"{name} changed")
    return out
