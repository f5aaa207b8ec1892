"""Demo "convolution": classic kernels applied to a photo by hand and by ``conv2d``, with identical results.

The hand path is the definition itself: every output pixel is the sum of
the kernel times the window of the input under it,
``out[i, j] = sum_{u, v} kernel[u, v] * image[i + u, j + v]`` (what deep
learning calls convolution is this cross-correlation: the kernel is not
flipped). ``torch.nn.functional.conv2d`` computes the same numbers; the demo
reports the largest difference and the time of each path per kernel. The
image is reflect-padded first, so both paths return an image of the input's
size. Nothing learns here, so no Trainer runs.
"""

from __future__ import annotations

import time

import numpy as np
import torch
import torch.nn.functional as F

from training.demos.common import DemoDataMissing, DemoRun, new_figure, save_figure

TITLE = "Convolution by hand and by conv2d: blur, sharpen and edge kernels on a photo"

# name -> (integer weights, divisor): the kernel is weights / divisor
KERNELS: dict[str, tuple[np.ndarray, int]] = {
    "box blur 5x5": (np.ones((5, 5)), 25),
    "Gaussian blur 5x5": (np.outer([1, 4, 6, 4, 1], [1, 4, 6, 4, 1]), 256),
    "sharpen": (np.array([[0, -1, 0], [-1, 5, -1], [0, -1, 0]]), 1),
    "Sobel (vertical edges)": (np.array([[-1, 0, 1], [-2, 0, 2], [-1, 0, 1]]), 1),
    "Sobel (horizontal edges)": (np.array([[-1, -2, -1], [0, 0, 0], [1, 2, 1]]), 1),
    "Laplacian": (np.array([[0, 1, 0], [1, -4, 1], [0, 1, 0]]), 1),
}


def kernel(name: str) -> np.ndarray:
    """The float32 kernel called ``name`` in :data:`KERNELS`."""
    weights, divisor = KERNELS[name]
    return (weights / divisor).astype(np.float32)


