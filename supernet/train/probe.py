"""A linear head fitted to convergence on a frozen encoder's outputs: full-batch L-BFGS, the way a
logistic (or ridge) regression on sentence embeddings is fitted. What "the linear head" means when a
searched head is compared with it (retrain.baselines' linear probe, strategies.pick's incumbents)."""
from __future__ import annotations

import torch
import torch.nn.functional as F

L2_GRID = (1e-6, 1e-5, 1e-4, 1e-3, 1e-2, 1e-1)  # per-row mean loss + l2 * |W|^2, on standardised features


def fit_linear(x: torch.Tensor, y: torch.Tensor, classes: int, l2: float, max_iter: int = 1000) -> torch.nn.Linear:
    """A linear layer fitted to convergence: cross-entropy (or squared error for ``classes == 1``) plus
    ``l2 * |W|^2``, full-batch L-BFGS with a strong-Wolfe line search, from zeros (deterministic)."""
    linear = torch.nn.Linear(x.shape[1], classes).double()
    torch.nn.init.zeros_(linear.weight)
    torch.nn.init.zeros_(linear.bias)
    x = x.double()
    target = y.double() if classes == 1 else y.long()
    opt = torch.optim.LBFGS(linear.parameters(), lr=1.0, max_iter=max_iter, tolerance_grad=1e-9,
                            tolerance_change=1e-12, history_size=20, line_search_fn="strong_wolfe")

    def closure():
        opt.zero_grad()
        out = linear(x)
        loss = (F.mse_loss(out.squeeze(-1), target) if classes == 1 else F.cross_entropy(out, target))
        loss = loss + l2 * linear.weight.pow(2).sum()
        loss.backward()
        return loss
    opt.step(closure)
    return linear.float()


def standardise(train: torch.Tensor, *others: torch.Tensor) -> list[torch.Tensor]:
    mean, std = train.mean(0), train.std(0).clamp_min(1e-6)
    return [(t - mean) / std for t in (train, *others)]
