"""Runs one sweep job: DomainBed's train, with its failure written down.

``python -m domainbed_patch.job_runner <DomainBed train flags>`` runs
``domainbed.scripts.train`` in this process (so the plugin's start-up hook and
DomainBed's own logging, ``out.txt``/``err.txt``, apply as usual). On an exception
it prints the traceback into ``err.txt`` and writes a ``failed`` marker holding the
last line, so ``hessian-dg sweep status`` can tell a failed job from a running or
killed one. A job already ``done`` is skipped; leftovers of an earlier attempt
(a requeued or relaunched job) are cleared first, since DomainBed's train appends
to ``results.jsonl``.
"""
import os
import runpy
import sys
import traceback

from domainbed_patch.jobs import FAILED_MARKER

LEFTOVERS = ("results.jsonl", FAILED_MARKER)


def _output_dir(argv):
    for i, arg in enumerate(argv[:-1]):
        if arg == "--output_dir":
            return argv[i + 1]
    raise SystemExit("domainbed_patch.job_runner: --output_dir is required")


def _write_failed(output_dir, line):
    with open(os.path.join(output_dir, FAILED_MARKER), "w") as f:
        f.write(line + "\n")


def main(argv=None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    output_dir = _output_dir(argv)
    if os.path.exists(os.path.join(output_dir, "done")):
        print(f"{output_dir}: already done, skipped")
        return 0
    os.makedirs(output_dir, exist_ok=True)
    for name in LEFTOVERS:
        path = os.path.join(output_dir, name)
        if os.path.exists(path):
            os.remove(path)
    sys.argv = ["domainbed.scripts.train", *argv]
    try:
        runpy.run_module("domainbed.scripts.train", run_name="__main__", alter_sys=True)
    except SystemExit as exit_:
        code = exit_.code if isinstance(exit_.code, int) else (0 if exit_.code is None else 1)
        if code != 0:
            _write_failed(output_dir, f"exit status {code}: {exit_.code}")
        return code
    except BaseException as error:  # noqa: BLE001 - recorded, then reported by status
        traceback.print_exc()
        last = traceback.format_exception_only(type(error), error)[-1].strip()
        _write_failed(output_dir, last)
        return 1
    return 0


if __name__ == "__main__":
    status = main()
    # DomainBed's train leaves its data-loader workers running; an ordinary exit can
    # wait minutes on them (after an exception, especially). The job is over: leave.
    for stream in (sys.stdout, sys.stderr):
        stream.flush()
    os._exit(status)
