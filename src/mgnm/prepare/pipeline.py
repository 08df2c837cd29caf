"""From an interaction log to an MMRec-format dataset directory (``mgnm prepare interactions``).

Steps: read (dropping rows with a missing field, and rows below ``min_rating``), keep one row
per (user, item) pair (the latest, or the earliest), iterative k-core on users and items,
0-based re-indexing (ascending original ID: numerically when every ID is an integer, else as
text), one of the splits of :mod:`mgnm.prepare.split`. The directory is built in a hidden sibling
(``.NAME.partial-PID``) and renamed into place at the end, so an interrupted run never leaves
a half dataset at ``out``.
"""

from __future__ import annotations

import json
import os
import shutil
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from mgnm import __version__
from mgnm.data.idmap import MAP_FILES, write_id_map
from mgnm.errors import DataError
from mgnm.prepare.kcore import KEEP, k_core, one_per_pair
from mgnm.prepare.readers import Log, parse_number, parse_time, read_interactions
from mgnm.prepare.split import NEEDS_TIME, SPLITS, TRAIN, split_labels

RECORD = "prepare.json"


def _stats(users: np.ndarray, items: np.ndarray) -> dict[str, int]:
    return {"users": int(len(np.unique(users))), "items": int(len(np.unique(items))),
            "interactions": int(len(users))}


def id_order(ids: Sequence[str]) -> np.ndarray:
    """Positions of ``ids`` in index order: ascending, numerically if all are integers."""
    try:
        keys = [int(x) for x in ids]
    except ValueError:
        return np.asarray(sorted(range(len(ids)), key=ids.__getitem__), dtype=np.int64)
    return np.asarray(sorted(range(len(ids)), key=keys.__getitem__), dtype=np.int64)


@dataclass
class Prepared:
    """A filtered, re-indexed, split interaction list with its original IDs."""

    users: np.ndarray  # 0-based user index per row
    items: np.ndarray
    labels: np.ndarray
    times: np.ndarray | None
    ratings: np.ndarray | None
    user_ids: list[str]  # user_ids[index] = original ID
    item_ids: list[str]
    steps: list[dict[str, Any]] = field(default_factory=list)

    @property
    def split_counts(self) -> dict[str, int]:
        c = np.bincount(self.labels, minlength=3)
        return {"train": int(c[0]), "valid": int(c[1]), "test": int(c[2])}


@dataclass(frozen=True)
class SplitSpec:
    """Which split, with its seed (``random``, ``time``) or cuts (``timestamp``)."""

    how: str = "random"
    seed: int = 999
    valid_from: float | None = None
    test_from: float | None = None

    def check(self, has_time: bool, time_option: str = "--time") -> None:
        """Raise a :class:`DataError` for a split that cannot be made as asked."""
        if self.how not in SPLITS:
            raise DataError(f"unknown split {self.how!r} (choose from {', '.join(SPLITS)})")
        if self.how in NEEDS_TIME and not has_time:
            raise DataError(f"--split {self.how} needs {time_option} (the column holding the "
                            f"time)")
        cuts = (self.valid_from, self.test_from)
        if self.how == "timestamp":
            if None in cuts:
                raise DataError("--split timestamp needs --valid-from and --test-from")
            if self.valid_from > self.test_from:  # type: ignore[operator]
                raise DataError(f"--valid-from {_number(self.valid_from)} is after --test-from "
                                f"{_number(self.test_from)}")
        elif cuts != (None, None):
            raise DataError(f"--valid-from and --test-from belong to --split timestamp, not "
                            f"--split {self.how}")


def parse_cut(value: str | float | None, option: str, date_scale: float = 1.0) -> float | None:
    """A split time from the command line: a number in the time column's unit, as given, or an
    ISO-8601 date, converted to Unix seconds times ``date_scale`` (1000 for milliseconds)."""
    if value is None:
        return None
    try:
        return parse_number(value, "time", option)
    except DataError:
        return parse_time(value, option) * date_scale


