"""Errors a user can act on: they name the file, the line and what was expected."""

from __future__ import annotations

from pathlib import Path


class InputError(ValueError):
    """Bad user input (FASTA, GFF3, config): the message names the file and, where known, the line."""

    def __init__(self, path: str | Path | None, message: str, line: int | None = None):
        self.path = None if path is None else str(path)
        self.line = line
        where = "" if path is None else (f"{path}:{line}: " if line is not None else f"{path}: ")
        super().__init__(f"{where}{message}")

    def __reduce__(self):
        # the whole message, so the error crosses a process boundary (a `dga predict --jobs` worker) intact
        return InputError, (None, str(self))
