r"""The Hessian-alignment penalty for any PyTorch training loop.

One call aligns, across training domains, the classifier head's gradients and a
curvature quantity (Hemati et al., ICCV 2023):

    penalty = (1/m) sum_e [ alpha ||A_e - Abar||^2 + beta ||g_e - gbar||^2 ]

with ``g_e``/``A_e`` the head's gradient and curvature on domain e's mean loss, and
``gbar``/``Abar`` those of the average loss ``(1/m) sum_e L_e``. The curvature is
``"hgp"`` (``A = H g``), ``"hutchinson"`` (Hutchinson's estimate of diag(H)) or
``"exact_diagonal"`` (diag(H) itself, linear heads only).

The head decides the loss and the route:

- ``nn.Linear`` with C >= 2 outputs: cross-entropy, exact closed forms
  (:mod:`hessian_dg.linear_softmax`, :mod:`hessian_dg.linear_hutchinson`);
- ``nn.Linear`` with one output: binary cross-entropy with logits, exact closed
  forms (:mod:`hessian_dg.linear_sigmoid`);
- any other module: the same losses, through autograd double backprop
  (:mod:`hessian_dg.autograd_head`).

Two forms of the authors' are one flag away: their DomainBed code (constant
targets, divided by m: the defaults) and their Colored MNIST scripts (targets that
carry gradient, summed over domains: ``detach_targets=False,
mean_over_domains=False``). Every route keeps targets differentiable when asked:
the closed forms are plain tensor expressions of the features and probabilities,
and the softmax Hutchinson backward is written out for both.

Example, in a plain loop over one batch per domain::

    >>> import torch, torch.nn.functional as F
    >>> from hessian_dg import hessian_alignment_penalty
    >>> _ = torch.manual_seed(0); featurizer = torch.nn.Linear(8, 4); head = torch.nn.Linear(4, 3)
    >>> batches = [(torch.randn(5, 8), torch.randint(0, 3, (5,))) for _ in range(2)]
    >>> features = [featurizer(x) for x, _ in batches]
    >>> labels = [y for _, y in batches]
    >>> nll = sum(F.cross_entropy(head(f), y) for f, y in zip(features, labels)) / 2
    >>> penalty = hessian_alignment_penalty(head, features, labels, curvature="hgp",
    ...                                     alpha=1e-4, beta=5e-3)
    >>> (nll + penalty.total).backward()
    >>> bool(penalty.total > 0) and featurizer.weight.grad is not None
    True

Nothing here knows about DomainBed.
"""
from __future__ import annotations

from typing import Optional, Sequence, Union

import torch
import torch.nn as nn

from hessian_dg import alignment, probes
from hessian_dg.alignment import AlignmentPenalty
from hessian_dg.autograd_head import AutogradHead
from hessian_dg.linear_sigmoid import LinearSigmoidHead
from hessian_dg.linear_softmax import LinearSoftmaxHead

#: Names of the curvature quantities, for :func:`curvature_quantity`.
CURVATURES = ("hgp", "hutchinson", "exact_diagonal")


def curvature_quantity(name: str, num_probes: int = 300,
                       generator: Optional[torch.Generator] = None,
                       chunk_size: Optional[int] = probes.DEFAULT_CHUNK_SIZE):
    """The quantity object of :mod:`hessian_dg.alignment` for ``name``.

    ``"hutchinson"`` draws ``num_probes`` fresh probes per call from
    ``generator``. Without one, a generator is made here, seeded with one draw of
    torch's global RNG (:func:`hessian_dg.probes.generator_from_global_rng`; pass
    a generator to avoid it). The one construction of each quantity, for every
    caller.
    """
    if name == "hgp":
        return alignment.HessianGradientProduct()
    if name == "exact_diagonal":
        return alignment.ExactHessianDiagonal()
    if name == "hutchinson":
        if generator is None:
            generator = probes.generator_from_global_rng()
        return alignment.HutchinsonDiagonal(num_probes, generator, chunk_size=chunk_size)
    raise ValueError(f"unknown curvature {name!r}; choose one of {list(CURVATURES)}")


