"""Train the supernet with an NNI one-shot strategy (Lightning under NNI's sequential engine).

``train_oneshot`` builds the Lightning evaluator (our training module, train / held-out loaders,
a Trainer with TensorBoard, resumable ``last.ckpt`` checkpoints and a probe callback), hands it
with the supernet and the strategy to ``NasExperiment``, and after training puts the plain
``SuperHead`` (the same, now trained, parameters) back into the supernet.
"""
from __future__ import annotations

import logging
import math
import random
import time
import warnings
from pathlib import Path
from typing import Any, Mapping

import numpy as np
import pytorch_lightning as pl
import torch
from nni.nas.evaluator.pytorch import DataLoader, Lightning, LightningModule, Trainer

from supernet.core.errors import InputError
from supernet.data.encoded import Encoded, batch_indices, pad_batch
from supernet.data.tasks import TaskSpec
from supernet.nn.supernet import HeadSupernet
from supernet.train.frozen import score_heads, supernet_cache
from supernet.train.loop import load_checkpoint, loss_fn, make_optimizer
from supernet.train.supernet import TrainConfig, probe_architectures, start_shared_cosine

from .config import OneShotConfig
from .oneshot import OneShotHead
from .registry import WEIGHTS, get_strategy

CHECKPOINT_DIR = "checkpoints"
LAST = "last.ckpt"


class HeadTrainingModule(LightningModule):
    """The evaluator's Lightning module: loss, optimizer and schedule of the supernet (encoder + head)."""

    def __init__(self, spec: TaskSpec, cfg: TrainConfig, total_steps: int):
        super().__init__()
        self.spec, self.cfg, self.total_steps = spec, cfg, total_steps

    def forward(self, batch: Mapping[str, torch.Tensor]) -> torch.Tensor:
        head = self.model.head
        needs = head.needs() if isinstance(head, OneShotHead) else None
        return head(self.model.features(batch, needs))

    def training_step(self, batch, batch_idx):
        loss = loss_fn(self.spec, self(batch), batch["labels"])
        if not torch.isfinite(loss):
            raise FloatingPointError(f"loss is {loss.item()}; lower --lr-encoder/--lr-head/--arch-lr "
                                     f"(the last checkpoint is kept; --resume continues from it)")
        self.log("train/loss", loss, prog_bar=True, batch_size=len(batch["labels"]))
        return loss

    @torch.no_grad()
    def reward(self, batch: Mapping[str, torch.Tensor]) -> float:
        """ENAS's reward on a held-out batch: accuracy (classification) or -MSE (regression)."""
        was_training = self.model.training
        self.model.eval()
        logits = self(batch).float()
        self.model.train(was_training)
        if self.spec.is_regression:
            return -float(((logits.squeeze(-1) - batch["labels"].float()) ** 2).mean())
        return float((logits.argmax(-1) == batch["labels"]).float().mean())

    def configure_optimizers(self):
        optimizer, scheduler = make_optimizer(self.model, self.cfg, self.total_steps)
        return {"optimizer": optimizer, "lr_scheduler": {"scheduler": scheduler, "interval": "step"}}


class _Batches(torch.utils.data.Dataset):
    """Pre-bucketed batches (similar lengths together); the loader shuffles their order per epoch."""

    def __init__(self, data: Encoded, batches: list[np.ndarray], pad_id: int):
        self.data, self.batches, self.pad_id = data, batches, pad_id

    def __len__(self) -> int:
        return len(self.batches)

    def __getitem__(self, i: int) -> dict[str, torch.Tensor]:
        # a pair's texts apart too, when there are two: a siamese or cosine head of the space reads them
        return pad_batch(self.data, self.batches[i], self.pad_id, sides=self.data.sides is not None)


def make_loader(data: Encoded, batch_size: int, pad_id: int, seed: int) -> DataLoader:
    batches = [b for b in batch_indices(data, batch_size, shuffle=True, seed=seed) if len(b) == batch_size]
    if not batches:  # batch norm needs full batches of >1 row
        raise InputError(f"{len(data)} rows do not fill one batch of --batch-size {batch_size}")
    return DataLoader(_Batches(data, batches, pad_id), batch_size=None, shuffle=True,
                      generator=torch.Generator().manual_seed(seed))


def split_rows(n: int, arch_fraction: float, seed: int) -> tuple[np.ndarray, np.ndarray]:
    """Training rows for weights and held-out rows for architecture steps (disjoint, fixed by seed)."""
    perm = np.random.default_rng(seed).permutation(n)
    n_arch = max(1, int(round(arch_fraction * n)))
    return np.sort(perm[n_arch:]), np.sort(perm[:n_arch])


