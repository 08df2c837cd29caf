"""Do two versions of the code compute the same training step? (Speed changes must not change
the mathematics; only rounding may differ.)

    git worktree add /tmp/before <commit>
    python scripts/compare_versions.py --old /tmp/before/src --data ../shared/data/tiktok \
        --model mgnm --set n_mm_layers=6 --set learning_rate=0.005

Each version runs in its own process (``PYTHONPATH`` = its ``src``): the model built with the
same seed, one training batch's loss terms and the gradient of every parameter (the same
Gumbel noise and dropout: the torch stream is reseeded before the step), then the evaluation
embeddings. Printed: each loss term of both, and the relative difference
``||a - b|| / ||a||`` of every gradient and of the embeddings. Rounding-level differences
(~1e-7 in float32) mean the same function; Adam turns them into different trajectories
within an epoch, which is why results are compared over seeds, not bit for bit.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
from pathlib import Path

SRC = Path(__file__).resolve().parents[1] / "src"


def one_step(args: argparse.Namespace, out: str) -> None:
    import torch

    from mgnm.config import parse_set, resolve_config
    from mgnm.data import load_dataset
    from mgnm.train.trainer import Trainer

    ds = load_dataset(args.data)
    cfg = resolve_config({"model": args.model, "threads": 1, "seed": args.seed},
                         parse_set(args.set or []))
    trainer = Trainer(cfg, ds)
    model = trainer.model
    batch = next(iter(trainer.sampler.batches(0)))
    with trainer._own_state():
        model.train()
        torch.manual_seed(args.seed)
        losses = model.loss(batch[0], batch[1], batch[2] if len(batch) > 2 else None)
        losses["loss"].backward()
        model.eval()
        with torch.no_grad():
            users, items = model.embeddings()
    torch.save({"losses": {k: v.item() for k, v in losses.items()},
                "grads": {n: p.grad for n, p in model.named_parameters() if p.grad is not None},
                "users": users, "items": items}, out)


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    p.add_argument("--old", required=True, help="the other version's src directory")
    p.add_argument("--new", default=str(SRC), help="default: this checkout's src")
    p.add_argument("--data", required=True)
    p.add_argument("--model", required=True)
    p.add_argument("--set", action="append", metavar="KEY=VALUE")
    p.add_argument("--seed", type=int, default=1)
    p.add_argument("--single", help=argparse.SUPPRESS)
    args = p.parse_args()
    if args.single:
        one_step(args, args.single)
        return
    import torch

    results = {}
    with tempfile.TemporaryDirectory() as tmp:
        for name, src in (("old", args.old), ("new", args.new)):
            out = str(Path(tmp) / f"{name}.pt")
            cmd = [sys.executable, __file__, "--single", out, "--old", args.old,
                   "--data", args.data, "--model", args.model, "--seed", str(args.seed)]
            cmd += [a for s in args.set or [] for a in ("--set", s)]
            proc = subprocess.run(cmd, env=dict(os.environ, PYTHONPATH=src),
                                  capture_output=True, text=True)
            if proc.returncode != 0:
                sys.exit(f"error: the {name} version failed: "
                         f"{(proc.stderr.strip().splitlines() or ['?'])[-1]}")
            results[name] = torch.load(out)
    a, b = results["old"], results["new"]
    print("loss terms (old, new):")
    print(json.dumps({k: [a["losses"][k], b["losses"].get(k)] for k in a["losses"]}, indent=1))

    def rel(x, y) -> float:
        return float((x - y).norm() / x.norm().clamp_min(1e-30))

    print("relative difference of each gradient:")
    for name, g in a["grads"].items():
        other = b["grads"].get(name)
        print(f"  {name}: {'missing in new' if other is None else f'{rel(g, other):.2e}'}")
    print(f"evaluation embeddings: users {rel(a['users'], b['users']):.2e}, "
          f"items {rel(a['items'], b['items']):.2e}")


if __name__ == "__main__":
    main()
