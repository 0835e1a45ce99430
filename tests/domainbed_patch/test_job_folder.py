"""A job folder's files and states, a sweep's own folders, and the rule that only
job_folder.py spells a job folder's file names."""
import ast
from pathlib import Path

import pytest

from domainbed_patch import job_folder
from domainbed_patch.job_folder import JobFolder

BRIDGE = Path(job_folder.__file__).parent
NAMES = (job_folder.RESULTS, job_folder.DONE_MARKER, job_folder.MODEL, job_folder.ERROR_LOG,
         job_folder.FAILED_MARKER, job_folder.DIAGNOSTICS, job_folder.SUBMITIT_LOGS,
         job_folder.DIAGNOSE_LOGS)


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
    assert folder.state == job_folder.DONE
    assert {p.name for p in folder.leftovers()} == {
        job_folder.RESULTS, job_folder.FAILED_MARKER, job_folder.DIAGNOSTICS}


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
