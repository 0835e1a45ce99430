"""Reference results and the text tables of ``hessian-dg report``.

This module holds:

- the DomainBed vocabulary the report shares: :data:`SELECTION_LABELS`, the
  selection methods (:func:`selection_methods`, :func:`selection_names`) and the
  canonical order of datasets and algorithms;
- :class:`Sweep`, the finished part of a sweep folder, which the writers take
  (:func:`domainbed_patch.report.load_sweep` reads it), and :class:`ReportError`;
- the reference results: reading and merging reference CSVs
  (:func:`read_reference`, :func:`load_references`), their per-dataset averages
  (:func:`reference_averages`) and the comparison with a sweep (:func:`compare`);
- the writers of ``report.md`` (:func:`to_markdown`) and ``report.tex``
  (:func:`to_latex`, :func:`latex_escape`).

Reference rows come from the numbers DomainBed published in 2020 (shipped as
``domainbed_patch/data/domainbed_2020_published.csv``) and from the user's CSVs
of the same columns: ``selection,dataset,algorithm,environment,accuracy,stderr``
(accuracy in %). A per-dataset average is a row of the pseudo-dataset
``Averages`` whose ``environment`` names the dataset; failing that, the row of
that dataset with ``environment`` ``Avg``.
"""
from __future__ import annotations

import argparse
import math
from dataclasses import dataclass, field
from importlib import resources
from pathlib import Path
from typing import List, Optional, Sequence

import pandas as pd

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

COMPARISON_COLUMNS = ("selection", "dataset", "algorithm", "accuracy", "stderr",
                      "trials", "reference_source", "reference_accuracy",
                      "reference_stderr", "difference")

#: What the text tables print where a number is missing.
MISSING = "—"


class ReportError(ValueError):
    """Something the user can fix: a missing folder, a malformed reference CSV."""


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


# ----------------------------------------------------------------------- DomainBed

def domainbed():
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


def selection_methods() -> list:
    """DomainBed's three selection methods, in the report's order."""
    model_selection = domainbed().model_selection
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
    return _ordered(names, domainbed().datasets.DATASETS)


def algorithm_order(names) -> list:
    return _ordered(names, domainbed().algorithms.ALGORITHMS)



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
    for selection, name in selection_names().items():
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
    for selection, name in selection_names().items():
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
