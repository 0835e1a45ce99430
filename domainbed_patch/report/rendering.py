"""``report.md`` and ``report.tex``: the comparison (:func:`.references.compare`) as
text tables of the columns :data:`COLUMNS`, whose cells are found by column name,
never by position. (``report.csv`` is the comparison as it is.)
"""
from __future__ import annotations

from typing import Dict, List

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


def _mean_pm(mean, stderr) -> str:
    if pd.isna(mean):
        return MISSING
    return f"{mean:.1f}" if pd.isna(stderr) else f"{mean:.1f} ± {stderr:.1f}"


def _cells(row) -> Dict[str, str]:
    """Column header -> the text of ``row`` (a row of the comparison) in it."""
    return {"Dataset": row["dataset"], "Algorithm": row["algorithm"],
            "This sweep": _mean_pm(row["accuracy"], row["stderr"]),
            "Trials": str(row["trials"]) if row["trials"] else MISSING,
            "Reference": _mean_pm(row["reference_accuracy"], row["reference_stderr"]),
            DIFFERENCE: (MISSING if pd.isna(row["difference"])
                         else f"{row['difference']:+.1f}"),
            "Reference source": row["reference_source"] or MISSING}


def _sections(sweep: Sweep, comparison: pd.DataFrame):
    """Per selection method: DomainBed's name of it, a note when it can have no
    result (else ``None``), and the cells of its rows."""
    for selection, name in selection_names().items():
        note = None
        if selection == SELECTION_LABELS["LeaveOneOutSelectionMethod"] and not any(
                len(r["args"]["test_envs"]) == 2 for r in sweep.records):
            note = ("No result: leave-one-domain-out needs jobs with two test "
                    "environments (a sweep launched without --single_test_envs).")
        rows = comparison[comparison["selection"] == selection]
        yield name, note, [_cells(row) for _, row in rows.iterrows()]


def _intro(sweep: Sweep, reference: pd.DataFrame, notes=()) -> List[str]:
    sources = list(dict.fromkeys(reference["source"]))
    return [sweep.summary(), *(f"Warning: {note}." for note in notes),
            "Accuracy in %: per algorithm and dataset, mean ± standard error over "
            "trials (trial_seed) of the trial's mean accuracy over test environments, "
            "as in the \"Averages\" table of DomainBed's collect_results "
            "(collect_results.txt has the per-environment tables). "
            "Ours − reference is given where a reference has the same selection, "
            "dataset and algorithm.",
            "Reference sources: " + (", ".join(
                f"{s} ({PACKAGED_DESCRIPTION})" if s == PACKAGED_SOURCE else s
                for s in sources) or "none") + "."]


def to_markdown(sweep: Sweep, comparison: pd.DataFrame, reference: pd.DataFrame,
                notes=(), header=()) -> str:
    """``report.md``: the intro (with a warning per line of ``notes``), the lines of
    ``header`` (the provenance section), then one table per selection method."""
    def line(cells):
        return "| " + " | ".join(str(c).replace("|", "\\|") for c in cells) + " |"

    rule = "|" + "|".join("---:" if numeric else "---" for numeric in COLUMNS.values()) + "|"
    out = ["# DomainBed sweep report", ""]
    for paragraph in _intro(sweep, reference, notes):
        out += [paragraph, ""]
    out += list(header)
    for name, note, rows in _sections(sweep, comparison):
        out += [f"## Model selection: {name}", ""] + ([note, ""] if note else [])
        out += [line(HEADER), rule] + [line(cells[c] for c in HEADER) for cells in rows]
        out.append("")
    return "\n".join(out)


_LATEX_SPECIALS = {"\\": r"\textbackslash{}", "&": r"\&", "%": r"\%", "$": r"\$", "#": r"\#",
                   "_": r"\_", "{": r"\{", "}": r"\}", "~": r"\textasciitilde{}",
                   "^": r"\textasciicircum{}", MISSING: "--", "−": "$-$", "±": r"$\pm$"}


def latex_escape(text: str) -> str:
    """``text`` safe in LaTeX text mode (± and the minus sign as math)."""
    return "".join(_LATEX_SPECIALS.get(char, char) for char in str(text))


def to_latex(sweep: Sweep, comparison: pd.DataFrame, reference: pd.DataFrame,
             notes=()) -> str:
    """One booktabs ``table`` per selection method (needs ``\\usepackage{booktabs}``)."""
    def line(cells):
        return " & ".join(latex_escape(c) for c in cells) + r" \\"

    alignment = "".join("r" if numeric else "l" for numeric in COLUMNS.values())
    out = ["% DomainBed sweep report, written by hessian-dg report.",
           "% Needs \\usepackage{booktabs}."]
    out += ["% " + latex_escape(paragraph) for paragraph in _intro(sweep, reference, notes)]
    for name, note, rows in _sections(sweep, comparison):
        caption = (f"Model selection: {name}. Accuracy (%), mean ± standard error "
                   "over trials." + (" " + note if note else ""))
        out += ["", r"\begin{table}[htbp]", r"\centering",
                r"\caption{" + latex_escape(caption) + "}",
                r"\begin{tabular}{" + alignment + "}", r"\toprule", line(HEADER), r"\midrule"]
        for cells in rows:
            cells[DIFFERENCE] = cells[DIFFERENCE].replace("-", "−")  # a math minus
            out.append(line(cells[column] for column in HEADER))
        out += [r"\bottomrule", r"\end{tabular}", r"\end{table}"]
    return "\n".join(out) + "\n"
