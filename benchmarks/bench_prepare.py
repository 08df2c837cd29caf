"""Throughput and peak memory of ``mgnm prepare amazon`` on generated files in the real formats.

Generates (once, into --work) a gzip JSON-lines review file (--reviews records, 5-core-like:
every user has >= 5 reviews), a gzip Python-literal metadata file (one line per product) and
two ``.b`` image files (10-byte ASIN + 4096 float32 per record) of different sizes that share
the dataset's items (95% of them have a record; the rest are other products). Then runs, each
in its own process, timing it and reading its peak resident memory (``wait4``'s ru_maxrss):

1. ``mgnm prepare amazon --no-text`` with the larger image file;
2. the image pass alone (:func:`mgnm.prepare.amazon.read_image_features`) on both files: its
   peak memory does not grow with the file;
3. the MiniLM text encoder alone on ``--text-sample`` item sentences (sentences per CPU
   second), and with ``--full-text`` the whole ``prepare amazon`` with the encoder.

Peak RSS includes the interpreter, numpy and torch (imported by ``mgnm.data``); the image pass
alone also reports the peak of Python and numpy allocations (``tracemalloc``).

    OMP_NUM_THREADS=1 nice -n 10 python benchmarks/bench_prepare.py [--reviews 1000000]
        [--images 100000 --small-images 25000] [--text-sample 2000] [--full-text]
        [--work /tmp/mgnm-bench-prepare]
"""

from __future__ import annotations

import argparse
import gzip
import json
import os
import subprocess
import sys
import time
from pathlib import Path

import numpy as np

RECORD = 10 + 4 * 4096
WORDS = ("soft bottle blue cotton stroller safe easy clean warm small travel gift light strong "
         "toddler newborn pack set seat organic").split()


