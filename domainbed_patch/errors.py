"""The one base of the bridge's user errors: what the ``hessian-dg`` command shows
as ``hessian-dg: error: <first line>`` on stderr, then the rest, exit status 2.

A user error is bad input (a flag, a preset, an hparam), or a piece the user can
supply (DomainBed, a network, a dataset): the message's first line names what was
wrong and the valid choices; further lines, and :attr:`UserError.hint`, say what to
do. Each error class of the bridge that means "the user can fix this" derives from
:class:`UserError` and keeps its ordinary base too (``ValueError``,
``ImportError``, ...). Imports nothing: :mod:`domainbed_patch.locate` runs at every
interpreter start.
"""


class UserError(Exception):
    """Bad input or a missing piece the user can supply; the message says which."""

    #: lines shown after the message: what to do about it ('' for none).
    hint = ""
