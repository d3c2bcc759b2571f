"""One-shot strategies: the head's mixing policies (exactness, gradients) and every strategy end to end."""
import json
import random

import pytest
import torch
import torch.nn.functional as F
from torch import nn

from strategies import ONE_SHOT
from strategies.config import OneShotConfig
from strategies.oneshot import OneShotHead, head_hook, make_policy
from supernet.nn.arch import Architecture
from supernet.nn.head import SuperHead
from supernet.nn.model import FrozenModel
from supernet.nn.ops import POOLINGS, mix
from supernet.nn.reading import Features
from supernet.nn.saved import load_model
from supernet.nn.space import get_space

SPACE = get_space("tiny")
HIDDEN = 12


def _pooled(batch: int = 6, seed: int = 0) -> Features:
    """Encoder outputs of a ragged batch: hidden states, their mask and their poolings."""
    g = torch.Generator().manual_seed(seed)
    hidden = torch.randn(batch, 5, HIDDEN, generator=g)
    mask = torch.ones(batch, 5, dtype=torch.long)
    mask[::2, 3:] = 0
    return Features({p: POOLINGS[p](hidden, mask, None) for p in SPACE.pool}, hidden, mask)


def _trained_head(num_labels: int, seed: int = 0) -> SuperHead:
    """A head whose every parameter and batch-norm statistic is random (as after training), so that
    slicing norm gains, biases and running statistics inside a mixture is exercised: at PyTorch's
    initialisation (gains 1, biases 0) a wrong slice would go unnoticed."""
    head = SuperHead(SPACE, HIDDEN, num_labels)
    g = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for p in head.parameters():
            p.copy_(torch.randn(p.shape, generator=g) * 0.5 + (1.0 if p.ndim == 1 else 0.0))
        for name, b in head.named_buffers():
            if "running_mean" in name:
                b.copy_(torch.randn(b.shape, generator=g))
            elif "running_var" in name:
                b.copy_(torch.rand(b.shape, generator=g) + 0.5)
    return head


def _alphas(arch: dict | None = None, peak: float = 60.0) -> dict[str, nn.Parameter]:
    """Zero alphas, or (numerically) one-hot at ``arch``."""
    if arch is None:
        return {k: nn.Parameter(torch.zeros(len(v))) for k, v in SPACE.labels().items()}
    return {k: nn.Parameter(peak * F.one_hot(torch.tensor(v.index(arch[k])), len(v)).float())
            for k, v in SPACE.labels().items()}


def _shot(head, policy: str, alphas=None, **kwargs) -> OneShotHead:
    return OneShotHead(head, make_policy(policy, SPACE, alphas, **kwargs), alphas)


@pytest.mark.parametrize("seed", range(12))
def test_softmax_mixture_at_one_hot_alphas_is_the_chosen_head(seed):
    """Mixing widths by zero padding is exact: at (numerically) one-hot alphas the DARTS forward
    equals the plain supernet head of that architecture, for every depth, width, norm and shortcut."""
    head = _trained_head(3, seed)
    arch = SPACE.sample(random.Random(seed))
    alphas = _alphas(arch)
    mixed = _shot(head, "softmax", alphas).eval()
    pooled = _pooled(seed=seed)
    expected = head.eval()(pooled, arch)
    torch.testing.assert_close(mixed(pooled), expected, rtol=1e-5, atol=1e-5)


def test_the_exactness_test_sees_a_wrong_norm_slice(monkeypatch):
    """The test above fails if a mixed layer normalised with the wrong slice of the norm's gains."""
    from supernet.nn import ops
    head = _trained_head(3, 1)
    arch = {**SPACE.sample(random.Random(0)), "depth": 1, "norm_0": "layernorm", "width_0": 8}
    pooled = _pooled()
    expected = head.eval()(pooled, arch)
    real = ops.SuperLayerNorm.forward

    def shifted(self, x):  # the gains of the wrong units (as a slicing bug would take)
        w = x.shape[-1]
        return F.layer_norm(x, (w,), self.norm.weight[-w:], self.norm.bias[:w], self.norm.eps)
    monkeypatch.setattr(ops.SuperLayerNorm, "forward", shifted)
    mixed = _shot(head, "softmax", _alphas(arch)).eval()(pooled)
    monkeypatch.setattr(ops.SuperLayerNorm, "forward", real)
    assert not torch.allclose(mixed, expected, rtol=1e-5, atol=1e-5)