def build(log: Log, k: int, split: str | SplitSpec, seed: int = 999,
          keep: str = "latest") -> Prepared:
    """Deduplicate (``keep`` the latest or the earliest row of a pair), k-core, re-index and
    split the rows of ``log``."""
    spec = split if isinstance(split, SplitSpec) else SplitSpec(split, seed)
    spec.check(log.times is not None)
    if keep not in KEEP:
        raise DataError(f"unknown --keep {keep!r} (choose from {', '.join(KEEP)})")
    steps = [{"step": "read", **log.counts, **_stats(log.users, log.items)}]
    if len(log.users) == 0:
        raise DataError(f"{log.path}: no interaction left to prepare ({log.counts['records']} "
                        f"records read, {log.counts['missing_field']} with a missing field, "
                        f"{log.counts['below_min_rating']} below the minimum rating)")
    rows = one_per_pair(log.users, log.items, log.times, keep)
    steps.append({"step": "deduplicate", "dropped": int(len(log.users) - len(rows)),
                  **_stats(log.users[rows], log.items[rows])})
    keep, rounds = k_core(log.users[rows], log.items[rows], k)
    rows = rows[keep]
    steps.append({"step": f"{k}-core", "rounds": rounds, **_stats(log.users[rows],
                                                                   log.items[rows])})
    if len(rows) == 0:
        raise DataError(f"{log.path}: the {k}-core is empty: no set of users and items with at "
                        f"least {k} interactions each remains; lower --k-core")
    u_codes, u_inv = np.unique(log.users[rows], return_inverse=True)
    i_codes, i_inv = np.unique(log.items[rows], return_inverse=True)
    u_names = [log.user_ids[c] for c in u_codes]
    i_names = [log.item_ids[c] for c in i_codes]
    u_order, i_order = id_order(u_names), id_order(i_names)
    u_rank = np.empty_like(u_order)
    u_rank[u_order] = np.arange(len(u_order))
    i_rank = np.empty_like(i_order)
    i_rank[i_order] = np.arange(len(i_order))
    users, items = u_rank[u_inv], i_rank[i_inv]
    times = log.times[rows] if log.times is not None else None
    # rows are in file order, so their indices break ties in time for the loo split
    labels = split_labels(users, items, spec.seed, spec.how, times, rows, spec.valid_from,
                          spec.test_from)
    prepared = Prepared(users, items, labels, times,
                        log.ratings[rows] if log.ratings is not None else None,
                        [u_names[j] for j in u_order], [i_names[j] for j in i_order], steps)
    counts = prepared.split_counts
    with_train = np.zeros(len(u_names), dtype=bool)
    with_train[users[labels == TRAIN]] = True
    cuts = {"valid_from": _exact(spec.valid_from), "test_from": _exact(spec.test_from)} \
        if spec.how == "timestamp" else {}
    steps.append({"step": f"{spec.how} split", **cuts, **counts,
                  "users_without_train": int((~with_train).sum())})
    empty = [name for name, c in counts.items() if c == 0]
    if empty:
        raise DataError(f"{log.path}: the {spec.how} split leaves no {empty[0]} interaction "
                        f"({_split_hint(spec, k, times)})")
    return prepared


def _split_hint(spec: SplitSpec, k: int, times: np.ndarray | None) -> str:
    if spec.how == "timestamp" and times is not None:
        return (f"times run from {_number(times.min())} to {_number(times.max())}; the cuts are "
                f"--valid-from {_number(spec.valid_from)} and --test-from "
                f"{_number(spec.test_from)}, in the same unit as the times")
    return f"every user has at most 2 interactions after the {k}-core; raise --k-core"


def _exact(x: float | None) -> int | float | None:
    return int(x) if x is not None and float(x).is_integer() else x


def _number(x: float) -> str:
    return str(int(x)) if float(x).is_integer() else repr(float(x))


def write_inter(path: Path, p: Prepared) -> None:
    """``userID itemID [rating] [timestamp] x_label``, by user, then split, then item."""
    order = np.lexsort((p.items, p.labels, p.users))
    cols = ["userID", "itemID"] + (["rating"] if p.ratings is not None else []) + \
        (["timestamp"] if p.times is not None else []) + ["x_label"]
    with open(path, "w", encoding="utf-8", newline="\n") as fh:
        fh.write("\t".join(cols) + "\n")
        for lo in range(0, len(order), 1 << 16):
            chunk = order[lo:lo + (1 << 16)]
            parts = [p.users[chunk].astype(str), p.items[chunk].astype(str)]
            if p.ratings is not None:
                parts.append(np.array([repr(float(r)) for r in p.ratings[chunk]]))
            if p.times is not None:
                parts.append(np.array([_number(t) for t in p.times[chunk]]))
            parts.append(p.labels[chunk].astype(str))
            fh.write("".join("\t".join(row) + "\n" for row in zip(*parts, strict=True)))


def write_maps(root: Path, p: Prepared,
               item_attributes: Mapping[str, Mapping[str, str]] | None = None) -> None:
    """``u_id_map.tsv`` and ``i_id_map.tsv``; ``item_attributes``: column -> {original ID: value}."""
    attrs = {col: [values.get(i, "") for i in p.item_ids]
             for col, values in (item_attributes or {}).items()}
    for kind, ids, extra in (("user", p.user_ids, None), ("item", p.item_ids, attrs)):
        (root / MAP_FILES[kind]).write_text(write_id_map(root / MAP_FILES[kind], kind, ids, extra),
                                            encoding="utf-8", newline="\n")


def check_out(out: Path, command: str, args: dict[str, Any]) -> None:
    """Refuse an ``out`` that holds anything but an earlier run of the same command and args."""
    if not out.exists():
        return
    if not out.is_dir():
        raise DataError(f"{out}: exists and is not a directory; choose another --out")
    if not any(out.iterdir()):
        return
    record = out / RECORD
    try:
        old = json.loads(record.read_text(encoding="utf-8"))
    except (OSError, ValueError):
        raise DataError(f"{out}: holds a different dataset (no readable {RECORD}); choose "
                        f"another --out or remove it") from None
    theirs = old.get("args") if isinstance(old, dict) else None
    theirs = theirs if isinstance(theirs, dict) else {}
    # an argument missing from the record of an older version is an option it did not have
    # yet, which stands for its value None
    diff = [k for k in sorted(set(args) | set(theirs)) if args.get(k) != theirs.get(k)]
    same_command = isinstance(old, dict) and old.get("command") == command
    if same_command and not diff:
        return
    what = f"other arguments ({', '.join(diff)})" if same_command else \
        f"{old.get('command') if isinstance(old, dict) else None!r}"
    raise DataError(f"{out}: holds a different dataset (prepared by {what}); choose "
                    f"another --out or remove it")


