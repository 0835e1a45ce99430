"""Runs one sweep job: DomainBed's train, with its failure written down.

``python -m domainbed_patch.job_runner <DomainBed train flags>`` runs
``domainbed.scripts.train`` in this process (so the plugin's start-up hook and
DomainBed's own logging, ``out.txt``/``err.txt``, apply as usual). On an exception
it appends the traceback to ``err.txt`` and writes a ``failed`` marker holding the
last line, so ``hessian-dg sweep status`` can tell a failed job from a running or
killed one. A job already ``done`` is skipped; leftovers of an earlier attempt
(a requeued or relaunched job) are cleared first, since DomainBed's train appends
to ``results.jsonl``.

``--diagnose_max_examples N``, which comes first and never reaches DomainBed's
train (its arguments name the job's folder), asks for the transfer quantities of
:mod:`domainbed_patch.diagnose` at the end, on the model still in memory: no
``model.pkl`` is needed. A failure there is written to ``err.txt``; the training
stays done.
"""
import os
import sys
import time
import traceback

from domainbed_patch.domainbed_scripts import run_domainbed_script
from domainbed_patch.job_folder import JobFolder

DIAGNOSE_FLAG = "--diagnose_max_examples"
#: What DomainBed's train leaves at module level that in-job diagnostics read.
TRAIN_NAMESPACE = ("algorithm", "args", "hparams", "device")


class TrainNamespaceError(RuntimeError):
    """DomainBed's train no longer leaves what in-job diagnostics need."""


def _output_dir(argv):
    for i, arg in enumerate(argv[:-1]):
        if arg == "--output_dir":
            return argv[i + 1]
    raise SystemExit("domainbed_patch.job_runner: --output_dir is required")


def _write_failed(output_dir, line):
    JobFolder(output_dir).failed_marker.write_text(line + "\n")


def check_train_namespace(namespace: dict) -> None:
    """Raise :class:`TrainNamespaceError` naming what DomainBed's train did not leave."""
    missing = [name for name in TRAIN_NAMESPACE if name not in namespace]
    if missing:
        raise TrainNamespaceError(
            "in-job diagnostics need DomainBed's train (domainbed/scripts/train.py) to "
            f"leave the module-level variables {', '.join(TRAIN_NAMESPACE)}; this "
            f"DomainBed's train left no {', '.join(missing)}. Diagnose the job from "
            "its model.pkl instead (hessian-dg diagnose), or use DomainBed at the "
            "pinned commit (hessian-dg doctor)")


def _diagnose(namespace: dict, output_dir: str, max_examples: int, seconds: float) -> None:
    """Diagnostics of the trained model (an error goes to ``err.txt``, not a failure)."""
    from domainbed_patch import diagnose
    start = time.perf_counter()
    try:
        check_train_namespace(namespace)
        result = diagnose.diagnose_trained(
            namespace["algorithm"], vars(namespace["args"]), namespace["hparams"],
            max_examples=max_examples or None, device=namespace["device"])
        result.update(checkpoint="in memory (final step)", training_seconds=seconds,
                      seconds=time.perf_counter() - start)
        diagnose.write_diagnostics(output_dir, result)
    except TrainNamespaceError as error:
        JobFolder(output_dir).append_error(f"diagnostics not computed: {error}\n")
    except Exception:  # noqa: BLE001 - the training is done; say why diagnostics are not
        JobFolder(output_dir).append_error("diagnostics failed:\n" + traceback.format_exc())


def _diagnose_saved(output_dir: str, max_examples: int) -> None:
    """Diagnostics of a job that was done but killed before they were written: from
    its ``model.pkl`` when there is one; otherwise say they are lost."""
    from domainbed_patch import diagnose
    try:
        diagnose.diagnose_job(output_dir, max_examples=max_examples or None)
    except Exception as error:  # noqa: BLE001 - the training is done; say why not
        JobFolder(output_dir).append_error(f"diagnostics not computed: {error}\n")


def main(argv=None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    max_examples = None
    if argv[:1] == [DIAGNOSE_FLAG]:
        max_examples, argv = int(argv[1]), argv[2:]
    output_dir = _output_dir(argv)
    folder = JobFolder(output_dir)
    if folder.is_done:
        print(f"{output_dir}: already done, skipped")
        if max_examples is not None and not folder.diagnostics.exists():
            _diagnose_saved(output_dir, max_examples)  # killed while diagnosing
        return 0
    os.makedirs(output_dir, exist_ok=True)
    for path in folder.leftovers():
        if path.exists():
            path.unlink()
    namespace, start = {}, time.perf_counter()
    try:
        code = run_domainbed_script("train", argv, namespace=namespace)
    except BaseException as error:  # noqa: BLE001 - recorded, then reported by status
        text = traceback.format_exc()
        sys.stderr.write(text)
        folder.append_error(text)
        last = traceback.format_exception_only(type(error), error)[-1].strip()
        _write_failed(output_dir, last)
        return 1
    if code != 0:
        _write_failed(output_dir, f"exit status {code}")
    elif max_examples is not None:
        _diagnose(namespace, output_dir, max_examples, time.perf_counter() - start)
    return code


if __name__ == "__main__":
    status = main()
    # DomainBed's train leaves its data-loader workers running; an ordinary exit can
    # wait minutes on them (after an exception, especially). The job is over: leave.
    for stream in (sys.stdout, sys.stderr):
        stream.flush()
    os._exit(status)
