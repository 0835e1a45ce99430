"""Sweep presets: TOML files in ``sweeps/``, validated field by field.

A preset names what DomainBed's ``sweep`` script takes as flags (same names), plus
``protocol`` ("paper" or "upstream", see :mod:`domainbed_patch.protocol`), an
``[hparams]`` table of fixed hparams for every job, and a ``[launcher]`` table.
Each field is declared once, in :class:`SweepPreset` (type, default, check, doc);
validation, defaults and the error messages all read that declaration.

Overrides are one mapping ``{dotted.key: value}`` (:func:`parse_overrides` turns
``--set key=value`` texts into it, values in TOML syntax: ``--set
launcher.partition="a100"``, ``--set hparams.batch_size=16``). Errors name the
file, the key and what is valid.
"""
from __future__ import annotations

import copy
import dataclasses
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Dict, Iterable, Mapping, Optional

try:
    import tomllib
except ModuleNotFoundError:  # Python < 3.11
    import tomli as tomllib

from domainbed_patch.errors import UserError
from sweeps import PRESET_DIR, preset_names

DEFAULT_PRESET = "smoke"
PROTOCOLS = ("paper", "upstream")
TASKS = ("domain_generalization", "domain_adaptation")
REQUIRED = object()  # a field without a default


class PresetError(UserError, ValueError):
    """A preset file or override is not valid."""


def _is_int(v, minimum):
    return isinstance(v, int) and not isinstance(v, bool) and v >= minimum


def _is_names(v):
    return isinstance(v, (list, tuple)) and len(v) > 0 and all(isinstance(x, str) for x in v)


def _is_test_envs(v):
    return isinstance(v, (list, tuple)) and all(
        isinstance(e, (list, tuple)) and all(_is_int(i, 0) for i in e) for e in v)


def _is_fraction(v):
    return isinstance(v, (int, float)) and not isinstance(v, bool) and 0 < v < 1


def _spec(default, check, doc, convert=None):
    """A preset field: its default (or REQUIRED), check, doc and conversion."""
    metadata = {"check": check, "doc": doc, "convert": convert or (lambda v: v)}
    if isinstance(default, (dict, list)):
        return dataclasses.field(default_factory=lambda: copy.deepcopy(default),
                                 metadata=metadata)
    return dataclasses.field(default=default, metadata=metadata)


def _tuple_of_tuples(value):
    return tuple(tuple(e) for e in value)


@dataclass(frozen=True)
class SweepPreset:
    """A validated sweep; field names are DomainBed's sweep flags where they exist."""

    name: str
    source: str
    datasets: tuple = _spec(REQUIRED, _is_names,
                            "a non-empty list of DomainBed dataset names", tuple)
    algorithms: tuple = _spec(REQUIRED, _is_names, "a non-empty list of algorithm names",
                              tuple)
    output_dir: str = _spec(REQUIRED, lambda v: isinstance(v, str) and v != "",
                            "a non-empty path")
    description: str = _spec("", lambda v: isinstance(v, str), "a string")
    n_hparams_from: int = _spec(0, lambda v: _is_int(v, 0), "an integer >= 0")
    n_hparams: int = _spec(20, lambda v: _is_int(v, 1), "an integer >= 1")
    n_trials: int = _spec(3, lambda v: _is_int(v, 1), "an integer >= 1")
    steps: Optional[int] = _spec(None, lambda v: v is None or _is_int(v, 1),
                                 "an integer >= 1 (omit for DomainBed's per-dataset default)")
    single_test_envs: bool = _spec(True, lambda v: isinstance(v, bool), "true or false")
    test_envs: tuple = _spec((), _is_test_envs, "a list of test-environment lists, e.g. "
                             "[[0], [1]] (omit for all)", _tuple_of_tuples)
    holdout_fraction: float = _spec(0.2, _is_fraction, "a number in (0, 1)")
    protocol: str = _spec("paper", lambda v: v in PROTOCOLS, f"one of {list(PROTOCOLS)}")
    task: str = _spec("domain_generalization", lambda v: v in TASKS, f"one of {list(TASKS)}")
    data_dir: str = _spec("", lambda v: isinstance(v, str), "a path")
    diagnose: bool = _spec(False, lambda v: isinstance(v, bool), "true or false: "
                           "compute hessian-dg diagnose's quantities at the end of "
                           "each job, on the model in memory")
    diagnose_max_examples: int = _spec(2000, lambda v: _is_int(v, 0),
                                       "an integer >= 0: examples per environment for "
                                       "diagnose (0: all)")
    hparams: Dict[str, Any] = _spec({}, lambda v: isinstance(v, dict),
                                    "a table of hparam = value")
    own_datasets: Dict[str, str] = _spec(
        {}, lambda v: isinstance(v, dict) and all(isinstance(f, str) and f for f in v.values()),
        "a table of dataset name = image folder (registered as hessian-dg dataset add "
        "does, before the sweep is planned)")
    launcher: Dict[str, Any] = _spec({}, lambda v: isinstance(v, dict), "a table")


#: the fields a preset file declares (all but ``name`` and ``source``).
FIELDS = {f.name: f for f in dataclasses.fields(SweepPreset) if f.metadata}

