"""Demo "gradients": the "gradient diminishing" slide, measured layer by layer in a deep MLP.

Five variants of the same deep MLP (``depth`` hidden layers) train through
the Trainer with the same plain SGD settings on real images: sigmoid and
tanh with PyTorch's default initialisation, ReLU with He initialisation,
plus batch normalisation, plus residual connections. Each run trains in
stages, each resuming the previous stage's checkpoint; at step 0 and after
every stage a probe measures the gradient norm of every layer's weights on
one fixed batch of 512 validation images. Backpropagation multiplies the
gradient by each layer's weights and activation derivative (at most 1/4 for
the sigmoid), so in the saturating nets the first layer gets orders of
magnitude less gradient than the last; the ratio last/first is reported per
variant.
"""

from __future__ import annotations

import copy
from collections.abc import Sequence

import numpy as np
import torch
from torch import nn

from training.demos.classifier import classification_loss, load_split, predict
from training.demos.common import DemoRun, new_figure, save_figure
from training.demos.datasets import image_dataset
from training.metrics import read_metrics
from training.trainer import Trainer

TITLE = "Vanishing gradients: per-layer gradient norms of deep sigmoid, tanh, ReLU+He, BatchNorm and residual MLPs"

# name -> (activation, He initialisation, batch normalisation, residual connections)
VARIANTS: dict[str, tuple[str, bool, bool, bool]] = {
    "sigmoid": ("sigmoid", False, False, False),
    "tanh": ("tanh", False, False, False),
    "relu_he": ("relu", True, False, False),
    "relu_he_bn": ("relu", True, True, False),
    "relu_he_bn_residual": ("relu", True, True, True),
}
LABELS = {"sigmoid": "sigmoid (default init)", "tanh": "tanh (default init)", "relu_he": "ReLU + He init",
          "relu_he_bn": "ReLU + He + BatchNorm", "relu_he_bn_residual": "ReLU + He + BN + residual"}
ACTIVATIONS = {"sigmoid": nn.Sigmoid, "tanh": nn.Tanh, "relu": nn.ReLU}
# probe at step 0 and after these fractions of the training steps
STAGES = (0.02, 0.05, 0.1, 0.2, 0.3, 0.4, 0.5, 0.6, 0.8, 1.0)
QUICK_STAGES = (0.1, 0.4, 1.0)


class DeepMLP(nn.Module):
    """``depth`` hidden layers of ``width`` units, then a linear output layer.

    Each hidden layer is Linear, BatchNorm (if the variant has it) and the
    activation; with residual connections, hidden layers after the first add
    their input to their output. ``layers()`` lists the linear layers from
    the input to the output: the layers whose gradient norms the demo compares.
    """

    def __init__(self, variant: str, inputs: int, width: int, depth: int, classes: int = 10) -> None:
        super().__init__()
        activation, he_init, batchnorm, self.residual = VARIANTS[variant]
        self.linears = nn.ModuleList([nn.Linear(inputs, width)]
                                     + [nn.Linear(width, width) for _ in range(depth - 1)])
        self.norms = nn.ModuleList(nn.BatchNorm1d(width) if batchnorm else nn.Identity() for _ in range(depth))
        self.activation = ACTIVATIONS[activation]()
        self.output = nn.Linear(width, classes)
        if he_init:
            for linear in self.linears:
                nn.init.kaiming_normal_(linear.weight, nonlinearity="relu")
                nn.init.zeros_(linear.bias)

    def layers(self) -> list[nn.Linear]:
        return [*self.linears, self.output]

    def forward(self, x: torch.Tensor) -> torch.Tensor:  # (B, ...) -> (B, classes) logits
        h = x.flatten(1)
        for k, (linear, norm) in enumerate(zip(self.linears, self.norms)):
            z = self.activation(norm(linear(h)))
            h = h + z if self.residual and k > 0 else z
        return self.output(h)


def layer_gradient_norms(model: DeepMLP, batch: tuple[torch.Tensor, torch.Tensor]) -> np.ndarray:
    """The norm of the loss gradient with respect to each linear layer's weight, input layer first.

    Computed on a copy in training mode, so neither the model's gradients nor
    its batchnorm statistics change.
    """
    probe = copy.deepcopy(model).train()
    device = next(probe.parameters()).device
    loss, _ = classification_loss(probe, tuple(t.to(device) for t in batch))
    grads = torch.autograd.grad(loss, [layer.weight for layer in probe.layers()])
    return np.array([float(g.norm()) for g in grads])


def train_with_probes(demo: DemoRun, variant: str, model: DeepMLP, train_data, val_data, probe_batch,
                      steps: int, stages: Sequence[float], **settings) -> dict[int, np.ndarray]:
    """Train ``model`` through the Trainer, stopping after each fraction of ``steps`` in ``stages`` to probe.

    Returns the per-layer gradient norms by step, step 0 included. Each
    stage resumes the previous stage's checkpoint, so the stages make up one
    run with one learning-rate schedule.
    """
    norms = {0: layer_gradient_norms(model, probe_batch)}
    done = 0
    for k, fraction in enumerate(stages):
        stage_end = max(1, round(fraction * steps))
        if stage_end <= done:  # a resumed run may already be past this stage
            continue
        config = demo.train_config(variant, steps=steps, max_steps_this_run=stage_end - done,
                                   resume=demo.resume or k > 0, **settings)
        trainer = Trainer(model, classification_loss, train_data, val_data, config=config,
                          extra_meta={"variant": variant, "depth": len(model.linears),
                                      "width": model.output.in_features})
        trainer.fit()
        done = trainer.step
        norms[done] = layer_gradient_norms(model, probe_batch)
    return norms


