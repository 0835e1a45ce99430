"""The README's Colored MNIST tables, made from the committed restart files.

A block in ``README.md`` sits between two markers that name the run it shows::

    <!-- cmnist-table: --dataset fashion_mnist --setting correlation_shift ... -->
    | Algorithm | Restarts | ... |
    <!-- /cmnist-table -->

The flags are those of ``hessian-dg cmnist``; :func:`colored_mnist.runner.plan`
picks the run's saved restarts, so a restart of another identity is refused, not
shown. Three kinds of block:

- ``cmnist-table``: what that command's report makes of the run, without caption;
- ``cmnist-compare``: :func:`colored_mnist.comparison.comparison_markdown` of the
  run (the Hessian methods against the best baseline; the final Hessian distances);
- ``cmnist-train-size``: runs that differ only in their size, named by
  ``--sizes N [N ...]`` and an ``--output_dir`` holding ``{n}``; a table of test
  (train) accuracy per size, and (when writing) the figure
  ``train_size_<setting>.png`` beside the runs' folders.

``python -m colored_mnist.readme`` rewrites every block (and each table's run's
``results.md``, ``results.csv`` and ``curves.png`` beside its restarts);
``--check`` only says whether the README is current (exit 1 if not). A test runs
the check, so the README's numbers cannot drift from the files.
"""
from __future__ import annotations

import argparse
import re
import shlex
import sys
from pathlib import Path
from typing import List, Optional

ROOT = Path(__file__).resolve().parents[1]
BLOCK = re.compile(r"(?P<open><!-- cmnist-(?P<kind>table|compare|train-size): "
                   r"(?P<flags>[^>]*?) -->\n)(?P<body>.*?)(?P<close><!-- /cmnist-(?P=kind) -->)",
                   re.S)


def _run(flags: str, root: Path):
    """``(args, spec, algorithms, done)`` of the run ``flags`` name."""
    from colored_mnist import cli, runner

    args = cli.build_parser().parse_args(shlex.split(flags))
    if not Path(args.output_dir).is_absolute():
        args.output_dir = str(root / args.output_dir)
    spec, algorithms = cli.run_spec(args)
    done, _ = runner.plan(spec, algorithms, args.restarts)
    return args, spec, algorithms, done


def run_table(flags: str, root: Path = ROOT, write: bool = False) -> str:
    """The Markdown table of the run that ``flags`` name, paths relative to ``root``.

    ``write``: also rewrite the run's report files beside its restarts.
    """
    from colored_mnist import report

    args, _, _, done = _run(flags, root)
    if write:
        written = report.write_report(args.output_dir, args.setting, jobs=done)
        if written is None:
            return NOTHING
        return written["table"]
    results = report.load_results(args.output_dir, args.setting, done)
    if not results:
        return NOTHING
    return report.markdown_table(report.summary_rows(results, args.setting), args.setting)


def run_compare(flags: str, root: Path = ROOT, write: bool = False) -> str:
    """:func:`colored_mnist.comparison.comparison_markdown` of the run ``flags`` name
    (``write`` is the renderers' common signature: nothing is written beside it)."""
    from colored_mnist import comparison, report

    args, _, _, done = _run(flags, root)
    results = report.load_results(args.output_dir, args.setting, done)
    if not results:
        return NOTHING
    return comparison.comparison_markdown(report.summary_rows(results, args.setting),
                                          results)


def run_train_size(flags: str, root: Path = ROOT, write: bool = False) -> str:
    """Test (train) accuracy per ``--sizes`` entry of the runs ``flags`` name (their
    ``--output_dir`` holds ``{n}``); ``write``: also the figure beside them."""
    from colored_mnist import comparison, report

    words = shlex.split(flags)
    start = words.index("--sizes")
    end = next((i for i in range(start + 1, len(words)) if words[i].startswith("--")),
               len(words))
    sizes = [int(word) for word in words[start + 1:end]]
    rest = " ".join(shlex.quote(w) for w in words[:start] + words[end:])
    by_size, algorithms, args = {}, [], None
    for size in sizes:
        args, _, algorithms, done = _run(
            rest.replace("{n}", str(size)) + f" --train_size {size}", root)
        by_size[size] = report.load_results(args.output_dir, args.setting, done)
    rows = comparison.train_size_rows(by_size)
    if not rows:
        return NOTHING
    if write:
        folder = Path(args.output_dir).parent
        comparison.plot_train_size(rows, algorithms, str(folder / f"train_size_{args.setting}.png"),
                                   f"{args.setting.replace('_', ' ')}: accuracy against "
                                   "training images")
    return comparison.train_size_markdown(rows, algorithms, sizes)


NOTHING = "(no restart saved yet)\n"
RENDERERS = {"table": run_table, "compare": run_compare, "train-size": run_train_size}


def render(text: str, root: Path = ROOT, write: bool = False) -> str:
    """``text`` with every block rebuilt from its run's files."""
    return BLOCK.sub(lambda m: m["open"] + RENDERERS[m["kind"]](m["flags"], root, write)
                     + m["close"], text)


def blocks(text: str, kind: str = "table") -> List[str]:
    """The flags of every block of ``kind`` in ``text``."""
    return [m["flags"] for m in BLOCK.finditer(text) if m["kind"] == kind]


def main(argv: Optional[List[str]] = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m colored_mnist.readme",
                                     description=__doc__.split("\n\n")[0])
    parser.add_argument("--readme", default=str(ROOT / "README.md"))
    parser.add_argument("--check", action="store_true",
                        help="only check that the README's tables are current")
    args = parser.parse_args(argv)
    path = Path(args.readme)
    text = path.read_text()
    new = render(text, path.parent, write=not args.check)
    if args.check:
        if new != text:
            print(f"{path}: the Colored MNIST tables are not those of the saved restarts; "
                  "run python -m colored_mnist.readme", file=sys.stderr)
            return 1
        return 0
    path.write_text(new)
    count = len(list(BLOCK.finditer(text)))
    print(f"{path}: {count} Colored MNIST blocks rewritten", file=sys.stderr)
    return 0


if __name__ == "__main__":
    sys.exit(main())
