"""The one error type for bad user input: the command line prints it as one line and exits 2."""


class InputError(ValueError):
    """Something the user gave (a flag, a file, a run directory) is wrong; the message names it and
    the fix. Raised at validation time, before anything is written."""


class MissingInput(InputError, FileNotFoundError):
    """A file or directory the user named does not exist."""