"""The model contract shared by every recommender.

A model is pure computation: it receives :class:`~mgnm.data.ModelInputs` (tensors and graphs)
and its typed config, and exposes

- ``loss(users, pos_items, neg_items) -> dict[str, Tensor]``: the total under ``"loss"``,
  every term under its own name (logged per epoch);
- ``embeddings() -> (user_emb, item_emb)``: the final tables, scored by dot product
  (called once per evaluation pass, in eval mode, without gradient);
- ``pre_epoch(epoch)``: per-epoch work (edge pruning, neighbour sampling), optional;
- ``placement_class``: how it places a new user from a history and a new item from its
  features (:mod:`mgnm.models.placement`; by default: it cannot).

The trainer, sampler and evaluator are shared; a model never reads files.
"""

from __future__ import annotations

import inspect
from typing import Any, ClassVar

import torch
from pydantic import BaseModel, ConfigDict, Field
from torch import nn

from mgnm.data.inputs import ModelInputs
from mgnm.models.placement import IDOnly, Placement


class ModelConfig(BaseModel):
    """Base of every model's hyperparameters: frozen, and unknown keys are errors."""

    model_config = ConfigDict(extra="forbid", frozen=True, validate_default=True)

    embedding_size: int = Field(64, gt=0, description="d, the width of every embedding")


class Recommender(nn.Module):
    #: registry name, set by each subclass
    name: ClassVar[str] = ""
    Config: ClassVar[type[ModelConfig]] = ModelConfig
    #: needs at least one ``*_feat.npy`` modality
    needs_features: ClassVar[bool] = False
    #: draws one negative per positive (BM3 does not)
    uses_negatives: ClassVar[bool] = True
    #: overrides of the training defaults (learning-rate schedule, ...)
    train_defaults: ClassVar[dict[str, Any]] = {}
    #: the reference hyperparameter grid (docs/baselines.md), as lists per key
    grid: ClassVar[dict[str, list]] = {}
    #: how a trained model of this class places new users and new items
    placement_class: ClassVar[type[Placement]] = IDOnly

    @classmethod
    def summary(cls) -> str:
        """The first paragraph of the class docstring on one line, without RST's double
        backquotes (what ``mgnm models`` shows)."""
        first = inspect.cleandoc(cls.__doc__ or "").split("\n\n")[0]
        return " ".join(first.split()).replace("``", "")

    def __init__(self, config: ModelConfig, inputs: ModelInputs) -> None:
        super().__init__()
        self.config = config
        self.n_users = inputs.n_users
        self.n_items = inputs.n_items

    def loss(
        self, users: torch.Tensor, pos_items: torch.Tensor, neg_items: torch.Tensor | None
    ) -> dict[str, torch.Tensor]:
        raise NotImplementedError

    def embeddings(self) -> tuple[torch.Tensor, torch.Tensor]:
        raise NotImplementedError

    def pre_epoch(self, epoch: int) -> None:  # noqa: B027 - optional hook
        """Called before every training epoch, in train mode."""

    @property
    def stochastic_eval(self) -> bool:
        """True when ``embeddings()`` draws random numbers in eval mode (LGMRec's Gumbel
        noise); such a model reads them from :attr:`eval_generator`."""
        return False

    #: the generator of evaluation noise during :meth:`final_embeddings` (None otherwise)
    eval_generator: torch.Generator | None = None

    @torch.no_grad()
    def final_embeddings(
        self, generator: torch.Generator | None = None
    ) -> tuple[torch.Tensor, torch.Tensor]:
        """``embeddings()`` in eval mode, without gradient, detached from every parameter.

        What every consumer (evaluation, export, recommendation, serving) should call: some
        models return their parameters themselves (BPR), which still require grad. The
        module's train/eval mode is restored afterwards. ``generator`` supplies the noise of
        a :attr:`stochastic_eval` model (default: a fixed seed, so repeated calls agree).
        """
        was_training = self.training
        self.eval()
        if generator is None and self.stochastic_eval:
            generator = torch.Generator(device=next(self.parameters()).device)
            generator.manual_seed(0)
        self.eval_generator = generator
        try:
            u, i = self.embeddings()
        finally:
            self.eval_generator = None
            self.train(was_training)
        return u.detach(), i.detach()

    def score(self, users: torch.Tensor) -> torch.Tensor:
        """Scores of ``users`` against all items (convenience; the evaluator batches itself)."""
        u, i = self.final_embeddings()
        return u[users] @ i.T
