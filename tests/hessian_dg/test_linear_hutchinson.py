"""Hutchinson's estimate for a linear head: hand-written backward against autograd."""
import pytest
import torch

from hessian_dg import linear_hutchinson, probes
from hessian_dg.linear_softmax import LinearSoftmaxHead


def _problem(has_bias, n=9, d=5, c=4, seed=0):
    g = torch.Generator().manual_seed(seed)
    features = torch.randn(n, d, generator=g, dtype=torch.float64, requires_grad=True)
    weight = torch.randn(c, d, generator=g, dtype=torch.float64, requires_grad=True)
    bias = torch.randn(c, generator=g, dtype=torch.float64, requires_grad=True)
    labels = torch.randint(0, c, (n,), generator=g)
    weights = torch.rand(n, generator=g, dtype=torch.float64)
    return features, weight, bias, labels, weights


def _estimate(problem, has_bias, hand_written, num_probes, chunk_size):
    features, weight, bias, labels, weights = problem
    logits = features @ weight.t() + (bias if has_bias else 0)
    head = LinearSoftmaxHead.from_logits(features, logits, labels, has_bias=has_bias,
                                         weights=weights)
    generator = torch.Generator().manual_seed(3)
    if hand_written:
        return head.hutchinson_diagonal(num_probes, generator, chunk_size=chunk_size)
    return probes.rademacher_probe_mean(
        lambda z: (z * head.hvp(z)).sum(dim=0), head.shape, num_probes, generator,
        dtype=torch.float64, chunk_size=chunk_size)


@pytest.mark.parametrize("has_bias", [True, False])
@pytest.mark.parametrize("num_probes, chunk_size", [(23, 5), (8, 8), (7, None), (1, 4)])
def test_value_and_gradients_equal_autograd_through_the_same_probes(
        has_bias, num_probes, chunk_size):
    """Same probes, same estimate; the written-out backward equals autograd's
    (through softmax into features, weight and bias) to float64 round-off."""
    problem = _problem(has_bias)
    leaves = problem[:3] if has_bias else problem[:2]
    outer = torch.randn(4, 5 + has_bias, generator=torch.Generator().manual_seed(1),
                        dtype=torch.float64)
    results = []
    for hand_written in (True, False):
        estimate = _estimate(problem, has_bias, hand_written, num_probes, chunk_size)
        loss = (estimate * outer).sum() + estimate.pow(2).sum()
        results.append((estimate.detach(), torch.autograd.grad(loss, leaves)))
    (fast, fast_grads), (reference, reference_grads) = results
    assert (fast - reference).abs().max() < 1e-12
    for a, b in zip(fast_grads, reference_grads):
        assert (a - b).abs().max() < 1e-12 * max(1.0, b.abs().max())


def test_gradcheck_in_design_and_probs():
    """Finite differences agree with the backward for arbitrary (F, P), one input
    or both requiring gradients."""
    g = torch.Generator().manual_seed(4)
    design = torch.randn(6, 4, generator=g, dtype=torch.float64)
    probs = torch.rand(6, 3, generator=g, dtype=torch.float64)
    weights = torch.rand(6, generator=g, dtype=torch.float64)

    def estimate(d, p):
        return linear_hutchinson.hutchinson_diagonal(
            d, p, weights, 11, torch.Generator().manual_seed(5), chunk_size=4)

    for needs in [(True, True), (True, False), (False, True)]:
        inputs = (design.clone().requires_grad_(needs[0]),
                  probs.clone().requires_grad_(needs[1]))
        assert torch.autograd.gradcheck(estimate, inputs)


def test_saves_nothing_the_size_of_the_probes():
    """What the backward keeps is of minibatch size (U: S x N x C, R: C x N x K,
    and the inputs), never S x C x K: on DomainNet's head that would be GBs."""
    n, d, c, num_probes = 4, 63, 20, 64
    g = torch.Generator().manual_seed(6)
    features = torch.randn(n, d, generator=g, requires_grad=True)
    logits = features @ torch.randn(c, d, generator=g).t()
    head = LinearSoftmaxHead.from_logits(features, logits, torch.arange(n) % c)
    saved = []
    with torch.autograd.graph.saved_tensors_hooks(
            lambda t: saved.append(t.numel()) or t, lambda t: t):
        estimate = head.hutchinson_diagonal(num_probes, g, chunk_size=16)
    probe_numbers = num_probes * c * (d + 1)
    own = num_probes * n * c + c * n * (d + 1)
    assert max(saved) < probe_numbers / 4
    assert sum(saved) < own + 4 * (n * (d + 1) + n * c + c * (d + 1))
    estimate.sum().backward()
    assert torch.isfinite(features.grad).all() and features.grad.abs().sum() > 0


@pytest.mark.parametrize("case, kept", [("constant inputs", False), ("no_grad", False),
                                         ("gradients", True)])
def test_u_is_kept_only_when_a_backward_pass_can_follow(monkeypatch, case, kept):
    """The average loss's target (detached inputs) and anything under no_grad keep
    no U (S x C x N numbers); the value is the same either way."""
    calls = []
    original = linear_hutchinson._accumulate_mz

    def spy(*args, keep_u):
        mz, kept_u = original(*args, keep_u=keep_u)
        calls.append(len(kept_u))
        return mz, kept_u

    monkeypatch.setattr(linear_hutchinson, "_accumulate_mz", spy)
    problem = _problem(True)
    if case == "constant inputs":
        features, weight, bias, labels, weights = problem
        problem = (features.detach(), weight.detach(), bias.detach(), labels, weights)
    with torch.no_grad() if case == "no_grad" else torch.enable_grad():
        estimate = _estimate(problem, True, True, 10, 4)
    assert calls == [3 if kept else 0]  # chunks of 4, 4 and 2 probes
    assert (estimate.grad_fn is not None) == kept
    monkeypatch.undo()
    assert torch.equal(estimate.detach(), _estimate(_problem(True), True, True, 10, 4).detach())
