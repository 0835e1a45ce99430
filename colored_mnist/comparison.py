"""What the Colored MNIST tables say, computed from the same restarts, so that no
claim of the README can drift from its numbers.

- :func:`against_baselines`: each Hessian method (HGP, Hutchinson, HutchinsonExact)
  against the best of the baselines IRM, V-REx and Fishr (highest mean test
  accuracy), with the difference and whether it exceeds the spread: a difference is
  claimed only where ``|difference| > std_m + std_b + se_m + se_b``, the population
  stds over restarts (as the tables give them) plus each mean's test-set sampling
  error ``se = 100 sqrt(p (1 - p) / n)`` over the ``n`` test images (about 0.5 points
  at n = 10,000), so that two runs landing on the same few images are not told
  apart; with a single restart there is no spread and nothing is claimed.
- :func:`distance_ranking`: the algorithms by their final ``||H_0 - H_1||_F`` (the
  head's Hessians of the two training environments, logged at the last step), mean
  over restarts, smallest first: do the methods that align Hessians end closest?
- :func:`train_size_rows` and :func:`plot_train_size`: test accuracy against the
  number of training images, from runs that differ only in ``--train_size``.
"""
from __future__ import annotations

from typing import Dict, List, Optional, Sequence

import numpy as np

#: The methods of the paper, and the invariance baselines they are held against.
HESSIAN_METHODS = ("HGP", "Hutchinson", "HutchinsonExact")
BASELINES = ("IRM", "VREx", "Fishr")


def test_set_error(accuracy: float, test_size: int) -> float:
    """The standard error, in points, of an accuracy (in %) measured on ``test_size``
    images: ``100 sqrt(p (1 - p) / n)``.

    >>> round(test_set_error(50.0, 10_000), 3)
    0.5
    """
    p = accuracy / 100
    return 100 * float(np.sqrt(p * (1 - p) / test_size))


def against_baselines(rows: Sequence[dict], test_size: int = 10_000) -> List[dict]:
    """One dict per Hessian method in ``rows`` (:func:`colored_mnist.report.summary_rows`):
    ``method``, ``baseline`` (the best baseline by mean test accuracy), both means and
    stds, ``difference`` (method - baseline, points), ``spread`` (what the difference
    must exceed, see the module docstring; ``test_size`` test images), ``restarts``
    (the fewer of the two) and ``verdict``: ``"higher"``, ``"lower"``, ``"within the
    spread"`` or ``"no spread (1 restart)"``.

    >>> rows = [{"algorithm": "IRM", "restarts": 3, "test_acc_mean": 70.0, "test_acc_std": 1.0},
    ...         {"algorithm": "Fishr", "restarts": 3, "test_acc_mean": 72.0, "test_acc_std": 0.5},
    ...         {"algorithm": "HGP", "restarts": 3, "test_acc_mean": 69.0, "test_acc_std": 0.5}]
    >>> [(r["baseline"], r["difference"], r["verdict"]) for r in against_baselines(rows)]
    [('Fishr', -3.0, 'lower')]
    """
    by_name = {row["algorithm"]: row for row in rows}
    baselines = [by_name[name] for name in BASELINES if name in by_name]
    if not baselines:
        return []
    best = max(baselines, key=lambda row: row["test_acc_mean"])
    out = []
    for name in HESSIAN_METHODS:
        if name not in by_name:
            continue
        row = by_name[name]
        difference = row["test_acc_mean"] - best["test_acc_mean"]
        spread = (row["test_acc_std"] + best["test_acc_std"]
                  + test_set_error(row["test_acc_mean"], test_size)
                  + test_set_error(best["test_acc_mean"], test_size))
        restarts = min(row["restarts"], best["restarts"])
        if restarts < 2:
            verdict = "no spread (1 restart)"
        elif abs(difference) <= spread:
            verdict = "within the spread"
        else:
            verdict = "higher" if difference > 0 else "lower"
        out.append({"method": name, "baseline": best["algorithm"],
                    "method_mean": row["test_acc_mean"], "method_std": row["test_acc_std"],
                    "baseline_mean": best["test_acc_mean"],
                    "baseline_std": best["test_acc_std"], "difference": difference,
                    "spread": spread,
                    "restarts": restarts, "verdict": verdict})
    return out


def final_distance(run: dict) -> Optional[float]:
    """The last logged ``||H_0 - H_1||_F`` of a saved restart (None if never logged)."""
    values = [entry["hessian_distance"] for entry in run["log"]
              if entry.get("hessian_distance") is not None]
    return float(values[-1]) if values else None


def distance_ranking(results: Dict[str, List[dict]]) -> List[tuple]:
    """``(algorithm, mean final ||H_0 - H_1||_F, restarts)``, smallest first."""
    ranking = []
    for algorithm, runs in results.items():
        values = [v for v in map(final_distance, runs) if v is not None]
        if values:
            ranking.append((algorithm, float(np.mean(values)), len(values)))
    return sorted(ranking, key=lambda item: item[1])


