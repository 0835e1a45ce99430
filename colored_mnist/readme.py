"""The README's Colored MNIST tables, made from the committed restart files.

A table in ``README.md`` sits between two markers that name the run it shows::

    <!-- cmnist-table: --dataset fashion_mnist --setting correlation_shift ... -->
    | Algorithm | Restarts | ... |
    <!-- /cmnist-table -->

The flags are those of ``hessian-dg cmnist``; the table is what that command's
report makes of the run's saved restarts (:func:`colored_mnist.runner.plan` picks
them, so a restart of another identity is refused, not shown), without caption.
``python -m colored_mnist.readme`` rewrites every table (and each run's
``results.md``, ``results.csv`` and ``curves.png`` beside its restarts);
``--check`` only says whether the README is current (exit 1 if not). A test
runs the check, so the README's numbers cannot drift from the files.
"""
from __future__ import annotations

import argparse
import re
import shlex
import sys
from pathlib import Path
from typing import List, Optional

ROOT = Path(__file__).resolve().parents[1]
BLOCK = re.compile(r"(?P<open><!-- cmnist-table: (?P<flags>[^>]*?) -->\n)(?P<body>.*?)"
                   r"(?P<close><!-- /cmnist-table -->)", re.S)


def run_table(flags: str, root: Path = ROOT, write: bool = False) -> str:
    """The Markdown table of the run that ``flags`` name, paths relative to ``root``.

    ``write``: also rewrite the run's report files beside its restarts.
    """
    from colored_mnist import cli, report, runner

    args = cli.build_parser().parse_args(shlex.split(flags))
    if not Path(args.output_dir).is_absolute():
        args.output_dir = str(root / args.output_dir)
    spec, algorithms = cli.run_spec(args)
    done, _ = runner.plan(spec, algorithms, args.restarts)
    if write:
        written = report.write_report(args.output_dir, args.setting, jobs=done)
        if written is None:
            return "(no restart saved yet)\n"
        return written["table"]
    results = report.load_results(args.output_dir, args.setting, done)
    if not results:
        return "(no restart saved yet)\n"
    return report.markdown_table(report.summary_rows(results, args.setting), args.setting)


def render(text: str, root: Path = ROOT, write: bool = False) -> str:
    """``text`` with every table block rebuilt from its run's files."""
    return BLOCK.sub(lambda m: m["open"] + run_table(m["flags"], root, write) + m["close"],
                     text)


def blocks(text: str) -> List[str]:
    """The flags of every table block in ``text``."""
    return [m["flags"] for m in BLOCK.finditer(text)]


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
    print(f"{path}: {len(blocks(text))} Colored MNIST tables rewritten", file=sys.stderr)
    return 0


if __name__ == "__main__":
    sys.exit(main())
