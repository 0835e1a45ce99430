"""Sweep presets: TOML files in ``sweeps/``, validated field by field.

A preset names what DomainBed's ``sweep`` script takes as flags (same names), plus
``protocol`` ("paper" or "upstream", see :mod:`domainbed_patch.protocol`), an
``[hparams]`` table of fixed hparams for every job, and a ``[launcher]`` table.

Every field can be overridden from the command line with ``--set key=value``
(``value`` in TOML syntax, dotted keys for tables: ``--set launcher.partition="a100"``,
``--set hparams.batch_size=16``). Errors name the file, the key and what is valid.
"""
from __future__ import annotations

import copy
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Dict, Optional, Sequence

try:
    import tomllib
except ModuleNotFoundError:  # Python < 3.11
    import tomli as tomllib

from sweeps import PRESET_DIR, preset_names

DEFAULT_PRESET = "smoke"
PROTOCOLS = ("paper", "upstream")
TASKS = ("domain_generalization", "domain_adaptation")


class PresetError(ValueError):
    """A preset file or override is not valid."""


def _is_int(v):
    return isinstance(v, int) and not isinstance(v, bool)


def _is_str_list(v):
    return isinstance(v, list) and all(isinstance(x, str) for x in v) and len(v) > 0


#: top-level field -> (check, description, default)
FIELDS: Dict[str, tuple] = {
    "description": (lambda v: isinstance(v, str), "a string", ""),
    "datasets": (_is_str_list, "a non-empty list of DomainBed dataset names", None),
    "algorithms": (_is_str_list, "a non-empty list of algorithm names", None),
    "n_hparams_from": (lambda v: _is_int(v) and v >= 0, "an integer >= 0", 0),
    "n_hparams": (lambda v: _is_int(v) and v >= 1, "an integer >= 1", 20),
    "n_trials": (lambda v: _is_int(v) and v >= 1, "an integer >= 1", 3),
    "steps": (lambda v: v is None or (_is_int(v) and v >= 1),
              "an integer >= 1 (omit for DomainBed's per-dataset default)", None),
    "single_test_envs": (lambda v: isinstance(v, bool), "true or false", True),
    "test_envs": (lambda v: isinstance(v, list) and all(
        isinstance(e, list) and all(_is_int(i) and i >= 0 for i in e) for e in v),
        "a list of test-environment lists, e.g. [[0], [1]] (omit for all)", []),
    "holdout_fraction": (lambda v: isinstance(v, (int, float)) and not isinstance(v, bool)
                         and 0 < v < 1, "a number in (0, 1)", 0.2),
    "protocol": (lambda v: v in PROTOCOLS, f"one of {list(PROTOCOLS)}", "paper"),
    "task": (lambda v: v in TASKS, f"one of {list(TASKS)}", "domain_generalization"),
    "output_dir": (lambda v: isinstance(v, str) and v != "", "a non-empty path", None),
    "data_dir": (lambda v: isinstance(v, str), "a path", ""),
    "hparams": (lambda v: isinstance(v, dict), "a table of hparam = value", {}),
    "launcher": (lambda v: isinstance(v, dict), "a table", {}),
}

#: [launcher] field -> (check, description)
LAUNCHER_FIELDS: Dict[str, tuple] = {
    "name": (lambda v: isinstance(v, str), "a launcher name"),
    "max_parallel": (lambda v: _is_int(v) and v >= 1, "an integer >= 1"),
    "partition": (lambda v: isinstance(v, str), "a Slurm partition name"),
    "account": (lambda v: isinstance(v, str), "a Slurm account"),
    "gpus_per_job": (lambda v: _is_int(v) and v >= 0, "an integer >= 0"),
    "cpus_per_job": (lambda v: _is_int(v) and v >= 1, "an integer >= 1"),
    "mem_gb": (lambda v: _is_int(v) and v >= 1, "an integer >= 1"),
    "time_limit_minutes": (lambda v: _is_int(v) and v >= 1, "an integer >= 1"),
    "max_concurrent": (lambda v: _is_int(v) and v >= 1, "an integer >= 1"),
    "requeue": (lambda v: isinstance(v, bool), "true or false"),
    "log_dir": (lambda v: isinstance(v, str), "a path"),
}


