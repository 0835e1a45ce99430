"""Real DomainBed, end to end: its train and sweep scripts see the plugin, sweeps are
idempotent, failures are contained and reported, results are collected."""
import json
import math
import os
import subprocess
import sys
from pathlib import Path

import pytest

import hessian_dg_cli as cli

pytestmark = pytest.mark.integration

SMALL = '{"batch_size": 8, "hutchinson_samples": 20}'


def _run(argv, cwd, timeout=600):
    env = dict(os.environ, OMP_NUM_THREADS="1")
    return subprocess.run(argv, cwd=cwd, env=env, capture_output=True, text=True,
                          timeout=timeout)


def _records(job_dir):
    return [json.loads(line) for line in (Path(job_dir) / "results.jsonl").read_text().splitlines()]


@pytest.mark.parametrize("algorithm", ["HGP", "Hutchinson"])
def test_domainbed_train_writes_results_with_a_penalty_column(algorithm, tmp_path):
    out = tmp_path / "job"
    result = _run([sys.executable, "-m", "domainbed.scripts.train", "--dataset", "Debug28",
                   "--algorithm", algorithm, "--steps", "3", "--checkpoint_freq", "1",
                   "--hparams", SMALL, "--output_dir", str(out), "--skip_model_save"],
                  cwd=tmp_path)
    assert result.returncode == 0, result.stderr[-3000:]
    records = _records(out)
    assert [r["step"] for r in records] == [0, 1, 2]
    for r in records:
        accuracies = [v for k, v in r.items() if k.endswith("_acc")]
        assert len(accuracies) == 6 and all(0 <= a <= 1 for a in accuracies)
        assert math.isfinite(r["penalty"]) and r["penalty"] > 0
        assert r["loss"] == pytest.approx(r["nll"] + r["penalty"])
        assert r["args"]["algorithm"] == algorithm
    assert (out / "done").exists()


def test_hessian_dg_train_runs_domainbeds_train_with_the_resolved_hparams(tmp_path):
    """The one hparam-resolution function says what DomainBed's train really used."""
    from domainbed_patch.protocol import resolve_hparams
    out = tmp_path / "job"
    assert cli.main(["train", "--dataset", "Debug28", "--algorithm", "HGP", "--steps", "2",
                     "--hparams_seed", "3", "--trial_seed", "1", "--hparams", SMALL,
                     "--output_dir", str(out), "--skip_model_save"]) == 0
    records = _records(out)
    assert (out / "done").exists() and len(records) == 2
    expected = resolve_hparams("HGP", "Debug28", 3, 1, overrides=json.loads(SMALL))
    assert records[0]["hparams"] == pytest.approx(expected)
    assert records[0]["hparams"]["penalty_alpha"] != 1e-4  # a draw, not the default


@pytest.fixture(scope="module")
def submitit_sweep(tmp_path_factory):
    """HGP and Hutchinson on Debug28 through submitit's local executor."""
    base = tmp_path_factory.mktemp("submitit")
    argv = ["hessian-dg", "sweep", "launch", "smoke", "--algorithms", "HGP", "Hutchinson",
            "--n_hparams", "1", "--steps", "2", "--test_envs", "0",
            "--output_dir", str(base / "sweep"),
            "--command_launcher", "submitit_local"]
    return base, argv, _run(argv, cwd=base)


def test_submitit_local_sweep_completes_and_is_collected(submitit_sweep):
    base, _, result = submitit_sweep
    assert result.returncode == 0, result.stdout[-2000:] + result.stderr[-3000:]
    assert "2 jobs: 2 done, 0 failed, 0 incomplete, 0 not launched" in result.stdout
    collected = _run([sys.executable, "-m", "domainbed.scripts.collect_results",
                      "--input_dir", str(base / "sweep")], cwd=base)
    assert collected.returncode == 0, collected.stderr[-2000:]
    rows = [l.split()[0] for l in collected.stdout.splitlines() if l.strip()]
    assert "HGP" in rows and "Hutchinson" in rows


def test_the_report_of_a_submitit_sweep_counts_its_log_folder_as_no_job(submitit_sweep):
    """submitit writes its logs inside the sweep folder; they are the sweep's, not a job."""
    from domainbed_patch.report import write_report
    base, _, result = submitit_sweep
    assert (base / "sweep" / "submitit_logs").is_dir(), result.stdout[-2000:]
    sweep, _ = write_report(base / "sweep", figures=False)
    assert len(sweep.done_jobs) == 2 and sweep.incomplete_jobs == []
    text = (base / "sweep" / "report" / "report.md").read_text()
    assert "0 incomplete jobs" in text


def test_relaunching_a_finished_sweep_launches_nothing(submitit_sweep):
    base, argv, _ = submitit_sweep
    before = {p: p.stat().st_mtime for p in (base / "sweep").glob("*/results.jsonl")}
    again = _run(argv, cwd=base)
    assert again.returncode == 0 and "2 done" in again.stdout and "launching 0" in again.stdout
    assert before == {p: p.stat().st_mtime for p in (base / "sweep").glob("*/results.jsonl")}


def test_a_failing_job_does_not_stop_the_others_and_status_names_it(tmp_path):
    """lr=1e30 makes HGP's second step non-finite (it raises); ERM trains on anyway."""
    out = tmp_path / "sweep"
    common = ["smoke", "--algorithms", "ERM", "HGP", "--n_hparams", "1", "--steps", "3",
              "--test_envs", "1",
              "--hparams", '{"lr": 1e30}', "--output_dir", str(out)]
    launched = _run(["hessian-dg", "sweep", "launch", *common], cwd=tmp_path)
    assert launched.returncode == 1, launched.stderr[-3000:]
    assert "2 jobs: 1 done, 1 failed, 0 incomplete, 0 not launched" in launched.stdout
    status = _run(["hessian-dg", "sweep", "status", *common], cwd=tmp_path)
    failed = [l for l in status.stdout.splitlines() if l.startswith("failed:")]
    errors = [l for l in status.stdout.splitlines() if "last error line:" in l]
    assert len(failed) == 1 and all("HGP" in l for l in failed)
    assert len(errors) == 1 and all("NonFiniteLossError" in l and "nll=" in l for l in errors)
    retried = _run(["hessian-dg", "sweep", "launch", *common, "--retry_failed",
                    "--no_collect"], cwd=tmp_path)
    assert "launching 1." in retried.stdout and "1 done, 1 failed" in retried.stdout
    deleted = _run(["hessian-dg", "sweep", "delete_incomplete", *common,
                    "--skip_confirmation"], cwd=tmp_path)
    assert "Deleted 1 jobs." in deleted.stdout
    status = _run(["hessian-dg", "sweep", "status", *common], cwd=tmp_path)
    assert "1 done, 0 failed, 0 incomplete, 1 not launched" in status.stdout


def test_domainbeds_own_sweep_runs_plugin_jobs_in_new_processes(tmp_path):
    out = tmp_path / "sweep"
    result = _run([sys.executable, "-m", "domainbed.scripts.sweep", "launch",
                   "--datasets", "Debug28", "--algorithms", "HGP", "--n_hparams", "1",
                   "--n_trials", "1", "--steps", "2", "--single_test_envs",
                   "--hparams", SMALL, "--data_dir", str(tmp_path),
                   "--output_dir", str(out), "--command_launcher", "local",
                   "--skip_confirmation"], cwd=tmp_path)
    assert result.returncode == 0, result.stderr[-3000:]
    done = list(out.glob("*/done"))
    assert len(done) == 3
    assert all(_records(d.parent)[-1]["args"]["algorithm"] == "HGP" for d in done)