def plot_gradients(norms: dict[str, dict[int, np.ndarray]], losses: dict[str, list[tuple[int, float]]],
                   accuracies: dict[str, float], title: str, path) -> None:
    """2x2: per-layer norms at init and after training, last/first ratio over training, training loss."""
    fig = new_figure(12.5, 9.0)
    (at_init, trained), (ratio, loss) = fig.subplots(2, 2)
    colours = dict(zip(VARIANTS, ("tab:red", "tab:orange", "tab:green", "tab:blue", "tab:purple")))
    for variant, by_step in norms.items():
        steps = sorted(by_step)
        style = dict(color=colours[variant], label=LABELS[variant], marker="o", markersize=3)
        depth = np.arange(1, len(by_step[0]) + 1)
        at_init.plot(depth, by_step[steps[0]], **style)
        trained.plot(depth, by_step[steps[-1]], **style)
        ratio.plot(steps, [by_step[s][-1] / by_step[s][0] for s in steps], **style)
        curve = losses[variant]
        loss.plot([s for s, _ in curve], [v for _, v in curve], color=colours[variant],
                  label=f"{LABELS[variant]}: {accuracies[variant]:.1%} test")
    last_step = max(max(by_step) for by_step in norms.values())
    for ax, name in ((at_init, "at initialisation"), (trained, f"after {last_step} SGD steps")):
        ax.set_yscale("log")
        ax.set_xlabel("layer (1 = input layer, last = output layer)")
        ax.set_ylabel("gradient norm of the layer's weights")
        ax.set_title(f"Per-layer gradient norm {name}", fontsize=10)
    ratio.set_yscale("log")
    ratio.set_xlabel("training step")
    ratio.set_ylabel("last layer / first layer")
    ratio.set_title("Gradient ratio output layer / input layer during training", fontsize=10)
    loss.set_xlabel("training step")
    loss.set_ylabel("training cross-entropy")
    loss.set_title("Training loss (same SGD settings for all)", fontsize=10)
    for ax in (at_init, trained, ratio, loss):
        ax.grid(alpha=0.3, which="both")
        ax.legend(fontsize=7)
    fig.suptitle(title, fontsize=11)
    save_figure(fig, path, dpi=90)


def run(demo: DemoRun) -> dict[str, object]:
    train, val, test, _, size = load_split(demo.quick, demo.seed)
    train_data, val_data = image_dataset(*train), image_dataset(*val)
    probe_batch = tuple(t[:512] for t in val_data.tensors)
    depth, width = (8, 32) if demo.quick else (15, 128)
    steps = 100 if demo.quick else 2000
    settings = dict(batch_size=64 if demo.quick else 128, optimizer="sgd", lr=0.05, momentum=0.9,
                    schedule="cosine", grad_clip=5.0, val_metric="accuracy", val_mode="max",
                    val_every=max(1, steps // 10), log_every=10 if demo.quick else 25)

    norms: dict[str, dict[int, np.ndarray]] = {}
    losses: dict[str, list[tuple[int, float]]] = {}
    accuracies: dict[str, float] = {}
    for variant in VARIANTS:
        torch.manual_seed(demo.seed)
        model = DeepMLP(variant, size * size, width, depth)
        norms[variant] = train_with_probes(demo, variant, model, train_data, val_data, probe_batch, steps,
                                           QUICK_STAGES if demo.quick else STAGES, **settings)
        losses[variant] = [(int(r["step"]), float(r["loss"])) for r in read_metrics(demo.out / variant)
                           if r["split"] == "train"]
        accuracies[variant] = float((predict(model, test[0]).argmax(1) == test[1]).mean())

    data = "sklearn digits 8x8" if demo.quick else "Fashion-MNIST"
    plot_gradients(norms, losses, accuracies, f"{depth}-layer MLPs ({width} units) on {data}",
                   demo.path("gradient_norms.png"))
    ratios = {v: {str(step): float(n[-1] / n[0]) for step, n in sorted(by_step.items())}
              for v, by_step in norms.items()}
    return {
        "data": data,
        "depth": depth,
        "width": width,
        "steps": steps,
        "ratio_last_to_first_at_init": {v: r["0"] for v, r in ratios.items()},
        "ratio_last_to_first_after_training": {v: r[max(r, key=int)] for v, r in ratios.items()},
        "ratio_last_to_first_by_step": ratios,
        "layer_gradient_norms_at_init": {v: by_step[0].tolist() for v, by_step in norms.items()},
        "test_accuracy": accuracies,
        "final_train_loss": {v: curve[-1][1] for v, curve in losses.items() if curve},
        "chance_accuracy": 0.1,
        "pictures": ["gradient_norms.png"],
    }
