"""Compare what two encoders compute, layer by layer (``python -m supernet.analyze`` is the command).

- Linear CKA (Kornblith et al. 2019) between every layer of encoder A and every layer of encoder
  B on the same sentences, as a heatmap: 1 on the diagonal means a layer is unchanged (up to a
  rotation and scale), e.g. the pretrained encoder vs the one a supernet or a retrain fine-tuned.
- Linear probes per layer: logistic regression on the frozen, mean-pooled layer outputs of each
  encoder, trained on one part of the rows and scored on the rest, plotted against depth.

An encoder is a model directory or hub id, a retrained ``model.pt`` (``python -m retrain``), or a
search run directory (its supernet ``checkpoint.pt``; in a backbone space, the encoder of the
run's ``arch_top1.json`` with the supernet's weights, e.g. FFN-dropped layers).
"""
from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch

from supernet.core.config import Config, arg
from supernet.core.errors import InputError
from supernet.core.files import atomic_write_json, claim_output_dir
from supernet.data.encoded import Encoded, encode, pad_batch
from supernet.data.sources import TRAIN, DataConfig, load_splits
from supernet.nn.arch import Architecture
from supernet.nn.encoder import EncoderConfig, load_encoder
from supernet.nn.ops import POOLINGS
from supernet.nn.saved import load_model, read_model_file
from supernet.train.supernet import RUN_CONFIG, load_supernet


def linear_cka(x: torch.Tensor, y: torch.Tensor) -> float:
    """Linear CKA of two representations of the same n rows ([n, d1], [n, d2]); in [0, 1]."""
    x = (x - x.mean(0)).double()
    y = (y - y.mean(0)).double()
    cross = torch.linalg.matrix_norm(y.T @ x) ** 2
    return float(cross / (torch.linalg.matrix_norm(x.T @ x) * torch.linalg.matrix_norm(y.T @ y)))


def cka_matrix(a: list[torch.Tensor], b: list[torch.Tensor]) -> np.ndarray:
    return np.array([[linear_cka(x, y) for y in b] for x in a])


@torch.no_grad()
def layer_features(encoder: torch.nn.Module, data: Encoded, pad_id: int, batch_size: int = 64) -> list[torch.Tensor]:
    """Mean-pooled output of the embeddings and of every layer: [n, hidden] per layer, in row order."""
    encoder.eval()
    chunks: list[list[torch.Tensor]] = []
    order = np.arange(len(data))
    for start in range(0, len(data), batch_size):
        batch = pad_batch(data, order[start:start + batch_size], pad_id)
        out = encoder(input_ids=batch["input_ids"], attention_mask=batch["attention_mask"],
                      token_type_ids=batch.get("token_type_ids"), output_hidden_states=True)
        pooled = [POOLINGS["mean"](h, batch["attention_mask"], None).float() for h in out.hidden_states]
        chunks = chunks or [[] for _ in pooled]
        for i, p in enumerate(pooled):
            chunks[i].append(p)
    return [torch.cat(c) for c in chunks]


def probe_accuracy(features: torch.Tensor, labels: np.ndarray, train_rows: np.ndarray, test_rows: np.ndarray,
                   l2: float = 1e-3, steps: int = 200) -> float:
    """Multinomial logistic regression (L-BFGS, L2) on standardised features; test accuracy."""
    x = features.double()
    mu, sd = x[train_rows].mean(0), x[train_rows].std(0) + 1e-6
    x = (x - mu) / sd
    y = torch.as_tensor(labels, dtype=torch.long)
    classes = int(y.max()) + 1
    w = torch.zeros(x.shape[1], classes, dtype=torch.double, requires_grad=True)
    b = torch.zeros(classes, dtype=torch.double, requires_grad=True)
    opt = torch.optim.LBFGS([w, b], max_iter=steps, line_search_fn="strong_wolfe")

    def closure():
        opt.zero_grad()
        loss = torch.nn.functional.cross_entropy(x[train_rows] @ w + b, y[train_rows]) + l2 * (w ** 2).sum()
        loss.backward()
        return loss
    opt.step(closure)
    with torch.no_grad():
        return float(((x[test_rows] @ w + b).argmax(1) == y[test_rows]).double().mean())


def load_any_encoder(source: str) -> tuple[torch.nn.Module, str]:
    """(encoder, tokenizer source) from a model dir / hub id, a retrained model.pt or a search run dir."""
    path = Path(source)
    if path.is_dir() and (path / RUN_CONFIG).is_file():
        supernet = load_supernet(path)
        model = EncoderConfig.from_dict(json.loads((path / RUN_CONFIG).read_text())["encoder"]).model
        if not supernet.space.has_backbone:
            return supernet.encoder, model
        return _searched_backbone(path, supernet), model
    if path.is_file() and path.suffix == ".pt":
        return load_model(path).encoder, read_model_file(path)["encoder_source"]
    return load_encoder(source), source


