"""What touches a device, on the device of ``--device`` (default cpu; see conftest.py).

Run on a GPU as ``python -m pytest tests/test_devices.py --device cuda``
(``benchmarks/device_run.py`` does). Every deterministic quantity is checked three
ways, so that the module asserts something on any device:

- on the device in float64, against an independent oracle on the same device
  (autograd double backprop, or the generic probe path, with the same probes);
- on the device in float64, against the same computation on the CPU in float64
  (on a CPU run the two are the same computation: this check then holds trivially);
- on the device in float32, against the CPU in float64 (float32's accuracy).

Hutchinson's probes are drawn on the tensors' device from per-chunk seeds (a CUDA
generator gives other signs than the CPU's for the same seed), so its estimates are
compared with the CPU's by their statistics: unbiased for the exact diagonal, with the
variance a Rademacher estimate has.
"""
import contextlib
import copy
import math

import pytest
import torch

from colored_mnist import train as cmnist_train
from colored_mnist.penalties import ALGORITHMS as CMNIST_ALGORITHMS
from hessian_dg import hessian_alignment_penalty, probes
from hessian_dg.penalty import describe_head
from tests.colored_mnist.conftest import synthetic_arrays
from tests.hessian_dg.reference import double_backprop_penalty

CPU = torch.device("cpu")
SIZES = [5, 7, 6]
FORMS = {"domainbed": dict(detach_targets=True, mean_over_domains=True),
         "cmnist": dict(detach_targets=False, mean_over_domains=False)}
F64, F32 = 1e-9, 2e-3  # relative tolerances: float64 anywhere, float32 against float64


@pytest.fixture(autouse=True, scope="module")
def one_thread():
    """One CPU thread: these tensors are tiny, and on a small shared machine more
    threads only wait for each other."""
    previous = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(previous)


@contextlib.contextmanager
def no_tf32():
    """Full float32 products (CUDA convolutions default to TF32's 10-bit mantissa)."""
    flags = torch.backends.cuda.matmul.allow_tf32, torch.backends.cudnn.allow_tf32
    torch.backends.cuda.matmul.allow_tf32 = torch.backends.cudnn.allow_tf32 = False
    try:
        yield
    finally:
        torch.backends.cuda.matmul.allow_tf32, torch.backends.cudnn.allow_tf32 = flags


def assert_close(actual, expected, rel, what):
    """max |actual - expected| <= rel * max |expected|, both moved to the CPU in float64."""
    actual = torch.as_tensor(actual).detach().to(CPU, torch.float64)
    expected = torch.as_tensor(expected).detach().to(CPU, torch.float64)
    scale = max(float(expected.abs().max()), 1e-300)
    error = float((actual - expected).abs().max())
    assert error <= rel * scale, f"{what}: max error {error:.3g} > {rel:g} x {scale:.3g}"


def _leaves(outputs, device, dtype, seed=0, d=4):
    """Features, a linear head and labels, drawn on the CPU, then moved."""
    g = torch.Generator().manual_seed(seed)
    n = sum(SIZES)
    features = torch.randn(n, d, generator=g, dtype=torch.float64)
    head = torch.nn.Linear(d, outputs).double()
    with torch.no_grad():
        head.weight.copy_(torch.randn(outputs, d, generator=g))
        head.bias.copy_(torch.randn(outputs, generator=g))
    labels = (torch.randint(0, 2, (n,), generator=g).double() if outputs == 1
              else torch.randint(0, outputs, (n,), generator=g))
    if outputs == 1:
        labels = labels.to(dtype)
    return (features.to(device, dtype).requires_grad_(), head.to(device, dtype),
            labels.to(device))


def _penalty(kind, outputs, form, device, dtype, oracle=False):
    """(value, gradients in features, weight, bias) of the penalty, ours or the oracle's."""
    features, head, labels = _leaves(outputs, device, dtype)
    generator = torch.Generator().manual_seed(5)  # chunk seeds; probes on `device`
    if oracle:
        total = double_backprop_penalty(
            features, head.weight, head.bias, labels, SIZES,
            "diag" if kind == "exact_diagonal" else kind, 0.7, 0.3, generator=generator,
            num_probes=12, chunk_size=5, **FORMS[form])
    else:
        total = hessian_alignment_penalty(
            head, features, labels, SIZES, curvature=kind, alpha=0.7, beta=0.3,
            num_probes=12, generator=generator, chunk_size=5, **FORMS[form]).total
    grads = torch.autograd.grad(total, (features, head.weight, head.bias))
    return (total.detach(), *grads)


