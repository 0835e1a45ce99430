"""``validation``'s download commands name functions DomainBed's ``download.py`` has;
its command-line entry is no way to get the paper datasets."""
import ast
import re

import pytest

from domainbed_patch import validation

pytestmark = pytest.mark.integration

PAPER = ("PACS", "VLCS", "OfficeHome", "TerraIncognita", "DomainNet")


def _download_source():
    from domainbed_patch import locate
    root = locate.ensure_domainbed_importable().root
    return ast.parse((root / "domainbed" / "scripts" / "download.py").read_text())


def test_download_commands_name_each_datasets_function():
    """Every command names a function of the pinned download.py (or wilds' class),
    with the data folder; the entry point (``python -m domainbed.scripts.download``)
    calls download_terra_incognita alone, so it is never what the project advises."""
    tree = _download_source()
    functions = {node.name for node in tree.body if isinstance(node, ast.FunctionDef)}
    from domainbed import datasets
    for dataset in [*PAPER, "ColoredMNIST", "SVIRO", "SpawriousO2O_easy"]:
        command = validation.download_command(dataset, "/data/x")
        [called] = re.findall(r"import (\w+); \1\('/data/x'\)", command)
        assert called in functions, (dataset, command)
        assert dataset in datasets.DATASETS
    assert "FMoWDataset(root_dir='/data/x', download=True)" in \
        validation.download_command("WILDSFMoW", "/data/x")
    main = next(node for node in tree.body if isinstance(node, ast.If)
                and "__main__" in ast.unparse(node.test))
    called = {ast.unparse(node.func) for node in ast.walk(main) if isinstance(node, ast.Call)}
    assert {c for c in called if c.startswith("download_")} == {"download_terra_incognita"}
    assert "--data_dir" not in validation.download_command("Foo", "/data/x")
