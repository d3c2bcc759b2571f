"""The fitted baselines of a frozen comparison: a linear probe fitted to convergence, and a pair's cosine."""
from __future__ import annotations

import numpy as np
import pytest
import torch

from retrain.baselines import cosine, linear_probe
from supernet.data.encoded import Encoded
from supernet.data.splits import TaskData
from supernet.data.tasks import get_task
from supernet.train.frozen import EncoderCache
from supernet.train.probe import fit_linear


def test_the_linear_probe_is_fitted_to_convergence():
    """Ridge regression has a closed form: L-BFGS reaches it (a few epochs of Adam would not)."""
    g = torch.Generator().manual_seed(0)
    x, w = torch.randn(200, 6, generator=g), torch.randn(6, generator=g)
    y = x @ w + 0.1 * torch.randn(200, generator=g)
    l2 = 1e-2
    fitted = fit_linear(x, y, 1, l2)
    xc, yc = x - x.mean(0), y - y.mean()  # the bias is not penalised: centre, then solve
    exact = torch.linalg.solve(xc.T @ xc / 200 + l2 * torch.eye(6), xc.T @ yc / 200)
    assert torch.allclose(fitted.weight.squeeze(0), exact, atol=1e-4)


def _task(n_fit=60, n_val=20, n_dev=30, seed=0, regression=False):
    rng = np.random.default_rng(seed)
    spec = get_task("stsb" if regression else "mrpc")
    one = lambda labels: Encoded([np.array([101, 102])] * len(labels), [np.zeros(2, np.int8)] * len(labels), labels)
    enc = lambda labels: Encoded(**{**one(labels).__dict__, "sides": (one(labels), one(labels))})
    make = lambda n: rng.uniform(0, 5, n).astype(np.float32) if regression else (np.arange(n) % 2)
    fit, val, dev = make(n_fit), make(n_val), make(n_dev)
    train = np.concatenate([fit, val])
    rows = np.arange(n_fit + n_val)
    return TaskData(spec, enc(train), enc(fit), enc(val), enc(dev), 0, rows[:n_fit], rows[n_fit:])


def _caches(task, signal=1.0, seed=0, width=8):
    g = torch.Generator().manual_seed(seed)

    def cache(labels):
        y = torch.as_tensor(labels, dtype=torch.float32)
        u = torch.randn(len(y), width, generator=g)
        v = u + (1.0 / (1 + signal * y))[:, None] * torch.randn(len(y), width, generator=g)  # similar when y is high
        side = lambda t: EncoderCache.of({"mean": t})
        c = EncoderCache.of({"mean": torch.cat([u[:, :4] + signal * y[:, None], v[:, 4:]], 1)})
        c.sides = (side(u), side(v))
        return c
    train, dev = cache(task.train.labels), cache(task.dev.labels)
    return {"train": train, "dev": dev, "fit": train.subset(task.fit_rows), "val": train.subset(task.val_rows)}


def test_the_probe_selects_on_the_selection_split_and_the_cosine_on_training_rows():
    """The report labels decide nothing: corrupted, the chosen L2 strength and threshold stay."""
    task = _task()
    caches = _caches(task)
    probe, cos = linear_probe(task, caches), cosine(task, caches)
    assert probe["metrics"]["accuracy"] >= 0.8 and probe["l2"] in [float(k) for k in probe["selection"]]
    corrupt = TaskData(task.spec, task.train, task.fit, task.val,
                       Encoded(task.dev.input_ids, task.dev.token_type_ids, 1 - task.dev.labels), 0,
                       task.fit_rows, task.val_rows)
    assert linear_probe(corrupt, caches)["l2"] == probe["l2"] and cosine(corrupt, caches)["threshold"] == cos["threshold"]
    assert cos["parameters"] == 0


def test_the_cosine_of_a_regression_task_is_the_score_itself():
    task = _task(regression=True)
    caches = _caches(task, signal=2.0)
    r = cosine(task, caches)
    u, v = (s.pooled["mean"] for s in caches["dev"].sides)
    expected = np.corrcoef(torch.nn.functional.cosine_similarity(u, v).numpy(), task.dev.labels)[0, 1]
    assert r["threshold"] is None and r["metrics"]["pearson"] == pytest.approx(expected, abs=1e-6)
    assert cosine(_task(), {**caches, "dev": EncoderCache.of({"mean": torch.zeros(3, 8)})}) is None  # one text


