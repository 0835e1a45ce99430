"""Hutchinson's estimator converges to the exact diagonal like 1/sqrt(S).

For Rademacher probes the estimator's error has a known law: each entry is
unbiased with variance (1/S) sum_{j != i} H_ij^2, so the mean squared error is
E||D_S - diag H||^2 = (1/S) ||H - diag(diag H)||_F^2. The light tier checks the
empirical error against that law over a few hundred draws; the heavy tier
(``pytest -m heavy``) tightens it with more draws and larger S.
"""
import math

import pytest
import torch

from tests.hessian_dg.reference import dense_hessian
from tests.hessian_dg.test_linear_softmax import make_problem


def _setup():
    head, theta, args = make_problem(16, 3, 4, True, True, seed=4)
    hessian = dense_hessian(theta, *args)
    exact = hessian.diagonal()
    off_diagonal = (hessian - torch.diag(exact)).pow(2).sum()
    return head, exact, float(off_diagonal)


def _squared_errors(head, exact, num_probes, repeats, seed):
    generator = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        estimates = torch.stack([
            head.hutchinson_diagonal(num_probes, generator).reshape(-1)
            for _ in range(repeats)])
    return estimates, (estimates - exact).pow(2).sum(dim=1)


def _check_convergence(sizes, repeats, band):
    head, exact, off_diagonal = _setup()
    rms = []
    for s in sizes:
        _, errors = _squared_errors(head, exact, s, repeats, seed=s)
        ratio = float(errors.mean()) / (off_diagonal / s)
        assert band[0] < ratio < band[1], f"S={s}: MSE / theory = {ratio:.3f}"
        rms.append(math.sqrt(float(errors.mean())))
    slope = (math.log(rms[-1]) - math.log(rms[0])) / (math.log(sizes[-1]) - math.log(sizes[0]))
    assert -0.6 < slope < -0.4, f"RMS error ~ S^{slope:.3f}, expected S^-0.5"


def test_estimator_is_unbiased():
    head, exact, off_diagonal = _setup()
    repeats, s = 400, 4
    estimates, _ = _squared_errors(head, exact, s, repeats, seed=0)
    standard_error = math.sqrt(off_diagonal / s / repeats)  # bound for every entry
    assert (estimates.mean(0) - exact).abs().max() < 4 * standard_error


def test_error_shrinks_like_inverse_sqrt_samples_light():
    _check_convergence(sizes=(4, 16, 64), repeats=120, band=(0.7, 1.4))


@pytest.mark.heavy
def test_error_shrinks_like_inverse_sqrt_samples_heavy():
    _check_convergence(sizes=(4, 32, 256, 1024), repeats=400, band=(0.85, 1.15))


def test_exact_diagonal_is_the_limit():
    head, exact, off_diagonal = _setup()
    with torch.no_grad():
        estimate = head.hutchinson_diagonal(20000, torch.Generator().manual_seed(9),
                                            chunk_size=2000).reshape(-1)
    assert (head.hessian_diagonal().reshape(-1) - exact).abs().max() < 1e-12
    # every entry's standard deviation is at most sqrt(off_diagonal / S)
    assert (estimate - exact).abs().max() < 5 * math.sqrt(off_diagonal / 20000)
