"""Temporary folders that a killed process cannot leave behind for ever.

Each folder's name carries the pid of the process that made it (`<prefix><pid>-<random>`); the next
run removes those whose process no longer exists. A folder of a live process is never touched.
"""

from __future__ import annotations

import os
import shutil
import tempfile
from pathlib import Path


def process_alive(pid: int) -> bool:
    """Whether a process with this pid exists on this machine."""
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
        if not pid_text.isdigit() or int(pid_text) == os.getpid() or process_alive(int(pid_text)):
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


def temporary_beside(target: str | Path, suffix: str = "") -> Path:
    """A new, unique, empty file `.<name>.tmp-<pid>-<random><suffix>` in the target's folder (where a
    rename onto the target is atomic), after removing those left by dead processes."""
    target = Path(target)
    prefix = f".{target.name}.tmp-"
    target.parent.mkdir(parents=True, exist_ok=True)
    clean_stale(target.parent, prefix)
    fd, name = tempfile.mkstemp(prefix=f"{prefix}{os.getpid()}-", suffix=suffix, dir=target.parent)
    os.close(fd)
    # mkstemp makes a private 0600 file; the target gets the mode any new file gets here (0644 under umask 022)
    os.chmod(name, 0o666 & ~_umask())
    return Path(name)


def _umask() -> int:
    mask = os.umask(0o022)  # reading the umask means setting it: put it straight back
    os.umask(mask)
    return mask


class Outputs:
    """A run's output files, all or none: each is written to a unique temporary beside its target
    (`path(target)`), and `commit()` renames them into place together once everything is written.
    Used as a context manager, the temporaries are removed when the block fails."""

    def __init__(self) -> None:
        self._pending: list[tuple[Path, Path]] = []

    def path(self, target: str | Path, suffix: str = "") -> Path:
        tmp = temporary_beside(target, suffix)
        self._pending.append((tmp, Path(target)))
        return tmp

    def commit(self) -> None:
        for tmp, target in self._pending:
            os.replace(tmp, target)
        self._pending.clear()

    def discard(self) -> None:
        for tmp, _ in self._pending:
            tmp.unlink(missing_ok=True)
        self._pending.clear()

    def __enter__(self) -> "Outputs":
        return self

    def __exit__(self, exc_type, exc, tb) -> None:
        if exc_type is None:
            self.commit()
        else:
            self.discard()


def write_text_atomic(target: str | Path, text: str) -> None:
    """Write a text file through a unique temporary beside it, renamed into place."""
    with Outputs() as out:
        out.path(target).write_text(text)


def same_file(a: str | Path, b: str | Path) -> bool:
    """Whether two paths name one existing file (an output that would overwrite an input)."""
    try:
        return Path(a).exists() and Path(b).exists() and os.path.samefile(a, b)
    except OSError:
        return False
