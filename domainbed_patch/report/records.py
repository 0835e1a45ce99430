"""A sweep folder's records, and what DomainBed computes from them.

This module owns reading a sweep folder into a :class:`Sweep` (:func:`load_sweep`:
only jobs with a ``done`` file, corrupt lines of ``results.jsonl`` skipped with a
:class:`CorruptRecordWarning`), the sweep's per-dataset averages
(:func:`sweep_averages`), DomainBed's own tables (:func:`collect_results_text`),
and the DomainBed vocabulary the report shares: :data:`SELECTION_LABELS`, the
selection methods and the canonical order of datasets and algorithms.

DomainBed is imported only inside the functions that use it, so that reading a
folder fails with a :class:`ReportError` before DomainBed is needed.
"""
from __future__ import annotations

import contextlib
import io
import json
import warnings
from dataclasses import dataclass, field
from pathlib import Path
from typing import Iterable, List, Optional

import pandas as pd

from domainbed_patch.locate import ensure_domainbed_importable

#: Keys every record needs for the tables (``args`` holds the rest).
RECORD_ARGS = ("dataset", "algorithm", "test_envs", "trial_seed", "hparams_seed")

#: DomainBed selection method (class name in ``domainbed.model_selection``) ->
#: the label the reference CSV uses for it. Order is the report's order.
SELECTION_LABELS = {
    "IIDAccuracySelectionMethod": "training-domain validation",
    "LeaveOneOutSelectionMethod": "leave-one-domain-out",
    "OracleSelectionMethod": "test-domain oracle",
}

AVERAGES_COLUMNS = ("selection", "dataset", "algorithm", "accuracy", "stderr", "trials")


class ReportError(ValueError):
    """Something the user can fix: a missing folder, a malformed reference CSV."""


class CorruptRecordWarning(UserWarning):
    """A line of a ``results.jsonl`` was skipped."""


@dataclass
class Sweep:
    """The finished part of a sweep folder.

    ``records`` is a DomainBed ``Q`` of the records of finished jobs only.
    """

    input_dir: Path
    records: object
    done_jobs: List[str] = field(default_factory=list)
    incomplete_jobs: List[str] = field(default_factory=list)
    skipped_lines: int = 0

    def summary(self) -> str:
        return (f"{len(self.records)} records from {len(self.done_jobs)} finished "
                f"jobs; {len(self.incomplete_jobs)} incomplete jobs (no `done` file) "
                f"excluded; {self.skipped_lines} corrupt lines skipped.")


# ---------------------------------------------------------------------- vocabulary

def selection_methods() -> list:
    """DomainBed's three selection methods, in the report's order."""
    ensure_domainbed_importable()
    from domainbed import model_selection

    return [getattr(model_selection, name) for name in SELECTION_LABELS]


def selection_names() -> dict:
    """Selection label -> DomainBed's own name of the method."""
    return {SELECTION_LABELS[m.__name__]: m.name for m in selection_methods()}


def _ordered(names, canonical) -> list:
    """``names`` in the order of ``canonical``, then the others sorted."""
    names = list(dict.fromkeys(names))
    return ([n for n in canonical if n in names]
            + sorted(n for n in names if n not in canonical))


def dataset_order(names) -> list:
    """``names`` in the order of DomainBed's ``DATASETS``, then the others sorted."""
    ensure_domainbed_importable()
    from domainbed import datasets

    return _ordered(names, datasets.DATASETS)


def algorithm_order(names) -> list:
    """``names`` in the order of DomainBed's ``ALGORITHMS``, then the others sorted."""
    ensure_domainbed_importable()
    from domainbed import algorithms

    return _ordered(names, algorithms.ALGORITHMS)


# ------------------------------------------------------------------------- loading

def _record_problem(record) -> Optional[str]:
    if not isinstance(record, dict):
        return f"a JSON {type(record).__name__}, not an object"
    args = record.get("args")
    if not isinstance(args, dict):
        return "no 'args' object"
    missing = [key for key in RECORD_ARGS if key not in args]
    if "step" not in record:
        missing.append("step")
    return f"missing {', '.join(missing)}" if missing else None


