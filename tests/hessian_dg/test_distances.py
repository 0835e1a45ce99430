"""Gradient and Hessian distances against dense float64 autograd Hessians."""
import pytest
import torch

from hessian_dg import distances
from hessian_dg.autograd_head import AutogradHead
from hessian_dg.linear_sigmoid import LinearSigmoidHead
from hessian_dg.linear_softmax import LinearSoftmaxHead
from tests.hessian_dg.reference import dense_hessian


def _softmax_pair(c=3, d=4, sizes=(9, 6), has_bias=True, seed=0):
    g = torch.Generator().manual_seed(seed)
    theta = torch.randn(c * (d + int(has_bias)), generator=g, dtype=torch.float64)
    matrix = theta.view(c, -1)
    heads, dense = [], []
    for n in sizes:
        features = torch.randn(n, d, generator=g, dtype=torch.float64) * 2
        labels = torch.randint(0, c, (n,), generator=g)
        weights = torch.full((n,), 1.0 / n, dtype=torch.float64)
        logits = features @ matrix[:, :d].t() + (matrix[:, d] if has_bias else 0)
        heads.append(LinearSoftmaxHead.from_logits(features, logits, labels, has_bias))
        dense.append(dense_hessian(theta, features, labels, weights, has_bias))
    return heads, dense


def _sigmoid_pair(d=5, sizes=(11, 7), seed=1):
    g = torch.Generator().manual_seed(seed)
    w = torch.randn(d, generator=g, dtype=torch.float64)
    heads = []
    for n in sizes:
        features = torch.randn(n, d, generator=g, dtype=torch.float64)
        targets = torch.randint(0, 2, (n,), generator=g).double()
        heads.append(LinearSigmoidHead.from_logits(features, (features @ w)[:, None] + 0.3,
                                                   targets))
    return heads, [h.hessian() for h in heads]


PAIRS = {"softmax": _softmax_pair, "softmax-no-bias": lambda: _softmax_pair(has_bias=False),
         "sigmoid": _sigmoid_pair}


@pytest.mark.parametrize("pair", list(PAIRS))
@pytest.mark.parametrize("dense_limit", [10**6, 0], ids=["dense", "kronecker"])
def test_frobenius_distance_is_exact(pair, dense_limit):
    (a, b), (ha, hb) = PAIRS[pair]()
    distance = distances.hessian_frobenius_distance(a, b, dense_limit=dense_limit,
                                                    chunk_size=4)
    expected = torch.linalg.matrix_norm(ha - hb).item()
    assert distance.exact and abs(distance.value - expected) < 1e-10 * max(1, expected)


@pytest.mark.parametrize("pair", list(PAIRS))
def test_spectral_distance_and_norm_match_dense(pair):
    (a, b), (ha, hb) = PAIRS[pair]()
    g = torch.Generator().manual_seed(0)
    distance = distances.hessian_spectral_distance(a, b, generator=g, tol=1e-12)
    assert (distance.method, distance.converged) == ("lanczos", True)
    expected = torch.linalg.matrix_norm(ha - hb, 2).item()
    assert abs(distance.value - expected) < 1e-8 * expected
    norm = distances.hessian_spectral_norm(a, generator=g, tol=1e-12)
    assert abs(norm.value - torch.linalg.matrix_norm(ha, 2).item()) < 1e-8 * norm.value


def test_gradient_distance():
    (a, b), _ = PAIRS["softmax"]()
    expected = torch.linalg.vector_norm(a.gradient() - b.gradient()).item()
    assert distances.gradient_distance(a, b) == pytest.approx(expected, rel=1e-14)
    assert distances.gradient_distance(a, a) == 0


def _autograd_pair():
    torch.manual_seed(3)
    head = torch.nn.Sequential(torch.nn.Linear(4, 5), torch.nn.Tanh(),
                               torch.nn.Linear(5, 3)).double()
    heads = []
    for n in (8, 10):
        features = torch.randn(n, 4, dtype=torch.float64)
        heads.append(AutogradHead(head, features, torch.randint(0, 3, (n,))))
    return heads


def test_autograd_heads_spectral_exact_and_frobenius_estimated():
    a, b = _autograd_pair()
    difference = a.hessian() - b.hessian()
    spectral = distances.hessian_spectral_distance(a, b, torch.Generator().manual_seed(0),
                                                   tol=1e-12)
    assert abs(spectral.value - torch.linalg.matrix_norm(difference, 2).item()) < 1e-8
    expected = torch.linalg.matrix_norm(difference).item()
    estimate = distances.hessian_frobenius_distance(
        a, b, num_probes=4000, generator=torch.Generator().manual_seed(1))
    assert not estimate.exact
    # E||Az||^2 = ||A||_F^2; 4000 probes put the estimate within a few percent
    assert abs(estimate.value - expected) < 0.05 * expected
    with pytest.raises(ValueError, match="pass a torch.Generator"):
        distances.hessian_frobenius_distance(a, b)


