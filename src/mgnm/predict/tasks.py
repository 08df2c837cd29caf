"""What ``mgnm recommend`` does, callable without the command line."""

from __future__ import annotations

import sys
from collections.abc import Callable
from pathlib import Path

import numpy as np

from mgnm.predict.predictor import (
    Predictor,
    RequestError,
    check_k,
    format_rows,
    tsv_header,
    write_recommendations,
)


def parse_id_list(spec: str | None, option: str = "--users") -> list[str]:
    """IDs from ``"a,b,c"`` or ``"@FILE"`` (one per line); an empty list is an error."""
    if spec is None:
        raise RequestError(option, "give user IDs (or --all-users)")
    if spec.startswith("@"):
        try:
            parts = Path(spec[1:]).read_text(encoding="utf-8").split()
        except (OSError, UnicodeDecodeError) as exc:
            reason = getattr(exc, "strerror", None) or str(exc)
            raise RequestError(option, f"{spec[1:]}: cannot read ({reason})") from None
    else:
        parts = [p.strip() for p in spec.split(",") if p.strip()]
    if not parts:
        raise RequestError(option, f"no user IDs given in {spec!r}")
    return parts


def recommend_command(run_dir: str | Path, users: str | None, all_users: bool, k: int,
                      output: str | Path | None, exclude_seen: bool,
                      data: str | Path | None, echo: Callable[[str], None]) -> None:
    """Validate the arguments first (cheap), then load the run once and answer."""
    k = check_k(k, "-k")
    if all_users and users is not None:
        raise RequestError("--users", "give either --users or --all-users, not both")
    ids = None if all_users else parse_id_list(users)
    predictor = Predictor.load(run_dir, data)
    if ids is None:
        idx = np.flatnonzero(predictor.has_train)
    else:
        idx = predictor.user_indices(ids)
        predictor.trained_users(idx, ids)
    if output is not None:
        n = write_recommendations(predictor, output, k, idx, exclude_seen)
        echo(f"wrote {n} users' top-{k} lists to {output}")
    else:  # the same header as the file's
        echo(tsv_header(predictor))
        for batch in predictor.iter_recommend(idx, k, exclude_seen):
            echo(format_rows(batch).rstrip("\n"))
    skipped = predictor.n_users - idx.size if ids is None else 0
    if skipped:
        print(f"note: {skipped} user(s) without a training interaction skipped (no trained "
              f"embedding)", file=sys.stderr)