def read_records(path: Path) -> tuple:
    """The records of one ``results.jsonl``, and how many lines were skipped.

    Each unreadable line (half-written, not JSON, not a DomainBed record) is
    skipped with a :class:`CorruptRecordWarning` ``"<path>:<line>: ..."``.
    """
    records, skipped = [], 0
    with open(path, encoding="utf-8", errors="replace") as lines:
        for number, line in enumerate(lines, start=1):
            if not line.strip():
                continue
            try:
                record = json.loads(line)
                problem = _record_problem(record)
            except json.JSONDecodeError as error:
                problem = f"not valid JSON ({error.msg})"
            if problem is not None:
                skipped += 1
                warnings.warn(f"{path}:{number}: skipped a corrupt line: {problem}",
                              CorruptRecordWarning, stacklevel=2)
                continue
            records.append(record)
    return records, skipped


def load_sweep(input_dir, exclude: Iterable = ()) -> Sweep:
    """Read a sweep folder: records of jobs with a ``done`` file, counts of the rest.

    Every non-hidden subfolder is a job, except those in ``exclude`` (the
    report's own output folder). Raises :class:`ReportError` when the folder is
    missing, holds no job, no finished job, or no readable record.
    """
    input_dir = Path(input_dir)
    if not input_dir.exists():
        raise ReportError(f"input directory {input_dir} does not exist; pass the "
                          "--output_dir of a DomainBed sweep")
    if not input_dir.is_dir():
        raise ReportError(f"input directory {input_dir} is not a directory")
    excluded = {Path(p).resolve() for p in exclude}
    jobs = sorted(p for p in input_dir.iterdir()
                  if p.is_dir() and not p.name.startswith(".")
                  and p.resolve() not in excluded)
    if not jobs:
        raise ReportError(f"input directory {input_dir} holds no job folders (a "
                          "DomainBed sweep has one subfolder per job, with "
                          "results.jsonl and done)")
    records, done, incomplete, skipped = [], [], [], 0
    for job in jobs:
        if not (job / "done").is_file():
            incomplete.append(job.name)
            continue
        done.append(job.name)
        results = job / "results.jsonl"
        if not results.is_file():
            warnings.warn(f"{job}: has a done file but no results.jsonl",
                          CorruptRecordWarning, stacklevel=2)
            continue
        job_records, job_skipped = read_records(results)
        records.extend(job_records)
        skipped += job_skipped
    if not done:
        raise ReportError(f"none of the {len(jobs)} job folders in {input_dir} has a "
                          "`done` file: no job has finished yet")
    if not records:
        raise ReportError(f"the {len(done)} finished jobs in {input_dir} hold no "
                          "readable record in their results.jsonl")
    ensure_domainbed_importable()
    from domainbed.lib.query import Q

    return Sweep(input_dir, Q(records), done, incomplete, skipped)


# ------------------------------------------------------------ DomainBed's numbers

def collect_results_text(records) -> str:
    """What ``python -m domainbed.scripts.collect_results`` prints, as a string."""
    ensure_domainbed_importable()
    from domainbed.scripts import collect_results

    text = io.StringIO()
    with contextlib.redirect_stdout(text):
        print("Total records:", len(records))
        for method in selection_methods():
            collect_results.print_results_tables(records, method, latex=False)
    return text.getvalue()


def sweep_averages(records) -> pd.DataFrame:
    """Per (selection, dataset, algorithm): mean and standard error (in %) over
    trials of the trial's mean ``sweep_acc`` over test environments, i.e. the
    numbers of collect_results' "Averages" table. Pairs without a result under
    a selection method get no row.
    """
    ensure_domainbed_importable()
    from domainbed.lib import reporting
    from domainbed.lib.query import Q
    from domainbed.scripts import collect_results

    datasets = dataset_order(Q(records).select("args.dataset").unique())
    algorithms = algorithm_order(Q(records).select("args.algorithm").unique())
    rows = []
    for method in selection_methods():
        grouped = (reporting.get_grouped_records(records)
                   .map(lambda group, method=method: {**group,
                                       "sweep_acc": method.sweep_acc(group["records"])})
                   .filter(lambda group: group["sweep_acc"] is not None))
        for dataset in datasets:
            for algorithm in algorithms:
                trial_means = (grouped
                               .filter_equals("algorithm, dataset", (algorithm, dataset))
                               .group("trial_seed")
                               .map(lambda seed, group: group.select("sweep_acc").mean()))
                if not len(trial_means):
                    continue
                mean, stderr, _ = collect_results.format_mean(trial_means, False)
                rows.append({"selection": SELECTION_LABELS[method.__name__],
                             "dataset": dataset, "algorithm": algorithm,
                             "accuracy": mean, "stderr": stderr,
                             "trials": len(trial_means)})
    return pd.DataFrame(rows, columns=list(AVERAGES_COLUMNS))
