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

Reference rows come from the numbers DomainBed published in 2020 (shipped as
``domainbed_patch/data/domainbed_2020_published.csv``) and from the user's CSVs
of the same columns: ``selection,dataset,algorithm,environment,accuracy,stderr``
(accuracy in %). A per-dataset average is a row of the pseudo-dataset
``Averages`` whose ``environment`` names the dataset; failing that, the row of
that dataset with ``environment`` ``Avg``.

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
import math
import sys
import warnings
from dataclasses import dataclass, field
from importlib import resources
from pathlib import Path
from typing import Iterable, List, Optional, Sequence

import pandas as pd

PROG = "hessian-dg report"

#: The packaged reference, in ``domainbed_patch/data/``.
PACKAGED_REFERENCE = "domainbed_2020_published.csv"
PACKAGED_SOURCE = "DomainBed 2020"
PACKAGED_DESCRIPTION = ("DomainBed's published accuracies of its own algorithms, "
                        "results.tex at its commit 7df6f06")
REFERENCE_COLUMNS = ("selection", "dataset", "algorithm", "environment",
                     "accuracy", "stderr")
#: Pseudo-dataset of the reference CSV that holds per-dataset averages.
AVERAGES_DATASET = "Averages"
#: ``environment`` value of a dataset's average over its test environments.
AVERAGE_ENVIRONMENT = "Avg"

#: DomainBed selection method (class name in ``domainbed.model_selection``) ->
#: the label the reference CSV uses for it. Order is the report's order.
SELECTION_LABELS = {
    "IIDAccuracySelectionMethod": "training-domain validation",
    "LeaveOneOutSelectionMethod": "leave-one-domain-out",
    "OracleSelectionMethod": "test-domain oracle",
}

#: Keys every record needs for the tables (``args`` holds the rest).
RECORD_ARGS = ("dataset", "algorithm", "test_envs", "trial_seed", "hparams_seed")

COMPARISON_COLUMNS = ("selection", "dataset", "algorithm", "accuracy", "stderr",
                      "trials", "reference_source", "reference_accuracy",
                      "reference_stderr", "difference")

#: What the text tables print where a number is missing.
MISSING = "—"


class ReportError(ValueError):
    """Something the user can fix: a missing folder, a malformed reference CSV."""


class CorruptRecordWarning(UserWarning):
    """A line of a ``results.jsonl`` was skipped."""


# --------------------------------------------------------------------------- sweep

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


def _domainbed():
    """Make DomainBed importable and return its modules the report uses."""
    from domainbed_patch.locate import ensure_domainbed_importable

    ensure_domainbed_importable()
    from domainbed import algorithms, datasets, model_selection
    from domainbed.lib import reporting
    from domainbed.lib.query import Q
    from domainbed.scripts import collect_results

    return argparse.Namespace(algorithms=algorithms, datasets=datasets,
                              model_selection=model_selection, reporting=reporting,
                              Q=Q, collect_results=collect_results)


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
    return Sweep(input_dir, _domainbed().Q(records), done, incomplete, skipped)


# ----------------------------------------------------------------------- DomainBed

def selection_methods() -> list:
    """DomainBed's three selection methods, in the report's order."""
    model_selection = _domainbed().model_selection
    return [getattr(model_selection, name) for name in SELECTION_LABELS]


def collect_results_text(records) -> str:
    """What ``python -m domainbed.scripts.collect_results`` prints, as a string."""
    collect_results = _domainbed().collect_results
    text = io.StringIO()
    with contextlib.redirect_stdout(text):
        print("Total records:", len(records))
        for method in selection_methods():
            collect_results.print_results_tables(records, method, latex=False)
    return text.getvalue()


def _ordered(names, canonical) -> list:
    """``names`` in the order of ``canonical``, then the others sorted."""
    names = list(dict.fromkeys(names))
    return ([n for n in canonical if n in names]
            + sorted(n for n in names if n not in canonical))


def dataset_order(names) -> list:
    return _ordered(names, _domainbed().datasets.DATASETS)


def algorithm_order(names) -> list:
    return _ordered(names, _domainbed().algorithms.ALGORITHMS)


def sweep_averages(records) -> pd.DataFrame:
    """Per (selection, dataset, algorithm): mean and standard error (in %) over
    trials of the trial's mean ``sweep_acc`` over test environments, i.e. the
    numbers of collect_results' "Averages" table. Pairs without a result under
    a selection method get no row.
    """
    db = _domainbed()
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


# ----------------------------------------------------------------------- reference

def _selection_aliases() -> dict:
    """Accepted spellings (lower case) of each selection label."""
    aliases = {label.lower(): label for label in SELECTION_LABELS.values()}
    for method in selection_methods():
        aliases[method.name.lower()] = SELECTION_LABELS[method.__name__]
    return aliases


