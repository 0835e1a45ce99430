r"""The Colored MNIST MLP of the IRM, Fishr and Hessian-alignment scripts.

    phi(x) = ReLU(W2 ReLU(W1 vec(x) + b1) + b2)      features, (N, H), H = 390
    z(x)   = w . phi(x) + b                          one logit, (N, 1)

``vec(x)`` flattens (N, 2, h, w) channel-major (all pixels of channel 0, then
channel 1); the grayscale model sums the two channels instead. ``classifier`` is
the last ``nn.Linear(H, 1)``: the head whose gradient and curvature the penalties
align, handled in closed form by :mod:`hessian_dg.linear_sigmoid`.

Initialisation as in the scripts: the three layers are built (lin1, lin2,
classifier, each drawing PyTorch's default init from the global RNG), then every
weight is redrawn by ``xavier_uniform_`` in the same order and every bias is set
to zero. ``classifier`` is registered before the trunk, so ``parameters()`` lists
it first, as theirs does.
"""
from __future__ import annotations

from typing import Sequence, Tuple

import torch
import torch.nn as nn


class MLP(nn.Module):
    """``forward(x) -> (features, logits)`` for images of ``input_shape`` (2, h, w)."""

    def __init__(self, input_shape: Sequence[int] = (2, 14, 14), hidden_dim: int = 390,
                 grayscale_model: bool = False):
        super().__init__()
        channels, height, width = input_shape
        self.grayscale_model = grayscale_model
        self.channels = channels
        in_dim = height * width * (1 if grayscale_model else channels)
        lin1 = nn.Linear(in_dim, hidden_dim)
        lin2 = nn.Linear(hidden_dim, hidden_dim)
        self.classifier = nn.Linear(hidden_dim, 1)
        for layer in (lin1, lin2, self.classifier):
            nn.init.xavier_uniform_(layer.weight)
            nn.init.zeros_(layer.bias)
        self._main = nn.Sequential(lin1, nn.ReLU(True), lin2, nn.ReLU(True))

    def forward(self, images: torch.Tensor) -> Tuple[torch.Tensor, torch.Tensor]:
        n = images.shape[0]
        if self.grayscale_model:
            flat = images.view(n, self.channels, -1).sum(dim=1)
        else:
            flat = images.view(n, -1)
        features = self._main(flat)
        return features, self.classifier(features)
