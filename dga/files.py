"""Temporary folders that a killed process cannot leave behind for ever.

Each folder's name carries the pid of the process that made it (`<prefix><pid>-<random>`); the next
run removes those whose process no longer exists. A folder of a live process is never touched.
"""

from __future__ import annotations

import os
import shutil
import tempfile
from pathlib import Path


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:  # someone else's live process
        return True
    return True


def clean_stale(parent: str | Path, prefix: str) -> list[Path]:
    """Remove `parent/<prefix><pid>-*` folders whose process is gone; returns what was removed."""
    parent = Path(parent)
    removed: list[Path] = []
    if not parent.is_dir():
        return removed
    for path in parent.glob(f"{prefix}*"):
        pid_text = path.name[len(prefix):].split("-", 1)[0]
        if not pid_text.isdigit() or int(pid_text) == os.getpid() or _alive(int(pid_text)):
            continue
        shutil.rmtree(path, ignore_errors=True) if path.is_dir() else path.unlink(missing_ok=True)
        removed.append(path)
    return removed


def make_dir(parent: str | Path | None, prefix: str) -> Path:
    """A new folder `parent/<prefix><pid>-<random>` (parent: the system temp folder by default),
    after removing the stale ones of dead processes."""
    parent = Path(parent or tempfile.gettempdir())
    parent.mkdir(parents=True, exist_ok=True)
    clean_stale(parent, prefix)
    return Path(tempfile.mkdtemp(prefix=f"{prefix}{os.getpid()}-", dir=parent))