class Staging:
    """A hidden sibling of ``out`` to build in; :meth:`commit` renames it to ``out``."""

    def __init__(self, out: Path) -> None:
        self.out = out
        self.tmp = out.parent / f".{out.name}.partial-{os.getpid()}"

    def __enter__(self) -> Path:
        try:
            self.out.parent.mkdir(parents=True, exist_ok=True)
            shutil.rmtree(self.tmp, ignore_errors=True)
            self.tmp.mkdir()
        except OSError as exc:
            raise DataError(f"{self.out}: cannot create the output directory "
                            f"({exc.strerror})") from None
        return self.tmp

    def commit(self) -> None:
        old = self.out.parent / f".{self.out.name}.old-{os.getpid()}"
        try:
            if self.out.exists():
                os.rename(self.out, old)
            os.rename(self.tmp, self.out)
        except OSError as exc:
            raise DataError(f"{self.out}: cannot move the finished dataset into place "
                            f"({exc.strerror})") from None
        shutil.rmtree(old, ignore_errors=True)

    def __exit__(self, exc_type: type[BaseException] | None, *rest: object) -> None:
        if exc_type is not None:
            shutil.rmtree(self.tmp, ignore_errors=True)


def write_record(root: Path, command: str, args: dict[str, Any], inputs: list[dict[str, Any]],
                 p: Prepared, extra: dict[str, Any] | None = None) -> dict[str, Any]:
    record = {"command": command, "args": args, "mgnm_version": __version__,
              "inputs": inputs, "steps": p.steps,
              "result": {"users": len(p.user_ids), "items": len(p.item_ids),
                         "interactions": int(len(p.users)), **p.split_counts},
              **(extra or {})}
    (root / RECORD).write_text(json.dumps(record, indent=2) + "\n", encoding="utf-8")
    return record


def resolved(path: str | Path | None) -> str | None:
    return None if path is None else str(Path(path).resolve())


def prepare_interactions(path: str | Path, out: str | Path, user: str, item: str,
                         time: str | None = None, rating: str | None = None,
                         min_rating: float | None = None, fmt: str | None = None,
                         k_core: int = 5, split: str = "random", seed: int = 999,
                         name: str | None = None, quiet: bool = False,
                         item_attributes: Mapping[str, Mapping[str, str]] | None = None,
                         keep: str = "latest", valid_from: str | float | None = None,
                         test_from: str | float | None = None) -> dict[str, Any]:
    """Prepare the dataset directory ``out`` from the log ``path``; returns ``prepare.json``.

    ``item_attributes`` (Python only): extra ``i_id_map.tsv`` columns, column -> {original
    item ID: value} (the demo build uses it for titles). ``keep``: which row of a repeated
    (user, item) pair stays. ``valid_from``, ``test_from``: the cuts of ``split="timestamp"``
    (numbers in the time column's unit, or ISO-8601 dates, read as Unix seconds).
    """
    out = Path(out)
    args = {"input": resolved(path), "format": fmt, "user": user, "item": item, "time": time,
            "rating": rating, "min_rating": min_rating, "keep": keep, "k_core": k_core,
            "split": split, "seed": seed, "valid_from": valid_from, "test_from": test_from,
            "name": name or out.resolve().name}
    command = "prepare interactions"
    check_out(out, command, args)
    if k_core < 1:
        raise DataError(f"--k-core {k_core}: must be at least 1")
    spec = SplitSpec(split, seed, parse_cut(valid_from, "--valid-from"),
                     parse_cut(test_from, "--test-from"))
    spec.check(time is not None)  # before the long read
    log = read_interactions(path, user, item, time, rating, fmt, min_rating, quiet=quiet)
    prepared = build(log, k_core, spec, keep=keep)
    staging = Staging(out)
    with staging as tmp:
        write_inter(tmp / f"{args['name']}.inter", prepared)
        write_maps(tmp, prepared, item_attributes)
        record = write_record(tmp, command, args, [log.input], prepared)
        staging.commit()
    return record


def summary(record: dict[str, Any], out: Path, steps: bool = True) -> str:
    """One line per step (unless ``steps`` is false) and the result, for the command line."""
    lines = []
    for s in record["steps"] if steps else ():
        detail = ", ".join(f"{k} {v:,}" for k, v in s.items() if k != "step")
        lines.append(f"{s['step']:>14}: {detail}")
    r = record["result"]
    lines.append(f"wrote {out}: {r['users']:,} users, {r['items']:,} items, "
                 f"{r['interactions']:,} interactions (train {r['train']:,} / valid "
                 f"{r['valid']:,} / test {r['test']:,})")
    return "\n".join(lines)