def pad_reflect(image: np.ndarray, kernel_shape: tuple[int, int]) -> np.ndarray:
    """``image`` (H, W) mirrored at its borders so that a valid convolution keeps the size H x W."""
    kh, kw = kernel_shape
    return np.pad(image, ((kh // 2, (kh - 1) // 2), (kw // 2, (kw - 1) // 2)), mode="reflect")


def convolve_by_hand(image: np.ndarray, kernel: np.ndarray) -> np.ndarray:
    """Valid 2-D convolution (cross-correlation) by its definition: each output pixel is a window times the kernel.

    ``image`` (H, W), ``kernel`` (kh, kw) -> (H - kh + 1, W - kw + 1).
    """
    windows = np.lib.stride_tricks.sliding_window_view(image, kernel.shape)  # (H', W', kh, kw)
    return (windows * kernel).sum(axis=(-2, -1))


def convolve_with_torch(image: np.ndarray, kernel: np.ndarray) -> np.ndarray:
    """The same valid convolution with ``torch.nn.functional.conv2d`` (one channel in, one out)."""
    x = torch.from_numpy(np.ascontiguousarray(image))[None, None]  # (1, 1, H, W)
    w = torch.from_numpy(np.ascontiguousarray(kernel, dtype=image.dtype))[None, None]  # (1, 1, kh, kw)
    return F.conv2d(x, w)[0, 0].numpy()


def best_time(function, *args, repeats: int = 3) -> tuple[np.ndarray, float]:
    """The result of ``function(*args)`` and its fastest wall time in milliseconds over ``repeats`` calls."""
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        result = function(*args)
        times.append(time.perf_counter() - start)
    return result, 1000 * min(times)


def load_photos(quick: bool) -> dict[str, np.ndarray]:
    """scikit-image's bundled photos as float32 grey images in [0, 1] (every 4th pixel with ``quick``)."""
    try:
        from skimage import color, data
    except ImportError as exc:
        raise DemoDataMissing("scikit-image's bundled photos", "pip install scikit-image") from exc
    photos = {"cameraman": data.camera() / 255.0, "astronaut": color.rgb2gray(data.astronaut())}
    step = 4 if quick else 1
    return {name: np.asarray(photo[::step, ::step], dtype=np.float32) for name, photo in photos.items()}


def shown(result: np.ndarray, kernel: np.ndarray) -> dict[str, object]:
    """imshow arguments for a kernel's output: grey levels for a kernel summing to 1, signed colours for edges."""
    if abs(kernel.sum()) > 1e-9:
        return {"X": np.clip(result, 0, 1), "cmap": "gray", "vmin": 0.0, "vmax": 1.0}
    scale = float(np.percentile(np.abs(result), 99.5)) or 1.0
    return {"X": result, "cmap": "RdBu_r", "vmin": -scale, "vmax": scale}


def draw_kernel(ax, name: str) -> None:
    """The kernel's integer weights as an annotated matrix, its divisor in the title."""
    weights, divisor = KERNELS[name]
    scale = np.abs(weights).max()
    ax.imshow(weights, cmap="RdBu_r", vmin=-scale, vmax=scale)
    for (i, j), value in np.ndenumerate(weights):
        ax.text(j, i, f"{value:g}", ha="center", va="center", fontsize=7,
                color="white" if abs(value) > 0.6 * scale else "black")
    ax.set_title(name + (f"\n(weights / {divisor})" if divisor != 1 else ""), fontsize=8)
    ax.set_xticks([])
    ax.set_yticks([])


def run(demo: DemoRun) -> dict[str, object]:
    photos = load_photos(demo.quick)
    results: dict[str, dict[str, float]] = {}
    rows = []
    image = photos["cameraman"]
    for name in KERNELS:
        weights = kernel(name)
        padded = pad_reflect(image, weights.shape)
        by_hand, hand_ms = best_time(convolve_by_hand, padded, weights)
        by_torch, torch_ms = best_time(convolve_with_torch, padded, weights)
        difference = float(np.abs(by_hand - by_torch).max())
        results[name] = {"max_abs_difference": difference, "by_hand_ms": round(hand_ms, 3),
                         "conv2d_ms": round(torch_ms, 3)}
        rows.append((name, weights, by_hand, by_torch, difference, hand_ms, torch_ms))

    fig = new_figure(11.5, 2.9 * len(rows))
    axes = fig.subplots(len(rows), 4, gridspec_kw={"width_ratios": [0.55, 1, 1, 1]})
    height, width = image.shape
    top, left = height // 10, width * 3 // 10
    detail = (slice(top, top + height // 2), slice(left, left + width // 2))
    for row, (name, weights, by_hand, by_torch, difference, hand_ms, torch_ms) in zip(axes, rows):
        draw_kernel(row[0], name)
        row[1].imshow(**shown(by_hand[detail], weights))
        row[1].set_title(f"by hand (window x kernel): {hand_ms:.1f} ms", fontsize=8)
        row[2].imshow(**shown(by_torch[detail], weights))
        row[2].set_title(f"torch conv2d: {torch_ms:.1f} ms", fontsize=8)
        row[3].imshow(np.abs(by_hand - by_torch)[detail], cmap="magma", vmin=0.0, vmax=max(difference, 1e-12))
        row[3].set_title(f"|difference|, max {difference:.1e}", fontsize=8)
        for ax in row[1:]:
            ax.set_xticks([])
            ax.set_yticks([])
    axes[-1, 2].set_xlabel(f"(times and max over the whole {width}x{height} photo; a detail is shown)", fontsize=8)
    save_figure(fig, demo.path("by_hand_vs_conv2d.png"), dpi=80)

    fig = new_figure(3.2 * (len(KERNELS) + 1), 3.6)
    axes = fig.subplots(1, len(KERNELS) + 1)
    portrait = photos["astronaut"]
    axes[0].imshow(portrait, cmap="gray", vmin=0.0, vmax=1.0)
    axes[0].set_title("astronaut (original)", fontsize=9)
    for ax, name in zip(axes[1:], KERNELS):
        weights = kernel(name)
        ax.imshow(**shown(convolve_with_torch(pad_reflect(portrait, weights.shape), weights), weights))
        ax.set_title(name, fontsize=9)
    for ax in axes:
        ax.set_xticks([])
        ax.set_yticks([])
    save_figure(fig, demo.path("kernels.png"), dpi=80)

    return {
        "image": f"cameraman {image.shape[1]}x{image.shape[0]} (skimage.data.camera)",
        "kernels": results,
        "max_abs_difference": max(r["max_abs_difference"] for r in results.values()),
        "pictures": ["by_hand_vs_conv2d.png", "kernels.png"],
    }
