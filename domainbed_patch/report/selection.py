"""What each of DomainBed's selection methods chose: job, hparams, step, accuracies.

DomainBed's ``model_selection`` methods return accuracies only: per (trial,
dataset, algorithm, test environment) group of records, ``hparams_accs`` maps
``run_acc`` over the runs (one per ``hparams_seed``), sorts them by validation
accuracy (best first; on a tie the higher ``hparams_seed`` first, since the stable
sort is reversed), and ``sweep_acc`` is the first run's ``test_acc``. Within a run,
``run_acc`` picks a step (training-domain validation: the first step of highest
mean training-domain ``out`` accuracy; leave-one-domain-out: the first step of
highest mean held-out-domain ``in`` accuracy; oracle: the last step).

To learn *which* record that was without re-implementing any of it, the subclasses
of :func:`choosing` hand DomainBed's own code records whose accuracies are
:class:`TaggedAccuracy`: floats that remember the record they were read from.
DomainBed returns, as ``test_acc``, the chosen record's own test accuracy, so its
tag is the chosen record (of the job that trained on all but the test environment,
also for leave-one-domain-out, whose validation jobs are other folders). Its
``step``, ``hparams`` (every key, as DomainBed's train recorded them) and
``args.output_dir`` are the choice.

Seeds: ``hparams_seed`` 0 trains with DomainBed's default hparams; any other draws
them from ``seed_hash(hparams_seed, trial_seed)`` (DomainBed's train), so one
``hparams_seed`` is a *different* draw in each trial; ``trial_seed`` also fixes the
data splits. The tables show both seeds beside the hparams they gave.
"""
from __future__ import annotations

import functools
import re
from dataclasses import dataclass
from pathlib import PurePath
from typing import List, Optional

import pandas as pd

from domainbed_patch.hparams import SEEDS_EXPLAINED
from domainbed_patch.locate import import_domainbed
from domainbed_patch.report.records import (
    SELECTION_LABELS,
    domainbed_order,
    selection_methods,
)

#: Accuracy keys of a record (``env0_in_acc``, ``env3_out_acc``, ...).
ACCURACY_KEY = re.compile(r"env\d+_(in|out|uda)_acc")

#: Columns of ``selected.csv`` before the ``hparam.<key>`` columns (accuracies in %).
SELECTED_COLUMNS = ("selection", "dataset", "algorithm", "test_env", "trial_seed",
                    "hparams_seed", "step", "validation_accuracy", "test_accuracy",
                    "seed", "job")
HPARAM_PREFIX = "hparam."
#: Columns of ``per_domain.csv``: those of a reference CSV (it can serve as one), and
#: the number of trials.
PER_DOMAIN_COLUMNS = ("selection", "dataset", "algorithm", "environment", "accuracy",
                      "stderr", "trials")
#: ``environment`` of the per-domain average (as in reference CSVs).
AVERAGE = "Avg"


class TaggedAccuracy(float):
    """An accuracy (a float in every computation) that remembers its ``record``."""

    def __new__(cls, value, record):
        accuracy = super().__new__(cls, value)
        accuracy.record = record
        return accuracy


def tagged(record: dict) -> dict:
    """A copy of ``record`` whose accuracies are :class:`TaggedAccuracy` of it."""
    return {**record, **{key: TaggedAccuracy(value, record) for key, value in record.items()
                         if ACCURACY_KEY.fullmatch(key) and value is not None}}


class _Choosing:
    """Mixed in before a DomainBed selection method: its ``hparams_accs`` (hence its
    ``sweep_acc``) run DomainBed's code on tagged records."""

    @classmethod
    def hparams_accs(cls, records):
        Q = import_domainbed("lib.query").Q
        return super().hparams_accs(Q([tagged(record) for record in records]))

    @classmethod
    def chosen(cls, records):
        """(``run_acc``, the chosen record) of one group of records, or ``None``
        where the method has no result (DomainBed's ``sweep_acc`` is ``None``)."""
        accs = cls.hparams_accs(records)
        if not len(accs):
            return None
        run_acc = accs[0][0]
        return run_acc, run_acc["test_acc"].record


@functools.cache
def choosing(method):
    """The subclass of DomainBed's selection ``method`` that also says what it chose."""
    return type(f"Choosing{method.__name__}", (_Choosing, method), {})