class ProbeCallback(pl.Callback):
    """Counts batches (stops at the budget: under manual optimisation Lightning's global_step counts
    every optimizer step, weights and architecture alike) and, every ``every`` batches, scores on the
    dev set the strategy's current export (or, for SPOS, fixed probe subnets) with current weights."""

    def __init__(self, name: str, supernet: HeadSupernet, spec: TaskSpec, dev: Encoded, pad_id: int,
                 total: int, every: int, device: str, probes: list[dict[str, Any]]):
        self.weights_only = get_strategy(name).learns == WEIGHTS
        self.supernet, self.spec, self.dev, self.pad_id = supernet, spec, dev, pad_id
        self.total, self.every, self.device, self.probes = total, every, device, probes
        self.batches, self.trajectory = 0, []
        self.seconds = self.cpu_seconds = 0.0  # training time over every process of the run
        self._mark = (time.time(), time.process_time())

    def state_dict(self) -> dict[str, Any]:
        return {"batches": self.batches, "trajectory": self.trajectory, "seconds": self.seconds,
                "cpu_seconds": self.cpu_seconds}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        self.batches, self.trajectory = state["batches"], state["trajectory"]
        self.seconds, self.cpu_seconds = state.get("seconds", 0.0), state.get("cpu_seconds", 0.0)

    def on_train_start(self, trainer, pl_module):
        self._mark = (time.time(), time.process_time())

    def on_train_batch_start(self, trainer, pl_module, batch, batch_idx):
        policy = self.supernet.head.policy
        policy.set_progress(self.batches / self.total)  # per step, not per epoch (see GumbelPolicy)
        policy.log(trainer.logger.experiment, self.batches)

    def on_train_batch_end(self, trainer, pl_module, outputs, batch, batch_idx):
        now = (time.time(), time.process_time())
        self.seconds, self.cpu_seconds = self.seconds + now[0] - self._mark[0], self.cpu_seconds + now[1] - self._mark[1]
        self._mark = now
        self.batches += 1
        if self.batches % self.every == 0 or self.batches >= self.total:
            self.evaluate(trainer, pl_module)
        if self.batches >= self.total:
            trainer.should_stop = True

    def evaluate(self, trainer, pl_module) -> None:
        head: OneShotHead = self.supernet.head
        feats = supernet_cache(self.supernet, self.dev, self.pad_id, self.device)
        writer = trainer.logger.experiment
        if self.weights_only:
            for i, scores in enumerate(score_heads(head.head, self.spec, feats, self.dev.labels, self.probes)):
                for metric, value in scores.items():
                    writer.add_scalar(f"probe{i}/{metric}", value, self.batches)
            return
        arch = self.supernet.space.canonical(pl_module.export())
        scores = score_heads(head.head, self.spec, feats, self.dev.labels, [arch])[0]
        self.trajectory.append({"step": self.batches, "choices": arch, "metrics": scores})
        for metric, value in scores.items():
            writer.add_scalar(f"export/{metric}", value, self.batches)


def _trainer_device(device: str) -> dict[str, Any]:
    dev = torch.device(device)
    if dev.type == "cpu":
        return {"accelerator": "cpu", "devices": 1}
    return {"accelerator": "gpu", "devices": [dev.index or 0]}


def _trainer(cfg: TrainConfig, epochs: int, weights_only: bool, run_dir: Path, ckpt_dir: Path, callbacks: list,
             checkpoint_steps: int) -> Trainer:
    """Lightning's Trainer for a one-shot run: TensorBoard in the run directory, ``last.ckpt`` every
    ``checkpoint_steps`` optimizer steps (weights and architecture steps alike)."""
    from pytorch_lightning.callbacks import ModelCheckpoint
    from pytorch_lightning.loggers import TensorBoardLogger
    # Lightning warns (with a code sample) that manual-optimisation checkpoints hold post-step weights:
    # exactly what resuming needs
    warnings.filterwarnings("ignore", message="Using ModelCheckpoint with manual optimization")
    return Trainer(
        max_epochs=epochs, max_steps=-1, num_sanity_val_steps=0, limit_val_batches=0,
        precision="bf16-mixed" if cfg.precision == "bf16" else "32-true",
        gradient_clip_val=cfg.grad_clip if weights_only else None,  # manual-optimisation strategies clip themselves
        logger=TensorBoardLogger(str(run_dir), name="tensorboard", version=""),
        callbacks=[*callbacks, ModelCheckpoint(dirpath=str(ckpt_dir), save_top_k=0, save_last=True,
                                               every_n_train_steps=checkpoint_steps)],
        enable_model_summary=False, log_every_n_steps=10, **_trainer_device(cfg.device))


