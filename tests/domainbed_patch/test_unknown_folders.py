"""``sweep status`` names the job folders its plan does not know (an older plan's)."""
import argparse
import json
from types import SimpleNamespace

import pytest

from domainbed_patch import unknown_folders


def _folder(root, name, hparams=None):
    path = root / name
    path.mkdir(parents=True)
    if hparams is not None:
        record = {"args": {"dataset": "PACS", "algorithm": "ERM", "test_envs": [1],
                           "hparams_seed": 3, "trial_seed": 0}, "hparams": hparams}
        (path / "results.jsonl").write_text(json.dumps(record) + "\n")
    return path


def test_folders_no_job_of_the_plan_names_are_listed(tmp_path):
    known = _folder(tmp_path, "aaa", {"freeze_bn": True})
    _folder(tmp_path, "old", {"freeze_bn": False})
    _folder(tmp_path, "empty")
    jobs = [SimpleNamespace(output_dir=known), SimpleNamespace(output_dir=tmp_path / "new")]
    assert [p.name for p in unknown_folders.unknown_job_folders(tmp_path, jobs)] == \
        ["empty", "old"]
    lines = unknown_folders.unknown_folder_lines(tmp_path, jobs)
    assert lines[0].startswith(f"2 folder(s) in {tmp_path} are not jobs of this plan")
    assert lines[1:] == ["  empty: no readable results",
                         "  old: PACS ERM test_envs=[1] hparams_seed=3 trial_seed=0, "
                         "BatchNorm trained (freeze_bn=false)"]
    assert unknown_folders.unknown_folder_lines(tmp_path / "missing", jobs) == []


def test_many_unknown_folders_are_counted(tmp_path):
    for i in range(unknown_folders.SHOWN + 3):
        _folder(tmp_path, f"f{i:02d}")
    lines = unknown_folders.unknown_folder_lines(tmp_path, [])
    assert len(lines) == 1 + unknown_folders.SHOWN + 1 and lines[-1] == "  ... and 3 more"


@pytest.mark.integration
def test_sweep_status_names_the_folders_of_an_older_plan(tmp_path, capsys):
    """A paper job's folder from before freeze_bn was fixed (its hash without it)."""
    from domainbed_patch import jobs, presets, sweep_commands
    overrides = {"output_dir": str(tmp_path), "n_hparams": 1}
    [current, *_] = jobs.make_jobs(presets.load_preset("smoke", overrides))
    old_args = dict(current.train_args)
    fixed = json.loads(old_args["hparams"])
    fixed.pop("freeze_bn")
    old_args["hparams"] = json.dumps(fixed, sort_keys=True)
    from domainbed.scripts import sweep as domainbed_sweep
    old = domainbed_sweep.Job(old_args, str(tmp_path))
    assert old.output_dir != str(current.output_dir)  # the hash moved
    _folder(tmp_path, old.output_dir.rsplit("/", 1)[1], {"batch_size": 8})
    parser = argparse.ArgumentParser()
    sweep_commands.add_parser(parser.add_subparsers())
    args = parser.parse_args(["sweep", "status", "smoke", "--output_dir", str(tmp_path),
                              "--n_hparams", "1"])
    assert args.func(args) == 0
    out = capsys.readouterr().out
    assert f"1 folder(s) in {tmp_path} are not jobs of this plan" in out
    assert f"  {old.output_dir.rsplit('/', 1)[1]}: PACS ERM" in out
