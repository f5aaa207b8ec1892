"""A character-level LSTM: next-character language model ("many to many") and snippet classifier ("many to one").

Corpora (all offline): the TeX sources of the PARI/GP manuals, C source of the
Linux kernel (kernel/, mm/ and lib/, streamed out of Debian's tarball and
cached), and, for ``--quick``, CPython's own standard library beside the
English prose of its pydoc topics. Every corpus is split into training and
held-out *files*, so held-out text is text the model never saw, not random
characters between seen ones.

Characters are ASCII codes 0-127; anything else becomes code 0 (rare in these
corpora). The language model is scored in bits per character on held-out
windows that start from an empty state; it then writes samples at several
temperatures. The same :class:`CharLSTM` with its head on the last state
classifies which corpus a short snippet came from.

A longer run is a bigger number in :data:`LM_STEPS` (optimizer steps per corpus).
"""

from __future__ import annotations

import json
import math
import os
import sysconfig
import tarfile
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import nn
from torch.nn import functional as F
from torch.utils.data import Dataset, TensorDataset

from training.demos.common import DemoRun, new_figure, require, save_figure
from training.trainer import Trainer

TITLE = "Char-LSTM: language model of TeX and C (bits/char, samples) and the same LSTM as snippet classifier"

VOCAB = 128
OTHER = 0  # the code of every non-ASCII character
LN2 = math.log(2.0)

PARI_DIR = Path("/usr/share/pari/doc")
LINUX_TARBALL = Path("/usr/src/linux-source-6.1.tar.xz")
LINUX_FOLDERS = ("kernel", "mm", "lib")
LINUX_CHARS_PER_FOLDER = 2_000_000
QUICK_PYTHON_CHARS = 400_000
HELD_OUT_FRACTION = 0.1
TEMPERATURES = (0.5, 0.8, 1.0)
# optimizer steps of the language model per corpus in the full run: 2500 took 20 minutes for both corpora on a
# shared core (held-out bpc 2.48 TeX, 2.25 C; 1200 steps gave 2.75, 2.53); more steps keep lowering bpc
LM_STEPS = {"pari": 2500, "linux": 2500}
QUICK_LM_STEPS = 120
PRIMES = {"pari": "\\subsec{", "linux": "static int ", "python": "def ", "english": "The "}
CORPUS_TITLES = {"pari": "PARI/GP manuals (TeX)", "linux": "Linux kernel (C)", "python": "CPython stdlib (Python)",
                 "english": "pydoc topics (English prose)"}

Files = list[tuple[str, str]]  # (file name, text)


# ----------------------------------------------------------------------------
# Corpora


def cache_dir() -> Path:
    """Where extracted corpora are cached: ``$XDG_CACHE_HOME/gogame/demos`` (default ``~/.cache``)."""
    return Path(os.environ.get("XDG_CACHE_HOME", Path.home() / ".cache")) / "gogame" / "demos"


def pari_files() -> Files:
    """The 18 TeX files of the PARI/GP manuals (about 2.95 M characters)."""
    folder = require(PARI_DIR, "the PARI/GP manuals' TeX sources",
                     "apt-get install -y --no-install-recommends pari-doc")
    return [(p.name, p.read_text(encoding="utf-8", errors="replace")) for p in sorted(folder.glob("*.tex"))]


def linux_files() -> Files:
    """C files (.c, .h) of the kernel's kernel/, mm/ and lib/, up to LINUX_CHARS_PER_FOLDER each.

    The tarball is streamed once (about half a minute) and the result cached as JSON.
    """
    cache = cache_dir() / f"linux-{'-'.join(LINUX_FOLDERS)}-{LINUX_CHARS_PER_FOLDER}.json"
    if cache.is_file():
        return [tuple(pair) for pair in json.loads(cache.read_text())]
    tarball = require(LINUX_TARBALL, "the Linux 6.1 source tarball",
                      "apt-get install -y --no-install-recommends linux-source-6.1")
    taken = dict.fromkeys(LINUX_FOLDERS, 0)
    files: Files = []
    with tarfile.open(tarball, "r|xz") as archive:
        for member in archive:
            parts = member.name.split("/")
            if (len(parts) < 3 or parts[1] not in taken or not member.isfile()
                    or not member.name.endswith((".c", ".h")) or taken[parts[1]] >= LINUX_CHARS_PER_FOLDER):
                continue
            text = archive.extractfile(member).read().decode("utf-8", errors="replace")
            files.append(("/".join(parts[1:]), text))
            taken[parts[1]] += len(text)
    cache.parent.mkdir(parents=True, exist_ok=True)
    cache.write_text(json.dumps(files))
    return files


