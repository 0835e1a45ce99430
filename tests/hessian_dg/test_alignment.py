"""The alignment penalty against a plain double-backprop implementation."""
import pytest
import torch

from hessian_dg import alignment
from hessian_dg.linear_softmax import LinearSoftmaxHead
from tests.hessian_dg.reference import double_backprop_penalty

ALPHA, BETA = 0.7, 0.3
SIZES = [5, 7, 6]  # unequal on purpose: the average loss weighs domains, not examples


def _leaves(sizes=SIZES, d=4, c=3, seed=0):
    g = torch.Generator().manual_seed(seed)
    n = sum(sizes)
    features = torch.randn(n, d, generator=g, dtype=torch.float64, requires_grad=True)
    weight = torch.randn(c, d, generator=g, dtype=torch.float64, requires_grad=True)
    bias = torch.randn(c, generator=g, dtype=torch.float64, requires_grad=True)
    labels = torch.randint(0, c, (n,), generator=g)
    return features, weight, bias, labels


def our_penalty(features, weight, bias, labels, sizes, curvature, alpha=ALPHA, beta=BETA):
    logits = features @ weight.t() + bias
    return alignment.stacked_domain_penalty(LinearSoftmaxHead.from_logits, features,
                                            logits, labels, sizes, curvature, alpha, beta)


CURVATURES = {
    "hgp": (lambda: alignment.HessianGradientProduct(), {}),
    "diag": (lambda: alignment.ExactHessianDiagonal(), {}),
    "hutchinson": (
        lambda: alignment.HutchinsonDiagonal(12, torch.Generator().manual_seed(5), 5),
        dict(generator=torch.Generator().manual_seed(5), num_probes=12, chunk_size=5)),
}


@pytest.mark.parametrize("kind", list(CURVATURES))
def test_value_and_gradients_match_double_backprop(kind):
    make_curvature, probe_args = CURVATURES[kind]
    features, weight, bias, labels = _leaves()
    ours = our_penalty(features, weight, bias, labels, SIZES, make_curvature()).total
    reference = double_backprop_penalty(features, weight, bias, labels, SIZES, kind,
                                        ALPHA, BETA, **probe_args)
    assert ours.item() > 1e-6
    assert abs((ours - reference).item()) < 1e-10 * max(1.0, reference.item())
    ours_grads = torch.autograd.grad(ours, (features, weight, bias))
    reference_grads = torch.autograd.grad(reference, (features, weight, bias))
    for name, a, b in zip(("features", "weight", "bias"), ours_grads, reference_grads):
        assert (a - b).abs().max() < 1e-10, name


@pytest.mark.parametrize("kind", ["hgp", "diag"])
def test_zero_when_every_domain_holds_the_same_batch(kind):
    features, weight, bias, labels = _leaves(sizes=[6])
    same_features = features.repeat(3, 1)
    same_labels = labels.repeat(3)
    penalty = our_penalty(same_features, weight, bias, same_labels, [6, 6, 6],
                          CURVATURES[kind][0]())
    assert penalty.total.abs().item() < 1e-15


@pytest.mark.parametrize("kind", ["hgp", "diag"])
def test_invariant_to_domain_order(kind):
    features, weight, bias, labels = _leaves()
    pieces = list(zip(features.split(SIZES), labels.split(SIZES), SIZES))
    permuted = [pieces[i] for i in (2, 0, 1)]
    forward = our_penalty(features, weight, bias, labels, SIZES, CURVATURES[kind][0]())
    backward = our_penalty(torch.cat([p[0] for p in permuted]), weight, bias,
                           torch.cat([p[1] for p in permuted]), [p[2] for p in permuted],
                           CURVATURES[kind][0]())
    assert abs((forward.total - backward.total).item()) < 1e-12


def test_terms_add_up_and_scale_with_their_weights():
    features, weight, bias, labels = _leaves()
    curvature = alignment.HessianGradientProduct()
    both = our_penalty(features, weight, bias, labels, SIZES, curvature, 2.0, 3.0)
    only_alpha = our_penalty(features, weight, bias, labels, SIZES, curvature, 1.0, 0.0)
    only_beta = our_penalty(features, weight, bias, labels, SIZES, curvature, 0.0, 1.0)
    assert abs((both.total - both.curvature_term - both.gradient_term).item()) < 1e-15
    assert abs((both.curvature_term - 2 * only_alpha.total).item()) < 1e-12
    assert abs((both.gradient_term - 3 * only_beta.total).item()) < 1e-12
    none = our_penalty(features, weight, bias, labels, SIZES, curvature, 0.0, 0.0)
    assert none.total.item() == 0.0


def test_one_domain_hgp_penalty_is_zero():
    features, weight, bias, labels = _leaves(sizes=[9])
    penalty = our_penalty(features, weight, bias, labels, [9],
                          alignment.HessianGradientProduct())
    assert penalty.total.item() == 0.0


def test_average_loss_weights_sum_to_one_per_domain_share():
    weights = alignment.average_loss_weights([2, 3, 5], torch.zeros(1, dtype=torch.float64))
    shares = [float(w.sum()) for w in weights.split([2, 3, 5])]
    assert shares == pytest.approx([1 / 3] * 3, abs=1e-15)


def test_hutchinson_rejects_bad_probe_counts():
    with pytest.raises(ValueError, match="num_probes must be a positive int, got 0"):
        alignment.HutchinsonDiagonal(0, torch.Generator())


def test_terms_are_divided_by_m_only_with_mean_over_domains():
    """``AlignmentPenalty``'s terms: divided by m by default, summed over domains with
    ``mean_over_domains=False`` (the authors' Colored MNIST form), here m = 3."""
    from hessian_dg import hessian_alignment_penalty
    g = torch.Generator().manual_seed(0)
    head = torch.nn.Linear(4, 3)
    features = [torch.randn(5, 4, generator=g) for _ in range(3)]
    labels = [torch.randint(0, 3, (5,), generator=g) for _ in range(3)]
    mean, summed = (hessian_alignment_penalty(head, features, labels, alpha=0.5, beta=2.0,
                                              mean_over_domains=flag)
                    for flag in (True, False))
    for name in ("total", "curvature_term", "gradient_term"):
        assert getattr(mean, name) > 0
        assert torch.allclose(getattr(summed, name), 3 * getattr(mean, name), rtol=1e-6)
