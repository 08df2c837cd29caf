"""Seconds per full evaluation pass (validation split) with the old four metrics and with all.

    python benchmarks/bench_eval.py --data DATA_DIR/baby --passes 7

A LightGCN with its random initial weights (seed 999) gives the user and item tables; the
same tables are evaluated with ``metrics`` = recall, ndcg, precision, map (what every pass
computed before the metrics key existed) and with every registered metric, at the default
K = 5, 10, 20, 50, on one thread. Each setting is warmed up once, then timed ``--passes``
times, alternating between the two; the medians and their ratio are printed.
"""

from __future__ import annotations

import argparse
import statistics
import time

import torch


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--data", required=True, help="MMRec-format dataset directory")
    parser.add_argument("--passes", type=int, default=7)
    parser.add_argument("--threads", type=int, default=1)
    args = parser.parse_args()
    torch.set_num_threads(args.threads)

    from mgnm.config import resolve_config
    from mgnm.data import load_dataset
    from mgnm.evaluation.evaluator import Evaluator
    from mgnm.evaluation.metrics import OLD_DEFAULT, known_metrics
    from mgnm.runs import build_model, prepare_dataset

    cfg = resolve_config({"data": args.data}, model="lightgcn")
    ds = prepare_dataset(cfg, load_dataset(args.data))
    torch.manual_seed(cfg.train.seed)
    model = build_model(cfg, ds, torch.device("cpu"))
    with torch.no_grad():
        user_emb, item_emb = model.final_embeddings()
    evaluators = {"old four": Evaluator(ds, ks=cfg.train.topk, metrics=OLD_DEFAULT),
                  "all": Evaluator(ds, ks=cfg.train.topk, metrics=known_metrics())}
    times: dict[str, list[float]] = {name: [] for name in evaluators}
    for ev in evaluators.values():  # warm-up: plans, popularity tables, caches
        ev.evaluate(user_emb, item_emb, "valid")
    for _ in range(args.passes):
        for name, ev in evaluators.items():
            t0 = time.perf_counter()
            ev.evaluate(user_emb, item_emb, "valid")
            times[name].append(time.perf_counter() - t0)
    med = {name: statistics.median(t) for name, t in times.items()}
    print(f"{ds.name}: {evaluators['all'].n_users('valid')} validation users x {ds.n_items} "
          f"items, K = {list(cfg.train.topk)}, {args.threads} thread(s), median of "
          f"{args.passes} passes")
    for name, ev in evaluators.items():
        print(f"  {name:9s} ({len(ev.metrics):2d} metrics): {med[name]:.3f} s/pass  "
              f"(all passes: {', '.join(f'{t:.3f}' for t in times[name])})")
    print(f"  ratio all / old four: {med['all'] / med['old four']:.3f}")


if __name__ == "__main__":
    main()