def python_files(max_chars: int | None = None) -> Files:
    """CPython's standard library sources (no site-packages, tests or pydoc_data), up to ``max_chars``."""
    root = Path(sysconfig.get_paths()["stdlib"])
    skip = {"site-packages", "test", "tests", "idle_test", "pydoc_data"}
    files: Files = []
    total = 0
    for path in sorted(root.rglob("*.py")):
        if skip.intersection(path.relative_to(root).parts):
            continue
        text = path.read_text(encoding="utf-8", errors="replace")
        files.append((str(path.relative_to(root)), text))
        total += len(text)
        if max_chars is not None and total >= max_chars:
            break
    return files


def english_files() -> Files:
    """The pydoc topics: the Python documentation's prose shipped inside the standard library."""
    from pydoc_data.topics import topics

    return sorted(topics.items())


def split_by_file(files: Files, fraction: float, seed: int) -> tuple[Files, Files]:
    """(train, held-out) files: shuffled files go to held-out until it holds ``fraction`` of the characters.

    A file bigger than that fraction alone is never held out, so one huge file
    cannot swallow the held-out set.
    """
    budget = fraction * sum(len(text) for _, text in files)
    order = np.random.default_rng(seed).permutation(len(files))
    held: set[int] = set()
    size = 0
    for i in order:
        n = len(files[i][1])
        if size < budget and n <= budget:
            held.add(int(i))
            size += n
    if not held or len(held) == len(files):
        raise ValueError(f"cannot hold out {fraction:.0%} of {len(files)} files by file")
    return ([f for i, f in enumerate(files) if i not in held], [f for i, f in enumerate(files) if i in held])


def encode(text: str) -> np.ndarray:
    """Character codes (uint8): ASCII as is, anything else OTHER."""
    codes = np.frombuffer(text.encode("utf-32-le"), dtype=np.uint32)
    return np.where(codes < VOCAB, codes, OTHER).astype(np.uint8)


def decode(codes) -> str:
    return "".join(chr(c) if c != OTHER else "\N{CURRENCY SIGN}" for c in codes)


def join(files: Files) -> np.ndarray:
    """All files' codes, separated by a blank line."""
    return encode("\n\n".join(text for _, text in files))


class Windows(Dataset):
    """Consecutive windows of ``length + 1`` codes: item i is (input, target shifted by one)."""

    def __init__(self, codes: np.ndarray, length: int) -> None:
        self.codes = torch.from_numpy(codes.astype(np.int64))
        self.length = length

    def __len__(self) -> int:
        return (len(self.codes) - 1) // self.length

    def __getitem__(self, i: int) -> tuple[torch.Tensor, torch.Tensor]:
        w = self.codes[i * self.length: (i + 1) * self.length + 1]
        return w[:-1], w[1:]


# ----------------------------------------------------------------------------
# The model


