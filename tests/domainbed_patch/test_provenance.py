"""``provenance.json``: what the job runner records, kept out of DomainBed's arguments."""
import json
import platform
import re
import subprocess
from pathlib import Path

import pytest
import torch

from domainbed_patch import locate, presets, provenance
from domainbed_patch.hparams import SEEDS_EXPLAINED
from domainbed_patch.job_folder import JobFolder


def test_split_flag_takes_the_leading_json_and_leaves_domainbeds_arguments():
    argv = ["--provenance", '{"preset": "smoke", "protocol": "paper"}', "--output_dir", "x"]
    assert provenance.split_flag(argv) == ({"preset": "smoke", "protocol": "paper"},
                                           ["--output_dir", "x"])
    assert provenance.split_flag(["--output_dir", "x"]) == (None, ["--output_dir", "x"])
    with pytest.raises(SystemExit, match=r"--provenance '\{oops' is not JSON"):
        provenance.split_flag(["--provenance", "{oops", "--output_dir", "x"])
    with pytest.raises(SystemExit, match="needs a JSON object"):
        provenance.split_flag(["--provenance"])


@pytest.mark.integration  # DomainBed's own code runs
def test_record_job_writes_versions_device_and_the_sweeps_part(tmp_path):
    sweep = {"preset": "smoke", "preset_source": "sweeps/smoke.toml",
             "overrides": {"n_trials": 2}, "protocol": "paper"}
    rest = provenance.record_job(tmp_path, ["--provenance", json.dumps(sweep),
                                            "--output_dir", str(tmp_path)])
    assert rest == ["--output_dir", str(tmp_path)]
    record = json.loads(JobFolder(tmp_path).provenance.read_text())
    assert record["sweep"] == sweep and record["format"] == provenance.FORMAT
    software = record["software"]
    assert software["torch"] == torch.__version__
    assert software["cuda"] == torch.version.cuda
    assert software["python"] == platform.python_version()
    assert software["domainbed_commit"] == locate.locate().commit
    commit = software["hessian_dg_commit"]  # others may commit meanwhile: an ancestor
    assert re.fullmatch(r"[0-9a-f]{40}(\+dirty)?", commit)  # +dirty: code edited since
    assert subprocess.run(["git", "merge-base", "--is-ancestor", commit[:40], "HEAD"],
                          cwd=Path(provenance.__file__).parents[1]).returncode == 0
    expected = "cuda" if torch.cuda.is_available() else "cpu"
    assert record["device"] == expected and record["device_name"]


def test_a_job_started_without_the_flag_still_records_its_software(tmp_path):
    assert provenance.record_job(tmp_path, ["--steps", "2"]) == ["--steps", "2"]
    record = provenance.read(JobFolder(tmp_path).provenance)
    assert record["sweep"] is None and record["software"]["torch"] == torch.__version__
    assert provenance.read(tmp_path / "absent.json") is None


@pytest.mark.integration
def test_the_flag_reaches_the_runner_but_never_the_folder_hash(tmp_path):
    from domainbed.scripts import sweep as domainbed_sweep

    from domainbed_patch import jobs as sweep_jobs
    overrides = {"output_dir": str(tmp_path), "n_trials": 2, "diagnose": True}
    preset = presets.load_preset("smoke", overrides)
    flags = provenance.runner_flags(preset, overrides)
    plain, flagged = sweep_jobs.make_jobs(preset), sweep_jobs.make_jobs(preset, flags)
    assert [j.output_dir for j in plain] == [j.output_dir for j in flagged]
    for job in flagged:
        args = {k: v for k, v in job.train_args.items() if k != "output_dir"}
        assert str(job.output_dir) == domainbed_sweep.Job(args, str(tmp_path)).output_dir
        assert "provenance" not in json.dumps(job.train_args)
        argv = job.command()
        at = argv.index("--provenance")
        assert argv[at - 2] == "--diagnose_max_examples"  # the order the runner reads
        assert json.loads(argv[at + 1]) == {
            "preset": "smoke", "preset_source": preset.source, "overrides": overrides,
            "protocol": "paper"}


@pytest.mark.integration
def test_sweep_plan_explains_the_two_seeds(capsys):
    import hessian_dg_cli as cli
    assert cli.main(["sweep", "plan", "smoke"]) == 0
    out = capsys.readouterr().out
    assert "\n".join(SEEDS_EXPLAINED) in out
    assert "seed_hash(hparams_seed, trial_seed)" in SEEDS_EXPLAINED[0]


def test_the_commit_says_when_the_code_a_job_runs_was_edited(tmp_path):
    from tests.git_checkout import make_checkout
    root = tmp_path / "checkout"
    commit = make_checkout(root, ["domainbed_patch", "hessian_dg", "colored_mnist"])
    assert provenance.project_commit(root) == commit
    (root / "colored_mnist" / "code.py").write_text("x = 2\n")  # not what a job runs
    assert provenance.project_commit(root) == commit
    (root / "domainbed_patch" / "code.py").write_text("x = 2\n")
    assert provenance.project_commit(root) == commit + "+dirty"
    assert provenance.project_commit(tmp_path) is None
