"""The step-cost benchmark runs end to end on a tiny setting (no timing assertions)."""
import importlib.util
import json
import math
import sys
from pathlib import Path

import pytest

SCRIPT = Path(__file__).resolve().parents[2] / "benchmarks" / "step_cost.py"

VARIANTS = ("erm", "hgp", "hutchinson-s4", "hutchinson-exact", "dbp-hgp",
            "dbp-hutchinson-s4")


def load_step_cost():
    """``benchmarks/`` is not a package: load the script from its path."""
    name = "benchmarks_step_cost"
    if name not in sys.modules:
        spec = importlib.util.spec_from_file_location(name, SCRIPT)
        module = importlib.util.module_from_spec(spec)
        sys.modules[name] = module  # dataclasses look their module up while defining
        spec.loader.exec_module(module)
    return sys.modules[name]


@pytest.fixture(scope="module")
def step_cost():
    return load_step_cost()


@pytest.mark.integration
def test_tiny_run_prints_a_finite_table_for_every_variant(step_cost, tmp_path, capsys):
    output = tmp_path / "results.json"
    rows = step_cost.main([
        "--device", "cpu", "--featurizers", "mnist_cnn", "--heads", "pacs",
        "--batch_size", "4", "--steps", "1", "--warmup", "0",
        "--variants", ",".join(VARIANTS), "--dbp_max_probes", "3",
        "--threads", "1",
        "--output", str(output)])

    assert [(r["featurizer"], r["head"], r["variant"]) for r in rows] == [
        ("mnist_cnn", "pacs", variant) for variant in VARIANTS]
    for row in rows:
        for key in ("seconds_per_step", "time_vs_erm", "cpu_time_vs_erm", "peak_mib",
                    "memory_vs_erm", "penalty"):
            assert math.isfinite(row[key]), (row["variant"], key, row[key])
        assert row["timed_steps"] == 1
        assert row["warmup_steps"] == 2  # raised for the CPU memory measurement
        assert row["peak_mib"] > 0
    by_variant = {r["variant"]: r for r in rows}
    assert by_variant["erm"]["time_vs_erm"] == 1.0
    assert by_variant["erm"]["memory_vs_erm"] == 1.0
    capped = by_variant["dbp-hutchinson-s4"]
    assert capped["probes_capped"] and "lower bounds" in capped["notes"]

    table = capsys.readouterr().out
    for variant in VARIANTS:
        assert f" {variant} " in table
    assert "nan" not in table

    saved = json.loads(output.read_text())
    assert len(saved["results"]) == len(rows)
    assert saved["machine"]["device"] == "cpu"


@pytest.mark.integration
def test_double_backprop_reference_has_the_same_penalty_as_hgp(step_cost):
    """The reference computes the objective of HGP: same penalty at the same weights."""
    import torch
    from stepcost import variants  # importable once the script is loaded

    featurizer, head = variants.FEATURIZERS["mnist_cnn"], variants.HEADS["pacs"]
    device = torch.device("cpu")
    batches = variants.synthetic_minibatches(featurizer, head, 3, 5, device, seed=1)
    penalties = {}
    with step_cost.torch_threads(1):
        for name in ("hgp", "dbp-hgp"):
            algorithm = variants.build_algorithm(variants.parse_variant(name),
                                                 featurizer, head, 3, device, seed=0)
            algorithm.hparams["penalty_alpha"] = 10.0  # make the Hessian term visible
            penalties[name] = algorithm.update(batches)["penalty"]
    assert penalties["hgp"] > 0
    assert penalties["dbp-hgp"] == pytest.approx(penalties["hgp"], rel=1e-4)


@pytest.mark.integration
def test_unknown_variant_names_the_accepted_forms(step_cost):
    with pytest.raises(ValueError, match="hutchinson-s<S>"):
        step_cost.parse_variant("hutchinson")