@pytest.mark.parametrize("form", list(FORMS))
@pytest.mark.parametrize("outputs", [5, 1], ids=["softmax", "sigmoid"])
@pytest.mark.parametrize("kind", ["hgp", "exact_diagonal", "hutchinson"])
def test_penalty_on_the_device_equals_the_oracle_and_the_cpu(device, kind, outputs, form):
    ours = _penalty(kind, outputs, form, device, torch.float64)
    oracle = _penalty(kind, outputs, form, device, torch.float64, oracle=True)
    assert float(ours[0]) > 1e-6
    for name, a, b in zip(("value", "features", "weight", "bias"), ours, oracle):
        assert_close(a, b, F64, f"{name} against the oracle on {device}")
    with no_tf32():
        single = _penalty(kind, outputs, form, device, torch.float32)
        if kind == "hutchinson":  # float32 probes are other signs: compare like with like
            reference = _penalty(kind, outputs, form, device, torch.float32, oracle=True)
        else:
            reference = _penalty(kind, outputs, form, CPU, torch.float64)
            for name, a, b in zip(("value", "features", "weight", "bias"), ours, reference):
                assert_close(a, b, F64, f"{name} on {device} against the CPU")
    for name, a, b in zip(("value", "features", "weight", "bias"), single, reference):
        assert_close(a, b, F32, f"{name} in float32 on {device}")


@pytest.mark.parametrize("chunk_size", [5, None])
def test_written_out_hutchinson_backward_equals_autograd_on_the_device(device, chunk_size):
    """Same probes (drawn on the device from the same chunk seeds), same estimate and
    same gradients as autograd through the generic probe mean."""
    features, head, labels = _leaves(6, device, torch.float64)
    outer = torch.randn(6, 5, generator=torch.Generator().manual_seed(1),
                        dtype=torch.float64).to(device)
    results = []
    for hand_written in (True, False):
        logits = head(features)
        described = describe_head(head, features, labels, logits=logits)
        generator = torch.Generator().manual_seed(3)
        if hand_written:
            estimate = described.hutchinson_diagonal(23, generator, chunk_size=chunk_size)
        else:
            estimate = probes.rademacher_probe_mean(
                lambda z, h=described: (z * h.hvp(z)).sum(dim=0), described.shape, 23,
                generator, dtype=torch.float64, device=device, chunk_size=chunk_size)
        loss = (estimate * outer).sum() + estimate.pow(2).sum()
        grads = torch.autograd.grad(loss, (features, head.weight, head.bias))
        results.append((estimate.detach(), *grads))
    for name, a, b in zip(("estimate", "features", "weight", "bias"), *results):
        assert_close(a, b, 1e-12, f"{name} on {device}")


@pytest.mark.parametrize("outputs", [4, 1], ids=["softmax", "sigmoid"])
def test_hutchinson_on_the_device_is_unbiased_with_rademacher_variance(device, outputs):
    """Entry i of (1/S) sum_s z_s * H z_s has mean H_ii and variance
    sum_{j != i} H_ij^2 / S; standardised errors must look like N(0, 1) draws. The
    global RNGs are not touched: probes come from per-chunk seeds alone."""
    features, head, labels = _leaves(outputs, device, torch.float64)
    with torch.no_grad():
        described = describe_head(head, features, labels)
        exact = described.hessian_diagonal().reshape(-1)
        hessian = described.hessian()
        spread = (hessian.pow(2).sum(dim=1) - hessian.diagonal().pow(2)).sqrt()
        states = [torch.get_rng_state()] + (
            [torch.cuda.get_rng_state(device)] if device.type == "cuda" else [])
        num_probes = 4000
        estimate = described.hutchinson_diagonal(
            num_probes, torch.Generator().manual_seed(11), chunk_size=500).reshape(-1)
    assert torch.equal(states[0], torch.get_rng_state())
    if device.type == "cuda":
        assert torch.equal(states[1], torch.cuda.get_rng_state(device))
    t = ((estimate - exact) / (spread / math.sqrt(num_probes))).cpu()
    assert float(t.abs().max()) < 5.5, t
    assert 0.15 < float(t.pow(2).mean()) < 4.0, t
    chunk = probes.draw_chunk(7, 64, (9, 11), device=device)
    assert chunk.device.type == device.type
    assert bool(((chunk == 1) | (chunk == -1)).all()) and abs(float(chunk.mean())) < 0.05
    assert torch.equal(chunk, probes.draw_chunk(7, 64, (9, 11), device=device))
    assert not torch.equal(chunk, probes.draw_chunk(8, 64, (9, 11), device=device))


