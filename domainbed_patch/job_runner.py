"""Runs one sweep job: DomainBed's train, with its failure written down.

``python -m domainbed_patch.job_runner <DomainBed train flags>`` runs
``domainbed.scripts.train`` in this process (so the plugin's start-up hook and
DomainBed's own logging, ``out.txt``/``err.txt``, apply as usual). On an exception
it appends the traceback to ``err.txt`` and writes a ``failed`` marker holding the
last line, so ``hessian-dg sweep status`` can tell a failed job from a running or
killed one. A job already ``done`` (with results) is skipped; otherwise the runner
makes the job's folder (a job never started has none: "not launched"), clears the
leftovers of an earlier attempt (a requeued, relaunched, interrupted or killed job:
DomainBed's train appends to ``results.jsonl``) and writes a ``running`` marker
(host, pid, process start time), removed when the job ends. A job whose marker
names a live process of this host is left to it (two launches of one sweep).

SIGINT (Ctrl-C in the terminal, which reaches the whole process group) or SIGTERM
(``scancel``, a launcher stopping its jobs) stops the job as *interrupted*, not
failed, whatever error the interrupt caused on its way out (a data-loader worker
that died with it, say): an ``interrupted`` marker names the signal, the exit
status is 128 + the signal's number, and the next launch runs the job again.

``--diagnose_max_examples N``, which comes first and never reaches DomainBed's
train (its arguments name the job's folder), asks for the transfer quantities of
:mod:`domainbed_patch.diagnose` at the end, on the model still in memory: no
``model.pkl`` is needed. A failure there is written to ``err.txt``; the training
stays done. ``--provenance JSON`` (after it; the sweep's preset, overrides and
protocol) and the software and device go to ``provenance.json``
(:mod:`domainbed_patch.provenance`), also kept out of DomainBed's train.
"""
import ast
import os
import signal
import sys
import time
import traceback
from pathlib import Path
from typing import List

from domainbed_patch import provenance
from domainbed_patch.domainbed_scripts import run_domainbed_script
from domainbed_patch.job_folder import ERROR_LOG, MODEL, RUNNING, JobFolder

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


class Interrupts:
    """SIGINT and SIGTERM raise KeyboardInterrupt once, and are remembered; a second
    signal (the terminal's and a launcher's, say) is ignored while the job winds down."""

    SIGNALS = (signal.SIGINT, signal.SIGTERM)

    def __init__(self):
        self.received = None
        for signum in self.SIGNALS:
            signal.signal(signum, self._handle)

    def _handle(self, signum, frame):
        if self.received is not None:
            return
        self.received = signal.Signals(signum)
        raise KeyboardInterrupt(self.received.name)


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
            f"its {MODEL} instead (hessian-dg diagnose), or use DomainBed at the "
            "pinned commit (hessian-dg doctor)")


def _module_level_names(tree: ast.Module) -> set:
    """Names a module binds outside functions and classes (``if __name__ ...`` blocks,
    loops and ``with`` statements included): what ``runpy`` leaves behind, read from
    the source, so a heuristic: a name bound and later ``del``-ed still counts."""
    names, todo = set(), list(tree.body)
    while todo:
        node = todo.pop()
        if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef, ast.ClassDef)):
            names.add(node.name)
            continue
        if isinstance(node, (ast.Import, ast.ImportFrom)):
            names.update((a.asname or a.name).split(".")[0] for a in node.names)
            continue
        for child in ast.iter_child_nodes(node):
            if isinstance(child, ast.Name) and isinstance(child.ctx, ast.Store):
                names.add(child.id)
            elif isinstance(child, (ast.stmt, ast.withitem, ast.excepthandler, ast.expr)):
                todo.append(child)
    return names


