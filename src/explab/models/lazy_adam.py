"""Adam for models with sparse embedding gradients: rows a batch does not touch are left alone."""

from __future__ import annotations

import math
from collections.abc import Callable, Iterable
from typing import Any

import torch
from torch import Tensor


class LazyAdam(torch.optim.Optimizer):
    """Adam on dense gradients; on sparse ones (``nn.Embedding(..., sparse=True)``) the update, and the
    moment estimates, of only the rows in the batch, as ``torch.optim.SparseAdam`` does.

    Torch's ``Adam`` refuses sparse gradients and its ``SparseAdam`` refuses dense ones, and Lightning's
    automatic optimisation takes one optimiser: this one takes both. A bag-of-n-grams model touches a few
    hundred of its hundred thousand embedding rows per batch: updating only those saves nearly all of a
    step's optimiser work, and unseen rows stay where they are instead of drifting on stale momentum.
    State is the usual per-parameter ``step``, ``exp_avg`` and ``exp_avg_sq``, so checkpoints save and
    resume it like any optimiser's.
    """

    def __init__(
        self,
        params: Iterable[Tensor] | Iterable[dict[str, Any]],
        lr: float = 1e-3,
        betas: tuple[float, float] = (0.9, 0.999),
        eps: float = 1e-8,
    ) -> None:
        if lr <= 0 or eps <= 0 or not all(0 <= beta < 1 for beta in betas):
            raise ValueError(f"LazyAdam needs lr > 0, eps > 0 and betas in [0, 1), got {lr}, {eps}, {betas}")
        super().__init__(params, {"lr": lr, "betas": tuple(betas), "eps": eps})

    @torch.no_grad()
    def step(self, closure: Callable[[], float] | None = None) -> float | None:  # type: ignore[override]
        loss = None
        if closure is not None:
            with torch.enable_grad():
                loss = closure()
        for group in self.param_groups:
            beta1, beta2 = group["betas"]
            for param in group["params"]:
                if param.grad is None:
                    continue
                state = self.state[param]
                if not state:
                    state["step"] = 0
                    state["exp_avg"] = torch.zeros_like(param, memory_format=torch.preserve_format)
                    state["exp_avg_sq"] = torch.zeros_like(param, memory_format=torch.preserve_format)
                state["step"] += 1
                correction1, correction2 = 1 - beta1 ** state["step"], 1 - beta2 ** state["step"]
                if param.grad.is_sparse:
                    step_size = group["lr"] * math.sqrt(correction2) / correction1
                    _sparse_update(param, param.grad, state, beta1, beta2, group["eps"], step_size)
                    continue
                # torch.optim.Adam's arithmetic
                exp_avg, exp_avg_sq = state["exp_avg"], state["exp_avg_sq"]
                exp_avg.lerp_(param.grad, 1 - beta1)
                exp_avg_sq.mul_(beta2).addcmul_(param.grad, param.grad, value=1 - beta2)
                denominator = (exp_avg_sq.sqrt() / math.sqrt(correction2)).add_(group["eps"])
                param.addcdiv_(exp_avg, denominator, value=-group["lr"] / correction1)
        return loss


def _sparse_update(
    param: Tensor, grad: Tensor, state: dict[str, Any], beta1: float, beta2: float, eps: float, step_size: float
) -> None:
    """SparseAdam's update of the rows ``grad`` names (torch.optim.SparseAdam, the same arithmetic)."""
    grad = grad.coalesce()  # one entry per row: repeated tokens in a batch add up
    rows, values = grad._indices()[0], grad._values()
    exp_avg, exp_avg_sq = state["exp_avg"], state["exp_avg_sq"]
    avg = exp_avg[rows]
    avg_sq = exp_avg_sq[rows]
    avg.mul_(beta1).add_(values, alpha=1 - beta1)
    avg_sq.mul_(beta2).addcmul_(values, values, value=1 - beta2)
    exp_avg[rows] = avg
    exp_avg_sq[rows] = avg_sq
    param[rows] -= step_size * avg / (avg_sq.sqrt() + eps)
