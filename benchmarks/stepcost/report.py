"""How it is reported: ratios to ERM, the Markdown table, targets, machine, files."""
from __future__ import annotations

import csv
import datetime
import itertools
import json
import math
import os
import platform
from dataclasses import asdict, dataclass
from typing import List, Sequence

import torch

from stepcost.measure import Measurement


def _ratio(value: float, reference: float) -> float:
    if not (math.isfinite(value) and math.isfinite(reference)) or reference <= 0:
        return math.nan
    return value / reference


def with_ratios(measurements: Sequence[Measurement]) -> List[dict]:
    """One row per measurement, with time and memory as ratios to ERM of its group."""
    erm = {(m.featurizer, m.head): m for m in measurements if m.variant == "erm"}
    rows = []
    for m in measurements:
        reference = erm.get((m.featurizer, m.head))
        row = asdict(m)
        row["timed_steps"] = len(m.seconds)
        row["seconds_per_step"] = m.median_seconds
        row["cpu_seconds_per_step"] = m.median_cpu_seconds
        row["peak_mib"] = m.peak_mib
        row["time_vs_erm"] = (_ratio(m.median_seconds, reference.median_seconds)
                              if reference else math.nan)
        row["cpu_time_vs_erm"] = (_ratio(m.median_cpu_seconds, reference.median_cpu_seconds)
                                  if reference else math.nan)
        row["memory_vs_erm"] = (_ratio(m.peak_mib, reference.peak_mib)
                                if reference else math.nan)
        row["notes"] = "; ".join(m.notes)
        rows.append(row)
    return rows


TABLE_COLUMNS = (
    ("featurizer", "featurizer", "{}"),
    ("head", "head", "{}"),
    ("batch_size", "batch/dom", "{}"),
    ("variant", "variant", "{}"),
    ("timed_steps", "steps", "{}"),
    ("seconds_per_step", "s/step", "{:.4f}"),
    ("time_vs_erm", "time/ERM", "{:.3f}"),
    ("cpu_time_vs_erm", "cpu time/ERM", "{:.3f}"),
    ("peak_mib", "peak MiB", "{:.1f}"),
    ("memory_vs_erm", "mem/ERM", "{:.3f}"),
)

#: Columns shown only for some devices: process CPU time means little on CUDA.
CPU_ONLY_COLUMNS = ("cpu_time_vs_erm",)


def format_table(rows: Sequence[dict], device_type: str = "cpu") -> str:
    """A Markdown table of the rows, notes as numbered footnotes."""
    columns = [c for c in TABLE_COLUMNS
               if device_type == "cpu" or c[0] not in CPU_ONLY_COLUMNS]
    header = [title for _, title, _ in columns] + ["note"]
    body, notes = [], []
    for row in rows:
        cells = [fmt.format(row[key]) for key, _, fmt in columns]
        if row["notes"]:
            if row["notes"] not in notes:
                notes.append(row["notes"])
            cells.append(f"[{notes.index(row['notes']) + 1}]")
        else:
            cells.append("")
        body.append(cells)
    widths = [max(len(r[i]) for r in [header] + body) for i in range(len(header))]
    lines = ["| " + " | ".join(c.ljust(w) for c, w in zip(cells, widths)) + " |"
             for cells in [header] + body]
    lines.insert(1, "|" + "|".join("-" * (w + 2) for w in widths) + "|")
    lines += [f"[{i}] {note}" for i, note in enumerate(notes, 1)]
    return "\n".join(lines)


@dataclass(frozen=True)
class Target:
    """``variant``'s time or memory against ``reference``'s, with a bound."""

    text: str
    variant: str
    reference: str
    quantity: str  # "time" or "memory"
    bound: float
    at_most: bool  # True: ratio <= bound; False: ratio >= bound


TARGETS = (
    Target("HGP time <= 1.10 x ERM", "hgp", "erm", "time", 1.10, True),
    Target("Hutchinson S=300 time <= 1.25 x ERM", "hutchinson-s300", "erm", "time",
           1.25, True),
    Target("double backprop S=300 time >= 10 x closed-form S=300", "dbp-hutchinson-s300",
           "hutchinson-s300", "time", 10.0, False),
    Target("HGP memory <= 1.10 x ERM", "hgp", "erm", "memory", 1.10, True),
    Target("Hutchinson S=300 memory <= 1.10 x ERM", "hutchinson-s300", "erm", "memory",
           1.10, True),
)


