"""Ctrl-C on ``cmnist``: the workers stop (no queued restart starts), one line says
how many restarts were saved and that rerunning resumes, exit 130, no traceback."""
import os
import re
import signal
import subprocess
import sys
import time

from tests.colored_mnist.test_runner import ROOT, saved, tiny_flags
from tests.terminal import foreground_signals


def test_ctrl_c_stops_the_workers_and_says_what_was_saved(idx_folder, tmp_path):
    out = tmp_path / "out"
    env = dict(os.environ, PYTHONPATH=ROOT + os.pathsep + os.environ.get("PYTHONPATH", ""))
    flags = tiny_flags(idx_folder[0], out, "--algorithms", "ERM", "VREx", "--restarts", "40",
                       "--workers", "2")
    process = subprocess.Popen([sys.executable, "-m", "colored_mnist", *flags], env=env,
                               stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                               start_new_session=True, preexec_fn=foreground_signals)
    deadline = time.time() + 240
    while len(saved(out)) < 2 and process.poll() is None and time.time() < deadline:
        time.sleep(0.02)
    os.killpg(process.pid, signal.SIGINT)  # Ctrl-C: the whole process group
    _, err = process.communicate(timeout=120)
    assert process.returncode == 130, err
    assert "Traceback" not in err and "KeyboardInterrupt" not in err, err
    message = re.search(r"interrupted: (\d+) restart\(s\) saved in this run \((\d+) of 80 "
                        r"in all\), (\d+) not; rerun the same command to resume", err)
    assert message, err
    kept = saved(out)
    assert 2 <= len(kept) < 80 and int(message.group(2)) == len(kept)
    time.sleep(1.0)
    assert saved(out) == kept  # no worker trains on after the interrupt