# --- DomainBed: update() and diagnose --------------------------------------------------

#: A 1-D input: DomainBed's Featurizer picks its MLP (the CNNs cost minutes on 2 CPU
#: cores in float64; convolutions on the GPU are what step_cost.py runs).
INPUT_SHAPE, NUM_CLASSES = (30,), 5
MLP = {"mlp_width": 32, "mlp_depth": 3, "mlp_dropout": 0.0}  # no dropout: deterministic


@pytest.fixture(scope="module")
def domainbed():
    from tests.conftest import DOMAINBED_MISSING, skip_or_fail_in_ci
    if DOMAINBED_MISSING:
        skip_or_fail_in_ci(DOMAINBED_MISSING)
    from domainbed_patch import registration
    registration.register_algorithms()  # not register(): its datasets need wilds, pandas,
    registration.register_hparams()     # scipy, which the GPU machine has not
    from domainbed import algorithms, hparams_registry
    return algorithms, hparams_registry


def _algorithm(domainbed, name, dtype=torch.float64, **overrides):
    """A DomainBed algorithm with DomainBed's MLP featurizer, built on the CPU."""
    algorithms, registry = domainbed
    hparams = dict(registry.default_hparams(name, "Debug28"), **MLP, **overrides)
    torch.manual_seed(0)
    algorithm = algorithms.get_algorithm_class(name)(INPUT_SHAPE, NUM_CLASSES, 3, hparams)
    return algorithm.to(dtype), hparams


def _batches(device, dtype=torch.float64, per_domain=8, seed=0):
    g = torch.Generator().manual_seed(seed)
    return [(torch.randn(per_domain, *INPUT_SHAPE, generator=g, dtype=torch.float64
                         ).to(device, dtype),
             torch.randint(0, NUM_CLASSES, (per_domain,), generator=g).to(device))
            for _ in range(3)]


CASES = [("HGP", {"penalty_alpha": 10.0}), ("Hutchinson", {"hutchinson_exact": True})]


@pytest.mark.integration
@pytest.mark.parametrize("name, overrides", CASES, ids=["HGP", "HutchinsonExact"])
def test_domainbed_update_on_the_device_equals_the_cpu(domainbed, device, name, overrides):
    """Two update() steps and the predictions after them, float64, device against CPU
    (predictions rather than parameters: where a gradient is zero up to round-off,
    Adam's first steps blow it up to +-lr either way)."""
    runs = []
    for where in (CPU, device):
        algorithm, _ = _algorithm(domainbed, name, **overrides)
        algorithm.to(where)
        batches = _batches(where)
        outputs = [algorithm.update(batches) for _ in range(2)]
        algorithm.eval()
        with torch.no_grad():
            runs.append((outputs, algorithm.predict(batches[0][0])))
    (cpu_outputs, cpu_predictions), (outputs, predictions) = runs
    assert outputs[0]["penalty"] > 0
    for step, (ours, theirs) in enumerate(zip(outputs, cpu_outputs)):
        for key in ("loss", "nll", "penalty"):
            assert ours[key] == pytest.approx(theirs[key], rel=1e-9), (step, key)
    assert_close(predictions, cpu_predictions, 1e-8, f"predictions on {device}")


