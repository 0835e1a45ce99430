"""The penalty-cost benchmark runs on a tiny setting; its variants compute the same
penalty (no timing assertions)."""
import importlib.util
import math
import sys
from pathlib import Path

import pytest

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


@pytest.mark.parametrize("a, b", [("hutchinson", "hutchinson-autograd"),
                                  ("hgp", "hgp-double-backprop")])
def test_formulations_of_one_penalty_agree(penalty_cost, a, b):
    """Same probes (or none), same penalty: the shipped closed forms against the
    autograd formulations they are timed against (gradients are compared in
    tests/hessian_dg/test_linear_hutchinson.py and test_alignment.py)."""
    values = {name: penalty_cost.make_step((5, 6, 8), 3, penalty_cost.VARIANTS[name],
                                           num_probes=12, chunk_size=5)()
              for name in (a, b)}
    assert values[a] > 0
    assert values[b] == pytest.approx(values[a], rel=1e-4)


def test_double_backprop_hutchinson_estimates_the_same_penalty(penalty_cost):
    """Its probes differ (one random number per entry, the authors' way), so only
    its mean agrees: with many probes it lands near the exact diagonal's penalty,
    and the closed-form Hutchinson lands there too."""
    def value(name, num_probes):
        return penalty_cost.make_step((5, 6, 8), 3, penalty_cost.VARIANTS[name],
                                      num_probes=num_probes, chunk_size=500)()

    exact = value("exact", 1)
    assert value("hutchinson-double-backprop", 2000) == pytest.approx(exact, rel=0.1)
    assert value("hutchinson", 2000) == pytest.approx(exact, rel=0.1)


def test_bad_shapes_are_refused_with_the_expected_form(penalty_cost):
    with pytest.raises(SystemExit):
        penalty_cost.main(["--shapes", "4,7"])


def test_output_file_holds_the_printed_rows_and_cpu_has_no_peak(penalty_cost, tmp_path):
    import json
    output = tmp_path / "penalty.json"
    rows = penalty_cost.main(["--shapes", "3,4,5", "--probes", "4", "--chunk_size", "2",
                              "--repeats", "1", "--variants", "hgp,exact",
                              "--device", "cpu", "--output", str(output)])
    saved = json.loads(output.read_text())
    assert [r["variant"] for r in saved["rows"]] == ["hgp", "exact"]
    assert [r["seconds"] for r in saved["rows"]] == [r["seconds"] for r in rows]
    assert all(r["peak_mib"] is None for r in rows)  # no allocator counter on CPU
    assert saved["arguments"]["device"] == "cpu" and "cpu (1 thread(s))" in saved["header"]


def test_unknown_device_is_refused_with_the_valid_ones(penalty_cost, capsys):
    with pytest.raises(SystemExit):
        penalty_cost.main(["--device", "tpu"])
    assert "valid devices: cpu, cuda, cuda:N" in capsys.readouterr().err
