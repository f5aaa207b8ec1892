"""Gaze correction by warping: a CNN predicts a displacement field and a brightness correction, not pixels.

The idea of DeepWarp (Ganin et al., 2016): to redirect a gaze, move the
existing pixels of the eye region rather than paint new ones. Here the
network sees a face whose eye regions were displaced and re-lit, and outputs
a flow field (dx, dy in pixels) and an additive brightness map; the output is
the input resampled along the flow with ``grid_sample``, plus the brightness.
A CNN of similar size that predicts the pixels directly is the comparison,
and the identity (output = input) the baseline to beat.

Data: the first 100 crops of ``skimage.data.lfw_subset()`` are real faces
(25x25, resampled to 32x32: with ``align_corners=False`` a power-of-two side
puts every grid coordinate exactly on a pixel centre in float32, so a zero
flow reproduces the input bit for bit). The pairs are synthetic: the
inputs "look down" (as in a video call whose camera sits above the screen,
the case of Kononenko and Lempitsky's "Learning to look up", 2015): a smooth
Gaussian bump of displacement and darkening around both eyes, drawn fresh
for every batch, with random horizontal flips; the network must undo it. The
faces are split into train and held-out faces (not pairs), so held-out errors
are on faces never seen in training.
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import numpy as np
import torch
from torch import nn
from torch.nn import functional as F

from training.demos import datasets
from training.demos.autoencoder import parameter_count
from training.demos.common import DemoDataMissing, DemoRun, new_figure, save_figure
from training.trainer import Trainer

TITLE = "Gaze correction by a CNN that predicts a warp field plus brightness, on synthetic warps of real faces"
NOTE = ("The training and test pairs are synthetic: real LFW face crops whose eye regions were moved down and "
        "darkened by a known smooth warp (a made-up downward gaze); the networks learn to undo it. "
        "No real gaze-redirection pairs are used.")
SIDE = 32
N_FACES = 100  # lfw_subset(): the first 100 of its 200 crops are faces
EYES = ((10.5, 8.0), (10.5, 19.5))  # (row, col) of the eyes in the mean 32x32 face
MAX_FACE_SHIFT = 2.0  # augmentation: whole faces move by up to this many pixels
MAX_DROP = 2.0  # the synthetic downward gaze moves the eye regions down by 0.5 to this many pixels
MAX_SIDEWAYS = 0.75  # ... and sideways by up to this many
MAX_DARKENING = 0.12  # ... and darkens them by up to this much at the eye centres
FLOW_SMOOTHNESS = 0.01  # weight of the flow's squared-gradient penalty
BATCHES_PER_EPOCH = 100  # the synthetic pairs never run out; an "epoch" only numbers the random streams


def load_faces() -> np.ndarray:
    """The 100 LFW face crops of scikit-image, resampled to (100, SIDE, SIDE) float32 in [0, 1]."""
    try:
        from skimage.data import lfw_subset
        from skimage.transform import resize
    except ImportError as exc:
        raise DemoDataMissing("scikit-image's bundled LFW faces", "pip install scikit-image") from exc
    faces = lfw_subset()[:N_FACES]
    return resize(faces, (N_FACES, SIDE, SIDE), order=1, anti_aliasing=False).astype(np.float32)


def warp(images: torch.Tensor, flow: torch.Tensor) -> torch.Tensor:
    """Resample ``images`` (B, C, H, W) at each pixel plus ``flow`` (B, 2, H, W): (dx, dy) in pixels.

    Output pixel (y, x) is bilinearly read from input position (y + dy, x + dx);
    positions outside the image read its border.
    """
    b, _, h, w = images.shape
    # pixel centres in grid_sample's normalised coordinates (align_corners=False)
    xs = (2 * torch.arange(w, dtype=images.dtype, device=images.device) + 1) / w - 1
    ys = (2 * torch.arange(h, dtype=images.dtype, device=images.device) + 1) / h - 1
    grid_y, grid_x = torch.meshgrid(ys, xs, indexing="ij")
    grid = torch.stack([grid_x + flow[:, 0] * (2 / w), grid_y + flow[:, 1] * (2 / h)], dim=-1)  # (B, H, W, 2)
    return F.grid_sample(images, grid, mode="bilinear", padding_mode="border", align_corners=False)


def apply_correction(images: torch.Tensor, flow: torch.Tensor, brightness: torch.Tensor) -> torch.Tensor:
    """``images`` warped along ``flow`` plus ``brightness`` (B, 1, H, W)."""
    return warp(images, flow) + brightness


def eye_bumps(centres: torch.Tensor, sigma: torch.Tensor) -> torch.Tensor:
    """Sum of Gaussian bumps (peak 1) at ``centres`` (B, eyes, 2 as row, col) of width ``sigma`` (B,): (B, 1, S, S)."""
    coords = torch.arange(SIDE, dtype=torch.float32)
    dy = coords.view(1, 1, SIDE, 1) - centres[:, :, 0, None, None]  # (B, eyes, S, 1)
    dx = coords.view(1, 1, 1, SIDE) - centres[:, :, 1, None, None]  # (B, eyes, 1, S)
    bumps = torch.exp(-(dy ** 2 + dx ** 2) / (2 * sigma.view(-1, 1, 1, 1) ** 2))
    return bumps.sum(dim=1, keepdim=True)


def jitter_faces(faces: torch.Tensor, generator: torch.Generator) -> tuple[torch.Tensor, torch.Tensor]:
    """Faces shifted by up to MAX_FACE_SHIFT pixels and with jittered contrast and brightness.

    Returns them and each face's content offset (B, 2) as (row, col): with
    only 80 training faces, this keeps the networks from memorising where
    each face's eyes are.
    """
    b = len(faces)
    shift = (2 * torch.rand(b, 2, generator=generator) - 1) * MAX_FACE_SHIFT  # (B, 2) as (dx, dy)
    shifted = warp(faces, shift[:, :, None, None].expand(b, 2, SIDE, SIDE))
    contrast = 0.8 + 0.4 * torch.rand(b, 1, 1, 1, generator=generator)
    lift = 0.16 * torch.rand(b, 1, 1, 1, generator=generator) - 0.08
    mean = shifted.mean(dim=(2, 3), keepdim=True)
    jittered = ((shifted - mean) * contrast + mean + lift).clamp(0.0, 1.0)
    return jittered, -shift.flip(1)  # reading at p + shift moves the content by -shift


def synthesize_pairs(faces: torch.Tensor, generator: torch.Generator
                     ) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """(inputs, targets, displacement) for ``faces`` (B, 1, S, S): targets are the faces, jittered
    (:func:`jitter_faces`) and randomly flipped.

    The inputs look down, as in a video call whose camera sits above the
    screen: both eye regions (Gaussian bumps around jittered eye centres) move
    down by a random 0.5 to MAX_DROP pixels, sideways by up to MAX_SIDEWAYS,
    and darken by up to MAX_DARKENING at their centres:
    ``inputs = warp(faces, displacement) + brightness``, clipped to [0, 1].
    """
    b = len(faces)
    faces, offset = jitter_faces(faces, generator)
    drop = 0.5 + (MAX_DROP - 0.5) * torch.rand(b, generator=generator)
    sideways = (2 * torch.rand(b, generator=generator) - 1) * MAX_SIDEWAYS
    # an input pixel reads the face at its own position plus the displacement: reading from above moves eyes down
    shift = torch.stack([-sideways, -drop], dim=1)  # (B, 2) as (dx, dy)
    centres = torch.tensor(EYES) + offset[:, None, :] + 0.5 * torch.randn(b, 1, 2, generator=generator)
    sigma = 2.0 + 1.5 * torch.rand(b, generator=generator)
    bumps = eye_bumps(centres, sigma)  # (B, 1, S, S)
    displacement = shift[:, :, None, None] * bumps  # (B, 2, S, S)
    brightness = -MAX_DARKENING * torch.rand(b, 1, 1, 1, generator=generator) * bumps
    inputs = apply_correction(faces, displacement, brightness).clamp(0.0, 1.0)
    flip = torch.rand(b, generator=generator) < 0.5
    targets = torch.where(flip[:, None, None, None], faces.flip(-1), faces)
    inputs = torch.where(flip[:, None, None, None], inputs.flip(-1), inputs)
    mirrored = displacement.flip(-1) * torch.tensor([-1.0, 1.0]).view(1, 2, 1, 1)  # dx changes sign
    displacement = torch.where(flip[:, None, None, None], mirrored, displacement)
    return inputs, targets, displacement


class WarpedFacePairs:
    """A :class:`~training.trainer.BatchSource` of fresh synthetic pairs ``(inputs, targets)`` of the given faces.

    Batch ``k`` of epoch ``e`` is drawn from a generator seeded by (seed, e, k,
    rank), so resuming repeats it exactly.
    """

    def __init__(self, faces: np.ndarray, batch_size: int, batches_per_epoch: int, seed: int) -> None:
        self.faces = torch.from_numpy(faces).unsqueeze(1)  # (N, 1, S, S)
        self.batch_size = batch_size
        self.batches_per_epoch = batches_per_epoch
        self.seed = seed

    def num_batches(self, world_size: int = 1) -> int:
        return self.batches_per_epoch

    def batches(self, epoch: int, start: int = 0, rank: int = 0, world_size: int = 1
                ) -> Iterator[tuple[torch.Tensor, torch.Tensor]]:
        for k in range(start, self.batches_per_epoch):
            stream = np.random.SeedSequence([self.seed, epoch, k, rank]).generate_state(1)[0]
            g = torch.Generator().manual_seed(int(stream))
            faces = self.faces[torch.randint(len(self.faces), (self.batch_size,), generator=g)]
            inputs, targets, _ = synthesize_pairs(faces, g)
            yield inputs, targets


def fixed_pairs(faces: np.ndarray, per_face: int, seed: int) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """``per_face`` synthetic pairs of every face, drawn once: the held-out set (inputs, targets, displacement)."""
    repeated = torch.from_numpy(faces).unsqueeze(1).repeat_interleave(per_face, dim=0)
    return synthesize_pairs(repeated, torch.Generator().manual_seed(seed))


class Body(nn.Module):
    """A small U-Net: 32x32 faces to ``width`` feature maps at 16x16, seeing the whole face through an 8x8 level."""

    def __init__(self, width: int) -> None:
        super().__init__()
        self.down1 = nn.Sequential(nn.Conv2d(1, width, 3, stride=2, padding=1), nn.ReLU(),
                                   nn.Conv2d(width, width, 3, padding=1), nn.ReLU())
        self.down2 = nn.Sequential(nn.Conv2d(width, 2 * width, 3, stride=2, padding=1), nn.ReLU(),
                                   nn.Conv2d(2 * width, 2 * width, 3, padding=1), nn.ReLU())
        self.up = nn.Sequential(nn.Conv2d(3 * width, width, 3, padding=1), nn.ReLU())

    def forward(self, x: torch.Tensor) -> torch.Tensor:  # (B, 1, 32, 32) -> (B, width, 16, 16)
        half = self.down1(x)
        quarter = self.down2(half)
        return self.up(torch.cat([half, F.interpolate(quarter, scale_factor=2)], dim=1))


class WarpCNN(nn.Module):
    """Predicts a flow (2 channels, pixels) and a brightness map (1 channel) and applies them to its input.

    Both are predicted at 16x16 and upsampled bilinearly (they are smooth).
    The head starts at zero, so the untrained network is the identity.
    """

    def __init__(self, width: int) -> None:
        super().__init__()
        self.body = Body(width)
        self.head = nn.Conv2d(width, 3, 1)
        nn.init.zeros_(self.head.weight)
        nn.init.zeros_(self.head.bias)

    def correction(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """(flow (B, 2, S, S), brightness (B, 1, S, S)) for input faces x (B, 1, S, S)."""
        out = F.interpolate(self.head(self.body(x)), size=x.shape[-2:], mode="bilinear", align_corners=False)
        return out[:, :2], out[:, 2:]

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        flow, brightness = self.correction(x)
        return apply_correction(x, flow, brightness)


class PixelCNN(nn.Module):
    """The same body, upsampled and joined by the input face, then convolved into the output pixels directly."""

    def __init__(self, width: int) -> None:
        super().__init__()
        self.body = Body(width)
        self.head = nn.Sequential(nn.Conv2d(width + 1, width, 3, padding=1), nn.ReLU(), nn.Conv2d(width, 1, 1))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        features = F.interpolate(self.body(x), size=x.shape[-2:], mode="bilinear", align_corners=False)
        return torch.sigmoid(self.head(torch.cat([x, features], dim=1)))


def warp_loss(model: nn.Module, batch) -> tuple[torch.Tensor, dict[str, float]]:
    """MSE to the target plus a small penalty on the flow's spatial gradient (flat regions leave it free)."""
    inputs, targets = batch
    flow, brightness = model.correction(inputs)
    mse = F.mse_loss(apply_correction(inputs, flow, brightness), targets)
    roughness = (flow.diff(dim=-1) ** 2).mean() + (flow.diff(dim=-2) ** 2).mean()
    return mse + FLOW_SMOOTHNESS * roughness, {"mse": mse.item()}