@dataclass(frozen=True)
class Choice:
    """What one selection method chose for one (dataset, algorithm, test_env, trial)."""

    selection: str
    dataset: str
    algorithm: str
    test_env: int
    trial_seed: int
    hparams_seed: int
    step: int
    val_acc: float  #: DomainBed's ``val_acc`` of the chosen step (a fraction)
    test_acc: float  #: DomainBed's ``test_acc``: what ``sweep_acc`` returns
    seed: Optional[int]
    job: str  #: the job folder's name (DomainBed's hash of its train arguments)
    hparams: dict


def choose(method, group: dict) -> Optional[Choice]:
    """The :class:`Choice` of ``method`` for one group of DomainBed's
    ``reporting.get_grouped_records``, or ``None``."""
    found = choosing(method).chosen(group["records"])
    if found is None:
        return None
    run_acc, record = found
    args = record["args"]
    return Choice(SELECTION_LABELS[method.__name__], group["dataset"], group["algorithm"],
                  group["test_env"], group["trial_seed"], args["hparams_seed"],
                  record["step"], float(run_acc["val_acc"]), float(run_acc["test_acc"]),
                  args.get("seed"),
                  PurePath(str(args.get("output_dir", ""))).name, dict(record["hparams"]))


def choices(records) -> List[Choice]:
    """Every choice of every selection method that has a result, ordered by method,
    dataset and algorithm (DomainBed's order), test environment and trial."""
    groups = import_domainbed("lib.reporting").get_grouped_records(records)
    found = [choice for method in selection_methods() for group in groups
             if (choice := choose(method, group)) is not None]
    datasets = domainbed_order("datasets", [c.dataset for c in found])
    algorithms = domainbed_order("algorithms", [c.algorithm for c in found])
    selections = list(SELECTION_LABELS.values())
    return sorted(found, key=lambda c: (selections.index(c.selection),
                                        datasets.index(c.dataset),
                                        algorithms.index(c.algorithm),
                                        c.test_env, c.trial_seed))


def choices_table(found: List[Choice]) -> pd.DataFrame:
    """One row per choice: :data:`SELECTED_COLUMNS`, then ``hparam.<key>`` for every
    hparam key of any row (sorted; empty where a row's algorithm has no such key)."""
    keys = sorted({key for choice in found for key in choice.hparams})
    rows = [[_cell(choice, column) for column in SELECTED_COLUMNS]
            + [choice.hparams.get(key) for key in keys] for choice in found]
    return pd.DataFrame(rows, columns=[*SELECTED_COLUMNS,
                                       *(HPARAM_PREFIX + key for key in keys)])


def _cell(choice: Choice, column: str):
    if column == "validation_accuracy":
        return 100 * choice.val_acc
    if column == "test_accuracy":
        return 100 * choice.test_acc
    return getattr(choice, column)


def environment_names(dataset: str) -> list:
    """The dataset's environments, by DomainBed's ``ENVIRONMENTS``."""
    return list(import_domainbed("datasets").get_dataset_class(dataset).ENVIRONMENTS)


def per_domain_table(found: List[Choice]) -> pd.DataFrame:
    """Per (selection, dataset, algorithm) and test environment: mean and standard
    error (in %) over trials of the chosen test accuracy, by collect_results'
    ``format_mean``, and the ``Avg`` row of the per-environment means where every
    environment has one (no standard error: collect_results prints none)."""
    format_mean = import_domainbed("scripts.collect_results").format_mean
    parts = {}
    for choice in found:  # already in the order of the rows
        parts.setdefault((choice.selection, choice.dataset, choice.algorithm), []).append(choice)
    rows = []
    for (selection, dataset, algorithm), part in parts.items():
        means = []
        for test_env, name in enumerate(environment_names(dataset)):
            accuracies = [c.test_acc for c in part if c.test_env == test_env]
            mean, stderr, _ = format_mean(accuracies, False)
            means.append(mean)
            if mean is not None:
                rows.append((selection, dataset, algorithm, name, float(mean),
                             float(stderr), len(accuracies)))
        if None not in means:
            rows.append((selection, dataset, algorithm, AVERAGE, sum(means) / len(means),
                         float("nan"), len({c.trial_seed for c in part})))
    return pd.DataFrame(rows, columns=list(PER_DOMAIN_COLUMNS))


