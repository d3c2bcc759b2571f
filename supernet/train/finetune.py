"""Fine-tuning one plain model: the loop every stand-alone training runs (retraining, BO-HB trials, the
safe pick's re-ranking), the frozen-encoder regime and LP-FT included."""
from __future__ import annotations

import time
from pathlib import Path
from typing import Any, Callable

import numpy as np
import torch
from torch import nn

from supernet.core import distributed
from supernet.core.metrics import compute_metrics
from supernet.data.encoded import Encoded, pad_batch
from supernet.data.tasks import TaskSpec
from supernet.nn.head import ProjectedCosine
from supernet.nn.model import FrozenModel, model_outputs
from supernet.train.frozen import EncoderCache, apply_regime, evaluate_cached, frozen_caches, warm_up_heads
from supernet.train.loop import (
    EpochBatches,
    FineTuneConfig,
    Loop,
    loss_fn,
    make_optimizer,
    resume_progress,
    steps_per_epoch,
)
from supernet.train.probe import fit_into


def fine_tune(model: FrozenModel, spec: TaskSpec, train: Encoded, dev: Encoded, pad_id: int,
              cfg: FineTuneConfig, seed: int, log_dir: Path | None, desc: str = "retrain",
              eval_every: int | None = None, on_eval: Callable[[int, dict[str, float]], None] | None = None,
              checkpoint: Path | None = None, caches: tuple[EncoderCache, EncoderCache] | None = None
              ) -> dict[str, Any]:
    """Fine-tune encoder + head (the head only with ``cfg.freeze_encoder``, on the ``caches`` of
    ``train`` and ``dev``, built here if not given); dev metrics every ``eval_every`` steps (default:
    each epoch) and at the end, to TensorBoard and to ``on_eval(step, scores)``, which may raise to
    stop early (Hyperband's pruning). With ``checkpoint``, the state is saved there every
    ``cfg.checkpoint_every`` steps and a run that finds one continues from it, exactly."""
    device = torch.device(cfg.device)
    model.to(device).train()
    apply_regime(model.encoder, cfg.freeze_encoder)
    if cfg.freeze_encoder:
        caches = caches or frozen_caches(model.encoder, (train, dev), pad_id, model.needs, cfg.device)
        fit_cosine_scale(model, caches[0], train.labels, spec)  # a checkpoint, if any, overrides it below
    distributed.check_batch(cfg.batch_size)
    started = {"seconds": 0.0, "cpu_seconds": 0.0}
    if not cfg.freeze_encoder and fresh_cosine(model) and not (checkpoint and checkpoint.is_file()):
        t0, cpu0 = time.time(), time.process_time()
        fit_cosine_scale_on_encoder(model, train, pad_id, spec, cfg.device)
        started = {"seconds": time.time() - t0, "cpu_seconds": time.process_time() - cpu0}
    warm = {"seconds": 0.0, "cpu_seconds": 0.0}
    if cfg.head_warmup_epochs and not (checkpoint and checkpoint.is_file()):  # a checkpoint holds the warmed head
        labels = lambda rows: torch.from_numpy(train.labels[rows]).to(device)
        warm = warm_up_heads(model, train, pad_id, model.needs, cfg, seed,
                             lambda step, rows, f: loss_fn(spec, model(features=f), labels(rows)), f"{desc} head warm-up")
    trained = distributed.wrap(model)  # DDP under torchrun; rank 0 evaluates and writes
    total = cfg.total_steps(len(train))
    optimizer, scheduler = make_optimizer(model, cfg, total)
    progress = resume_progress(checkpoint, model, optimizer, scheduler)
    batches = EpochBatches(train, cfg.batch_size, seed)

    def train_step(step: int) -> torch.Tensor:
        rows = distributed.shard(batches(step))
        labels = torch.from_numpy(train.labels[rows]).to(device)
        with cfg.autocast():
            if caches:
                return loss_fn(spec, trained(features=caches[0].features(rows, device)), labels)
            batch = {k: v.to(device) for k, v in pad_batch(train, rows, pad_id, model.needs.sides).items()}
            return loss_fn(spec, trained(**batch), labels)

    def score(step: int) -> dict[str, float]:
        return (evaluate_cached(model, caches[1], dev.labels, spec) if caches
                else evaluate(model, dev, spec, pad_id, cfg.device))

    loop = Loop(model, optimizer, scheduler, total, cfg.grad_clip, desc, checkpoint=checkpoint,
                checkpoint_every=cfg.checkpoint_every, checkpoint_at_end=False, log_dir=log_dir,
                eval_every=eval_every or steps_per_epoch(len(train), cfg.batch_size))
    progress = loop.run(train_step, progress, score, on_eval)
    return {"metrics": {k: v for k, v in progress.history[-1].items() if k != "step"}, "history": progress.history,
            "steps": total, "seconds": progress.seconds + warm["seconds"] + started["seconds"],
            "cpu_seconds": progress.cpu_seconds + warm["cpu_seconds"] + started["cpu_seconds"], "head_warmup": warm}


