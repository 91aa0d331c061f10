"""What software made a model or a run (DGA's version and git commit, torch, Python), and how many CPUs
this process may use."""

from __future__ import annotations

import os
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


def usable_cpus() -> int:
    """CPUs this process may really use: its affinity mask (taskset, SLURM's cgroup cpuset), capped by a
    cgroup v2 CPU quota (containers) when one is set. os.cpu_count() counts the whole machine."""
    n = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else (os.cpu_count() or 1)
    try:
        quota, period = Path("/sys/fs/cgroup/cpu.max").read_text().split()[:2]
        if quota != "max":
            n = min(n, max(1, int(int(quota) / int(period))))
    except (OSError, ValueError):
        pass
    return max(1, n)
