"""The diagnostics of a sweep (``diagnostics.json`` per job): a table and a figure.

Each row is one job's test environment against the training domains' average loss
(:mod:`domainbed_patch.diagnose`): the gradient distance ``||g_T - gbar||`` and the
Hessian distances ``||H_T - Hbar||_F`` and ``||H_T - Hbar||_2``, beside the
test-domain accuracy of the same model (``env<T>_in_acc`` of the job's last record,
the step of ``model.pkl``). The table gives mean ± standard error over jobs per
dataset and algorithm; the figure plots accuracy against the distances, one marker
per algorithm: does alignment track transfer?
"""
from __future__ import annotations

import json
from pathlib import Path

import pandas as pd

from domainbed_patch.diagnose import DIAGNOSTICS_FILE, TRAIN_AVERAGE
from domainbed_patch.job_folder import JobFolder

QUANTITIES = {  # column -> (heading, key in a pair of diagnostics.json)
    "gradient": ("‖g_T − ḡ‖", "gradient_distance"),
    "hessian_frobenius": ("‖H_T − H̄‖_F", "hessian_frobenius_distance"),
    "hessian_spectral": ("‖H_T − H̄‖₂", "hessian_spectral_distance"),
}


def _value(entry):
    return entry["value"] if isinstance(entry, dict) else entry


def load_diagnostics(input_dir) -> pd.DataFrame:
    """One row per diagnosed job (a single test environment) of the sweep."""
    rows = []
    for path in sorted(Path(input_dir).glob(f"*/{DIAGNOSTICS_FILE}")):
        result = json.loads(path.read_text())
        if len(result["test_envs"]) != 1:
            continue
        test = f"env{result['test_envs'][0]}"
        pair = next(p for p in result["pairs"] if (p["a"], p["b"]) == (test, TRAIN_AVERAGE))
        lines = JobFolder(path.parent).results.read_text().splitlines()
        last = json.loads(lines[-1]) if lines else {}
        row = {"job": path.parent.name, "dataset": result["dataset"],
               "algorithm": result["algorithm"], "test_env": result["test_envs"][0],
               "checkpoint": result.get("checkpoint", ""),
               "test_acc": last.get(f"{test}_in_acc", float("nan")),
               # how each was got (files before "method" said only "exact": true/false)
               "frobenius_method": pair["hessian_frobenius_distance"].get("method", (
                   "exact" if pair["hessian_frobenius_distance"].get("exact") else "hutchinson")),
               "spectral_tolerance": pair["hessian_spectral_distance"].get("tolerance"),
               "spectral_converged": pair["hessian_spectral_distance"].get("converged", True)}
        row.update({column: _value(pair[key]) for column, (_, key) in QUANTITIES.items()})
        rows.append(row)
    return pd.DataFrame(rows)


def _mean_se(values: pd.Series, scale: float = 1.0) -> str:
    values = values.dropna() * scale
    if values.empty:
        return "–"
    se = values.std(ddof=1) / len(values) ** 0.5 if len(values) > 1 else 0.0
    return f"{values.mean():.3g} ± {se:.2g}"


def diagnostics_markdown(frame: pd.DataFrame) -> str:
    """Mean ± standard error over jobs, per dataset and algorithm."""
    headings = [heading for heading, _ in QUANTITIES.values()]
    lines = ["## Transfer diagnostics", "",
             "Test environment T against the training domains' average loss, on the "
             "`in` splits; test accuracy of the same model (final step). Mean ± standard "
             "error over jobs. Checkpoints: "
             + ", ".join(sorted(set(frame["checkpoint"]))) + ".", "",
             "| dataset | algorithm | jobs | test acc (%) | " + " | ".join(headings) + " |",
             "|---|---|---:|---:|" + "---:|" * len(headings)]
    for (dataset, algorithm), group in frame.groupby(["dataset", "algorithm"], sort=True):
        cells = [_mean_se(group["test_acc"], 100)]
        cells += [_mean_se(group[column]) for column in QUANTITIES]
        lines.append(f"| {dataset} | {algorithm} | {len(group)} | " + " | ".join(cells) + " |")
    if (frame["frobenius_method"] != "exact").any():
        lines += ["", "Nonlinear heads: Frobenius distances are Hutchinson estimates "
                  "(random probes)."]
    tolerances = sorted(set(frame["spectral_tolerance"].dropna()))
    if tolerances:
        lines += ["", "Spectral distances: Lanczos iteration to relative tolerance "
                  + ", ".join(f"{t:g}" for t in tolerances) + "."]
    if not frame["spectral_converged"].all():
        lines += [f"{int((~frame['spectral_converged']).sum())} job(s): Lanczos stopped at "
                  "its iteration limit before that tolerance."]
    return "\n".join(lines) + "\n"


def plot_diagnostics(frame: pd.DataFrame, path) -> Path:
    """Test accuracy against the gradient and spectral Hessian distances."""
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    markers = "osD^vP*X<>"
    figure, axes = plt.subplots(1, 2, figsize=(10, 4), sharey=True)
    for axis, column in zip(axes, ("hessian_spectral", "gradient")):
        for i, (algorithm, group) in enumerate(frame.groupby("algorithm", sort=True)):
            axis.scatter(group[column], 100 * group["test_acc"], label=algorithm,
                         marker=markers[i % len(markers)], alpha=0.8)
        axis.set_xlabel(QUANTITIES[column][0] + "  (test vs. training average)")
        axis.grid(alpha=0.3)
    axes[0].set_ylabel("test-domain accuracy (%)")
    axes[1].legend(title="algorithm")
    figure.suptitle("Does alignment track transfer? One point per job")
    figure.tight_layout()
    figure.savefig(path, dpi=120)
    plt.close(figure)
    return Path(path)
