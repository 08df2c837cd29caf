"""Building blocks shared by several models."""

from __future__ import annotations

import torch
from torch import nn


class _LowPrecisionProduct(torch.autograd.Function):
    """``F @ W`` for a frozen bfloat16 table ``F``: the products run in bfloat16 (float32
    accumulation; AVX512-BF16/AMX CPUs and GPUs do them ~2x faster), ``W``, the result and
    ``W``'s gradient stay float32."""

    @staticmethod
    def forward(ctx, table: torch.Tensor, weight: torch.Tensor) -> torch.Tensor:  # type: ignore[override]
        ctx.save_for_backward(table)
        return (table @ weight.to(table.dtype)).float()

    @staticmethod
    def backward(ctx, grad: torch.Tensor):  # type: ignore[override]
        (table,) = ctx.saved_tensors
        # Gᵀ F, transposed: measured faster than Fᵀ G for a tall F on this CPU
        return None, (grad.to(table.dtype).T @ table).T.float()


FEATURE_DTYPES = {"float32": torch.float32, "bfloat16": torch.bfloat16}


class ItemFeatures(nn.Module):
    """Per-modality item feature tables, frozen (constant inputs) or fine-tuned (parameters).

    Frozen tables are non-persistent buffers: they come from the dataset and are not stored in
    checkpoints. Fine-tuned tables (MMRec's ``from_pretrained(freeze=False)``) are parameters
    initialised from the files and saved with the model. ``dtype="bfloat16"`` stores frozen
    tables in bfloat16 (half the memory) and runs :meth:`product` in bfloat16.
    """

    def __init__(self, features: dict[str, torch.Tensor], finetune: bool,
                 dtype: str = "float32") -> None:
        super().__init__()
        self.names = list(features)
        self.finetune = finetune
        if finetune and dtype != "float32":
            raise ValueError("fine-tuned feature tables are float32 (feature_dtype=float32)")
        if finetune:
            self.tables = nn.ParameterDict(
                {m: nn.Parameter(f.detach().clone().float()) for m, f in features.items()}
            )
        else:
            for m, f in features.items():
                self.register_buffer(f"feat_{m}", f.detach().to(FEATURE_DTYPES[dtype]),
                                     persistent=False)

    def product(self, name: str, weight: torch.Tensor) -> torch.Tensor:
        """``table @ weight`` in float32, whatever the table's storage."""
        table = self[name]
        if table.dtype == torch.float32:
            return table @ weight
        return _LowPrecisionProduct.apply(table, weight)

    def __getitem__(self, name: str) -> torch.Tensor:
        return self.tables[name] if self.finetune else getattr(self, f"feat_{name}")

    def dims(self) -> dict[str, int]:
        return {m: int(self[m].shape[1]) for m in self.names}

    def items(self):
        return [(m, self[m]) for m in self.names]
