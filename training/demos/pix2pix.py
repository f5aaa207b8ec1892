"""Demo ``pix2pix``: picture-to-picture translation with a U-Net and a PatchGAN (Isola et al. 2017).

Two tasks, each a pair (input picture, target picture) on 32x32:

- *sketch to picture*: the edges of a Fashion-MNIST item (Canny) to the item
  (``--quick``: scikit-learn's 8x8 digits, enlarged);
- *outline to glyph*: the outline of a glyph of a real font to the filled
  glyph, on fonts (faces) the nets never saw.

For each task two generators train through the :class:`~training.trainer.Trainer`:
the L1-only U-Net (the baseline: it predicts the per-pixel median, so it blurs
where it is unsure) and pix2pix (the same U-Net plus a PatchGAN discriminator
that judges 8x8 patches of (input, output) pairs; L1 + adversarial loss).

How one Trainer trains both players of the GAN: :class:`Pix2Pix` holds both
nets and :func:`pix2pix_loss` returns ``generator loss + discriminator loss``
for one optimizer. The discriminator's loss sees the fakes *detached*, so it
sends no gradient into the generator; the generator's adversarial term runs the
discriminator through ``torch.func.functional_call`` with *detached* copies of
its parameters, so it sends no gradient into the discriminator. The gradient of
the sum with respect to each player's parameters is therefore exactly that
player's own loss gradient, and one optimizer step is the simultaneous update
of both players (as in the paper's alternating steps, but with no second
optimizer or loop outside the trainer).
"""

from __future__ import annotations

import numpy as np
import torch
from skimage.feature import canny
from skimage.transform import resize
from torch import nn
from torch.func import functional_call
from torch.nn import functional as F
from torch.utils.data import TensorDataset

from training.demos.common import DemoRun, save_image_grid
from training.demos.datasets import digits, fashion_mnist
from training.demos.glyphs import load_faces, split_faces
from training.trainer import Trainer

TITLE = "pix2pix: U-Net + PatchGAN turning sketches into clothes and outlines into glyphs"


def edges(images: np.ndarray, sigma: float = 1.0) -> np.ndarray:
    """Canny edge maps (N, H, W) float32 in {0, 1} of grey images (N, H, W)."""
    return np.stack([canny(im, sigma=sigma) for im in images]).astype(np.float32)


class UNet(nn.Module):
    """A 3-level U-Net, (B, 1, 32, 32) -> (B, 1, 32, 32) in [0, 1], skips joining equal resolutions."""

    def __init__(self, width: int = 32) -> None:
        super().__init__()
        w = width

        def down(cin: int, cout: int) -> nn.Module:
            return nn.Sequential(nn.Conv2d(cin, cout, 4, 2, 1), nn.GroupNorm(8, cout), nn.LeakyReLU(0.2))

        def up(cin: int, cout: int) -> nn.Module:
            return nn.Sequential(nn.ConvTranspose2d(cin, cout, 4, 2, 1), nn.GroupNorm(8, cout), nn.ReLU())

        self.down1, self.down2, self.down3 = down(1, w), down(w, 2 * w), down(2 * w, 4 * w)  # 16, 8, 4
        self.up3, self.up2 = up(4 * w, 2 * w), up(4 * w, w)  # 8, 16
        self.out = nn.ConvTranspose2d(2 * w, 1, 4, 2, 1)  # 32

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        d1 = self.down1(x)
        d2 = self.down2(d1)
        u = self.up3(self.down3(d2))
        u = self.up2(torch.cat([u, d2], 1))
        return torch.sigmoid(self.out(torch.cat([u, d1], 1)))


class PatchDiscriminator(nn.Module):
    """(input, picture) pairs (B, 1, 32, 32) each -> real/fake logits (B, 1, 8, 8), one per 10x10 patch."""

    def __init__(self, width: int = 32) -> None:
        super().__init__()
        self.net = nn.Sequential(
            nn.Conv2d(2, width, 4, 2, 1), nn.LeakyReLU(0.2),  # 16
            nn.Conv2d(width, 2 * width, 4, 2, 1), nn.GroupNorm(8, 2 * width), nn.LeakyReLU(0.2),  # 8
            nn.Conv2d(2 * width, 1, 3, 1, 1))

    def forward(self, condition: torch.Tensor, picture: torch.Tensor) -> torch.Tensor:
        return self.net(torch.cat([condition, picture], 1))


class Pix2Pix(nn.Module):
    """Both players: ``generator`` (a U-Net) and ``discriminator`` (a PatchGAN); ``forward`` is the generator."""

    def __init__(self, width: int = 32, l1_weight: float = 100.0) -> None:
        super().__init__()
        self.generator = UNet(width)
        self.discriminator = PatchDiscriminator(width)
        self.l1_weight = l1_weight

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.generator(x)


def l1_loss(model: nn.Module, batch) -> tuple[torch.Tensor, dict[str, float]]:
    """The baseline's loss: mean absolute pixel error of the generator's picture."""
    x, y = batch
    l1 = F.l1_loss(model(x), y)
    return l1, {"l1": l1.item()}


