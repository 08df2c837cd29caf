"""One model's first training step and its evaluation, run on any device, and the comparison
of two such runs (CPU against CUDA in tests/test_cuda.py; CPU against CPU in the default suite,
which proves the comparison itself works).

The two runs must see the same random numbers: dropout masks (BM3, MGNM/LGMRec's hyperedge
dropout), Gumbel noise, FREEDOM's edge sample, DualGNN's neighbour sample. CPU and CUDA
generators differ even with the same seed, so :class:`CpuDraws` (a torch dispatch mode)
draws every random tensor of a non-CPU device on the CPU, from the CPU generator (or, for an
explicit device generator, from a CPU generator seeded with its initial seed), and copies it
to the device. The model code is unchanged: the mode intercepts torch's random operators.
``force=True`` redirects CPU tensors the same way, so the redirection is exercised without a GPU.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np
import torch
from torch.utils._python_dispatch import TorchDispatchMode
from torch.utils._pytree import tree_map

from mgnm.config import resolve_config
from mgnm.data import Dataset
from mgnm.evaluation.evaluator import Evaluator
from mgnm.models import MODELS
from mgnm.runs import build_model

aten = torch.ops.aten
RANDOM_OPS = {
    aten.bernoulli, aten.bernoulli_, aten.exponential, aten.exponential_, aten.log_normal,
    aten.log_normal_, aten.normal, aten.normal_, aten.uniform, aten.uniform_, aten.rand,
    aten.rand_like, aten.randn, aten.randn_like, aten.randint, aten.randint_like,
    aten.randperm, aten.multinomial, aten.random_, aten.geometric_, aten.cauchy_,
}


class CpuDraws(TorchDispatchMode):
    """Random tensors of any device drawn on the CPU (see the module docstring)."""

    def __init__(self, force: bool = False) -> None:
        super().__init__()
        self.force = force
        self.redirected: list[str] = []  # names of the operators drawn on the CPU instead
        self._generators: dict[int, tuple[torch.Generator, torch.Generator]] = {}

    def _cpu_generator(self, gen: torch.Generator) -> torch.Generator:
        if gen.device.type == "cpu":
            return gen
        if id(gen) not in self._generators:  # keyed by identity; the pair keeps gen alive
            cpu = torch.Generator()
            cpu.manual_seed(gen.initial_seed())
            self._generators[id(gen)] = (gen, cpu)
        return self._generators[id(gen)][1]

    def _to_cpu(self, x: Any) -> Any:
        if isinstance(x, torch.Tensor):
            return x.cpu()
        if isinstance(x, torch.Generator):
            return self._cpu_generator(x)
        if isinstance(x, torch.device):
            return torch.device("cpu")
        return x

    @staticmethod
    def _device(args: tuple, kwargs: dict) -> torch.device:
        for a in args:
            if isinstance(a, torch.Tensor):
                return a.device
        dev = kwargs.get("device")
        return torch.device(dev) if dev is not None else torch.device("cpu")

    def __torch_dispatch__(self, func, types, args=(), kwargs=None):
        kwargs = kwargs or {}
        packet = func.overloadpacket
        if packet is not aten.native_dropout and packet not in RANDOM_OPS:
            return func(*args, **kwargs)
        device = self._device(args, kwargs)
        if device.type == "cpu" and not self.force:
            return func(*args, **kwargs)
        self.redirected.append(str(packet))
        cpu_args, cpu_kwargs = tree_map(self._to_cpu, args), tree_map(self._to_cpu, kwargs)
        if packet is aten.native_dropout:
            # what F.dropout does on the CPU: a Bernoulli(1 - p) mask of the input's shape
            x, p, train = args[0], args[1], args[2] if len(args) > 2 else True
            if not train or p == 0:
                return x.clone(), torch.ones_like(x, dtype=torch.bool)
            keep = torch.empty(x.shape, dtype=x.dtype).bernoulli_(1 - p).to(device)
            return x * keep / (1 - p), keep.bool()
        out = func(*cpu_args, **cpu_kwargs)
        if str(packet).endswith("_"):  # in place: fill the device tensor
            return args[0].copy_(out)
        return tree_map(lambda t: t.to(device) if isinstance(t, torch.Tensor) else t, out)


def fixed_batch(dataset: Dataset, seed: int, size: int = 48) -> tuple[np.ndarray, ...]:
    """``size`` training pairs and one random negative each, drawn with numpy (device-free)."""
    rng = np.random.default_rng(seed)
    rows = rng.choice(len(dataset.train.users), size=size, replace=False)
    return (dataset.train.users[rows], dataset.train.items[rows],
            rng.integers(0, dataset.n_items, size=size))


@dataclass
class StepResult:
    losses: dict[str, float]
    grads: dict[str, torch.Tensor | None]  # on the CPU
    embeddings: tuple[torch.Tensor, torch.Tensor]  # after one SGD step, on the CPU
    metrics: dict[str, dict[str, float]]  # Evaluator on the run's device, valid and test
    redirected: list[str]


def one_step(name: str, dataset: Dataset, device: str | torch.device, *, seed: int = 0,
             force: bool = False, perturb=None) -> StepResult:
    """Build ``name`` on ``device`` (seeded), run ``pre_epoch(0)``, ``loss`` on a fixed batch
    and its backward, one plain SGD step, then ``final_embeddings()`` and the evaluator.

    SGD, not Adam: a step linear in the gradient keeps the devices' gradient tolerance in the
    embeddings. Adam's first step is ``lr * g / (|g| + eps)``, a near sign of the gradient, and
    turns rounding noise into a full step wherever a gradient is zero in exact arithmetic (on
    an H200, VBPR's projection bias, which cancels in every BPR difference: gradients of
    ~1e-7 that differ by 1% between the devices gave embeddings 3.4e-5 apart).
    ``perturb(model)`` (optional) edits the model right after it is built."""
    device = torch.device(device)
    cls = MODELS[name]
    config = resolve_config({"model": name, "device": device.type})
    with CpuDraws(force=force) as draws:
        torch.manual_seed(seed)
        model = build_model(config, dataset, device)
        if perturb is not None:
            with torch.no_grad():
                perturb(model)
        model.train()
        model.pre_epoch(0)
        users, pos, neg = (torch.as_tensor(a, dtype=torch.long, device=device)
                           for a in fixed_batch(dataset, seed))
        out = model.loss(users, pos, neg if cls.uses_negatives else None)
        out["loss"].backward()
        losses = {k: float(torch.as_tensor(v).detach()) for k, v in out.items()}
        grads = {n: (p.grad.detach().cpu() if p.grad is not None else None)
                 for n, p in model.named_parameters()}
        torch.optim.SGD(model.parameters(), lr=1e-1).step()
        u, i = model.final_embeddings()
        evaluator = Evaluator(dataset, ks=(5, 10), device=device)
        metrics = {s: evaluator.evaluate(u, i, s) for s in ("valid", "test")}
    return StepResult(losses, grads, (u.cpu(), i.cpu()), metrics, draws.redirected)


def assert_same_step(a: StepResult, b: StepResult, *, rtol: float = 1e-4, atol: float = 1e-5,
                     metric_atol: float = 1e-6) -> None:
    """``a`` and ``b`` agree within float tolerance; AssertionError naming what differs."""
    assert a.losses.keys() == b.losses.keys(), f"loss terms {list(a.losses)} != {list(b.losses)}"
    for k in a.losses:
        torch.testing.assert_close(a.losses[k], b.losses[k], rtol=rtol, atol=atol,
                                   msg=lambda m, k=k: f"loss term {k!r}: {m}")
    assert a.grads.keys() == b.grads.keys(), "the models have different parameters"
    for n, ga in a.grads.items():
        gb = b.grads[n]
        assert (ga is None) == (gb is None), f"parameter {n!r}: gradient present on one side only"
        if ga is not None:
            torch.testing.assert_close(ga, gb, rtol=rtol, atol=atol,
                                       msg=lambda m, n=n: f"gradient of {n!r}: {m}")
    for side, ea, eb in zip(("user", "item"), a.embeddings, b.embeddings, strict=True):
        torch.testing.assert_close(ea, eb, rtol=rtol, atol=atol,
                                   msg=lambda m, side=side: f"{side} embeddings: {m}")
    for split, ma in a.metrics.items():
        for k, v in ma.items():
            assert abs(v - b.metrics[split][k]) <= metric_atol, \
                f"{split} {k}: {v} != {b.metrics[split][k]}"
