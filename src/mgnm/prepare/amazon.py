"""Amazon review datasets: the paper's, from the public 2014 (or 2018) files as MMRec built
them, and today's, from the Amazon Reviews 2023 files as that release's benchmark builds them.

2014 / 2018:

- reviews (``reviews_<Cat>_5.json.gz``): one JSON object per line; ``reviewerID`` is the user,
  ``asin`` the item, ``overall`` the rating, ``unixReviewTime`` the time. Every review is an
  interaction; then :func:`mgnm.prepare.pipeline.build` (latest row per pair, 5-core, the
  random split).
- metadata (``meta_<Cat>.json.gz``): one dict per line, a Python literal in 2014 (parsed with
  :func:`ast.literal_eval`, never evaluated) or JSON in 2018. The text of an item is MMRec's
  sentence: title, brand, the names of the first category list (2018: ``category``), the
  description, each missing part a blank, newlines removed. Titles go to ``i_id_map.tsv``.
- image features (``image_features_<Cat>.b``): records of a 10-byte ASCII ASIN and 4096
  little-endian float32, read a block at a time; an item without a record gets the mean of
  the others.

2023 (detected from the fields, ``user_id``/``parent_asin``, or asked for):

- reviews (``<Category>.jsonl.gz``): one JSON object per line; ``user_id`` is the user,
  ``parent_asin`` the item (a product with all its variants, as the 2023 benchmark keys
  items), ``rating`` the rating, ``timestamp`` the time in milliseconds. Each of these four must
  be present. A repeated (user, item) pair keeps its earliest review (the benchmark's rule).
- metadata (``meta_<Category>.jsonl.gz``): one JSON object per line, keyed by ``parent_asin``.
  The text of an item is :func:`item_sentence_2023`; ``i_id_map.tsv`` gets the title and the
  first large image URL (``images[k].large``). The 2023 release has no image-feature file: the
  URLs are there for ``mgnm features image``.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from mgnm.errors import DataError
from mgnm.prepare.npy import NpyRows
from mgnm.prepare.pipeline import (
    SplitSpec,
    Staging,
    build,
    check_out,
    parse_cut,
    resolved,
    write_inter,
    write_maps,
    write_record,
)
from mgnm.prepare.progress import Pass
from mgnm.prepare.readers import Source, first_object, iter_objects, read_interactions

IMAGE_DIM = 4096
ASIN_BYTES = 10
RECORD_BYTES = ASIN_BYTES + 4 * IMAGE_DIM  # 16,394
RECORD = np.dtype([("asin", f"S{ASIN_BYTES}"), ("feat", "<f4", (IMAGE_DIM,))])
BLOCK_RECORDS = 64  # ~1 MB read at a time


def _text(value: Any) -> str:
    if value is None:
        return ""
    if isinstance(value, list | tuple):
        return " ".join(t for t in (_text(v) for v in value) if t)
    return str(value)


def first_categories(meta: dict[str, Any]) -> list[str]:
    """Names of the first category list (2014 ``categories``: a list of lists; 2018
    ``category``: one list of names)."""
    cats = meta.get("categories", meta.get("category"))
    if not isinstance(cats, list | tuple) or not cats:
        return []
    first = cats[0] if isinstance(cats[0], list | tuple) else cats
    return [_text(c) for c in first]


def item_sentence(meta: dict[str, Any]) -> str:
    """MMRec's text of an item: title, brand, first category names, description."""
    parts = [_text(meta.get("title")) or " ", _text(meta.get("brand")) or " ",
             *first_categories(meta), _text(meta.get("description")) or " "]
    return " ".join(parts).replace("\r", " ").replace("\n", " ")


SENTENCE_2023 = ("title", "store", "features", "description", "categories")


def item_sentence_2023(meta: dict[str, Any]) -> str:
    """The text of a 2023 item: ``title``, ``store``, ``features``, ``description``,
    ``categories`` in this order (lists joined), missing or empty parts left out, every run of
    whitespace (newlines too) one space. The most identifying parts come first, since the text
    encoder reads only the first 256 word pieces."""
    return " ".join(" ".join(_text(meta.get(f)) for f in SENTENCE_2023).split())


def first_large_image(meta: dict[str, Any]) -> str:
    """The first non-empty ``large`` URL of a 2023 item's ``images`` list, else ``""``."""
    images = meta.get("images")
    for image in images if isinstance(images, list) else ():
        url = image.get("large") if isinstance(image, dict) else None
        if isinstance(url, str) and url.strip():
            return url.strip()
    return ""


@dataclass(frozen=True)
class Release:
    """The field names and rules of one release of the Amazon files."""

    name: str
    user: str
    item: str
    time: str
    rating: str
    meta_key: str
    keep: str  # which review of a repeated (user, item) pair stays
    date_scale: float  # an ISO date on the command line -> the time unit (s or ms)
    strict: bool  # every review field required, JSON only, numeric times
    sentence: Callable[[dict[str, Any]], str]
    attributes: tuple[str, ...]  # i_id_map.tsv columns beside the ID

    def describe(self, kind: str) -> str:
        key = (self.user, self.item) if kind == "reviews" else (self.meta_key,)
        return f"{self.name} {kind} ({', '.join(key)})"


