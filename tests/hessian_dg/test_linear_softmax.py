"""Closed-form curvature of a linear softmax head against float64 autograd."""
import pytest
import torch

from hessian_dg import linear_softmax
from hessian_dg.linear_softmax import LinearSoftmaxHead
from tests.hessian_dg.reference import dense_gradient, dense_hessian, linear_head_loss

TOLERANCE = 1e-10

# (N, C, D, has_bias, uniform weights)
CASES = {
    "N32-C5-D20-bias": (32, 5, 20, True, True),
    "N1-C2-D3-bias": (1, 2, 3, True, True),
    "N17-C7-D11-nobias": (17, 7, 11, False, True),
    "N40-C3-D8-bias-weighted": (40, 3, 8, True, False),
    "N8-C12-D30-bias": (8, 12, 30, True, True),
}


def make_problem(n, c, d, has_bias, uniform, seed=0):
    g = torch.Generator().manual_seed(seed)
    features = torch.randn(n, d, generator=g, dtype=torch.float64)
    labels = torch.randint(0, c, (n,), generator=g)
    weight = torch.randn(c, d, generator=g, dtype=torch.float64)
    bias = torch.randn(c, generator=g, dtype=torch.float64) if has_bias else None
    if uniform:
        weights = torch.full((n,), 1.0 / n, dtype=torch.float64)
    else:
        weights = torch.rand(n, generator=g, dtype=torch.float64)
        weights = weights / weights.sum()
    logits = features @ weight.t() + (bias if has_bias else 0)
    head = LinearSoftmaxHead.from_logits(features, logits, labels, has_bias=has_bias,
                                         weights=weights)
    theta = (torch.cat([weight, bias[:, None]], 1) if has_bias else weight).reshape(-1)
    return head, theta, (features, labels, weights, has_bias)


@pytest.fixture(scope="module", params=list(CASES.values()), ids=list(CASES))
def problem(request):
    """(head, theta, loss args, dense Hessian, dense gradient); the oracle runs once."""
    head, theta, args = make_problem(*request.param)
    return head, theta, args, dense_hessian(theta, *args), dense_gradient(theta, *args)


def test_gradient_matches_autograd(problem):
    head, _, _, _, expected = problem
    assert (head.gradient().reshape(-1) - expected).abs().max() < TOLERANCE


def test_hessian_diagonal_matches_dense(problem):
    head, _, _, hessian, _ = problem
    expected = hessian.diagonal()
    assert (head.hessian_diagonal().reshape(-1) - expected).abs().max() < TOLERANCE


def test_hvp_matches_dense_for_one_and_many_vectors(problem):
    head, _, _, hessian, _ = problem
    g = torch.Generator().manual_seed(1)
    vectors = torch.randn(4, *head.shape, generator=g, dtype=torch.float64)
    batched = head.hvp(vectors).reshape(4, -1)
    expected = vectors.reshape(4, -1) @ hessian  # H symmetric
    assert (batched - expected).abs().max() < TOLERANCE
    single = head.hvp(vectors[2]).reshape(-1)
    assert (single - expected[2]).abs().max() < TOLERANCE


def test_hessian_gradient_product_matches_dense(problem):
    head, _, _, hessian, gradient = problem
    expected = hessian @ gradient
    assert (head.hessian_gradient_product().reshape(-1) - expected).abs().max() < TOLERANCE


def test_hessian_gradient_product_is_norm_times_gradient_of_norm(problem):
    """The paper's identity H g = ||g|| grad ||g||, with the norm's gradient by autograd."""
    head, theta, args, _, _ = problem
    theta = theta.clone().requires_grad_(True)
    (grad,) = torch.autograd.grad(linear_head_loss(theta, *args), theta, create_graph=True)
    norm = grad.norm()
    (grad_of_norm,) = torch.autograd.grad(norm, theta)
    identity = norm.detach() * grad_of_norm
    assert (head.hessian_gradient_product().reshape(-1) - identity).abs().max() < TOLERANCE


def test_closed_forms_are_differentiable_in_features_and_head():
    """Gradients of a scalar of H g through (features, W, b) equal double backprop."""
    n, c, d = 12, 4, 6
    g = torch.Generator().manual_seed(3)
    features = torch.randn(n, d, generator=g, dtype=torch.float64, requires_grad=True)
    labels = torch.randint(0, c, (n,), generator=g)
    theta = torch.randn(c * (d + 1), generator=g, dtype=torch.float64, requires_grad=True)
    weights = torch.full((n,), 1.0 / n, dtype=torch.float64)
    matrix = theta.view(c, d + 1)
    head = LinearSoftmaxHead.from_logits(
        features, features @ matrix[:, :d].t() + matrix[:, d], labels)
    ours = head.hessian_gradient_product().pow(2).sum()
    (grad,) = torch.autograd.grad(linear_head_loss(theta, features, labels, weights, True),
                                  theta, create_graph=True)
    (hg,) = torch.autograd.grad(0.5 * grad.pow(2).sum(), theta, create_graph=True)
    reference = hg.pow(2).sum()
    assert abs(float((ours - reference).detach())) < TOLERANCE
    ours_grads = torch.autograd.grad(ours, (features, theta))
    reference_grads = torch.autograd.grad(reference, (features, theta))
    for a, b in zip(ours_grads, reference_grads):
        assert (a - b).abs().max() < 1e-9


@pytest.mark.parametrize("call, message", [
    (lambda h: h.hvp(torch.zeros(3, 3, dtype=torch.float64)), "vectors must have shape"),
    (lambda h: linear_softmax.gradient(h.design, h.probs, h.targets[:, :1], h.weights),
     "targets must have the shape"),
    (lambda h: linear_softmax.hessian_diagonal(h.design[:3], h.probs, h.weights),
     "must agree on N"),
], ids=["hvp-shape", "targets-shape", "rows"])
def test_shape_errors_name_the_shapes(call, message):
    head, _, _ = make_problem(5, 4, 2, True, True)
    with pytest.raises(ValueError, match=message):
        call(head)
