"""Train the supernet once: SPOS-style uniform path sampling, several heads per encoder forward.

The encoder dominates the cost of a step, so each batch goes through the encoder once and
``heads_per_step`` uniformly sampled heads are trained on its pooled outputs (their losses
averaged). The loop, checkpoints and resuming are ``supernet.train.loop``'s.
"""
from __future__ import annotations

import dataclasses
import json
import random
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Mapping

import numpy as np
import torch
import torch.nn.functional as F

from supernet.core import distributed
from supernet.core.config import arg
from supernet.core.errors import InputError
from supernet.data.encoded import Encoded, pad_batch
from supernet.data.tasks import TaskSpec
from supernet.nn.encoder import EncoderConfig
from supernet.nn.reading import Features, Needs
from supernet.nn.space import SearchSpace, bind_space, check_space_name, names_backbone_choices, space_arg
from supernet.nn.supernet import HeadSupernet
from supernet.nn.tokens import TOKEN_LABELS
from supernet.train.frozen import EncoderCache, apply_regime, score_heads, supernet_cache, warm_up_heads
from supernet.train.loop import (
    EpochBatches,
    FineTuneConfig,
    Loop,
    load_checkpoint,
    loss_fn,
    make_optimizer,
    resume_progress,
)
from supernet.train.probe import fit_into

CHECKPOINT = "checkpoint.pt"
SAMPLINGS = ("uniform", "sandwich", "fair")
PROBE_ROWS = 2048  # the probes' training curve scores at most this many evaluation rows (see probe_rows)
RUN_CONFIG = "run_config.json"


@dataclass(frozen=True)
class TrainConfig(FineTuneConfig):
    """Supernet fine-tuning: the shared knobs plus the space, SPOS sampling and probes."""

    space: str = space_arg()
    heads_per_step: int = arg(4, "sampled heads trained per encoder forward (evolution and random)")
    full_backbone_every: int = arg(2, "backbone spaces: every N-th step trains the sampled heads on the full "
                                      "pretrained encoder (all attention, all FFNs), as the sandwich rule trains "
                                      "the largest subnet; 0: uniform only", metavar="N")
    seed: int = arg(0, "seed of the supernet's initial head weights, batch order, sampled heads and the search "
                       "strategy (the one seed of a search)")
    sampling: str = arg("uniform", "which heads a step trains: uniform (SPOS); sandwich (the largest and the "
                                   "smallest head, then uniform ones); fair (every label's candidates dealt evenly "
                                   "over the step's heads, FairNAS)", choices=SAMPLINGS)
    distill: bool = arg(False, "in-place distillation: with --sampling sandwich the other heads learn the largest "
                               "head's (detached) predictions instead of the labels (BigNAS / once-for-all)")
    eval_every: int = arg(50, "steps between probe-subnet scores (on up to 2,048 evaluation rows)")
    num_probes: int = arg(3, "fixed subnets whose dev score is logged during training", cli=False)

    @classmethod
    def from_fine_tune(cls, ft: FineTuneConfig, **own: Any) -> "TrainConfig":
        """The supernet's training under a fine-tuning config: every field they share (budget, optimiser,
        clipping, precision, device, checkpoints, regime) is ``ft``'s by construction, so a field added
        to ``FineTuneConfig`` reaches the supernet with no line written for it; ``own``: the supernet's
        own settings (space, seed, ...) and any override of a shared one."""
        shared = {f.name: getattr(ft, f.name) for f in dataclasses.fields(FineTuneConfig)}
        return cls(**{**shared, **own})

    def __post_init__(self):
        super().__post_init__()
        check_space_name(self.space)  # a backbone space is bound to the encoder's depth once it is loaded
        if self.seed < 0:
            raise InputError(f"--seed must be >= 0, got {self.seed}")
        if self.heads_per_step < 1:
            raise InputError(f"--heads-per-step must be >= 1, got {self.heads_per_step}")
        if self.full_backbone_every < 0:
            raise InputError(f"--full-backbone-every must be >= 0, got {self.full_backbone_every}")
        if self.freeze_encoder and names_backbone_choices(self.space):
            raise InputError(f"--freeze-encoder keeps the pretrained encoder, and --space {self.space} searches its "
                             "layers; use a head space (paper, small, tiny) or drop --freeze-encoder")
        if self.distill and self.sampling != "sandwich":
            raise InputError("--distill learns from the largest head, which only --sampling sandwich trains every step")
        if self.sampling == "sandwich" and self.heads_per_step < 2:
            raise InputError("--sampling sandwich trains the largest and the smallest head: --heads-per-step >= 2")
        if self.eval_every < 1:
            raise InputError(f"--eval-every must be >= 1, got {self.eval_every}")


