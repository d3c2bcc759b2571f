"""The one training loop: supernet training, retraining and BO-Hyperband trials all run here.

A caller gives the loop a *step function* (step -> loss, forward included) and an optional
*evaluation* (step -> scores); the loop does the rest the same way for all three: the optimizer step
(clipping, non-finite checks over ranks), the progress bar, TensorBoard, evaluations, checkpoints
and resuming. A checkpoint holds model, optimizer, scheduler, step and RNG state plus the progress
(evaluation history, wall and CPU seconds so far), so a resumed run continues exactly and its cost
is the sum over its processes.

Why our own loop and not Lightning (which NNI's one-shot strategies must use): a supernet step
samples several heads on one encoder forward and needs the optimizer to be the fused AdamW (the
optimizer step was 24% of a CPU supernet step before fusing, bench/train_throughput.py), and
Lightning's per-step hooks cost time this loop does not pay. Measured on the 2-core CPU with
MiniLM-L6 (``bench/results/speed-cpu/``): supernet training runs at 0.96x the sequences/s of a plain
fine-tune through this same loop (the P2 ratio).
"""
from __future__ import annotations

import math
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable

import numpy as np
import torch
import torch.nn.functional as F
from torch.utils.tensorboard import SummaryWriter
from tqdm.auto import tqdm

from supernet.core import distributed
from supernet.core.config import Config, arg
from supernet.core.errors import InputError
from supernet.core.files import atomic_torch_save
from supernet.data.encoded import Encoded, batch_indices
from supernet.data.tasks import TaskSpec

PRECISIONS = ("fp32", "bf16")


@dataclass(frozen=True)
class FineTuneConfig(Config):
    """Knobs of any encoder + head fine-tune (validated; the messages name the CLI flag)."""

    epochs: float = arg(1.0, "fine-tuning epochs")
    max_steps: int | None = arg(None, "optimizer steps; overrides --epochs")
    batch_size: int = arg(32, "rows per optimizer step (over all processes under torchrun)")
    lr_encoder: float = arg(5e-5, "peak learning rate of the pretrained encoder")
    lr_head: float = arg(1e-3, "peak learning rate of the head and of blocks without pretrained weights")
    weight_decay: float = arg(0.01, "AdamW weight decay (not on biases and norm gains)")
    warmup_ratio: float = arg(0.06, "share of the steps with a linear learning-rate warm-up")
    grad_clip: float = arg(1.0, "gradient norm clipping")
    precision: str = arg("fp32", "bf16 autocast (use on GPU)", choices=PRECISIONS)
    device: str = arg("cpu", "cpu, cuda, cuda:1, ...")
    checkpoint_every: int = arg(100, "steps between checkpoints (--resume continues from the last)")
    freeze_encoder: bool = arg(False, "train heads only: the encoder stays as pretrained, and its outputs on the "
                                      "training rows are computed once (the sentence-embedding regime)")
    head_warmup_epochs: float = arg(0.0, "LP-FT (Kumar et al. 2022): first train the head(s) this many epochs on the "
                                         "frozen encoder's cached outputs, then fine-tune everything; 0: off",
                                    metavar="EPOCHS")

    def __post_init__(self):
        if self.epochs <= 0 and not self.max_steps:
            raise InputError(f"--epochs must be > 0 (or give --max-steps), got {self.epochs}")
        if self.max_steps is not None and self.max_steps < 1:
            raise InputError(f"--max-steps must be >= 1, got {self.max_steps}")
        if self.batch_size < 2:
            raise InputError(f"--batch-size must be >= 2 (batch norm needs 2 rows), got {self.batch_size}")
        if self.precision not in PRECISIONS:
            raise InputError(f"--precision must be one of {list(PRECISIONS)}, got {self.precision!r}")
        for flag, lr in (("--lr-encoder", self.lr_encoder), ("--lr-head", self.lr_head)):
            if not lr >= 0:
                raise InputError(f"{flag} must be >= 0, got {lr}")
        if not 0.0 <= self.warmup_ratio < 1.0:
            raise InputError(f"--warmup-ratio must be in [0, 1), got {self.warmup_ratio}")
        if self.checkpoint_every < 1:
            raise InputError(f"--checkpoint-every must be >= 1, got {self.checkpoint_every}")
        if not self.grad_clip > 0:  # 0 zeroes every gradient (nothing trains), < 0 flips them
            raise InputError(f"--grad-clip must be > 0, got {self.grad_clip}")
        if not self.weight_decay >= 0:
            raise InputError(f"--weight-decay must be >= 0, got {self.weight_decay}")
        check_device(self.device)
        if not self.head_warmup_epochs >= 0:
            raise InputError(f"--head-warmup-epochs must be >= 0, got {self.head_warmup_epochs}")
        if self.head_warmup_epochs and self.freeze_encoder:  # the head trains on the frozen encoder anyway
            raise InputError("--head-warmup-epochs warms a head up before the encoder is fine-tuned; with "
                             "--freeze-encoder there is no fine-tuning after it: drop one of them")

    def total_steps(self, rows: int) -> int:
        return self.max_steps or math.ceil(self.epochs * steps_per_epoch(rows, self.batch_size))

    def autocast(self):
        device = torch.device(self.device)
        return torch.autocast(device.type, dtype=torch.bfloat16, enabled=self.precision == "bf16")