class CharLSTM(nn.Module):
    """Embedding, LSTM, linear head.

    ``many_to_one`` False: ``forward`` gives logits at every step, shape
    (B, T, outputs) (next-character prediction). True: logits of the last
    step's state only, shape (B, outputs) (classifying the whole snippet).
    ``forward`` also returns the LSTM state, to continue from it.
    """

    def __init__(self, outputs: int = VOCAB, hidden: int = 256, layers: int = 1, embed: int = 32,
                 many_to_one: bool = False) -> None:
        super().__init__()
        self.many_to_one = many_to_one
        self.embed = nn.Embedding(VOCAB, embed)
        self.lstm = nn.LSTM(embed, hidden, num_layers=layers, batch_first=True)
        self.head = nn.Linear(hidden, outputs)

    def forward(self, codes: torch.Tensor, state: tuple[torch.Tensor, torch.Tensor] | None = None):
        out, state = self.lstm(self.embed(codes), state)  # (B, T, hidden)
        if self.many_to_one:
            out = out[:, -1]  # (B, hidden)
        return self.head(out), state


def lm_loss(model: CharLSTM, batch: Any) -> tuple[torch.Tensor, dict[str, Any]]:
    """Cross-entropy of every next character; ``bpc`` is the same in bits per character."""
    x, y = batch
    logits, _ = model(x)
    loss = F.cross_entropy(logits.reshape(-1, VOCAB), y.reshape(-1))
    return loss, {"bpc": loss.detach() / LN2}


def classifier_loss(model: CharLSTM, batch: Any) -> tuple[torch.Tensor, dict[str, Any]]:
    x, label = batch
    logits, _ = model(x)
    return F.cross_entropy(logits, label), {"accuracy": (logits.argmax(1) == label).float().mean()}


@torch.no_grad()
def sample(model: CharLSTM, prime: str, length: int, temperature: float, seed: int) -> str:
    """``prime`` followed by ``length`` characters drawn from softmax(logits / temperature)."""
    model.eval()
    generator = torch.Generator().manual_seed(seed)
    codes = torch.from_numpy(encode(prime).astype(np.int64))[None]
    logits, state = model(codes)
    drawn = []
    for _ in range(length):
        probs = F.softmax(logits[0, -1] / temperature, dim=-1)
        code = torch.multinomial(probs, 1, generator=generator)
        drawn.append(int(code))
        logits, state = model(code[None], state)
    return prime + decode(drawn)


@torch.no_grad()
def surprise(model: CharLSTM, codes: np.ndarray, context: int) -> np.ndarray:
    """Bits of each of ``codes[context:]`` given all characters before it."""
    model.eval()
    x = torch.from_numpy(codes.astype(np.int64))[None]
    logits, _ = model(x[:, :-1])
    bits = F.cross_entropy(logits[0], x[0, 1:], reduction="none") / LN2
    return bits[context - 1:].numpy()


# ----------------------------------------------------------------------------
# Training runs