# ------------------------------------------------------------------------ Markdown

def _text(value) -> str:
    if isinstance(value, bool) or value is None:
        return {True: "true", False: "false", None: "—"}[value]
    if isinstance(value, float):
        return f"{value:.6g}"
    return str(value).replace("|", "\\|")


def _table(header, rows) -> List[str]:
    return (["| " + " | ".join(header) + " |", "|" + "|".join("---" for _ in header) + "|"]
            + ["| " + " | ".join(row) + " |" for row in rows])


def _selection_names() -> dict:
    """Selection label -> DomainBed's name of the method."""
    return {SELECTION_LABELS[m.__name__]: m.name for m in selection_methods()}


#: What the two seeds do (one paragraph).
SEEDS_NOTE = " ".join(SEEDS_EXPLAINED)


def selected_markdown(found: List[Choice]) -> str:
    """``selected.md``: per dataset and selection method, one row per (algorithm,
    test environment, trial): the seeds, the chosen step, its accuracies (%), the
    hparams that differ between rows and the job folder; the hparams every row
    shares are listed under the table."""
    out = ["# Selected hparams and steps", "",
           "What each of DomainBed's selection methods chose, per algorithm, test "
           "environment and trial: the job (its folder in the sweep), its hparams as "
           "DomainBed's train recorded them, the step, and that step's validation and "
           "test accuracy (%), found by DomainBed's own model_selection code "
           "(selected.csv has every hparam of every row).", "", SEEDS_NOTE, ""]
    names = _selection_names()
    datasets = list(dict.fromkeys(c.dataset for c in found))
    for dataset in datasets:
        out += [f"## {dataset}", ""]
        environments = environment_names(dataset)
        for selection, name in names.items():
            rows = [c for c in found if c.dataset == dataset and c.selection == selection]
            if not rows:
                continue
            keys = sorted({key for c in rows for key in c.hparams})
            varying = [k for k in keys if len({_text(c.hparams.get(k)) for c in rows}) > 1]
            shared = [k for k in keys if k not in varying]
            header = ["Algorithm", "Test env", "trial_seed", "hparams_seed", "Step",
                      "Validation", "Test", *varying, "Job"]
            cells = [[c.algorithm, environments[c.test_env], str(c.trial_seed),
                      str(c.hparams_seed), str(c.step), f"{100 * c.val_acc:.1f}",
                      f"{100 * c.test_acc:.1f}", *(_text(c.hparams.get(k)) for k in varying),
                      c.job] for c in rows]
            out += [f"### Model selection: {name}", ""] + _table(header, cells) + [""]
            if shared:
                out += ["Every row: " + ", ".join(
                    f"{k}={_text(rows[0].hparams[k])}" for k in shared) + ".", ""]
    return "\n".join(out)


def per_domain_markdown(per_domain: pd.DataFrame) -> str:
    """``per_domain.md``: per dataset and selection method, one row per algorithm,
    one column per test environment (mean ± standard error over trials, %), then
    the average of those means, as collect_results' per-dataset tables."""
    out = ["# Accuracy per test domain", "",
           "Test accuracy (%) of the chosen step (selected.md), per test environment: "
           "mean ± standard error over trials; Avg: the mean of the environments' "
           "means, as in DomainBed's collect_results per-dataset tables.", ""]
    names = _selection_names()
    for dataset in dict.fromkeys(per_domain["dataset"]):
        environments = environment_names(dataset)
        out += [f"## {dataset}", ""]
        for selection, name in names.items():
            part = per_domain[(per_domain["dataset"] == dataset)
                              & (per_domain["selection"] == selection)]
            if part.empty:
                continue
            cells = []
            for algorithm, rows in part.groupby("algorithm", sort=False):
                by_environment = {row.environment: row for row in rows.itertuples()}
                cells.append([algorithm] + [
                    ("—" if e not in by_environment else
                     f"{by_environment[e].accuracy:.1f} ± {by_environment[e].stderr:.1f}")
                    for e in environments] + [
                    f"{by_environment[AVERAGE].accuracy:.1f}" if AVERAGE in by_environment
                    else "—"])
            out += [f"### Model selection: {name}", ""]
            out += _table(["Algorithm", *environments, AVERAGE], cells) + [""]
    return "\n".join(out)