def _searched_backbone(run_dir: Path, supernet) -> torch.nn.Module:
    """The frozen encoder of the run's best architecture, with the supernet's trained weights."""
    top = run_dir / "arch_top1.json"
    if not top.is_file():
        raise InputError(f"{run_dir} searched backbone space {supernet.space.name!r} and has no arch_top1.json yet "
                         "(finish the search with --resume)")
    return supernet.encoder.freeze(Architecture.load(top).choices)


def heatmap(matrix: np.ndarray, names: tuple[str, str], path: Path) -> None:
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    fig, ax = plt.subplots(figsize=(5.5, 4.5))
    im = ax.imshow(matrix, vmin=0, vmax=1, cmap="viridis", origin="lower")
    ax.set_xlabel(f"{names[1]} layer (0 = embeddings)")
    ax.set_ylabel(f"{names[0]} layer (0 = embeddings)")
    ax.set_title("linear CKA")
    fig.colorbar(im, ax=ax)
    fig.tight_layout()
    fig.savefig(path, dpi=120)
    plt.close(fig)


def probe_plot(curves: dict[str, list[float]], majority: float, path: Path) -> None:
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    fig, ax = plt.subplots(figsize=(6, 4))
    for name, acc in curves.items():
        ax.plot(range(len(acc)), acc, marker="o", label=name)
    ax.axhline(majority, color="grey", ls="--", label="majority class")
    ax.set_xlabel("layer (0 = embeddings)")
    ax.set_ylabel("probe accuracy (held-out rows)")
    ax.legend(loc="best")
    ax.grid(alpha=0.3)
    fig.tight_layout()
    fig.savefig(path, dpi=120)
    plt.close(fig)


@dataclass(frozen=True)
class AnalysisConfig(Config):
    """Which two encoders to compare, on how many rows."""

    model_a: str = arg("minilm", "model dir / hub id, retrained model.pt, or search run dir")
    model_b: str = arg("", "the same kinds as --model-a (required)")
    rows: int = arg(1000, "training rows used (CKA on all, probes on a 70/30 split)")

    def __post_init__(self):
        if not self.model_b:
            raise InputError("--model-b is required (a model dir, a retrained model.pt or a search run dir)")
        if self.rows < 10:
            raise InputError(f"--rows must be >= 10, got {self.rows}")


def analyze(cfg: AnalysisConfig, data_cfg: DataConfig, output_dir: str | None, overwrite: bool) -> dict[str, Any]:
    """CKA heatmap, per-layer probes and ``analysis.json`` for two encoders on ``data_cfg``'s rows."""
    from supernet.nn.encoder import load_tokenizer
    spec, splits = load_splits(data_cfg)
    if spec.is_regression:
        raise InputError(f"--task {spec.name} is a regression task; probes need classes")
    (enc_a, src_a), (enc_b, src_b) = load_any_encoder(cfg.model_a), load_any_encoder(cfg.model_b)
    tok = load_tokenizer(src_a)
    out = claim_output_dir(Path(output_dir or f"logs/analyze-{spec.name}"), overwrite, "an analysis",
                           "pick another --output-dir")
    data = encode(splits[TRAIN].head(cfg.rows), tok, data_cfg.max_length, data_cfg.cache_dir)
    pad_id = tok.pad_token_id or 0
    feats_a, feats_b = layer_features(enc_a, data, pad_id), layer_features(enc_b, data, pad_id)
    cka = cka_matrix(feats_a, feats_b)
    rows = np.random.default_rng(0).permutation(len(data))
    cut = int(0.7 * len(rows))
    probes = {name: [probe_accuracy(f, data.labels, rows[:cut], rows[cut:]) for f in feats]
              for name, feats in (("A", feats_a), ("B", feats_b))}
    majority = float(np.bincount(data.labels[rows[cut:]]).max() / (len(rows) - cut))
    heatmap(cka, ("A", "B"), out / "cka.png")
    probe_plot(probes, majority, out / "probes.png")
    result = {"task": spec.name, "rows": len(data), "model_a": cfg.model_a, "model_b": cfg.model_b,
              "cka": cka.tolist(), "cka_diagonal": np.diag(cka).tolist() if cka.shape[0] == cka.shape[1] else None,
              "probe_accuracy": probes, "majority": majority}
    atomic_write_json(out / "analysis.json", result)
    print(f"CKA diagonal (A vs B, layer by layer): {np.round(np.diag(cka), 3).tolist()}\n"
          f"probe accuracy A: {np.round(probes['A'], 3).tolist()}\n"
          f"probe accuracy B: {np.round(probes['B'], 3).tolist()}"
          f" (majority {majority:.3f}); wrote cka.png, probes.png, analysis.json to {out}")
    return result