"""Demo ``fonts``: an autoencoder whose latent code is a whole font, and new fonts drawn from it.

Each face is one (36, 32, 32) sheet of its glyphs A-Z, 0-9 (see
:mod:`training.demos.glyphs`). The encoder reads the whole sheet (the 36
glyphs as 36 input channels) and squeezes it into ``latent`` numbers; the
decoder paints all 36 glyphs back from them. A point of the latent space is
therefore a font, not a letter: moving through the space changes the style of
every glyph at once. Held-out faces (fonts the net never saw) are
reconstructed and compared with the baseline "mean training face"; new fonts
come from walking between two held-out fonts and from random latents drawn
from a Gaussian fitted to the training fonts' codes.
"""

from __future__ import annotations

import numpy as np
import torch
from torch import nn
from torch.nn import functional as F
from torch.utils.data import TensorDataset

from training.demos.common import DemoRun, new_figure, save_figure
from training.demos.glyphs import load_faces, split_faces
from training.trainer import Trainer

TITLE = "Font autoencoder: the latent code is a font; interpolate and sample new alphabets"


class FontAutoencoder(nn.Module):
    """Sheet (B, 36, 32, 32) -> latent (B, latent) -> logits of the sheet (B, 36, 32, 32).

    The decoder paints on top of the mean training face (``mean_face``, added
    in logit space): an untrained net already draws the baseline, and training
    only has to learn how a font departs from the average one.
    """

    def __init__(self, mean_face: np.ndarray, latent: int = 32, width: int = 64) -> None:
        super().__init__()
        glyphs = mean_face.shape[0]
        self.register_buffer("mean_logit", torch.logit(torch.as_tensor(mean_face).clamp(0.01, 0.99)))
        self.encoder = nn.Sequential(
            nn.Conv2d(glyphs, width, 4, 2, 1), nn.LeakyReLU(0.2),  # 16x16
            nn.Conv2d(width, 2 * width, 4, 2, 1), nn.LeakyReLU(0.2),  # 8x8
            nn.Conv2d(2 * width, 2 * width, 4, 2, 1), nn.LeakyReLU(0.2),  # 4x4
            nn.Flatten(), nn.Linear(2 * width * 16, latent))
        self.decoder = nn.Sequential(
            nn.Linear(latent, 2 * width * 16), nn.LeakyReLU(0.2), nn.Unflatten(1, (2 * width, 4, 4)),
            nn.ConvTranspose2d(2 * width, 2 * width, 4, 2, 1), nn.LeakyReLU(0.2),  # 8x8
            nn.ConvTranspose2d(2 * width, width, 4, 2, 1), nn.LeakyReLU(0.2),  # 16x16
            nn.ConvTranspose2d(width, glyphs, 4, 2, 1))  # 32x32 logits

    def encode(self, sheets: torch.Tensor) -> torch.Tensor:
        return self.encoder(sheets)

    def decode(self, codes: torch.Tensor) -> torch.Tensor:
        """Sheets in [0, 1] (B, 36, 32, 32) for latent codes (B, latent)."""
        return torch.sigmoid(self.decoder(codes) + self.mean_logit)

    def forward(self, sheets: torch.Tensor) -> torch.Tensor:
        return self.decoder(self.encoder(sheets)) + self.mean_logit


def reconstruction_loss(model: nn.Module, batch) -> tuple[torch.Tensor, dict[str, float]]:
    """Pixel-wise binary cross-entropy (sharper strokes than MSE); the figure reported is MSE."""
    (sheets,) = batch
    logits = model(sheets)
    mse = F.mse_loss(torch.sigmoid(logits), sheets)
    return F.binary_cross_entropy_with_logits(logits, sheets), {"mse": mse.item()}


