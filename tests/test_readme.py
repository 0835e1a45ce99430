"""The README says what the code does: its hparam table is the registry's, its
Layout names every module."""
import re
from pathlib import Path

from domainbed_patch.hparams import HPARAMS

README = Path(__file__).resolve().parents[1] / "README.md"
ROW = re.compile(r"^\| (HGP|Hutchinson) \| `(\w+)`[^|]* \| ([^|]+) \| ([^|]+) \|$")


def _value(text: str):
    text = text.strip()
    return {"true": True, "false": False}.get(text.lower(), text)


def _number_or_text(value):
    try:
        return float(value)
    except (TypeError, ValueError):
        return value


def test_readme_hparam_table_is_the_registry():
    rows = {}
    for line in README.read_text().splitlines():
        match = ROW.match(line.strip())
        if match:
            algorithm, name, default, random = match.groups()
            rows[(algorithm, name)] = (_value(default), _value(random))
    declared = {(algorithm, spec.name): spec for algorithm, specs in HPARAMS.items()
                for spec in specs}
    assert set(rows) == set(declared)
    for key, (default, random) in rows.items():
        spec = declared[key]
        assert _number_or_text(default) == _number_or_text(spec.default), key
        expected_random = str(spec.distribution)
        if expected_random in ("True", "False"):
            expected_random = expected_random == "True"
        assert _number_or_text(random) == _number_or_text(expected_random), key


def test_the_layout_names_every_module():
    """Every module of the four packages is named in the README's Layout section
    (``report/``'s modules in its line), so a new module cannot go unmentioned."""
    layout = README.read_text().split("\n## Layout\n")[1].split("\n## ")[0]
    root = README.parent
    unnamed = []
    for package in ("hessian_dg", "domainbed_patch", "colored_mnist", "hessian_dg_cli"):
        assert f"`{package}" in layout, package
        for module in (root / package).rglob("*.py"):
            if module.stem.startswith("_"):
                continue
            if not re.search(rf"`{module.stem}(\.py)?`", layout):
                unnamed.append(str(module.relative_to(root)))
    assert not unnamed, f"modules the README's Layout does not name: {unnamed}"