V2014 = Release("2014/2018", "reviewerID", "asin", "unixReviewTime", "overall", "asin", "latest",
                1.0, False, item_sentence, ("title",))
V2023 = Release("2023", "user_id", "parent_asin", "timestamp", "rating", "parent_asin",
                "earliest", 1000.0, True, item_sentence_2023, ("title", "image_url"))
RELEASES = {"2014": V2014, "2018": V2014, "2023": V2023}


def _release_of(obj: dict[str, Any], kind: str) -> Release | None:
    """The release a first record looks like, from its fields (``None``: neither)."""
    if kind == "reviews":
        if "user_id" in obj or "parent_asin" in obj:
            return V2023
        return V2014 if "reviewerID" in obj else None
    if "parent_asin" in obj:
        return V2023
    return V2014 if "asin" in obj else None


def detect_release(reviews: str | Path, meta: str | Path, fmt: str | None = None) -> Release:
    """The release of the two files, from the fields of their first records; with ``fmt``
    (``2014``, ``2018``, ``2023``), a check that they are of it."""
    if fmt is not None and fmt not in RELEASES:
        raise DataError(f"unknown --format {fmt!r} (choose from {', '.join(RELEASES)})")
    asked = RELEASES[fmt] if fmt else None
    found = {}
    for kind, path in (("reviews", reviews), ("metadata", meta)):
        line, obj = first_object(path)
        release = _release_of(obj, kind)
        if asked is not None:
            if release is not None and release is not asked:
                raise DataError(f"{path}, line {line}: {release.describe(kind)}, not the "
                                f"{asked.name} format asked for with --format {fmt}")
            continue
        if release is None:
            raise DataError(f"{path}, line {line}: neither {V2023.describe(kind)} nor "
                            f"{V2014.describe(kind)}; the record has "
                            f"{', '.join(sorted(obj)[:12]) or 'no fields'}")
        found[kind] = (release, path)
    if asked is not None:
        return asked
    (r_rel, r_path), (m_rel, m_path) = found["reviews"], found["metadata"]
    if r_rel is not m_rel:
        raise DataError(f"{r_path} holds {r_rel.name} reviews but {m_path} holds {m_rel.name} "
                        f"metadata; use the files of one release")
    return r_rel


def read_meta(path: str | Path, item_ids: list[str], quiet: bool = False,
              release: Release = V2014) -> tuple[dict[str, dict[str, str]], dict[str, Any]]:
    """Sentences and map columns of the dataset's items: ({ID: {"sentence", "title", ...}},
    input record with counts)."""
    wanted = set(item_ids)
    found: dict[str, dict[str, str]] = {}
    lines = duplicates = 0
    key = release.meta_key
    with Source(path) as src, Pass(f"read {Path(path).name}", src.size, quiet=quiet) as bar:
        for n, meta in iter_objects(src, bar, json_only=release.strict):
            lines += 1
            bar.count = lines
            asin = meta.get(key)
            if not isinstance(asin, str):
                raise DataError(f"{path}, line {n}: no {key!r} string in the record")
            if asin not in wanted:
                continue
            if asin in found:
                duplicates += 1
                continue
            found[asin] = {"title": _text(meta.get("title")), "sentence": release.sentence(meta)}
            if "image_url" in release.attributes:
                found[asin]["image_url"] = first_large_image(meta)
        bar.update(src.position, lines)
        info = src.record()
    counts = {"records": lines, "items_with_meta": len(found),
              "items_without_meta": len(wanted) - len(found), "duplicate_records": duplicates}
    return found, {**info, "counts": counts}


def _fill(stream: Any, view: memoryview) -> int:
    """Read until ``view`` is full or the stream ends; returns the bytes read."""
    got = 0
    while got < len(view):
        n = stream.readinto(view[got:])
        if not n:
            break
        got += n
    return got


