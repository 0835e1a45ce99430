r"""The alignment penalty: which curvature quantity, and how domains are aligned.

Objective (Hemati et al., ICCV 2023, as the authors run it in DomainBed):

    loss = Lbar + (1/m) sum_e [ alpha ||A_e - sg(Abar)||^2 + beta ||g_e - sg(gbar)||^2 ]

with ``g_e``/``A_e`` the head gradient and curvature quantity of domain e's loss,
and ``gbar``/``Abar`` those of the *average* loss ``Lbar = (1/m) sum_e L_e``
(not the mean of the per-domain quantities); ``sg`` is stop-gradient.

Curvature quantities are sibling classes with one method, ``__call__(head)``,
where ``head`` is a :class:`~hessian_dg.linear_softmax.LinearSoftmaxHead` (exact
closed forms) or an :class:`~hessian_dg.autograd_head.AutogradHead` (double
backprop):

- :class:`HessianGradientProduct`: ``A = H g`` (HGP);
- :class:`HutchinsonDiagonal`: ``A = (1/S) sum_s z_s * H z_s`` (Hutchinson);
- :class:`ExactHessianDiagonal`: ``A = diag(H)``, the S -> infinity limit.

Nothing here knows about DomainBed.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Callable, Optional, Sequence

import torch

from hessian_dg import probes


class HessianGradientProduct:
    """``A = H g``; equals ``||g|| grad ||g||``, the paper's two-backward identity."""

    def __call__(self, head) -> torch.Tensor:
        return head.hessian_gradient_product()


class ExactHessianDiagonal:
    """``A = diag(H)``, exact: the zero-variance limit of Hutchinson's estimator."""

    def __call__(self, head) -> torch.Tensor:
        return head.hessian_diagonal()


class HutchinsonDiagonal:
    """``A = (1/S) sum_s z_s * (H z_s)``, ``z_s`` Rademacher: unbiased for diag(H).

    Every call draws fresh probes from ``generator``, so each domain and the
    average loss get independent probes, as in the authors' implementation.
    """

    def __init__(self, num_probes: int, generator: torch.Generator,
                 chunk_size: Optional[int] = probes.DEFAULT_CHUNK_SIZE):
        probes.chunk_sizes(num_probes, chunk_size)  # validates both
        self.num_probes = num_probes
        self.generator = generator
        self.chunk_size = chunk_size

    def __call__(self, head) -> torch.Tensor:
        return head.hutchinson_diagonal(self.num_probes, self.generator,
                                        chunk_size=self.chunk_size)


def average_loss_weights(sizes: Sequence[int], like: torch.Tensor) -> torch.Tensor:
    """Per-example weights of ``Lbar = (1/m) sum_e mean_{n in e} CE_n``: ``1/(m n_e)``.

    >>> average_loss_weights([2, 1], torch.zeros(1)).tolist()
    [0.25, 0.25, 0.5]
    """
    m = len(sizes)
    return torch.cat([like.new_full((n,), 1.0 / (m * n)) for n in sizes])


def squared_distance(a: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
    """``||a - b||^2`` summed over every entry."""
    return (a - b).pow(2).sum()


@dataclass
class AlignmentPenalty:
    """The penalty and its two terms, each already scaled: by alpha or beta, and
    divided by m unless ``mean_over_domains=False`` (then summed over domains)."""

    total: torch.Tensor
    curvature_term: torch.Tensor
    gradient_term: torch.Tensor


def alignment_penalty(domain_heads: Sequence, average_head, curvature,
                      alpha: float, beta: float, detach_targets: bool = True,
                      mean_over_domains: bool = True) -> AlignmentPenalty:
    """``(1/m) sum_e [alpha ||A_e - sg(Abar)||^2 + beta ||g_e - sg(gbar)||^2]``.

    ``domain_heads[e]`` describes domain e's loss and carries gradients;
    ``average_head`` describes ``Lbar``. DomainBed's form (the authors' DomainBed
    code) uses the targets as constants and divides by m; their Colored MNIST
    scripts let gradient flow through the targets (``detach_targets=False``) and
    sum over domains (``mean_over_domains=False``).
    """
    if len(domain_heads) == 0:
        raise ValueError("alignment_penalty needs at least one domain")
    target_gradient = average_head.gradient()
    target_curvature = curvature(average_head) if alpha != 0 else None
    if detach_targets:
        target_gradient = target_gradient.detach()
        if target_curvature is not None:
            target_curvature = target_curvature.detach()
    curvature_term = 0.0
    gradient_term = 0.0
    for head in domain_heads:
        if alpha != 0:
            curvature_term = curvature_term + squared_distance(curvature(head),
                                                               target_curvature)
        if beta != 0:
            gradient_term = gradient_term + squared_distance(head.gradient(),
                                                             target_gradient)
    scale = 1.0 / len(domain_heads) if mean_over_domains else 1.0
    zero = target_gradient.new_zeros(())
    curvature_term = alpha * scale * curvature_term + zero
    gradient_term = beta * scale * gradient_term + zero
    return AlignmentPenalty(curvature_term + gradient_term, curvature_term,
                            gradient_term)


def stacked_domain_penalty(make_head: Callable, features: torch.Tensor,
                           logits: torch.Tensor, labels: torch.Tensor,
                           sizes: Sequence[int], curvature, alpha: float, beta: float,
                           average_logits: Optional[torch.Tensor] = None,
                           detach_targets: bool = True,
                           mean_over_domains: bool = True) -> AlignmentPenalty:
    """:func:`alignment_penalty` for domains of ``sizes`` stacked in one batch.

    ``make_head(features, logits, labels, weights=None)`` describes one loss (e.g.
    ``LinearSoftmaxHead.from_logits``). Domain e's head sees its own slice. The
    average loss ``(1/m) sum_e L_e`` weighs each example of domain e by
    ``1/(m n_e)``. With ``detach_targets`` its head is built on detached features
    and on ``average_logits`` (default: the detached ``logits``; a nonlinear head
    passes its logits recomputed from the detached features), so its quantities
    are constants; without, on ``features`` and ``logits`` themselves.
    """
    domain_heads = [make_head(f, z, y) for f, z, y in
                    zip(features.split(sizes), logits.split(sizes), labels.split(sizes))]
    target_features = features.detach() if detach_targets else features
    if average_logits is None:
        average_logits = logits.detach() if detach_targets else logits
    average_head = make_head(target_features, average_logits, labels,
                             weights=average_loss_weights(sizes, features))
    return alignment_penalty(domain_heads, average_head, curvature, alpha, beta,
                             detach_targets=detach_targets,
                             mean_over_domains=mean_over_domains)