@dataclass(frozen=True)
class SweepPreset:
    """A validated sweep; field names are DomainBed's sweep flags where they exist."""

    name: str
    source: str
    datasets: tuple
    algorithms: tuple
    output_dir: str
    description: str = ""
    n_hparams_from: int = 0
    n_hparams: int = 20
    n_trials: int = 3
    steps: Optional[int] = None
    single_test_envs: bool = True
    test_envs: tuple = ()
    holdout_fraction: float = 0.2
    protocol: str = "paper"
    task: str = "domain_generalization"
    data_dir: str = ""
    hparams: Dict[str, Any] = field(default_factory=dict)
    launcher: Dict[str, Any] = field(default_factory=dict)


def preset_path(name_or_path: str) -> Path:
    """A shipped preset's file from its name, or the given ``.toml`` path."""
    if name_or_path.endswith(".toml") or "/" in name_or_path:
        path = Path(name_or_path)
        if not path.is_file():
            raise PresetError(f"preset file {name_or_path} does not exist")
        return path
    path = PRESET_DIR / f"{name_or_path}.toml"
    if not path.is_file():
        raise PresetError(f"unknown preset {name_or_path!r}; choose one of "
                          f"{preset_names()} or give a path to a .toml file")
    return path


def parse_override(text: str) -> tuple:
    """``"a.b=1"`` -> ``(["a", "b"], 1)``; the value is TOML, else a bare string."""
    if "=" not in text:
        raise PresetError(f"override {text!r} is not of the form key=value")
    key, raw = text.split("=", 1)
    try:
        value = tomllib.loads(f"v = {raw}")["v"]
    except tomllib.TOMLDecodeError:
        value = raw
    return key.strip().split("."), value


def apply_overrides(data: dict, overrides: Sequence[str]) -> dict:
    data = copy.deepcopy(data)
    for text in overrides:
        keys, value = parse_override(text)
        target = data
        for key in keys[:-1]:
            target = target.setdefault(key, {})
            if not isinstance(target, dict):
                raise PresetError(f"override {text!r}: {key!r} is not a table")
        target[keys[-1]] = value
    return data


def _check_names(where: str, key: str, values, valid) -> None:
    unknown = [v for v in values if v not in valid]
    if unknown:
        raise PresetError(f"{where}: {key} has unknown {unknown}; valid names are "
                          f"{sorted(valid)}")


def validate(data: dict, where: str, known_datasets=None, known_algorithms=None) -> dict:
    """Check every field; return the data with defaults filled in."""
    unknown = sorted(set(data) - set(FIELDS))
    if unknown:
        raise PresetError(f"{where}: unknown key(s) {unknown}; valid keys are {sorted(FIELDS)}")
    filled = {}
    for key, (check, description, default) in FIELDS.items():
        if key not in data:
            if default is None and key != "steps":
                raise PresetError(f"{where}: missing key {key!r} ({description})")
            filled[key] = copy.deepcopy(default)
            continue
        if not check(data[key]):
            raise PresetError(f"{where}: {key} = {data[key]!r} is not valid; expected "
                              f"{description}")
        filled[key] = data[key]
    launcher = filled["launcher"]
    bad = sorted(set(launcher) - set(LAUNCHER_FIELDS))
    if bad:
        raise PresetError(f"{where}: unknown key(s) {bad} in [launcher]; valid keys are "
                          f"{sorted(LAUNCHER_FIELDS)}")
    for key, value in launcher.items():
        check, description = LAUNCHER_FIELDS[key]
        if not check(value):
            raise PresetError(f"{where}: launcher.{key} = {value!r} is not valid; "
                              f"expected {description}")
    if known_datasets is not None:
        _check_names(where, "datasets", filled["datasets"], known_datasets)
    if known_algorithms is not None:
        _check_names(where, "algorithms", filled["algorithms"], known_algorithms)
    return filled


def load_preset(name_or_path: str = DEFAULT_PRESET, overrides: Sequence[str] = (),
                known_datasets=None, known_algorithms=None) -> SweepPreset:
    """Read, override and validate a preset. Names are checked against the known
    datasets/algorithms when given (DomainBed's lists)."""
    path = preset_path(name_or_path)
    try:
        data = tomllib.loads(path.read_text())
    except tomllib.TOMLDecodeError as error:
        raise PresetError(f"{path}: not valid TOML: {error}") from None
    where = str(path) + (f" (with overrides {list(overrides)})" if overrides else "")
    filled = validate(apply_overrides(data, overrides), where, known_datasets,
                      known_algorithms)
    filled["datasets"] = tuple(filled["datasets"])
    filled["algorithms"] = tuple(filled["algorithms"])
    filled["test_envs"] = tuple(tuple(e) for e in filled["test_envs"])
    return SweepPreset(name=path.stem, source=str(path), **filled)
