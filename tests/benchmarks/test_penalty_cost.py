"""The penalty-cost benchmark runs on a tiny setting; its variants compute the same
penalty (no timing assertions)."""
import importlib.util
import math
import sys
from pathlib import Path

import pytest
import torch

SCRIPT = Path(__file__).resolve().parents[2] / "benchmarks" / "penalty_cost.py"


@pytest.fixture(scope="module")
def penalty_cost():
    name = "benchmarks_penalty_cost"
    if name not in sys.modules:
        spec = importlib.util.spec_from_file_location(name, SCRIPT)
        module = importlib.util.module_from_spec(spec)
        sys.modules[name] = module
        spec.loader.exec_module(module)
    return sys.modules[name]


def test_tiny_run_prints_every_variant_with_finite_ratios(penalty_cost, capsys):
    rows = penalty_cost.main(["--shapes", "4,7,9;3,5,6", "--probes", "10",
                              "--chunk_size", "4", "--repeats", "1"])
    assert [(r["shape"], r["variant"]) for r in rows] == [
        (shape, v) for shape in [(4, 7, 9), (3, 5, 6)] for v in penalty_cost.VARIANTS]
    assert all(math.isfinite(r["ratio"]) and r["seconds"] > 0 for r in rows)
    assert [r["ratio"] for r in rows if r["variant"] == "hutchinson"] == [1.0, 1.0]
    out = capsys.readouterr().out
    assert "| 4, 7, 9 | hutchinson-autograd |" in out


def test_hutchinson_variants_compute_the_same_penalty(penalty_cost):
    """Same probes, same estimate: the two Hutchinson formulations' penalties agree
    (their gradients are compared in tests/hessian_dg/test_linear_hutchinson.py)."""
    values = {}
    for name in ("hutchinson", "hutchinson-autograd"):
        curvature = penalty_cost.VARIANTS[name](12, torch.Generator().manual_seed(1), 5)
        values[name] = penalty_cost.make_step((5, 6, 8), 3, curvature)()
    assert values["hutchinson"] > 0
    assert values["hutchinson-autograd"] == pytest.approx(values["hutchinson"], rel=1e-5)


def test_bad_shapes_are_refused_with_the_expected_form(penalty_cost):
    with pytest.raises(SystemExit):
        penalty_cost.main(["--shapes", "4,7"])
