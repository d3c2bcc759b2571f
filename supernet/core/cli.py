"""What every ``python -m`` entry point shares: the parser built from typed configs, and the error policy.

Errors: bad input (``InputError``) prints one line ``error: ...`` and exits 2; a file the process
cannot write (permissions, a full disk) prints one line naming the path and exits 1; anything else
is a bug and keeps its traceback.
"""
from __future__ import annotations

import argparse
import errno
import os
import sys
from pathlib import Path
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


_IN_OUTPUT_DIR = "(in --output-dir)"


def add_resume(group, what: str, bare: bool = True) -> None:
    """``--resume DIR``: continue the interrupted run in DIR, the same flag in every command. ``bare``:
    a plain ``--resume`` also works and continues in ``--output-dir`` (as older commands wrote it)."""
    group.add_argument("--resume", default=None, metavar="DIR", nargs="?" if bare else None,
                       const=_IN_OUTPUT_DIR if bare else None, help=f"continue an interrupted {what} in DIR")


def resumed_output(args: argparse.Namespace) -> tuple[str | None, bool]:
    """(output directory, whether to resume) from ``--output-dir`` and ``--resume [DIR]``. A leading ``~`` is
    expanded (``--output-dir=~/run`` reaches us as typed: a folder named "~" would be made)."""
    args = argparse.Namespace(**{**vars(args), **{k: os.path.expanduser(v) for k in ("output_dir", "resume")
                                                  if isinstance(v := getattr(args, k), str)}})
    if args.resume is None:
        return args.output_dir, False
    if args.resume == _IN_OUTPUT_DIR:
        if not args.output_dir:
            raise InputError("--resume without a directory continues --output-dir: give --resume DIR")
        return args.output_dir, True
    if args.output_dir and Path(args.output_dir).resolve() != Path(args.resume).resolve():
        raise InputError(f"--resume {args.resume} continues that directory, and --output-dir names another "
                         f"({args.output_dir}); drop --output-dir")
    return args.resume, True


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