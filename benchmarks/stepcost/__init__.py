"""Parts of ``benchmarks/step_cost.py``: what is measured, how, and how it is reported.

Importing the package makes DomainBed importable (``hessian-dg setup``, or
``DOMAINBED_ROOT``), since the variants are DomainBed algorithms.
"""
from domainbed_patch.locate import ensure_domainbed_importable

ensure_domainbed_importable()