def is_linear(classifier: nn.Module) -> bool:
    """True for a single ``nn.Linear``: the heads with closed forms."""
    return isinstance(classifier, nn.Linear)


def describe_head(classifier: nn.Module, features: torch.Tensor, labels: torch.Tensor,
                  logits: Optional[torch.Tensor] = None,
                  weights: Optional[torch.Tensor] = None):
    """The loss of ``classifier`` on ``(features, labels)``, as a head object.

    Linear heads reuse ``logits`` when given (they must be
    ``classifier(features)``); an autograd head computes its own when they are
    None. ``weights`` default to ``1/N`` (a mean).
    """
    if is_linear(classifier):
        if logits is None:
            logits = classifier(features)
        kind = LinearSigmoidHead if classifier.out_features == 1 else LinearSoftmaxHead
        return kind.from_logits(features, logits, labels,
                                has_bias=classifier.bias is not None, weights=weights)
    return AutogradHead(classifier, features, labels, weights=weights, logits=logits)


def _stack(features, labels, sizes):
    if isinstance(features, torch.Tensor):
        if sizes is None:
            raise ValueError("stacked features need the sizes of their domains; or pass "
                             "one tensor per domain")
        return features, labels, [int(n) for n in sizes]
    features, labels = list(features), list(labels)
    if len(features) != len(labels):
        raise ValueError(f"{len(features)} feature tensors but {len(labels)} label tensors")
    if sizes is not None:
        raise ValueError("sizes are given by the per-domain tensors; pass sizes=None")
    return torch.cat(features), torch.cat(labels), [f.shape[0] for f in features]


def hessian_alignment_penalty(
    classifier: nn.Module,
    features: Union[torch.Tensor, Sequence[torch.Tensor]],
    labels: Union[torch.Tensor, Sequence[torch.Tensor]],
    sizes: Optional[Sequence[int]] = None,
    *,
    curvature="hgp",
    alpha: float = 1.0,
    beta: float = 1.0,
    num_probes: int = 300,
    generator: Optional[torch.Generator] = None,
    chunk_size: Optional[int] = probes.DEFAULT_CHUNK_SIZE,
    detach_targets: bool = True,
    mean_over_domains: bool = True,
    logits: Optional[torch.Tensor] = None,
) -> AlignmentPenalty:
    """The alignment penalty of ``classifier`` over m training domains.

    Domains are given as one feature and one label tensor each (lists), or
    stacked with ``sizes``. ``curvature`` is a name of :data:`CURVATURES` or a
    quantity object of :mod:`hessian_dg.alignment`; ``num_probes``,
    ``generator`` and ``chunk_size`` serve ``"hutchinson"``. ``logits`` may pass the
    stacked ``classifier(features)`` of the training forward pass, which linear
    heads reuse. Returns the total and its two terms
    (:class:`~hessian_dg.alignment.AlignmentPenalty`). With one domain every term
    is zero.
    """
    features, labels, sizes = _stack(features, labels, sizes)
    quantity = (curvature_quantity(curvature, num_probes, generator, chunk_size)
                if isinstance(curvature, str) else curvature)
    linear = is_linear(classifier)
    if logits is None and linear:
        logits = classifier(features)
    average_logits = None
    if not linear:
        average_logits = classifier(features.detach() if detach_targets else features)
        if logits is None:
            logits = classifier(features)

    def make_head(f, z, y, weights=None):
        return describe_head(classifier, f, y, logits=z, weights=weights)

    return alignment.stacked_domain_penalty(
        make_head, features, logits, labels, sizes, quantity, alpha=alpha, beta=beta,
        average_logits=average_logits, detach_targets=detach_targets,
        mean_over_domains=mean_over_domains)