def arch_rng(seed: int, step: int) -> random.Random:
    """The architectures of a step depend on (seed, step) only, so a resumed run samples the same ones."""
    return random.Random(seed * 1_000_003 + step)


def step_architectures(space: SearchSpace, rng: random.Random, n: int, full_backbone: bool = False,
                       sampling: str = "uniform", one_view: bool = False) -> list[dict[str, Any]]:
    """The ``n`` candidates trained on one batch (``sampling``: see ``TrainConfig``; sandwich puts the
    largest first). In a backbone space they share the first one's encoder choices (one encoder
    forward per step serves all of them), or with ``full_backbone`` the full pretrained encoder's.
    Uniform heads also share one token block (its choices; the pooling and the MLP stay each head's
    own): a token block costs up to half an encoder layer per layer, and four different ones per
    step cut supernet throughput to 0.61-0.74x of a plain fine-tune (bench/results/speed-cpu).
    With ``one_view`` (an encoder that is fine-tuned) uniform heads also share the first one's view of
    a pair: all read it jointly, or all read its texts apart (``share_view``)."""
    if sampling == "sandwich":
        archs = [space.largest(rng), space.smallest(rng), *(space.sample(rng) for _ in range(n - 2))]
    elif sampling == "fair":
        archs = space.fair_samples(rng, n)
    else:  # uniform; the heads share the first one's token block, whose forward then runs once a step
        archs = [space.sample(rng) for _ in range(n)]
        block = {k: archs[0][k] for k in TOKEN_LABELS if k in archs[0]}
        archs = [archs[0], *({**a, **block} for a in archs[1:])]
        if one_view and space.has_pairs:
            archs = [archs[0], *(share_view(archs[0], a) for a in archs[1:])]
    source = space.reference() if full_backbone else archs[0]
    shared = {k: source[k] for k in space.backbone_choices(source) if k in source}
    return [{**a, **shared} for a in archs]


def share_view(first: Mapping[str, Any], head: dict[str, Any]) -> dict[str, Any]:
    """``head``, reading a pair the way ``first`` does: jointly (one encoder forward on the pair), or
    its texts apart (one forward per text). Under fine-tuning a step whose heads read both ran three
    forwards, and two thirds of uniform 4-head steps did (the `pairs` supernet's step cost 1.5x a
    BO-HB trial's, bench/results/compare-stsb-small-fullft-pairs). A head that already reads the
    same view keeps its pair read; another takes ``first``'s, so each head's pair read stays uniform
    over the space's (P(joint) = 1/k, and the side reads split the rest evenly)."""
    if (head["pair"] == "joint") == (first["pair"] == "joint"):
        return head
    return {**head, "pair": first["pair"]}


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

    def __init__(self, supernet: HeadSupernet, spec: TaskSpec, distill: bool = False):
        super().__init__()
        self.supernet, self.spec, self.distill = supernet, spec, distill

    def forward(self, batch: Mapping[str, torch.Tensor], archs: list[dict[str, Any]],
                features: Features | None = None) -> torch.Tensor:
        # in sample order, not a set's: the graph's order fixes the float summation order of the
        # encoder's gradients, and a set's order changes with each process's string hash seed
        if features is None:  # (given: the frozen encoder's cached outputs)
            features = self.supernet.features(batch, self.supernet.space.needs(archs), archs[0])
        outputs = [self.supernet.head(features, a) for a in archs]
        if not self.distill:
            return sum(loss_fn(self.spec, out, batch["labels"]) for out in outputs) / len(archs)
        teacher = outputs[0].detach().float()  # the largest head (sandwich order) teaches the others
        return (loss_fn(self.spec, outputs[0], batch["labels"])
                + sum(distill_loss(self.spec, out, teacher) for out in outputs[1:])) / len(archs)


def distill_loss(spec: TaskSpec, student: torch.Tensor, teacher: torch.Tensor) -> torch.Tensor:
    """In-place distillation: the student matches the teacher's predicted distribution (its score, for regression)."""
    if spec.is_regression:
        return F.mse_loss(student.squeeze(-1).float(), teacher.squeeze(-1))
    return F.kl_div(F.log_softmax(student.float(), -1), F.log_softmax(teacher, -1), log_target=True,
                    reduction="batchmean")


