import numpy as np
import pytest
from scipy import stats
from sklearn import metrics as skm

from supernet.core.metrics import compute_metrics


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_classification_metrics_match_sklearn(seed):
    rng = np.random.default_rng(seed)
    gold = rng.integers(0, 2, 300)
    logits = rng.normal(size=(300, 2)) + np.eye(2)[gold] * 0.8
    pred = logits.argmax(-1)
    got = compute_metrics(("accuracy", "f1", "matthews_corr", "macro_f1"), logits, gold)
    assert got["accuracy"] == pytest.approx(skm.accuracy_score(gold, pred))
    assert got["f1"] == pytest.approx(skm.f1_score(gold, pred))
    assert got["matthews_corr"] == pytest.approx(skm.matthews_corrcoef(gold, pred))
    assert got["macro_f1"] == pytest.approx(skm.f1_score(gold, pred, average="macro"))


def test_regression_metrics_match_scipy_with_ties():
    rng = np.random.default_rng(0)
    gold = rng.integers(0, 6, 200).astype(float)  # many ties, as in STS-B
    pred = gold + rng.normal(size=200)
    got = compute_metrics(("pearson", "spearman"), pred[:, None], gold)
    assert got["pearson"] == pytest.approx(stats.pearsonr(pred, gold)[0])
    assert got["spearman"] == pytest.approx(stats.spearmanr(pred, gold)[0])
