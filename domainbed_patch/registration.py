"""What hessian-dg changes in DomainBed, all in one place, and how to undo it.

:func:`register` (idempotent) makes, in the running process only:

- ``domainbed.algorithms.HGP`` and ``.Hutchinson`` attributes (so DomainBed's
  ``get_algorithm_class``, which looks names up in the module's globals, finds
  them) and appends both names to ``domainbed.algorithms.ALGORITHMS``;
- ``domainbed.hparams_registry._hparams`` a wrapper that adds the plugin's
  hparams (declared in :mod:`domainbed_patch.hparams`) for those two names, so
  ``default_hparams`` and ``random_hparams`` serve them, seeded per name as
  DomainBed seeds its own.

- ``domainbed.datasets`` a class per own image-folder dataset of the user's
  registry, its name in ``DATASETS`` (:mod:`domainbed_patch.own_datasets`).

No file of DomainBed is edited. :func:`unregister` restores the modules.

A name DomainBed already has (the authors' fork defines its own ``HGP`` and
``Hutchinson``) is left to DomainBed: its algorithm class and its hparams stay as
they are, the plugin registers only the names DomainBed lacks, and says so once
per process with a :class:`DomainBedAlreadyDefinesWarning` naming
``HESSIAN_DG_DISABLE``. So the fork's own ``train`` runs with the plugin installed.
"""
from __future__ import annotations

import importlib
import sys
import warnings

from domainbed_patch.hparams import HPARAMS

PLUGIN_ALGORITHMS = tuple(HPARAMS)
_ORIGINAL = "_hessian_dg_original"


class DomainBedAlreadyDefinesWarning(UserWarning):
    """DomainBed defines a name of the plugin's; DomainBed's own is kept."""


class DomainBedCompatibilityWarning(UserWarning):
    """The DomainBed found lacks something the plugin relies on."""


#: module -> attributes the plugin relies on.
REQUIRED = {
    "domainbed.algorithms": ("Algorithm", "ALGORITHMS", "get_algorithm_class"),
    "domainbed.hparams_registry": ("_hparams", "default_hparams", "random_hparams"),
    "domainbed.networks": ("Featurizer", "Classifier"),
    "domainbed.datasets": ("DATASETS", "get_dataset_class", "num_environments",
                           "MultipleEnvironmentImageFolder"),
    "domainbed.lib.misc": ("seed_hash",),
}


def missing_features(module_name: str, module) -> list:
    """Names in :data:`REQUIRED` that ``module`` lacks."""
    return [a for a in REQUIRED.get(module_name, ()) if not hasattr(module, a)]


def _warn_if_incompatible(module_name: str, module) -> bool:
    missing = missing_features(module_name, module)
    if missing:
        from domainbed_patch.locate import PINNED_COMMIT
        warnings.warn(
            f"{module_name} lacks {missing}, which hessian-dg relies on; its "
            f"registration there is skipped. Use DomainBed at commit {PINNED_COMMIT}.",
            DomainBedCompatibilityWarning, stacklevel=3)
    return not missing


#: plugin names that DomainBed defines itself, and so keeps (filled as found).
LEFT_TO_DOMAINBED: set = set()
_said = []


def _leave_to_domainbed(name: str, what: str) -> None:
    """Record that DomainBed keeps its own ``name``; warn once per process."""
    LEFT_TO_DOMAINBED.add(name)
    if not _said:
        _said.append(name)
        from domainbed_patch.startup import DISABLE_VARIABLE
        warnings.warn(
            f"DomainBed already defines {what}; hessian-dg leaves DomainBed's own "
            f"{sorted(PLUGIN_ALGORITHMS)} alone wherever it defines them and registers "
            f"only what it lacks. Set {DISABLE_VARIABLE}=1 to run without the plugin.",
            DomainBedAlreadyDefinesWarning, stacklevel=4)


#: The plugin's algorithms module, which imports ``domainbed.algorithms`` itself.
OURS = "domainbed_patch.algorithms"
#: ``domainbed.algorithms`` modules whose registration waits for :data:`OURS` to finish.
_waiting: list = []


def _ours_half_built() -> bool:
    """True while :data:`OURS` runs its own body (it is in ``sys.modules`` but its
    classes are not defined yet): it imported DomainBed, whose hook is now here."""
    ours = sys.modules.get(OURS)
    return ours is not None and not all(hasattr(ours, n) for n in PLUGIN_ALGORITHMS)


