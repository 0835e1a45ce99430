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
- ``selected.csv``, ``selected.md``: for every (dataset, algorithm, test environment,
  trial) and selection method with a result, the job it chose (folder), its seeds
  and hparams, the step, and its validation and test accuracy (:mod:`.selection`);
- ``per_domain.csv``, ``per_domain.md``: the chosen test accuracy per test
  environment, mean ± standard error over trials (``per_domain.csv`` has the
  columns of a reference CSV);
- ``accuracy.png`` and ``curves.png``;
- where jobs were diagnosed (``hessian-dg diagnose``, or the sweep's in-job option),
  a "Transfer diagnostics" section at the end of ``report.md`` and
  ``diagnostics.png`` (:mod:`.diagnostics`).

:func:`write_report` runs the parts: :mod:`.records` (the sweep folder, its
averages), :mod:`.references` (reference CSVs, the comparison), :mod:`.rendering`
(Markdown, LaTeX), :mod:`.figures` (the PNGs). :func:`add_parser` and :func:`run`
are the command.

Where this differs from DomainBed's ``collect_results``, on purpose:

- a job counts only once its ``done`` file exists: a killed job never enters a
  table (DomainBed reads every ``results.jsonl``); the report says how many
  were left out;
- a corrupt or half-written line of ``results.jsonl`` is skipped with a
  :class:`~.records.CorruptRecordWarning` naming the file and line (DomainBed's
  ``reporting.load_records`` stops with a ``JSONDecodeError``);
- where one dataset's jobs trained under different protocols (BatchNorm frozen in
  some, trained in others, say), or under another than the reference rows they
  are compared with, the report says so (:mod:`.protocols`), in ``report.md``,
  ``report.tex`` and as a :class:`~.protocols.ProtocolWarning`;
- ``report.md`` opens with the jobs' provenance (their ``provenance.json``:
  versions, commits, device, protocol, preset), and warns where one dataset's jobs
  disagree on it, where jobs have none, and where a row rests on fewer hparams x
  trials than the reference row beside it (:mod:`.provenance`). Every warning is
  gathered in :func:`gather_warnings`.
