"""Train the supernet once: SPOS-style uniform path sampling, several heads per encoder forward.

The encoder dominates the cost of a step, so each batch goes through the encoder once and
``heads_per_step`` uniformly sampled heads are trained on its pooled outputs (their losses averaged).
Checkpoints hold model, optimizer, scheduler, step and RNG state; ``resume`` continues exactly.
"""
from __future__ import annotations

import math
import random
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any, Mapping

import numpy as np
import torch
import torch.nn.functional as F
from torch.utils.tensorboard import SummaryWriter
from tqdm.auto import tqdm

from . import distributed
from .arch import atomic_torch_save
from .data import Encoded, batch_indices, pad_batch
from .metrics import compute_metrics
from .model import HeadSupernet, SuperHead
from .space import SearchSpace
from .tasks import TaskSpec

CHECKPOINT = "checkpoint.pt"


@dataclass(frozen=True)
class FineTuneConfig:
    """Knobs of any encoder + head fine-tune (validated; the messages name the CLI flag)."""

    epochs: float = 1.0
    max_steps: int | None = None
    batch_size: int = 32
    lr_encoder: float = 5e-5
    lr_head: float = 1e-3
    weight_decay: float = 0.01
    warmup_ratio: float = 0.06
    grad_clip: float = 1.0
    precision: str = "fp32"
    device: str = "cpu"

    def __post_init__(self):
        if self.epochs <= 0 and not self.max_steps:
            raise ValueError(f"--epochs must be > 0 (or give --max-steps), got {self.epochs}")
        if self.max_steps is not None and self.max_steps < 1:
            raise ValueError(f"--max-steps must be >= 1, got {self.max_steps}")
        if self.batch_size < 2:
            raise ValueError(f"--batch-size must be >= 2 (batch norm needs 2 rows), got {self.batch_size}")
        if self.precision not in ("fp32", "bf16"):
            raise ValueError(f"--precision must be fp32 or bf16, got {self.precision!r}")
        for flag, lr in (("--lr-encoder", self.lr_encoder), ("--lr-head", self.lr_head)):
            if not lr >= 0:
                raise ValueError(f"{flag} must be >= 0, got {lr}")


@dataclass(frozen=True)
class TrainConfig(FineTuneConfig):
    """Supernet fine-tuning: the shared knobs plus SPOS sampling, checkpoints and probes."""

    heads_per_step: int = 4
    full_backbone_every: int = 2  # backbone spaces: every n-th step runs the full pretrained encoder (0: never)
    seed: int = 0
    checkpoint_every: int = 100
    eval_every: int = 50
    num_probes: int = 3

    def __post_init__(self):
        super().__post_init__()
        if self.heads_per_step < 1:
            raise ValueError(f"--heads-per-step must be >= 1, got {self.heads_per_step}")
        if self.full_backbone_every < 0:
            raise ValueError(f"--full-backbone-every must be >= 0, got {self.full_backbone_every}")


def loss_fn(spec: TaskSpec, logits: torch.Tensor, labels: torch.Tensor) -> torch.Tensor:
    if spec.is_regression:
        return F.mse_loss(logits.squeeze(-1).float(), labels.float())
    return F.cross_entropy(logits.float(), labels)


def arch_rng(seed: int, step: int) -> random.Random:
    """The architectures of a step depend on (seed, step) only, so a resumed run samples the same ones."""
    return random.Random(seed * 1_000_003 + step)


