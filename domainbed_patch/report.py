"""``hessian-dg report``: tables and figures from a DomainBed sweep folder.

A sweep folder holds one subfolder per job, each with DomainBed's
``results.jsonl`` (one JSON record per checkpoint) and, once the job finished, a
``done`` file. From it the report writes, into ``--output_dir``:

- ``collect_results.txt``: DomainBed's own tables, printed by
  ``domainbed.scripts.collect_results.print_results_tables`` for its three model
  selection methods (training-domain validation, leave-one-domain-out, oracle);
- ``report.md``, ``report.tex``, ``report.csv``: the sweep's per-dataset averages
  (mean ± standard error over trials, computed as collect_results computes its
  "Averages" table) side by side with reference rows, and ours − reference;
- ``accuracy.png`` and ``curves.png`` (see :mod:`domainbed_patch.report_figures`).

This module holds the loading of a sweep folder (:func:`load_sweep`), the
sweep's averages (:func:`sweep_averages`), :func:`write_report` and the command
line (:func:`main`). The reference results (the format of reference CSVs, the
comparison) and the Markdown and LaTeX writers are in
:mod:`domainbed_patch.report_tables`, the figures in
:mod:`domainbed_patch.report_figures`.

Where this differs from DomainBed's ``collect_results``, on purpose:

- a job counts only once its ``done`` file exists: a killed job never enters a
  table (DomainBed reads every ``results.jsonl``); the report says how many
  were left out;
- a corrupt or half-written line of ``results.jsonl`` is skipped with a
  :class:`CorruptRecordWarning` naming the file and line (DomainBed's
  ``reporting.load_records`` stops with a ``JSONDecodeError``).
"""
from __future__ import annotations

import argparse
import contextlib
import io
import json
import sys
import warnings
from dataclasses import dataclass
from pathlib import Path
from typing import Iterable, List, Optional, Sequence

import pandas as pd

from domainbed_patch.report_tables import (REFERENCE_COLUMNS, SELECTION_LABELS,
                                           ReportError, Sweep, algorithm_order,
                                           compare, dataset_order, domainbed,
                                           load_references, selection_methods,
                                           selection_names, to_latex, to_markdown)

PROG = "hessian-dg report"

#: Keys every record needs for the tables (``args`` holds the rest).
RECORD_ARGS = ("dataset", "algorithm", "test_envs", "trial_seed", "hparams_seed")


class CorruptRecordWarning(UserWarning):
    """A line of a ``results.jsonl`` was skipped."""


# --------------------------------------------------------------------------- sweep

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
    return Sweep(input_dir, domainbed().Q(records), done, incomplete, skipped)


# ----------------------------------------------------------------------- DomainBed

def collect_results_text(records) -> str:
    """What ``python -m domainbed.scripts.collect_results`` prints, as a string."""
    collect_results = domainbed().collect_results
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
    db = domainbed()
    datasets = dataset_order(db.Q(records).select("args.dataset").unique())
    algorithms = algorithm_order(db.Q(records).select("args.algorithm").unique())
    rows = []
    for method in selection_methods():
        grouped = (db.reporting.get_grouped_records(records)
                   .map(lambda group: {**group,
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
                mean, stderr, _ = db.collect_results.format_mean(trial_means, False)
                rows.append({"selection": SELECTION_LABELS[method.__name__],
                             "dataset": dataset, "algorithm": algorithm,
                             "accuracy": mean, "stderr": stderr,
                             "trials": len(trial_means)})
    return pd.DataFrame(rows, columns=["selection", "dataset", "algorithm",
                                       "accuracy", "stderr", "trials"])


# ---------------------------------------------------------------------------- main

@dataclass
class Report:
    """What :func:`write_report` read and wrote."""

    sweep: Sweep
    comparison: pd.DataFrame
    files: List[Path]


def write_report(input_dir, output_dir=None, references: Sequence = (),
                 figures: bool = True, packaged_reference: bool = True) -> Report:
    """Read the sweep in ``input_dir``, write every output into ``output_dir``
    (default ``<input_dir>/report``, which is then not read as a job)."""
    input_dir = Path(input_dir)
    output_dir = Path(output_dir) if output_dir is not None else input_dir / "report"
    sweep = load_sweep(input_dir, exclude=[output_dir])
    reference = load_references(references, packaged=packaged_reference)
    averages = sweep_averages(sweep.records)
    datasets = dataset_order(sweep.records.select("args.dataset").unique())
    comparison = compare(averages, reference, datasets)

    output_dir.mkdir(parents=True, exist_ok=True)
    texts = {"collect_results.txt": collect_results_text(sweep.records),
             "report.md": to_markdown(sweep, comparison, reference),
             "report.tex": to_latex(sweep, comparison, reference)}
    files = []
    for name, text in texts.items():
        (output_dir / name).write_text(text, encoding="utf-8")
        files.append(output_dir / name)
    comparison.to_csv(output_dir / "report.csv", index=False)
    files.append(output_dir / "report.csv")
    if figures:
        from domainbed_patch import report_figures

        algorithms = algorithm_order(sweep.records.select("args.algorithm").unique())
        files.append(report_figures.plot_accuracy(
            averages, output_dir / "accuracy.png", selection_names(), datasets,
            algorithms))
        files.append(report_figures.plot_curves(
            list(sweep.records), output_dir / "curves.png", datasets, algorithms))
    return Report(sweep, comparison, files)


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog=PROG,
        description="Tables and figures from a DomainBed sweep folder, compared "
                    "with DomainBed's published numbers and your own.")
    parser.add_argument("--input_dir", required=True,
                        help="the --output_dir of a DomainBed sweep: one folder per "
                             "job with results.jsonl and, once finished, done")
    parser.add_argument("--output_dir", default=None,
                        help="where to write the report (default: <input_dir>/report)")
    parser.add_argument("--reference", action="append", default=[], metavar="CSV",
                        help="extra reference rows, columns "
                             + ",".join(REFERENCE_COLUMNS) + " (repeatable)")
    parser.add_argument("--no_published", action="store_true",
                        help="leave out DomainBed's published 2020 numbers")
    parser.add_argument("--no_figures", action="store_true",
                        help="write the tables only")
    return parser


def _show_warning(message, category, filename, lineno, file=None, line=None):
    if issubclass(category, CorruptRecordWarning):
        print(f"{PROG}: warning: {message}", file=sys.stderr)
    else:
        sys.stderr.write(warnings.formatwarning(message, category, filename, lineno, line))


def main(argv=None) -> int:
    args = build_parser().parse_args(argv)
    from domainbed_patch.locate import DomainBedNotFoundError

    with warnings.catch_warnings():
        warnings.simplefilter("always", CorruptRecordWarning)
        warnings.showwarning = _show_warning
        try:
            report = write_report(args.input_dir, args.output_dir, args.reference,
                                  figures=not args.no_figures,
                                  packaged_reference=not args.no_published)
        except (ReportError, DomainBedNotFoundError, OSError) as error:
            print(f"{PROG}: error: {error}", file=sys.stderr)
            return 2
    print(f"Read {args.input_dir}: {report.sweep.summary()}")
    for path in report.files:
        print(f"Wrote {path}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
