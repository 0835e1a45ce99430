"""Running DomainBed's own scripts (``domainbed.scripts.*``) in this process.

They keep all their logic under ``if __name__ == "__main__"``, so they run through
``runpy`` with ``sys.argv`` set, exactly as ``python -m domainbed.scripts.NAME``
would run them; ``sys.argv``, ``sys.stdout`` and ``sys.stderr`` (which they replace
with their log tees) are restored afterwards.
"""
import runpy
import sys


def run_domainbed_script(name: str, argv) -> int:
    """``python -m domainbed.scripts.<name> <argv>``, in-process; its exit status."""
    module = f"domainbed.scripts.{name}"
    saved = sys.argv, sys.stdout, sys.stderr
    sys.argv = [module, *argv]
    try:
        runpy.run_module(module, run_name="__main__", alter_sys=True)
    except SystemExit as exit_:
        return exit_.code if isinstance(exit_.code, int) else (0 if exit_.code is None else 1)
    finally:
        for stream in (sys.stdout, sys.stderr):
            if stream not in saved:
                stream.flush()
        sys.argv, sys.stdout, sys.stderr = saved
    return 0
