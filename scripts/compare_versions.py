"""Do two versions of the code compute the same training steps? Loss terms and every
parameter's gradient, compared exactly.

    python scripts/compare_versions.py --old REV --data DATA_DIR/tiktok --preset mgnm-tiktok-image
    python scripts/compare_versions.py --old REV --data DATA_DIR/baby --model lightgcn --steps 3

``--old`` and ``--new`` (default: this checkout's ``src``) are each a ``src`` directory or a
git revision of this repository, whose ``src`` is extracted (``git archive``) to a temporary
directory. Each version runs in its own process (``PYTHONPATH`` = its ``src``, one thread):
the model built with the same seed, then ``--steps`` training batches of the first epoch
(the same batches: the sampler's stream depends only on the seed), each one's loss terms and
the gradient of every parameter recorded before the optimizer's step, then the evaluation
embeddings. Printed: each step's loss terms of both and their difference, the largest
absolute difference of each parameter's gradient over the steps, and whether everything is
equal bit for bit. A refactoring must give 0 everywhere; a change of the arithmetic (another
kernel, another summation order) shows as rounding-level differences (~1e-7 relative in
float32), which Adam turns into different trajectories within an epoch.
"""

from __future__ import annotations

import argparse
import os
import subprocess
import sys
import tempfile
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


def run_steps(args: argparse.Namespace, out: str) -> None:
    """In the child process: the steps of the version on ``PYTHONPATH``, saved to ``out``."""
    import torch

    try:
        from mgnm.config import load_preset, parse_set, resolve_config
    except ModuleNotFoundError:  # versions with the run config in train/
        from mgnm.train.config import load_preset, parse_set, resolve_config
    import mgnm
    from mgnm.data import load_dataset
    from mgnm.train.trainer import Trainer

    sources = [load_preset(args.preset)] if args.preset else []
    sources.append({"data": args.data, "threads": 1, "seed": args.seed})
    cfg = resolve_config(*sources, parse_set(args.set or []), model=args.model)
    trainer = Trainer(cfg, load_dataset(args.data))
    model = trainer.model
    steps = []
    with trainer._own_state():
        model.train()
        model.pre_epoch(0)
        batches = trainer.sampler.batches(0)
        for _ in range(args.steps):
            batch = next(batches)
            losses = model.loss(batch[0], batch[1], batch[2] if len(batch) > 2 else None)
            trainer.optimizer.zero_grad(set_to_none=True)
            losses["loss"].backward()
            steps.append({"losses": {k: v.detach().clone() for k, v in losses.items()},
                          "grads": {n: p.grad.clone() for n, p in model.named_parameters()
                                    if p.grad is not None}})
            trainer.optimizer.step()
        model.eval()
        with torch.no_grad():
            users, items = model.final_embeddings()
    torch.save({"mgnm": str(Path(mgnm.__file__).parent), "model": cfg.model, "steps": steps,
                "users": users, "items": items}, out)


def source_dir(version: str, tmp: Path, name: str) -> str:
    """``version`` if it is a directory, else the ``src`` of that git revision, extracted."""
    if Path(version).is_dir():
        return str(Path(version).resolve())
    dest = tmp / name
    dest.mkdir()
    archive = subprocess.run(["git", "-C", str(ROOT), "archive", version, "src"],
                             capture_output=True)
    if archive.returncode != 0:
        sys.exit(f"error: {version}: neither a directory nor a git revision "
                 f"({archive.stderr.decode().strip().splitlines()[-1]})")
    subprocess.run(["tar", "-x", "-C", str(dest)], input=archive.stdout, check=True)
    return str(dest / "src")