def test_retraining_fits_a_head_without_hidden_layers_as_the_probe_does(tmp_path):
    """Frozen encoder, --linear-fit converged (the default): retrain fits mean pooling + one linear layer
    exactly as the converged probe (same L2 strength, same dev score, every seed), and a cosine head's
    scale and bias by the same rule. Trained for a budget from scale 1, bias 0, the cosine head was the
    constant predictor it starts as (the pick scored one head, retrain shipped another); it now starts
    fitted (``fit_cosine_scale``) under --linear-fit budget too."""
    from retrain.run import RetrainConfig, RetrainPlan, retrain_heads
    from supernet.data.sources import DataConfig
    from supernet.nn.arch import Architecture, linear_architecture
    from supernet.nn.encoder import EncoderConfig
    from supernet.nn.space import get_space
    task, encoder = _task(n_fit=120, n_val=40, n_dev=60), EncoderConfig(num_hidden_layers=1)
    width = encoder.pretrained_config().hidden_size
    caches = _caches(task, signal=2.0, width=width)
    pairs = get_space("pairs")
    cos_arch = Architecture("pairs", pairs.canonical({**pairs.reference(), "pool": "mean", "pair": "cosine"}),
                            encoder=encoder.name, task="mrpc")
    heads = [("linear_mean", linear_architecture("mrpc", encoder.name, None, "mean")), ("cosine_head", cos_arch)]

    def retrain(fit, out):
        plan = RetrainPlan(task, RetrainConfig(epochs=1, seeds=(1, 2), freeze_encoder=True, linear_fit=fit), encoder,
                           DataConfig(task="mrpc"), caches=(caches["train"], caches["dev"]),
                           selection=(caches["fit"], caches["val"]))
        return retrain_heads(heads, plan, tmp_path / out)["heads"]
    converged, budget = retrain("converged", "converged"), retrain("budget", "budget")
    probe = linear_probe(task, caches)
    linear = converged["linear_mean"]["seeds"]
    assert all(s["metrics"]["accuracy"] == pytest.approx(probe["metrics"]["accuracy"], abs=1e-9) for s in linear.values())
    assert {s["fit"]["l2"] for s in linear.values()} == {probe["l2"]}
    cos = [s["metrics"]["accuracy"] for s in converged["cosine_head"]["seeds"].values()]
    positives = float(np.mean(task.dev.labels == 1))
    assert min(cos) >= positives + 0.15
    assert min(s["metrics"]["accuracy"] for s in budget["cosine_head"]["seeds"].values()) >= positives + 0.15


def test_a_layer_fitted_on_standardised_features_reads_raw_ones_unchanged():
    from supernet.train.probe import standardise, unstandardised
    g = torch.Generator().manual_seed(1)
    x = 3 + 5 * torch.randn(50, 4, generator=g)
    z, = standardise(x)
    layer = torch.nn.Linear(4, 3)
    folded = unstandardised(layer, x.mean(0), x.std(0))
    assert torch.allclose(folded(x), layer(z), atol=1e-5)


def test_a_run_from_before_linear_fit_resumes_where_nothing_it_computes_changed(tmp_path):
    """Stored settings without ``linear_fit``: a fine-tuned encoder's run resumes; a frozen one (whose
    linear heads were trained for the budget then) is refused, naming the setting."""
    import json

    from retrain.run import SETTINGS, check_resume_settings
    from supernet.core.errors import InputError
    for frozen in (False, True):
        head = tmp_path / f"frozen{frozen}"
        head.mkdir()
        old = {"fine_tune": {"freeze_encoder": frozen, "epochs": 3.0}, "rows": {"train": "abc"}}
        (head / SETTINGS).write_text(json.dumps(old))
        new = {**old, "fine_tune": {**old["fine_tune"], **({"linear_fit": "converged"} if frozen else {})}}
        if frozen:
            with pytest.raises(InputError, match="linear_fit: 'budget' -> 'converged'"):
                check_resume_settings(head, new)
        else:
            check_resume_settings(head, new)


def test_a_search_that_keeps_a_linear_incumbent_reuses_that_linear_arms_retrain(tmp_path):
    """The compare's linear arms are the compared space's incumbent records, so a pick that kept one is
    the same head with the same settings: retrained once (``same_as``), not fine-tuned a second time.
    A head that differs in any choice is still trained."""
    from retrain.comparison import linear_arms
    from retrain.run import RetrainConfig, RetrainPlan, retrain_heads
    from strategies.pick import incumbents
    from supernet.data.sources import DataConfig
    from supernet.nn.arch import Architecture, linear_architecture
    from supernet.nn.encoder import EncoderConfig
    from supernet.nn.space import get_space
    task, encoder = _task(n_fit=120, n_val=40, n_dev=60), EncoderConfig(num_hidden_layers=1)
    caches = _caches(task, signal=2.0, width=encoder.pretrained_config().hidden_size)
    pairs = get_space("pairs")
    meta = {"encoder": encoder.name, "task": task.spec.name, "labels": task.spec.label_names}
    kept = Architecture("pairs", incumbents(pairs)["linear (mean pool)"], **meta)
    other = Architecture("pairs", {**kept.choices, "pair": "cosine"}, **meta)
    linear = linear_arms("pairs", task, encoder)
    assert [n for n, _ in linear] == ["linear", "linear_mean"] and {a.space for _, a in linear} == {"pairs"}
    heads = [linear[1], ("weight_sharing", kept), ("random_head", other)]  # the toy caches hold mean pooling only
    assert linear_arms("paper", task, encoder)[0][1].choices == linear_architecture("mrpc", encoder.name).choices
    plan = RetrainPlan(task, RetrainConfig(epochs=1, seeds=(1, 2), freeze_encoder=True, linear_fit="budget"), encoder,
                       DataConfig(task="mrpc"), caches=(caches["train"], caches["dev"]),
                       selection=(caches["fit"], caches["val"]))
    out = retrain_heads(heads, plan, tmp_path / "retrain")["heads"]
    assert out["weight_sharing"]["same_as"] == "linear_mean" and "same_as" not in out["random_head"]
    assert out["weight_sharing"]["seeds"] == out["linear_mean"]["seeds"]
    ws, other = tmp_path / "retrain" / "weight_sharing", tmp_path / "retrain" / "random_head"
    assert ws.is_symlink() and ws.resolve() == (tmp_path / "retrain" / "linear_mean").resolve()
    assert other.is_dir() and not other.is_symlink()
