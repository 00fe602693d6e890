"""Gradient clipping (``trainer.gradient_clip_val``) that takes the sparse gradients of
``nn.Embedding(..., sparse=True)``, for which torch's ``clip_grad_norm_`` and ``clip_grad_value_`` have no
kernel. Dense gradients are clipped exactly as torch clips them."""

from __future__ import annotations

from collections.abc import Callable, Iterable

import torch
from torch import Tensor


def has_sparse_gradients(parameters: Iterable[Tensor]) -> bool:
    return any(p.grad is not None and p.grad.is_sparse for p in parameters)


def clip_gradients(parameters: Iterable[Tensor], clip_val: float, algorithm: str = "norm") -> None:
    """Clip the gradients of ``parameters`` in place, sparse ones included: by their global 2-norm (``norm``:
    all of them scaled by ``clip_val / norm`` when the norm exceeds ``clip_val``, as torch's
    ``clip_grad_norm_``) or each value into ``[-clip_val, clip_val]`` (``value``).

    A sparse gradient is coalesced first: an embedding row a batch uses twice holds two entries, and its
    gradient is their sum, whose norm or value is what is clipped.
    """
    with_grads = [p for p in parameters if p.grad is not None]
    if algorithm not in ("norm", "value"):
        raise ValueError(f"gradient_clip_algorithm={algorithm}: give norm or value")
    if not with_grads:
        return
    grads = [_coalesced_gradient(p) for p in with_grads]
    if algorithm == "value":
        for p in with_grads:
            _transform(p, lambda values: values.clamp(-clip_val, clip_val))
        return
    norms = [torch.linalg.vector_norm(_values(grad)).to(grads[0].device) for grad in grads]
    # no host sync: the factor is 1 when the norm is within clip_val, as in torch's clip_grad_norm_
    factor = torch.clamp(clip_val / (torch.linalg.vector_norm(torch.stack(norms)) + 1e-6), max=1.0)
    for p in with_grads:
        _transform(p, lambda values: values * factor.to(values.device, values.dtype))


def _coalesced_gradient(parameter: Tensor) -> Tensor:
    grad = parameter.grad
    assert grad is not None  # only parameters with a gradient are clipped
    if grad.is_sparse and not grad.is_coalesced():
        parameter.grad = grad = grad.coalesce()
    return grad


def _values(grad: Tensor) -> Tensor:
    return grad.values() if grad.is_sparse else grad


def _transform(parameter: Tensor, change: Callable[[Tensor], Tensor]) -> None:
    """Replace ``parameter``'s gradient by ``change`` of its values: in place when dense, as a new coalesced
    sparse gradient on the same rows when sparse."""
    grad = parameter.grad
    assert grad is not None
    if grad.is_sparse:
        # the rows are the coalesced gradient's own, so its invariants hold without checking them again
        parameter.grad = torch.sparse_coo_tensor(
            grad.indices(), change(grad.values()), grad.shape, is_coalesced=True, check_invariants=False
        )
    else:
        grad.copy_(change(grad))
