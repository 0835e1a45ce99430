"""What ``hessian-dg`` imports: only the chosen command's module, so that listing the
commands and setting up DomainBed need neither torch nor pandas, and Colored MNIST
runs without pandas; and which package may import which (an AST scan)."""
import ast
import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

import hessian_dg_cli

ROOT = Path(__file__).resolve().parents[2]
HEAVY = ("torch", "pandas", "domainbed")

#: sitecustomize for the child: pandas cannot be imported (as after
#: ``pip install -e ".[cmnist]"``), and the modules loaded at exit are written out.
SITECUSTOMIZE = '''
import atexit, json, os, sys

class _NoPandas:
    def find_spec(self, name, path=None, target=None):
        if name == "pandas" or name.startswith("pandas."):
            raise ModuleNotFoundError(f"No module named {name!r}", name=name)

sys.meta_path.insert(0, _NoPandas())

@atexit.register
def _write_loaded():
    with open(os.environ["LOADED_MODULES_FILE"], "w") as out:
        json.dump(sorted(sys.modules), out)
'''


def _command():
    found = shutil.which("hessian-dg")  # the installed entry point, if on PATH
    return [found] if found else [sys.executable, "-m", "hessian_dg_cli"]


def _run_without_pandas(argv, tmp_path):
    """``hessian-dg ARGV`` with pandas unimportable: (result, heavy modules loaded)."""
    (tmp_path / "sitecustomize.py").write_text(SITECUSTOMIZE)
    loaded = tmp_path / "loaded.json"
    env = {**os.environ, "LOADED_MODULES_FILE": str(loaded),
           "PYTHONPATH": os.pathsep.join([str(tmp_path), str(ROOT)])}
    result = subprocess.run([*_command(), *argv], cwd=tmp_path, env=env,
                            capture_output=True, text=True, timeout=300)
    modules = set(json.loads(loaded.read_text()))
    return result, [m for m in HEAVY if m in modules]


def test_the_blocker_blocks_pandas(tmp_path):
    """The set-up itself: a command that needs pandas fails for want of it."""
    result, _ = _run_without_pandas(["report", "--input_dir", str(tmp_path)], tmp_path)
    assert result.returncode != 0 and "No module named 'pandas'" in result.stderr


@pytest.mark.parametrize("argv, may_load", [
    (["--help"], []),
    (["setup", "--help"], []),
    (["cmnist", "--help"], ["torch"]),
], ids=["help", "setup-help", "cmnist-help"])
def test_help_needs_neither_pandas_nor_more_than_its_command(argv, may_load, tmp_path):
    result, loaded = _run_without_pandas(argv, tmp_path)
    assert result.returncode == 0, result.stderr
    assert result.stdout.startswith(f"usage: hessian-dg {argv[0] if argv[0] != '--help' else ''}"
                                    .rstrip()), result.stdout
    assert loaded == may_load


def test_setup_runs_without_torch_or_pandas(tmp_path):
    """A refused --dest: setup ran its checks, imported neither."""
    (tmp_path / "a_file").write_text("")
    result, loaded = _run_without_pandas(["setup", "--dest", str(tmp_path / "a_file")],
                                         tmp_path)
    assert result.returncode == 2 and result.stderr.startswith("hessian-dg: error: --dest")
    assert loaded == []


def test_the_listing_is_the_table_and_each_module_declares_its_command():
    """``--help`` lists :data:`COMMANDS` in order with their help, and each command's
    module declares that command with the same one-line help."""
    import argparse

    listing = hessian_dg_cli.build_parser().format_help()
    lines = [line.split() for line in listing.splitlines()]
    names = [words[0] for words in lines if words and words[0] in hessian_dg_cli.COMMANDS]
    assert names == list(hessian_dg_cli.COMMANDS)
    for name, entry in hessian_dg_cli.COMMANDS.items():
        parser = argparse.ArgumentParser(prog="hessian-dg")
        subparsers = parser.add_subparsers()
        __import__(entry.module, fromlist=["add_parser"]).add_parser(subparsers)
        declared = {action.dest: action.help for action in subparsers._choices_actions}
        assert declared.get(name) == entry.help, (name, declared)


def _imports(package):
    """``(file, imported module)`` for every import in ``package``'s files."""
    found = []
    for path in sorted((ROOT / package).rglob("*.py")):
        for node in ast.walk(ast.parse(path.read_text(), str(path))):
            if isinstance(node, ast.Import):
                found += [(path.relative_to(ROOT), alias.name) for alias in node.names]
            elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
                found.append((path.relative_to(ROOT), node.module))
    return found


@pytest.mark.parametrize("package, forbidden", [
    ("domainbed_patch", ("colored_mnist", "hessian_dg_cli")),
    ("colored_mnist", ("domainbed_patch", "domainbed", "hessian_dg_cli")),
    ("hessian_dg", ("domainbed_patch", "colored_mnist", "domainbed", "hessian_dg_cli")),
])
def test_dependencies_run_entry_then_bridge_or_cmnist_then_math(package, forbidden):
    bad = [(str(path), module) for path, module in _imports(package)
           if module.split(".")[0] in forbidden]
    assert bad == []