def steps_per_epoch(n: int, batch_size: int) -> int:
    return max(1, n // batch_size)  # the ragged last batch is dropped: batch norm needs >1 row


def epoch_batches(data: Encoded, batch_size: int, seed: int, epoch: int) -> list[np.ndarray]:
    """The full batches of one epoch (a ragged last batch is dropped), shuffled by (seed, epoch)."""
    batches = batch_indices(data, batch_size, shuffle=True, seed=seed * 7919 + epoch)
    return [b for b in batches if len(b) == batch_size] or batches


def step_architectures(space: SearchSpace, rng: random.Random, n: int, full_backbone: bool = False
                       ) -> list[dict[str, Any]]:
    """The ``n`` candidates trained on one batch. In a backbone space they share the first one's
    encoder choices (one encoder forward per step serves all of them), or with ``full_backbone``
    the full pretrained encoder's."""
    archs = [space.sample(rng) for _ in range(n)]
    source = space.reference() if full_backbone else archs[0]
    shared = {k: source[k] for k in space.backbone_choices(source) if k in source}
    return [{**a, **shared} for a in archs]


def is_full_backbone_step(cfg: TrainConfig, step: int) -> bool:
    """Uniform sampling alone rarely runs the pretrained path whole (1 in 8^L steps with +ffn+conv),
    and its inherited score then says little about it; like the sandwich rule's largest subnet,
    every n-th step trains it, at no extra encoder forward."""
    return cfg.full_backbone_every > 0 and step % cfg.full_backbone_every == 0


def probe_architectures(space: SearchSpace, n: int) -> list[dict[str, Any]]:
    """Fixed subnets whose dev score is logged during supernet training (the same in every run)."""
    return [space.sample(random.Random(10_000 + i)) for i in range(n)]


@torch.no_grad()
def dev_features(supernet: HeadSupernet, data: Encoded, pad_id: int, batch_size: int = 128,
                 device: str = "cpu", choices: Mapping[str, Any] | None = None) -> dict[str, torch.Tensor]:
    """Encoder outputs of a split pooled every way the space allows, computed once and reused
    (in a backbone space: by the encoder of ``choices``)."""
    was_training = supernet.training
    supernet.eval()
    chunks: dict[str, list[torch.Tensor]] = {p: [] for p in supernet.space.pool}
    order = np.arange(len(data))  # unsorted: rows stay aligned with labels
    for start in range(0, len(data), batch_size):
        batch = {k: v.to(device) for k, v in pad_batch(data, order[start:start + batch_size], pad_id).items()}
        for p, feats in supernet.pooled_features(batch, choices=choices).items():
            chunks[p].append(feats.float().cpu())
    supernet.train(was_training)
    return {p: torch.cat(c) for p, c in chunks.items()}


@torch.no_grad()
def score_heads(head: SuperHead, spec: TaskSpec, features: Mapping[str, torch.Tensor],
                labels: np.ndarray, archs: list[Mapping[str, Any]]) -> list[dict[str, float]]:
    """Official metrics of several heads on precomputed features (supernet BN statistics as they are)."""
    was_training = head.training
    head.eval()
    device = next(head.parameters()).device
    out = [compute_metrics(spec.metrics, head(features[a["pool"]].to(device), a).float().cpu().numpy(), labels)
           for a in archs]
    head.train(was_training)
    return out


def score_probes(supernet: HeadSupernet, spec: TaskSpec, dev: Encoded, pad_id: int,
                 archs: list[Mapping[str, Any]], device: str) -> list[dict[str, float]]:
    """Dev metrics of fixed subnets; one encoder pass per distinct backbone (one in a head-only space)."""
    by_backbone: dict[tuple, list[int]] = {}
    for i, a in enumerate(archs):
        by_backbone.setdefault(supernet.space.backbone_key(a), []).append(i)
    out: list[dict[str, float]] = [{} for _ in archs]
    for rows in by_backbone.values():
        feats = dev_features(supernet, dev, pad_id, device=device, choices=archs[rows[0]])
        for i, scores in zip(rows, score_heads(supernet.head, spec, feats, dev.labels, [archs[r] for r in rows])):
            out[i] = scores
    return out


def _lr_lambda(total: int, warmup: int):
    def f(step: int) -> float:
        if step < warmup:
            return (step + 1) / max(1, warmup)
        return max(0.0, (total - step) / max(1, total - warmup))
    return f


def make_optimizer(supernet: HeadSupernet, cfg: TrainConfig, total_steps: int):
    # parameters with no pretrained value (head, new conv blocks) train at the head's rate
    new = getattr(supernet.encoder, "new_parameters", list)()
    new_ids = {id(p) for p in new}
    pretrained = [p for p in supernet.encoder.parameters() if id(p) not in new_ids]
    groups = []
    for params, lr in ((pretrained, cfg.lr_encoder), (list(supernet.head.parameters()) + new, cfg.lr_head)):
        # no weight decay on biases and norm gains (the 1-D parameters), as BERT fine-tuning does
        groups.append({"params": [p for p in params if p.ndim > 1], "lr": lr, "weight_decay": cfg.weight_decay})
        groups.append({"params": [p for p in params if p.ndim <= 1], "lr": lr, "weight_decay": 0.0})
    # fused: one kernel over all tensors instead of a Python loop per parameter (measured: the
    # optimizer step was 24% of a 2-layer supernet step on CPU, see bench/train_throughput.py)
    optimizer = torch.optim.AdamW([g for g in groups if g["params"]], fused=True)
    scheduler = torch.optim.lr_scheduler.LambdaLR(
        optimizer, _lr_lambda(total_steps, int(cfg.warmup_ratio * total_steps)))
    return optimizer, scheduler


def all_finite(module: torch.nn.Module) -> bool:
    return all(bool(torch.isfinite(p).all()) for p in module.parameters())


def save_checkpoint(path: Path, supernet, optimizer, scheduler, step: int, extra: dict) -> None:
    if not all_finite(supernet):  # an overflowing step must not replace the last good checkpoint
        raise FloatingPointError(f"weights became non-finite by step {step}; lower --lr-encoder/--lr-head. "
                                 f"The last good checkpoint is kept in {path}")
    state = {"model": supernet.state_dict(), "optimizer": optimizer.state_dict(), "scheduler": scheduler.state_dict(),
             "step": step, "torch_rng": torch.get_rng_state(), "extra": extra}
    atomic_torch_save(state, path)  # a kill during the save keeps the previous checkpoint


def restore_checkpoint(path: Path, model: torch.nn.Module, optimizer, scheduler) -> tuple[int, dict]:
    """Load what ``save_checkpoint`` wrote back into the live objects; returns (step, extra)."""
    state = load_checkpoint(path)
    model.load_state_dict(state["model"])
    optimizer.load_state_dict(state["optimizer"])
    scheduler.load_state_dict(state["scheduler"])
    torch.set_rng_state(state["torch_rng"])
    return state["step"], state["extra"]


def optimizer_step(loss: torch.Tensor, model: torch.nn.Module, optimizer, scheduler, grad_clip: float,
                   where: str, note: str = "") -> torch.Tensor:
    """Backward, clip, step. The loss averaged over ranks is checked first (and returned), so every
    rank stops together on a non-finite one."""
    mean_loss = distributed.mean(loss)
    if not torch.isfinite(mean_loss):
        raise FloatingPointError(f"loss is {mean_loss.item()} at {where}; lower --lr-encoder/--lr-head{note}")
    optimizer.zero_grad(set_to_none=True)
    loss.backward()
    torch.nn.utils.clip_grad_norm_(model.parameters(), grad_clip)
    optimizer.step()
    scheduler.step()
    return mean_loss


def load_checkpoint(path: Path) -> dict:
    try:
        return torch.load(path, map_location="cpu", weights_only=False)
    except Exception as e:
        raise ValueError(f"checkpoint {path} is corrupt or truncated ({type(e).__name__}); "
                         "delete it to start over, or point --resume at another run") from None


class StepLoss(torch.nn.Module):
    """A supernet step's loss as a ``forward``, so DistributedDataParallel can wrap it: one encoder
    forward, pooled the ways the sampled heads need, and the mean of their losses."""

    def __init__(self, supernet: HeadSupernet, spec: TaskSpec):
        super().__init__()
        self.supernet, self.spec = supernet, spec

    def forward(self, batch: Mapping[str, torch.Tensor], archs: list[dict[str, Any]]) -> torch.Tensor:
        # in sample order, not a set's: the graph's order fixes the float summation order of the
        # encoder's gradients, and a set's order changes with each process's string hash seed
        pooled = self.supernet.pooled_features(batch, tuple(dict.fromkeys(a["pool"] for a in archs)), archs[0])
        loss = sum(loss_fn(self.spec, self.supernet.head(pooled[a["pool"]], a), batch["labels"]) for a in archs)
        return loss / len(archs)


def train_supernet(supernet: HeadSupernet, spec: TaskSpec, train: Encoded, dev: Encoded, pad_id: int,
                   cfg: TrainConfig, run_dir: Path, resume: bool = False) -> dict[str, Any]:
    """Fine-tune encoder + all heads; returns training stats. Checkpoints to ``run_dir/checkpoint.pt``."""
    device = torch.device(cfg.device)
    supernet.to(device).train()
    distributed.check_batch(cfg.batch_size)
    model = distributed.wrap(StepLoss(supernet, spec))  # itself when not under torchrun
    main = distributed.is_main()
    per_epoch = steps_per_epoch(len(train), cfg.batch_size)
    total = cfg.max_steps or math.ceil(cfg.epochs * per_epoch)
    optimizer, scheduler = make_optimizer(supernet, cfg, total)
    start = 0
    ckpt_path = run_dir / CHECKPOINT
    if resume and ckpt_path.is_file():
        start, _ = restore_checkpoint(ckpt_path, supernet, optimizer, scheduler)
    else:
        torch.manual_seed(cfg.seed)
    if distributed.rank():  # dropout masks differ between ranks (their rows differ too)
        torch.manual_seed(cfg.seed * 1_000_003 + distributed.rank() * 7919 + start)
    probes = probe_architectures(supernet.space, cfg.num_probes)
    writer = SummaryWriter(str(run_dir / "tensorboard"), purge_step=start or None) if main else None
    autocast = torch.autocast(device.type, dtype=torch.bfloat16, enabled=cfg.precision == "bf16")
    bar = tqdm(total=total, initial=start, desc="supernet", unit="step", dynamic_ncols=True, disable=not main)
    epoch, batches, step, seen = -1, [], start, 0
    try:  # the bar is closed first, so an error message starts on its own line
        while step < total:
            if step // per_epoch != epoch:
                epoch = step // per_epoch
                batches = epoch_batches(train, cfg.batch_size, cfg.seed, epoch)
            rows = batches[step % per_epoch]
            batch = {k: v.to(device) for k, v in pad_batch(train, distributed.shard(rows), pad_id).items()}
            rng = arch_rng(cfg.seed, step)  # the same heads on every rank, without communication
            archs = step_architectures(supernet.space, rng, cfg.heads_per_step, is_full_backbone_step(cfg, step))
            with autocast:
                loss = model(batch, archs)
            mean_loss = optimizer_step(loss, supernet, optimizer, scheduler, cfg.grad_clip, f"step {step}",
                                       f". The last good checkpoint is kept in {ckpt_path}")
            step += 1
            seen += len(rows)
            bar.update(1)
            if main and (step % 10 == 0 or step == total):  # .item() syncs; not every step
                writer.add_scalar("train/loss", mean_loss.item(), step)
                writer.add_scalar("train/lr_encoder", scheduler.get_last_lr()[0], step)
                bar.set_postfix(loss=f"{mean_loss.item():.4f}")
            if main and (step % cfg.eval_every == 0 or step == total):
                for i, scores in enumerate(score_probes(supernet, spec, dev, pad_id, probes, str(device))):
                    for name, value in scores.items():
                        writer.add_scalar(f"probe{i}/{name}", value, step)
            if step % cfg.checkpoint_every == 0 or step == total:
                if main:
                    save_checkpoint(ckpt_path, supernet, optimizer, scheduler, step, {"train_config": asdict(cfg)})
                distributed.barrier()
    finally:
        bar.close()
        if writer:
            writer.close()
    return {"steps": total, "resumed_from": start, "sequences": seen, "probes": probes}
