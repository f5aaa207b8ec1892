"""A 2-neuron bottleneck autoencoder against 2-component PCA on handwritten digits.

Both squeeze each image through two numbers. PCA is the best *linear* map
there and back (fitted by SVD on the training split only); the autoencoder,
an MLP with a few hundred ReLU units on each side of the bottleneck, may bend
the map. The demo plots both 2-D embeddings of the held-out digits coloured by
class, shows originals next to both reconstructions, and reports each one's
held-out mean squared error per pixel.

Data: the 5,000 MNIST digits of :func:`~training.demos.datasets.mnist5k`
(28x28); ``--quick`` uses scikit-learn's 8x8 digits. The pieces the VAE demo
shares (the split, the MLP, the class-coloured scatter) live here.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch
from matplotlib import colormaps
from torch import nn

from training.demos import datasets
from training.demos.common import DemoRun, new_figure, save_figure, save_image_grid
from training.trainer import Trainer

TITLE = "2-neuron bottleneck autoencoder vs 2-component PCA on MNIST digits"
TEST_FRACTION = 0.2


@dataclass
class ImageSplit:
    """Images flattened to rows of pixels in [0, 1], split into train and held-out parts."""

    train_x: np.ndarray  # (N_train, side * side) float32
    train_y: np.ndarray  # (N_train,) int64
    test_x: np.ndarray  # (N_test, side * side) float32
    test_y: np.ndarray  # (N_test,) int64
    side: int  # images are side x side

    def dataset(self, part: str) -> torch.utils.data.TensorDataset:
        """The ``"train"`` or ``"test"`` rows as a dataset of one-tensor batches ``(x,)``."""
        x = self.train_x if part == "train" else self.test_x
        return torch.utils.data.TensorDataset(torch.from_numpy(x))

    def images(self, rows: np.ndarray) -> np.ndarray:
        """Rows of pixels back as (N, side, side) images."""
        return np.asarray(rows).reshape(-1, self.side, self.side)


def split_images(images: np.ndarray, labels: np.ndarray, seed: int) -> ImageSplit:
    """A seeded 80/20 split of ``images`` (N, side, side) into flattened train and held-out rows."""
    train, test = datasets.holdout_split(len(images), TEST_FRACTION, seed)
    flat = images.reshape(len(images), -1).astype(np.float32)
    return ImageSplit(flat[train], labels[train], flat[test], labels[test], images.shape[1])


def mlp(sizes: list[int]) -> nn.Sequential:
    """Linear layers of the given widths with ReLU between them (none after the last)."""
    layers: list[nn.Module] = []
    for k, (n_in, n_out) in enumerate(zip(sizes[:-1], sizes[1:])):
        if k:
            layers.append(nn.ReLU())
        layers.append(nn.Linear(n_in, n_out))
    return nn.Sequential(*layers)


def parameter_count(model: nn.Module) -> int:
    return sum(p.numel() for p in model.parameters())


def scatter_by_class(ax, codes: np.ndarray, labels: np.ndarray, title: str,
                     class_names: tuple[str, ...] | None = None, axis_name: str = "code") -> None:
    """Points ``codes`` (N, 2) coloured by ``labels`` (0-9), with a legend of the classes."""
    cmap = colormaps["tab10"]
    for label in range(10):
        mine = labels == label
        name = class_names[label] if class_names else str(label)
        ax.scatter(codes[mine, 0], codes[mine, 1], s=6, alpha=0.7, color=cmap(label), label=name)
    ax.set_title(title, fontsize=10)
    ax.set_xlabel(f"{axis_name} 1")
    ax.set_ylabel(f"{axis_name} 2")
    ax.legend(markerscale=2.5, fontsize=7, loc="best", framealpha=0.8)


class Autoencoder(nn.Module):
    """MLP encoder to a 2-D code, mirrored MLP decoder back to pixels in [0, 1]."""

    def __init__(self, n_pixels: int, hidden: list[int]) -> None:
        super().__init__()
        self.encoder = mlp([n_pixels, *hidden, 2])
        self.decoder = nn.Sequential(mlp([2, *reversed(hidden), n_pixels]), nn.Sigmoid())

    def forward(self, x: torch.Tensor) -> torch.Tensor:  # (B, P) -> (B, P)
        return self.decoder(self.encoder(x))


def reconstruction_loss(model: nn.Module, batch) -> tuple[torch.Tensor, dict[str, float]]:
    """Mean squared error per pixel (the trainer logs it as ``loss``)."""
    (x,) = batch
    return nn.functional.mse_loss(model(x), x), {}


@dataclass
class PCA:
    """The top principal components of the training rows, by SVD of the centred data."""

    mean: np.ndarray  # (P,)
    components: np.ndarray  # (k, P), orthonormal rows

    @classmethod
    def fit(cls, x: np.ndarray, k: int) -> PCA:
        mean = x.mean(axis=0)
        _, _, vt = np.linalg.svd(x - mean, full_matrices=False)
        return cls(mean, vt[:k])

    def encode(self, x: np.ndarray) -> np.ndarray:
        return (x - self.mean) @ self.components.T

    def decode(self, codes: np.ndarray) -> np.ndarray:
        return codes @ self.components + self.mean


def mse(a: np.ndarray, b: np.ndarray) -> float:
    return float(np.mean((a - b) ** 2))


def one_per_class(labels: np.ndarray, n_classes: int = 10) -> np.ndarray:
    """The index of the first example of each class."""
    return np.array([int(np.flatnonzero(labels == c)[0]) for c in range(n_classes)])


def run(demo: DemoRun) -> dict[str, object]:
    if demo.quick:
        split = split_images(*datasets.digits(), seed=demo.seed)
        hidden, settings = [64, 32], dict(steps=500, batch_size=64, lr=3e-3, val_every=100, log_every=25)
    else:
        split = split_images(*datasets.mnist5k(), seed=demo.seed)
        hidden, settings = [512, 256], dict(steps=2000, batch_size=128, lr=1e-3, val_every=250, log_every=50)
    n_pixels = split.train_x.shape[1]

    pca = PCA.fit(split.train_x, 2)
    pca_test = pca.decode(pca.encode(split.test_x))

    torch.manual_seed(demo.seed)
    model = Autoencoder(n_pixels, hidden)
    config = demo.train_config("autoencoder", schedule="cosine", warmup_steps=100, **settings)
    trainer = Trainer(model, reconstruction_loss, split.dataset("train"), split.dataset("test"), config=config,
                      extra_meta={"model": "Autoencoder", "n_pixels": n_pixels, "hidden": hidden})
    trainer.fit()
    model.eval()
    with torch.no_grad():
        x_test = torch.from_numpy(split.test_x).to(trainer.device)
        ae_codes = model.encoder(x_test).cpu().numpy()
        ae_test = model(x_test).cpu().numpy()

    fig = new_figure(11, 5)
    ax_ae, ax_pca = fig.subplots(1, 2)
    scatter_by_class(ax_ae, ae_codes, split.test_y,
                     f"autoencoder codes (held-out MSE {mse(ae_test, split.test_x):.4f})")
    scatter_by_class(ax_pca, pca.encode(split.test_x), split.test_y,
                     f"PCA, 2 components (held-out MSE {mse(pca_test, split.test_x):.4f})")
    fig.suptitle(f"{len(split.test_x)} held-out digits squeezed through two numbers", fontsize=12)
    save_figure(fig, demo.path("embeddings.png"))

    shown = one_per_class(split.test_y)
    save_image_grid([*split.images(split.test_x[shown]), *split.images(ae_test[shown]),
                     *split.images(pca_test[shown])],
                    demo.path("reconstructions.png"), ncols=len(shown), cell=1.0,
                    row_labels=["original", "autoencoder", "PCA"],
                    suptitle="Held-out digits and their reconstructions from a 2-D code")

    return {
        "data": f"{'sklearn digits 8x8' if demo.quick else 'MNIST 5k 28x28'}: "
                f"{len(split.train_x)} train, {len(split.test_x)} held-out",
        "autoencoder_test_mse": mse(ae_test, split.test_x),
        "pca_test_mse": mse(pca_test, split.test_x),
        "pca_train_mse": mse(pca.decode(pca.encode(split.train_x)), split.train_x),
        "autoencoder_parameters": parameter_count(model),
        "pca_parameters": int(pca.mean.size + pca.components.size),
        "pictures": ["embeddings.png", "reconstructions.png", "autoencoder/metrics.png"],
    }