def fresh_cosine(model: FrozenModel) -> bool:
    """Whether ``model``'s head is a cosine head at its start: scale 1 and bias 0 (``cosine_head``), after a
    projection at the identity if it has one. An inherited (supernet) or trained head is not."""
    head = model.head
    if model.pair not in ("cosine", "cosine_proj") or not isinstance(head[-1], nn.Linear):
        return False
    projected = len(head) == 2 and isinstance(head[0], ProjectedCosine)
    if len(head) != 1 + projected or (projected and any(p.any() for p in head[0].parameters())):
        return False
    scale = head[-1]
    return bool((scale.weight == 1).all() and (scale.bias == 0).all())


def fit_cosine_scale(model: FrozenModel, cache: EncoderCache, labels: np.ndarray, spec: TaskSpec) -> None:
    """A cosine head (after its projection at the identity, if any) starts with its scale and bias fitted
    to convergence on the training rows' cosines, so that gradient steps move the projection (or, under
    full fine-tuning, the encoder), not an affine map that is far off. Trained from scale 1, bias 0
    against STS-B's 0-5 labels, the first steps' large errors bent the projection and frozen STS-B dev
    Pearson fell to 0.73 (the bare cosine: 0.870); started fitted, 0.871
    (``bench/results/ablation-frozen-converged/``). For classes, scale 1 on every logit is a tie whose
    gradient on the cosine is 0: the encoder would not move until the scales drift apart."""
    if fresh_cosine(model):
        fit_into(model.head[-1], _cosines(model, cache), torch.from_numpy(np.asarray(labels)), spec.num_labels)


def fit_cosine_scale_on_encoder(model: FrozenModel, data: Encoded, pad_id: int, spec: TaskSpec, device: str,
                                rows: int = 4096) -> None:
    """``fit_cosine_scale`` under full fine-tuning: the cosines of the encoder as it is (pretrained), one
    forward pass of each text, ``rows`` at a time, so only N numbers are held, not N vectors per layer."""
    if not fresh_cosine(model):
        return
    chunks = [data.subset(np.arange(i, min(i + rows, len(data)))) for i in range(0, len(data), rows)]
    cos = torch.cat([_cosines(model, frozen_caches(model.encoder, (c,), pad_id, model.needs, device)[0])
                     for c in chunks])
    fit_into(model.head[-1], cos, torch.from_numpy(np.asarray(data.labels)), spec.num_labels)


def _cosines(model: FrozenModel, cache: EncoderCache) -> torch.Tensor:
    """(N, 1): what a cosine head's scale and bias read, on a cache (after the projection, if any)."""
    project = model.head[0] if len(model.head) == 2 else (lambda x: x)
    return cache.outputs(lambda f: project(model.vector(f)), next(model.parameters()).device)


def evaluate(model: nn.Module, data: Encoded, spec: TaskSpec, pad_id: int, device: str,
             batch_size: int = 128) -> dict[str, float]:
    """The task's official metrics of a plain model on a split."""
    return compute_metrics(spec.metrics, model_outputs(model, data, pad_id, device, batch_size), data.labels)


def split_outputs(model: nn.Module, data: Encoded, pad_id: int, device: str, cache: EncoderCache | None = None
                  ) -> np.ndarray:
    """A plain model's outputs on every row of a split, in row order (from the cache when frozen)."""
    if cache is None:
        return model_outputs(model, data, pad_id, device)
    was_training = model.training
    model.eval()
    try:
        return cache.outputs(lambda f: model(features=f), device).numpy()
    finally:
        model.train(was_training)