def read_reference(source, name: str) -> pd.DataFrame:
    """One reference CSV as a table with a ``source`` column set to ``name``."""
    try:
        with open(source, encoding="utf-8") as handle:
            table = pd.read_csv(handle, dtype=str, keep_default_na=False)
    except FileNotFoundError:
        raise ReportError(f"reference CSV {source} does not exist") from None
    except (pd.errors.ParserError, pd.errors.EmptyDataError, UnicodeDecodeError) as error:
        raise ReportError(f"reference CSV {source} could not be read: {error}") from None
    table.columns = [str(column).strip() for column in table.columns]
    missing = [column for column in REFERENCE_COLUMNS if column not in table.columns]
    if missing:
        raise ReportError(f"reference CSV {source} lacks the column(s) "
                          f"{', '.join(missing)}; expected the header "
                          f"{','.join(REFERENCE_COLUMNS)}")
    table = table[list(REFERENCE_COLUMNS)].apply(lambda column: column.str.strip())
    aliases = _selection_aliases()
    selection = table["selection"].str.lower().map(aliases)
    unknown = sorted(set(table["selection"][selection.isna()]))
    if unknown:
        raise ReportError(f"reference CSV {source}: unknown selection {unknown[0]!r}; "
                          f"use one of {', '.join(SELECTION_LABELS.values())}")
    table["selection"] = selection
    for column in ("accuracy", "stderr"):
        values = pd.to_numeric(table[column], errors="coerce")  # "" -> NaN
        bad = values.isna() & (table[column] != "")
        if column == "accuracy":
            bad |= table[column] == ""
        if bad.any():
            row = int(bad.to_numpy().nonzero()[0][0]) + 2  # header is line 1
            raise ReportError(f"reference CSV {source}, line {row}: {column} "
                              f"{table[column][bad].iloc[0]!r} is not a number")
        table[column] = values.astype(float)
    table["source"] = name
    return table


def load_references(user_csvs: Sequence = (), packaged: bool = True) -> pd.DataFrame:
    """The packaged published numbers (unless ``packaged`` is false), then each
    user CSV, named by its file name."""
    tables = []
    if packaged:
        data = resources.files("domainbed_patch").joinpath("data").joinpath(
            PACKAGED_REFERENCE)
        with resources.as_file(data) as path:
            tables.append(read_reference(path, PACKAGED_SOURCE))
    tables += [read_reference(path, Path(path).name) for path in user_csvs]
    if not tables:
        return pd.DataFrame(columns=[*REFERENCE_COLUMNS, "source"])
    return pd.concat(tables, ignore_index=True)


def reference_averages(reference: pd.DataFrame) -> pd.DataFrame:
    """Per-dataset averages of reference rows: the ``Averages`` rows, and the
    ``Avg`` rows of datasets that a source gives no ``Averages`` row for."""
    key = ["source", "selection", "dataset", "algorithm"]
    averages = reference[(reference["dataset"] == AVERAGES_DATASET)
                         & (reference["environment"] != AVERAGE_ENVIRONMENT)]
    averages = averages.assign(dataset=averages["environment"])
    fallback = reference[(reference["dataset"] != AVERAGES_DATASET)
                         & (reference["environment"] == AVERAGE_ENVIRONMENT)]
    table = pd.concat([averages, fallback], ignore_index=True)
    return table.drop_duplicates(key, keep="first")[
        [*key, "accuracy", "stderr"]].reset_index(drop=True)


def compare(ours: pd.DataFrame, reference: pd.DataFrame, datasets) -> pd.DataFrame:
    """Side by side, per selection label and dataset of ``datasets``: the sweep's
    algorithms first, then the reference's other algorithms; one row per
    matching reference source (or one row without reference)."""
    rows = []
    references = reference_averages(reference)
    sweep_algorithms = algorithm_order(ours["algorithm"])
    for selection in SELECTION_LABELS.values():
        for dataset in datasets:
            here = ours[(ours["selection"] == selection) & (ours["dataset"] == dataset)]
            refs = references[(references["selection"] == selection)
                              & (references["dataset"] == dataset)]
            extra = [a for a in algorithm_order(refs["algorithm"])
                     if a not in sweep_algorithms]
            for algorithm in sweep_algorithms + extra:
                mine = here[here["algorithm"] == algorithm]
                base = {"selection": selection, "dataset": dataset,
                        "algorithm": algorithm, "accuracy": math.nan,
                        "stderr": math.nan, "trials": 0}
                if len(mine):
                    base.update(mine.iloc[0][["accuracy", "stderr", "trials"]].to_dict())
                matches = refs[refs["algorithm"] == algorithm]
                if not len(matches):
                    rows.append({**base, "reference_source": "",
                                 "reference_accuracy": math.nan,
                                 "reference_stderr": math.nan, "difference": math.nan})
                for _, match in matches.iterrows():
                    rows.append({**base, "reference_source": match["source"],
                                 "reference_accuracy": match["accuracy"],
                                 "reference_stderr": match["stderr"],
                                 "difference": base["accuracy"] - match["accuracy"]})
    table = pd.DataFrame(rows, columns=list(COMPARISON_COLUMNS))
    return table.astype({"trials": int})