@pytest.mark.integration
def test_domainbed_hutchinson_on_the_device_equals_the_oracle(domainbed, device):
    """The algorithm's penalty (probes on the device from its CPU generator's seeds)
    equals the double-backprop oracle drawing the same probes, value and gradients."""
    algorithm, _ = _algorithm(domainbed, "Hutchinson", hutchinson_samples=10,
                              hutchinson_chunk_size=4, penalty_alpha=0.5, penalty_beta=0.25)
    algorithm.to(device)
    batches = _batches(device)
    sizes = [len(y) for _, y in batches]
    labels = torch.cat([y for _, y in batches])
    features = algorithm.featurizer(torch.cat([x for x, _ in batches]))
    state = algorithm.probe_generator.get_state()
    ours = algorithm._penalty(features, algorithm.classifier(features), labels, sizes).total
    reference = double_backprop_penalty(
        features, algorithm.classifier.weight, algorithm.classifier.bias, labels, sizes,
        "hutchinson", 0.5, 0.25, generator=torch.Generator().set_state(state),
        num_probes=10, chunk_size=4)
    assert float(ours.detach()) > 0
    assert_close(ours, reference, F64, "penalty")
    params = list(algorithm.network.parameters())
    for a, b in zip(torch.autograd.grad(ours, params, retain_graph=True),
                    torch.autograd.grad(reference, params)):
        assert_close(a, b, 1e-8, "gradient")
    out = algorithm.update(batches)
    assert out["penalty"] > 0 and all(math.isfinite(v) for v in out.values())


def _numbers(result, prefix=""):
    """Every number of a nested diagnostics result, by its path."""
    if isinstance(result, dict):
        items = result.items()
    elif isinstance(result, list):
        items = enumerate(result)
    else:
        return {prefix: result} if isinstance(result, (int, float)) and \
            not isinstance(result, bool) else {}
    found = {}
    for key, value in items:
        found.update(_numbers(value, f"{prefix}/{key}"))
    return found


@pytest.mark.integration
def test_diagnose_a_trained_model_on_the_device_equals_the_cpu(domainbed, device,
                                                               monkeypatch):
    """diagnose_trained on an HGP model trained for two steps: the job's splits are
    stood in for by synthetic environments (the data, not DomainBed, is what is
    replaced); every number on the device equals the CPU's in float64, and a float32
    featurizer's are within float32's accuracy."""
    from domainbed_patch import diagnose

    g = torch.Generator().manual_seed(3)
    images = torch.randn(3, 12, *INPUT_SHAPE, generator=g, dtype=torch.float64)
    labels = torch.randint(0, NUM_CLASSES, (3, 12), generator=g)
    dtype_of_splits = {}
    monkeypatch.setattr(diagnose, "environment_splits", lambda args, hparams, data_dir: [
        torch.utils.data.TensorDataset(x.to(dtype_of_splits["dtype"]), y)
        for x, y in zip(images, labels)])
    algorithm, hparams = _algorithm(domainbed, "HGP")
    for _ in range(2):
        algorithm.update(_batches(CPU))
    args = {"algorithm": "HGP", "dataset": "Debug28", "test_envs": [2], "trial_seed": 0,
            "data_dir": ""}

    def numbers(where, dtype):
        model = copy.deepcopy(algorithm).to(where, dtype)
        dtype_of_splits["dtype"] = dtype
        result = diagnose.diagnose_trained(model, args, hparams, device=where, tol=1e-8)
        return _numbers(result)

    cpu = numbers(CPU, torch.float64)
    ours = numbers(device, torch.float64)
    with no_tf32():
        single = numbers(device, torch.float32)
    assert set(ours) == set(cpu) == set(single)
    values = [k for k in cpu if k.endswith("/value") or k.endswith("_norm")
              or k.endswith("distance")]
    assert len(values) > 10 and all(cpu[k] > 0 for k in values if "frobenius" in k)
    for key in cpu:
        assert ours[key] == pytest.approx(cpu[key], rel=1e-7, abs=1e-12), key
        assert single[key] == pytest.approx(cpu[key], rel=1e-3, abs=1e-7), key


# --- Colored MNIST: one step of every algorithm -----------------------------------------

CMNIST = cmnist_train.TrainConfig(hidden_dim=16, hutchinson_samples=50)


@pytest.fixture(scope="module")
def cmnist_data():
    images, classes = synthetic_arrays(n=500)
    return images, classes.astype("int64")


