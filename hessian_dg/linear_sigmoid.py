r"""Exact curvature of a one-logit linear head under binary cross-entropy.

Head: one logit ``z_n = w . f_n + b`` and ``L = sum_n a_n BCE(z_n, y_n)`` with
``BCE(z, y) = -y log sigma(z) - (1 - y) log(1 - sigma(z))`` (``a_n = 1/N`` for a
mean; ``y`` may be any target in [0, 1]). With ``F`` the ``(N, K)`` design matrix
(features with a column of ones when the head has a bias), ``p = sigma(z)`` and
``s = p (1 - p)``, write the head's parameters as one ``(1, K)`` matrix
``[w | b]``:

    gradient            G       = (p - y)^T diag(a) F
    Hessian             H       = F^T diag(a s) F                      (K, K)
    Hessian-vector      H v     = (s * F v^T)^T diag(a) F
    Hessian diagonal    diag(H) = s^T diag(a) (F * F)

This is the two-class logistic model with one logit, the head of the Colored
MNIST experiments (Arjovsky et al., 2019; Rame et al., 2022; Hemati et al.,
ICCV 2023). Its Hessian does not depend on the labels. Each expression is an
ordinary differentiable function of ``(F, p)``, so a penalty built on them needs
no double backward, and targets built from them may carry gradient too.

The interface is that of :class:`hessian_dg.linear_softmax.LinearSoftmaxHead`:
every quantity is a ``(1, K)`` matrix.

Nothing here knows about DomainBed.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Optional

import torch

from hessian_dg import probes
from hessian_dg.linear_softmax import append_ones, uniform_weights


@dataclass
class LinearSigmoidHead:
    """Curvature of ``sum_n a_n BCE(w . f_n + b, y_n)`` with respect to ``[w | b]``.

    Holds the design matrix ``F`` (N, K), probabilities ``p`` (N, 1), targets
    ``y`` (N, 1) and weights ``a`` (N,).
    """

    design: torch.Tensor
    probs: torch.Tensor
    targets: torch.Tensor
    weights: torch.Tensor

    @classmethod
    def from_logits(cls, features: torch.Tensor, logits: torch.Tensor,
                    labels: torch.Tensor, has_bias: bool = True,
                    weights: Optional[torch.Tensor] = None) -> LinearSigmoidHead:
        """From the head's input features (N, D), its logits (N, 1) or (N,) and
        targets in [0, 1] of the same length; ``weights`` default to ``1/N``."""
        n = features.shape[0]
        if features.dim() != 2 or logits.reshape(n, -1).shape[1] != 1 or \
                labels.numel() != n:
            raise ValueError(
                "expected features (N, D), one logit (N, 1) and targets (N,) or (N, 1), "
                f"got {tuple(features.shape)}, {tuple(logits.shape)} and "
                f"{tuple(labels.shape)}")
        design = append_ones(features) if has_bias else features
        if weights is None:
            weights = uniform_weights(n, features)
        targets = labels.reshape(n, 1).to(logits.dtype)
        return cls(design, torch.sigmoid(logits.reshape(n, 1)), targets, weights)

    @property
    def shape(self) -> tuple:
        """(1, K): the shape of the head's parameters as one matrix."""
        return (1, self.design.shape[1])

    def _curvature_weights(self) -> torch.Tensor:
        """``a_n s_n = a_n p_n (1 - p_n)``, shape (N, 1)."""
        return self.weights[:, None] * self.probs * (1 - self.probs)

    def gradient(self) -> torch.Tensor:
        return (self.probs - self.targets).t() @ (self.design * self.weights[:, None])

    def hvp(self, vectors: torch.Tensor) -> torch.Tensor:
        """``H V`` for one direction (1, K) or a batch of them (S, 1, K)."""
        if vectors.dim() not in (2, 3) or tuple(vectors.shape[-2:]) != self.shape:
            raise ValueError(f"vectors must have shape (1, K) = {self.shape} or "
                             f"(S, 1, K), got {tuple(vectors.shape)}")
        u = torch.einsum("nk,...ck->...nc", self.design, vectors)
        return torch.einsum("...nc,nk->...ck", self._curvature_weights() * u, self.design)

    def hessian(self) -> torch.Tensor:
        """The dense Hessian ``F^T diag(a s) F``, (K, K) in ``[w | b]`` order."""
        return self.design.t() @ (self._curvature_weights() * self.design)

    def hessian_gradient_product(self) -> torch.Tensor:
        """``H g``, equal to ``||g|| grad ||g||`` (the paper's identity)."""
        return self.hvp(self.gradient())

    def hessian_diagonal(self) -> torch.Tensor:
        return self._curvature_weights().t() @ (self.design * self.design)

    def hutchinson_diagonal(self, num_probes: int, generator: torch.Generator,
                            chunk_size: Optional[int] = probes.DEFAULT_CHUNK_SIZE
                            ) -> torch.Tensor:
        """``(1/S) sum_s z_s * (H z_s)``, z_s Rademacher: unbiased for diag(H).

        A head of this kind is small (K numbers), so a chunk of products is kept
        for backward by autograd rather than regenerated.
        """
        def probe_sum(z: torch.Tensor) -> torch.Tensor:
            return (z * self.hvp(z)).sum(dim=0)

        return probes.rademacher_probe_mean(
            probe_sum, self.shape, num_probes, generator, dtype=self.design.dtype,
            device=self.design.device, chunk_size=chunk_size)
