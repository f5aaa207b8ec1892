"""Demo "classifier": a small CNN on Fashion-MNIST against logistic regression.

Both models train through the Trainer on the same images and are scored on
the held-out test set (Fashion-MNIST's 10,000; with ``--quick`` a quarter of
scikit-learn's 8x8 digits). The pictures: the two confusion matrices, a grid
of the CNN's mistakes, and the parameter counts behind the lecture's
"100,000,000 parameters" slide: each convolution next to the dense layer
that would map the same input to the same output, which shares no weights.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from training.demos.common import DemoRun, new_figure, save_figure, save_image_grid
from training.demos.datasets import FASHION_CLASSES, digits, fashion_mnist, holdout_split, image_dataset
from training.trainer import Trainer

TITLE = "A CNN on Fashion-MNIST vs logistic regression: accuracy, mistakes and weight sharing"
MEGAPIXEL_DENSE_UNITS = 100  # the slide: a 1000x1000 photo into 100 hidden units needs 10^8 weights


class ConvNet(nn.Module):
    """Blocks of 3x3 convolution, batchnorm, ReLU and 2x2 max-pooling, then flatten and one linear layer."""

    def __init__(self, image_size: int, channels: Sequence[int], classes: int = 10) -> None:
        super().__init__()
        blocks: list[nn.Module] = []
        c_in, size = 1, image_size
        for c_out in channels:
            blocks += [nn.Conv2d(c_in, c_out, 3, padding=1, bias=False), nn.BatchNorm2d(c_out),
                       nn.ReLU(), nn.MaxPool2d(2)]
            c_in, size = c_out, size // 2
        self.features = nn.Sequential(*blocks)
        self.classifier = nn.Sequential(nn.Flatten(), nn.Linear(c_in * size * size, classes))

    def forward(self, x: torch.Tensor) -> torch.Tensor:  # (B, 1, H, W) -> (B, classes) logits
        return self.classifier(self.features(x))


def logistic_regression(image_size: int, classes: int = 10) -> nn.Module:
    """Multinomial logistic regression on the raw pixels: one linear layer, softmax in the loss."""
    return nn.Sequential(nn.Flatten(), nn.Linear(image_size * image_size, classes))


def classification_loss(model: nn.Module, batch) -> tuple[torch.Tensor, dict[str, float]]:
    """Cross-entropy of the logits, with the batch accuracy as a metric."""
    x, y = batch
    logits = model(x)
    return F.cross_entropy(logits, y), {"accuracy": (logits.argmax(1) == y).float().mean().item()}


@torch.no_grad()
def predict(model: nn.Module, images: np.ndarray, batch_size: int = 1000) -> np.ndarray:
    """Class probabilities (N, classes) of ``images`` (N, H, W), in eval mode."""
    model.eval()
    device = next(model.parameters()).device
    x = torch.from_numpy(np.ascontiguousarray(images, dtype=np.float32)).unsqueeze(1)
    return np.concatenate([F.softmax(model(x[i:i + batch_size].to(device)), 1).cpu().numpy()
                           for i in range(0, len(x), batch_size)])


def count_parameters(model: nn.Module) -> int:
    return sum(p.numel() for p in model.parameters())


def dense_equivalents(model: nn.Module, image_size: int) -> list[dict[str, object]]:
    """Per convolution: its parameters, and those of a dense layer with the same input and output sizes."""
    rows: list[dict[str, object]] = []

    def record(layer: nn.Conv2d, inputs: tuple[torch.Tensor], output: torch.Tensor) -> None:
        n_in, n_out = inputs[0][0].numel(), output[0].numel()
        rows.append({"layer": f"conv {tuple(inputs[0].shape[1:])} -> {tuple(output.shape[1:])}",
                     "conv_params": count_parameters(layer), "dense_params": n_in * n_out + n_out})

    convs = [m for m in model.modules() if isinstance(m, nn.Conv2d)]
    hooks = [conv.register_forward_hook(record) for conv in convs]
    was_training = model.training
    model.eval()
    with torch.no_grad():
        model(torch.zeros(1, 1, image_size, image_size, device=next(model.parameters()).device))
    model.train(was_training)
    for hook in hooks:
        hook.remove()
    return rows


def confusion_matrix(labels: np.ndarray, predicted: np.ndarray, classes: int) -> np.ndarray:
    """counts[true, predicted]."""
    counts = np.zeros((classes, classes), dtype=np.int64)
    np.add.at(counts, (labels, predicted), 1)
    return counts


def plot_confusions(matrices: dict[str, np.ndarray], class_names: Sequence[str], path) -> None:
    fig = new_figure(6.2 * len(matrices), 5.8)
    for ax, (title, counts) in zip(fig.subplots(1, len(matrices), squeeze=False)[0], matrices.items()):
        rates = counts / np.maximum(counts.sum(1, keepdims=True), 1)
        ax.imshow(rates, cmap="Blues", vmin=0.0, vmax=1.0)
        for (i, j), n in np.ndenumerate(counts):
            if n:
                ax.text(j, i, str(n), ha="center", va="center", fontsize=6.5,
                        color="white" if rates[i, j] > 0.5 else "black")
        ticks = range(len(class_names))
        ax.set_xticks(ticks, class_names, rotation=45, ha="right", fontsize=8)
        ax.set_yticks(ticks, class_names, fontsize=8)
        ax.set_xlabel("predicted class")
        ax.set_ylabel("true class")
        ax.set_title(title, fontsize=10)
    save_figure(fig, path)


def plot_parameters(counts: dict[str, int], accuracies: dict[str, float | None], path) -> None:
    """Bar chart (log scale) of parameter counts, each bar labelled with its test accuracy where it has one."""
    fig = new_figure(8.5, 4.4)
    ax = fig.subplots()
    names = list(counts)
    bars = ax.bar(range(len(names)), [counts[n] for n in names],
                  color=["tab:gray", "tab:blue", "tab:red", "tab:purple"][:len(names)])
    ax.set_yscale("log")
    for bar, name in zip(bars, names):
        accuracy = accuracies.get(name)
        label = f"{counts[name]:,}" + (f"\n{accuracy:.1%} test" if accuracy is not None else "\n(not trained)")
        ax.text(bar.get_x() + bar.get_width() / 2, bar.get_height() * 1.15, label, ha="center", fontsize=8)
    ax.set_xticks(range(len(names)), names, fontsize=8)
    ax.set_ylabel("parameters (log scale)")
    ax.set_ylim(top=max(counts.values()) * 30)
    ax.set_title("Convolutions share weights: the same layers as dense layers would need far more", fontsize=9)
    save_figure(fig, path)


def load_split(quick: bool, seed: int):
    """(train, val, test) as (images, labels) pairs, the class names, and the image size."""
    if quick:
        images, labels = digits()
        pool, test = holdout_split(len(images), 0.25, seed)
        test_set = (images[test], labels[test])
        images, labels = images[pool], labels[pool]
        class_names: Sequence[str] = [str(d) for d in range(10)]
    else:
        images, labels = fashion_mnist("train")
        test_set = fashion_mnist("test")
        class_names = FASHION_CLASSES
    train, val = holdout_split(len(images), 0.1, seed)
    return ((images[train], labels[train]), (images[val], labels[val]), test_set, class_names,
            images.shape[-1])


def run(demo: DemoRun) -> dict[str, object]:
    train, val, test, class_names, size = load_split(demo.quick, demo.seed)
    train_data, val_data = image_dataset(*train), image_dataset(*val)
    channels = (16, 32) if demo.quick else (16, 32, 64)
    common = dict(batch_size=64 if demo.quick else 128, optimizer="adamw", schedule="cosine",
                  val_metric="accuracy", val_mode="max", log_every=10 if demo.quick else 50)

    torch.manual_seed(demo.seed)
    cnn = ConvNet(size, channels)
    Trainer(cnn, classification_loss, train_data, val_data,
            extra_meta={"image_size": size, "channels": list(channels)},
            config=demo.train_config("cnn", epochs=8 if demo.quick else 10, lr=3e-3, weight_decay=0.05,
                                     warmup_steps=20 if demo.quick else 200,
                                     val_every=50 if demo.quick else 500, **common)).fit()
    torch.manual_seed(demo.seed)
    linear = logistic_regression(size)
    Trainer(linear, classification_loss, train_data, val_data,
            config=demo.train_config("logistic", epochs=8 if demo.quick else 5, lr=1e-2,
                                     val_every=50 if demo.quick else 500, **common)).fit()

    images, labels = test
    cnn_predicted = predict(cnn, images).argmax(1)
    linear_predicted = predict(linear, images).argmax(1)
    cnn_accuracy = float((cnn_predicted == labels).mean())
    linear_accuracy = float((linear_predicted == labels).mean())

    plot_confusions({f"CNN: {cnn_accuracy:.1%} of {len(labels):,} test images":
                     confusion_matrix(labels, cnn_predicted, len(class_names)),
                     f"logistic regression: {linear_accuracy:.1%}":
                     confusion_matrix(labels, linear_predicted, len(class_names))},
                    class_names, demo.path("confusion.png"))
    wrong = np.flatnonzero(cnn_predicted != labels)
    shown = np.sort(np.random.default_rng(demo.seed).choice(wrong, size=min(32, len(wrong)), replace=False))
    save_image_grid(images[shown], demo.path("mistakes.png"), ncols=8, cell=1.25,
                    titles=[f"{class_names[labels[i]]}\nnot {class_names[cnn_predicted[i]]}" for i in shown],
                    suptitle=f"CNN mistakes on test images: true class, and 'not' the predicted one "
                             f"({len(wrong)} of {len(labels):,} wrong)")

    layers = dense_equivalents(cnn, size)
    dense_total = sum(int(row["dense_params"]) for row in layers) + count_parameters(cnn.classifier)
    megapixel_dense = 1000 * 1000 * MEGAPIXEL_DENSE_UNITS
    counts = {"logistic regression": count_parameters(linear), "CNN": count_parameters(cnn),
              "dense layers of the\nCNN's layer sizes": dense_total,
              "one dense layer:\n1000x1000 photo -> 100 units": megapixel_dense}
    plot_parameters(counts, {"logistic regression": linear_accuracy, "CNN": cnn_accuracy},
                    demo.path("parameters.png"))
    return {
        "data": "sklearn digits 8x8 (quick)" if demo.quick else "Fashion-MNIST 28x28",
        "test_images": len(labels),
        "cnn": {"test_accuracy": cnn_accuracy, "parameters": count_parameters(cnn), "channels": list(channels)},
        "logistic_regression": {"test_accuracy": linear_accuracy, "parameters": count_parameters(linear)},
        "chance_accuracy": 1.0 / len(class_names),
        "conv_layers_vs_dense": layers,
        "dense_equivalent_parameters": dense_total,
        "megapixel_photo_dense_parameters": megapixel_dense,
        "pictures": ["confusion.png", "mistakes.png", "parameters.png"],
    }
