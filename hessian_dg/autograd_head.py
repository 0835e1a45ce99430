"""Curvature of any classifier head through autograd: the fallback path.

For a head ``h_theta`` that is not a single linear layer (DomainBed's
``nonlinear_classifier=True`` MLP), the quantities of
:mod:`hessian_dg.linear_softmax` are computed by double backprop:

    g      = grad_theta L                      (kept in the graph)
    H v    = grad_theta <g, v>                 (vector-Jacobian product of g)
    H g    = grad_theta (1/2) ||g||^2  = ||g|| grad_theta ||g||   (the paper's identity)

Batches of directions (Hutchinson's probes) go through one batched
vector-Jacobian product (``is_grads_batched=True``, vmap under the hood), not a
Python loop. Quantities are flat vectors over the head's trainable parameters, in
``head.parameters()`` order.

The exact Hessian diagonal would need one product per parameter and is not
offered here; the Hutchinson estimate is.
"""
from __future__ import annotations

from typing import Optional

import torch
import torch.nn.functional as F

from hessian_dg import probes


def _flatten(tensors) -> torch.Tensor:
    return torch.cat([t.reshape(-1) for t in tensors])


def per_example_loss(logits: torch.Tensor, labels: torch.Tensor) -> torch.Tensor:
    """Cross-entropy for C >= 2 logits (integer labels); binary cross-entropy with
    logits for one logit (targets in [0, 1]). Shape (N,).

    >>> per_example_loss(torch.zeros(2, 1), torch.tensor([0.0, 1.0])).tolist()
    [0.6931471824645996, 0.6931471824645996]
    """
    if logits.dim() == 2 and logits.shape[1] == 1:
        return F.binary_cross_entropy_with_logits(
            logits[:, 0], labels.reshape(-1).to(logits.dtype), reduction="none")
    return F.cross_entropy(logits, labels, reduction="none")


class AutogradHead:
    """Curvature of ``sum_n w_n loss(head(f_n), y_n)`` w.r.t. the head's parameters.

    The loss is :func:`per_example_loss`: cross-entropy, or binary cross-entropy
    for a head with one output. ``logits`` may be passed when the forward pass was
    already done with the same ``features``; they must be ``head(features)``.
    """

    def __init__(self, head: torch.nn.Module, features: torch.Tensor,
                 labels: torch.Tensor, weights: Optional[torch.Tensor] = None,
                 logits: Optional[torch.Tensor] = None):
        self.params = [p for p in head.parameters() if p.requires_grad]
        if not self.params:
            raise ValueError("the head has no trainable parameters")
        if logits is None:
            logits = head(features)
        per_example = per_example_loss(logits, labels)
        if weights is None:
            loss = per_example.mean()
        else:
            loss = (per_example * weights).sum()
        self._grads = torch.autograd.grad(loss, self.params, create_graph=True)
        self._flat_grad = _flatten(self._grads)

    @property
    def shape(self) -> tuple:
        return (self._flat_grad.numel(),)

    def gradient(self) -> torch.Tensor:
        return self._flat_grad

    def _split(self, flat: torch.Tensor):
        lead = flat.shape[:-1]
        parts, start = [], 0
        for p in self.params:
            parts.append(flat[..., start:start + p.numel()].reshape(*lead, *p.shape))
            start += p.numel()
        return parts

    def hvp(self, vectors: torch.Tensor) -> torch.Tensor:
        """``H v`` for one flat direction (P,) or a batch of them (S, P)."""
        if vectors.dim() not in (1, 2) or vectors.shape[-1] != self.shape[0]:
            raise ValueError(f"vectors must have shape (P,) = {self.shape} or (S, P), "
                             f"got {tuple(vectors.shape)}")
        batched = vectors.dim() == 2
        products = torch.autograd.grad(
            self._grads, self.params, grad_outputs=self._split(vectors),
            create_graph=True, is_grads_batched=batched)
        lead = vectors.shape[:-1]
        return torch.cat([p.reshape(*lead, -1) for p in products], dim=-1)

    def hessian_gradient_product(self) -> torch.Tensor:
        """``H g = grad (1/2)||g||^2``: one more backward pass, no Hessian."""
        half_sq_norm = 0.5 * (self._flat_grad * self._flat_grad).sum()
        return _flatten(torch.autograd.grad(half_sq_norm, self.params, create_graph=True))

    def hessian(self) -> torch.Tensor:
        """The dense Hessian (P, P): one batched product with the identity.

        P^2 numbers: for small heads and tests only.
        """
        eye = torch.eye(self.shape[0], dtype=self._flat_grad.dtype,
                        device=self._flat_grad.device)
        return self.hvp(eye)

    def hessian_diagonal(self) -> torch.Tensor:
        raise NotImplementedError(
            "the exact Hessian diagonal is closed-form only for a linear head; "
            "use the Hutchinson estimate (hutchinson_exact=False) for a nonlinear one")

    def hutchinson_diagonal(self, num_probes: int, generator: torch.Generator,
                            chunk_size: Optional[int] = probes.DEFAULT_CHUNK_SIZE
                            ) -> torch.Tensor:
        """``(1/S) sum_s z_s * (H z_s)`` with batched double-backprop products.

        The per-chunk products stay in the autograd graph (no recomputation is
        possible through ``autograd.grad``), so memory grows with S x P.
        """
        def probe_sum(z: torch.Tensor) -> torch.Tensor:
            return (z * self.hvp(z)).sum(dim=0)

        return probes.rademacher_probe_mean(
            probe_sum, self.shape, num_probes, generator,
            dtype=self._flat_grad.dtype, device=self._flat_grad.device,
            chunk_size=chunk_size)