@pytest.fixture(scope="module")
def cmnist_restart(cmnist_data):
    """Environments and initial model of one small restart, built once."""
    return cmnist_train.make_restart(*cmnist_data, CMNIST, seed=1, val_size=100,
                                     train_size=240)


def _cmnist_objective(restart, algorithm, device, dtype, probe_seed=0):
    envs, model = restart
    model = copy.deepcopy(model).to(device, dtype)
    train = envs[:2]
    images = torch.cat([e.images for e in train]).to(device, dtype)
    labels = torch.cat([e.labels for e in train]).to(device, dtype)
    sizes = [e.images.shape[0] for e in train]
    result = cmnist_train.objective(model, algorithm, images, labels, sizes,
                                    CMNIST.penalty_anneal_iters, CMNIST,
                                    torch.Generator().manual_seed(probe_seed))
    grads = torch.autograd.grad(result.loss, list(model.parameters()))
    penalty = result.penalty.detach() if result.penalty is not None else None
    return result.loss.detach(), penalty, grads


@pytest.mark.parametrize("algorithm", [a for a in CMNIST_ALGORITHMS if a != "Hutchinson"])
def test_colored_mnist_step_on_the_device_equals_the_cpu(cmnist_restart, device, algorithm):
    """Loss and gradients of every parameter at the first full-weight step."""
    loss, penalty, grads = _cmnist_objective(cmnist_restart, algorithm, device, torch.float64)
    cpu_loss, cpu_penalty, cpu_grads = _cmnist_objective(cmnist_restart, algorithm, CPU,
                                                         torch.float64)
    with no_tf32():
        single_loss, _, single_grads = _cmnist_objective(cmnist_restart, algorithm, device,
                                                         torch.float32)
    if algorithm != "ERM":
        assert float(penalty) > 0
        assert_close(penalty, cpu_penalty, F64, "penalty")
    assert_close(loss, cpu_loss, F64, "loss")
    assert_close(single_loss, cpu_loss, F32, "float32 loss")
    for index, (a, b, c) in enumerate(zip(grads, cpu_grads, single_grads)):
        assert_close(a, b, F64, f"gradient {index}")
        assert_close(c, b, F32, f"float32 gradient {index}")


def test_colored_mnist_hutchinson_on_the_device_agrees_with_the_cpu_in_distribution(
        cmnist_restart, device):
    """Hutchinson's penalty on the device and on the CPU, each over 8 probe seeds
    (other seeds on each side): their means agree within their standard errors."""
    def draws(where, seeds):
        return torch.stack([_cmnist_objective(cmnist_restart, "Hutchinson", where,
                                              torch.float64, seed)[1].cpu()
                            for seed in seeds])

    ours, cpu = draws(device, range(8)), draws(CPU, range(100, 108))
    assert bool((ours > 0).all()) and bool((ours != ours[0]).any())
    error = math.sqrt(float(ours.var()) / 8 + float(cpu.var()) / 8)
    assert abs(float(ours.mean() - cpu.mean())) < 4.5 * error, (ours, cpu)


@pytest.mark.parametrize("algorithm", ["ERM", "HGP", "Hutchinson"])
def test_colored_mnist_restart_runs_on_the_device(cmnist_data, device, algorithm):
    """train_restart end to end, float32, three steps: the device's log equals the
    CPU's to float32 accuracy (Hutchinson's after step 0 only up to its probes)."""
    config = cmnist_train.TrainConfig(hidden_dim=16, steps=3, log_every=1,
                                      hutchinson_samples=20)
    seeds = cmnist_train.RestartSeeds.of(0, 0)
    with no_tf32():
        runs = [cmnist_train.train_restart(*cmnist_data, algorithm, config, seeds,
                                           val_size=100, train_size=240, device=str(where))
                for where in (CPU, device)]
    cpu, ours = runs
    assert ours["device"] == str(device) and len(ours["log"]) == 3
    steps = 1 if algorithm == "Hutchinson" else 3
    for mine, theirs in zip(ours["log"][:steps], cpu["log"][:steps]):
        for key in ("train_nll", "hessian_distance"):
            assert mine[key] == pytest.approx(theirs[key], rel=F32), (mine["step"], key)
    assert all(math.isfinite(entry["train_nll"]) for entry in ours["log"])
