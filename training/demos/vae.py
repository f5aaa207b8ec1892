"""A variational autoencoder with a 2-D latent plane on Fashion-MNIST.

The encoder maps an image to a Gaussian q(z|x) = N(mu, diag(exp(logvar)))
over a 2-D latent z; the decoder maps z to Bernoulli pixel probabilities. It
trains by maximising the ELBO = E_q[log p(x|z)] - KL(q(z|x) || N(0, I)),
estimated with one reparameterised sample z = mu + exp(logvar / 2) * eps.
The demo reports the held-out ELBO and its two parts in nats per image,
decodes a 15x15 grid over the latent plane at Gaussian quantiles (so each
cell holds equal prior mass), and decodes the straight line between the
latent means of pairs of held-out images.

Data: Fashion-MNIST (60,000 train, the 10,000 test images held out); ``--quick``
uses scikit-learn's 8x8 digits, split 80/20.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import torch
from scipy.stats import norm
from torch import nn

from training.demos import datasets
from training.demos.autoencoder import ImageSplit, mlp, parameter_count, scatter_by_class, split_images
from training.demos.common import DemoRun, new_figure, save_figure, save_image_grid
from training.trainer import Trainer

TITLE = "Variational autoencoder with a 2-D latent on Fashion-MNIST: ELBO, latent grid, interpolations"
LATENT = 2
GRID = 15  # the latent grid is GRID x GRID
INTERPOLATION_STEPS = 10


def gaussian_kl(mu: torch.Tensor, logvar: torch.Tensor) -> torch.Tensor:
    """KL(N(mu, diag(exp(logvar))) || N(0, I)) per row, summed over the last dimension (nats)."""
    return 0.5 * (mu.pow(2) + logvar.exp() - 1.0 - logvar).sum(dim=-1)


class VAE(nn.Module):
    """MLP encoder to (mu, logvar) of a 2-D Gaussian, MLP decoder to pixel logits."""

    def __init__(self, n_pixels: int, hidden: list[int]) -> None:
        super().__init__()
        self.encoder = mlp([n_pixels, *hidden, 2 * LATENT])
        self.decoder = mlp([LATENT, *reversed(hidden), n_pixels])

    def encode(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """(mu, logvar), each (B, LATENT), of q(z|x) for images x (B, P)."""
        mu, logvar = self.encoder(x).chunk(2, dim=-1)
        return mu, logvar

    def decode(self, z: torch.Tensor) -> torch.Tensor:
        """Pixel probabilities (B, P) for latents z (B, LATENT)."""
        return torch.sigmoid(self.decoder(z))

    def forward(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """(pixel logits of one sample z ~ q(z|x), mu, logvar)."""
        mu, logvar = self.encode(x)
        z = mu + torch.exp(0.5 * logvar) * torch.randn_like(mu)
        return self.decoder(z), mu, logvar


def negative_elbo(model: nn.Module, batch) -> tuple[torch.Tensor, dict[str, float]]:
    """-ELBO in nats per image; logs its parts ``recon`` (-log p(x|z)) and ``kl``, and ``elbo``."""
    (x,) = batch
    logits, mu, logvar = model(x)
    recon = nn.functional.binary_cross_entropy_with_logits(logits, x, reduction="none").sum(dim=1).mean()
    kl = gaussian_kl(mu, logvar).mean()
    loss = recon + kl
    return loss, {"recon": recon.item(), "kl": kl.item(), "elbo": -loss.item()}


def latent_quantiles() -> np.ndarray:
    """GRID standard-normal quantiles from 3% to 97%: equal prior mass between neighbours."""
    return norm.ppf(np.linspace(0.03, 0.97, GRID)).astype(np.float32)


def latent_grid(model: VAE, side: int) -> np.ndarray:
    """One mosaic of images decoded at (z1, z2) = quantile pairs, white 1-pixel gaps between them.

    Shape (GRID * (side + 1), GRID * (side + 1)); the top row has the highest z2.
    """
    q = latent_quantiles()
    z2, z1 = np.meshgrid(q[::-1], q, indexing="ij")
    z = torch.from_numpy(np.stack([z1.ravel(), z2.ravel()], axis=1))
    with torch.no_grad():
        tiles = model.decode(z).numpy().reshape(GRID, GRID, side, side)
    tiles = np.pad(tiles, ((0, 0), (0, 0), (0, 1), (0, 1)), constant_values=1.0)
    return tiles.transpose(0, 2, 1, 3).reshape(GRID * (side + 1), GRID * (side + 1))


def save_latent_grid(mosaic: np.ndarray, path: Path) -> Path:
    """The mosaic of :func:`latent_grid` with its axes labelled by the latent coordinates."""
    cell = mosaic.shape[0] // GRID  # a tile and its gap
    centres = cell * np.arange(GRID) + (cell - 2) / 2
    labels = [f"{v:.1f}" for v in latent_quantiles()]
    fig = new_figure(8, 8.4)
    ax = fig.subplots()
    ax.imshow(mosaic, cmap="gray", vmin=0.0, vmax=1.0, interpolation="nearest")
    ax.set_xticks(centres[::2], labels[::2])
    ax.set_yticks(centres[::2], labels[::-1][::2])
    ax.set_xlabel("latent z1")
    ax.set_ylabel("latent z2")
    ax.set_title(f"Decoder output on a {GRID}x{GRID} grid of the latent plane\n"
                 "(standard-normal quantiles 3%..97%: equal prior mass between neighbours)", fontsize=11)
    return save_figure(fig, path)


def interpolations(model: VAE, x: torch.Tensor, pairs: list[tuple[int, int]]) -> np.ndarray:
    """For each pair (a, b) of rows of x: INTERPOLATION_STEPS decodings from mu(a) to mu(b), (n, steps, P)."""
    with torch.no_grad():
        mu, _ = model.encode(x)
        t = torch.linspace(0.0, 1.0, INTERPOLATION_STEPS).unsqueeze(1)  # (steps, 1)
        return np.stack([model.decode((1 - t) * mu[a] + t * mu[b]).numpy() for a, b in pairs])


def independent_pixels_elbo(train_x: np.ndarray, test_x: np.ndarray) -> float:
    """The baseline: mean log-likelihood (nats) of test rows under independent Bernoulli pixels at the train means.

    It is the ELBO of a VAE whose decoder ignores z (KL 0): what the latent must beat.
    """
    p = np.clip(train_x.mean(axis=0), 1e-4, 1 - 1e-4)
    return float(np.mean((test_x * np.log(p) + (1 - test_x) * np.log1p(-p)).sum(axis=1)))


def load_split(demo: DemoRun) -> tuple[ImageSplit, tuple[str, ...] | None]:
    """Fashion-MNIST's train and test sets (full run) or sklearn's digits split 80/20 (quick), with class names."""
    if demo.quick:
        return split_images(*datasets.digits(), seed=demo.seed), None
    train_x, train_y = datasets.fashion_mnist("train")
    test_x, test_y = datasets.fashion_mnist("test")
    return ImageSplit(train_x.reshape(len(train_x), -1), train_y, test_x.reshape(len(test_x), -1), test_y,
                      train_x.shape[1]), datasets.FASHION_CLASSES


def run(demo: DemoRun) -> dict[str, object]:
    split, class_names = load_split(demo)
    if demo.quick:
        hidden, settings = [128, 64], dict(steps=1000, batch_size=64, lr=1e-2, val_every=250, log_every=50)
    else:
        hidden, settings = [512, 256], dict(steps=6000, batch_size=128, lr=1e-3, val_every=500, log_every=100)
    n_pixels = split.train_x.shape[1]

    torch.manual_seed(demo.seed)
    model = VAE(n_pixels, hidden)
    config = demo.train_config("vae", schedule="cosine", warmup_steps=100, val_metric="elbo", val_mode="max",
                               **settings)
    trainer = Trainer(model, negative_elbo, split.dataset("train"), split.dataset("test"), config=config,
                      extra_meta={"model": "VAE", "n_pixels": n_pixels, "hidden": hidden, "latent": LATENT})
    trainer.fit()
    held_out = trainer.evaluate()
    model.cpu().eval()

    x_test = torch.from_numpy(split.test_x)
    with torch.no_grad():
        mu_test = model.encode(x_test)[0].numpy()
    fig = new_figure(7, 6)
    scatter_by_class(fig.subplots(), mu_test, split.test_y,
                     f"latent means of {len(x_test)} held-out images", class_names, "latent mean z")
    save_figure(fig, demo.path("latent-means.png"))

    save_latent_grid(latent_grid(model, split.side), demo.path("latent-grid.png"))

    rng = np.random.default_rng(demo.seed)
    pairs = [tuple(int(i) for i in rng.choice(len(x_test), 2, replace=False)) for _ in range(6)]
    lines = interpolations(model, x_test, pairs)
    rows = [[split.test_x[a], *lines[k], split.test_x[b]] for k, (a, b) in enumerate(pairs)]
    save_image_grid(split.images(np.concatenate(rows)), demo.path("interpolations.png"),
                    ncols=INTERPOLATION_STEPS + 2, cell=0.8,
                    titles=["held-out A", *[f"t={t:.2f}" for t in np.linspace(0, 1, INTERPOLATION_STEPS)],
                            "held-out B"] + [""] * (len(rows) - 1) * (INTERPOLATION_STEPS + 2),
                    suptitle="Decoding the straight line between the latent means of two held-out images")

    return {
        "data": f"{'sklearn digits 8x8' if demo.quick else 'Fashion-MNIST 28x28'}: "
                f"{len(split.train_x)} train, {len(split.test_x)} held-out",
        "test_elbo_nats": held_out["elbo"],
        "test_recon_nats": held_out["recon"],
        "test_kl_nats": held_out["kl"],
        "baseline_independent_pixels_test_elbo_nats": independent_pixels_elbo(split.train_x, split.test_x),
        "train_elbo_nats": trainer.last_train["elbo"] if trainer.last_train else None,
        "parameters": parameter_count(model),
        "pictures": ["latent-grid.png", "interpolations.png", "latent-means.png", "vae/metrics.png"],
    }
