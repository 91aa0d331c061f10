"""Where training runs: one process, torchrun or srun (DDP: gloo on CPU, nccl on GPU), threads, the store.

`setup_distributed` reads the launcher's environment once; everything downstream takes the
`DistInfo` it returns, so no module reads RANK or SLURM_* itself.
"""

from __future__ import annotations

import os
import subprocess
from dataclasses import dataclass
from datetime import timedelta
from pathlib import Path
from typing import Callable

import torch
import torch.distributed as tdist

from dga.config import Config
from dga.data.store import Store
from dga.errors import InputError
from dga.software import usable_cpus

# Rank 0 may still be logging the run to a remote MLflow server when the others finish.
_TEARDOWN_WAIT = timedelta(minutes=30)


@dataclass(frozen=True)
class DistInfo:
    rank: int = 0
    world_size: int = 1
    local_rank: int = 0
    local_world_size: int = 1
    device: torch.device = torch.device("cpu")

    @property
    def is_main(self) -> bool:
        return self.rank == 0

    @property
    def backend(self) -> str:
        return "nccl" if self.device.type == "cuda" else "gloo"


def _first_slurm_host() -> str:
    nodelist = os.environ.get("SLURM_JOB_NODELIST") or os.environ.get("SLURM_NODELIST")
    if nodelist:
        try:
            out = subprocess.run(["scontrol", "show", "hostnames", nodelist], capture_output=True, text=True,
                                 timeout=10, check=True).stdout.split()
            if out:
                return out[0]
        except (OSError, subprocess.SubprocessError):
            pass
    return "127.0.0.1"


SMALL_MODEL = 1_000_000  # parameters: below this, one thread per process (benchmarks/bench_contention.py)


def auto_threads(n_parameters: int, dist: "DistInfo") -> int:
    """Threads for training when the config leaves it open: one for a small model, whose work per
    step is too little to share (measured on 2 cores: the quickstart's model trains as fast on one
    thread alone, and 2.9x faster than on two when another CPU-bound process runs beside it), the
    usable CPUs shared between local processes otherwise."""
    if n_parameters < SMALL_MODEL:
        return 1
    return max(1, usable_cpus() // dist.local_world_size)


def setup_distributed(device: str = "auto", threads: int = 0) -> DistInfo:
    """Read the launcher's environment (torchrun: RANK/WORLD_SIZE/LOCAL_RANK; srun: SLURM_PROCID/
    SLURM_NTASKS/SLURM_LOCALID), pick the device, and join the process group when world_size > 1."""
    env = os.environ
    if "RANK" in env and "WORLD_SIZE" in env:
        rank, world = int(env["RANK"]), int(env["WORLD_SIZE"])
        local_rank = int(env.get("LOCAL_RANK", 0))
        local_world = int(env.get("LOCAL_WORLD_SIZE", world))
    elif int(env.get("SLURM_NTASKS", "1")) > 1 and "SLURM_PROCID" in env:
        rank, world = int(env["SLURM_PROCID"]), int(env["SLURM_NTASKS"])
        local_rank = int(env.get("SLURM_LOCALID", 0))
        local_world = int(env.get("SLURM_NTASKS_PER_NODE", env.get("SLURM_TASKS_PER_NODE", "1")).split("(")[0])
        env.setdefault("MASTER_ADDR", _first_slurm_host())
        env.setdefault("MASTER_PORT", str(20000 + int(env.get("SLURM_JOB_ID", "0")) % 20000))
    else:
        rank, world, local_rank, local_world = 0, 1, 0, 1
    use_cuda = device == "cuda" or (device == "auto" and torch.cuda.is_available())
    if device == "cuda" and not torch.cuda.is_available():
        raise InputError(None, "device = 'cuda' but no CUDA device is available (set device = 'auto' or 'cpu')")
    if use_cuda:
        torch.cuda.set_device(local_rank % torch.cuda.device_count())
        dev = torch.device("cuda", local_rank % torch.cuda.device_count())
    else:
        dev = torch.device("cpu")
    torch.set_num_threads(threads or max(1, usable_cpus() // local_world))
    info = DistInfo(rank, world, local_rank, local_world, dev)
    if world > 1 and not tdist.is_initialized():
        env.setdefault("MASTER_ADDR", "127.0.0.1")
        env.setdefault("MASTER_PORT", "29500")
        tdist.init_process_group(info.backend, rank=rank, world_size=world)
    return info


def cleanup_distributed(peers_alive: bool = True) -> None:
    """Leave the process group. When every rank ends normally they first meet at a barrier: a
    rank that tore gloo down while its peer was still writing the bundle could see the peer's
    socket close mid-teardown and abort ("terminate called without an active exception").
    After an error on one rank the others may never arrive, so `peers_alive=False` skips it."""
    if not tdist.is_initialized():
        return
    if peers_alive and tdist.get_world_size() > 1:
        if tdist.get_backend() == "gloo":
            tdist.monitored_barrier(timeout=_TEARDOWN_WAIT)
        else:
            tdist.barrier()
    tdist.destroy_process_group()


def store_path(cfg: Config) -> Path:
    """The config's store folder: `store`, else stores/<dataset or genome names>."""
    genomes = cfg.genome_args
    default = cfg.dataset or ("+".join(g.split("=")[0] for g in genomes) if genomes else "custom")
    return Path(cfg.store or Path("stores") / default)


def store_for_config(cfg: Config, dist: DistInfo, log: Callable[[str], None] = print) -> Store:
    """Open the config's store; rank 0 prepares it first if it does not exist yet (others wait)."""
    from dga.data.prepare import prepare_store
    from dga.data.sources import resolve
    from dga.data.store import open_store

    genomes = cfg.genome_args
    path = store_path(cfg)
    if dist.is_main and not (path / "manifest.json").is_file():
        if genomes:
            from dga.data.prepare import genome_from_arg, prepare_genomes

            prepare_genomes([genome_from_arg(g) for g in genomes], path, dataset=cfg.dataset or None, log=log)
        elif cfg.fasta and cfg.gff:
            prepare_store(cfg.fasta, cfg.gff, path, log=log)
        else:
            fasta, gff, _ = resolve(cfg.dataset)
            prepare_store(fasta, gff, path, dataset=cfg.dataset, log=log)
    if dist.world_size > 1:
        tdist.barrier()
    return open_store(path)
