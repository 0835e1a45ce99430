"""The figures of ``hessian-dg report``: the accuracy bars (:func:`plot_accuracy`,
from the sweep's averages) and the training curves (:func:`plot_curves`, from its
records). They are drawn with matplotlib's object API on the Agg canvas, so
pyplot's global backend and state are left alone.
"""
from __future__ import annotations

import json
import textwrap
from collections import defaultdict
from pathlib import Path
from typing import Dict, Sequence

import numpy as np
import pandas as pd
from matplotlib.figure import Figure
from matplotlib.lines import Line2D

#: Record keys drawn by :func:`plot_curves`, when present (ERM logs only ``loss``).
CURVE_KEYS = ("loss", "nll", "penalty")
#: A panel whose positive values span more than this factor gets a log axis.
LOG_SCALE_RANGE = 100.0
#: Markers of the median lines, so that overlapping algorithms stay apart.
MARKERS = ("o", "s", "^", "D", "v", "P", "X", "<", ">", "*")
LINESTYLES = ("-", "--", "-.", ":")
DPI = 150


def algorithm_colours(algorithms: Sequence[str]) -> Dict[str, tuple]:
    """One colour per algorithm, the same in every figure of a report."""
    from matplotlib import colormaps
    cmap = colormaps["tab10" if len(algorithms) <= 10 else "tab20"]
    return {name: cmap(i % cmap.N) for i, name in enumerate(algorithms)}


def _save(figure: Figure, path) -> Path:
    figure.savefig(path, dpi=DPI)  # a PNG: drawn on the Agg canvas
    return Path(path)


def plot_accuracy(averages: pd.DataFrame, path, selection_names: Dict[str, str],
                  datasets: Sequence[str], algorithms: Sequence[str]) -> Path:
    """Grouped bars of accuracy (%) per dataset and algorithm, with standard-error
    bars; one panel per selection method (``selection_names``: label -> title)."""
    colours = algorithm_colours(algorithms)
    width = 0.8 / max(len(algorithms), 1)
    panel_width = max(3.2, 0.9 + 0.35 * len(datasets) * len(algorithms))
    figure = Figure(figsize=(panel_width * len(selection_names), 4.2), layout="constrained")
    axes = figure.subplots(1, len(selection_names), sharey=True, squeeze=False)[0]
    x = np.arange(len(datasets))
    for ax, (label, name) in zip(axes, selection_names.items()):
        ax.set_title(textwrap.fill(name, 30), fontsize=10)
        rows = averages[averages["selection"] == label].set_index(["dataset", "algorithm"])
        for i, algorithm in enumerate(algorithms):
            bars = rows.reindex([(d, algorithm) for d in datasets])
            if bars["accuracy"].isna().all():
                continue
            ax.bar(x + (i - (len(algorithms) - 1) / 2) * width, bars["accuracy"], width,
                   yerr=bars["stderr"].fillna(0.0), capsize=3, color=colours[algorithm],
                   error_kw={"elinewidth": 1, "ecolor": "black"})
        if not len(rows):
            ax.text(0.5, 0.5, "no result", transform=ax.transAxes,
                    ha="center", va="center", color="grey")
        ax.set_xticks(x, datasets)
        ax.set(xlim=(-0.5, len(datasets) - 0.5), ylim=(0, 100))
        ax.grid(axis="y", alpha=0.3)
    axes[0].set_ylabel("Test-domain accuracy (%)\nmean ± s.e. over trials")
    handles = [Line2D([], [], color=colours[a], lw=8) for a in algorithms]
    figure.legend(handles, algorithms, loc="outside lower center",
                  ncol=min(len(algorithms), 6), frameon=False)
    return _save(figure, path)


def _runs(records) -> dict:
    """(dataset, algorithm) -> list of runs; a run is its records sorted by step."""
    runs = defaultdict(lambda: defaultdict(list))
    for record in records:
        args = record["args"]
        job = json.dumps(args, sort_keys=True, default=str)
        runs[args["dataset"], args["algorithm"]][job].append(record)
    return {key: [sorted(rs, key=lambda r: r["step"]) for _, rs in sorted(jobs.items())]
            for key, jobs in runs.items()}


def _values(run, key) -> pd.Series:
    """The numbers logged as ``key`` in a run, by step."""
    logged = [r for r in run if isinstance(r.get(key), (int, float))]
    return pd.Series([float(r[key]) for r in logged], [r["step"] for r in logged])


def plot_curves(records, path, datasets: Sequence[str], algorithms: Sequence[str],
                keys: Sequence[str] = CURVE_KEYS) -> Path:
    """Training curves vs step: one row per dataset, one column per key of
    ``keys`` that some record has. Thin lines are single runs (jobs); thick
    lines are the median over an algorithm's runs at each step."""
    colours = algorithm_colours(algorithms)
    styles = {a: {"color": colours[a], "ls": LINESTYLES[i % len(LINESTYLES)],
                  "marker": MARKERS[i % len(MARKERS)], "markersize": 5}
              for i, a in enumerate(algorithms)}
    keys = [k for k in keys if any(k in r for r in records)]
    runs = _runs(records)
    if not keys:
        figure = Figure(figsize=(5, 2))
        figure.text(0.5, 0.5, f"no record has any of {', '.join(CURVE_KEYS)}",
                    ha="center", va="center")
        return _save(figure, path)
    figure = Figure(figsize=(4.2 * len(keys), 3.2 * len(datasets) + 0.6), layout="constrained")
    axes = figure.subplots(len(datasets), len(keys), squeeze=False)
    for row, dataset in zip(axes, datasets):
        for ax, key in zip(row, keys):
            logged, missing = [], []
            for algorithm in algorithms:
                algorithm_runs = runs.get((dataset, algorithm), [])
                series = [s for s in (_values(run, key) for run in algorithm_runs) if len(s)]
                if not series:
                    if algorithm_runs:
                        missing.append(algorithm)
                    continue
                for values in series:  # a Series is drawn against its index: the steps
                    ax.plot(values, color=colours[algorithm], lw=0.8, alpha=0.35)
                logged += series
                medians = pd.concat(series).groupby(level=0).median()
                ax.plot(medians, lw=2, alpha=0.9, **styles[algorithm])
            values = np.concatenate(logged) if logged else np.array([])
            positive = values[np.isfinite(values) & (values > 0)]
            if len(positive) and positive.max() > LOG_SCALE_RANGE * positive.min():
                ax.set_yscale("log")
            ax.set_title(f"{dataset}: {key}", fontsize=10)
            ax.set(xlabel="step", ylabel=key)
            ax.grid(alpha=0.3)
            if missing:
                ax.text(0.02, 0.02, "not logged by " + ", ".join(missing),
                        transform=ax.transAxes, fontsize=7, color="grey")
    handles = [Line2D([], [], lw=2, **styles[a]) for a in algorithms]
    handles.append(Line2D([], [], color="grey", lw=0.8, alpha=0.5))
    figure.legend(handles, [f"{a} (median over runs)" for a in algorithms] + ["single runs"],
                  loc="outside lower center", ncol=min(len(handles), 5), frameon=False)
    return _save(figure, path)
