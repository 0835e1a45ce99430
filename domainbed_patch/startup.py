"""Plugs hessian-dg into DomainBed at interpreter start, with nothing to import.

The installed file ``hessian_dg_autoload.pth`` (in site-packages) holds one line,
``import domainbed_patch.startup``, which Python's ``site`` runs at every start.
This module then installs two finders on ``sys.meta_path`` and does nothing else:
it imports neither torch, numpy nor DomainBed, so a process that never imports
DomainBed pays two list insertions.

- :class:`RegistrationHook` (first on ``sys.meta_path``): when
  ``domainbed.algorithms`` or ``domainbed.hparams_registry`` is imported, its
  module runs as usual and then :mod:`domainbed_patch.registration` adds HGP and
  Hutchinson to it (and, to ``domainbed.datasets``, the user's own datasets). This
  is how DomainBed's own ``train``, ``sweep`` (whose jobs are new processes),
  ``collect_results`` and unit tests see the plugin.
- :class:`~domainbed_patch.locate.DomainBedFinder` (last): serves ``domainbed``
  from ``$DOMAINBED_ROOT`` or the cache location when it is not importable.

Set ``HESSIAN_DG_DISABLE=1`` to switch all of this off.
"""
import importlib.abc
import os
import sys

DISABLE_VARIABLE = "HESSIAN_DG_DISABLE"

#: module imported by DomainBed -> registration function applied right after it runs.
HOOKED_MODULES = {"domainbed.algorithms": "register_algorithms",
                  "domainbed.hparams_registry": "register_hparams",
                  "domainbed.datasets": "register_datasets",
                  "domainbed.scripts.sweep": "keep_own_datasets_out_of_sweep_defaults"}


def disabled() -> bool:
    """True when ``$HESSIAN_DG_DISABLE`` is set to anything but '', 0, false or no."""
    return os.environ.get(DISABLE_VARIABLE, "").strip().lower() not in ("", "0", "false", "no")


class _RegisteringLoader(importlib.abc.Loader):
    """Runs the real loader, then registers the plugin in the fresh module."""

    def __init__(self, loader, registration_function):
        self._loader = loader
        self._registration_function = registration_function

    def create_module(self, spec):
        return self._loader.create_module(spec)

    def exec_module(self, module):
        self._loader.exec_module(module)
        from domainbed_patch import registration
        getattr(registration, self._registration_function)(module)

    def __getattr__(self, name):  # get_source, get_code, ... for tracebacks and runpy
        return getattr(self._loader, name)


class RegistrationHook(importlib.abc.MetaPathFinder):
    """Wraps the loader of the modules in :data:`HOOKED_MODULES`."""

    def find_spec(self, fullname, path=None, target=None):
        function = HOOKED_MODULES.get(fullname)
        if function is None:
            return None
        for finder in sys.meta_path:
            if finder is self or not hasattr(finder, "find_spec"):
                continue
            spec = finder.find_spec(fullname, path, target)
            if spec is not None:
                if spec.loader is not None:
                    spec.loader = _RegisteringLoader(spec.loader, function)
                return spec
        return None


def install() -> None:
    """Install both finders (once)."""
    from domainbed_patch.locate import install_finder
    if not any(isinstance(f, RegistrationHook) for f in sys.meta_path):
        sys.meta_path.insert(0, RegistrationHook())
    install_finder()


if not disabled():
    try:
        install()
    except Exception as error:  # noqa: BLE001 - never break interpreter start-up
        sys.stderr.write(f"hessian-dg: start-up hook not installed: {error!r}\n")