def comparison_markdown(rows: Sequence[dict], results: Dict[str, List[dict]]) -> str:
    """The two findings as Markdown: a table of :func:`against_baselines`, then the
    :func:`distance_ranking` in one line."""
    lines = ["| Method | Test acc | Best baseline | Its test acc | Difference | Spread | "
             "Verdict |", "|---|---|---|---|---|---|---|"]
    sizes = {r["env_sizes"]["test"] for runs in results.values() for r in runs
             if isinstance(r.get("env_sizes"), dict) and "test" in r["env_sizes"]}
    for item in against_baselines(rows, min(sizes) if sizes else 10_000):
        lines.append(f"| {item['method']} | {item['method_mean']:.1f} ± {item['method_std']:.1f}"
                     f" | {item['baseline']} | {item['baseline_mean']:.1f} ± "
                     f"{item['baseline_std']:.1f} | {item['difference']:+.1f} | "
                     f"{item['spread']:.1f} | {item['verdict']} |")
    ranking = distance_ranking(results)
    if ranking:
        lines += ["", "Final ‖H₀ − H₁‖_F, mean over restarts, smallest first: " + ", ".join(
            f"{name} {value:.1e}" for name, value, _ in ranking) + "."]
    return "\n".join(lines) + "\n"


def train_size_rows(results_by_size: Dict[int, Dict[str, List[dict]]]) -> List[dict]:
    """Per algorithm and training size: restarts and mean train and test accuracy (%).

    ``results_by_size``: size -> :func:`colored_mnist.report.load_results` of the run
    at that ``--train_size``.
    """
    rows = []
    for size, results in sorted(results_by_size.items()):
        for algorithm, runs in results.items():
            rows.append({"algorithm": algorithm, "train_size": size, "restarts": len(runs),
                         "train_acc": 100 * float(np.mean([r["final"]["train_acc"]
                                                           for r in runs])),
                         "test_acc": 100 * float(np.mean([r["final"]["test_acc"]
                                                          for r in runs]))})
    return rows


def train_size_markdown(rows: Sequence[dict], algorithms: Sequence[str],
                        sizes: Optional[Sequence[int]] = None) -> str:
    """Algorithms as rows, sizes as columns: ``test (train)`` accuracy in %; every
    size of ``sizes`` (default: those in ``rows``) is a column, ``-`` where no
    restart is saved."""
    sizes = sorted(sizes or {row["train_size"] for row in rows})
    cell = {(row["algorithm"], row["train_size"]): row for row in rows}
    lines = ["| Algorithm | " + " | ".join(f"{size:,} images" for size in sizes) + " |",
             "|---|" + "---|" * len(sizes)]
    for algorithm in algorithms:
        cells = []
        for size in sizes:
            row = cell.get((algorithm, size))
            cells.append("-" if row is None else
                         f"{row['test_acc']:.1f} ({row['train_acc']:.1f})")
        lines.append(f"| {algorithm} | " + " | ".join(cells) + " |")
    return "\n".join(lines) + "\n"


def plot_train_size(rows: Sequence[dict], algorithms: Sequence[str], path: str,
                    title: str = "") -> None:
    """Test (solid) and train (dashed) accuracy against the training size."""
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    figure, axis = plt.subplots(figsize=(5.6, 3.8))
    for i, algorithm in enumerate(algorithms):
        mine = sorted((r for r in rows if r["algorithm"] == algorithm),
                      key=lambda r: r["train_size"])
        if not mine:
            continue
        sizes = [r["train_size"] for r in mine]
        axis.plot(sizes, [r["test_acc"] for r in mine], marker="o", color=f"C{i}",
                  label=f"{algorithm} test")
        axis.plot(sizes, [r["train_acc"] for r in mine], marker="x", linestyle="--",
                  color=f"C{i}", alpha=0.6, label=f"{algorithm} train")
    axis.axhline(75, color="grey", linewidth=0.8, linestyle=":")
    axis.text(0.01, 74, "75%: shape alone", fontsize=7, color="grey", va="top",
              transform=axis.get_yaxis_transform())
    axis.set_xscale("log")
    sizes = sorted({r["train_size"] for r in rows})
    axis.set_xticks(sizes, [f"{s:,}" for s in sizes])
    axis.minorticks_off()
    axis.set_xlabel("training images")
    axis.set_ylabel("accuracy (%)")
    axis.grid(alpha=0.3)
    axis.legend(fontsize=7, ncol=2)
    if title:
        axis.set_title(title, fontsize=10)
    figure.tight_layout()
    figure.savefig(path, dpi=120)
    plt.close(figure)
