"""Which protocol a sweep's jobs trained under, against that of the reference rows.

A job's protocol is read from what its ``results.jsonl`` records hold, in the terms
of :data:`domainbed_patch.protocol.SETTINGS` (for the 224x224 datasets; DomainBed's
28x28 network has no BatchNorm and no choice of backbone):

- backbone: ``resnet18``, else ``resnet50_augmix`` (timm's AugMix ResNet-50), else
  torchvision's ResNet-50;
- BatchNorm: trained when ``freeze_bn`` is false; frozen when it is true or absent
  (DomainBed before July 2024, and the authors' fork, always froze it);
- random batch sizes: for a drawn job (hparams_seed > 0), the range whose draw for
  the job's seeds is its batch size (when both ranges give it, the job says
  nothing; when neither does, it was set by hand).

:func:`protocol_warnings` says where one dataset's jobs trained under different
settings (say, BatchNorm frozen in some and trained in others: job folders of an
older plan), and where a dataset is compared with reference rows measured under
other settings than its jobs'.
"""
from __future__ import annotations

import collections
from typing import Dict, List, Optional

from domainbed_patch import protocol

BATCH_RANGES = {"2^U(4, .)": protocol.PAPER_BATCH_EXPONENTS,
                "2^U(3, .)": protocol.UPSTREAM_BATCH_EXPONENTS}
SET_BY_HAND = "set by hand"

#: reference source -> the settings its rows were measured under.
REFERENCE_SETTINGS = {
    # DomainBed's results.tex at 7df6f06 (2020): torchvision's ResNet-50 with every
    # BatchNorm frozen, batch sizes 2^U(3, 5.5), DomainNet 2^U(3, 5).
    "DomainBed 2020": {"backbone": "torchvision ResNet-50", "BatchNorm": "frozen",
                       "random batch sizes": "2^U(3, .)"},
}


class ProtocolWarning(UserWarning):
    """A table mixes protocols, or compares rows measured under different ones."""


def batch_size_range(args: dict, hparams: dict) -> Optional[str]:
    """The random batch-size range a job's batch size was drawn from, if it tells."""
    if (args.get("hparams_seed", 0) == 0 or "batch_size" not in hparams
            or args.get("algorithm") in protocol.FIXED_BATCH_ALGORITHMS):
        return None
    drawn = [label for label, exponents in BATCH_RANGES.items()
             if protocol.drawn_batch_size(args["dataset"], args["hparams_seed"],
                                          args.get("trial_seed", 0), exponents)
             == hparams["batch_size"]]
    if len(drawn) == 1:
        return drawn[0]
    return None if drawn else SET_BY_HAND


def record_settings(record: dict) -> Dict[str, str]:
    """What one record's job trained with ({} for the 28x28 datasets)."""
    args, hparams = record["args"], record.get("hparams") or {}
    if args["dataset"] in protocol.SMALL_IMAGES:
        return {}
    if hparams.get("resnet18"):
        backbone = "torchvision ResNet-18"
    elif hparams.get("resnet50_augmix"):
        backbone = "timm AugMix ResNet-50"
    else:
        backbone = "torchvision ResNet-50"
    settings = {"backbone": backbone,
                "BatchNorm": "frozen" if hparams.get("freeze_bn", True) else "trained"}
    batch = batch_size_range(args, hparams)
    if batch is not None:
        settings["random batch sizes"] = batch
    return settings


def _job_key(record: dict) -> tuple:
    args = record["args"]
    return (args["dataset"], args["algorithm"], tuple(args["test_envs"]),
            args["hparams_seed"], args["trial_seed"], args.get("output_dir"))


def sweep_settings(records) -> Dict[str, Dict[str, collections.Counter]]:
    """dataset -> setting -> Counter of its values over the dataset's jobs."""
    jobs = {}
    for record in records:
        jobs.setdefault(_job_key(record), record)
    table: Dict[str, Dict[str, collections.Counter]] = {}
    for record in jobs.values():
        dataset = table.setdefault(record["args"]["dataset"], {})
        for setting, value in record_settings(record).items():
            dataset.setdefault(setting, collections.Counter())[value] += 1
    return table


def _values(counter: collections.Counter) -> str:
    return " and ".join(f"{value} ({n} jobs)" for value, n in sorted(counter.items()))


def protocol_warnings(records, comparison) -> List[str]:
    """One line per dataset whose jobs mix settings, and per dataset compared with
    reference rows (of a source in :data:`REFERENCE_SETTINGS`) measured under
    other settings than its jobs'."""
    compared = collections.defaultdict(set)
    for _, row in comparison.iterrows():
        if row["reference_source"] in REFERENCE_SETTINGS:
            compared[row["dataset"]].add(row["reference_source"])
    lines = []
    for dataset, settings in sweep_settings(records).items():
        for setting, counter in settings.items():
            if len(counter) > 1:
                lines.append(f"{dataset}: the table mixes jobs trained with {setting} "
                             f"{_values(counter)}; `hessian-dg sweep status` names the "
                             "folders its plan does not know")
        for source in sorted(compared.get(dataset, ())):
            differ = [f"{setting} {value} (this sweep: {_values(settings[setting])})"
                      for setting, value in REFERENCE_SETTINGS[source].items()
                      if setting in settings and set(settings[setting]) != {value}]
            if differ:
                lines.append(f"{dataset}: compared with {source} rows measured with "
                             + "; ".join(differ))
    return lines
