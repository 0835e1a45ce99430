"""The job runner: clears an earlier attempt, records a failure and its last line."""
import subprocess
import sys

import pytest

pytestmark = pytest.mark.integration


def test_failure_is_recorded_and_leftovers_cleared(tmp_path):
    out = tmp_path / "job"
    out.mkdir()
    (out / "results.jsonl").write_text('{"step": 0, "stale": true}\n')
    result = subprocess.run(
        [sys.executable, "-m", "domainbed_patch.job_runner", "--dataset", "Debug28",
         "--algorithm", "NoSuchAlgorithm", "--steps", "1", "--output_dir", str(out),
         "--hparams", "{\"batch_size\": 8}"],
        capture_output=True, text=True, timeout=300)
    assert result.returncode == 1
    assert not (out / "results.jsonl").exists() and not (out / "done").exists()
    assert (out / "failed").read_text().strip() == \
        "NotImplementedError: Algorithm not found: NoSuchAlgorithm"
    assert "Traceback" in (out / "err.txt").read_text()


def test_done_jobs_are_skipped(tmp_path):
    (tmp_path / "done").write_text("done")
    (tmp_path / "results.jsonl").write_text('{"step": 0}\n')
    result = subprocess.run(
        [sys.executable, "-m", "domainbed_patch.job_runner", "--output_dir", str(tmp_path)],
        capture_output=True, text=True, timeout=300)
    assert result.returncode == 0 and "already done" in result.stdout


def test_a_train_script_that_leaves_no_model_says_so_in_one_line(tmp_path):
    """In-job diagnostics read DomainBed train's module-level variables after it ran;
    when one is missing (another DomainBed), err.txt says which, not a KeyError."""
    from domainbed_patch import job_runner
    with pytest.raises(job_runner.TrainNamespaceError, match=r"left no hparams, device"):
        job_runner.check_train_namespace({"algorithm": object(), "args": object()})
    job_runner._diagnose({"algorithm": object(), "args": object()}, str(tmp_path), 10, 1.0)
    log = (tmp_path / "err.txt").read_text()
    assert log.startswith("diagnostics not computed: in-job diagnostics need")
    assert "Traceback" not in log and "left no hparams, device" in log


def _runner(out, *flags):
    return subprocess.run(
        [sys.executable, "-m", "domainbed_patch.job_runner", "--dataset", "Debug28",
         "--algorithm", "NoSuchAlgorithm", "--steps", "1", "--output_dir", str(out),
         "--hparams", '{"batch_size": 8}', *flags],  # Debug28's 13 examples fill no 64
        capture_output=True, text=True, timeout=300)


def test_a_done_job_without_results_runs_again(tmp_path):
    """A done marker with no results.jsonl is no finished job: the runner clears the
    marker and trains (here: fails at once, on a bad algorithm name)."""
    from domainbed_patch.job_folder import FAILED, JobFolder
    folder = JobFolder(tmp_path / "job")
    folder.path.mkdir()
    folder.done_marker.write_text("done")
    result = _runner(folder.path)
    assert result.returncode == 1 and "already done" not in result.stdout
    assert folder.state == FAILED and not folder.done_marker.exists()
    assert not folder.running_marker.exists()


def test_a_job_a_live_process_of_this_host_runs_is_left_to_it(tmp_path):
    from domainbed_patch.job_folder import INCOMPLETE, RUNNING, JobFolder
    folder = JobFolder(tmp_path / "job")
    folder.path.mkdir()
    folder.mark_running()  # this test's process: alive
    before = folder.running_marker.read_text()
    result = _runner(folder.path)
    assert result.returncode == 0 and "already running" in result.stdout
    assert folder.running_marker.read_text() == before
    assert folder.state == INCOMPLETE and folder.attempt == RUNNING


def test_what_diagnostics_read_is_checked_from_trains_source_before_any_job(tmp_path):
    """The pinned train leaves all four; a train that renamed one is caught before a
    sweep with ``diagnose = true`` starts (not only in err.txt after training)."""
    from domainbed_patch import job_runner, locate
    assert job_runner.train_namespace_problem() == ""
    source = (locate.ensure_domainbed_importable().root / "domainbed" / "scripts"
              / "train.py").read_text()
    assert "    device = " in source
    renamed = tmp_path / "train.py"
    renamed.write_text(source.replace("    device = ", "    the_device = ")
                       .replace("(device)", "(the_device)"))
    assert job_runner.train_namespace_missing(renamed) == ["device"]
