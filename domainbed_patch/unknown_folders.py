"""Job folders in a sweep's output folder that its plan does not know.

A job folder is named by a hash of the job's train arguments, ``--hparams``
included, so a change of what a protocol fixes (the paper protocol's
``freeze_bn=true``) renames every job: the folders of the older plan stay, unknown
to the new one, and would mix into a report of the folder. ``sweep status`` names
them, each with what its first ``results.jsonl`` record says it trained with.
"""
from __future__ import annotations

import json
from pathlib import Path
from typing import Iterable, List

from domainbed_patch.job_folder import JobFolder, job_folders

#: at most this many folders are named one by one.
SHOWN = 10


def unknown_job_folders(output_dir, jobs: Iterable) -> List[Path]:
    """Job folders under ``output_dir`` that are none of ``jobs``' folders."""
    if not Path(output_dir).is_dir():
        return []
    known = {Path(job.output_dir).resolve() for job in jobs}
    return [path for path in job_folders(output_dir) if path.resolve() not in known]


def describe_folder(path: Path) -> str:
    """What a folder's first record says: the job and how it trained BatchNorm."""
    results = JobFolder(path).results
    try:
        with open(results, encoding="utf-8") as lines:
            record = json.loads(lines.readline())
        args, hparams = record["args"], record.get("hparams") or {}
    except (OSError, ValueError, KeyError, TypeError):
        return "no readable results"
    batchnorm = ("BatchNorm trained (freeze_bn=false)" if not hparams.get("freeze_bn", True)
                 else "BatchNorm frozen")
    return (f"{args.get('dataset')} {args.get('algorithm')} test_envs={args.get('test_envs')} "
            f"hparams_seed={args.get('hparams_seed')} trial_seed={args.get('trial_seed')}, "
            f"{batchnorm}")


def unknown_folder_lines(output_dir, jobs) -> List[str]:
    """Lines for ``sweep status``: how many folders the plan does not know, and which."""
    unknown = unknown_job_folders(output_dir, jobs)
    if not unknown:
        return []
    lines = [f"{len(unknown)} folder(s) in {output_dir} are not jobs of this plan (an "
             "older plan's, e.g. before the paper protocol fixed freeze_bn=true; a report "
             "of this folder would include the finished ones):"]
    lines += [f"  {path.name}: {describe_folder(path)}" for path in unknown[:SHOWN]]
    if len(unknown) > SHOWN:
        lines.append(f"  ... and {len(unknown) - SHOWN} more")
    return lines
