"""Reference results, and the comparison of a sweep with them.

Reference rows come from the numbers DomainBed published in 2020 (shipped as
``domainbed_patch/data/domainbed_2020_published.csv``) and from the user's CSVs
of the same columns: ``selection,dataset,algorithm,environment,accuracy,stderr``
(accuracy in %). A per-dataset average is a row of the pseudo-dataset
``Averages`` whose ``environment`` names the dataset; failing that, the row of
that dataset with ``environment`` ``Avg``. :func:`compare` puts them beside the
sweep's averages, as every writer of the report prints them.
"""
from __future__ import annotations

from importlib import resources
from pathlib import Path
from typing import Sequence

import pandas as pd

from domainbed_patch.report.records import ReportError, domainbed_order, selection_names

#: The packaged reference, in ``domainbed_patch/data/``.
PACKAGED_REFERENCE = "domainbed_2020_published.csv"
PACKAGED_SOURCE = "DomainBed 2020"
PACKAGED_DESCRIPTION = ("DomainBed's published accuracies of its own algorithms, "
                        "results.tex at its commit 7df6f06; measured with torchvision's "
                        "ResNet-50, BatchNorm frozen, random batch sizes 2^U(3, 5.5), "
                        "DomainNet 2^U(3, 5)")
REFERENCE_COLUMNS = ("selection", "dataset", "algorithm", "environment", "accuracy", "stderr")
#: Pseudo-dataset of the reference CSV that holds per-dataset averages.
AVERAGES_DATASET = "Averages"
#: ``environment`` value of a dataset's average over its test environments.
AVERAGE_ENVIRONMENT = "Avg"

COMPARISON_COLUMNS = ("selection", "dataset", "algorithm", "accuracy", "stderr", "trials",
                      "reference_source", "reference_accuracy", "reference_stderr", "difference")


def read_reference(source, name: str) -> pd.DataFrame:
    """One reference CSV as a table with a ``source`` column set to ``name``."""
    try:
        with open(source, encoding="utf-8") as handle:
            table = pd.read_csv(handle, dtype=str, keep_default_na=False)
    except FileNotFoundError:
        raise ReportError(f"reference CSV {source} does not exist") from None
    except (pd.errors.ParserError, pd.errors.EmptyDataError, UnicodeDecodeError) as error:
        raise ReportError(f"reference CSV {source} could not be read: {error}") from None
    table.columns = table.columns.str.strip()
    missing = [column for column in REFERENCE_COLUMNS if column not in table.columns]
    if missing:
        raise ReportError(f"reference CSV {source} lacks the column(s) "
                          f"{', '.join(missing)}; expected the header "
                          f"{','.join(REFERENCE_COLUMNS)}")
    table = table[list(REFERENCE_COLUMNS)].apply(lambda column: column.str.strip())
    names = selection_names()  # label -> DomainBed's name; either is accepted, in any case
    labels = {spelling.lower(): label for label, name in names.items()
              for spelling in (label, name)}
    selection = table["selection"].str.lower().map(labels)
    if selection.isna().any():
        raise ReportError(f"reference CSV {source}: unknown selection "
                          f"{min(table['selection'][selection.isna()])!r}; "
                          f"use one of {', '.join(names)}")
    table["selection"] = selection
    for column in ("accuracy", "stderr"):
        values = pd.to_numeric(table[column], errors="coerce")  # "" -> NaN
        bad = values.isna() & ((table[column] != "") | (column == "accuracy"))
        if bad.any():
            line = bad.idxmax() + 2  # the header is line 1
            raise ReportError(f"reference CSV {source}, line {line}: {column} "
                              f"{table[column][bad].iloc[0]!r} is not a number")
        table[column] = values.astype(float)
    return table.assign(source=name)


def load_references(user_csvs: Sequence = (), packaged: bool = True) -> pd.DataFrame:
    """The packaged published numbers (unless ``packaged`` is false), then each
    user CSV, named by its file name."""
    tables = []
    if packaged:
        data = resources.files("domainbed_patch") / "data" / PACKAGED_REFERENCE
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
    references = reference_averages(reference).rename(
        columns={column: f"reference_{column}" for column in ("source", "accuracy", "stderr")})
    sweep_algorithms = domainbed_order("algorithms", ours["algorithm"])
    keys = []
    for selection in selection_names():
        for dataset in datasets:
            theirs = references["algorithm"][(references["selection"] == selection)
                                             & (references["dataset"] == dataset)]
            extra = [a for a in domainbed_order("algorithms", theirs) if a not in sweep_algorithms]
            keys += [(selection, dataset, algorithm) for algorithm in sweep_algorithms + extra]
    key = ["selection", "dataset", "algorithm"]
    # A left merge keeps the order of the keys, and that of a key's reference rows.
    table = (pd.DataFrame(keys, columns=key).merge(ours, on=key, how="left")
             .merge(references, on=key, how="left"))
    table["difference"] = table["accuracy"] - table["reference_accuracy"]
    table = table.fillna({"trials": 0, "reference_source": ""}).astype({"trials": int})
    return table[list(COMPARISON_COLUMNS)]