def test_softmax_mixture_is_a_weighted_sum_at_uniform_alphas():
    head = SuperHead(SPACE, HIDDEN, 2).eval()
    alphas = _alphas()
    mixed = _shot(head, "softmax", alphas).eval()
    pooled = _pooled()
    # depth and pool are the outermost mixtures: at depth 0 only pool mixes into the classifier
    depth0 = sum(head.classifier(pooled.pooled[p], 2) for p in SPACE.pool) / len(SPACE.pool)
    out = mixed(pooled)
    assert out.shape == (6, 2)
    assert not torch.allclose(out, depth0)  # deeper layers contribute
    mixed.train()  # dropout candidates differ only in training mode
    (mixed(pooled) * torch.randn(6, 2)).sum().backward()
    assert all(a.grad is not None and a.grad.abs().sum() > 0 for a in alphas.values())


def test_binary_gate_gradient_is_proxylessnas_estimator():
    """y = candidate(sampled); dL/dalpha_i = sum_j <dL/dy, o_j> p_j (delta_ij - p_i) (ProxylessNAS eq. 4)."""
    torch.manual_seed(3)
    alphas = {k: nn.Parameter(torch.randn(len(v))) for k, v in SPACE.labels().items()}
    policy = make_policy("binary_gate", SPACE, alphas)
    policy.resample({})
    outputs = {p: torch.randn(4, 5) for p in SPACE.pool}
    w = torch.randn(4, 5)
    y = mix(policy.choices()["pool"], outputs.__getitem__)
    torch.testing.assert_close(y, outputs[policy.sampled()["pool"]])
    (y * w).sum().backward()
    p = F.softmax(alphas["pool"].detach(), -1)
    dg = torch.stack([(w * outputs[v]).sum() for v in SPACE.pool])  # dL/dg_j
    expected = torch.stack([sum(dg[j] * p[j] * (float(i == j) - p[i]) for j in range(len(p))) for i in range(len(p))])
    torch.testing.assert_close(alphas["pool"].grad, expected)


def test_binary_gate_forward_is_the_sampled_head_and_trains_only_its_weights():
    head = _trained_head(2)
    alphas = _alphas()
    gate = _shot(head, "binary_gate", alphas).eval()
    for seed in range(6):
        torch.manual_seed(seed)
        gate.resample({})
        arch = gate.policy.sampled()
        pooled = _pooled(seed=seed)
        torch.testing.assert_close(gate(pooled), head.eval()(pooled, arch), rtol=1e-5, atol=1e-5)
        if arch["depth"] == 0:
            head.zero_grad(set_to_none=True)
            gate(pooled).sum().backward()
            assert all(p.grad is None or not p.grad.any() for p in head.layers.parameters())
            assert head.classifier.linear.weight.grad.abs().sum() > 0
            assert alphas["depth"].grad.abs().sum() > 0


def test_gumbel_noise_is_drawn_once_per_label_per_forward(monkeypatch):
    """Each label's Gumbel weights are drawn once per forward, not once per use: layer 0's
    activation mixture is used once for every width of the layer, and must see one draw."""
    head = SuperHead(SPACE, HIDDEN, 2)
    shot = _shot(head, "gumbel", _alphas(), cfg=OneShotConfig(gumbel_temperature=(1.0, 0.5))).train()
    draws: list[int] = []
    real = F.gumbel_softmax
    monkeypatch.setattr(F, "gumbel_softmax", lambda logits, **kw: draws.append(len(logits)) or real(logits, **kw))
    shot(_pooled())
    assert len(draws) == len(SPACE.labels())  # one per label, however often the label shapes the forward


def test_gumbel_temperature_anneals_per_step():
    shot = _shot(SuperHead(SPACE, HIDDEN, 2), "gumbel", _alphas(), cfg=OneShotConfig(gumbel_temperature=(1.0, 0.2)))
    temps = []
    for step in range(5):
        shot.policy.set_progress(step / 4)
        temps.append(shot.policy.temperature)
    assert temps[0] == pytest.approx(1.0) and temps[-1] == pytest.approx(0.2)
    assert all(a > b for a, b in zip(temps, temps[1:]))  # strictly falls from step to step


def test_sample_policy_follows_resample_and_memo():
    head = SuperHead(SPACE, HIDDEN, 2).eval()
    shot = _shot(head, "sample").eval()
    with pytest.raises(RuntimeError, match="before resample"):
        shot(_pooled())
    new = shot.resample({"pool": "mean", "depth": 2})
    assert "pool" not in new and "depth" not in new and set(new) | {"pool", "depth"} == set(SPACE.labels())
    arch = shot.export({})
    assert arch["pool"] == "mean" and arch["depth"] == 2 and SPACE.validate(arch)
    pooled = _pooled()
    torch.testing.assert_close(shot(pooled), head(pooled, arch))


