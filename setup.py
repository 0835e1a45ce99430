"""Installs ``hessian_dg_autoload.pth`` beside the packages, for both
``pip install .`` and ``pip install -e .``; everything else is in setup.cfg.

The .pth file's one line, ``import domainbed_patch.startup``, is what lets
DomainBed's own scripts see the plugin (see domainbed_patch/startup.py).
A regular install copies it from the build folder (``build_py``); an editable
install (PEP 660) writes only what its strategy says, so the strategy is wrapped
to add the same file to the editable wheel.
"""
import os

from setuptools import setup
from setuptools.command.build_py import build_py

PTH = "hessian_dg_autoload.pth"
PTH_SOURCE = os.path.join(os.path.dirname(os.path.abspath(__file__)),
                          "domainbed_patch", PTH)


class build_py_with_pth(build_py):
    """Copies the .pth file to the root of the build (site-packages once installed)."""

    def run(self):
        super().run()
        self.copy_file(PTH_SOURCE, os.path.join(self.build_lib, PTH), preserve_mode=0)

    def get_outputs(self, include_bytecode=True):
        return super().get_outputs(include_bytecode) + [os.path.join(self.build_lib, PTH)]


class _StrategyWithPth:
    """Wraps setuptools' editable strategy: same files, plus the .pth."""

    def __init__(self, strategy):
        self._strategy = strategy

    def __call__(self, wheel, files, mapping):
        self._strategy(wheel, files, mapping)
        with open(PTH_SOURCE, encoding="utf-8") as source:
            wheel.writestr(PTH, source.read())

    def __enter__(self):
        self._strategy.__enter__()
        return self

    def __exit__(self, *exc):
        return self._strategy.__exit__(*exc)


cmdclass = {"build_py": build_py_with_pth}
try:
    from setuptools.command.editable_wheel import editable_wheel

    class editable_wheel_with_pth(editable_wheel):
        def _select_strategy(self, *args, **kwargs):
            return _StrategyWithPth(super()._select_strategy(*args, **kwargs))

    cmdclass["editable_wheel"] = editable_wheel_with_pth
except ImportError:  # setuptools < 64: `pip install -e` goes through build_py
    pass

setup(cmdclass=cmdclass)
