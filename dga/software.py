"""What software made a model or a run: DGA's version and git commit, torch, Python."""

from __future__ import annotations

import platform
import subprocess
from pathlib import Path

import dga


def git_commit() -> str:
    """The DGA checkout's commit, or "unknown" (an installed wheel has none)."""
    try:
        return subprocess.run(["git", "rev-parse", "HEAD"], capture_output=True, text=True, timeout=5,
                              cwd=Path(dga.__file__).parent).stdout.strip() or "unknown"
    except (OSError, subprocess.SubprocessError):
        return "unknown"


def software() -> dict[str, str]:
    import torch

    return {"dga_version": dga.__version__, "git_commit": git_commit(), "torch_version": torch.__version__,
            "python": platform.python_version()}
