"""``python -m domainbed_patch.report``: the same as ``hessian-dg report``."""
import sys

from domainbed_patch.report import main

sys.exit(main())