def register_algorithms(module=None) -> None:
    """Add HGP and Hutchinson to ``domainbed.algorithms`` (idempotent); a name
    DomainBed already defines is left as it is.

    Called by the start-up hook while the plugin's own algorithms module is still
    being built (a process whose first import is ``domainbed_patch.algorithms``),
    it waits: that module calls :func:`finish_waiting_registrations` at its end.
    """
    module = module or importlib.import_module("domainbed.algorithms")
    if not _warn_if_incompatible("domainbed.algorithms", module):
        return
    if _ours_half_built():
        if all(module is not m for m in _waiting):
            _waiting.append(module)
        return
    from domainbed_patch import algorithms as ours
    for name in PLUGIN_ALGORITHMS:
        cls = getattr(ours, name)
        existing = getattr(module, name, None)
        if existing is cls:
            if name not in module.ALGORITHMS:
                module.ALGORITHMS.append(name)
            continue
        if existing is not None or name in module.ALGORITHMS:
            _leave_to_domainbed(name, f"an algorithm named {name!r}")
            continue
        setattr(module, name, cls)
        module.ALGORITHMS.append(name)


def finish_waiting_registrations() -> None:
    """Register in the ``domainbed.algorithms`` modules that :func:`register_algorithms`
    left waiting; called at the end of :data:`OURS`, once its classes exist."""
    while _waiting:
        register_algorithms(_waiting.pop(0))


def _with_plugin_hparams(original):
    def _hparams(algorithm, dataset, random_seed):
        hparams = original(algorithm, dataset, random_seed)
        specs = HPARAMS.get(algorithm, ())
        declared = [spec.name for spec in specs if spec.name in hparams]
        if declared:
            _leave_to_domainbed(algorithm, f"hparam {declared[0]!r} for {algorithm}")
        if declared or algorithm in LEFT_TO_DOMAINBED:
            return hparams
        for spec in specs:
            hparams[spec.name] = (spec.default, spec.random(random_seed))
        return hparams

    setattr(_hparams, _ORIGINAL, original)
    _hparams.__doc__ = original.__doc__
    return _hparams


def register_hparams(module=None) -> None:
    """Serve the plugin's hparams from ``domainbed.hparams_registry`` (idempotent)."""
    module = module or importlib.import_module("domainbed.hparams_registry")
    if not _warn_if_incompatible("domainbed.hparams_registry", module):
        return
    if not hasattr(module._hparams, _ORIGINAL):
        module._hparams = _with_plugin_hparams(module._hparams)


def register_datasets(module=None) -> None:
    """Serve the user's own datasets from ``domainbed.datasets`` (idempotent)."""
    module = module or importlib.import_module("domainbed.datasets")
    if _warn_if_incompatible("domainbed.datasets", module):
        from domainbed_patch import own_datasets
        own_datasets.register_datasets(module)


def keep_own_datasets_out_of_sweep_defaults(module) -> None:
    """DomainBed's sweep module, imported: its default dataset list stays DomainBed's."""
    from domainbed_patch import own_datasets
    own_datasets.keep_out_of_sweep_defaults(module)


def register() -> None:
    """Register algorithms, hparams and own datasets with DomainBed (imports it)."""
    register_hparams()
    register_algorithms()
    register_datasets()


def is_registered() -> bool:
    """True when every plugin name is served: by the plugin, or by DomainBed itself."""
    import domainbed.algorithms as algorithms
    import domainbed.hparams_registry as registry
    return (all(n in algorithms.ALGORITHMS and hasattr(algorithms, n)
                for n in PLUGIN_ALGORITHMS)
            and hasattr(registry._hparams, _ORIGINAL))


def unregister() -> None:
    """Undo :func:`register` in this process (DomainBed's own names stay)."""
    import domainbed.algorithms as algorithms
    import domainbed.hparams_registry as registry

    from domainbed_patch import algorithms as ours
    for name in PLUGIN_ALGORITHMS:
        if getattr(algorithms, name, None) is not getattr(ours, name):
            continue
        while name in algorithms.ALGORITHMS:
            algorithms.ALGORITHMS.remove(name)
        delattr(algorithms, name)
    LEFT_TO_DOMAINBED.clear()
    _said.clear()
    original = getattr(registry._hparams, _ORIGINAL, None)
    if original is not None:
        registry._hparams = original
    from domainbed_patch import own_datasets
    own_datasets.unregister_datasets()
