"""``hessian-dg doctor``: what this environment has, and what to do about what it lacks."""
from __future__ import annotations

import platform
import sys

from domainbed_patch import locate


def _line(ok: bool, text: str) -> str:
    return f"  [{'ok' if ok else '!!'}] {text}"


def report(data_dir: str = "") -> tuple:
    """(lines, healthy) describing versions, DomainBed, the plugin and the datasets."""
    import torch

    import hessian_dg
    from domainbed_patch import registration, startup

    lines = [f"hessian-dg {hessian_dg.__version__}, Python {platform.python_version()}"]
    try:
        import torchvision
        vision = torchvision.__version__
    except ImportError:
        vision = "not installed (pip install 'hessian-dg[domainbed]')"
    lines.append(f"  torch {torch.__version__}, torchvision {vision}")
    if torch.cuda.is_available():
        names = ", ".join(torch.cuda.get_device_name(i) for i in range(torch.cuda.device_count()))
        lines.append(_line(True, f"CUDA {torch.version.cuda}: {names}"))
    else:
        lines.append(_line(True, "CUDA: not available, training runs on the CPU"))

    try:
        where = locate.ensure_domainbed_importable()
    except locate.DomainBedNotFoundError as error:
        lines.append(_line(False, str(error)))
        return lines, False
    pinned = where.commit == locate.PINNED_COMMIT
    lines.append(_line(True, f"DomainBed at {where.root} (found: {where.how})"))
    lines.append(_line(pinned, f"commit {where.commit or 'unknown'}"
                       + ("" if pinned else f"; hessian-dg is tested at {locate.PINNED_COMMIT}")))
    healthy = not startup.disabled()
    if not healthy:
        lines.append(_line(False, f"plugin switched off by {startup.DISABLE_VARIABLE}"))
    else:
        hooked = any(isinstance(f, startup.RegistrationHook) for f in sys.meta_path)
        lines.append(_line(hooked, "start-up hook installed" if hooked else
                           "start-up hook missing: reinstall with pip install -e ."))
        algorithms = locate.import_domainbed("algorithms").ALGORITHMS
        names = registration.PLUGIN_ALGORITHMS
        missing = [n for n in names if n not in algorithms]
        lines.append(_line(not missing, f"{' and '.join(names)} in DomainBed's registry"
                           + (f"; missing: {', '.join(missing)}" if missing else "")))
        registered = not missing
        from domainbed_patch.job_runner import TRAIN_NAMESPACE, train_namespace_problem
        problem = train_namespace_problem()
        lines.append(_line(not problem, problem or "DomainBed's train leaves what in-job "
                           f"diagnostics read ({', '.join(TRAIN_NAMESPACE)})"))
        healthy = hooked and registered and not problem

    from domainbed_patch import dataset_layout
    data_lines, data_healthy = dataset_layout.doctor_lines(data_dir)
    return lines + data_lines, healthy and data_healthy


def add_parser(subparsers) -> None:
    parser = subparsers.add_parser(
        "doctor", help="check the environment",
        description="versions, where DomainBed is and at which commit, the plugin's "
        "state, the layout of the datasets under --data_dir (folders, class counts, "
        "readable images) and of your own datasets, with what to do for each problem")
    parser.add_argument("--data_dir", default="")
    parser.set_defaults(func=run)


def run(args) -> int:
    lines, healthy = report(args.data_dir or "")
    print("\n".join(lines))
    return 0 if healthy else 1
