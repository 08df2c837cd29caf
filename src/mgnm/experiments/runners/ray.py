"""Experiments on Ray: every run of a sweep is a Ray task (``mgnm experiment --backend ray``).

The semantics are the local backend's: runs live in the same directories under ``--out``
(on a cluster that must be a filesystem every node mounts at the same path), a finished run
with the same resolved config is reused without starting a task, and a task resumes its run
from ``checkpoint.pt``. When a task's worker process dies (killed, out of memory, node
lost), Ray retries the task (``max_retries``) and the retry resumes from the last
checkpoint, not from epoch 0. The driver shows one progress view and writes the same tables.
Ray does the scheduling; nothing here queues or places work itself.
"""

from __future__ import annotations

import contextlib
from collections.abc import Callable, Iterator, Sequence
from typing import Any

from mgnm.errors import MgnmError
from mgnm.experiments.grid import RunOutcome, RunSpec, finished_result
from mgnm.experiments.runners.local import attempt, run_one, with_threads
from mgnm.train.trainer import Callback


def require_ray() -> Any:
    """The ``ray`` module, or a one-line error naming the extra that installs it."""
    try:
        import ray
    except ImportError:
        raise MgnmError("the Ray backend needs Ray: pip install 'mgnm[ray]'") from None
    return ray


@contextlib.contextmanager
def ray_session(address: str | None = None, num_cpus: int | None = None) -> Iterator[Any]:
    """Use the Ray session already started in this process, or join ``address`` (``auto``,
    ``HOST:PORT`` or ``ray://HOST:PORT``), or start a local one; shut down what we started."""
    ray = require_ray()
    if ray.is_initialized():
        yield ray
        return
    kwargs: dict[str, Any] = {"log_to_driver": False, "logging_level": "ERROR"}
    if address:
        kwargs["address"] = address
    else:
        kwargs.update(num_cpus=num_cpus, include_dashboard=False)
    try:
        ray.init(**kwargs)
    except Exception as exc:  # Ray raises bare Exception too (e.g. a raylet start timeout)
        ray.shutdown()
        where = f"the Ray cluster at {address}" if address else "a local Ray instance"
        raise MgnmError(f"cannot start or join {where} ({str(exc).splitlines()[0]})") from None
    try:
        yield ray
    finally:
        ray.shutdown()


def _task(spec: RunSpec, callbacks: Sequence[Callback]) -> RunOutcome:
    """The body of one Ray task: train (or resume) the run in the worker process."""
    return attempt(spec, lambda: run_one(spec, callbacks))


def _one_line(exc: BaseException) -> str:
    text = str(exc).strip().splitlines()
    return f"{type(exc).__name__}: {text[-1] if text else 'no detail'}"


def run_all_ray(
    specs: Sequence[RunSpec],
    *,
    address: str | None = None,
    cpus_per_run: float = 1.0,
    gpus_per_run: float = 0.0,
    max_retries: int = 3,
    num_cpus: int | None = None,
    on_done: Callable[[RunOutcome], None] | None = None,
    on_running: Callable[[int], None] | None = None,
    callbacks: Sequence[Callback] = (),
    poll_seconds: float = 1.0,
) -> list[RunOutcome]:
    """Run every spec as a Ray task with ``cpus_per_run`` CPUs and ``gpus_per_run`` GPUs
    (and as many torch threads as CPUs, unless the config sets ``threads``).

    Finished runs are reused on the driver; the others are submitted at once and Ray runs
    as many as the cluster's resources allow. ``num_cpus`` sizes a local Ray instance that
    this call starts (default: every core)."""
    outcomes: dict[int, RunOutcome] = {}
    todo = []
    for i, spec in enumerate(specs):
        try:
            done = finished_result(spec)
        except MgnmError as exc:
            outcomes[i] = RunOutcome(spec, None, str(exc))
        else:
            if done is None:
                todo.append(i)
                continue
            outcomes[i] = RunOutcome(spec, done, reused=True)
        if on_done:
            on_done(outcomes[i])
    if todo:
        with ray_session(address, num_cpus) as ray:
            remote = ray.remote(_task).options(num_cpus=cpus_per_run, num_gpus=gpus_per_run,
                                               max_retries=max_retries, retry_exceptions=False)
            threads = max(1, int(cpus_per_run))
            refs = {remote.remote(with_threads(specs[i], threads), list(callbacks)): i
                    for i in todo}
            slots = ray.cluster_resources().get("CPU", 1.0) / max(cpus_per_run, 1e-9)
            pending = list(refs)
            while pending:
                if on_running:  # Ray runs as many as fit; the others wait for resources
                    on_running(int(min(len(pending), max(slots, 1))))
                ready, pending = ray.wait(pending, num_returns=1, timeout=poll_seconds)
                for ref in ready:
                    i = refs[ref]
                    try:
                        outcomes[i] = ray.get(ref)
                    except Exception as exc:  # the task died more than max_retries times
                        outcomes[i] = RunOutcome(specs[i], None, _one_line(exc))
                    if on_done:
                        on_done(outcomes[i])
            if on_running:
                on_running(0)
    return [outcomes[i] for i in range(len(specs))]
