"""Sweep presets, as data: one TOML file per preset in this folder.

Read by :mod:`domainbed_patch.presets`; see that module for the fields.
"""
from pathlib import Path

PRESET_DIR = Path(__file__).resolve().parent


def preset_names() -> list:
    """Names of the presets shipped here, e.g. ``['paper_domainbed', 'smoke']``."""
    return sorted(p.stem for p in PRESET_DIR.glob("*.toml"))
