"""Parts of the benchmarks: what is measured, how, and how it is reported.

``variants``, ``double_backprop``, ``measure`` and ``report`` make DomainBed
importable first (``hessian-dg setup``, or ``DOMAINBED_ROOT``), since the step
benchmark's variants are DomainBed algorithms; ``double_backprop_penalty`` needs
no DomainBed.
"""