def read_image_features(path: str | Path, item_ids: list[str], out: str | Path,
                        quiet: bool = False) -> dict[str, Any]:
    """Stream the ``.b`` file into ``out`` (``n_items x 4096`` float32 ``.npy``, row = item
    index); items without a record get the mean of the others. Returns the input record."""
    path = Path(path)
    index = {asin: i for i, asin in enumerate(item_ids)}
    buf = bytearray(BLOCK_RECORDS * RECORD_BYTES)
    view = memoryview(buf)
    records = duplicates = 0
    with Source(path) as src, NpyRows(out, len(item_ids), IMAGE_DIM) as rows, \
            Pass(f"read {path.name}", src.size, quiet=quiet) as bar:
        while True:
            got = _fill(src.stream, view)
            whole, rest = divmod(got, RECORD_BYTES)
            if rest and got < len(buf):
                raise DataError(f"{path}, record {records + whole + 1} (byte "
                                f"{(records + whole) * RECORD_BYTES}): {rest} bytes, a record is "
                                f"{RECORD_BYTES} (10-byte ASIN + {IMAGE_DIM} float32); the file "
                                f"is truncated")
            if not whole:
                break
            raw = np.frombuffer(buf, dtype=np.uint8, count=whole * RECORD_BYTES)
            asin_bytes = raw.reshape(whole, RECORD_BYTES)[:, :ASIN_BYTES]
            bad = ((asin_bytes < 0x21) | (asin_bytes > 0x7E)).any(axis=1)
            if bad.any():
                j = int(np.argmax(bad))
                raise DataError(f"{path}, record {records + j + 1} (byte "
                                f"{(records + j) * RECORD_BYTES}): ASIN "
                                f"{bytes(asin_bytes[j])!r} is not 10 ASCII characters")
            block = np.frombuffer(buf, dtype=RECORD, count=whole)
            for j, asin in enumerate(block["asin"].tolist()):
                i = index.get(asin.decode("ascii"))
                if i is None:
                    continue
                if rows.present[i]:
                    duplicates += 1
                    continue
                feat = block["feat"][j]
                if not np.isfinite(feat).all():
                    raise DataError(f"{path}, record {records + j + 1} (ASIN "
                                    f"{asin.decode('ascii')}): non-finite feature values")
                rows.write(i, feat)
            records += whole
            bar.update(src.position, records)
            if got < len(buf):
                break
        if not rows.present.any():
            raise DataError(f"{path}: none of the dataset's {len(item_ids)} items has an image "
                            f"record ({records} records read); is it the same category?")
        with_image = int(rows.present.sum())
        missing = rows.fill_missing()
        rows.commit()
        info = src.record()
    return {**info, "counts": {"records": records, "items_with_image": with_image,
                               "items_without_image_mean_filled": missing,
                               "duplicate_records": duplicates}}


def prepare_amazon(reviews: str | Path, meta: str | Path, out: str | Path,
                   image_features: str | Path | None = None, text: bool = True,
                   k_core: int = 5, seed: int = 999, name: str | None = None,
                   batch_size: int = 64, device: str = "cpu",
                   quiet: bool = False, *, fmt: str | None = None, split: str = "random",
                   valid_from: str | float | None = None,
                   test_from: str | float | None = None) -> dict[str, Any]:
    """Prepare ``out`` from the Amazon files; returns its ``prepare.json`` record.

    ``fmt``: ``"2014"``, ``"2018"`` or ``"2023"`` (default: from the files' fields).
    ``split``: ``random``, ``time``, ``loo`` or ``timestamp`` (with ``valid_from`` and
    ``test_from``: numbers in the reviews' time unit, or ISO-8601 dates)."""
    out = Path(out)
    args = {"reviews": resolved(reviews), "meta": resolved(meta),
            "image_features": resolved(image_features), "format": fmt, "text": text,
            "k_core": k_core, "split": split, "seed": seed, "valid_from": valid_from,
            "test_from": test_from, "name": name or out.resolve().name}
    command = "prepare amazon"
    check_out(out, command, args)
    if k_core < 1:
        raise DataError(f"--k-core {k_core}: must be at least 1")
    release = detect_release(reviews, meta, fmt)
    if image_features is not None and release is V2023:
        raise DataError(f"{image_features}: the 2023 release has no image-feature file; "
                        f"download the images listed in i_id_map.tsv (column image_url) and "
                        f"run mgnm features image")
    spec = SplitSpec(split, seed, parse_cut(valid_from, "--valid-from", release.date_scale),
                     parse_cut(test_from, "--test-from", release.date_scale))
    spec.check(True)
    if text:  # fail before the long passes when the encoder is not installed
        from mgnm.prepare.features import require_text_encoder

        require_text_encoder()
    required = "an Amazon 2023 review" if release.strict else None
    log = read_interactions(reviews, release.user, release.item, release.time, release.rating,
                   fmt="jsonl", quiet=quiet, required=required, numeric_time=release.strict,
                   json_only=release.strict)
    prepared = build(log, k_core, spec, keep=release.keep)
    found, meta_info = read_meta(meta, prepared.item_ids, quiet, release)
    inputs = [log.input, meta_info]
    staging = Staging(out)
    with staging as tmp:
        features: dict[str, Any] = {}
        if image_features is not None:
            img = read_image_features(image_features, prepared.item_ids,
                                      tmp / "image_feat.npy", quiet)
            inputs.append(img)
            features["image"] = {"dim": IMAGE_DIM, **img["counts"]}
        if text:
            from mgnm.prepare.features import encode_texts

            sentences = [found.get(i, {}).get("sentence", release.sentence({}))
                         for i in prepared.item_ids]
            emb = encode_texts(sentences, batch_size=batch_size, device=device, quiet=quiet)
            np.save(tmp / "text_feat.npy", emb, allow_pickle=False)
            features["text"] = {"dim": int(emb.shape[1]), "encoder": "all-MiniLM-L6-v2",
                                "items_without_meta": meta_info["counts"]["items_without_meta"]}
        write_inter(tmp / f"{args['name']}.inter", prepared)
        write_maps(tmp, prepared, {col: {asin: v[col] for asin, v in found.items()}
                                   for col in release.attributes})
        record = write_record(tmp, command, args, inputs, prepared,
                              {"release": release.name, "features": features})
        staging.commit()
    return record
