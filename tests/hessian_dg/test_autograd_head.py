"""The autograd path: equal to the closed forms on a linear head, and to dense
Hessians on an MLP head (DomainBed's nonlinear classifier shape)."""
import math

import pytest
import torch
import torch.nn as nn
import torch.nn.functional as F
from torch.func import functional_call

from hessian_dg.autograd_head import AutogradHead
from hessian_dg.linear_softmax import LinearSoftmaxHead

TOLERANCE = 1e-10


def _data(n=10, d=6, c=4, seed=0):
    g = torch.Generator().manual_seed(seed)
    return (torch.randn(n, d, generator=g, dtype=torch.float64),
            torch.randint(0, c, (n,), generator=g))


def _linear(d=6, c=4):
    torch.manual_seed(1)
    return nn.Linear(d, c).double()


def _mlp(d=6, c=4):
    torch.manual_seed(2)
    return nn.Sequential(nn.Linear(d, 5), nn.Tanh(), nn.Linear(5, c)).double()


def _as_autograd_layout(matrix):
    """[W | b] (C, D+1) -> flat (vec W, b), the parameter order of nn.Linear."""
    return torch.cat([matrix[:, :-1].reshape(-1), matrix[:, -1]])


def test_matches_closed_form_on_a_linear_head():
    features, labels = _data()
    linear = _linear()
    ours = AutogradHead(linear, features, labels)
    closed = LinearSoftmaxHead.from_logits(features, linear(features), labels)
    pairs = [(ours.gradient(), closed.gradient()),
             (ours.hessian_gradient_product(), closed.hessian_gradient_product())]
    vectors = torch.randn(3, *closed.shape, dtype=torch.float64)
    flat_vectors = torch.stack([_as_autograd_layout(v) for v in vectors])
    pairs += [(ours.hvp(flat_vectors)[i], closed.hvp(vectors)[i]) for i in range(3)]
    for a, b in pairs:
        assert (a - _as_autograd_layout(b)).abs().max() < TOLERANCE


def _dense(head_module, features, labels):
    names = [n for n, _ in head_module.named_parameters()]
    shapes = [p.shape for p in head_module.parameters()]
    flat = torch.cat([p.detach().reshape(-1) for p in head_module.parameters()])

    def loss(theta):
        params, start = {}, 0
        for name, shape in zip(names, shapes):
            params[name] = theta[start:start + math.prod(shape)].view(shape)
            start += math.prod(shape)
        return F.cross_entropy(functional_call(head_module, params, (features,)), labels)

    hessian = torch.autograd.functional.hessian(loss, flat, vectorize=True)
    gradient = torch.autograd.functional.jacobian(loss, flat)
    return hessian, gradient


@pytest.fixture(scope="module")
def mlp_problem():
    features, labels = _data()
    mlp = _mlp()
    hessian, gradient = _dense(mlp, features, labels)
    return AutogradHead(mlp, features, labels), hessian, gradient


def test_mlp_gradient_hvp_and_hgp_match_dense_hessian(mlp_problem):
    head, hessian, gradient = mlp_problem
    assert (head.gradient() - gradient).abs().max() < TOLERANCE
    vectors = torch.randn(5, head.shape[0], dtype=torch.float64)
    assert (head.hvp(vectors) - vectors @ hessian).abs().max() < TOLERANCE
    assert (head.hvp(vectors[0]) - hessian @ vectors[0]).abs().max() < TOLERANCE
    assert (head.hessian_gradient_product() - hessian @ gradient).abs().max() < TOLERANCE


def test_mlp_hutchinson_converges_to_dense_diagonal(mlp_problem):
    head, hessian, _ = mlp_problem
    exact = hessian.diagonal()
    off_diagonal = float((hessian - torch.diag(exact)).pow(2).sum(dim=1).max())
    s = 4096
    estimate = head.hutchinson_diagonal(s, torch.Generator().manual_seed(0),
                                        chunk_size=1024).detach()
    # each entry's standard deviation is sqrt(sum_{j != i} H_ij^2 / S)
    assert (estimate - exact).abs().max() < 5 * math.sqrt(off_diagonal / s)


def test_mlp_exact_diagonal_is_refused_with_the_alternative(mlp_problem):
    head, _, _ = mlp_problem
    with pytest.raises(NotImplementedError, match="hutchinson_exact=False"):
        head.hessian_diagonal()


def test_weights_give_the_weighted_loss():
    features, labels = _data(n=6)
    linear = _linear()
    weights = torch.tensor([0.5, 0.1, 0.1, 0.1, 0.1, 0.1], dtype=torch.float64)
    ours = AutogradHead(linear, features, labels, weights=weights)
    closed = LinearSoftmaxHead.from_logits(features, linear(features), labels,
                                           weights=weights)
    diff = ours.hessian_gradient_product() - _as_autograd_layout(
        closed.hessian_gradient_product())
    assert diff.abs().max() < TOLERANCE
