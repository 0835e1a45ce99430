"""Tables and curves from the saved restarts of :mod:`colored_mnist.runner`.

Per algorithm, the final train, test and gray-test accuracies (the forward pass
at the start of the last step, against noisy labels) as mean +- *population*
standard deviation over restarts (``np.std``, ddof = 0, as the scripts print
them), in percent, as Markdown and CSV, with Fishr's published Colored MNIST
rows beside them (Rame et al., ICML 2022, Table 2; correlation shift on MNIST,
10 restarts). ``curves.png``: train nll, raw penalty, test accuracy and
``||H_0 - H_1||_F`` against the step, one line per algorithm, mean over restarts.

Files, for ``<output_dir>/<setting>/``: ``results.md``, ``results.csv``,
``curves.png``.
"""
from __future__ import annotations

import csv
import glob
import json
import os
from typing import Dict, Iterable, List, Optional, Tuple

import numpy as np

from colored_mnist.penalties import ALGORITHMS

#: Fishr's Table 2 (MNIST, correlation shift): (mean, std) of train, test, gray test.
FISHR_PUBLISHED: Dict[str, Tuple[Tuple[float, float], ...]] = {
    "ERM": ((86.4, 0.2), (14.0, 0.7), (71.0, 0.7)),
    "IRM": ((71.0, 0.5), (65.6, 1.8), (66.1, 0.2)),
    "VREx": ((71.7, 1.5), (67.2, 1.5), (68.6, 2.2)),
    "Fishr": ((71.0, 0.9), (69.5, 1.0), (70.2, 1.1)),
}
METRICS = ("train_acc", "test_acc", "gray_test_acc")
CURVES = (("train_nll", "train nll", False), ("penalty", "penalty (raw)", True),
          ("test_acc", "test accuracy", False),
          ("hessian_distance", "||H_0 - H_1||_F", True))


def result_problem(result) -> Optional[str]:
    """Why ``result`` (a restart file's JSON) is not a saved restart this module can
    report; None when it is one."""
    if not isinstance(result, dict):
        return f"a JSON {type(result).__name__}, not an object"
    final, log = result.get("final"), result.get("log")
    if not isinstance(result.get("algorithm"), str) or type(result.get("restart")) is not int:
        return "no 'algorithm' name and 'restart' number"
    if not isinstance(final, dict) or not all(_is_number(final.get(m)) for m in METRICS):
        return f"no 'final' object with {', '.join(METRICS)}"
    if not _is_number(result.get("seconds")):
        return "no 'seconds'"
    if not isinstance(log, list) or not log or not all(
            isinstance(e, dict) and type(e.get("step")) is int for e in log):
        return "no 'log' of steps"
    return None


def _is_number(value) -> bool:
    return isinstance(value, (int, float)) and not isinstance(value, bool)


def read_result(path: str):
    """``(result, None)`` for a saved restart, ``(None, why not)`` otherwise."""
    try:
        with open(path) as handle:
            result = json.load(handle)
    except OSError as error:
        return None, f"cannot be read: {error.strerror}"
    except ValueError as error:
        return None, f"not JSON: {error}"
    problem = result_problem(result)
    return (None, problem) if problem else (result, None)


def load_results(output_dir: str, setting: str,
                 jobs: Optional[Iterable[Tuple[str, int]]] = None) -> Dict[str, List[dict]]:
    """Saved restarts by algorithm, in registry order, restarts in order.

    ``jobs``: the ``(algorithm, restart)`` pairs of the run being reported (its
    plan has checked their identity); None reads every restart file of the setting.
    """
    found: Dict[str, List[dict]] = {}
    if jobs is None:
        paths = glob.glob(os.path.join(output_dir, setting, "*", "restart_*.json"))
    else:
        paths = [os.path.join(output_dir, setting, algorithm, f"restart_{restart}.json")
                 for algorithm, restart in jobs]
    for path in paths:
        result, _ = read_result(path)
        if result is not None:
            found.setdefault(result["algorithm"], []).append(result)
    order = [name for name in ALGORITHMS if name in found] + \
        sorted(name for name in found if name not in ALGORITHMS)
    return {name: sorted(found[name], key=lambda r: r["restart"]) for name in order}


