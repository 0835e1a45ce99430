"""The bridge between hessian-dg and DomainBed: finding it, registering with it,
and driving its scripts. See :mod:`domainbed_patch.registration` for what changes.

Kept import-free: :mod:`domainbed_patch.startup` runs at every interpreter start.
"""