def test_hook_wraps_only_the_super_head_and_shares_its_parameters():
    head = SuperHead(SPACE, HIDDEN, 2)
    alphas = _alphas()
    hook = head_hook("softmax")
    wrapped = hook(head, "head", dict(alphas), {"softmax": nn.Softmax(-1)})
    assert isinstance(wrapped, OneShotHead) and wrapped.head is head
    assert hook(wrapped, "head", dict(alphas), {}) is None  # never re-wrapped
    assert hook(nn.Linear(2, 2), "x", {}, {}) is None
    shared = {id(p) for p in head.parameters()}
    own = [p for n, p in wrapped.named_parameters() if not n.startswith("_arch_alpha")]
    assert {id(p) for p in own} == shared
    assert set(wrapped.arch_parameters()) == set(alphas.values())


def test_export_is_the_argmax_and_probabilities_sum_to_one():
    head = SuperHead(SPACE, HIDDEN, 2)
    arch = SPACE.sample(random.Random(5))
    shot = _shot(head, "softmax", _alphas(arch, peak=2.0))
    assert shot.export({}) == arch
    probs = shot.export_probs({})
    assert set(probs) == set(SPACE.labels())
    assert all(abs(sum(d.values()) - 1) < 1e-6 for d in probs.values())
    assert all(max(d, key=d.get) == arch[k] for k, d in probs.items())


def test_enas_controller_learns_the_rewarded_choice():
    from strategies.oneshot import Controller
    torch.manual_seed(0)
    ctrl = Controller(SPACE.labels(), entropy_weight=1e-4, baseline_decay=0.9)
    opt = torch.optim.Adam(ctrl.parameters(), lr=0.05, betas=(0.0, 0.999))
    for _ in range(150):
        sample, log_prob, entropy = ctrl.draw()
        reward = float(sample["pool"] == "mean") + 0.5 * float(sample["depth"] == 2)
        opt.zero_grad()
        ctrl.loss(log_prob, entropy, reward).backward()
        opt.step()
    probs = ctrl.probabilities()
    assert probs["pool"]["mean"] > 0.9 and probs["depth"][2] > 0.8
    assert ctrl.argmax()["pool"] == "mean" and ctrl.argmax()["depth"] == 2
    assert 0.5 < float(ctrl.baseline) <= 1.5


def test_policy_needs_alphas():
    with pytest.raises(ValueError, match="one alpha per label"):
        make_policy("softmax", SPACE, {})
    with pytest.raises(ValueError, match="unknown one-shot policy"):
        make_policy("bogus", SPACE, None)


# ------------------------------------------------------------------------------ end to end

SMALL = ["--task", "mrpc", "--num-hidden-layers", "2", "--space", "tiny", "--max-train-samples", "96",
         "--max-eval-samples", "64", "--max-steps", "4", "--batch-size", "16", "--calib-samples", "32",
         "--random-baseline", "8", "--eval-every", "2", "--checkpoint-every", "2", "--no-webui",
         "--pick", "best"]


def _search(run_dir, *extra, glue_dir):
    from supernet.search import main
    return main([*SMALL, "--glue-dir", str(glue_dir), "--output-dir", str(run_dir), *extra])


@pytest.fixture()
def token_space(monkeypatch):
    """``tiny`` whose heads all run a token block (conv or attention): every export has one."""
    from dataclasses import replace

    from supernet.nn import space
    monkeypatch.setitem(space.PRESETS, "tiny-tok", replace(space.PRESETS["tiny"], name="tiny-tok",
                                                            tok_kind=("conv", "attention")))
    return "tiny-tok"


def retrains(arch_file, out, glue_dir, task="mrpc") -> FrozenModel:
    """``python -m retrain`` of an exported record, briefly; its shipped model."""
    from retrain.cli import main as retrain_main
    assert retrain_main([str(arch_file), "--task", task, "--glue-dir", str(glue_dir), "--num-hidden-layers", "2",
                         "--max-train-samples", "32", "--max-eval-samples", "16", "--max-steps", "1",
                         "--batch-size", "16", "--seeds", "1", "--output-dir", str(out)]) == 0
    return load_model(out / "arch_top1" / "model.pt")


