"""Closed forms of the one-logit (binary cross-entropy) head against float64 autograd."""
import pytest
import torch
import torch.nn.functional as F

from hessian_dg.linear_sigmoid import LinearSigmoidHead


def _problem(n=13, d=5, has_bias=True, soft_targets=False, seed=0):
    g = torch.Generator().manual_seed(seed)
    features = torch.randn(n, d, generator=g, dtype=torch.float64)
    theta = torch.randn(d + int(has_bias), generator=g, dtype=torch.float64)
    targets = (torch.rand(n, generator=g, dtype=torch.float64) if soft_targets
               else torch.randint(0, 2, (n,), generator=g).double())
    weights = torch.rand(n, generator=g, dtype=torch.float64)
    return features, theta, targets, weights


def _loss(theta, features, targets, weights, has_bias):
    logits = features @ theta[:features.shape[1]]
    if has_bias:
        logits = logits + theta[-1]
    per_example = F.binary_cross_entropy_with_logits(logits, targets, reduction="none")
    return (per_example * weights).sum()


def _head(features, theta, targets, weights, has_bias):
    d = features.shape[1]
    logits = features @ theta[:d] + (theta[-1] if has_bias else 0)
    return LinearSigmoidHead.from_logits(features, logits[:, None], targets,
                                         has_bias=has_bias, weights=weights)


CASES = [dict(has_bias=True), dict(has_bias=False), dict(soft_targets=True),
         dict(n=1, d=3)]


@pytest.mark.parametrize("case", CASES, ids=[str(c) for c in CASES])
def test_gradient_hessian_products_and_diagonal_equal_autograd(case):
    has_bias = case.get("has_bias", True)
    features, theta, targets, weights = _problem(**case)
    args = (features, targets, weights, has_bias)
    exact_grad = torch.autograd.functional.jacobian(lambda t: _loss(t, *args), theta)
    exact_hessian = torch.autograd.functional.hessian(lambda t: _loss(t, *args), theta)
    head = _head(features, theta, targets, weights, has_bias)
    assert head.shape == (1, theta.numel())
    assert (head.gradient().reshape(-1) - exact_grad).abs().max() < 1e-12
    assert (head.hessian() - exact_hessian).abs().max() < 1e-12
    assert (head.hessian_diagonal().reshape(-1) - exact_hessian.diagonal()).abs().max() < 1e-12
    v = torch.randn(3, 1, theta.numel(), dtype=torch.float64)
    products = head.hvp(v).reshape(3, -1)
    assert (products - v.reshape(3, -1) @ exact_hessian).abs().max() < 1e-12
    hg = head.hessian_gradient_product().reshape(-1)
    assert (hg - exact_hessian @ exact_grad).abs().max() < 1e-12


def test_hutchinson_is_unbiased_and_converges():
    features, theta, targets, weights = _problem(n=40, d=6)
    head = _head(features, theta, targets, weights, True)
    exact = head.hessian_diagonal()
    errors = []
    for num_probes in (16, 256):
        draws = torch.stack([head.hutchinson_diagonal(
            num_probes, torch.Generator().manual_seed(seed)) for seed in range(200)])
        mean, spread = draws.mean(0), draws.std(0) / 200 ** 0.5
        assert ((mean - exact).abs() <= 4 * spread + 1e-12).all()
        errors.append((draws - exact).pow(2).mean().sqrt().item())
    # mean squared error falls like 1/S: 16x the probes, about 1/4 the RMS error
    assert 0.18 < errors[1] / errors[0] < 0.35


def test_bad_shapes_name_them():
    features, theta, targets, weights = _problem()
    with pytest.raises(ValueError, match=r"one logit \(N, 1\)"):
        LinearSigmoidHead.from_logits(features, torch.zeros(13, 2), targets)
    head = _head(features, theta, targets, weights, True)
    with pytest.raises(ValueError, match=r"\(1, K\) = \(1, 6\)"):
        head.hvp(torch.zeros(2, 6))