def generate(work: Path, n_reviews: int, n_items: int, n_images: list[int], seed: int) -> dict:
    """Write the input files (skipped where they exist); returns their paths."""
    rng = np.random.default_rng(seed)
    work.mkdir(parents=True, exist_ok=True)
    reviews = work / f"reviews_Bench_{n_reviews}.json.gz"
    asin = [f"B{n:09d}" for n in range(max(n_images) + n_items + 1000)]
    if not reviews.exists():
        per_user = 5 + rng.geometric(0.6, size=n_reviews // 5)
        per_user = per_user[np.cumsum(per_user) <= n_reviews]
        users = np.repeat(np.arange(len(per_user)), per_user)
        weight = 1.0 / (np.arange(n_items) + 50.0) ** 0.9
        items = rng.choice(n_items, size=len(users), p=weight / weight.sum())
        stars = rng.integers(1, 6, len(users))
        when = rng.integers(1_000_000_000, 1_400_000_000, len(users))
        text = " ".join(WORDS * 4)
        with gzip.open(reviews, "wt", compresslevel=6) as fh:
            for lo in range(0, len(users), 100_000):
                fh.write("".join(
                    f'{{"reviewerID": "A{u:012d}", "asin": "{asin[i]}", "reviewerName": "n", '
                    f'"helpful": [0, 0], "reviewText": "{text}", "overall": {s}.0, '
                    f'"summary": "ok", "unixReviewTime": {t}, "reviewTime": "01 1, 2014"}}\n'
                    for u, i, s, t in zip(users[lo:lo + 100_000].tolist(),
                                          items[lo:lo + 100_000].tolist(),
                                          stars[lo:lo + 100_000].tolist(),
                                          when[lo:lo + 100_000].tolist(), strict=True)))
    meta = work / f"meta_Bench_{n_items}.json.gz"
    if not meta.exists():
        with gzip.open(meta, "wt", compresslevel=6) as fh:
            for n in range(n_items + 1000):
                words = " ".join(rng.choice(WORDS, 12).tolist())
                fh.write(repr({"asin": asin[n], "title": f"Product {n} {words[:30]}",
                               "brand": "Acme", "price": 9.99,
                               "categories": [["Baby", "Feeding", "Bottles"], ["Sale"]],
                               "description": words}) + "\n")
    images = {}
    for count in n_images:
        path = work / f"image_features_Bench_{count}.b"
        images[count] = path
        if path.exists():
            continue
        # 95% of the dataset's items, then other products up to `count` records
        ids = [a for n, a in enumerate(asin[:n_items]) if n % 20 != 7][:count]
        ids += asin[n_items:n_items + count - len(ids)]
        order = rng.permutation(len(ids))
        with open(path, "wb") as fh:
            for lo in range(0, len(ids), 2000):
                block = order[lo:lo + 2000]
                rec = np.zeros(len(block), dtype=[("asin", "S10"), ("feat", "<f4", (4096,))])
                rec["asin"] = [ids[j].encode() for j in block]
                rec["feat"] = rng.random((len(block), 4096), dtype=np.float32)
                fh.write(rec.tobytes())
    return {"reviews": reviews, "meta": meta, "images": images}


def run(cmd: list[str]) -> tuple[float, float, float, str]:
    """(wall seconds, CPU seconds, peak RSS in MiB, output) of one child process, reaped with
    ``wait4`` so that the CPU time and peak are that child's own. CPU time (user + system) is
    the figure to compare on a shared machine, where wall time depends on the other load."""
    env = {**os.environ, "OMP_NUM_THREADS": "1", "MKL_NUM_THREADS": "1"}
    start = time.perf_counter()
    proc = subprocess.Popen(cmd, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT)
    out = proc.stdout.read().decode()  # type: ignore[union-attr]
    _, status, usage = os.wait4(proc.pid, 0)
    secs = time.perf_counter() - start
    proc.returncode = os.waitstatus_to_exitcode(status)
    if proc.returncode:
        sys.exit(f"failed ({proc.returncode}): {' '.join(cmd)}\n{out[-3000:]}")
    return secs, usage.ru_utime + usage.ru_stime, usage.ru_maxrss / 1024, out


def text_run(meta: Path, n: int, row) -> None:
    """MiniLM over the first ``n`` items' MMRec sentences: sentences per CPU second."""
    code = ("import sys, gzip, time; from mgnm.prepare.readers import parse_object; "
            "from mgnm.prepare.amazon import item_sentence; "
            "from mgnm.prepare.features import encode_texts, load_text_encoder; "
            "lines = gzip.open(sys.argv[1], 'rt').readlines()[:int(sys.argv[2])]; "
            "texts = [item_sentence(parse_object(x, 'meta')) for x in lines]; "
            "m = load_text_encoder(); t = time.process_time(); "
            "encode_texts(texts, model=m, quiet=True); "
            "print(f'{len(texts) / (time.process_time() - t):.0f} sentences per CPU second')")
    res = run([sys.executable, "-c", code, str(meta), str(n)])
    row(f"MiniLM text encoding alone: {n:,} item sentences", res, res[3].strip().splitlines()[-1])


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--reviews", type=int, default=1_000_000)
    ap.add_argument("--items", type=int, default=20_000, help="products that have reviews")
    ap.add_argument("--images", type=int, default=100_000, help="records of the larger .b")
    ap.add_argument("--small-images", type=int, default=25_000, help="records of the smaller .b")
    ap.add_argument("--text-sample", type=int, default=2_000,
                    help="sentences for the text-encoder run (0: none)")
    ap.add_argument("--full-text", action="store_true",
                    help="also run prepare amazon with the text encoder over every item")
    ap.add_argument("--only-text", action="store_true", help="only the text-encoder run (to run "
                    "it beside the others on a busy machine)")
    ap.add_argument("--work", type=Path, default=Path("/tmp/mgnm-bench-prepare"))
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--generate-only", action="store_true", help=argparse.SUPPRESS)
    args = ap.parse_args()

    t0 = time.perf_counter()
    sizes = [args.small_images, args.images]
    if args.generate_only:
        generate(args.work, args.reviews, args.items, sizes, args.seed)
        return
    # generated in a child process: on Linux a child's peak RSS (wait4's ru_maxrss) starts from
    # its parent's peak, so a parent that had held the generated data would inflate every run
    subprocess.run([sys.executable, __file__, *sys.argv[1:], "--generate-only"], check=True)
    files = generate(args.work, args.reviews, args.items, sizes, args.seed)  # already there
    print(f"inputs ready in {time.perf_counter() - t0:.0f} s:")
    for p in [files["reviews"], files["meta"], *files["images"].values()]:
        print(f"  {p.name}: {p.stat().st_size / 2**20:,.0f} MiB")
    print("\n| run | wall s | CPU s | peak RSS (MiB) | output |\n| --- | --- | --- | --- | --- |",
          flush=True)

    def row(label: str, res: tuple[float, float, float, str], note: str = "") -> str:
        wall, cpu, peak, text = res
        print(f"| {label} | {wall:.1f} | {cpu:.1f} | {peak:,.0f} | {note} |", flush=True)
        return text

    mgnm = [sys.executable, "-m", "mgnm.cli"]
    if args.only_text:
        text_run(files["meta"], args.text_sample, row)
        return
    out = args.work / "out-notext"
    text = row(f"prepare amazon --no-text: {args.reviews:,} reviews, .b of {args.images:,} "
               f"records", run(mgnm + ["prepare", "amazon", "--reviews", str(files["reviews"]),
                                       "--meta", str(files["meta"]), "--image-features",
                                       str(files["images"][args.images]), "--no-text",
                                       "--out", str(out), "--quiet"]))
    result = json.loads((out / "prepare.json").read_text())["result"]
    print(f"<!-- {text.strip().splitlines()[-2]} -->", flush=True)
    code = ("import sys, tracemalloc; from mgnm.prepare.amazon import read_image_features; "
            "ids = [l.split('\\t')[0] for l in open(sys.argv[2]).read().splitlines()[1:]]; "
            "tracemalloc.start(); "
            "c = read_image_features(sys.argv[1], ids, sys.argv[3], quiet=True)['counts']; "
            "print(f'{c}; Python+numpy allocations peak "
            "{tracemalloc.get_traced_memory()[1] / 2**20:.1f} MiB')")
    for count in (args.small_images, args.images):
        size = files["images"][count].stat().st_size / 2**20
        res = run([sys.executable, "-c", code, str(files["images"][count]),
                   str(out / "i_id_map.tsv"), str(args.work / "img.npy")])
        row(f"image pass alone: .b of {count:,} records ({size:,.0f} MiB), "
            f"{result['items']:,} items", res, res[3].strip().split("; ")[-1])
    if args.text_sample:
        text_run(files["meta"], args.text_sample, row)
    if args.full_text:
        res = run(mgnm + ["prepare", "amazon", "--reviews", str(files["reviews"]), "--meta",
                          str(files["meta"]), "--image-features",
                          str(files["images"][args.images]), "--out",
                          str(args.work / "out-full"), "--quiet"])
        row(f"prepare amazon with text: {args.reviews:,} reviews, .b of {args.images:,} "
            f"records", res)
    print("\n" + json.dumps(result))


if __name__ == "__main__":
    main()
