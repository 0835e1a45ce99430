"""Ctrl-C on a sweep launch, launcher by launcher: no queued job starts, running
jobs are stopped and recorded as interrupted, every job's state and the resume
command are printed, no traceback, exit status 130. Stand-in jobs (see
interrupt_harness.py) keep it to seconds; test_sweep_interrupts does the same
with DomainBed's train."""
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from tests.terminal import foreground_signals

pytestmark = pytest.mark.integration

HARNESS = Path(__file__).with_name("interrupt_harness.py")


def _launch(launcher, sweep, *seconds):
    """The harness in a process group of its own, as a terminal runs a command."""
    return subprocess.Popen([sys.executable, str(HARNESS), launcher, str(sweep),
                             *map(str, seconds)], stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, text=True, start_new_session=True,
                            preexec_fn=foreground_signals)


def _wait_for(path, process, timeout=180):
    deadline = time.monotonic() + timeout
    while not path.exists():
        assert process.poll() is None, process.communicate()
        assert time.monotonic() < deadline, f"{path} never appeared"
        time.sleep(0.1)


def _interrupt(process, timeout=120):
    """Ctrl-C: SIGINT to the whole process group."""
    os.killpg(process.pid, signal.SIGINT)
    out, err = process.communicate(timeout=timeout)
    return process.returncode, out, err


@pytest.mark.parametrize("launcher", ["local_parallel", "local"])
def test_ctrl_c_stops_a_sequential_launcher_and_says_how_to_resume(launcher, tmp_path):
    sweep = tmp_path / "sweep"
    process = _launch(launcher, sweep, 120, 0)
    _wait_for(sweep / "job0" / "running", process)
    code, out, err = _interrupt(process)
    assert code == 130, out + err
    assert "Traceback" not in out + err and "KeyboardInterrupt" not in out + err
    time.sleep(1.0)  # a job started after the interrupt would have made its folder
    assert not (sweep / "job1").exists()  # queued: never started
    lines = out.splitlines()
    assert "Interrupted: no more jobs are launched; stopping the running ones." in lines
    incomplete = [line for line in lines if line.startswith("incomplete (")]
    assert len(incomplete) == 1 and "job0" in incomplete[0]
    assert "; launch reruns it)" in incomplete[0]
    if launcher == "local_parallel":  # DomainBed's local kills its job at once
        assert incomplete[0].startswith("incomplete (interrupted by SIGINT;")
    assert ("2 jobs: 0 done, 0 failed, 1 incomplete (1 interrupted or killed), "
            "1 not launched") in lines
    assert "To resume: hessian-dg sweep launch stand-in" in lines
    if launcher == "local_parallel":
        again = subprocess.run([sys.executable, str(HARNESS), launcher, str(sweep), "0", "0"],
                               capture_output=True, text=True, timeout=120)
        assert again.returncode == 0, again.stdout + again.stderr
        assert "launching 2." in again.stdout
        assert "2 jobs: 2 done, 0 failed, 0 incomplete, 0 not launched" in again.stdout


def test_ctrl_c_stops_every_submitit_local_job(tmp_path):
    sweep = tmp_path / "sweep"
    process = _launch("submitit_local", sweep, 120, 120)
    for job in ("job0", "job1"):
        _wait_for(sweep / job / "running", process)
    code, out, err = _interrupt(process)
    assert code == 130, out + err
    assert "Traceback" not in out + err
    incomplete = [line for line in out.splitlines() if line.startswith("incomplete (")]
    assert len(incomplete) == 2
    assert all(line.startswith("incomplete (interrupted by SIGINT; launch reruns it)")
               for line in incomplete), incomplete
    assert "2 jobs: 0 done, 0 failed, 2 incomplete (2 interrupted or killed), " \
        "0 not launched" in out


REQUEUED = r"""
import signal, sys
from domainbed_patch.launchers import TrainCommand
signal.signal(signal.SIGUSR2, lambda *_: sys.exit(144))  # submitit's requeue on timeout
TrainCommand()([sys.executable, "-c", sys.argv[1], sys.argv[2]])
"""
CHILD = r"""
import signal, sys, time
from pathlib import Path
signal.signal(signal.SIGINT, lambda *_: (Path(sys.argv[1]).write_text("SIGINT"), sys.exit(130)))
Path(sys.argv[1] + ".started").write_text("")
time.sleep(120)
"""


def test_a_requeued_submitit_job_stops_its_job_before_the_next_attempt(tmp_path):
    """submitit requeues a timed-out job by SystemExit in its signal handler; the job
    it ran must be stopped then (and record it), not left running beside the next."""
    record = tmp_path / "child"
    task = subprocess.Popen([sys.executable, "-c", REQUEUED, CHILD, str(record)])
    deadline = time.monotonic() + 120
    while not Path(f"{record}.started").exists():
        assert task.poll() is None and time.monotonic() < deadline
        time.sleep(0.05)
    task.send_signal(signal.SIGUSR2)
    assert task.wait(timeout=60) == 144
    assert record.read_text() == "SIGINT"
