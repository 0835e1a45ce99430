"""Start a command as a terminal starts a foreground job, for the Ctrl-C tests.

A process started in the background of a shell without job control (``cmd &`` in a
script, ``nohup``, some CI runners) inherits SIGINT *ignored*; Python then installs
no ``KeyboardInterrupt`` handler, and every process it starts inherits the same. A
Ctrl-C test run from there sends SIGINT to a command that ignores it, and the command
runs to its end. A terminal's foreground job has SIGINT at its default:
:func:`foreground_signals`, given to :class:`subprocess.Popen` as ``preexec_fn``,
restores that in the child before it starts the command.
"""
import signal


def foreground_signals():
    """SIGINT back to its default (then Python's ``KeyboardInterrupt``), as in a
    terminal's foreground job."""
    signal.signal(signal.SIGINT, signal.SIG_DFL)
