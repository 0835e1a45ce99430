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
- ``accuracy.png`` and ``curves.png``.

This package's ``__init__`` owns :func:`write_report` and the command
(:func:`add_parser`, :func:`run`, :func:`main`). The parts: :mod:`.records` (the
sweep folder, its averages), :mod:`.references` (reference CSVs, the comparison),
:mod:`.rendering` (Markdown, LaTeX, CSV), :mod:`.figures` (the PNGs).

Where this differs from DomainBed's ``collect_results``, on purpose:

- a job counts only once its ``done`` file exists: a killed job never enters a
  table (DomainBed reads every ``results.jsonl``); the report says how many
  were left out;
- a corrupt or half-written line of ``results.jsonl`` is skipped with a
  :class:`~.records.CorruptRecordWarning` naming the file and line (DomainBed's
  ``reporting.load_records`` stops with a ``JSONDecodeError``).
"""
from __future__ import annotations

import argparse
import sys
import warnings
from dataclasses import dataclass
from pathlib import Path
from typing import List, Sequence

import pandas as pd

from domainbed_patch.locate import DomainBedNotFoundError
from domainbed_patch.report.records import (
    CorruptRecordWarning,
    ReportError,
    Sweep,
    algorithm_order,
    collect_results_text,
    dataset_order,
    load_sweep,
    selection_names,
    sweep_averages,
)
from domainbed_patch.report.references import REFERENCE_COLUMNS, compare, load_references
from domainbed_patch.report.rendering import to_latex, to_markdown, write_csv

PROG = "hessian-dg report"
HELP = "tables against reference results, and figures"
DESCRIPTION = ("Tables and figures from a DomainBed sweep folder, compared "
               "with DomainBed's published numbers and your own.")


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
    files.append(write_csv(comparison, output_dir / "report.csv"))
    if figures:
        from domainbed_patch.report.figures import plot_accuracy, plot_curves

        algorithms = algorithm_order(sweep.records.select("args.algorithm").unique())
        files.append(plot_accuracy(averages, output_dir / "accuracy.png",
                                   selection_names(), datasets, algorithms))
        files.append(plot_curves(list(sweep.records), output_dir / "curves.png",
                                 datasets, algorithms))
    return Report(sweep, comparison, files)


# ------------------------------------------------------------------------- command

def add_arguments(parser: argparse.ArgumentParser) -> None:
    """The flags of ``hessian-dg report``."""
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


def add_parser(subparsers) -> argparse.ArgumentParser:
    """Add the ``report`` sub-parser to ``subparsers``; it runs :func:`run`."""
    parser = subparsers.add_parser("report", help=HELP, description=DESCRIPTION)
    add_arguments(parser)
    parser.set_defaults(func=run)
    return parser


def build_parser() -> argparse.ArgumentParser:
    """The standalone parser of :func:`main`."""
    parser = argparse.ArgumentParser(prog=PROG, description=DESCRIPTION)
    add_arguments(parser)
    return parser


def _show_warning(message, category, filename, lineno, file=None, line=None):
    if issubclass(category, CorruptRecordWarning):
        print(f"{PROG}: warning: {message}", file=sys.stderr)
    else:
        sys.stderr.write(warnings.formatwarning(message, category, filename, lineno, line))


def run(args: argparse.Namespace) -> int:
    """Write the report that ``args`` (parsed by :func:`add_arguments`) asks for."""
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


def main(argv=None) -> int:
    return run(build_parser().parse_args(argv))
