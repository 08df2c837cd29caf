"""Building blocks shared by several models."""

from __future__ import annotations

import torch
from torch import nn


class ItemFeatures(nn.Module):
    """Per-modality item feature tables, frozen (constant inputs) or fine-tuned (parameters).

    Frozen tables are non-persistent buffers: they come from the dataset and are not stored in
    checkpoints. Fine-tuned tables (MMRec's ``from_pretrained(freeze=False)``) are parameters
    initialised from the files and saved with the model.
    """

    def __init__(self, features: dict[str, torch.Tensor], finetune: bool) -> None:
        super().__init__()
        self.names = list(features)
        self.finetune = finetune
        if finetune:
            self.tables = nn.ParameterDict(
                {m: nn.Parameter(f.detach().clone().float()) for m, f in features.items()}
            )
        else:
            for m, f in features.items():
                self.register_buffer(f"feat_{m}", f.detach().float(), persistent=False)

    def __getitem__(self, name: str) -> torch.Tensor:
        return self.tables[name] if self.finetune else getattr(self, f"feat_{name}")

    def dims(self) -> dict[str, int]:
        return {m: int(self[m].shape[1]) for m in self.names}

    def items(self):
        return [(m, self[m]) for m in self.names]