def check_device(device: str) -> None:
    """A device torch knows and this machine has (else the first forward fails after the run dir is written)."""
    try:
        dev = torch.device(device)
    except (RuntimeError, ValueError):
        raise InputError(f"--device {device!r} is not a device: use cpu, cuda or cuda:<index>") from None
    if dev.type == "cuda" and not torch.cuda.is_available():
        raise InputError(f"--device {device}: this machine (or this torch build) has no CUDA GPU; use --device cpu")
    if dev.type == "cuda" and dev.index is not None and dev.index >= torch.cuda.device_count():
        raise InputError(f"--device {device}: there are {torch.cuda.device_count()} CUDA GPUs")


def loss_fn(spec: TaskSpec, logits: torch.Tensor, labels: torch.Tensor) -> torch.Tensor:
    if spec.is_regression:
        return F.mse_loss(logits.squeeze(-1).float(), labels.float())
    return F.cross_entropy(logits.float(), labels)


def steps_per_epoch(n: int, batch_size: int) -> int:
    return max(1, n // batch_size)  # the ragged last batch is dropped: batch norm needs >1 row


def epoch_batches(data: Encoded, batch_size: int, seed: int, epoch: int) -> list[np.ndarray]:
    """The full batches of one epoch (a ragged last batch is dropped), shuffled by (seed, epoch)."""
    batches = batch_indices(data, batch_size, shuffle=True, seed=seed * 7919 + epoch)
    return [b for b in batches if len(b) == batch_size] or batches


class EpochBatches:
    """The row indices of step ``s``'s batch: epochs reshuffled by (seed, epoch), computed once per epoch."""

    def __init__(self, data: Encoded, batch_size: int, seed: int):
        self.data, self.batch_size, self.seed = data, batch_size, seed
        self.per_epoch = steps_per_epoch(len(data), batch_size)
        self._epoch, self._batches = -1, []

    def __call__(self, step: int) -> np.ndarray:
        epoch = step // self.per_epoch
        if epoch != self._epoch:
            self._epoch, self._batches = epoch, epoch_batches(self.data, self.batch_size, self.seed, epoch)
        return self._batches[step % len(self._batches)]


def _lr_lambda(total: int, warmup: int):
    def f(step: int) -> float:
        if step < warmup:
            return (step + 1) / max(1, warmup)
        return max(0.0, (total - step) / max(1, total - warmup))
    return f


def make_optimizer(model: torch.nn.Module, cfg: FineTuneConfig, total_steps: int):
    """AdamW over ``model.encoder`` (at ``lr_encoder``; not with ``freeze_encoder``) and ``model.head``
    plus any encoder blocks without pretrained weights (at ``lr_head``), linear warm-up then linear decay."""
    new = getattr(model.encoder, "new_parameters", list)()
    new_ids = {id(p) for p in new}
    pretrained = [] if cfg.freeze_encoder else [p for p in model.encoder.parameters() if id(p) not in new_ids]
    groups = []
    head = [p for name in ("head", "tokens", "scalar_mix") if getattr(model, name, None) is not None
            for p in getattr(model, name).parameters()]
    for params, lr in ((pretrained, cfg.lr_encoder), (list(dict.fromkeys(head)) + new, cfg.lr_head)):
        # no weight decay on biases and norm gains (the 1-D parameters), as BERT fine-tuning does
        groups.append({"params": [p for p in params if p.ndim > 1], "lr": lr, "weight_decay": cfg.weight_decay})
        groups.append({"params": [p for p in params if p.ndim <= 1], "lr": lr, "weight_decay": 0.0})
    grouped = {id(p) for g in groups for p in g["params"]}
    frozen = {id(p) for p in model.encoder.parameters()} if cfg.freeze_encoder else set()
    left_out = [n for n, p in model.named_parameters() if id(p) not in grouped | frozen]
    assert not left_out, f"parameters no optimizer group trains: {left_out[:5]}"
    # fused: one kernel over all tensors instead of a Python loop per parameter (measured: the
    # optimizer step was 24% of a 2-layer supernet step on CPU, see bench/train_throughput.py)
    optimizer = torch.optim.AdamW([g for g in groups if g["params"]], fused=True)
    scheduler = torch.optim.lr_scheduler.LambdaLR(optimizer, _lr_lambda(total_steps, int(cfg.warmup_ratio * total_steps)))
    return optimizer, scheduler


class Diverged(InputError, FloatingPointError):
    """The loss or the weights became non-finite: the learning rate is too high for this run."""


def all_finite(module: torch.nn.Module) -> bool:
    return all(bool(torch.isfinite(p).all()) for p in module.parameters())


def optimizer_step(loss: torch.Tensor, model: torch.nn.Module, optimizer, scheduler, grad_clip: float,
                   where: str, note: str = "") -> torch.Tensor:
    """Backward, clip, step. The loss averaged over ranks is checked first (and returned), so every
    rank stops together on a non-finite one."""
    mean_loss = distributed.mean(loss)
    if not torch.isfinite(mean_loss):
        raise Diverged(f"loss is {mean_loss.item()} at {where}; lower --lr-encoder/--lr-head{note}")
    optimizer.zero_grad(set_to_none=True)
    loss.backward()
    # over what the optimizer trains: the same norm as over every parameter (the others have no gradient),
    # without walking a frozen encoder's module tree at every step
    torch.nn.utils.clip_grad_norm_([p for g in optimizer.param_groups for p in g["params"]], grad_clip)
    optimizer.step()
    scheduler.step()
    return mean_loss


@dataclass
class Progress:
    """What a run has done so far, kept in its checkpoint beside the weights."""

    step: int = 0
    history: list[dict[str, Any]] = field(default_factory=list)  # evaluations: {"step", **scores}
    seconds: float = 0.0      # wall seconds over every process of the run (resumes included)
    cpu_seconds: float = 0.0  # CPU seconds of those processes
    resumed_from: int = 0


def load_checkpoint(path: Path) -> dict:
    try:
        return torch.load(path, map_location="cpu", weights_only=False)
    except Exception as e:
        raise InputError(f"checkpoint {path} is corrupt or truncated ({type(e).__name__}); "
                         "delete it to start over, or point --resume at another run") from None


def save_checkpoint(path: Path, model, optimizer, scheduler, progress: Progress, extra: dict[str, Any]) -> None:
    if not all_finite(model):  # an overflowing step must not replace the last good checkpoint
        raise Diverged(f"weights became non-finite by step {progress.step}; lower --lr-encoder/--lr-head. "
                       f"The last good checkpoint is kept in {path}")
    state = {"model": model.state_dict(), "optimizer": optimizer.state_dict(), "scheduler": scheduler.state_dict(),
             "step": progress.step, "torch_rng": torch.get_rng_state(),
             "progress": {"history": progress.history, "seconds": progress.seconds,
                          "cpu_seconds": progress.cpu_seconds}, "extra": extra}
    atomic_torch_save(state, path)  # a kill during the save keeps the previous checkpoint


def resume_progress(path: Path | None, model, optimizer, scheduler) -> Progress:
    """Load what ``save_checkpoint`` wrote back into the live objects; a fresh ``Progress`` if none."""
    if path is None or not path.is_file():
        return Progress()
    state = load_checkpoint(path)
    model.load_state_dict(state["model"])
    optimizer.load_state_dict(state["optimizer"])
    scheduler.load_state_dict(state["scheduler"])
    torch.set_rng_state(state["torch_rng"])
    p = state.get("progress", {})
    return Progress(state["step"], p.get("history", []), p.get("seconds", 0.0), p.get("cpu_seconds", 0.0),
                    resumed_from=state["step"])


@dataclass
class Loop:
    """One run of the loop: the objects it steps and how it reports."""

    model: torch.nn.Module  # the parameters stepped and checkpointed (not a DDP wrapper)
    optimizer: Any
    scheduler: Any
    total: int
    grad_clip: float
    desc: str
    checkpoint: Path | None = None
    checkpoint_every: int = 100
    checkpoint_at_end: bool = True        # False: a caller that saves its own result drops the checkpoint
    log_dir: Path | None = None
    eval_every: int = 0                   # 0: evaluate only at the end
    eval_prefix: str = "dev/"             # TensorBoard tag prefix of the evaluation's scores
    note: str = ""                        # appended to a divergence message

    def run(self, train_step: Callable[[int], torch.Tensor], progress: Progress,
            evaluate: Callable[[int], dict[str, float]] | None = None,
            on_eval: Callable[[int, dict[str, float]], None] | None = None,
            extra: dict[str, Any] | None = None) -> Progress:
        """Steps ``progress.step`` .. ``total``: ``train_step(step)`` returns the step's loss;
        ``evaluate(step)`` (main process) returns scores, which every process then passes to
        ``on_eval(step, scores)``; that may raise to stop early (Hyperband's pruning)."""
        main = distributed.is_main()
        writer = SummaryWriter(str(self.log_dir), purge_step=progress.step or None) if self.log_dir and main else None
        t0, cpu0 = time.time() - progress.seconds, time.process_time() - progress.cpu_seconds
        bar = tqdm(total=self.total, initial=progress.step, desc=self.desc, unit="step", dynamic_ncols=True,
                   disable=not main)
        try:  # the bar is closed first, so an error message starts on its own line
            while progress.step < self.total:
                loss = optimizer_step(train_step(progress.step), self.model, self.optimizer, self.scheduler,
                                      self.grad_clip, f"step {progress.step} of {self.desc}", self.note)
                progress.step += 1
                bar.update(1)
                if writer and (progress.step % 10 == 0 or progress.step == self.total):  # .item() syncs
                    writer.add_scalar("train/loss", loss.item(), progress.step)
                    writer.add_scalar("train/lr_encoder", self.scheduler.get_last_lr()[0], progress.step)
                    bar.set_postfix(loss=f"{loss.item():.4f}")
                if evaluate and self._due(progress.step, self.eval_every):
                    self._evaluate(progress, evaluate, on_eval, writer)
                progress.seconds, progress.cpu_seconds = time.time() - t0, time.process_time() - cpu0
                if self.checkpoint and self._checkpoint_due(progress.step):
                    if main:
                        save_checkpoint(self.checkpoint, self.model, self.optimizer, self.scheduler, progress,
                                        extra or {})
                    distributed.barrier()
        finally:
            bar.close()
            if writer:
                writer.close()
        return progress

    def _checkpoint_due(self, step: int) -> bool:
        if step == self.total:
            return self.checkpoint_at_end
        return step % self.checkpoint_every == 0

    def _due(self, step: int, every: int) -> bool:
        return step == self.total or (every > 0 and step % every == 0)

    def _evaluate(self, progress: Progress, evaluate, on_eval, writer) -> None:
        scores = distributed.broadcast(evaluate(progress.step) if distributed.is_main() else None)
        progress.history.append({"step": progress.step, **scores})
        if writer:
            for name, value in scores.items():
                writer.add_scalar(f"{self.eval_prefix}{name}", value, progress.step)
        if on_eval:
            on_eval(progress.step, scores)