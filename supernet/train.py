"""Train the supernet once: SPOS-style uniform path sampling, several heads per encoder forward.

The encoder dominates the cost of a step, so each batch goes through the encoder once and
``heads_per_step`` uniformly sampled heads are trained on its pooled outputs (their losses
averaged). The loop, checkpoints and resuming are ``supernet.loop``'s.
"""
from __future__ import annotations

import json
import random
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Mapping

import torch

from . import distributed
from .config import arg
from .data import Encoded, pad_batch
from .encoder import EncoderConfig
from .errors import InputError
from .loop import EpochBatches, FineTuneConfig, Loop, load_checkpoint, loss_fn, make_optimizer, resume_progress
from .model import HeadSupernet
from .scoring import score_probes
from .space import SearchSpace, bind_space, check_space_name
from .tasks import TaskSpec

CHECKPOINT = "checkpoint.pt"
RUN_CONFIG = "run_config.json"


@dataclass(frozen=True)
class TrainConfig(FineTuneConfig):
    """Supernet fine-tuning: the shared knobs plus the space, SPOS sampling and probes."""

    space: str = arg("paper", "search space: a head preset (paper, small, tiny) or a backbone space adding per "
                              "encoder layer FFN keep/skip (+ffn) and attention vs conv3/7/15 (+conv), e.g. "
                              "head+ffn, small+ffn+conv (see python -m supernet.space)")
    heads_per_step: int = arg(4, "sampled heads trained per encoder forward (evolution and random)")
    full_backbone_every: int = arg(2, "backbone spaces: every N-th step trains the sampled heads on the full "
                                      "pretrained encoder (all attention, all FFNs), as the sandwich rule trains "
                                      "the largest subnet; 0: uniform only", metavar="N")
    seed: int = arg(0, "seed of the supernet's initial head weights, batch order and sampled heads")
    eval_every: int = arg(50, "steps between probe-subnet dev scores")
    num_probes: int = arg(3, "fixed subnets whose dev score is logged during training", cli=False)

    def __post_init__(self):
        super().__post_init__()
        check_space_name(self.space)  # a backbone space is bound to the encoder's depth once it is loaded
        if self.heads_per_step < 1:
            raise InputError(f"--heads-per-step must be >= 1, got {self.heads_per_step}")
        if self.full_backbone_every < 0:
            raise InputError(f"--full-backbone-every must be >= 0, got {self.full_backbone_every}")
        if self.eval_every < 1:
            raise InputError(f"--eval-every must be >= 1, got {self.eval_every}")


def arch_rng(seed: int, step: int) -> random.Random:
    """The architectures of a step depend on (seed, step) only, so a resumed run samples the same ones."""
    return random.Random(seed * 1_000_003 + step)


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


class StepLoss(torch.nn.Module):
    """A supernet step's loss as a ``forward``, so DistributedDataParallel can wrap it: one encoder
    forward, pooled the ways the sampled heads need (a head with a token block runs it on the hidden
    states), and the mean of their losses."""

    def __init__(self, supernet: HeadSupernet, spec: TaskSpec):
        super().__init__()
        self.supernet, self.spec = supernet, spec

    def forward(self, batch: Mapping[str, torch.Tensor], archs: list[dict[str, Any]]) -> torch.Tensor:
        # in sample order, not a set's: the graph's order fixes the float summation order of the
        # encoder's gradients, and a set's order changes with each process's string hash seed
        features = self.supernet.features(batch, tuple(dict.fromkeys(a["pool"] for a in archs)), archs[0])
        loss = sum(loss_fn(self.spec, self.supernet.head(features, a), batch["labels"]) for a in archs)
        return loss / len(archs)


def train_supernet(supernet: HeadSupernet, spec: TaskSpec, train: Encoded, dev: Encoded, pad_id: int,
                   cfg: TrainConfig, run_dir: Path, resume: bool = False) -> dict[str, Any]:
    """Fine-tune encoder + all heads; returns training stats. Checkpoints to ``run_dir/checkpoint.pt``."""
    device = torch.device(cfg.device)
    supernet.to(device).train()
    distributed.check_batch(cfg.batch_size)
    model = distributed.wrap(StepLoss(supernet, spec))  # itself when not under torchrun
    total = cfg.total_steps(len(train))
    optimizer, scheduler = make_optimizer(supernet, cfg, total)
    ckpt = run_dir / CHECKPOINT
    progress = resume_progress(ckpt if resume else None, supernet, optimizer, scheduler)
    if not progress.step:
        torch.manual_seed(cfg.seed)
    if distributed.rank():  # dropout masks differ between ranks (their rows differ too)
        torch.manual_seed(cfg.seed * 1_000_003 + distributed.rank() * 7919 + progress.step)
    probes = probe_architectures(supernet.space, cfg.num_probes)
    batches = EpochBatches(train, cfg.batch_size, cfg.seed)

    def train_step(step: int) -> torch.Tensor:
        batch = {k: v.to(device) for k, v in pad_batch(train, distributed.shard(batches(step)), pad_id).items()}
        rng = arch_rng(cfg.seed, step)  # the same heads on every rank, without communication
        archs = step_architectures(supernet.space, rng, cfg.heads_per_step, is_full_backbone_step(cfg, step))
        with cfg.autocast():
            return model(batch, archs)

    def evaluate(step: int) -> dict[str, float]:
        return {f"probe{i}/{name}": value for i, scores in enumerate(score_probes(supernet, spec, dev, pad_id, probes,
                                                                                  str(device)))
                for name, value in scores.items()}

    loop = Loop(supernet, optimizer, scheduler, total, cfg.grad_clip, "supernet", checkpoint=ckpt,
                checkpoint_every=cfg.checkpoint_every, log_dir=run_dir / "tensorboard", eval_every=cfg.eval_every,
                eval_prefix="", note=f". The last good checkpoint is kept in {ckpt}")
    start = progress.step
    progress = loop.run(train_step, progress, evaluate, extra={"train_config": cfg.to_dict()})
    return {"steps": total, "resumed_from": start, "sequences": (total - start) * cfg.batch_size, "probes": probes,
            "seconds": progress.seconds, "cpu_seconds": progress.cpu_seconds}


def load_supernet(run_dir: str | Path) -> HeadSupernet:
    """The trained supernet of a search run (its ``checkpoint.pt``), on CPU, in eval mode."""
    run_dir = Path(run_dir)
    if not (run_dir / RUN_CONFIG).is_file() or not (run_dir / CHECKPOINT).is_file():
        raise InputError(f"{run_dir} is not a search run with a trained supernet (no {RUN_CONFIG} / {CHECKPOINT})")
    stored = json.loads((run_dir / RUN_CONFIG).read_text())
    encoder_cfg = EncoderConfig.from_dict(stored.get("encoder"), f"{run_dir / RUN_CONFIG} 'encoder'")
    space = TrainConfig.from_dict(stored.get("train"), f"{run_dir / RUN_CONFIG} 'train'").space
    encoder = encoder_cfg.load()
    state = load_checkpoint(run_dir / CHECKPOINT)["model"]
    num_labels = state["head.classifier.linear.weight"].shape[0]
    supernet = HeadSupernet(encoder, bind_space(space, encoder.config.num_hidden_layers), num_labels)
    supernet.load_state_dict(state)
    return supernet.eval()
