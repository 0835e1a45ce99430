"""The diagnostics table says how each Hessian distance was got."""
import json

from domainbed_patch import diagnose
from domainbed_patch.report import diagnostics


def _job(sweep, name, frobenius, spectral, algorithm="HGP"):
    folder = sweep / name
    folder.mkdir(parents=True)
    (folder / "results.jsonl").write_text(json.dumps({"env0_in_acc": 0.5}) + "\n")
    pair = {"a": "env0", "b": diagnose.TRAIN_AVERAGE, "gradient_distance": 0.1,
            "hessian_frobenius_distance": frobenius, "hessian_spectral_distance": spectral}
    (folder / diagnose.DIAGNOSTICS_FILE).write_text(json.dumps({
        "dataset": "Debug28", "algorithm": algorithm, "test_envs": [0],
        "checkpoint": "model.pkl (final step)", "pairs": [pair]}))


def test_exact_and_lanczos_distances_are_told_apart(tmp_path):
    _job(tmp_path, "linear", {"value": 1.0, "method": "exact"},
         {"value": 2.0, "method": "lanczos", "tolerance": 1e-4, "converged": True})
    markdown = diagnostics.diagnostics_markdown(diagnostics.load_diagnostics(tmp_path))
    assert "Spectral distances: Lanczos iteration to relative tolerance 0.0001." in markdown
    assert "Frobenius distances are Hutchinson estimates" not in markdown
    assert "iteration limit" not in markdown


def test_estimates_and_an_unconverged_lanczos_are_said(tmp_path):
    _job(tmp_path, "mlp", {"value": 1.0, "method": "hutchinson", "probes": 100},
         {"value": 2.0, "method": "lanczos", "tolerance": 1e-4, "converged": False})
    _job(tmp_path, "old", {"value": 1.0, "exact": True}, {"value": 2.0, "exact": True},
         algorithm="ERM")  # written before "method": read, no tolerance known
    frame = diagnostics.load_diagnostics(tmp_path)
    assert sorted(frame["frobenius_method"]) == ["exact", "hutchinson"]
    markdown = diagnostics.diagnostics_markdown(frame)
    assert "Nonlinear heads: Frobenius distances are Hutchinson estimates" in markdown
    assert "relative tolerance 0.0001." in markdown
    assert "1 job(s): Lanczos stopped at its iteration limit" in markdown
