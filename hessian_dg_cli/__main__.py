"""``python -m hessian_dg_cli ...``: the ``hessian-dg`` command."""
import sys

from hessian_dg_cli import main

if __name__ == "__main__":
    sys.exit(main())
