"""A linear head fitted to convergence on a frozen encoder's outputs: full-batch L-BFGS, the way a
logistic (or ridge) regression on sentence embeddings is fitted. What "the linear head" means when a
searched head is compared with it (retrain.baselines' linear probe, strategies.pick's incumbents)."""
from __future__ import annotations

from typing import Callable

import torch
import torch.nn.functional as F

L2_GRID = (1e-6, 1e-5, 1e-4, 1e-3, 1e-2, 1e-1)  # per-row mean loss + l2 * |W|^2, on standardised features


def fit_linear(x: torch.Tensor, y: torch.Tensor, classes: int, l2: float, max_iter: int = 1000,
               start: torch.nn.Linear | None = None) -> torch.nn.Linear:
    """A linear layer fitted to convergence: cross-entropy (or squared error for ``classes == 1``) plus
    ``l2 * |W|^2``, full-batch L-BFGS with a strong-Wolfe line search, from zeros (deterministic) or
    from ``start`` (a fit at a nearby L2 strength: a path of strengths converges in fewer steps)."""
    linear = torch.nn.Linear(x.shape[1], classes)
    with torch.no_grad():
        linear.weight.copy_(start.weight if start is not None else torch.zeros_like(linear.weight))
        linear.bias.copy_(start.bias if start is not None else torch.zeros_like(linear.bias))
    target = y.float() if classes == 1 else y.long()
    opt = torch.optim.LBFGS(linear.parameters(), lr=1.0, max_iter=max_iter, tolerance_grad=1e-7,
                            tolerance_change=1e-10, history_size=20, line_search_fn="strong_wolfe")

    def closure():
        opt.zero_grad()
        out = linear(x.float())
        loss = (F.mse_loss(out.squeeze(-1), target) if classes == 1 else F.cross_entropy(out, target))
        loss = loss + l2 * linear.weight.pow(2).sum()
        loss.backward()
        return loss
    opt.step(closure)
    return linear


def fit_into(linear: torch.nn.Linear, x: torch.Tensor, y: torch.Tensor, classes: int) -> None:
    """``linear``'s weights replaced by an unpenalised ``fit_linear`` of ``x`` (on its device): a
    cosine's scale and bias started fitted (``fit_cosine_scale``, ``fit_shared_cosine``)."""
    with torch.enable_grad():
        fitted = fit_linear(x, y, classes, l2=0.0)
    linear.load_state_dict({k: v.to(linear.weight.device) for k, v in fitted.state_dict().items()})


def fit_path(x: torch.Tensor, y: torch.Tensor, classes: int, strengths=None) -> list[tuple[float, torch.nn.Linear]]:
    """``fit_linear`` at every L2 strength, strongest first, each fit starting from the one before."""
    out, start = [], None
    for l2 in sorted(strengths or L2_GRID, reverse=True):
        start = fit_linear(x, y, classes, l2, start=start)
        out.append((l2, start))
    return out


def standardise(train: torch.Tensor, *others: torch.Tensor) -> list[torch.Tensor]:
    mean, std = train.mean(0), train.std(0).clamp_min(1e-6)
    return [(t - mean) / std for t in (train, *others)]


def unstandardised(linear: torch.nn.Linear, mean: torch.Tensor, std: torch.Tensor) -> torch.nn.Linear:
    """The same map on raw features: a layer fitted on ``(x - mean) / std`` folded into one that reads ``x``
    (what a plain model's head gets: it has no standardisation step)."""
    out = torch.nn.Linear(linear.in_features, linear.out_features)
    with torch.no_grad():
        out.weight.copy_(linear.weight / std)
        out.bias.copy_(linear.bias - out.weight @ mean)
    return out


def select_and_refit(fit: tuple[torch.Tensor, torch.Tensor], val: tuple[torch.Tensor, torch.Tensor],
                     train: tuple[torch.Tensor, torch.Tensor], classes: int,
                     score: Callable[[torch.Tensor, torch.Tensor], float]) -> tuple[torch.nn.Linear, float, dict]:
    """A linear layer fitted to convergence the way a searched head is selected: every L2 strength fitted on
    the fit rows and scored on the selection rows by ``score(outputs, labels)`` (ties: the stronger
    penalty), then refitted at the best one on every training row. Each argument is (features, labels).
    Returns (the layer, on raw features; the L2 strength; {strength: selection score})."""
    fit_x, val_x = standardise(fit[0], val[0])
    selection = {l2: score(head(val_x).detach(), val[1]) for l2, head in fit_path(fit_x, fit[1], classes)}
    best = max(L2_GRID, key=lambda l2: (selection[l2], l2))
    mean, std = train[0].mean(0), train[0].std(0).clamp_min(1e-6)
    head = fit_linear((train[0] - mean) / std, train[1], classes, best)
    return unstandardised(head, mean, std), best, selection
