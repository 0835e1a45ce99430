"""A job folder's files and states, a sweep's own folders, and the rule that only
job_folder.py spells a job folder's file names."""
import ast
import json
import os
import socket
import subprocess
import sys
from pathlib import Path

import pytest

from domainbed_patch import job_folder
from domainbed_patch.job_folder import JobFolder

BRIDGE = Path(job_folder.__file__).parent
NAMES = (job_folder.RESULTS, job_folder.DONE_MARKER, job_folder.MODEL, job_folder.ERROR_LOG,
         job_folder.FAILED_MARKER, job_folder.DIAGNOSTICS, job_folder.SUBMITIT_LOGS,
         job_folder.DIAGNOSE_LOGS, job_folder.RUNNING_MARKER, job_folder.INTERRUPTED_MARKER,
         job_folder.OUT_LOG, job_folder.PROVENANCE)  # REPORT is also the command's name
#: The names that cannot be mistaken for words, looked for inside messages too.
FILE_NAMES = [name for name in NAMES if "." in name or "_" in name]


def test_states(tmp_path):
    folder = JobFolder(tmp_path / "job")
    assert folder.state == job_folder.NOT_LAUNCHED
    folder.path.mkdir()
    assert folder.state == job_folder.INCOMPLETE
    folder.append_error("Traceback\n  ...\nValueError: boom\n\n")
    assert folder.last_error_line() == "ValueError: boom"
    folder.failed_marker.write_text("ValueError: boom (marker)\n")
    assert folder.state == job_folder.FAILED
    assert folder.last_error_line() == "ValueError: boom (marker)"
    folder.done_marker.write_text("done")
    assert folder.state == job_folder.DONE_NO_RESULTS  # collect would drop it silently
    folder.results.write_text("")
    assert folder.state == job_folder.DONE_NO_RESULTS
    folder.results.write_text('{"step": 0}\n')
    assert folder.state == job_folder.DONE and folder.is_done
    assert {p.name for p in folder.leftovers()} == {
        job_folder.RESULTS, job_folder.FAILED_MARKER, job_folder.DIAGNOSTICS,
        job_folder.INTERRUPTED_MARKER, job_folder.DONE_MARKER}


def _ended_pid():
    process = subprocess.Popen([sys.executable, "-c", "pass"])
    process.wait()
    return process.pid


def test_an_incomplete_jobs_attempt_is_read_from_its_running_marker(tmp_path):
    """Running (a live process of this host), on another host (cannot be checked from
    here), or interrupted or killed (a signal written down, a process gone, a reused
    pid, no marker): only the last is rerun by a launch."""
    folder = JobFolder(tmp_path / "job")
    folder.path.mkdir()
    assert folder.attempt == job_folder.STOPPED
    assert folder.attempt_note().startswith("no job runner recorded")
    folder.mark_running()
    record = json.loads(folder.running_marker.read_text())
    assert record["pid"] == os.getpid() and record["host"] == socket.gethostname()
    assert record["process_start"] == job_folder.process_start(os.getpid()) is not None
    assert folder.attempt == job_folder.RUNNING
    assert folder.attempt_note() == f"running: pid {os.getpid()} on {socket.gethostname()}"
    folder.running_marker.write_text(json.dumps({**record, "process_start": "1"}))
    assert folder.attempt == job_folder.STOPPED  # the pid now names another process
    folder.running_marker.write_text(json.dumps({**record, "pid": _ended_pid()}))
    assert folder.attempt == job_folder.STOPPED
    assert folder.attempt_note().startswith("killed: pid ")
    folder.running_marker.write_text(json.dumps({**record, "host": "node-17"}))
    assert folder.attempt == job_folder.OTHER_HOST
    assert "node-17" in folder.attempt_note()
    folder.running_marker.write_text("{torn")
    assert folder.attempt == job_folder.STOPPED
    folder.mark_running()
    folder.mark_interrupted("SIGINT")
    assert not folder.running_marker.exists() and folder.attempt == job_folder.STOPPED
    assert folder.attempt_note() == "interrupted by SIGINT"
    assert folder.state == job_folder.INCOMPLETE


