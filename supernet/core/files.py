"""Files that survive a kill and directories that are never deleted by mistake.

- Writes go through a temp file + rename: a kill mid-write keeps the previous file whole.
- Every output directory we create holds a marker file naming what it holds. ``--overwrite``
  replaces only a directory with that marker: never the working tree, ``logs/`` (which holds many
  runs), a home directory, or anything else a typo might name.
"""
from __future__ import annotations

import json
import os
import shutil
import tempfile
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from supernet.core.config import Config, arg
from supernet.core.errors import InputError

MARKER = ".bert-head-nas.json"
# what runs written before the marker existed hold; they may be overwritten too
_LEGACY_MARKERS = ("run_config.json", "results.json", "compare.json", "analysis.json")


@dataclass(frozen=True)
class OutputConfig(Config):
    """Where a command writes, and whether it may replace what is there."""

    output_dir: str | None = arg(None, "output directory (default: a new folder under logs/)")
    overwrite: bool = arg(False, "replace an existing --output-dir (only one holding a run of this library)")


def _umask_mode() -> int:
    """What ``open()`` would give a new file (mkstemp's temp files are 0600, private to the user)."""
    mask = os.umask(0)
    os.umask(mask)
    return 0o666 & ~mask


def _atomic(path: Path, write) -> Path:
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    try:
        write(fd, tmp)
        os.chmod(tmp, _umask_mode())
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise
    return path


def atomic_write_text(path: Path, text: str) -> Path:
    def write(fd, tmp):
        with os.fdopen(fd, "w", encoding="utf-8") as f:
            f.write(text)
    return _atomic(path, write)


def atomic_write_json(path: Path, obj: Any) -> Path:
    return atomic_write_text(path, json.dumps(obj, indent=2) + "\n")


def atomic_torch_save(obj: Any, path: Path) -> Path:
    """``torch.save`` through a unique temp file + rename: a kill mid-save keeps the previous file."""
    import torch

    def write(fd, tmp):
        os.close(fd)
        torch.save(obj, tmp)
    return _atomic(path, write)


def read_json(path: Path, what: str) -> Any:
    """A JSON file we wrote, or one line naming the file and what is wrong with it."""
    try:
        return json.loads(Path(path).read_text(encoding="utf-8"))
    except FileNotFoundError:
        raise InputError(f"{path}: no such file ({what})") from None
    except (json.JSONDecodeError, UnicodeDecodeError) as e:
        raise InputError(f"{path} is not valid JSON ({what}): {e}") from None


def is_ours(out: Path) -> bool:
    """Whether ``out`` holds a run, result or analysis this library wrote."""
    return any((out / name).is_file() for name in (MARKER, *_LEGACY_MARKERS))


def _protected(out: Path) -> str | None:
    """Why ``out`` may never be deleted, whatever it holds."""
    resolved, cwd, home = out.resolve(), Path.cwd().resolve(), Path.home().resolve()
    if resolved == cwd or resolved in cwd.parents:
        return "it is the current directory or one of its parents"
    if resolved == home or resolved == Path(resolved.anchor):
        return "it is a home or root directory"
    return None


def claim_output_dir(out: Path, overwrite: bool, holds: str, resume_hint: str, keep: bool = False,
                     check_only: bool = False) -> Path:
    """Create ``out`` and mark it as holding ``holds``.

    An existing non-empty ``out`` is refused (nothing touched) unless ``keep`` (resume) writes into
    it, or ``overwrite`` replaces it, which it does only if ``out`` holds something of ours.
    ``check_only`` refuses without creating or deleting anything (call it before slow validation,
    claim after)."""
    out = Path(out)
    if out.exists() and not out.is_dir():
        raise InputError(f"--output-dir {out} is a file, not a directory; pick another --output-dir")
    if out.exists() and any(out.iterdir()) and not keep:
        if not overwrite:
            raise InputError(f"{out} already holds {holds}; {resume_hint}, --overwrite replaces it, "
                                  "or pick another --output-dir")
        why = _protected(out) or (None if is_ours(out) else
                                  f"it holds no {MARKER} (it is not a run, result or analysis of this library)")
        if why:
            raise InputError(f"--overwrite refuses to delete {out}: {why}; pick another --output-dir")
        if check_only:
            return out
        shutil.rmtree(out)
    if check_only:
        return out
    out.mkdir(parents=True, exist_ok=True)
    if not (out / MARKER).is_file():
        atomic_write_json(out / MARKER, {"holds": holds})
    return out