"""``sweep_commands.launch`` on stand-in jobs, for test_launcher_interrupts.

``python interrupt_harness.py LAUNCHER SWEEP_DIR SECONDS...``: one job per SECONDS.
A stand-in job follows the job runner's protocol for its folder (made when it
starts, a ``running`` marker, an ``interrupted`` marker on SIGINT, results and
``done`` at the end) and sleeps in between, so a test can interrupt a launcher in
seconds, without training.
"""
import sys
from types import SimpleNamespace

from domainbed_patch import jobs, locate, sweep_commands

STAND_IN = r"""
import signal, sys, time
from domainbed_patch.job_folder import JobFolder
folder = JobFolder(sys.argv[1])
def stop(signum, frame):
    folder.mark_interrupted(signal.Signals(signum).name)
    sys.exit(128 + signum)
signal.signal(signal.SIGINT, stop)
folder.path.mkdir(parents=True, exist_ok=True)
folder.mark_running()
time.sleep(float(sys.argv[2]))
folder.results.write_text('{"step": 0}\n')
folder.done_marker.write_text("done")
folder.clear_running()
"""


class StandInJob(jobs.SweepJob):
    def command(self):
        return [sys.executable, "-c", STAND_IN, str(self.output_dir),
                str(self.train_args["seconds"])]


def main(launcher, sweep_dir, *seconds):
    locate.ensure_domainbed_importable()
    todo = [StandInJob({"dataset": "StandIn", "algorithm": "Sleep", "test_envs": [0],
                        "hparams_seed": 0, "trial_seed": i, "seconds": float(s)},
                       jobs.Path(sweep_dir) / f"job{i}") for i, s in enumerate(seconds)]
    preset = SimpleNamespace(launcher={"name": launcher, "max_parallel": 1,
                                       "timeout_min": 10}, output_dir=sweep_dir,
                             diagnose=False)
    args = SimpleNamespace(retry_failed=False, retry_incomplete=False,
                           skip_confirmation=True, no_collect=True,
                           command_argv=["launch", "stand-in"])
    return sweep_commands.launch(preset, todo, args)


if __name__ == "__main__":
    sys.exit(main(*sys.argv[1:]))