# ------------------------------------------------------------------------- writers

HEADER = ("Dataset", "Algorithm", "This sweep", "Trials", "Reference",
          "Ours − reference", "Reference source")


def _mean_pm(mean, stderr, pm: str) -> str:
    if pd.isna(mean):
        return MISSING
    return f"{mean:.1f}" if pd.isna(stderr) else f"{mean:.1f}{pm}{stderr:.1f}"


def _cells(row, pm: str) -> list:
    return [row["dataset"], row["algorithm"],
            _mean_pm(row["accuracy"], row["stderr"], pm),
            str(row["trials"]) if row["trials"] else MISSING,
            _mean_pm(row["reference_accuracy"], row["reference_stderr"], pm),
            MISSING if pd.isna(row["difference"]) else f"{row['difference']:+.1f}",
            row["reference_source"] or MISSING]


def _selection_names() -> dict:
    """Selection label -> DomainBed's own name of the method."""
    return {SELECTION_LABELS[m.__name__]: m.name for m in selection_methods()}


def _empty_note(sweep: Sweep, selection: str) -> Optional[str]:
    if selection == SELECTION_LABELS["LeaveOneOutSelectionMethod"] and not any(
            len(r["args"]["test_envs"]) == 2 for r in sweep.records):
        return ("No result: leave-one-domain-out needs jobs with two test "
                "environments (a sweep launched without --single_test_envs).")
    return None


def _intro(sweep: Sweep, reference: pd.DataFrame) -> List[str]:
    sources = list(dict.fromkeys(reference["source"])) if len(reference) else []
    return [sweep.summary(),
            "Accuracy in %: per algorithm and dataset, mean ± standard error over "
            "trials (trial_seed) of the trial's mean accuracy over test environments, "
            "as in the \"Averages\" table of DomainBed's collect_results "
            "(collect_results.txt has the per-environment tables). "
            "Ours − reference is given where a reference has the same selection, "
            "dataset and algorithm.",
            "Reference sources: " + (", ".join(
                f"{s} ({PACKAGED_DESCRIPTION})" if s == PACKAGED_SOURCE else s
                for s in sources) if sources else "none") + "."]


def to_markdown(sweep: Sweep, comparison: pd.DataFrame, reference: pd.DataFrame) -> str:
    def line(cells):
        return "| " + " | ".join(str(c).replace("|", "\\|") for c in cells) + " |"

    out = ["# DomainBed sweep report", ""]
    for paragraph in _intro(sweep, reference):
        out += [paragraph, ""]
    for selection, name in _selection_names().items():
        out += [f"## Model selection: {name}", ""]
        rows = comparison[comparison["selection"] == selection]
        note = _empty_note(sweep, selection)
        if note:
            out += [note, ""]
        out += [line(HEADER), "|---|---|---:|---:|---:|---:|---|"]
        out += [line(_cells(row, " ± ")) for _, row in rows.iterrows()]
        out.append("")
    return "\n".join(out)


_LATEX_SPECIALS = {"\\": r"\textbackslash{}", "&": r"\&", "%": r"\%", "$": r"\$",
                   "#": r"\#", "_": r"\_", "{": r"\{", "}": r"\}",
                   "~": r"\textasciitilde{}", "^": r"\textasciicircum{}",
                   MISSING: "--", "−": "$-$", "±": r"$\pm$"}


def latex_escape(text: str) -> str:
    """``text`` safe in LaTeX text mode (± and the minus sign as math)."""
    return "".join(_LATEX_SPECIALS.get(char, char) for char in str(text))


def to_latex(sweep: Sweep, comparison: pd.DataFrame, reference: pd.DataFrame) -> str:
    """One booktabs ``table`` per selection method (needs ``\\usepackage{booktabs}``)."""
    out = ["% DomainBed sweep report, written by hessian-dg report.",
           "% Needs \\usepackage{booktabs}."]
    out += ["% " + latex_escape(paragraph) for paragraph in _intro(sweep, reference)]
    for selection, name in _selection_names().items():
        rows = comparison[comparison["selection"] == selection]
        caption = (f"Model selection: {name}. Accuracy (%), mean ± standard error "
                   "over trials.")
        note = _empty_note(sweep, selection)
        out += ["", r"\begin{table}[htbp]", r"\centering",
                r"\caption{" + latex_escape(caption + (" " + note if note else "")) + "}",
                r"\begin{tabular}{llrrrrl}", r"\toprule",
                " & ".join(latex_escape(h) for h in HEADER) + r" \\", r"\midrule"]
        for _, row in rows.iterrows():
            cells = [latex_escape(c.replace("-", "−") if i == 5 else c)
                     for i, c in enumerate(_cells(row, " ± "))]
            out.append(" & ".join(cells) + r" \\")
        out += [r"\bottomrule", r"\end{tabular}", r"\end{table}"]
    return "\n".join(out) + "\n"


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
            averages, output_dir / "accuracy.png", _selection_names(), datasets,
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
