r"""Exact curvature of a linear softmax head under cross-entropy, in closed form.

Head: logits ``z_n = W f_n + b``. Write the head's parameters as one matrix
``Theta = [W | b]`` of shape ``(C, K)`` with ``K = D + 1`` (``K = D`` without a
bias), and let ``F`` be the ``(N, K)`` features with a column of ones appended.
For a weighted loss ``L = sum_n w_n CE(z_n, y_n)`` (``w_n = 1/N`` for a mean),
with ``P`` the ``(N, C)`` softmax probabilities and ``Y`` the one-hot labels:

    gradient            G        = (P - Y)^T diag(w) F
    Hessian-vector      H v      = M^T diag(w) F,   U = F V^T,
                                   M = P * U - P * rowsum(P * U)
    Hessian diagonal    diag(H)  = (P * (1 - P))^T diag(w) (F * F)

where ``V`` is a ``(C, K)`` direction and ``*`` is elementwise. Each is an
ordinary differentiable expression of ``(F, P)``: gradients of a penalty built on
them flow into the head (through ``P``) and the featurizer (through ``F`` and
``P``) by plain backprop, no double backward. Cost is O(N C K) per vector,
against O(N C K) for the forward pass of the head itself.

and the Hessian itself, for small heads, is

    H = sum_n w_n (diag(p_n) - p_n p_n^T) (x) F_n F_n^T      (C K, C K), c-major

(``(x)`` the Kronecker product), which is where the formulas above come from:
``H v`` contracts it with ``V`` without forming it.

Reference: Hemati et al., "Understanding Hessian Alignment for Domain
Generalization", ICCV 2023 (arXiv 2308.11778); ``docs/method.md`` of this
project derives the closed forms.

Nothing here knows about DomainBed.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Optional

import torch
import torch.nn.functional as F

from hessian_dg import linear_hutchinson, probes


def append_ones(features: torch.Tensor) -> torch.Tensor:
    """``[features | 1]``: the design matrix of a head with a bias, shape (N, D+1)."""
    ones = features.new_ones(features.shape[0], 1)
    return torch.cat([features, ones], dim=1)


def uniform_weights(num_examples: int, like: torch.Tensor) -> torch.Tensor:
    """``w_n = 1/N``: the weights of a mean over ``num_examples`` examples."""
    return like.new_full((num_examples,), 1.0 / num_examples)


def _check_design(design: torch.Tensor, probs: torch.Tensor,
                  weights: torch.Tensor) -> None:
    if design.dim() != 2 or probs.dim() != 2 or weights.dim() != 1:
        raise ValueError(
            "expected design (N, K), probs (N, C) and weights (N,), got "
            f"{tuple(design.shape)}, {tuple(probs.shape)} and {tuple(weights.shape)}")
    n = design.shape[0]
    if probs.shape[0] != n or weights.shape[0] != n:
        raise ValueError(
            "design, probs and weights must agree on N, got "
            f"{tuple(design.shape)}, {tuple(probs.shape)} and {tuple(weights.shape)}")


def gradient(design: torch.Tensor, probs: torch.Tensor, targets: torch.Tensor,
             weights: torch.Tensor) -> torch.Tensor:
    """``G = (P - Y)^T diag(w) F``, shape (C, K).

    ``targets`` are one-hot (or any label distribution), shape (N, C).
    """
    _check_design(design, probs, weights)
    if targets.shape != probs.shape:
        raise ValueError(f"targets must have the shape of probs {tuple(probs.shape)}, "
                         f"got {tuple(targets.shape)}")
    return (probs - targets).t() @ (design * weights[:, None])


def hessian_vector_product(design: torch.Tensor, probs: torch.Tensor,
                           vectors: torch.Tensor, weights: torch.Tensor) -> torch.Tensor:
    """``H V`` for one direction (C, K) or a batch of them (S, C, K).

    ``U = F V^T``; ``M = P * U - P * rowsum(P * U)``; ``H V = M^T diag(w) F``.
    """
    _check_design(design, probs, weights)
    c, k = probs.shape[1], design.shape[1]
    if vectors.dim() not in (2, 3) or tuple(vectors.shape[-2:]) != (c, k):
        raise ValueError(f"vectors must have shape (C, K) = {(c, k)} or (S, C, K), "
                         f"got {tuple(vectors.shape)}")
    u = torch.einsum("nk,...ck->...nc", design, vectors)
    pu = probs * u
    m = pu - probs * pu.sum(dim=-1, keepdim=True)
    return torch.einsum("...nc,nk->...ck", m, design * weights[:, None])


def hessian_diagonal(design: torch.Tensor, probs: torch.Tensor,
                     weights: torch.Tensor) -> torch.Tensor:
    """``diag(H) = (P * (1 - P))^T diag(w) (F * F)``, shape (C, K)."""
    _check_design(design, probs, weights)
    return (probs * (1 - probs)).t() @ (design * design * weights[:, None])


@dataclass
class LinearSoftmaxHead:
    """Curvature of ``sum_n w_n CE(W f_n + b, y_n)`` with respect to ``[W | b]``.

    Holds the design matrix ``F`` (N, K), probabilities ``P`` (N, C), one-hot
    targets ``Y`` (N, C) and weights ``w`` (N,). Every quantity it returns is a
    (C, K) matrix, differentiable in ``F`` and ``P``.
    """

    design: torch.Tensor
    probs: torch.Tensor
    targets: torch.Tensor
    weights: torch.Tensor

    @classmethod
    def from_logits(cls, features: torch.Tensor, logits: torch.Tensor,
                    labels: torch.Tensor, has_bias: bool = True,
                    weights: Optional[torch.Tensor] = None) -> LinearSoftmaxHead:
        """Build from the head's input features (N, D), its logits (N, C) and labels (N,).

        Reusing the logits of the training forward pass costs nothing extra.
        ``weights`` default to ``1/N`` (the mean cross-entropy).
        """
        if features.dim() != 2 or logits.dim() != 2 or labels.dim() != 1:
            raise ValueError(
                "expected features (N, D), logits (N, C) and labels (N,), got "
                f"{tuple(features.shape)}, {tuple(logits.shape)} and {tuple(labels.shape)}")
        design = append_ones(features) if has_bias else features
        if weights is None:
            weights = uniform_weights(features.shape[0], features)
        targets = F.one_hot(labels, logits.shape[1]).to(logits.dtype)
        return cls(design, torch.softmax(logits, dim=1), targets, weights)

    @property
    def shape(self) -> tuple:
        """(C, K): the shape of the head's parameters as one matrix."""
        return (self.probs.shape[1], self.design.shape[1])

    def gradient(self) -> torch.Tensor:
        return gradient(self.design, self.probs, self.targets, self.weights)

    def hvp(self, vectors: torch.Tensor) -> torch.Tensor:
        return hessian_vector_product(self.design, self.probs, vectors, self.weights)

    def hessian_gradient_product(self) -> torch.Tensor:
        """``H g``, equal to ``||g|| grad ||g||`` (the paper's identity)."""
        return self.hvp(self.gradient())

    def hessian_diagonal(self) -> torch.Tensor:
        return hessian_diagonal(self.design, self.probs, self.weights)

    def hessian(self) -> torch.Tensor:
        """The dense Hessian, (C K, C K) with ``[W | b]`` flattened row by row.

        ``C^2 K^2`` numbers: for small heads and tests only.
        """
        p = self.probs
        blocks = torch.diag_embed(p) - p[:, :, None] * p[:, None, :]
        weighted = self.design * self.weights[:, None]
        c, k = self.shape
        return torch.einsum("nab,nk,nl->akbl", blocks, weighted,
                            self.design).reshape(c * k, c * k)

    def hutchinson_diagonal(self, num_probes: int, generator: torch.Generator,
                            chunk_size: Optional[int] = probes.DEFAULT_CHUNK_SIZE
                            ) -> torch.Tensor:
        """``(1/S) sum_s z_s * (H z_s)``, z_s Rademacher: unbiased for diag(H).

        Probes are batched (one matmul per chunk) and regenerated in a
        hand-written backward, see :mod:`hessian_dg.linear_hutchinson`.
        """
        return linear_hutchinson.hutchinson_diagonal(
            self.design, self.probs, self.weights, num_probes, generator,
            chunk_size=chunk_size)