def pix2pix_loss(model: Pix2Pix, batch) -> tuple[torch.Tensor, dict[str, float]]:
    """Generator loss (``l1_weight`` * L1 + adversarial) plus discriminator loss; see the module docstring."""
    x, y = batch
    fake = model.generator(x)
    d = model.discriminator
    real_logits, fake_logits = d(x, y), d(x, fake.detach())
    d_loss = 0.5 * (F.binary_cross_entropy_with_logits(real_logits, torch.ones_like(real_logits))
                    + F.binary_cross_entropy_with_logits(fake_logits, torch.zeros_like(fake_logits)))
    frozen = {name: p.detach() for name, p in d.named_parameters()}
    fooled_logits = functional_call(d, frozen, (x, fake))
    g_adv = F.binary_cross_entropy_with_logits(fooled_logits, torch.ones_like(fooled_logits))
    l1 = F.l1_loss(fake, y)
    loss = model.l1_weight * l1 + g_adv + d_loss
    return loss, {"l1": l1.item(), "g_adv": g_adv.item(), "d_loss": d_loss.item()}


def sketch_task(quick: bool, seed: int) -> tuple[np.ndarray, ...]:
    """(train inputs, train targets, test inputs, test targets), each (N, 32, 32): edges -> picture."""
    if quick:
        images, _ = digits()
        images = np.stack([resize(im, (32, 32), order=1) for im in images]).astype(np.float32)
        rng = np.random.default_rng(seed).permutation(len(images))
        train, test = images[rng[:600]], images[rng[600:700]]
    else:
        pad = ((0, 0), (2, 2), (2, 2))  # 28x28 -> 32x32
        train = np.pad(fashion_mnist("train")[0][:12000], pad)
        test = np.pad(fashion_mnist("test")[0][:1000], pad)
    return edges(train), train, edges(test), test


def glyph_task(quick: bool, seed: int) -> tuple[np.ndarray, ...]:
    """(train inputs, train targets, test inputs, test targets): glyph outlines -> glyphs, split by face."""
    faces = load_faces(quick=quick)
    train_rows, test_rows = split_faces(len(faces), 0.25 if quick else 0.15, seed)
    rng = np.random.default_rng(seed)
    train = faces.sheets[train_rows].reshape(-1, 32, 32)
    test = faces.sheets[test_rows].reshape(-1, 32, 32)
    train = train[rng.permutation(len(train))[:600 if quick else 12000]]
    test = test[rng.permutation(len(test))[:100 if quick else 1000]]
    return edges(train), train, edges(test), test


def paired(inputs: np.ndarray, targets: np.ndarray) -> TensorDataset:
    return TensorDataset(torch.from_numpy(inputs[:, None].copy()), torch.from_numpy(targets[:, None].copy()))


def run(demo: DemoRun) -> dict[str, object]:
    steps = 40 if demo.quick else 600
    width = 16 if demo.quick else 32
    results: dict[str, object] = {}
    pictures: dict[str, str] = {}
    for task, (title, load) in {"sketch": ("edges -> " + ("digit" if demo.quick else "Fashion-MNIST item"),
                                           sketch_task),
                                "glyph": ("glyph outline -> filled glyph (held-out fonts)", glyph_task)}.items():
        x_train, y_train, x_test, y_test = load(demo.quick, demo.seed)
        train, test = paired(x_train, y_train), paired(x_test, y_test)
        models = {}
        for kind, (model_fn, loss_fn) in {"l1": (lambda: UNet(width), l1_loss),
                                          "pix2pix": (lambda: Pix2Pix(width), pix2pix_loss)}.items():
            torch.manual_seed(demo.seed)
            model = model_fn()
            config = demo.train_config(f"{task}-{kind}", steps=steps, batch_size=32, optimizer="adam",
                                       lr=1e-3, val_every=max(steps // 5, 1), log_every=max(steps // 20, 1),
                                       val_metric="l1", ckpt_every=steps)
            trainer = Trainer(model, loss_fn, train, test, config=config)
            trainer.fit()
            results[f"{task}_heldout_l1_{kind}"] = trainer.evaluate()["l1"]
            models[kind] = model.eval()
        results[f"{task}_heldout_l1_mean_picture"] = float(np.abs(y_test - y_train.mean(0)).mean())
        shown = torch.from_numpy(x_test[:8, None].copy())
        with torch.no_grad():
            rows = [x_test[:8], models["l1"](shown)[:, 0].numpy(), models["pix2pix"](shown)[:, 0].numpy(),
                    y_test[:8]]
        pictures[task] = save_image_grid(
            np.concatenate(rows), demo.path(f"pix2pix-{task}.png"), ncols=8,
            row_labels=["input", "L1 only", "pix2pix", "target"], cell=0.9,
            suptitle=f"{title}: held-out L1 {results[f'{task}_heldout_l1_l1']:.3f} (L1-only U-Net), "
                     f"{results[f'{task}_heldout_l1_pix2pix']:.3f} (pix2pix)").name
    results["pictures"] = pictures
    results["generator_parameters"] = sum(p.numel() for p in UNet(width).parameters())
    results["discriminator_parameters"] = sum(p.numel() for p in PatchDiscriminator(width).parameters())
    return results