def train_language_model(demo: DemoRun, corpus: str, files: Files, steps: int, hidden: int,
                         val_chars: int) -> tuple[CharLSTM, np.ndarray, dict[str, Any]]:
    """Train the next-character model on ``files``' training part; return it, the held-out codes and figures."""
    train, held = split_by_file(files, HELD_OUT_FRACTION, demo.seed)
    train_codes, held_codes = join(train), join(held)
    torch.manual_seed(demo.seed)
    model = CharLSTM(hidden=hidden)
    config = demo.train_config(f"lm-{corpus}", steps=steps, batch_size=32, optimizer="adam", lr=3e-3,
                               schedule="cosine", min_lr=1e-4, warmup_steps=min(100, steps // 10),
                               grad_clip=1.0, val_every=max(steps // 6, 1), log_every=max(steps // 60, 1),
                               ckpt_every=500)
    held_windows = Windows(held_codes[:val_chars + 1], 256)
    trainer = Trainer(model, lm_loss, Windows(train_codes, 128), held_windows, config=config,
                      extra_meta={"corpus": corpus, "hidden": hidden})
    trainer.fit()
    held_bpc = trainer.evaluate()["bpc"]
    # the unigram baseline: bits/char of the training character frequencies on the held-out text
    freq = np.bincount(train_codes, minlength=VOCAB) + 1.0
    unigram = float(-np.log2(freq / freq.sum())[held_codes[:val_chars]].mean())
    return model, held_codes, {"train_files": len(train), "held_out_files": len(held),
                               "train_chars": len(train_codes), "held_out_chars_scored": len(held_windows) * 256,
                               "held_out_bpc": held_bpc, "unigram_bpc": unigram, "steps": steps}


def train_classifier(demo: DemoRun, corpora: dict[str, Files], snippet: int, per_class: int,
                     steps: int) -> dict[str, Any]:
    """The same CharLSTM, many to one: which corpus is a ``snippet``-character piece from?"""
    rng = np.random.default_rng(demo.seed)
    names = list(corpora)
    parts = {"train": ([], []), "held": ([], [])}
    for label, name in enumerate(names):
        train, held = split_by_file(corpora[name], HELD_OUT_FRACTION, demo.seed)
        for split, files, count in (("train", train, per_class), ("held", held, per_class // 4)):
            codes = join(files)
            starts = rng.integers(0, len(codes) - snippet, size=count)
            parts[split][0].append(np.stack([codes[s:s + snippet] for s in starts]))
            parts[split][1].append(np.full(count, label))
    data = {split: TensorDataset(torch.from_numpy(np.concatenate(x).astype(np.int64)),
                                 torch.from_numpy(np.concatenate(y).astype(np.int64)))
            for split, (x, y) in parts.items()}
    torch.manual_seed(demo.seed)
    model = CharLSTM(outputs=len(names), hidden=128, many_to_one=True)
    config = demo.train_config("classifier", steps=steps, batch_size=64, optimizer="adam", lr=3e-3,
                               grad_clip=1.0, val_every=max(steps // 4, 1), log_every=max(steps // 30, 1),
                               val_metric="accuracy", val_mode="max", ckpt_every=steps)
    trainer = Trainer(model, classifier_loss, data["train"], data["held"], config=config,
                      extra_meta={"classes": names})
    trainer.fit()
    x, y = data["held"].tensors
    with torch.no_grad():
        model.eval()
        predicted = model(x)[0].argmax(1)
    confusion = np.zeros((len(names), len(names)), dtype=int)
    np.add.at(confusion, (y.numpy(), predicted.numpy()), 1)
    return {"classes": names, "snippet_chars": snippet, "held_out_snippets": len(y),
            "held_out_accuracy": float((predicted == y).float().mean()),
            "majority_baseline": float(np.bincount(y.numpy()).max() / len(y)),
            "confusion": confusion.tolist()}


# ----------------------------------------------------------------------------
# Pictures


def plot_language_model(demo: DemoRun, corpus: str, model: CharLSTM, held_out: np.ndarray,
                        samples: dict[float, str], bpc: float) -> str:
    """Held-out text shaded by the model's surprise (blank lines dropped, tabs as arrows), and samples."""
    from matplotlib.patches import Rectangle

    cols, rows, context = 80, 16, 200
    start = context + int(np.flatnonzero(held_out[context:] == ord("\n"))[0]) + 1
    chunk = held_out[start - context: start + 2 * cols * rows]
    bits = surprise(model, chunk, context)
    lines: list[list[tuple[int, float]]] = [[]]
    for code, b in zip(chunk[context:], bits):
        if code == ord("\n") or len(lines[-1]) == cols:
            if lines[-1]:
                lines.append([])
            if code == ord("\n"):
                continue
        lines[-1].append((code, b))
    fig = new_figure(12, 9)
    ax_text, ax_samples = fig.subplots(2, 1, height_ratios=(rows * 0.3, 4.0))
    cmap = _colormap("Reds")
    for r, line in enumerate(lines[:rows]):
        for c, (code, b) in enumerate(line):
            ax_text.add_patch(Rectangle((c, r), 1, 1, color=cmap(min(b / 8.0, 1.0)), lw=0))
            char = decode([code]).replace("\t", "\N{RIGHTWARDS ARROW}")
            ax_text.text(c + 0.5, r + 0.5, char, ha="center", va="center", family="monospace", fontsize=9,
                         parse_math=False)  # TeX's $ is text here
    ax_text.set_xlim(0, cols)
    ax_text.set_ylim(rows, 0)
    ax_text.axis("off")
    ax_text.set_title(f"Held-out {CORPUS_TITLES[corpus]}, each character shaded by the model's surprise "
                      f"(white 0 bits, dark red 8 or more)\nmean over the held-out files: {bpc:.2f} bits/char",
                      fontsize=10)
    text = "\n".join(f"T = {t}:\n" + "\n".join(line.expandtabs(4)[:110] for line in s.splitlines()[:5]) + "\n"
                     for t, s in samples.items())
    ax_samples.text(0.0, 1.0, text, va="top", ha="left", family="monospace", fontsize=8,
                    transform=ax_samples.transAxes, parse_math=False)
    ax_samples.axis("off")
    ax_samples.set_title("Samples at three temperatures T (low: safe and repetitive; high: inventive)",
                         fontsize=10)
    name = f"charlstm-{corpus}.png"
    save_figure(fig, demo.path(name), dpi=90)
    return name


def _colormap(name: str):
    from matplotlib import colormaps

    return colormaps[name]


def plot_confusion(demo: DemoRun, result: dict[str, Any]) -> str:
    names = [CORPUS_TITLES[c] for c in result["classes"]]
    confusion = np.array(result["confusion"])
    fig = new_figure(2.2 + 1.3 * len(names), 1.6 + 1.1 * len(names))
    ax = fig.subplots()
    ax.imshow(confusion, cmap="Blues")
    for (i, j), n in np.ndenumerate(confusion):
        ax.text(j, i, str(n), ha="center", va="center", color="white" if n > confusion.max() / 2 else "black")
    ax.set_xticks(range(len(names)), names, rotation=20, ha="right", fontsize=8)
    ax.set_yticks(range(len(names)), names, fontsize=8)
    ax.set_xlabel("predicted corpus")
    ax.set_ylabel("true corpus")
    ax.set_title(f"Many to one: which corpus is a {result['snippet_chars']}-character held-out snippet from?\n"
                 f"accuracy {result['held_out_accuracy']:.1%} (majority class {result['majority_baseline']:.1%})",
                 fontsize=9)
    save_figure(fig, demo.path("charlstm-classifier.png"))
    return "charlstm-classifier.png"


# ----------------------------------------------------------------------------


def run(demo: DemoRun) -> dict[str, object]:
    if demo.quick:
        lm_corpora = {"python": (python_files(QUICK_PYTHON_CHARS), QUICK_LM_STEPS)}
        class_corpora = {"python": lm_corpora["python"][0], "english": english_files()}
        hidden, val_chars, per_class, class_steps, sample_chars = 96, 12_000, 300, 40, 200
    else:
        lm_corpora = {"pari": (pari_files(), LM_STEPS["pari"]), "linux": (linux_files(), LM_STEPS["linux"])}
        class_corpora = {"pari": lm_corpora["pari"][0], "linux": lm_corpora["linux"][0],
                         "python": python_files()}
        hidden, val_chars, per_class, class_steps, sample_chars = 256, 250_000, 4000, 600, 1200
    results: dict[str, Any] = {"language_model": {}, "pictures": []}
    for corpus, (files, steps) in lm_corpora.items():
        model, held_out, figures = train_language_model(demo, corpus, files, steps, hidden, val_chars)
        samples = {t: sample(model, PRIMES[corpus], sample_chars, t, demo.seed) for t in TEMPERATURES}
        for t, text in samples.items():
            demo.path(f"samples-{corpus}-T{t}.txt").write_text(text)
        figures["samples"] = {str(t): text[:300] for t, text in samples.items()}
        figures["parameters"] = sum(p.numel() for p in model.parameters())
        results["language_model"][corpus] = figures
        results["pictures"].append(plot_language_model(demo, corpus, model, held_out, samples,
                                                       figures["held_out_bpc"]))
    snippet = 48
    results["classifier"] = train_classifier(demo, class_corpora, snippet, per_class, class_steps)
    results["pictures"].append(plot_confusion(demo, results["classifier"]))
    return results