def test_a_job_handed_to_a_queue_is_elsewhere_until_its_runner_starts(tmp_path):
    """Slurm: the folder is made at submission, so a relaunch does not submit it again."""
    folder = JobFolder(tmp_path / "job")
    folder.mark_queued("slurm")
    assert folder.state == job_folder.INCOMPLETE and folder.attempt == job_folder.OTHER_HOST
    assert folder.attempt_note().startswith("submitted to slurm from ")
    folder.mark_running()  # its job runner, on whichever node
    assert folder.attempt == job_folder.RUNNING


def test_a_zombie_is_not_alive():
    process = subprocess.Popen([sys.executable, "-c", "pass"])
    start = job_folder.process_start(process.pid)
    os.waitid(os.P_PID, process.pid, os.WEXITED | os.WNOWAIT)  # ended, not reaped
    assert not job_folder.process_alive(process.pid, start)
    process.wait()


def test_job_folders_leave_out_the_sweeps_own(tmp_path):
    for name in ("0a1b", "2c3d", "submitit_logs", "diagnose_logs", "report", ".hidden",
                 "my_logs"):
        (tmp_path / name).mkdir()
    (tmp_path / "a_file").write_text("")
    assert [p.name for p in job_folder.job_folders(tmp_path)] == ["0a1b", "2c3d", "my_logs"]
    job_folder.record_log_folder(tmp_path, tmp_path / "my_logs")
    job_folder.record_log_folder(tmp_path, tmp_path / "my_logs")  # once is enough
    job_folder.record_log_folder(tmp_path, tmp_path.parent / "elsewhere")  # not inside
    assert [p.name for p in job_folder.job_folders(tmp_path)] == ["0a1b", "2c3d"]
    assert job_folder._read_record(tmp_path)["log_dirs"] == ["my_logs"]
    assert [p.name for p in job_folder.job_folders(tmp_path, exclude=[tmp_path / "2c3d"])
            ] == ["0a1b"]


def test_a_corrupt_sweep_record_is_ignored(tmp_path):
    (tmp_path / job_folder.SWEEP_RECORD).write_text("{not json")
    (tmp_path / "job").mkdir()
    assert [p.name for p in job_folder.job_folders(tmp_path)] == ["job"]


def _string_literals(path: Path):
    """String constants of a module, docstrings left out."""
    tree = ast.parse(path.read_text())
    docstrings = set()
    for node in ast.walk(tree):
        if isinstance(node, (ast.Module, ast.ClassDef, ast.FunctionDef, ast.AsyncFunctionDef)):
            body = node.body
            if body and isinstance(body[0], ast.Expr) and \
                    isinstance(body[0].value, ast.Constant):
                docstrings.add(id(body[0].value))
    for node in ast.walk(tree):
        if isinstance(node, ast.Constant) and isinstance(node.value, str) and \
                id(node) not in docstrings:
            yield node.value


@pytest.mark.parametrize("name", NAMES)
def test_only_job_folder_spells_a_job_folders_file_names(name):
    spelled = sorted(str(path.relative_to(BRIDGE)) for path in BRIDGE.rglob("*.py")
                     if any(text == name or text.endswith("/" + name)
                            for text in _string_literals(path)))
    assert spelled == ["job_folder.py"]


@pytest.mark.parametrize("name", FILE_NAMES)
def test_messages_spell_no_job_folder_file_name_either(name):
    """Inside error messages and help texts as well: they take the name from
    job_folder (docstrings may name the files)."""
    spelled = sorted(str(path.relative_to(BRIDGE)) for path in BRIDGE.rglob("*.py")
                     if any(name in text for text in _string_literals(path)))
    assert spelled == ["job_folder.py"]