def warm_up_supernet_heads(supernet: HeadSupernet, spec: TaskSpec, train: Encoded, pad_id: int,
                           cfg: TrainConfig) -> dict[str, float]:
    """LP-FT's first stage for the supernet: its heads, sampled as the training steps sample them (at
    other steps' draws), train on the frozen encoder's outputs before the encoder is fine-tuned."""
    step_loss = StepLoss(supernet, spec, cfg.distill)

    def loss(step: int, rows: np.ndarray, features: Features) -> torch.Tensor:
        archs = step_architectures(supernet.space, arch_rng(cfg.seed + 1, step), cfg.heads_per_step,
                                   sampling=cfg.sampling)
        return step_loss({"labels": torch.from_numpy(train.labels[rows]).to(cfg.device)}, archs, features)
    return warm_up_heads(supernet, train, pad_id, supernet.space.needs(), cfg, cfg.seed, loss, "supernet head warm-up")


@torch.no_grad()
def fit_shared_cosine(supernet: HeadSupernet, cache: EncoderCache, labels: np.ndarray, spec: TaskSpec) -> None:
    """The cosine heads' shared scale and bias start fitted to convergence on the training rows' cosines
    (mean pooling where the space has it) instead of at scale 1, bias 0, as a stand-alone projected
    cosine starts (``supernet.train.finetune.fit_cosine_scale``, which says why)."""
    if supernet.head.cosine is None or cache.sides is None:
        return
    pool = "mean" if "mean" in cache.sides[0].pooled else next(iter(cache.sides[0].pooled))
    cos = F.cosine_similarity(cache.sides[0].pooled[pool].float(), cache.sides[1].pooled[pool].float())[:, None]
    fit_into(supernet.head.cosine, cos, torch.from_numpy(np.asarray(labels)), spec.num_labels)


def start_shared_cosine(supernet: HeadSupernet, spec: TaskSpec, train: Encoded, pad_id: int, device) -> None:
    """``fit_shared_cosine`` on the encoder as it is (pretrained, before fine-tuning): one forward pass of
    each text alone, mean-pooled where the space has it (why: ``finetune.fit_cosine_scale``)."""
    if supernet.head.cosine is None or train.sides is None:
        return
    space = supernet.space
    needs = Needs(("mean" if "mean" in space.pool else space.pool[0],), joint=False, sides=True)
    fit_shared_cosine(supernet, EncoderCache.build(supernet.encoder, train, pad_id, needs, device), train.labels, spec)


def _start(supernet: HeadSupernet, spec: TaskSpec, train: Encoded, pad_id: int, cfg: TrainConfig,
           resumed: bool) -> EncoderCache | None:
    """A frozen encoder's outputs on the training rows (heads train on them, computed once), and the shared
    cosine's scale and bias fitted on its cosines, in either regime (a resumed checkpoint holds them)."""
    if cfg.freeze_encoder:
        cache = EncoderCache.build(supernet.encoder, train, pad_id, supernet.space.needs(), cfg.device)
        fit_shared_cosine(supernet, cache, train.labels, spec)  # a resumed checkpoint overrides it
        return cache
    if not resumed:
        start_shared_cosine(supernet, spec, train, pad_id, cfg.device)
    return None