@pytest.mark.parametrize("strategy", ONE_SHOT)
def test_one_shot_strategy_end_to_end(tmp_path, glue_dir, strategy, token_space):
    run = tmp_path / "run"
    extra = ["--trials", "6", "--population", "3", "--sample-size", "2"] if strategy == "spos" else []
    task = "stsb" if strategy == "enas" else "mrpc"  # a regression reward (-MSE) differs between heads at once
    assert _search(run, "--strategy", strategy, "--arch-lr", "0.01", "--space", token_space, "--task", task, *extra,
                   glue_dir=glue_dir) == 0
    summary = json.loads((run / "search_summary.json").read_text())
    top = Architecture.load(run / "arch_top1.json")
    assert top.space == token_space and get_space(token_space).validate(top.choices) == dict(top.choices)
    assert top.choices["tok_kind"] in ("conv", "attention")  # a record with a token block ...
    assert retrains(run / "arch_top1.json", tmp_path / "retrain", glue_dir, task).tokens is not None  # ... retrains
    assert summary["strategy"] == strategy and summary["best_choices"] == dict(top.choices)
    assert summary["best"] == dict(top.metrics) and summary["supernet_steps"] == 4
    assert (run / "checkpoints" / "last.ckpt").is_file()
    assert (run / "trajectory.png").stat().st_size > 1000
    assert list((run / "tensorboard").glob("events.out.tfevents.*"))
    if strategy == "spos":
        assert summary["trials"] == 6 and summary["search"] == "evolution"
        return
    # the architecture distribution was trained: it moved away from uniform
    probs = summary["architecture_probabilities"]
    assert set(probs) == set(get_space(token_space).labels()) and "tok_heads" in probs
    assert max(abs(p - 1 / len(d)) for d in probs.values() for p in d.values()) > 1e-4
    assert [t["step"] for t in summary["export_trajectory"]] == [2, 4]


def test_one_shot_resume_continues_from_the_last_checkpoint(tmp_path, glue_dir, monkeypatch):
    from strategies import oneshot_train

    real_end = oneshot_train.ProbeCallback.on_train_batch_end

    def end_then_die(self, trainer, *args):
        real_end(self, trainer, *args)
        if self.batches == 3:  # after the batch-2 checkpoint
            raise KeyboardInterrupt
    monkeypatch.setattr(oneshot_train.ProbeCallback, "on_train_batch_end", end_then_die)
    run = tmp_path / "run"
    with pytest.raises((KeyboardInterrupt, SystemExit)):  # Lightning turns Ctrl-C into exit(1)
        _search(run, "--strategy", "darts", glue_dir=glue_dir)
    assert (run / "checkpoints" / "last.ckpt").is_file() and not (run / "search_summary.json").exists()
    monkeypatch.setattr(oneshot_train.ProbeCallback, "on_train_batch_end", real_end)
    from supernet.search import main
    assert main(["--resume", str(run), "--no-webui"]) == 0
    summary = json.loads((run / "search_summary.json").read_text())
    assert summary["resumed_from_step"] == 2 and summary["supernet_steps"] == 4
    assert [t["step"] for t in summary["export_trajectory"]] == [2, 4]


@pytest.mark.parametrize("policy", ["softmax", "gumbel", "binary_gate"])
def test_architecture_steps_move_alpha_towards_the_better_choice(policy):
    """The direction, not only that alpha moved: pooling 'mean' carries the label and 'cls' is noise
    so training weights and alphas together must make 'mean' the likelier pooling."""
    torch.manual_seed(0)
    head = SuperHead(SPACE, HIDDEN, 2)
    alphas = _alphas()
    shot = _shot(head, policy, alphas, cfg=OneShotConfig(gumbel_temperature=(1.0, 0.5))).train()
    weights = torch.optim.Adam(head.parameters(), lr=1e-2)
    arch = torch.optim.Adam(alphas.values(), lr=5e-2)
    for step in range(150):
        hidden = torch.randn(32, 6, HIDDEN)
        y = (torch.rand(32) > 0.5).long()
        hidden[:, 1:, 0] += 2.0 * y[:, None] - 1.0  # every token but [CLS] (token 0) carries the label
        mask = torch.ones(32, 6, dtype=torch.long)
        pooled = Features({p: POOLINGS[p](hidden, mask, None) for p in SPACE.pool}, hidden, mask)
        shot.resample({})
        loss = F.cross_entropy(shot(pooled), y)
        weights.zero_grad()
        arch.zero_grad()
        loss.backward()
        weights.step()
        arch.step()
    assert shot.export_probs({})["pool"]["mean"] > 0.6


def test_one_shot_supernets_start_the_shared_cosine_fitted(tmp_path, glue_dir, monkeypatch):
    """As random-sampling supernets do (``start_shared_cosine``): DARTS' mixture over the pair reads must not
    weigh cosine reads at scale 1, bias 0 against STS-B's 0-5 labels."""
    from strategies import oneshot_train
    real, started = oneshot_train.start_shared_cosine, []

    def recording(supernet, *a):
        real(supernet, *a)
        started.append(supernet.head.cosine.weight.detach().clone())
    monkeypatch.setattr(oneshot_train, "start_shared_cosine", recording)
    assert _search(tmp_path / "run", "--strategy", "darts", "--space", "tiny-pairs", "--task", "stsb",
                   glue_dir=glue_dir) == 0
    assert len(started) == 1 and not torch.allclose(started[0], torch.ones_like(started[0]))
