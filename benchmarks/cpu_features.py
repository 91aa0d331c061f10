"""Which CPU a benchmark ran on: int8 kernels and speed ratios differ between CPUs with and without
AVX-512 VNNI / AMX, so every CPU benchmark prints this line and stores it with its figures."""

from __future__ import annotations

import platform
from pathlib import Path


def cpu_line() -> str:
    """'<model name>, N cores; AVX2 yes, AVX-512 VNNI no, AMX no' from /proc/cpuinfo (Linux)."""
    import os

    try:
        info = Path("/proc/cpuinfo").read_text()
    except OSError:
        return f"{platform.processor() or platform.machine()} (CPU flags unknown)"
    model = next((line.split(":", 1)[1].strip() for line in info.splitlines() if line.startswith("model name")),
                 platform.machine())
    flags = set(next((line.split(":", 1)[1].split() for line in info.splitlines() if line.startswith("flags")), []))
    have = {"AVX2": "avx2", "AVX-512 VNNI": "avx512_vnni", "AMX": "amx_tile"}
    features = ", ".join(f"{name} {'yes' if flag in flags else 'no'}" for name, flag in have.items())
    return f"{model}, {len(os.sched_getaffinity(0))} usable cores; {features}"


if __name__ == "__main__":
    print(cpu_line())