def test_mismatched_heads_are_refused():
    (a, _), _ = PAIRS["softmax"]()
    (s, _), _ = PAIRS["sigmoid"]()
    with pytest.raises(ValueError, match="different kinds or shapes"):
        distances.hessian_frobenius_distance(a, s)


def _three_softmax_heads(seed=4):
    g = torch.Generator().manual_seed(seed)
    c, d = 3, 4
    matrix = torch.randn(c, d + 1, generator=g, dtype=torch.float64)
    heads = {}
    for name, n in (("env0", 7), ("env1", 9), ("env2", 5)):
        features = torch.randn(n, d, generator=g, dtype=torch.float64)
        labels = torch.randint(0, c, (n,), generator=g)
        logits = features @ matrix[:, :d].t() + matrix[:, d]
        heads[name] = LinearSoftmaxHead.from_logits(features, logits, labels)
    return heads


@pytest.mark.parametrize("dense_limit", [10**6, 0], ids=["dense", "kronecker"])
def test_compare_domains_with_the_training_average_equals_dense(dense_limit, monkeypatch):
    monkeypatch.setattr(distances, "DENSE_LIMIT", dense_limit)
    heads = _three_softmax_heads()
    dense = {name: h.hessian() for name, h in heads.items()}
    grads = {name: h.gradient().reshape(-1) for name, h in heads.items()}
    heads["train_average"] = distances.HeadMixture([heads["env0"], heads["env1"]], [0.5, 0.5])
    dense["train_average"] = (dense["env0"] + dense["env1"]) / 2
    grads["train_average"] = (grads["env0"] + grads["env1"]) / 2
    pairs = [("env0", "env1"), ("env0", "env2"), ("env2", "train_average")]
    result = distances.compare_domains(heads, pairs, torch.Generator().manual_seed(0),
                                       tol=1e-12, chunk_size=3)
    for row in result["pairs"]:
        a, b = row["a"], row["b"]
        difference = dense[a] - dense[b]
        assert row["hessian_frobenius_distance"]["method"] == "exact"
        assert row["hessian_frobenius_distance"]["value"] == pytest.approx(
            torch.linalg.matrix_norm(difference).item(), rel=1e-9)
        assert row["hessian_spectral_distance"]["value"] == pytest.approx(
            torch.linalg.matrix_norm(difference, 2).item(), rel=1e-8)
        assert row["gradient_distance"] == pytest.approx(
            torch.linalg.vector_norm(grads[a] - grads[b]).item(), rel=1e-12)
    for name, row in result["heads"].items():
        assert row["hessian_spectral_norm"]["value"] == pytest.approx(
            torch.linalg.matrix_norm(dense[name], 2).item(), rel=1e-8)
        assert row["gradient_norm"] == pytest.approx(
            torch.linalg.vector_norm(grads[name]).item(), rel=1e-12)


def test_compare_domains_estimates_autograd_heads_with_shared_probes():
    a, b = _autograd_pair()
    expected = torch.linalg.matrix_norm(a.hessian() - b.hessian()).item()
    result = distances.compare_domains({"a": a, "b": b}, [("a", "b")],
                                       torch.Generator().manual_seed(2), num_probes=4000)
    row = result["pairs"][0]["hessian_frobenius_distance"]
    assert row["method"] == "hutchinson" and abs(row["value"] - expected) < 0.05 * expected


def test_estimates_say_how_they_were_got():
    """Lanczos is an iteration to a tolerance, not an exact value: the JSON says
    which method gave each number, and its tolerance or probe count."""
    heads = _three_softmax_heads()
    result = distances.compare_domains(heads, [("env0", "env1")],
                                       torch.Generator().manual_seed(0), tol=1e-5)
    row = result["pairs"][0]
    assert row["hessian_frobenius_distance"].keys() == {"value", "method"}
    assert row["hessian_frobenius_distance"]["method"] == "exact"
    spectral = dict(row["hessian_spectral_distance"])
    assert spectral.pop("value") > 0
    assert spectral == {"method": "lanczos", "tolerance": 1e-5, "converged": True}
    norm = dict(result["heads"]["env0"]["hessian_spectral_norm"])
    assert norm.pop("value") > 0 and norm == spectral
    a, b = _autograd_pair()
    row = distances.compare_domains({"a": a, "b": b}, [("a", "b")],
                                    torch.Generator().manual_seed(2), num_probes=30)
    frobenius = row["pairs"][0]["hessian_frobenius_distance"]
    assert (frobenius["method"], frobenius["probes"]) == ("hutchinson", 30)
    assert not distances.hessian_frobenius_distance(
        a, b, num_probes=30, generator=torch.Generator().manual_seed(1)).exact


def test_lanczos_that_stops_at_its_limit_says_it_did_not_converge():
    matrix = torch.diag(torch.arange(1.0, 41.0, dtype=torch.float64))
    estimate = distances.lanczos_extreme_eigenvalue(lambda v: matrix @ v, 40, matrix,
                                                    tol=1e-14, max_iter=3)
    assert (estimate.method, estimate.tolerance, estimate.converged) == \
        ("lanczos", 1e-14, False)
    assert not estimate.exact and estimate.value < 40
