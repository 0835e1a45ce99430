"""The writers of the comparison table: ``report.md``, ``report.tex``, ``report.csv``.

This module owns how the comparison (:func:`domainbed_patch.report.references.compare`)
is printed: the columns of the text tables (:data:`COLUMNS`), the Markdown
(:func:`to_markdown`) and LaTeX (:func:`to_latex`, :func:`latex_escape`) texts and
the CSV file (:func:`write_csv`). Cells are found by column name, never by position.
"""
from __future__ import annotations

from pathlib import Path
from typing import Dict, List, Optional

import pandas as pd

from domainbed_patch.report.records import SELECTION_LABELS, Sweep, selection_names
from domainbed_patch.report.references import PACKAGED_DESCRIPTION, PACKAGED_SOURCE

#: What the text tables print where a number is missing.
MISSING = "—"
#: Header of the column of differences, where LaTeX needs a real minus sign.
DIFFERENCE = "Ours − reference"
#: Header of each column of the text tables -> whether it holds numbers
#: (right-aligned). Order is the tables' order.
COLUMNS = {"Dataset": False, "Algorithm": False, "This sweep": True, "Trials": True,
           "Reference": True, DIFFERENCE: True, "Reference source": False}
HEADER = tuple(COLUMNS)


def _mean_pm(mean, stderr, pm: str) -> str:
    if pd.isna(mean):
        return MISSING
    return f"{mean:.1f}" if pd.isna(stderr) else f"{mean:.1f}{pm}{stderr:.1f}"


def _cells(row, pm: str) -> Dict[str, str]:
    """Column header -> the text of ``row`` (a row of the comparison) in it."""
    return {"Dataset": row["dataset"],
            "Algorithm": row["algorithm"],
            "This sweep": _mean_pm(row["accuracy"], row["stderr"], pm),
            "Trials": str(row["trials"]) if row["trials"] else MISSING,
            "Reference": _mean_pm(row["reference_accuracy"], row["reference_stderr"],
                                  pm),
            DIFFERENCE: (MISSING if pd.isna(row["difference"])
                         else f"{row['difference']:+.1f}"),
            "Reference source": row["reference_source"] or MISSING}


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
    """``report.md``: the intro, then one table per selection method."""
    def line(cells):
        return "| " + " | ".join(str(c).replace("|", "\\|") for c in cells) + " |"

    rule = "|" + "|".join("---:" if numeric else "---"
                          for numeric in COLUMNS.values()) + "|"
    out = ["# DomainBed sweep report", ""]
    for paragraph in _intro(sweep, reference):
        out += [paragraph, ""]
    for selection, name in selection_names().items():
        out += [f"## Model selection: {name}", ""]
        rows = comparison[comparison["selection"] == selection]
        note = _empty_note(sweep, selection)
        if note:
            out += [note, ""]
        out += [line(HEADER), rule]
        for _, row in rows.iterrows():
            cells = _cells(row, " ± ")
            out.append(line(cells[column] for column in HEADER))
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
    alignment = "".join("r" if numeric else "l" for numeric in COLUMNS.values())
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
                r"\begin{tabular}{" + alignment + "}", r"\toprule",
                " & ".join(latex_escape(h) for h in HEADER) + r" \\", r"\midrule"]
        for _, row in rows.iterrows():
            cells = _cells(row, " ± ")
            cells[DIFFERENCE] = cells[DIFFERENCE].replace("-", "−")  # a math minus
            out.append(" & ".join(latex_escape(cells[column]) for column in HEADER)
                       + r" \\")
        out += [r"\bottomrule", r"\end{tabular}", r"\end{table}"]
    return "\n".join(out) + "\n"


def write_csv(comparison: pd.DataFrame, path) -> Path:
    """``report.csv``: the comparison table as it is, one row per line."""
    comparison.to_csv(path, index=False)
    return Path(path)
