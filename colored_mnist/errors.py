"""The errors of the Colored MNIST experiments, each meant to be shown as one line."""


class CmnistError(Exception):
    """Base class: the message is one line that names what was wrong."""


class UsageError(CmnistError):
    """Bad input from the command line (shown with exit status 2)."""


class DataError(CmnistError):
    """A data file is missing or corrupt: the message names it and how to get it."""