def check_targets(rows: Sequence[dict]) -> List[dict]:
    """The project's cost targets, evaluated on each ResNet featurizer x head.

    A capped double-backprop row is a lower bound: a ">=" target it meets is met,
    one it misses is undecided (``met`` None).
    """
    by_key = {(r["featurizer"], r["head"], r["variant"]): r for r in rows}
    groups = sorted({(r["featurizer"], r["head"]) for r in rows
                     if r["featurizer"].startswith("resnet")})
    checks = []
    for (featurizer, head), target in itertools.product(groups, TARGETS):
        a = by_key.get((featurizer, head, target.variant))
        b = by_key.get((featurizer, head, target.reference))
        if a is None or b is None:
            continue
        column = "seconds_per_step" if target.quantity == "time" else "peak_mib"
        ratio = _ratio(a[column], b[column])
        met = None
        if math.isfinite(ratio):
            met = ratio <= target.bound if target.at_most else ratio >= target.bound
            if a["probes_capped"] and not met:
                met = None
        check = {"featurizer": featurizer, "head": head, "target": target.text,
                 "ratio": ratio, "met": met, "lower_bound": a["probes_capped"]}
        erm = by_key.get((featurizer, head, "erm"))
        if target.quantity == "time" and target.reference != "erm" and erm is not None:
            # A whole-step ratio cannot exceed (ERM + penalty) / ERM: also report
            # the ratio of the two penalties' own costs (time over ERM's).
            check["over_erm_ratio"] = _ratio(a[column] - erm[column],
                                             b[column] - erm[column])
        checks.append(check)
    return checks


def format_targets(checks: Sequence[dict]) -> str:
    def status(check):
        if check["met"] is None:
            return "undecided: ratio from a probe-capped lower bound" \
                if check["lower_bound"] else "n/a"
        return ("met" if check["met"] else "MISSED") + \
            (" (from a probe-capped lower bound)" if check["lower_bound"] else "")

    def extra(check):
        if "over_erm_ratio" not in check:
            return ""
        if not math.isfinite(check["over_erm_ratio"]):
            return "; time over ERM's: not positive for the reference, no ratio"
        return f"; time over ERM's, ratio of the two: {check['over_erm_ratio']:.3f}"

    return "\n".join(f"- {c['featurizer']}/{c['head']}: {c['target']}: "
                     f"{c['ratio']:.3f} ({status(c)}){extra(c)}" for c in checks)


def cpu_model() -> str:
    try:
        with open("/proc/cpuinfo") as f:
            for line in f:
                if line.startswith("model name"):
                    return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or "unknown"


def machine_description(device: torch.device) -> dict:
    info = {"date": datetime.datetime.now().astimezone().isoformat(timespec="seconds"),
            "torch": torch.__version__, "device": str(device),
            "cpu": cpu_model(), "nproc": os.cpu_count(),
            "torch_threads": torch.get_num_threads(), "python": platform.python_version()}
    if device.type == "cuda":
        info["gpu"] = torch.cuda.get_device_name(device)
        info["cuda"] = torch.version.cuda
        info["cudnn"] = torch.backends.cudnn.version()
        info["gpu_memory_mib"] = torch.cuda.get_device_properties(device).total_memory / 2**20
        info["tf32"] = {"matmul": torch.backends.cuda.matmul.allow_tf32,
                        "cudnn": torch.backends.cudnn.allow_tf32}
    return info


def write_output(path: str, machine: dict, arguments: dict, rows: Sequence[dict],
                 checks: Sequence[dict]) -> None:
    """Rows as CSV (``.csv``), else everything as JSON."""
    if path.endswith(".csv"):
        with open(path, "w", newline="") as f:
            writer = csv.DictWriter(f, fieldnames=list(rows[0]))
            writer.writeheader()
            writer.writerows(rows)
    else:
        with open(path, "w") as f:
            json.dump({"machine": machine, "arguments": arguments, "results": rows,
                       "targets": checks}, f, indent=2, default=str)
            f.write("\n")