"""
from __future__ import annotations

import argparse
import sys
import warnings
from pathlib import Path
from typing import Sequence

from domainbed_patch import job_folder
from domainbed_patch.job_folder import REPORT
from domainbed_patch.report import provenance, records, rendering, selection
from domainbed_patch.report.diagnostics import (
    diagnostics_markdown,
    load_diagnostics,
    plot_diagnostics,
)
from domainbed_patch.report.protocols import ProtocolWarning, protocol_warnings
from domainbed_patch.report.references import REFERENCE_COLUMNS, compare, load_references

PROG = "hessian-dg report"
#: The warnings ``run`` prints as one line each.
WARNINGS = (records.CorruptRecordWarning, ProtocolWarning, provenance.ProvenanceWarning)
HELP = "tables against reference results, and figures"


def gather_warnings(sweep, comparison, by_job) -> list:
    """Every warning of the report, gathered here: each is issued (``run`` prints
    ``hessian-dg report: warning: ...``) and returned for the head of report.md
    and report.tex. ``by_job``: :func:`.provenance.load`."""
    found = [(ProtocolWarning, note) for note in protocol_warnings(sweep.records, comparison)]
    found += [(provenance.ProvenanceWarning, note) for note in
              provenance.provenance_warnings(sweep, by_job)
              + provenance.budget_warnings(sweep.records, comparison)]
    for category, note in found:
        warnings.warn(note, category, stacklevel=3)
    return [note for _, note in found]


def write_report(input_dir, output_dir=None, references: Sequence = (),
                 figures: bool = True, packaged_reference: bool = True) -> tuple:
    """Read the sweep in ``input_dir``, write every output into ``output_dir``
    (default ``<input_dir>/report``, which is then not read as a job); return the
    :class:`~.records.Sweep` and the paths written."""
    input_dir = Path(input_dir)
    output_dir = Path(output_dir) if output_dir is not None else input_dir / REPORT
    sweep = records.load_sweep(input_dir, exclude=[output_dir])
    reference = load_references(references, packaged=packaged_reference)
    averages = records.sweep_averages(sweep.records)
    datasets = records.domainbed_order("datasets", sweep.records.select("args.dataset"))
    comparison = compare(averages, reference, datasets)
    by_job = provenance.load(sweep)
    notes = gather_warnings(sweep, comparison, by_job)
    found = selection.choices(sweep.records)
    per_domain = selection.per_domain_table(found)

    diagnosed = load_diagnostics(input_dir)
    markdown = rendering.to_markdown(sweep, comparison, reference, notes,
                                     provenance.header_markdown(by_job))
    if not diagnosed.empty:
        markdown += "\n" + diagnostics_markdown(diagnosed)
    output_dir.mkdir(parents=True, exist_ok=True)
    texts = {"collect_results.txt": records.collect_results_text(sweep.records),
             "report.md": markdown,
             "report.tex": rendering.to_latex(sweep, comparison, reference, notes),
             "report.csv": comparison.to_csv(index=False),
             "selected.csv": selection.choices_table(found).to_csv(index=False),
             "selected.md": selection.selected_markdown(found),
             "per_domain.csv": per_domain.to_csv(index=False),
             "per_domain.md": selection.per_domain_markdown(per_domain)}
    for name, text in texts.items():
        (output_dir / name).write_text(text, encoding="utf-8")
    files = [output_dir / name for name in texts]
    if figures:
        from domainbed_patch.report.figures import plot_accuracy, plot_curves
        algorithms = records.domainbed_order("algorithms",
                                             sweep.records.select("args.algorithm"))
        files.append(plot_accuracy(averages, output_dir / "accuracy.png",
                                   records.selection_names(), datasets, algorithms))
        files.append(plot_curves(list(sweep.records), output_dir / "curves.png",
                                 datasets, algorithms))
        if not diagnosed.empty:
            files.append(plot_diagnostics(diagnosed, output_dir / "diagnostics.png"))
    return sweep, files


def add_parser(subparsers) -> argparse.ArgumentParser:
    """Add the ``report`` sub-parser to ``subparsers``; it runs :func:`run`."""
    parser = subparsers.add_parser("report", help=HELP, description=(
        "Tables and figures from a DomainBed sweep folder, compared with DomainBed's "
        "published numbers and your own."))
    parser.add_argument("--input_dir", required=True,
                        help="the --output_dir of a DomainBed sweep: one folder per "
                             f"job with {job_folder.RESULTS} and, once finished, "
                             f"{job_folder.DONE_MARKER}")
    parser.add_argument("--output_dir",
                        help="where to write the report (default: <input_dir>/report)")
    parser.add_argument("--reference", action="append", default=[], metavar="CSV",
                        help="extra reference rows, columns "
                             + ",".join(REFERENCE_COLUMNS) + " (repeatable)")
    parser.add_argument("--no_published", action="store_true",
                        help="leave out DomainBed's published 2020 numbers")
    parser.add_argument("--no_figures", action="store_true", help="write the tables only")
    parser.set_defaults(func=run)
    return parser


def _show_warning(message, category, filename, lineno, file=None, line=None):
    if issubclass(category, WARNINGS):
        print(f"{PROG}: warning: {message}", file=sys.stderr)
    else:
        sys.stderr.write(warnings.formatwarning(message, category, filename, lineno, line))


def run(args: argparse.Namespace) -> int:
    """Write the report that ``args`` (parsed by :func:`add_parser`'s parser) asks for."""
    with warnings.catch_warnings():
        warnings.simplefilter("always", records.CorruptRecordWarning)
        warnings.simplefilter("always", ProtocolWarning)
        warnings.simplefilter("always", provenance.ProvenanceWarning)
        warnings.showwarning = _show_warning
        try:
            sweep, files = write_report(args.input_dir, args.output_dir, args.reference,
                                        figures=not args.no_figures,
                                        packaged_reference=not args.no_published)
        except OSError as error:  # an unreadable input, an unwritable output folder
            where = f" {error.filename}" if error.filename else ""
            raise records.ReportError(
                f"cannot read the sweep or write the report{where}: "
                f"{error.strerror or error}") from error
    print(f"Read {args.input_dir}: {sweep.summary()}")
    for path in files:
        print(f"Wrote {path}")
    return 0