def pixel_loss(model: nn.Module, batch) -> tuple[torch.Tensor, dict[str, float]]:
    inputs, targets = batch
    mse = F.mse_loss(model(inputs), targets)
    return mse, {"mse": mse.item()}


def save_before_after(path: Path, inputs: np.ndarray, warp_out: np.ndarray, pixel_out: np.ndarray,
                      targets: np.ndarray, flow: np.ndarray, displacement: np.ndarray,
                      scores: list[tuple[float, float, float]]) -> None:
    """One row per example: input, both outputs, target, predicted flow and the synthetic warp reversed.

    Images are (N, S, S), flows (N, 2, S, S), ``scores`` the MSE of (input, warp output, pixel output).
    """
    n = len(inputs)
    fig = new_figure(12, 2.1 * n + 0.9)
    axes = fig.subplots(n, 6, squeeze=False)
    titles = ["input (warped eyes)", "warp CNN output", "pixel CNN output", "target (real face)",
              "predicted flow", "synthetic warp, reversed"]
    step = 2  # an arrow every other pixel
    ys, xs = np.mgrid[0:SIDE:step, 0:SIDE:step]
    for r in range(n):
        for c, image in enumerate((inputs[r], warp_out[r], pixel_out[r], targets[r], inputs[r], inputs[r])):
            ax = axes[r, c]
            ax.imshow(np.clip(image, 0, 1), cmap="gray", vmin=0, vmax=1, alpha=1.0 if c < 4 else 0.5)
            ax.set_xticks([])
            ax.set_yticks([])
            if r == 0:
                ax.set_title(titles[c], fontsize=9)
        for ax, field, colour in ((axes[r, 4], flow[r], "tab:red"), (axes[r, 5], -displacement[r], "tab:blue")):
            # flow (dx, dy) reads the output pixel from (x + dx, y + dy): the arrow points to where it comes from
            ax.quiver(xs, ys, field[0][::step, ::step], field[1][::step, ::step], color=colour,
                      angles="xy", scale_units="xy", scale=0.5, width=0.008)
        for c in range(3):
            axes[r, c].set_xlabel(f"MSE to target {scores[r][c]:.4f}", fontsize=8)
    fig.suptitle("Held-out faces. SYNTHETIC pairs: real LFW faces whose eyes a known smooth warp moved down and "
                 "darkened; the networks undo it\n(arrows: where each output pixel is read from, drawn twice "
                 "their length; the reversed synthetic warp only approximates its inverse)", fontsize=10)
    save_figure(fig, path)