def train_namespace_missing(train_script: Path) -> List[str]:
    r"""What :data:`TRAIN_NAMESPACE` names DomainBed's ``train.py`` would not leave,
    read from its source before any job runs (``[]`` where all are there).

    >>> import tempfile
    >>> script = Path(tempfile.mkdtemp()) / "train.py"
    >>> _ = script.write_text("if __name__ == '__main__':\n    args = 1\n"
    ...                       "    for device in 'c':\n        hparams = algorithm = 0\n")
    >>> train_namespace_missing(script)
    []
    >>> _ = script.write_text("def main():\n    algorithm = args = hparams = device = 0\n")
    >>> train_namespace_missing(script)
    ['algorithm', 'args', 'hparams', 'device']
    """
    names = _module_level_names(ast.parse(Path(train_script).read_text()))
    return [name for name in TRAIN_NAMESPACE if name not in names]


def train_namespace_problem() -> str:
    """'' where the DomainBed found leaves what in-job diagnostics read; else one
    line saying what it lacks (``doctor`` and ``sweep launch`` with ``diagnose``)."""
    from domainbed_patch import locate
    script = locate.ensure_domainbed_importable().root / "domainbed" / "scripts" / "train.py"
    try:
        missing = train_namespace_missing(script)
    except (OSError, SyntaxError, ValueError) as error:
        return f"{script} cannot be read as Python ({error}): DomainBed's train cannot run"
    if not missing:
        return ""
    return (f"{script} leaves no module-level {', '.join(missing)}: in-job diagnostics "
            f"cannot be computed (each job says so in {ERROR_LOG}); diagnose the jobs "
            f"from their {MODEL} (hessian-dg diagnose), or use DomainBed at the pinned "
            "commit")


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
    if folder.is_done and folder.has_results:
        print(f"{output_dir}: already done, skipped")
        if max_examples is not None and not folder.diagnostics.exists():
            _diagnose_saved(output_dir, max_examples)  # killed while diagnosing
        return 0
    if folder.attempt == RUNNING:  # a live process of this host holds the job
        print(f"{output_dir}: already running ({folder.attempt_note()}), left to it")
        return 0
    interrupts = Interrupts()
    try:
        return _run(folder, argv, max_examples, interrupts)
    except KeyboardInterrupt:  # before or after the training's own handler
        if interrupts.received is None:
            raise
        if folder.path.is_dir():  # else stopped before it made its folder: not launched
            folder.mark_interrupted(interrupts.received.name)
        return 128 + interrupts.received


def _run(folder: JobFolder, argv, max_examples, interrupts: Interrupts) -> int:
    output_dir = str(folder.path)
    os.makedirs(output_dir, exist_ok=True)
    for path in folder.leftovers():
        if path.exists():
            path.unlink()
    folder.mark_running()
    argv = provenance.record_job(output_dir, argv)  # and drops --provenance
    namespace, start = {}, time.perf_counter()
    try:
        code = run_domainbed_script("train", argv, namespace=namespace)
    except BaseException as error:  # noqa: BLE001 - recorded, then reported by status
        text = traceback.format_exc()
        if interrupts.received is not None:  # whatever the interrupt raised on its way
            folder.append_error(f"interrupted by {interrupts.received.name}:\n{text}")
            folder.mark_interrupted(interrupts.received.name)
            return 128 + interrupts.received
        sys.stderr.write(text)
        folder.append_error(text)
        last = traceback.format_exception_only(type(error), error)[-1].strip()
        _write_failed(output_dir, last)
        folder.clear_running()
        return 1
    if code != 0:
        _write_failed(output_dir, f"exit status {code}")
    elif max_examples is not None:
        _diagnose(namespace, output_dir, max_examples, time.perf_counter() - start)
    folder.clear_running()
    return code


if __name__ == "__main__":
    status = main()
    # DomainBed's train leaves its data-loader workers running; an ordinary exit can
    # wait minutes on them (after an exception, especially). The job is over: leave.
    for stream in (sys.stdout, sys.stderr):
        stream.flush()
    os._exit(status)