def train_supernet(supernet: HeadSupernet, spec: TaskSpec, train: Encoded, dev: Encoded, pad_id: int,
                   cfg: TrainConfig, run_dir: Path, resume: bool = False) -> dict[str, Any]:
    """Fine-tune encoder + all heads; returns training stats. Checkpoints to ``run_dir/checkpoint.pt``."""
    device = torch.device(cfg.device)
    supernet.to(device).train()
    t0, cpu0 = time.time(), time.process_time()
    apply_regime(supernet.encoder, cfg.freeze_encoder)
    cache = _start(supernet, spec, train, pad_id, cfg, resume and (run_dir / CHECKPOINT).is_file())
    # computing the cache is part of this stage's cost (the checkpoint's clock counts training only)
    caching = (time.time() - t0, time.process_time() - cpu0)
    distributed.check_batch(cfg.batch_size)
    if cfg.head_warmup_epochs and not (resume and (run_dir / CHECKPOINT).is_file()):  # LP-FT for every head
        caching = tuple(c + w for c, w in zip(caching, warm_up_supernet_heads(supernet, spec, train, pad_id,
                                                                                  cfg).values()))
    model = distributed.wrap(StepLoss(supernet, spec, cfg.distill))  # itself when not under torchrun
    total = cfg.total_steps(len(train))
    optimizer, scheduler = make_optimizer(supernet, cfg, total)
    ckpt = run_dir / CHECKPOINT
    progress = resume_progress(ckpt if resume else None, supernet, optimizer, scheduler)
    if not progress.step:
        torch.manual_seed(cfg.seed)
    if distributed.rank():  # dropout masks differ between ranks (their rows differ too)
        torch.manual_seed(cfg.seed * 1_000_003 + distributed.rank() * 7919 + progress.step)
    probes = probe_architectures(supernet.space, cfg.num_probes)
    probe_dev = dev.subset(probe_rows(len(dev)))
    batches = EpochBatches(train, cfg.batch_size, cfg.seed)

    def train_step(step: int) -> torch.Tensor:
        rows = distributed.shard(batches(step))
        rng = arch_rng(cfg.seed, step)  # the same heads on every rank, without communication
        archs = step_architectures(supernet.space, rng, cfg.heads_per_step, is_full_backbone_step(cfg, step),
                                   cfg.sampling, one_view=cache is None)  # a frozen encoder's cache holds both views
        if cache is not None:
            batch = {"labels": torch.from_numpy(train.labels[rows]).to(device)}
            with cfg.autocast():
                return model(batch, archs, cache.features(rows, device))
        batch = {k: v.to(device) for k, v in pad_batch(train, rows, pad_id, supernet.space.has_pairs).items()}
        with cfg.autocast():
            return model(batch, archs)

    frozen_dev: list[EncoderCache] = []  # a frozen encoder's outputs on the validation rows never change

    def evaluate(step: int) -> dict[str, float]:
        if cache is not None:  # computed once: re-encoding them at every evaluation cost most of the training time
            if not frozen_dev:
                frozen_dev.append(supernet_cache(supernet, probe_dev, pad_id, device))
            scores = score_heads(supernet.head, spec, frozen_dev[0], probe_dev.labels, probes)
        else:
            scores = score_probes(supernet, spec, probe_dev, pad_id, probes, device)
        return {f"probe{i}/{name}": value for i, s in enumerate(scores) for name, value in s.items()}

    loop = Loop(supernet, optimizer, scheduler, total, cfg.grad_clip, "supernet", checkpoint=ckpt,
                checkpoint_every=cfg.checkpoint_every, log_dir=run_dir / "tensorboard", eval_every=cfg.eval_every,
                eval_prefix="", note=f". The last good checkpoint is kept in {ckpt}")
    start = progress.step
    progress = loop.run(train_step, progress, evaluate, extra={"train_config": cfg.to_dict()})
    return {"steps": total, "resumed_from": start, "sequences": (total - start) * cfg.batch_size, "probes": probes,
            "seconds": progress.seconds + caching[0], "cpu_seconds": progress.cpu_seconds + caching[1],
            "cache": cache}  # the frozen encoder's outputs on the training rows: later stages reuse them


def probe_rows(n: int) -> np.ndarray:
    """The evaluation rows the probes score on: all of them up to ``PROBE_ROWS``, else that many spread
    evenly over the split. The probes are a training curve in TensorBoard, not a selection; on full
    SST-2 (6,735 selection rows, ``paper`` space) scoring them on every row every 50 steps took ~40 %
    of supernet training, and without a frozen encoder it re-encodes them at every evaluation."""
    if n <= PROBE_ROWS:
        return np.arange(n)
    return np.linspace(0, n - 1, PROBE_ROWS).round().astype(np.int64)


def score_probes(supernet: HeadSupernet, spec: TaskSpec, dev: Encoded, pad_id: int,
                 archs: list[dict[str, Any]], device: str | torch.device) -> list[dict[str, float]]:
    """Dev metrics of fixed subnets; one encoder pass per distinct backbone (one in a head-only space)."""
    by_backbone: dict[tuple, list[int]] = {}
    for i, a in enumerate(archs):
        by_backbone.setdefault(supernet.space.backbone_key(a), []).append(i)
    out: list[dict[str, float]] = [{} for _ in archs]
    for rows in by_backbone.values():
        cache = supernet_cache(supernet, dev, pad_id, device, archs[rows[0]])
        for i, scores in zip(rows, score_heads(supernet.head, spec, cache, dev.labels, [archs[r] for r in rows])):
            out[i] = scores
    return out


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
    missing, unexpected = supernet.load_state_dict(state, strict=False)
    # a pairs supernet trained before cosine_proj joined the space has no projection: it stays at its
    # start, the identity (any other missing or unknown weight is an error)
    missing = [k for k in missing if not k.startswith("head.projection.")]
    if missing or unexpected:
        raise InputError(f"{run_dir / CHECKPOINT} does not fit space {space!r}: missing {missing[:3]}, "
                         f"unexpected {unexpected[:3]}")
    return supernet.eval()