def run(demo: DemoRun) -> dict[str, object]:
    print(NOTE)
    faces = load_faces()
    train_ids, test_ids = datasets.holdout_split(N_FACES, 0.2, demo.seed)
    if demo.quick:
        width, per_face, settings = 8, 4, dict(steps=150, batch_size=16, lr=1e-2, val_every=75, log_every=25)
    else:
        width, per_face, settings = 24, 16, dict(steps=1000, batch_size=32, lr=3e-3, val_every=250, log_every=50)
    train_pairs = WarpedFacePairs(faces[train_ids], settings["batch_size"], BATCHES_PER_EPOCH, demo.seed)
    test_inputs, test_targets, test_displacement = fixed_pairs(faces[test_ids], per_face, demo.seed + 1)
    test_pairs = torch.utils.data.TensorDataset(test_inputs, test_targets)

    results: dict[str, object] = {}
    models: dict[str, nn.Module] = {}
    for name, cls, loss_fn in (("warp_cnn", WarpCNN, warp_loss), ("pixel_cnn", PixelCNN, pixel_loss)):
        torch.manual_seed(demo.seed)
        model = cls(width)
        config = demo.train_config(name, schedule="cosine", warmup_steps=20, val_metric="mse", **settings)
        trainer = Trainer(model, loss_fn, train_pairs, test_pairs, config=config,
                          extra_meta={"model": cls.__name__, "width": width})
        trainer.fit()
        results[f"{name}_test_mse"] = trainer.evaluate()["mse"]
        results[f"{name}_parameters"] = parameter_count(model)
        models[name] = model.cpu().eval()
    identity_mse = F.mse_loss(test_inputs, test_targets).item()

    shown = torch.arange(0, len(test_inputs), per_face)[:5]  # one pair each of five held-out faces
    with torch.no_grad():
        x, y = test_inputs[shown], test_targets[shown]
        warp_out, pixel_out = models["warp_cnn"](x), models["pixel_cnn"](x)
        flow, _ = models["warp_cnn"].correction(x)
    scores = [tuple(F.mse_loss(out[k], y[k]).item() for out in (x, warp_out, pixel_out)) for k in range(len(x))]
    save_before_after(demo.path("before-after.png"), x[:, 0].numpy(), warp_out[:, 0].numpy(),
                      pixel_out[:, 0].numpy(), y[:, 0].numpy(), flow.numpy(), test_displacement[shown].numpy(),
                      scores)

    return {
        "note": NOTE,
        "data": f"lfw_subset faces at {SIDE}x{SIDE}: {len(train_ids)} train faces (fresh random warps, shifts, "
                f"contrast and flips every batch), {len(test_ids)} held-out faces x {per_face} fixed warps = "
                f"{len(test_inputs)} pairs",
        **results,
        "identity_test_mse": identity_mse,
        "pictures": ["before-after.png", "warp_cnn/metrics.png", "pixel_cnn/metrics.png"],
    }
