r"""The alignment penalty by double backprop, as the paper's authors compute it.

    (1/m) sum_e [alpha ||A_e - sg(Abar)||^2 + beta ||g_e - sg(gbar)||^2]

with every head quantity from autograd: ``g_e = grad_theta L_e`` with
``create_graph=True``; HGP ``H g = ||g|| grad_theta ||g||`` (one more
``autograd.grad``); Hutchinson a Python loop over S Rademacher probes ``z``, each
``H z = grad_theta <g, z>`` with ``create_graph=True``, accumulated into
``(1/S) sum z * H z`` (every probe's product stays in the graph until backward).
Targets come from the average loss on detached features and are detached.

A cost reference only, for ``step_cost.py`` and ``penalty_cost.py``: it draws
probes one at a time, the authors' way, so its cost is theirs. The tests' oracle
(``tests/hessian_dg/reference.py``) computes the same formula but draws probes as
the library does, so values compare exactly; the two differ on purpose. Nothing
here needs DomainBed.
"""
from __future__ import annotations

from typing import Callable, List, Sequence

import torch
import torch.nn.functional as F

CURVATURES = ("hgp", "hutchinson")


def hessian_gradient_product(grads: Sequence[torch.Tensor], params) -> List[torch.Tensor]:
    """``H g = ||g|| grad ||g||``: the paper's two-backward identity."""
    norm = torch.sqrt(sum((g * g).sum() for g in grads))
    norm_grads = torch.autograd.grad(norm, params, create_graph=True)
    return [norm * d for d in norm_grads]


def rademacher_like(p: torch.Tensor, generator: torch.Generator) -> torch.Tensor:
    """±1 entries shaped like ``p``, one random number per entry (the authors' way)."""
    bits = torch.randint(0, 2, p.shape, generator=generator, device=p.device)
    return bits.to(p.dtype) * 2 - 1


def hutchinson_diagonal(grads: Sequence[torch.Tensor], params, num_probes: int,
                        generator: torch.Generator) -> List[torch.Tensor]:
    """``(1/S) sum_s z_s * H z_s``, one autograd Hessian-vector product per probe."""
    estimate = [torch.zeros_like(p) for p in params]
    for _ in range(num_probes):
        probes = [rademacher_like(p, generator) for p in params]
        products = torch.autograd.grad(grads, params, grad_outputs=probes,
                                       create_graph=True)
        estimate = [e + z * hz for e, z, hz in zip(estimate, probes, products)]
    return [e / num_probes for e in estimate]


def double_backprop_penalty(classifier: Callable, params: Sequence[torch.Tensor],
                            features: torch.Tensor, labels: Sequence[torch.Tensor],
                            curvature: str, alpha: float, beta: float,
                            num_probes: int = 0, generator: torch.Generator = None,
                            logits: torch.Tensor = None) -> torch.Tensor:
    """The penalty for domains whose ``labels`` split ``features`` in order.

    ``classifier`` maps features to logits (``logits``, if given, are
    ``classifier(features)`` already computed) and ``params`` are its parameters;
    ``curvature`` is "hgp" or "hutchinson" (``num_probes`` probes per domain and
    for the average loss, drawn from ``generator``).
    """
    if curvature not in CURVATURES:
        raise ValueError(f"curvature must be one of {CURVATURES}, got {curvature!r}")
    if curvature == "hutchinson" and (num_probes < 1 or generator is None):
        raise ValueError("hutchinson needs num_probes >= 1 and a generator")

    def curvature_of(grads):
        if curvature == "hgp":
            return hessian_gradient_product(grads, params)
        return hutchinson_diagonal(grads, params, num_probes, generator)

    sizes = [len(y) for y in labels]
    m = len(sizes)
    average_logits = classifier(features.detach())
    average_loss = sum(F.cross_entropy(z, y) for z, y in
                       zip(average_logits.split(sizes), labels)) / m
    target_grads = torch.autograd.grad(average_loss, params, create_graph=True)
    target_curvature = [a.detach() for a in curvature_of(target_grads)]
    target_grads = [g.detach() for g in target_grads]

    if logits is None:
        logits = classifier(features)
    penalty = features.new_zeros(())
    for z, y in zip(logits.split(sizes), labels):
        grads = torch.autograd.grad(F.cross_entropy(z, y), params, create_graph=True)
        penalty = penalty + alpha * sum(((a - t) ** 2).sum() for a, t in
                                        zip(curvature_of(grads), target_curvature))
        penalty = penalty + beta * sum(((g - t) ** 2).sum() for g, t in
                                       zip(grads, target_grads))
    return penalty / m