def summary_rows(results: Dict[str, List[dict]], setting: str) -> List[dict]:
    """One row per algorithm: restarts, mean and population std (percent) per metric,
    and the published numbers where they exist."""
    rows = []
    for algorithm, runs in results.items():
        row = {"algorithm": algorithm, "restarts": len(runs),
               "seconds_per_restart": float(np.mean([r["seconds"] for r in runs]))}
        for metric in METRICS:
            values = 100 * np.array([r["final"][metric] for r in runs], dtype=float)
            row[f"{metric}_mean"] = float(values.mean())
            row[f"{metric}_std"] = float(values.std())
        published = FISHR_PUBLISHED.get(algorithm) if setting == "correlation_shift" else None
        for metric, pair in zip(METRICS, published or [(None, None)] * 3):
            row[f"fishr_{metric}_mean"], row[f"fishr_{metric}_std"] = pair
        rows.append(row)
    return rows


def _cell(mean: Optional[float], std: Optional[float]) -> str:
    return "-" if mean is None else f"{mean:.1f} ± {std:.1f}"


def markdown_table(rows: List[dict], setting: str, caption: str = "") -> str:
    published = setting == "correlation_shift"
    header = ["Algorithm", "Restarts", "Train acc", "Test acc", "Gray test acc"]
    if published:
        header += ["Fishr paper (MNIST): train", "test", "gray test"]
    header.append("s / restart")
    lines = ([caption, ""] if caption else []) + [
        "| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
    for row in rows:
        cells = [row["algorithm"], str(row["restarts"])]
        cells += [_cell(row[f"{m}_mean"], row[f"{m}_std"]) for m in METRICS]
        if published:
            cells += [_cell(row[f"fishr_{m}_mean"], row[f"fishr_{m}_std"]) for m in METRICS]
        cells.append(f"{row['seconds_per_restart']:.0f}")
        lines.append("| " + " | ".join(cells) + " |")
    return "\n".join(lines) + "\n"


def write_csv(rows: List[dict], path: str) -> None:
    with open(path, "w", newline="") as handle:
        writer = csv.DictWriter(handle, fieldnames=list(rows[0]))
        writer.writeheader()
        writer.writerows(rows)


def mean_curves(runs: List[dict], key: str) -> Tuple[np.ndarray, np.ndarray]:
    """Logged steps and the mean of ``key`` over restarts (steps common to all)."""
    steps = sorted(set.intersection(*[{e["step"] for e in r["log"]} for r in runs]))
    values = []
    for step in steps:
        entries = [next(e for e in r["log"] if e["step"] == step) for r in runs]
        numbers = [e[key] for e in entries if e.get(key) is not None]
        values.append(np.mean(numbers) if numbers else np.nan)
    return np.array(steps), np.array(values, dtype=float)


def plot_curves(results: Dict[str, List[dict]], path: str, title: str = "") -> None:
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    figure, axes = plt.subplots(1, len(CURVES), figsize=(4.2 * len(CURVES), 3.6))
    colours = {name: f"C{i}" for i, name in enumerate(results)}  # same in every panel
    for axis, (key, label, log_scale) in zip(axes, CURVES):
        for algorithm, runs in results.items():
            steps, values = mean_curves(runs, key)
            if np.isfinite(values).any():
                axis.plot(steps, values, marker="o", markersize=3, label=algorithm,
                          color=colours[algorithm])
        if log_scale:
            axis.set_yscale("log")
        axis.set_xlabel("step")
        axis.set_title(label)
        axis.grid(alpha=0.3)
    handles, labels = axes[0].get_legend_handles_labels()
    figure.legend(handles, labels, loc="lower center", ncol=len(labels), fontsize=9)
    if title:
        figure.suptitle(title)
    figure.tight_layout(rect=(0, 0.08, 1, 1))
    figure.savefig(path, dpi=120)
    plt.close(figure)


def write_report(output_dir: str, setting: str, caption: str = "",
                 jobs: Optional[Iterable[Tuple[str, int]]] = None) -> Optional[dict]:
    """Write results.md, results.csv and curves.png; None if nothing is saved yet.

    ``jobs`` as for :func:`load_results`: the restarts of the run being reported.
    """
    results = load_results(output_dir, setting, jobs)
    if not results:
        return None
    folder = os.path.join(output_dir, setting)
    rows = summary_rows(results, setting)
    paths = {"markdown": os.path.join(folder, "results.md"),
             "csv": os.path.join(folder, "results.csv"),
             "curves": os.path.join(folder, "curves.png")}
    table = markdown_table(rows, setting, caption)
    with open(paths["markdown"], "w") as handle:
        handle.write(table)
    write_csv(rows, paths["csv"])
    plot_curves(results, paths["curves"], caption)
    return {"rows": rows, "table": table, "paths": paths}
