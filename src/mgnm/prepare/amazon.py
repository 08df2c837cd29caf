"""The paper's Amazon datasets from the public 2014 (or 2018) files, as MMRec built them.

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
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np

from mgnm.errors import DataError
from mgnm.prepare.log import Source, iter_objects, read_log
from mgnm.prepare.npy import NpyRows
from mgnm.prepare.pipeline import Staging, build, check_out, resolved, write_inter, write_maps, write_record
from mgnm.prepare.progress import Pass

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


def read_meta(path: str | Path, item_ids: list[str], quiet: bool = False
              ) -> tuple[dict[str, dict[str, str]], dict[str, Any]]:
    """Sentences and titles of the dataset's items: ({asin: {"title", "sentence"}}, counts)."""
    wanted = set(item_ids)
    found: dict[str, dict[str, str]] = {}
    lines = duplicates = 0
    with Source(path) as src, Pass(f"read {Path(path).name}", src.size, quiet=quiet) as bar:
        for n, meta in iter_objects(src, bar):
            lines += 1
            bar.count = lines
            asin = meta.get("asin")
            if not isinstance(asin, str):
                raise DataError(f"{path}, line {n}: no 'asin' string in the record")
            if asin not in wanted:
                continue
            if asin in found:
                duplicates += 1
                continue
            found[asin] = {"title": _text(meta.get("title")), "sentence": item_sentence(meta)}
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
                   quiet: bool = False) -> dict[str, Any]:
    """Prepare ``out`` from the Amazon files; returns its ``prepare.json`` record."""
    out = Path(out)
    args = {"reviews": resolved(reviews), "meta": resolved(meta),
            "image_features": resolved(image_features), "text": text, "k_core": k_core,
            "split": "random", "seed": seed, "name": name or out.resolve().name}
    command = "prepare amazon"
    check_out(out, command, args)
    if text:  # fail before the long passes when the encoder is not installed
        from mgnm.prepare.features import require_text_encoder

        require_text_encoder()
    log = read_log(reviews, "reviewerID", "asin", "unixReviewTime", "overall", fmt="jsonl",
                   quiet=quiet)
    prepared = build(log, k_core, "random", seed)
    found, meta_info = read_meta(meta, prepared.item_ids, quiet)
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

            sentences = [found.get(i, {}).get("sentence", item_sentence({}))
                         for i in prepared.item_ids]
            emb = encode_texts(sentences, batch_size=batch_size, device=device, quiet=quiet)
            np.save(tmp / "text_feat.npy", emb, allow_pickle=False)
            features["text"] = {"dim": int(emb.shape[1]), "encoder": "all-MiniLM-L6-v2",
                                "items_without_meta": meta_info["counts"]["items_without_meta"]}
        write_inter(tmp / f"{args['name']}.inter", prepared)
        titles = {asin: v["title"] for asin, v in found.items()}
        write_maps(tmp, prepared, {"title": titles})
        record = write_record(tmp, command, args, inputs, prepared, {"features": features})
        staging.commit()
    return record
