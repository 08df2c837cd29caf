"""Every model's first training step and its evaluation on CUDA equal the CPU's (marker
``cuda``: skipped without a GPU; benchmarks/gpu.sh runs them on a CUDA machine).

The comparison code (tests/devicecompare.py) is the same on every device; the tests without
the marker run it CPU against CPU: it passes on identical runs, fails when one parameter is
perturbed, and its redirection of random draws (what makes CPU and CUDA draw the same
numbers) reproduces the CPU's own draws exactly.
"""

from __future__ import annotations

import pytest
import torch
from devicecompare import CpuDraws, assert_same_step, one_step

from mgnm.evaluation.evaluator import Evaluator
from mgnm.models import MODELS

NO_CUDA = "torch.cuda.is_available() is False: the CUDA-marked tests need an NVIDIA GPU " \
          "(benchmarks/gpu.sh runs them on one)"


@pytest.mark.cuda
@pytest.mark.skipif(not torch.cuda.is_available(), reason=NO_CUDA)
@pytest.mark.parametrize("name", list(MODELS))
def test_cuda_step_and_metrics_equal_cpu(name, tiny):
    """Loss terms and every parameter's gradient after one ``loss`` + backward on the same
    seed and batch, the embeddings after one SGD step, and the evaluator's metrics."""
    cpu = one_step(name, tiny, "cpu")
    gpu = one_step(name, tiny, "cuda")
    assert_same_step(cpu, gpu)


@pytest.mark.cuda
@pytest.mark.skipif(not torch.cuda.is_available(), reason=NO_CUDA)
def test_cuda_evaluator_equals_cpu_on_the_same_embeddings(tiny):
    gen = torch.Generator().manual_seed(3)
    u = torch.randn(tiny.n_users, 16, generator=gen)
    i = torch.randn(tiny.n_items, 16, generator=gen)
    for split in ("valid", "test"):
        on_cpu = Evaluator(tiny, ks=(5, 10, 20)).evaluate(u, i, split, per_user=True)
        on_gpu = Evaluator(tiny, ks=(5, 10, 20), device="cuda").evaluate(
            u.cuda(), i.cuda(), split, per_user=True)
        for k, v in on_cpu.items():
            assert (v == on_gpu[k]).all(), f"{split} {k}"


# ---- the comparison itself, on the CPU (default suite) ----

@pytest.mark.parametrize("name", list(MODELS))
def test_redirected_draws_equal_the_cpu_draws(name, tiny):
    """Every model on the CPU with its random tensors drawn through the redirection (as on
    CUDA) equals the plain CPU run; the stochastic models did go through it."""
    # one thread: with several, some sparse reductions sum in thread order (seen: 5e-10 in
    # LATTICE's item gradient, 6e-7 in embeddings after Adam) and bit-equality is luck
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        plain = one_step(name, tiny, "cpu")
        redirected = one_step(name, tiny, "cpu", force=True)
    finally:
        torch.set_num_threads(threads)
    assert_same_step(plain, redirected, rtol=0, atol=0, metric_atol=0)
    if name in ("bm3", "dualgnn", "freedom", "lgmrec", "mgnm"):
        assert redirected.redirected, f"{name} drew no random tensor"


@pytest.mark.parametrize("name", ["lightgcn", "mgnm"])
def test_comparison_detects_one_perturbed_parameter(name, tiny):
    base = one_step(name, tiny, "cpu")
    assert_same_step(base, one_step(name, tiny, "cpu"))  # identical runs pass

    def nudge(model):
        first = next(model.parameters())
        first.view(-1)[0] += 1e-2  # one entry of one parameter

    with pytest.raises(AssertionError, match="loss term|gradient|embeddings"):
        assert_same_step(base, one_step(name, tiny, "cpu", perturb=nudge))


def test_comparison_detects_different_random_draws(tiny):
    """Another seed changes MGNM's dropout and Gumbel draws (and its initial parameters)."""
    with pytest.raises(AssertionError):
        assert_same_step(one_step("mgnm", tiny, "cpu"), one_step("mgnm", tiny, "cpu", seed=1))


def test_native_dropout_redirect_draws_the_cpu_dropout_mask():
    """On CUDA, F.dropout is the fused ``native_dropout``; its redirection draws the mask the
    CPU's F.dropout draws from the same seed."""
    x = torch.rand(7, 5) + 0.5
    torch.manual_seed(11)
    expected = torch.nn.functional.dropout(x, 0.3, training=True)
    with CpuDraws(force=True) as mode:
        torch.manual_seed(11)
        got, mask = torch.native_dropout(x, 0.3, True)
    assert "aten.native_dropout" in mode.redirected
    torch.testing.assert_close(got, expected)
    assert torch.equal(mask, expected != 0)
    assert 0 < int(mask.sum()) < mask.numel()


def test_device_generator_maps_to_a_cpu_generator_of_its_seed():
    mode = CpuDraws(force=True)
    g = torch.Generator().manual_seed(5)
    assert mode._cpu_generator(g) is g  # a CPU generator is used as it is
    ref = torch.empty(6).exponential_(generator=torch.Generator().manual_seed(5))
    with mode:
        got = torch.empty(6).exponential_(generator=g)
    torch.testing.assert_close(got, ref, rtol=0, atol=0)