def save_alphabets(sheets: list[np.ndarray], labels: list[str], path, title: str):
    """One row per font: its 36 glyphs side by side (black ink on white), labelled on the left."""
    strips = [np.concatenate(list(sheet), axis=1) for sheet in sheets]  # each (32, 36 * 32)
    fig = new_figure(12, 0.42 * len(strips) + 0.6)
    axes = fig.subplots(len(strips), 1, squeeze=False)[:, 0]
    for ax, strip, label in zip(axes, strips, labels):
        ax.imshow(1.0 - np.clip(strip, 0, 1), cmap="gray", vmin=0, vmax=1, interpolation="antialiased")
        ax.set_xticks([])
        ax.set_yticks([])
        ax.set_ylabel(label, rotation=0, ha="right", va="center", fontsize=8)
        for spine in ax.spines.values():
            spine.set_visible(False)
    fig.suptitle(title, fontsize=10)
    return save_figure(fig, path, dpi=90)


def run(demo: DemoRun) -> dict[str, object]:
    faces = load_faces(quick=demo.quick)
    train_rows, held_rows = split_faces(len(faces), 0.15 if not demo.quick else 0.25, demo.seed)
    train, held = faces.subset(train_rows), faces.subset(held_rows)

    mean_face = train.sheets.mean(axis=0)
    torch.manual_seed(demo.seed)
    model = FontAutoencoder(mean_face, latent=8 if demo.quick else 32, width=32 if demo.quick else 64)
    steps = 150 if demo.quick else 1500
    config = demo.train_config(steps=steps, batch_size=8 if demo.quick else 32, optimizer="adam", lr=2e-3,
                               schedule="cosine", warmup_steps=steps // 20, val_every=max(steps // 10, 1),
                               log_every=max(steps // 30, 1), val_metric="mse", ckpt_every=steps)
    trainer = Trainer(model, reconstruction_loss, TensorDataset(torch.from_numpy(train.sheets)),
                      TensorDataset(torch.from_numpy(held.sheets)), config=config,
                      extra_meta={"latent": model.decoder[0].in_features})
    trainer.fit()
    held_mse = trainer.evaluate()["mse"]
    baseline_mse = float(((held.sheets - mean_face) ** 2).mean())

    model.eval()
    with torch.no_grad():
        held_codes = model.encode(torch.from_numpy(held.sheets))
        recon = model.decode(held_codes).numpy()
        train_codes = model.encode(torch.from_numpy(train.sheets)).numpy()
        # the two most different of the first dozen held-out fonts: the walk between them shows the most
        candidates = held_codes[:12]
        i, j = divmod(int(torch.cdist(candidates, candidates).argmax()), len(candidates))
        a, b = held_codes[i], held_codes[j]
        steps_t = torch.linspace(0, 1, 7)[:, None]
        walk = model.decode((1 - steps_t) * a + steps_t * b).numpy()
        rng = np.random.default_rng(demo.seed)
        cov = np.cov(train_codes, rowvar=False) + 1e-6 * np.eye(train_codes.shape[1])
        random_codes = rng.multivariate_normal(train_codes.mean(0), cov, size=8).astype(np.float32)
        sampled = model.decode(torch.from_numpy(random_codes)).numpy()

    shown = min(5, len(held))
    rows, labels = [], []
    for k in range(shown):
        rows += [held.sheets[k], recon[k]]
        labels += [held.faces[k].name[:28], "reconstruction"]
    files = {
        "reconstructions": save_alphabets(
            rows, labels, demo.path("fonts-heldout-reconstructions.png"),
            f"Held-out fonts and their reconstructions from a {model.decoder[0].in_features}-number code "
            f"(MSE {held_mse:.4f}; mean training face {baseline_mse:.4f})").name,
        "interpolation": save_alphabets(
            list(walk), [held.faces[i].name[:28]] + [f"t = {t:.2f}" for t in steps_t[1:-1, 0].tolist()]
            + [held.faces[j].name[:28]], demo.path("fonts-interpolation.png"),
            "New fonts between two held-out fonts: decoding points on the line between their codes").name,
        "random": save_alphabets(
            list(sampled), [f"random font {k + 1}" for k in range(len(sampled))], demo.path("fonts-random.png"),
            "New fonts from random codes (a Gaussian fitted to the training fonts' codes)").name,
    }
    return {
        "faces": len(faces), "train_faces": len(train), "heldout_faces": len(held),
        "heldout_mse": held_mse, "baseline_mean_face_mse": baseline_mse,
        "latent": model.decoder[0].in_features,
        "parameters": sum(p.numel() for p in model.parameters()),
        "pictures": files,
    }
