r"""The algorithms, as data: a registry from DomainBed's names to their penalties.

Notation, for training environment e with N_e examples: features ``phi_i``, head
input ``x~_i = [phi_i; 1]`` (d = 391), logit ``z_i``, ``p_i = sigma(z_i)``, noisy
label ``y_i``, and ``nll_e = (1/N_e) sum_i BCE(z_i, y_i)``. Head gradient and
Hessian: ``g_e = (1/N_e) sum_i (p_i - y_i) x~_i``, ``H_e = (1/N_e) sum_i p_i (1 - p_i)
x~_i x~_i^T``; ``gbar``, ``Hbar`` are those of ``(nll_0 + nll_1) / 2``. Nothing is
detached: every penalty backpropagates into the features (and, for HGP and
Hutchinson, through the targets ``gbar``, ``Hbar gbar``, ``diag Hbar``), as in the
scripts.

- ``ERM``: no penalty.
- ``IRM`` (IRMv1): ``mean_e (d/ds nll_e(s z)|_{s=1})^2 = mean_e [(1/N_e) sum_i (p_i - y_i) z_i]^2``.
- ``VREx``: ``(nll_0 - nll_1)^2``.
- ``Fishr``: per-example head gradients ``G_i = (p_i - y_i) x~_i`` (closed form for a
  one-logit linear head), centred variance ``v_e = (1/N_e) sum_i (G_i - mean G)^2``
  (per coordinate), penalty ``sum_e ||v_e - (v_0 + v_1)/2||^2``.
- ``HGP``: ``sum_e ||H_e g_e - Hbar gbar||^2 + ||g_e - gbar||^2``.
- ``Hutchinson``: ``sum_e ||D^_e - D^bar||^2 + ||g_e - gbar||^2`` with D^ the
  Rademacher estimate ``(1/S) sum_s z_s * H z_s`` of diag(H), fresh probes for
  each of gbar's loss, env 0, env 1 (S = 150 for correlation shift, 200 for label
  shift, the scripts' values).
- ``HutchinsonExact``: the same with the exact ``diag(H)`` (the S -> infinity limit).

The last three are :func:`hessian_dg.hessian_alignment_penalty` with
``detach_targets=False, mean_over_domains=False, alpha = beta = 1``. A penalty is
computed only for the algorithm being trained.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Callable, Dict, List, Optional

import torch
import torch.nn as nn

from hessian_dg import hessian_alignment_penalty

#: Hutchinson probes per quantity in the scripts, by setting.
HUTCHINSON_SAMPLES = {"correlation_shift": 150, "label_shift": 200}


@dataclass
class PenaltyInputs:
    """What a penalty may use: the training environments stacked in one batch."""

    classifier: nn.Linear
    features: torch.Tensor   # (N, D), environments stacked in order
    logits: torch.Tensor     # (N, 1)
    labels: torch.Tensor     # (N, 1), noisy labels in {0, 1}
    sizes: List[int]         # N_e per environment
    nlls: List[torch.Tensor]  # mean BCE per environment
    generator: Optional[torch.Generator] = None
    num_probes: int = 150

    def split(self, tensor: torch.Tensor):
        return tensor.split(self.sizes)


def irm_penalty(inputs: PenaltyInputs) -> torch.Tensor:
    """IRMv1's squared gradient of the dummy scale, in closed form."""
    terms = [((torch.sigmoid(z) - y) * z).mean().pow(2)
             for z, y in zip(inputs.split(inputs.logits), inputs.split(inputs.labels))]
    return torch.stack(terms).mean()


def vrex_penalty(inputs: PenaltyInputs) -> torch.Tensor:
    """The scripts' V-REx: squared difference of the two risks (4x their variance)."""
    first, second = inputs.nlls
    return (first - second).pow(2)


def per_example_head_gradients(features: torch.Tensor, logits: torch.Tensor,
                               labels: torch.Tensor) -> torch.Tensor:
    """``(p_i - y_i) [phi_i; 1]``, (N, D + 1): BackPACK's BatchGrad times N."""
    residual = torch.sigmoid(logits) - labels
    return torch.cat([residual * features, residual], dim=1)


def fishr_penalty(inputs: PenaltyInputs) -> torch.Tensor:
    """Distance of the centred per-coordinate gradient variances to their mean."""
    variances = []
    for f, z, y in zip(inputs.split(inputs.features), inputs.split(inputs.logits),
                       inputs.split(inputs.labels)):
        grads = per_example_head_gradients(f, z, y)
        variances.append((grads - grads.mean(dim=0, keepdim=True)).pow(2).mean(dim=0))
    mean = torch.stack(variances).mean(dim=0)
    return sum((v - mean).pow(2).sum() for v in variances)


def _alignment(curvature: str) -> Callable[[PenaltyInputs], torch.Tensor]:
    def penalty(inputs: PenaltyInputs) -> torch.Tensor:
        return hessian_alignment_penalty(
            inputs.classifier, inputs.features, inputs.labels, inputs.sizes,
            curvature=curvature, num_probes=inputs.num_probes, generator=inputs.generator,
            detach_targets=False, mean_over_domains=False, logits=inputs.logits).total
    penalty.__name__ = f"{curvature}_alignment_penalty"
    return penalty


@dataclass(frozen=True)
class Algorithm:
    """One entry of :data:`ALGORITHMS`; ``penalty`` is None for ERM."""

    name: str
    penalty: Optional[Callable[[PenaltyInputs], torch.Tensor]]
    description: str
    uses_probes: bool = False


ALGORITHMS: Dict[str, Algorithm] = {a.name: a for a in (
    Algorithm("ERM", None, "empirical risk minimisation"),
    Algorithm("IRM", irm_penalty, "IRMv1 (Arjovsky et al., 2019)"),
    Algorithm("VREx", vrex_penalty, "risk extrapolation (Krueger et al., 2021)"),
    Algorithm("Fishr", fishr_penalty, "gradient-variance matching (Rame et al., 2022)"),
    Algorithm("HGP", _alignment("hgp"), "Hessian-gradient product alignment"),
    Algorithm("Hutchinson", _alignment("hutchinson"),
              "Hessian-diagonal alignment, Hutchinson's estimate", uses_probes=True),
    Algorithm("HutchinsonExact", _alignment("exact_diagonal"),
              "Hessian-diagonal alignment, exact diagonal (S -> infinity)"),
)}


def canonical_name(name: str) -> Optional[str]:
    """The registry's spelling of ``name`` (case-insensitive), or None."""
    lowered = {key.lower(): key for key in ALGORITHMS}
    return lowered.get(name.lower())
