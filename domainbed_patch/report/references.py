"""Reference results, and the comparison of a sweep with them.

This module owns reading reference CSVs (:func:`read_reference`,
:func:`load_references`), their per-dataset averages (:func:`reference_averages`)
and the comparison table (:func:`compare`) that every writer of the report prints.

Reference rows come from the numbers DomainBed published in 2020 (shipped as
``domainbed_patch/data/domainbed_2020_published.csv``) and from the user's CSVs
of the same columns: ``selection,dataset,algorithm,environment,accuracy,stderr``
(accuracy in %). A per-dataset average is a row of the pseudo-dataset
``Averages`` whose ``environment`` names the dataset; failing that, the row of
that dataset with ``environment`` ``Avg``.
"""
from __future__ import annotations

import math
from importlib import resources
from pathlib import Path
from typing import Sequence

import pandas as pd

from domainbed_patch.report.records import (
    SELECTION_LABELS,
    ReportError,
    algorithm_order,
    selection_methods,
)

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

COMPARISON_COLUMNS = ("selection", "dataset", "algorithm", "accuracy", "stderr",
                      "trials", "reference_source", "reference_accuracy",
                      "reference_stderr", "difference")


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