def max_abs(a, b) -> float:
    return float((a.double() - b.double()).abs().max()) if a.numel() else 0.0


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    p.add_argument("--old", required=True, help="a src directory or a git revision")
    p.add_argument("--new", default=str(ROOT / "src"), help="default: this checkout's src")
    p.add_argument("--data", required=True)
    p.add_argument("--model", help="the model (or the preset's)")
    p.add_argument("--preset", help="a preset shipped with mgnm (mgnm presets)")
    p.add_argument("--set", action="append", metavar="KEY=VALUE")
    p.add_argument("--seed", type=int, default=1)
    p.add_argument("--steps", type=int, default=2, help="training batches compared")
    p.add_argument("--single", help=argparse.SUPPRESS)
    args = p.parse_args()
    if args.single:
        run_steps(args, args.single)
        return
    if not (args.model or args.preset):
        p.error("give --model or --preset")
    import torch

    results = {}
    with tempfile.TemporaryDirectory(prefix="mgnm-compare-") as tmp:
        for name, version in (("old", args.old), ("new", args.new)):
            src = source_dir(version, Path(tmp), name)
            out = str(Path(tmp) / f"{name}.pt")
            cmd = [sys.executable, __file__, "--single", out, "--old", args.old, "--data",
                   args.data, "--seed", str(args.seed), "--steps", str(args.steps)]
            cmd += ["--model", args.model] if args.model else []
            cmd += ["--preset", args.preset] if args.preset else []
            cmd += [a for s in args.set or [] for a in ("--set", s)]
            env = dict(os.environ, PYTHONPATH=src, OMP_NUM_THREADS="1", MKL_NUM_THREADS="1")
            proc = subprocess.run(cmd, env=env, capture_output=True, text=True)
            if proc.returncode != 0:
                sys.exit(f"error: the {name} version ({version}) failed: "
                         f"{(proc.stderr.strip().splitlines() or ['?'])[-1]}")
            results[name] = torch.load(out, weights_only=True)
            if not Path(results[name]["mgnm"]).resolve().is_relative_to(Path(src).resolve()):
                sys.exit(f"error: {src}: mgnm was imported from {results[name]['mgnm']}")
            print(f"{name}: {version} ({results[name]['mgnm']})")
    a, b = results["old"], results["new"]
    print(f"model {a['model']}, data {args.data}, seed {args.seed}, {args.steps} steps")
    worst = 0.0
    for i, (sa, sb) in enumerate(zip(a["steps"], b["steps"], strict=True), 1):
        print(f"step {i}: loss terms (old, new, |difference|)")
        for k, va in sa["losses"].items():
            vb = sb["losses"].get(k)
            if vb is None:
                print(f"  {k}: {va.item():.9g}, missing in new")
                worst = float("inf")
                continue
            d = max_abs(va, vb)
            worst = max(worst, d)
            print(f"  {k}: {va.item():.9g}, {vb.item():.9g}, {d:.3g}")
        extra = sorted(set(sb["losses"]) - set(sa["losses"]))
        if extra:
            print(f"  only in new: {', '.join(extra)}")
            worst = float("inf")
    print("gradients: largest |old - new| over the steps (largest |old|)")
    for n in a["steps"][0]["grads"]:
        pairs = [(sa["grads"][n], sb["grads"].get(n)) for sa, sb in zip(a["steps"], b["steps"], strict=True)]
        if any(gb is None or gb.shape != ga.shape for ga, gb in pairs):
            print(f"  {n}: missing or of another shape in new")
            worst = float("inf")
            continue
        d = max(max_abs(ga, gb) for ga, gb in pairs)
        size = max(float(ga.abs().max()) for ga, _ in pairs)
        worst = max(worst, d)
        print(f"  {n} {tuple(pairs[0][0].shape)}: {d:.3g} ({size:.3g})")
    missing = sorted(set(b["steps"][0]["grads"]) - set(a["steps"][0]["grads"]))
    if missing:
        print(f"  only in new: {', '.join(missing)}")
        worst = float("inf")
    emb = max(max_abs(a["users"], b["users"]), max_abs(a["items"], b["items"]))
    worst = max(worst, emb)
    print(f"evaluation embeddings after the steps: largest |old - new| {emb:.3g}")
    print("identical bit for bit" if worst == 0.0 else f"NOT identical: largest difference {worst:.3g}")
    sys.exit(0 if worst == 0.0 else 1)


if __name__ == "__main__":
    main()