def train_oneshot(name: str, supernet: HeadSupernet, spec: TaskSpec, train: Encoded, dev: Encoded, pad_id: int,
                  cfg: TrainConfig, oneshot: OneShotConfig, run_dir: Path, resume: bool = False) -> dict[str, Any]:
    """Train with one-shot strategy ``name``; return stats with the export and its dev trajectory."""
    from nni.nas.experiment import NasExperiment, NasExperimentConfig

    ckpt_dir = run_dir / CHECKPOINT_DIR
    last = ckpt_dir / LAST
    if not (resume and last.is_file()):  # as random-sampling supernets start theirs; a checkpoint holds it
        start_shared_cosine(supernet, spec, train, pad_id, cfg.device)
    random.seed(cfg.seed)
    torch.manual_seed(cfg.seed)
    # SPOS trains weights only (an evolution searches the result); the others learn the architecture too
    weights_only = get_strategy(name).learns == WEIGHTS
    if weights_only:
        weight_rows, arch_rows = np.arange(len(train)), None
    else:
        weight_rows, arch_rows = split_rows(len(train), oneshot.arch_fraction, cfg.seed)
    train_loader = make_loader(train.subset(weight_rows), cfg.batch_size, pad_id, cfg.seed)
    # RandomOneShot wants a validation loader too; Trainer(limit_val_batches=0) never runs it
    arch_loader = (make_loader(train.subset(arch_rows), cfg.batch_size, pad_id, cfg.seed + 1)
                   if arch_rows is not None else train_loader)
    total = cfg.max_steps or math.ceil(cfg.epochs * len(train_loader))

    # every strategy that learns the architecture takes an extra (architecture) optimizer step per batch
    steps_per_batch = 1 if weights_only else 2
    probes = probe_architectures(supernet.space, cfg.num_probes)
    probe_cb = ProbeCallback(name, supernet, spec, dev, pad_id, total, cfg.eval_every, cfg.device, probes)
    trainer = _trainer(cfg, math.ceil(total / len(train_loader)), weights_only, run_dir, ckpt_dir,
                       [probe_cb], cfg.checkpoint_every * steps_per_batch)
    resumed_from = 0
    fit_kwargs = {}
    if resume and last.is_file():
        fit_kwargs["ckpt_path"] = str(last)
        resumed_from = load_checkpoint(last)["callbacks"].get(probe_cb.state_key, {}).get("batches", 0)
    evaluator = Lightning(HeadTrainingModule(spec, cfg, total), trainer, train_dataloaders=train_loader,
                          val_dataloaders=arch_loader, fit_kwargs=fit_kwargs)
    strategy = get_strategy(name).build_oneshot(supernet.space, oneshot, cfg.grad_clip, cfg.seed)
    # NNI warns about unused training-service settings and a not-yet-written checkpoint: noise here
    logging.getLogger("nni").setLevel(logging.ERROR)
    supernet.train()  # Lightning 2 keeps modules in the mode it finds them (from_pretrained leaves eval)
    config = NasExperimentConfig("sequential", "raw", None)  # one-shot: in-process, no training service
    config.experiment_working_directory = str((run_dir / "nni").resolve())
    config.experiment_name = f"{supernet.space.name}-{name}"
    exp = NasExperiment(supernet, evaluator, strategy, config)
    try:
        exp.run()
    finally:
        exp.stop()  # else NNI's exit hook stops it later, logging into closed streams
    if not isinstance(supernet.head, OneShotHead):
        raise RuntimeError("NNI did not mutate the supernet in place; cannot read the trained head")
    module = strategy.oneshot_module
    exported = None if weights_only else supernet.space.canonical(module.export())
    probs = None if weights_only else module.export_probs()
    supernet.head = supernet.head.head  # the plain SuperHead, holding the trained parameters
    return {"steps": total, "resumed_from": resumed_from, "sequences": total * cfg.batch_size,
            "exported": exported, "probabilities": probs, "trajectory": probe_cb.trajectory,
            "probes": probes, "seconds": probe_cb.seconds, "cpu_seconds": probe_cb.cpu_seconds}
