"""What every ``python -m`` entry point shares: the parser built from typed configs, and the error policy.

Errors: bad input (``InputError``) prints one line ``error: ...`` and exits 2; a file the process
cannot write (permissions, a full disk) prints one line naming the path and exits 1; anything else
is a bug and keeps its traceback.
"""
from __future__ import annotations

import argparse
import errno
import sys
from typing import Any, Callable

from supernet.core.config import add_arguments
from supernet.core.errors import InputError

# OS errors that are the machine's state or a path given, not a bug: one line naming the path
_ENVIRONMENT_ERRNOS = {errno.EACCES, errno.EPERM, errno.ENOSPC, errno.EROFS, errno.EDQUOT, errno.ENOTDIR, errno.EISDIR}


def parser(prog: str, description: str) -> argparse.ArgumentParser:
    return argparse.ArgumentParser(prog=prog, description=description)


def add_config_group(p: argparse.ArgumentParser, title: str, *classes, defaults: dict[str, Any] | None = None):
    """One argument group holding the flags of ``classes``; ``defaults`` sets a command's own defaults."""
    g = p.add_argument_group(title)
    for cls in classes:
        add_arguments(g, cls, defaults)
    return g


def run_cli(p: argparse.ArgumentParser, run: Callable[[argparse.Namespace], Any], argv: list[str] | None = None) -> int:
    args = p.parse_args(argv)
    try:
        run(args)
    except InputError as e:
        print(f"error: {e}", file=sys.stderr)
        return 2
    except OSError as e:
        if e.errno not in _ENVIRONMENT_ERRNOS:
            raise
        print(f"error: cannot write {e.filename or 'a file'}: {e.strerror}", file=sys.stderr)
        return 1
    return 0