#: [launcher] field -> (check, description). Every key is optional.
LAUNCHER_FIELDS: Dict[str, tuple] = {
    "name": (lambda v: isinstance(v, str), "a launcher name"),
    "max_parallel": (lambda v: _is_int(v, 1), "an integer >= 1"),
    "partition": (lambda v: isinstance(v, str), "a Slurm partition name"),
    "account": (lambda v: isinstance(v, str), "a Slurm account"),
    "gpus_per_job": (lambda v: _is_int(v, 0), "an integer >= 0"),
    "cpus_per_job": (lambda v: _is_int(v, 1), "an integer >= 1"),
    "mem_gb": (lambda v: _is_int(v, 1), "an integer >= 1"),
    "time_limit_minutes": (lambda v: _is_int(v, 1), "an integer >= 1"),
    "max_concurrent": (lambda v: _is_int(v, 1), "an integer >= 1"),
    "requeue": (lambda v: isinstance(v, bool), "true or false"),
    "log_dir": (lambda v: isinstance(v, str), "a path"),
}


def preset_path(name_or_path: str) -> Path:
    """A shipped preset's file from its name, or the given ``.toml`` path."""
    if name_or_path.endswith(".toml") or "/" in name_or_path:
        path = Path(name_or_path)
        if path.is_dir():
            raise PresetError(f"preset file {name_or_path} is a folder, not a .toml file")
        if not path.is_file():
            raise PresetError(f"preset file {name_or_path} does not exist")
        return path
    path = PRESET_DIR / f"{name_or_path}.toml"
    if not path.is_file():
        raise PresetError(f"unknown preset {name_or_path!r}; choose one of "
                          f"{preset_names()} or give a path to a .toml file")
    return path


def parse_overrides(texts: Iterable[str]) -> Dict[str, Any]:
    """``["a.b=1", 'c="x"']`` -> ``{"a.b": 1, "c": "x"}``; values are TOML, else a
    bare string."""
    overrides = {}
    for text in texts:
        if "=" not in text:
            raise PresetError(f"override {text!r} is not of the form key=value")
        key, raw = text.split("=", 1)
        try:
            value = tomllib.loads(f"v = {raw}")["v"]
        except tomllib.TOMLDecodeError:
            value = raw
        overrides[key.strip()] = value
    return overrides


def apply_overrides(data: dict, overrides: Mapping[str, Any]) -> dict:
    """``data`` with each ``{dotted.key: value}`` set (tables created as needed)."""
    data = copy.deepcopy(data)
    for dotted, value in overrides.items():
        keys = dotted.split(".")
        target = data
        for key in keys[:-1]:
            target = target.setdefault(key, {})
            if not isinstance(target, dict):
                raise PresetError(f"override {dotted}={value!r}: {key!r} is not a table")
        target[keys[-1]] = value
    return data


def _check_names(where: str, key: str, values, valid) -> None:
    unknown = [v for v in values if v not in valid]
    if unknown:
        raise PresetError(f"{where}: {key} has unknown {unknown}; valid names are "
                          f"{sorted(valid)}")


def _check_launcher(where: str, launcher: dict) -> None:
    bad = sorted(set(launcher) - set(LAUNCHER_FIELDS))
    if bad:
        raise PresetError(f"{where}: unknown key(s) {bad} in [launcher]; valid keys are "
                          f"{sorted(LAUNCHER_FIELDS)}")
    for key, value in launcher.items():
        check, description = LAUNCHER_FIELDS[key]
        if not check(value):
            raise PresetError(f"{where}: launcher.{key} = {value!r} is not valid; "
                              f"expected {description}")


def validate(data: dict, where: str, known_datasets=None, known_algorithms=None) -> dict:
    """Check every field against :class:`SweepPreset`; return the converted values,
    defaults filled in."""
    unknown = sorted(set(data) - set(FIELDS))
    if unknown:
        raise PresetError(f"{where}: unknown key(s) {unknown}; valid keys are {sorted(FIELDS)}")
    values = {}
    for key, spec in FIELDS.items():
        doc, check = spec.metadata["doc"], spec.metadata["check"]
        if key not in data:
            if spec.default is REQUIRED:
                raise PresetError(f"{where}: missing key {key!r} ({doc})")
            continue  # the dataclass supplies the default
        if not check(data[key]):
            raise PresetError(f"{where}: {key} = {data[key]!r} is not valid; expected {doc}")
        values[key] = spec.metadata["convert"](data[key])
    _check_launcher(where, values.get("launcher", {}))
    if known_datasets is not None:
        _check_names(where, "datasets", values["datasets"], known_datasets)
    if known_algorithms is not None:
        _check_names(where, "algorithms", values["algorithms"], known_algorithms)
    return values


def load_preset(name_or_path: str = DEFAULT_PRESET,
                overrides: Optional[Mapping[str, Any]] = None,
                known_datasets=None, known_algorithms=None) -> SweepPreset:
    """Read, override and validate a preset. Names are checked against the known
    datasets/algorithms when given (DomainBed's lists)."""
    overrides = dict(overrides or {})
    path = preset_path(name_or_path)
    try:
        data = tomllib.loads(path.read_bytes().decode("utf-8"))
    except UnicodeDecodeError as error:
        raise PresetError(f"{path}: not a TOML text file (not UTF-8: byte "
                          f"{error.object[error.start]:#04x} at offset {error.start})") from None
    except OSError as error:
        raise PresetError(f"{path}: cannot be read ({error.strerror})") from None
    except tomllib.TOMLDecodeError as error:
        raise PresetError(f"{path}: not valid TOML: {error}") from None
    where = str(path) + (f" (with overrides {overrides})" if overrides else "")
    values = validate(apply_overrides(data, overrides), where, known_datasets,
                      known_algorithms)
    return SweepPreset(name=path.stem, source=str(path), **values)
